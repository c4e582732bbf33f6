"""Load profiles and constraints: schedules (pure, seeded) and runs on the sim engine."""

from __future__ import annotations

import numpy as np
import pytest

from harness.options import RunOptions
from harness.profiles import schedule
from harness.resolve import resolve


def plans(**options):
    """The benchmarks a run of ``options`` plans (before any result is in)."""
    return list(resolve(RunOptions.of(engine="sim", **options)).plans([]))


SIM = ["--engine", "sim"]


@pytest.mark.parametrize("burstiness", [1.0, 0.25, 4.0])
def test_poisson_gaps_have_requested_mean_and_cv(burstiness):
    rng = np.random.default_rng(1234)
    off = schedule.poisson_offsets(200.0, 50_001, burstiness, rng)
    gaps = np.diff(off) / 1e9
    assert gaps.mean() == pytest.approx(1 / 200.0, rel=0.02)
    assert gaps.std() / gaps.mean() == pytest.approx(1 / np.sqrt(burstiness), rel=0.03)


def test_constant_offsets_are_even():
    off = schedule.constant_offsets(4.0, 5)
    assert off.tolist() == [0, 250_000_000, 500_000_000, 750_000_000, 1_000_000_000]


def test_same_seed_same_schedule_and_data():
    from harness.workload import parse_spec, synthetic

    run = dict(profile="poisson", rate="10,20", max_requests=100)
    a = [p.offsets_ns.tolist() for p in plans(**run, seed=7)]
    b = [p.offsets_ns.tolist() for p in plans(**run, seed=7)]
    c = [p.offsets_ns.tolist() for p in plans(**run, seed=8)]
    assert a == b and a != c
    assert len(a) == 2 and len(a[0]) == 100
    spec = parse_spec("prompt_tokens=16,output_tokens=4,prompt_tokens_stdev=4")
    assert synthetic(spec, 10, 1000, 7) == synthetic(spec, 10, 1000, 7)
    assert synthetic(spec, 10, 1000, 7) != synthetic(spec, 10, 1000, 8)


def test_max_seconds_bounds_the_schedule():
    (plan,) = plans(profile="constant", rate="100", max_seconds=2.0)
    assert len(plan.offsets_ns) == 200
    assert plan.offsets_ns[-1] < 2e9


def test_sweep_rates_are_between_and_increasing():
    assert schedule.sweep_rates(10.0, 50.0, 3) == [20.0, 30.0, 40.0]


def test_concurrent_never_exceeds_and_reaches_n(harness):
    _, rep = harness(
        engine="sim",
        sim="decode_ms=2",
        profile="concurrent",
        concurrency="1,4",
        max_requests="40",
        data="prompt_tokens=8,output_tokens=8",
    )
    peaks = [b["load"]["peak_inflight"] for b in rep["benchmarks"]]
    assert peaks == [1, 4]
    assert [b["load"]["concurrency"] for b in rep["benchmarks"]] == [1, 4]
    assert all(
        max(b["timeseries"]["inflight"] or [0]) <= b["load"]["concurrency"]
        for b in rep["benchmarks"]
    )
    assert all(b["requests"]["completed"] == 40 for b in rep["benchmarks"])


def test_open_loop_keeps_schedule_when_engine_falls_behind(harness):
    # The engine serves one request at a time, 15 ms each: 67 req/s. We send 200 req/s.
    _, rep = harness(
        engine="sim",
        sim="decode_ms=5,max_num_seqs=1",
        profile="constant",
        rate="200",
        max_requests="60",
        data="prompt_tokens=8,output_tokens=4",
    )
    b = rep["benchmarks"][0]
    assert b["load"]["requested_rate"] == 200
    assert b["load"]["achieved_send_rate"] == pytest.approx(200, rel=0.05)
    assert b["dispatch_lag_ms"]["p99"] < 20  # sends followed the schedule
    # Latency counts from the scheduled time, so the backlog shows: each request takes
    # 3 decode steps (15 ms), so the last one, sent at 295 ms, ends near 900 ms.
    assert b["e2e_ms"]["max"] > 10 * b["e2e_ms"]["min"]
    assert b["e2e_ms"]["max"] > 500
    assert b["requests"]["completed"] == 60


def test_max_seconds_stops_sending_and_aborts_in_flight(harness):
    # 50 req/s for 1 s; each request needs 40 * 10 ms = 400 ms, so some are in flight at the limit.
    _, rep = harness(
        engine="sim",
        sim="decode_ms=10",
        profile="constant",
        rate="50",
        max_seconds="1",
        data="prompt_tokens=8,output_tokens=40",
    )
    b = rep["benchmarks"][0]
    q = b["requests"]
    assert q["scheduled"] == 50
    assert q["incomplete"] > 0 and q["completed"] > 0
    assert q["completed"] + q["failed"] + q["incomplete"] == q["scheduled"]
    assert b["duration_s"] < 1.5


def test_sweep_produces_k_plus_two_increasing_benchmarks(harness):
    _, rep = harness(
        engine="sim",
        sim="prefill_ms=2,decode_ms=1",
        profile="sweep",
        sweep_points="3",
        max_requests="30",
        data="prompt_tokens=8,output_tokens=8",
    )
    bs = rep["benchmarks"]
    assert [b["load"]["profile"] for b in bs] == ["synchronous", "throughput"] + ["constant"] * 3
    sync_rate = bs[0]["throughput"]["requests_per_s"]
    thr_rate = bs[1]["throughput"]["requests_per_s"]
    rates = [b["load"]["requested_rate"] for b in bs[2:]]
    assert sync_rate < rates[0] < rates[1] < rates[2] < thr_rate
    assert all(b["requests"]["completed"] == 30 for b in bs)


def test_warmup_requests_are_counted_but_excluded(harness):
    _, rep = harness(
        engine="sim",
        profile="synchronous",
        max_requests="20",
        warmup="5",
        cooldown="3",
        data="prompt_tokens=8,output_tokens=4",
    )
    b = rep["benchmarks"][0]
    q = b["requests"]
    assert (q["warmup"], q["completed"], q["cooldown"], q["scheduled"]) == (5, 12, 3, 20)
    assert b["ttft_ms"]["count"] == 12
    assert b["itl_ms"]["count"] == 12 * 3


def test_round_robin_alternates_workers(harness):
    _, rep = harness(
        engine="sim",
        workers="2",
        dispatch="round-robin",
        max_requests="100",
        data="prompt_tokens=8,output_tokens=4",
    )
    done = {w["worker_id"]: w["completed"] for w in rep["benchmarks"][0]["workers"]}
    assert done == {0: 50, 1: 50}


def test_least_outstanding_respects_the_per_worker_cap(harness):
    _, rep = harness(
        engine="sim",
        sim="decode_ms=2",
        workers="2",
        max_requests="100",
        max_inflight_per_worker="5",
        data="prompt_tokens=8,output_tokens=4",
    )
    b = rep["benchmarks"][0]
    done = {w["worker_id"]: w["completed"] for w in b["workers"]}
    assert sum(done.values()) == 100 and set(done) == {0, 1}
    assert b["load"]["peak_inflight"] <= 10


def test_warmup_and_cooldown_in_seconds(harness):
    # 100 req/s, sends at 0, 10, ..., 1990 ms. Warm-up: sends before 500 ms (50).
    # Cool-down: sends in the last 500 ms of the schedule, 1490..1990 ms inclusive (51).
    _, rep = harness(
        engine="sim",
        profile="constant",
        rate="100",
        max_requests="200",
        warmup="0.5s",
        cooldown="0.5s",
        data="prompt_tokens=8,output_tokens=4",
    )
    q = rep["benchmarks"][0]["requests"]
    assert (q["warmup"], q["cooldown"], q["completed"]) == (50, 51, 99)


def test_max_errors_count_stops_the_run(harness):
    # Every 4th request fails; stop at 5 failures.
    proc, rep = harness(
        engine="sim",
        sim="decode_ms=2,fail_every=4",
        profile="concurrent",
        concurrency="2",
        max_requests="200",
        max_errors="5",
        data="prompt_tokens=8,output_tokens=4",
        check=False,
    )
    assert proc.returncode == 1
    assert "--max-errors reached" in proc.stderr
    b = rep["benchmarks"][0]
    assert b["stop_reason"] == "max_errors"
    assert rep["stop_reason"] == "max_errors" and rep["partial"] is True
    q = b["requests"]
    assert 5 <= q["failed"] <= 7  # the in-flight ones may fail too
    assert q["scheduled"] == q["completed"] + q["failed"] + q["incomplete"]
    assert q["scheduled"] < 200
    assert b["errors"] == {"sim: injected failure": q["failed"]}


def test_max_errors_fraction(harness):
    proc, rep = harness(
        engine="sim",
        sim="fail_every=2",
        profile="synchronous",
        max_requests="100",
        max_errors="0.25",
        data="prompt_tokens=8,output_tokens=4",
        check=False,
    )
    assert proc.returncode == 1
    b = rep["benchmarks"][0]
    assert b["stop_reason"] == "max_errors"
    # It stops at the first check with at least 10 requests done: half of them failed.
    assert b["requests"]["completed"] + b["requests"]["failed"] < 20


def test_failures_below_the_limit_are_reported_and_the_run_succeeds(harness):
    _, rep = harness(
        engine="sim",
        sim="fail_every=10",
        max_requests="100",
        max_errors="0.5",
        data="prompt_tokens=8,output_tokens=4",
    )
    q = rep["benchmarks"][0]["requests"]
    assert (q["completed"], q["failed"], q["incomplete"]) == (90, 10, 0)
    assert rep["partial"] is False
