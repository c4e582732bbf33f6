"""What a run shows: the live display in a real 80-column terminal, plain lines in logs, the end.

The terminal is a pseudo-terminal (24 rows, 80 columns) that is the run's controlling
terminal, stdin, stdout and stderr, as in an interactive shell; everything written to
it is read back.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from rich.cells import cell_len

from harness.bench_loop import LiveBench
from harness.limits import Limits, Window
from harness.options import run_argv
from harness.profiles import BenchPlan
from harness.views import bench_view, eta, phase, rate_fields
from protocol.messages import Progress

ROOT = Path(__file__).resolve().parent.parent
# Escape sequences: CSI (colours, cursor moves, erase) and OSC (titles, links).
_ESC = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)")


def in_terminal(argv: list[str], cols: int = 80, rows: int = 24, press: tuple[str, str] | None = None,
                timeout: float = 120) -> tuple[int, str, list]:  # fmt: skip
    """Run ``argv`` with a pty as its terminal; (exit code, all it wrote, the pty's final modes).

    ``press``: (text, key) sends ``key`` once ``text`` has appeared.
    """
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env.update(TERM="xterm-256color", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT, start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),  # the pty is its terminal
    )  # fmt: skip
    os.close(slave)
    out, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.1)[0]:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every end of the pty's other side is closed
                    break
                out += data
                if press and press[0].encode() in out:
                    os.write(master, press[1].encode())
                    press = None
            elif proc.poll() is not None:
                break
        modes = termios.tcgetattr(master)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        os.close(master)
    return proc.returncode, out.decode(errors="replace"), modes


def visible_lines(text: str) -> list[str]:
    """What the terminal shows, line by line: escape codes removed, split at every return."""
    return re.split(r"\r\n|\r|\n", _ESC.sub("", text))


def harness_run(tmp_path: Path, **options) -> list[str]:  # type: ignore[no-untyped-def]
    options.setdefault("output", [tmp_path / "out.json"])
    options.setdefault("log_dir", tmp_path / "logs")
    return [sys.executable, "-m", "harness", "run", *run_argv(**options)]


# 50 requests/s for 1 s of 40 tokens at 10 ms each (400 ms): some are in flight at the limit.
ABORTING = {"engine": "sim", "sim": "decode_ms=10,startup_s=1", "profile": "constant", "rate": 50,
            "max_seconds": 1, "data": "prompt_tokens=8,output_tokens=40"}  # fmt: skip


def test_live_display_fits_80_columns_shows_startup_and_never_counts_aborts_as_done(tmp_path):
    code, out, _ = in_terminal(harness_run(tmp_path, verbose=True, **ABORTING))
    assert code == 0, out[-3000:]
    lines = visible_lines(out)
    too_long = [ln for ln in lines if cell_len(ln) > 80]
    assert too_long == []  # nothing wraps: rich laid everything out to the terminal's width
    text = "\n".join(lines)
    assert "Starting engines" in text and re.search(r"harness-worker-0\s+starting", text)
    assert "sim engine: simulating 1 s of start-up" in text  # --verbose: the worker's own log
    assert re.search(r"Engines ready in \d", text)
    assert re.search(r"\[1/1\] constant@50/s\s+(measuring|stopping)", text)  # the live region
    rep = json.loads((tmp_path / "out.json").read_text())["benchmarks"][0]
    q = rep["requests"]
    assert q["aborted"] > 0  # the point of this run
    final = re.search(r"✓ \[1/1\] constant@50/s .* done (\d+)  failed (\d+)  aborted (\d+)", text)
    assert final, text[-2000:]
    done, failed, aborted = map(int, final.groups())
    assert (done, failed, aborted) == (q["completed"] + q["failed"], q["failed"], q["aborted"])
    # The end: one table (the aborted column because some were), then the path.
    assert re.search(r"constant 50/s\s+[\d.,]+\s", text) and "aborted" in text
    assert f"report: {tmp_path / 'out.json'}" in text


def test_the_v_key_shows_the_workers_logs_during_startup_and_the_terminal_is_restored(tmp_path):
    opts = {**ABORTING, "sim": "decode_ms=1,startup_s=2", "max_seconds": 0.5}
    code, out, modes = in_terminal(harness_run(tmp_path, **opts),
                                   press=("press v to show vLLM's log", "v"))  # fmt: skip
    assert code == 0, out[-3000:]
    text = "\n".join(visible_lines(out))
    assert "press v to hide vLLM's log" in text
    assert "── harness-worker-0 log" in text and "sim engine: simulating 2 s" in text
    lflag = modes[3]
    assert lflag & termios.ICANON and lflag & termios.ECHO  # cbreak mode undone


def test_ctrl_c_during_startup_stops_the_run_and_restores_the_terminal(tmp_path):
    cmd = harness_run(tmp_path, engine="sim", sim="startup_s=5")
    code, out, modes = in_terminal(cmd, press=("press v to show", "\x03"))
    assert code == 130
    text = "\n".join(visible_lines(out))
    assert "harness: SIGINT: stopping" in text
    assert re.search(r"harness-worker-0\s+not ready", text)  # its last state stays on screen
    assert modes[3] & termios.ICANON and modes[3] & termios.ECHO


def test_not_a_terminal_gives_plain_lines_and_quiet_only_the_paths(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = harness_run(tmp_path, verbose=True, **ABORTING)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stderr + proc.stdout
    assert "harness-worker-0 | sim engine: simulating 1 s of start-up" in proc.stderr
    assert re.search(r"^Engines ready in \d", proc.stderr, re.M)
    q = json.loads((tmp_path / "out.json").read_text())["benchmarks"][0]["requests"]
    last = re.search(r"^\[1/1\] constant@50/s: done, .*\| done (\d+), failed (\d+), aborted (\d+)",
                     proc.stderr, re.M)  # fmt: skip
    assert last, proc.stderr
    assert tuple(map(int, last.groups())) == (
        q["completed"] + q["failed"],
        q["failed"],
        q["aborted"],
    )
    assert "constant 50/s" in proc.stdout  # the table
    quiet = subprocess.run(harness_run(tmp_path, quiet=True, **ABORTING), capture_output=True,
                           text=True, timeout=120, cwd=ROOT, env=env)  # fmt: skip
    assert quiet.returncode == 0 and quiet.stdout == ""
    assert quiet.stderr.splitlines() == [f"report: {tmp_path / 'out.json'}"]


def test_closed_stdout_and_stderr_never_cost_the_report(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = harness_run(
        tmp_path, engine="sim", max_requests=20, data="prompt_tokens=8,output_tokens=4"
    )

    def close_both() -> None:
        os.close(1)
        os.close(2)

    proc = subprocess.run(cmd, cwd=ROOT, env=env, timeout=120, preexec_fn=close_both)
    assert proc.returncode == 0
    rep = json.loads((tmp_path / "out.json").read_text())
    assert rep["benchmarks"][0]["requests"]["completed"] == 20


def test_verbose_and_quiet_together_are_refused(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(harness_run(tmp_path, engine="sim", verbose=True, quiet=True),
                          capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)  # fmt: skip
    assert proc.returncode == 2
    assert (
        proc.stderr.startswith("harness: error: --verbose") and len(proc.stderr.splitlines()) == 1
    )


# --- what a benchmark looks like, from the coordinator's state ---------------------


def bench(
    planned: int | None = 100, open_loop: bool = True, elapsed_s: float = 2.0, **kw
) -> LiveBench:  # type: ignore[no-untyped-def]
    import numpy as np

    offsets = np.arange(planned or 0, dtype=np.int64) * 10_000_000 if open_loop else None
    plan = BenchPlan("constant@100/s", "constant", rate=100.0, offsets_ns=offsets)
    b = LiveBench(0, plan, time.monotonic_ns() - int(elapsed_s * 1e9), planned, 0)
    for k, v in kw.items():
        setattr(b, k, v)
    return b


def test_phases_follow_the_windows_and_the_sends():
    lim = Limits(max_requests=100, warmup=Window(requests=10), cooldown=Window(requests=10))
    assert phase(bench(sent=5), lim, 0.05) == "warm-up"
    assert phase(bench(sent=50), lim, 0.5) == "measuring"
    assert phase(bench(sent=95), lim, 0.95) == "cool-down"
    assert phase(bench(sent=100), lim, 1.0) == "draining"
    assert phase(bench(sent=60, stop_reason="max_seconds"), lim, 1.0) == "stopping (max-seconds)"
    secs = Limits(warmup=Window(seconds=0.2), cooldown=Window(seconds=0.2))
    assert phase(bench(sent=10), secs, 0.1) == "warm-up"
    assert phase(bench(sent=50), secs, 0.5) == "measuring"
    assert phase(bench(sent=90), secs, 0.9) == "cool-down"  # the schedule's last send is at 0.99 s


def test_eta_comes_from_the_schedule_the_pace_and_max_seconds():
    lim = Limits(max_requests=100)
    # Half of 100 ended in 2 s: 2 s to go by the pace (the schedule ended at 0.99 s).
    assert eta(bench(), lim, 2.0, 50) == pytest.approx(2.0)
    # Before a pace can be measured: at least until the schedule's last send.
    assert eta(bench(), lim, 0.5, 10) == pytest.approx(0.49)
    # --max-seconds bounds it; a closed loop without a count has only that.
    assert eta(bench(), Limits(max_requests=100, max_seconds=3.0), 2.0, 10) == pytest.approx(1.0)
    assert eta(bench(planned=None, open_loop=False), Limits(), 2.0, 10) is None


def test_rates_show_only_once_measurable_and_aborts_are_not_done():
    lim = Limits(max_requests=100)
    p = Progress(0, completed=30, failed=2, output_tokens=600, ttft_p50_ms=12.0, t_ns=0,
                 aborted=5, itl_p50_ms=3.0)  # fmt: skip
    early = bench_view(bench(elapsed_s=0.3, progress=p), lim, 4)
    assert early.req_s is None and [k for k, _ in rate_fields(early)] == ["TTFT p50", "ITL p50"]
    v = bench_view(bench(elapsed_s=2.0, progress=p, inflight=7), lim, 4)
    assert (v.done, v.failed, v.aborted, v.inflight) == (32, 2, 5, 7)
    assert v.position == "1/4" and v.req_s == pytest.approx(15.0, rel=0.01)
    assert v.tok_s == pytest.approx(300.0, rel=0.01)
    assert v.fraction == pytest.approx(0.37)


# --- the end of a run -------------------------------------------------------------


def _printed(report, width: int) -> list[str]:  # type: ignore[no-untyped-def]
    from rich.console import Console

    from harness.report import print_end_table

    console = Console(width=width, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    print_end_table(report, console)
    return console.export_text().splitlines()


def test_end_table_fits_80_columns_with_units_and_the_reports_values():
    import msgspec

    from harness.report import fmt_sig, read_json

    rep = read_json(ROOT / "tests" / "fixtures" / "report_a.json")
    # Ten benchmarks at rates with many digits, one with aborted requests.
    benches = []
    for i in range(10):
        b = rep.benchmarks[i % 2]
        load = msgspec.structs.replace(
            b.load, profile="constant", requested_rate=1234.5678 / (i + 1)
        )
        benches.append(msgspec.structs.replace(b, index=i, load=load))
    benches[3].requests.aborted = 7
    lines = _printed(msgspec.structs.replace(rep, benchmarks=benches), 80)
    assert max(map(cell_len, lines)) <= 80 and len(lines) == 3 + 10  # one line per benchmark
    assert lines[2].split()[:3] == ["load", "req/s", "tok/s"] and "aborted" in lines[2]
    assert lines[1].split().count("ms") == 0 and lines[2].split().count("ms") == 6
    assert "good" in lines[1]  # the fixture's run had --slo
    row = lines[3].split()
    b = benches[0]
    assert row[:2] == ["constant", "1,235/s"]
    assert row[2:5] == [fmt_sig(b.throughput.requests_per_s),
                        fmt_sig(b.throughput.output_tokens_per_s), fmt_sig(b.ttft_ms.p50)]  # fmt: skip
    assert lines[6].split()[-2:] == [str(benches[3].requests.failed), "7"]


def test_end_table_becomes_blocks_where_a_table_cannot_fit():
    from harness.report import read_json

    rep = read_json(ROOT / "tests" / "fixtures" / "report_a.json")
    lines = _printed(rep, 40)
    assert max(map(cell_len, lines)) <= 40
    assert lines[0] == "concurrent 1" and any("TTFT p99 4.46 ms" in ln for ln in lines)


def test_benchmark_details_have_a_unit_on_every_row():
    from harness.report import bench_table, read_json

    rep = read_json(ROOT / "tests" / "fixtures" / "report_a.json")
    for line in bench_table(rep.benchmarks[0]).splitlines()[1:]:
        label = line.split(":")[0] if ":" in line else line[:18]
        if (
            label.strip()
            and re.search(r"\d", line)
            and not line.startswith(("  worker", "  error"))
        ):
            assert re.search(r"\((ms|s|req/s|tok/s|requests)[) ]|Requests|requests", label), line
