"""Crashes, signals and hostile traffic: nothing lost, nothing hangs, nothing left behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import numpy as np
import psutil
import pytest
import zmq

from protocol import messages as m
from tests.conftest import start_harness

ROOT = Path(__file__).resolve().parent.parent


def start(tmp_path: Path, **options: object) -> subprocess.Popen[str]:
    """``harness run`` on the sim engine, in the background."""
    return start_harness(tmp_path, engine="sim", **options)


def children_named(pid: int, name: str, timeout: float = 30) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [
            c
            for c in psutil.Process(pid).children(recursive=True)
            if any(name in part for part in c.cmdline())
        ]
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no child {name} of {pid}")


def accounted(b: dict) -> bool:
    q = b["requests"]
    return (
        q["scheduled"]
        == q["completed"] + q["failed"] + q["incomplete"] + q["warmup"] + q["cooldown"]
    )


def test_an_engine_that_dies_ends_its_worker_and_every_request_is_counted(tmp_path):
    """vLLM's engine core dies under the worker (sim: ``die_after_s``): the worker sends what
    it has, exits 4, and its requests in flight fail; those it finished stay completed."""
    proc = start(tmp_path, sim="decode_ms=5,die_after_s=1.5", profile="constant", rate="100",
                 max_requests="300", data="prompt_tokens=8,output_tokens=50")  # fmt: skip
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    rep = json.loads((tmp_path / "out.json").read_text())
    assert rep["stop_reason"] == "all workers died"
    (b,) = rep["benchmarks"]
    q = b["requests"]
    assert accounted(b) and q["completed"] > 0 and q["failed"] > 0
    assert q["completed"] + q["failed"] == q["scheduled"]  # every one sent has ended
    assert list(b["errors"]) == ["worker 0 died (exit code 4)"]
    assert [w["exit"] for w in rep["environment"]["workers"]] == ["exit code 4"]


def test_kill_9_of_one_worker_fails_its_requests_and_the_run_goes_on(tmp_path):
    proc = start(
        tmp_path,
        workers="2",
        sim="decode_ms=5",
        profile="constant",
        rate="100",
        max_requests="300",
        data="prompt_tokens=8,output_tokens=50",
        checkpoint_s="0.5",
    )
    victim = children_named(proc.pid, "harness-worker-1")[0]
    _measuring(tmp_path, proc)
    victim.kill()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    rep = json.loads((tmp_path / "out.json").read_text())
    b = rep["benchmarks"][0]
    assert accounted(b)
    assert b["requests"]["failed"] > 0
    assert b["requests"]["completed"] + b["requests"]["failed"] == 300
    assert list(b["errors"]) == ["worker 1 died (killed by signal 9)"]
    w1 = [w for w in rep["environment"]["workers"] if w["worker_id"] == 1][0]
    assert w1["exit"] == "killed by signal 9"
    # The survivor took the rest of the load.
    survivor = [w for w in b["workers"] if w["worker_id"] == 0][0]
    assert survivor["completed"] > 150


def test_sigint_writes_a_partial_report_and_leaves_no_process(tmp_path):
    proc = start(
        tmp_path,
        workers="2",
        sim="decode_ms=10",
        profile="concurrent",
        concurrency="8",
        max_requests="10000",
        data="prompt_tokens=8,output_tokens=20",
        checkpoint_s="0.5",
    )
    children_named(proc.pid, "harness-worker-1")
    kids = psutil.Process(proc.pid).children(recursive=True)
    _measuring(tmp_path, proc)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 15
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    rep = json.loads((tmp_path / "out.json").read_text())
    assert rep["partial"] is True and rep["stop_reason"] == "interrupted"
    b = rep["benchmarks"][0]
    assert accounted(b)
    assert b["requests"]["completed"] > 0
    assert (
        b["requests"]["incomplete"] > 0 or b["requests"]["scheduled"] == b["requests"]["completed"]
    )
    _, alive = psutil.wait_procs(kids, timeout=5)
    assert alive == []


def test_hostile_traffic_is_rejected_and_the_run_completes(tmp_path):
    proc = start(
        tmp_path,
        workers="2",
        sim="decode_ms=2",
        profile="constant",
        rate="200",
        max_requests="400",
        data="prompt_tokens=8,output_tokens=10",
    )
    worker = children_named(proc.pid, "harness-worker-0")[0]
    cfg = m.read_config(worker.cmdline()[-1], m.WorkerConfig)
    ctx = zmq.Context()
    rng = np.random.default_rng(5)
    try:
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(cfg.coordinator_addr)
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.connect(cfg.collector_addr)
        enc = msgspec.msgpack.Encoder()
        hostile_up = [
            b"",
            b"\xc1garbage",
            enc.encode(m.Submit([])),  # a type the coordinator never takes
            enc.encode(m.Hello("worker", 0, 1, "x", 999, "wrong-token")),  # bad version and token
            enc.encode(m.Done(0, [1, 2, 3])),  # from a stranger
            enc.encode(m.Heartbeat(0, 1)),
        ]
        hostile_events = [
            b"\x00\x01\x02",
            enc.encode(m.Cancel([1])),
            enc.encode(m.Events(9, 1, b"\x01" * 7, b"", b"", [], [], [])),  # ragged columns
            enc.encode(m.Events(9, 1, b"", b"", b"", [m.Started(10**12, 0, 0, 1, 1, 1, 1)])),
            enc.encode(m.Events(70000, 1, b"", b"", b"", [m.Started(1, 0, 0, 1, 1, 1, 1)])),
            enc.encode(m.Events(9, 1, b"", b"", b"", [], [m.Finished(10**9, 1, 1, "length")])),
        ]
        for _ in range(20):
            for msg in hostile_up:
                dealer.send(msg)
            dealer.send_multipart([b"a", b"b", b"c"])
            for msg in hostile_events:
                push.send(msg)
            push.send(rng.bytes(int(rng.integers(1, 200))))
            dealer.send(rng.bytes(int(rng.integers(1, 200))))
            time.sleep(0.02)
    finally:
        ctx.destroy(0)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    rep = json.loads((tmp_path / "out.json").read_text())
    b = rep["benchmarks"][0]
    assert b["requests"]["completed"] == 400 and b["requests"]["failed"] == 0
    assert b["output_tokens"]["min"] == b["output_tokens"]["max"] == 10


def test_ipc_folder_is_private(tmp_path):
    proc = start(
        tmp_path,
        sim="decode_ms=5",
        max_requests="200",
        profile="synchronous",
        data="prompt_tokens=8,output_tokens=10",
    )
    worker = children_named(proc.pid, "harness-worker-0")[0]
    cfg = m.read_config(worker.cmdline()[-1], m.WorkerConfig)
    folder = Path(cfg.coordinator_addr.removeprefix("ipc://")).parent
    assert folder.stat().st_mode & 0o777 == 0o700
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert not folder.exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM])
def test_sigterm_is_handled_like_sigint(tmp_path, sig):
    proc = start(
        tmp_path,
        sim="decode_ms=10",
        profile="synchronous",
        max_requests="1000",
        data="prompt_tokens=8,output_tokens=10",
    )
    children_named(proc.pid, "harness-worker-0")
    time.sleep(1.0)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert json.loads((tmp_path / "out.json").read_text())["partial"] is True


def test_collector_death_stops_the_run_and_keeps_the_last_checkpoint(tmp_path):
    proc = start(
        tmp_path,
        sim="decode_ms=5",
        profile="concurrent",
        concurrency="4",
        max_requests="100000",
        checkpoint_s="1",
        data="prompt_tokens=8,output_tokens=10",
    )
    collector = children_named(proc.pid, "harness-collector")[0]
    out = tmp_path / "out.json"
    deadline = time.monotonic() + 30
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    mid = json.loads(out.read_text())  # a checkpoint, written while the run goes on
    assert mid["partial"] is True and mid["stop_reason"] == "running: checkpoint"
    assert mid["benchmarks"][0]["requests"]["completed"] > 0
    time.sleep(1.5)
    collector.kill()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    lines = [ln for ln in err.splitlines() if ln.startswith("harness:")]
    assert lines == [lines[0]] and lines[0].startswith("harness: error: the collector died")
    assert f"report: {out}" in err
    rep = json.loads(out.read_text())
    assert rep["partial"] is True and "collector died" in rep["stop_reason"]
    b = rep["benchmarks"][0]
    assert b["requests"]["completed"] >= mid["benchmarks"][0]["requests"]["completed"]
    assert b["stop_reason"] == rep["stop_reason"]


def _ipc_folder(pid: int) -> Path:
    """The run's private ipc folder: where its children's configs are."""
    worker = children_named(pid, "harness-worker-0")[0]
    return Path(worker.cmdline()[-1]).parent


def _long_run(tmp_path: Path, **extra: object) -> subprocess.Popen[str]:
    opts = dict(sim="decode_ms=10", profile="concurrent", concurrency="4", max_requests=100000,
                data="prompt_tokens=8,output_tokens=20", checkpoint_s="0.5")  # fmt: skip
    return start(tmp_path, **(opts | extra))


def _measuring(tmp_path: Path, proc: subprocess.Popen[str]) -> None:
    """Until the first checkpoint: the benchmark runs and has measured (a fixed sleep was
    once too short for a start-up on a loaded machine)."""
    deadline = time.monotonic() + 60
    while not (tmp_path / "out.json").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    time.sleep(0.5)


def _left_behind(proc: subprocess.Popen[str], kids: list[psutil.Process], folder: Path) -> None:
    _, alive = psutil.wait_procs(kids, timeout=10)
    assert alive == []
    assert not folder.exists()


@pytest.mark.parametrize("twice", [False, True], ids=["once", "twice 100 ms apart"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP], ids=["SIGINT", "SIGHUP"])
def test_signals_leave_a_valid_partial_report_and_nothing_behind(tmp_path, sig, twice):
    proc = _long_run(tmp_path)
    folder = _ipc_folder(proc.pid)
    kids = psutil.Process(proc.pid).children(recursive=True)
    _measuring(tmp_path, proc)
    proc.send_signal(sig)
    if twice:
        time.sleep(0.1)
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    rep = json.loads((tmp_path / "out.json").read_text())
    assert rep["partial"] is True and rep["stop_reason"].startswith("interrupted")
    (b,) = rep["benchmarks"]  # what the benchmark cut short measured, even after a second signal
    assert b["requests"]["completed"] > 0 and accounted(b)
    _left_behind(proc, kids, folder)


def test_a_volley_of_signals_until_the_end_still_exits_130(tmp_path):
    """Ctrl-C held down: signals arrive through the stop, the report's write, the shutdown
    and the restore of the handlers; none of them may end the process by the signal."""
    proc = _long_run(tmp_path)
    folder = _ipc_folder(proc.pid)
    kids = psutil.Process(proc.pid).children(recursive=True)
    _measuring(tmp_path, proc)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
        time.sleep(0.005)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    rep = json.loads((tmp_path / "out.json").read_text())
    assert rep["partial"] is True and rep["stop_reason"].startswith("interrupted")
    assert accounted(rep["benchmarks"][0])
    _left_behind(proc, kids, folder)


@pytest.mark.parametrize("how", ["closed", "broken pipe"])
def test_a_closed_or_broken_stderr_never_ends_a_run(tmp_path, how):
    from harness.options import run_argv

    argv = run_argv(engine="sim", sim="decode_ms=2", profile="constant", rate=100, max_requests=200,
                    data="prompt_tokens=8,output_tokens=10", output=tmp_path / "out.json",
                    log_dir=tmp_path / "logs")  # fmt: skip
    cmd = [sys.executable, "-m", "harness", "run", *argv]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if how == "closed":
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                preexec_fn=lambda: os.close(2))  # fmt: skip
        code = proc.wait(timeout=120)
    else:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        assert proc.stderr is not None
        proc.stderr.read(1)  # like `| head -c 1`: then nobody reads it any more
        proc.stderr.close()
        code = proc.wait(timeout=120)
    assert code == 0
    b = json.loads((tmp_path / "out.json").read_text())["benchmarks"][0]
    assert b["requests"]["completed"] == 200


def test_a_disk_error_at_the_end_saves_the_report_elsewhere(tmp_path):
    target = tmp_path / "reports"
    target.mkdir()
    proc = start(tmp_path, sim="decode_ms=5", profile="constant", rate=50, max_requests=100,
                 data="prompt_tokens=8,output_tokens=10",
                 output=[target / "run.json", tmp_path / "other.csv"])  # fmt: skip
    children_named(proc.pid, "harness-worker-0")
    target.rmdir()
    target.write_text("now a file: nothing can be written under it")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    line = [ln for ln in err.splitlines() if "cannot write" in ln][0]
    saved = Path(line.rsplit("saved it as ", 1)[1])
    rep = json.loads(saved.read_text())
    assert rep["benchmarks"][0]["requests"]["completed"] == 100
    assert (tmp_path / "other.csv").read_text().count("\n") == 2  # the other output is written
    saved.unlink()
