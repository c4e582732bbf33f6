"""Statistics against hand-computed values, through the collector's real ingest path."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from harness.collector import BenchState, Collector, CollectorConfig
from harness.stats import BenchMeta, dist, inter_token_gaps
from protocol import messages as m

MS = 1_000_000
B = 1_000_000_000  # an arbitrary epoch; 0 means "never" in the columns


def events(worker, toks, started=(), finished=(), failed=()):
    rid, n, t = zip(*toks, strict=True) if toks else ((), (), ())
    return m.Events(
        worker,
        0,
        np.array(rid, np.int64).tobytes(),
        np.array(n, np.int32).tobytes(),
        np.array(t, np.int64).tobytes(),
        list(started),
        list(finished),
        list(failed),
    )


def fed_collector(slo=None):
    c = Collector(CollectorConfig("ipc://x", "ipc://y", "t", slo or {}))
    c.benches[0] = BenchState(0, B)
    # Request 0: scheduled at 0 ms, received at 1 ms, outputs of 1, 1 and 2 tokens at 10, 15, 25 ms.
    # Request 1: scheduled at 5 ms, received at 7 ms; its first output carries 2 tokens (20 ms),
    # then 1 token at 30 ms.
    c.ingest(
        events(
            0,
            [],
            started=[
                m.Started(0, 0, 0, B, B + 1 * MS, 100, 4),
                m.Started(1, 0, 0, B + 5 * MS, B + 7 * MS, 50, 3),
            ],
        )
    )
    c.ingest(events(0, [(0, 1, B + 10 * MS)]))
    # Two outputs of one request in one message: the lagging-consumer path.
    c.ingest(events(0, [(0, 2, B + 25 * MS), (0, 1, B + 15 * MS), (1, 2, B + 20 * MS)]))
    c.ingest(
        events(
            0,
            [(1, 1, B + 30 * MS)],
            finished=[
                m.Finished(
                    0,
                    4,
                    B + 25 * MS,
                    "length",
                    m.EngineTimes(B + 2 * MS, B + 3 * MS, B + 9 * MS, B + 25 * MS),
                ),
                m.Finished(1, 3, B + 30 * MS, "length"),
            ],
        )
    )
    return c


def result(c, slo=None):
    meta = BenchMeta(index=0, name="t", profile="synchronous", scheduled=2)
    end = m.EndBench(0, 2, msgspec.msgpack.encode(meta))
    return c.result(c.benches[0], end)


def test_hand_computed_latencies():
    r = result(fed_collector())
    assert r.requests.completed == 2 and r.requests.failed == 0 and r.requests.incomplete == 0
    assert r.ttft_ms.mean == pytest.approx(12.5)
    assert r.ttft_ms.p50 == pytest.approx(12.5)
    assert r.ttft_ms.p90 == pytest.approx(14.5)  # 10 + 0.9 * 5, linear interpolation
    assert r.ttft_ms.p99 == pytest.approx(14.95)
    assert (r.ttft_ms.min, r.ttft_ms.max) == pytest.approx((10.0, 15.0))
    # ITL pools [5, 5, 5] (request 0: 10->15, then 15->25 split over 2 tokens) and [0, 10].
    assert r.itl_ms.count == 5
    assert r.itl_ms.mean == pytest.approx(5.0)
    assert r.itl_ms.median == pytest.approx(5.0)
    assert r.itl_ms.p90 == pytest.approx(8.0)
    assert r.itl_ms.min == pytest.approx(0.0) and r.itl_ms.max == pytest.approx(10.0)
    # TPOT = (e2e - ttft) / (n - 1): (25 - 10) / 3 and (30 - 20) / 2.
    assert r.tpot_ms.mean == pytest.approx(5.0) and r.tpot_ms.std == pytest.approx(0.0)
    assert r.e2e_ms.mean == pytest.approx(25.0)
    assert r.dispatch_lag_ms.mean == pytest.approx(1.5)
    assert r.engine_queue_ms.mean == pytest.approx(1.0)
    assert r.engine_prefill_ms.mean == pytest.approx(6.0)


def test_hand_computed_throughput():
    r = result(fed_collector())
    assert r.duration_s == pytest.approx(0.030)
    assert r.throughput.requests_per_s == pytest.approx(2 / 0.030)
    assert r.throughput.output_tokens_per_s == pytest.approx(7 / 0.030)
    assert r.throughput.input_tokens_per_s == pytest.approx(150 / 0.030)
    assert r.throughput.total_tokens_per_s == pytest.approx(157 / 0.030)
    assert [(w.worker_id, w.completed, w.output_tokens) for w in r.workers] == [(0, 2, 7)]
    assert r.load.peak_inflight == 2
    assert r.timeseries.output_tokens == [7]
    assert r.timeseries.completions == [2]


def test_goodput_counts_requests_meeting_every_slo():
    c = fed_collector(slo={"ttft_ms": 12.0, "tpot_ms": 6.0})
    r = result(c)
    assert r.goodput.requests_per_s == pytest.approx(1 / 0.030)  # only request 0 (TTFT 10 ms)
    assert r.goodput.fraction == pytest.approx(0.5)


def test_failures_and_warmup_are_counted_once():
    c = Collector(CollectorConfig("ipc://x", "ipc://y", "t"))
    c.benches[0] = BenchState(0, B)
    started = [m.Started(i, 0, m.PHASE_WARMUP if i == 0 else 0, B, B + 1, 10, 2) for i in range(4)]
    c.ingest(events(0, [(0, 1, B + 5), (1, 1, B + 5), (2, 1, B + 5)], started=started))
    c.ingest(
        events(
            0,
            [(0, 1, B + 9), (1, 1, B + 9)],
            finished=[m.Finished(0, 2, B + 9, "length"), m.Finished(1, 2, B + 9, "length")],
            failed=[m.Failed(2, B + 9, "boom"), m.Failed(3, B + 9, "aborted", aborted=True)],
        )
    )
    meta = BenchMeta(index=0, name="t", profile="throughput", scheduled=5)
    r = c.result(c.benches[0], m.EndBench(0, 4, msgspec.msgpack.encode(meta)))
    q = r.requests
    assert (q.completed, q.failed, q.incomplete, q.warmup, q.cooldown) == (1, 1, 2, 1, 0)
    assert q.scheduled == q.completed + q.failed + q.incomplete + q.warmup + q.cooldown
    assert r.errors == {"boom": 1}
    assert r.ttft_ms.count == 1  # the warm-up request is not in the statistics


def test_inter_token_gaps_split_merged_outputs():
    gaps = inter_token_gaps(np.array([10, 40]), np.array([3, 2]), np.array([0, 20]))
    assert gaps.tolist() == [0.0, 0.0, 10.0, 10.0]


def test_dist_exact_percentiles():
    d = dist(np.arange(1, 101, dtype=float))
    assert (d.p50, d.p90, d.p99, d.p999) == pytest.approx((50.5, 90.1, 99.01, 99.901))
    assert d.count == 100 and d.min == 1 and d.max == 100
    assert dist(np.array([])) is None
