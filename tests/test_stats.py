"""Statistics through the collector's real ingest path, against vLLM's own ``calculate_metrics``.

One synthetic event stream holds every case that matters: multi-token outputs (a first
output of 2 tokens too), a 1-token output, a 0-token finish, a failure before and after
tokens, an abort, warm-up and cool-down requests, and a late dispatch. Each figure the
report names like a ``vllm bench serve`` figure must equal vLLM's on the same requests:
computed by vLLM itself where it is installed, and written below for where it is not.
"""

from __future__ import annotations

import importlib.util
import time
from types import SimpleNamespace

import numpy as np
import pytest

from harness.accumulator import BenchAccumulator
from harness.collector import LOST_GRACE_S, Collector, CollectorConfig
from protocol import messages as m

MS = 1_000_000
# The benchmark's start (t0): a whole second of this machine's monotonic clock, in the
# past, since the collector refuses times past now plus a margin (a fixed 10**12, 1,000 s,
# failed every test here on a machine booted less than 17 minutes before).
B = (time.monotonic_ns() // 10**9 - 1) * 10**9
W, C = m.PHASE_WARMUP, m.PHASE_COOLDOWN

# rid: (phase, sched, recv, outputs [(ms, tokens)], end (ms, kind[, error]))
STREAM = {
    0: (0, 0, 1, [(10, 1), (15, 1), (25, 2)], (26, "finished")),
    1: (0, 5, 7, [(20, 2), (30, 1)], (31, "finished")),  # a first output of 2 tokens
    2: (0, 6, 8, [(18, 1)], (19, "finished")),  # one token: no TPOT, no ITL
    3: (0, 7, 9, [], (12, "finished")),  # no output: vLLM counts it failed
    4: (0, 8, 10, [], (14, "failed", "boom")),  # fails before any token
    5: (0, 9, 11, [(16, 1), (22, 1)], (23, "failed", "late boom")),  # after tokens
    6: (0, 10, 12, [(17, 1)], (24, "aborted")),
    7: (W, 0, 2, [(4, 1), (5, 1)], (6, "finished")),  # warm-up: left out
    8: (C, 40, 41, [(45, 1), (47, 1)], (48, "finished")),  # cool-down: left out
    9: (0, 12, 32, [(40, 1), (50, 3), (52, 1)], (53, "finished")),  # dispatched 20 ms late
}
PROMPT = {rid: 100 + 10 * rid for rid in STREAM}
MAX_TOKENS = 8
SLO = {"ttft_ms": 9.5, "tpot_ms": 5.0, "e2e_ms": 30.0}


def ns(ms: float) -> int:
    return B + int(ms * MS)


def events(**parts) -> m.Events:
    toks = parts.pop("tokens", [])
    rid, n, t = zip(*toks, strict=True) if toks else ((), (), ())
    return m.Events(0, 0, np.array(rid, np.int64).tobytes(), np.array(n, np.int32).tobytes(),
                    np.array(t, np.int64).tobytes(), **parts)  # fmt: skip


def stream_messages() -> list[m.Events]:
    """STREAM as a worker sends it: every start, then outputs in time order, then the ends."""
    started = [
        m.Started(r, 0, ph, ns(s), ns(rv), PROMPT[r], MAX_TOKENS)
        for r, (ph, s, rv, *_) in STREAM.items()
    ]
    msgs = [events(started=started)]
    # Outputs arrive in time order, several requests per message, as a worker sends them.
    arrivals = sorted((t, r, k) for r, (_, _, _, outs, _) in STREAM.items() for t, k in outs)
    for i in range(0, len(arrivals), 3):
        msgs.append(events(tokens=[(r, k, ns(t)) for t, r, k in arrivals[i : i + 3]]))
    for r, (*_, end) in STREAM.items():
        if end[1] == "finished":
            n = sum(k for _, k in STREAM[r][3])
            msgs.append(events(finished=[m.Finished(r, n, ns(end[0]), "length")]))
        else:
            err = end[2] if len(end) > 2 else "aborted"
            msgs.append(events(failed=[m.Failed(r, ns(end[0]), err, end[1] == "aborted")]))
    return msgs


def feed(slo=None) -> tuple[Collector, BenchAccumulator]:
    c = Collector(CollectorConfig("ipc://x", "ipc://y", "t", slo or {}))
    c.bench = acc = BenchAccumulator(m.BeginBench(0, B, 0, 10, MAX_TOKENS, 10_000))
    for ev in stream_messages():
        c.ingest(ev, "ipc")
    return c, acc


def result(slo=None):
    c, acc = feed(slo)
    return c.result(acc, m.BenchInfo(0, "t", "constant", len(STREAM), 10.0))


def vllm_outputs() -> list[SimpleNamespace]:
    """The measured requests as vLLM's client would have recorded them (times from the send)."""
    out = []
    for r, (ph, _s, rv, outs, end) in STREAM.items():
        if ph != 0:
            continue
        ok = end[1] == "finished" and bool(outs)
        times = [(ns(t) - ns(rv)) / 1e9 for t, _ in outs]
        gaps = [(ns(b) - ns(a)) / 1e9 for (a, _), (b, _) in zip(outs, outs[1:], strict=False)]
        out.append(SimpleNamespace(
            success=ok, output_tokens=sum(k for _, k in outs) if ok else 0, prompt_len=PROMPT[r],
            ttft=times[0] if ok else 0.0, itl=gaps if ok else [], start_time=ns(rv) / 1e9,
            latency=(ns(outs[-1][0]) - ns(rv)) / 1e9 if ok else 0.0, generated_text="",
            error="" if ok else "x", input_audio_duration=0.0,
        ))  # fmt: skip
    return out


# vLLM 0.32's calculate_metrics on vllm_outputs(), dur_s = 0.053, goodput {ttft 9.5, tpot 5, e2el 30}.
EXPECTED = {
    "completed": 4, "failed": 4, "max_concurrent_requests": 4, "max_output_tokens_per_s": 9.0,
    "mean_e2el_ms": 19.25, "mean_itl_ms": 7.400000000000001, "mean_tpot_ms": 4.333333333333334,
    "mean_ttft_ms": 10.0, "median_e2el_ms": 21.5, "median_itl_ms": 10.0, "median_tpot_ms": 5.0,
    "median_ttft_ms": 9.5, "output_throughput": 245.28301886792454, "p99_e2el_ms":
    23.970000000000002, "p99_itl_ms": 10.0, "p99_tpot_ms": 5.0, "p99_ttft_ms":
    12.909999999999998, "request_goodput": 37.735849056603776, "request_throughput":
    75.47169811320755, "std_e2el_ms": 5.539629951540085, "std_itl_ms": 3.3226495451672298,
    "std_tpot_ms": 0.9428090415820634, "std_ttft_ms": 1.8708286933869707, "total_input": 520,
    "total_output": 13, "total_token_throughput": 10056.603773584906,
}  # fmt: skip


def vllm_metrics() -> dict[str, float]:
    """vLLM's own figures where it is installed, else the ones it gave (above)."""
    if importlib.util.find_spec("vllm") is None:
        return EXPECTED
    from vllm.benchmarks.serve import calculate_metrics

    outputs = vllm_outputs()
    goodput = {"ttft": SLO["ttft_ms"], "tpot": SLO["tpot_ms"], "e2el": SLO["e2e_ms"]}
    met, _ = calculate_metrics(
        [None] * len(outputs), outputs, result().duration_s, None, [99.0], goodput
    )
    got = {k: getattr(met, k) for k in EXPECTED if hasattr(met, k)}
    for name in ("ttft", "tpot", "itl", "e2el"):
        got[f"p99_{name}_ms"] = dict(getattr(met, f"percentiles_{name}_ms"))[99.0]
    return got


def ours(r) -> dict[str, float]:
    out = {
        "completed": r.requests.completed, "failed": r.requests.failed + r.requests.aborted,
        "total_output": int(r.output_tokens.mean * r.output_tokens.count),
        "total_input": int(r.prompt_tokens.mean * r.prompt_tokens.count),
        "request_throughput": r.throughput.requests_per_s,
        "output_throughput": r.throughput.output_tokens_per_s,
        "total_token_throughput": r.throughput.total_tokens_per_s,
        "request_goodput": r.goodput.from_send_requests_per_s,
        "max_output_tokens_per_s": r.throughput.max_output_tokens_per_s,
        "max_concurrent_requests": r.throughput.max_concurrent_requests,
    }  # fmt: skip
    for name, d in (
        ("ttft", r.ttft_from_send_ms),
        ("tpot", r.tpot_ms),
        ("itl", r.itl_ms),
        ("e2el", r.e2e_from_send_ms),
    ):
        out |= {
            f"mean_{name}_ms": d.mean,
            f"median_{name}_ms": d.median,
            f"std_{name}_ms": d.std,
            f"p99_{name}_ms": d.p99,
        }
    return out


def test_every_vllm_figure_equals_vllms_own():
    r = result(SLO)
    theirs = vllm_metrics()
    mine = ours(r)
    assert set(theirs) == set(EXPECTED)
    for key, value in theirs.items():
        assert mine[key] == value, key  # to the last digit: the same arithmetic on the same events
    assert {k: float(v) for k, v in theirs.items()} == EXPECTED  # the written values are vLLM's


def test_the_scheduled_clock_counts_the_late_dispatch():
    r = result(SLO)
    # Request 9 was scheduled at 12 ms and reached its worker at 32 ms: 28 ms to its first
    # token from its schedule, 8 ms from its send. TTFTs (ms) of requests 0, 1, 2 and 9:
    assert r.ttft_ms.max == pytest.approx(28.0)  # scheduled clock: 10, 15, 12, 28
    assert r.ttft_from_send_ms.max == pytest.approx(13.0)  # send clock: 9, 13, 10, 8
    assert r.ttft_from_send_ms.min == pytest.approx(8.0)
    assert r.e2e_ms.max == pytest.approx(40.0) and r.e2e_from_send_ms.max == pytest.approx(24.0)
    assert r.dispatch_lag_ms.max == pytest.approx(20.0) and r.dispatch_lag_ms.count == 8
    # TTFT <= 9.5 ms holds for requests 0 and 9 from their sends, for none from their schedules.
    assert r.goodput.requests_per_s == 0.0 and r.goodput.fraction == 0.0
    assert r.goodput.from_send_requests_per_s == pytest.approx(2 / r.duration_s)


def test_counts_and_errors():
    r = result()
    q = r.requests
    assert (q.scheduled, q.completed, q.failed, q.incomplete, q.aborted) == (10, 4, 3, 1, 1)
    assert (q.warmup, q.cooldown) == (1, 1)
    assert q.scheduled == q.completed + q.failed + q.incomplete + q.warmup + q.cooldown
    assert r.errors == {"finished with no output tokens": 1, "boom": 1, "late boom": 1}
    # ITL: one value per output gap of completed requests only (request 5's gap is not one).
    assert r.itl_ms.count == 2 + 1 + 0 + 2
    assert r.tpot_ms.count == 3  # requests 0, 1 and 9; request 2 had one token


def test_time_series_and_load_take_measured_requests_only():
    r = result()
    ts = r.timeseries
    assert ts.bin_s == 0.1
    assert sum(ts.sends) == 8 and sum(ts.completions) == 4
    assert sum(ts.output_tokens) == 4 + 3 + 1 + 2 + 1 + 5  # every measured output, failed ones too
    assert r.load.peak_inflight <= 8


def test_duplicate_and_foreign_records_are_rejected():
    c, acc = feed()
    before = acc.columns()["n_out"].copy()
    c.ingest(events(tokens=[(0, 1, ns(60))]), "ipc")  # request 0 has ended
    c.ingest(events(tokens=[(99, 1, ns(60))]), "ipc")  # not a request of this benchmark
    c.ingest(events(started=[m.Started(3, 0, 0, ns(1), ns(2), 5, 4)]), "ipc")  # started twice
    assert (acc.columns()["n_out"] == before).all()
    assert acc.late == 1 and sum(acc.rejected.values()) == 2


def _one_by_one_and_batched(
    msgs: list[m.Events], n: int
) -> tuple[BenchAccumulator, BenchAccumulator]:
    """The same messages ingested one at a time and in one batch; both must agree exactly."""
    accs = []
    for batched in (False, True):
        c = Collector(CollectorConfig("ipc://x", "ipc://y", "t", {}))
        c.bench = acc = BenchAccumulator(m.BeginBench(0, B, 0, n, MAX_TOKENS, 10_000))
        if batched:
            c.ingest_batch(msgs, "ipc")
        else:
            for ev in msgs:
                c.ingest(ev, "ipc")
        accs.append(acc)
    one, batch = accs
    for name, col in one.columns().items():
        assert (batch.columns()[name] == col).all(), name
    assert (batch.rejected, batch.late, batch.errors) == (one.rejected, one.late, one.errors)
    assert batch.out_tokens == one.out_tokens and batch.n_ended == one.n_ended
    return one, batch


def _from(wid: int, **parts) -> m.Events:
    ev = events(**parts)
    ev.worker_id = wid
    return ev


def test_a_batch_of_messages_is_ingested_as_they_would_be_one_by_one():
    """The collector takes what is queued in one pass (each worker's starts, outputs and
    ends gathered): the columns and every count must be those of one message at a time."""
    one, _ = _one_by_one_and_batched(stream_messages(), 10)
    assert one.out_tokens == 20 and one.n_ended == 10


def test_a_batch_keeps_each_workers_order_and_a_bad_record_costs_only_itself():
    """Two workers interleaved; worker 0 fails request 0 and then says it finished (the
    failure stands); a start and an end with values past int64 are rejected alone."""
    start = [m.Started(r, 0, 0, ns(r), ns(r + 1), 10, MAX_TOKENS) for r in range(6)]
    huge = m.Started(6, 0, 0, 2**64 - 1, ns(2), 10, MAX_TOKENS)
    msgs = [
        _from(0, started=start[:3]),
        _from(1, started=[*start[3:], huge]),
        _from(0, tokens=[(0, 1, ns(5)), (1, 1, ns(5)), (2, 1, ns(5))]),
        _from(1, tokens=[(3, 1, ns(5)), (4, 1, ns(5)), (5, 1, ns(5))]),
        _from(0, failed=[m.Failed(0, ns(6), "boom")]),
        _from(1, finished=[m.Finished(3, 1, ns(7), "length"), m.Finished(4, 1, 2**64 - 1, "length")]),
        _from(0, finished=[m.Finished(0, 1, ns(7), "length"), m.Finished(1, 1, ns(7), "length")]),
        _from(1, failed=[m.Failed(5, ns(8), "bust")]),
        _from(0, failed=[m.Failed(2, ns(8), "boom")]),
    ]  # fmt: skip
    _, acc = _one_by_one_and_batched(msgs, 8)
    status = acc.columns()["status"]
    assert list(status[:6]) == [2, 1, 2, 1, 0, 2]  # 0 failed first; 4's end did not fit
    assert acc.errors == {"boom": 2, "bust": 1}
    assert acc.rejected == {
        "bad started (ipc)": 1,
        "bad end (ipc)": 1,
        "end of a request that is not running here (ipc)": 1,
    }


def test_in_one_batch_a_repeat_or_another_workers_end_is_rejected():
    c = Collector(CollectorConfig("ipc://x", "ipc://y", "t", {}))
    c.bench = acc = BenchAccumulator(m.BeginBench(0, B, 0, 4, MAX_TOKENS, 10_000))
    start = [m.Started(r, 0, 0, ns(r), ns(r + 1), 10, MAX_TOKENS) for r in range(2)]
    other = events(finished=[m.Finished(1, 1, ns(9), "length")])
    other.worker_id = 1  # request 1 runs on worker 0
    c.ingest_batch([
        events(started=start),
        events(started=start[:1]),  # request 0 started again
        events(tokens=[(0, 1, ns(5)), (1, 1, ns(6))]),
        events(finished=[m.Finished(0, 1, ns(8), "length")]),
        events(finished=[m.Finished(0, 1, ns(9), "length")]),  # and ended again
        other,
    ], "ipc")  # fmt: skip
    assert acc.rejected == {
        "bad, foreign or repeated started (ipc)": 1,
        "end of a request that is not running here (ipc)": 2,
    }
    assert list(acc.columns()["status"][:2]) == [1, 0]  # 0 completed, 1 still running


def test_ends_and_tokens_before_any_start_are_rejected_not_fatal():
    """Found by the hostile-frames test: before the first start there are no columns to index."""
    c = Collector(CollectorConfig("ipc://x", "ipc://y", "t", {}))
    c.bench = acc = BenchAccumulator(m.BeginBench(0, B, 0, 10, MAX_TOKENS, 10_000))
    c.ingest(events(tokens=[(1, 1, ns(5))]), "ipc")
    c.ingest(events(finished=[m.Finished(2, 1, ns(6), "length")]), "ipc")
    c.ingest(events(failed=[m.Failed(3, ns(6), "boom")]), "ipc")
    assert acc.size == 0 and sum(acc.rejected.values()) == 3


def test_a_request_the_model_stopped_is_counted_and_on_record():
    from harness.records import record

    c = Collector(CollectorConfig("ipc://x", "ipc://y", "t", {}))
    c.bench = acc = BenchAccumulator(m.BeginBench(0, B, 0, 3, MAX_TOKENS, 10_000))
    c.ingest(
        events(started=[m.Started(r, 0, 0, ns(r), ns(r + 1), 10, MAX_TOKENS) for r in range(3)]),
        "ipc",
    )
    c.ingest(events(tokens=[(0, MAX_TOKENS, ns(5)), (1, 3, ns(6)), (2, 2, ns(7))]), "ipc")
    c.ingest(events(finished=[m.Finished(0, MAX_TOKENS, ns(8), "length"), m.Finished(1, 3, ns(9), "stop"),
                              m.Finished(2, 2, ns(9), "\\xff-unheard-of")]), "ipc")  # fmt: skip
    res = c.result(acc, m.BenchInfo(0, "b", "throughput", 3))
    assert (res.requests.completed, res.requests.stopped) == (3, 1)
    assert (res.output_tokens.min, res.output_tokens.max) == (2, MAX_TOKENS)  # as measured
    rows = [record(acc, k, "b", None) for k in range(3)]
    assert [(r.finish_reason, r.output_tokens) for r in rows] == [
        ("length", MAX_TOKENS), ("stop", 3), ("other", 2)]  # fmt: skip


class _Dealer:
    def __init__(self) -> None:
        self.sent: list[m.CollectorToCoordinator] = []

    def send(self, data: bytes) -> None:
        from protocol import codec

        self.sent.append(codec.from_collector().decode(data))


def test_ends_that_died_with_their_worker_fail_and_late_ones_still_count():
    """kill -9 between a worker's Done (heard) and its events (lost): every request is still
    counted once. 0 ended as usual; 1's end arrives after the Lost; 2's end died with the
    worker; 3 was in flight; 4's start and end both died (the collector never heard of it)."""
    c = Collector(CollectorConfig("ipc://x", "ipc://y", "t", {}))
    c.bench = acc = BenchAccumulator(m.BeginBench(0, B, 0, 5, MAX_TOKENS, 10_000))
    spec = {r: m.Started(r, 0, 0, ns(r), 0, 10, MAX_TOKENS) for r in range(5)}
    c.ingest(events(started=[m.Started(r, 0, 0, ns(r), ns(r + 1), 10, MAX_TOKENS) for r in range(4)]),
             "ipc")  # fmt: skip
    c.ingest(events(tokens=[(r, 1, ns(10 + r)) for r in range(4)]), "ipc")
    c.ingest(events(finished=[m.Finished(0, 1, ns(20), "length")]), "ipc")
    why = "worker 0 died (killed by signal 9)"
    c.control(m.Lost(0, [spec[3]], why, ns(30), [spec[r] for r in (0, 1, 2, 4)]), _Dealer())
    c.ingest(events(finished=[m.Finished(1, 1, ns(21), "length")]), "ipc")  # already on its way
    dealer = _Dealer()
    c.control(m.EndBench(0, 5, m.BenchInfo(0, "b", "constant", 5, 1.0)), dealer)
    c._finish_if_done(dealer)
    assert dealer.sent == []  # its last events may still be on their way: not yet
    acc.lost_at -= LOST_GRACE_S + 1
    c._finish_if_done(dealer)
    (res,) = [msg.result for msg in dealer.sent]
    q = res.requests
    assert (q.scheduled, q.completed, q.failed, q.incomplete) == (5, 2, 3, 0)
    assert res.errors == {why: 3}


def test_a_dead_workers_late_events_still_count_while_others_run():
    """The check for stranded requests changes nothing: events of a dead worker that come
    after the grace (a slow path) still complete their request, with its real receipt."""
    import msgspec

    c = Collector(CollectorConfig("ipc://x", "ipc://y", "t", {}))
    c.bench = acc = BenchAccumulator(m.BeginBench(0, B, 0, 2, MAX_TOKENS, 10_000))
    on_1 = msgspec.structs.replace(
        events(started=[m.Started(0, 0, 0, ns(0), ns(1), 10, MAX_TOKENS)]), worker_id=1
    )
    c.ingest(on_1, "ipc")  # request 0 runs on worker 1, alive
    spec = m.Started(1, 0, 0, ns(1), 0, 10, MAX_TOKENS)
    c.control(m.Lost(0, [], "worker 0 died (cut off)", ns(30), [spec]), _Dealer())
    dealer = _Dealer()
    c.control(m.EndBench(0, 2, m.BenchInfo(0, "b", "constant", 2, 1.0)), dealer)
    acc.lost_at -= LOST_GRACE_S + 1
    c._finish_if_done(dealer)
    assert dealer.sent == [] and acc.stranded() == 1 and not acc.c["started"][1]
    c.ingest(events(started=[m.Started(1, 0, 0, ns(1), ns(3), 10, MAX_TOKENS)]), "ipc")
    c.ingest(events(tokens=[(1, 1, ns(9))], finished=[m.Finished(1, 1, ns(10), "length")]), "ipc")
    done_1 = events(tokens=[(0, 1, ns(11))], finished=[m.Finished(0, 1, ns(12), "length")])
    c.ingest(msgspec.structs.replace(done_1, worker_id=1), "ipc")
    c._finish_if_done(dealer)
    (res,) = [msg.result for msg in dealer.sent]
    assert (res.requests.completed, res.requests.failed) == (2, 0)
    ttft = res.ttft_from_send_ms  # from each one's receipt: 9 - 3 ms and 11 - 1 ms
    assert (ttft.min, ttft.max) == (pytest.approx(6.0), pytest.approx(10.0))
