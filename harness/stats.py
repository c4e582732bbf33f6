"""Statistics from per-request columns and pooled inter-token gaps. Pure functions of numpy arrays.

Definitions (the same as ``vllm bench serve``; docs/metrics.md has them in full):
TTFT = first token - scheduled send; E2E = end - scheduled send;
TPOT = (E2E - TTFT) / (output tokens - 1); ITL pools every gap between token
arrivals, an output of k tokens splitting its gap evenly over them;
dispatch lag = received by the worker - scheduled send.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import numpy as np

from harness.schema import (
    CDF_PERCENTILES,
    BenchmarkResult,
    Dist,
    Goodput,
    Load,
    RequestCounts,
    Throughput,
    TimeSeries,
    WorkerStats,
)
from protocol.messages import PHASE_COOLDOWN, PHASE_MEASURED, PHASE_WARMUP

# Request status codes in the collector's columns.
PENDING, COMPLETED, FAILED, ABORTED = 0, 1, 2, 3

_PCTS = [50.0, 90.0, 95.0, 99.0, 99.9]


def dist(values: np.ndarray, scale: float = 1.0) -> Dist | None:
    if len(values) == 0:
        return None
    v = np.asarray(values, dtype=np.float64) * scale
    p50, p90, p95, p99, p999 = (float(x) for x in np.percentile(v, _PCTS))
    return Dist(
        count=int(len(v)),
        mean=float(v.mean()),
        median=p50,
        std=float(v.std()),
        min=float(v.min()),
        max=float(v.max()),
        p50=p50,
        p90=p90,
        p95=p95,
        p99=p99,
        p999=p999,
    )


@dataclass
class Requests:
    """One benchmark's requests as columns (times in CLOCK_MONOTONIC ns, 0 = never happened)."""

    rid: np.ndarray
    phase: np.ndarray
    status: np.ndarray
    worker: np.ndarray
    sched: np.ndarray
    recv: np.ndarray
    first: np.ndarray
    end: np.ndarray
    prompt_len: np.ndarray
    n_out: np.ndarray
    eng_queued: np.ndarray
    eng_sched: np.ndarray
    eng_first: np.ndarray


class BenchMeta(msgspec.Struct):
    """What only the coordinator knows about a benchmark."""

    index: int
    name: str
    profile: str
    scheduled: int
    requested_rate: float | None = None
    concurrency: int | None = None


_MS = 1e-6


def inter_token_gaps(t_ns: np.ndarray, n: np.ndarray, prev_ns: np.ndarray) -> np.ndarray:
    """Gaps for outputs seen at ``t_ns`` carrying ``n`` tokens, the request's previous output at ``prev_ns``.

    ``prev_ns == 0`` marks a request's first output: its first token is the
    TTFT, and its other tokens arrived with it (gaps of 0). Otherwise the gap
    is split evenly over the output's tokens. Per request the gaps then sum
    to (last - first token time), and number output_tokens - 1.
    """
    first = prev_ns == 0
    count = np.where(first, n - 1, n)
    gap = np.where(first, 0, (t_ns - prev_ns) / np.maximum(n, 1))
    return np.repeat(gap.astype(np.float64), np.maximum(count, 0))


def _inflight(starts: np.ndarray, ends: np.ndarray, t_lo: int, t_hi: int) -> tuple[int, float]:
    """Peak and time-weighted mean of the number of open [start, end) intervals in [t_lo, t_hi]."""
    if len(starts) == 0 or t_hi <= t_lo:
        return 0, 0.0
    times = np.concatenate([starts, ends])
    steps = np.concatenate([np.ones(len(starts), np.int64), -np.ones(len(ends), np.int64)])
    order = np.lexsort((steps, times))  # ends before starts at equal times
    times, level = times[order], np.cumsum(steps[order])
    peak = int(level.max())
    clipped = np.clip(times, t_lo, t_hi)
    widths = np.diff(np.append(clipped, t_hi))
    mean = float((level * widths).sum() / (t_hi - t_lo))
    return peak, mean


def _bincount(
    t_ns: np.ndarray, t0_ns: int, nbins: int, weights: np.ndarray | None = None
) -> list[int]:
    if nbins == 0:
        return []
    idx = ((t_ns - t0_ns) // 1_000_000_000).astype(np.int64)
    keep = (idx >= 0) & (idx < nbins)
    w = None if weights is None else weights[keep]
    return [int(x) for x in np.bincount(idx[keep], weights=w, minlength=nbins)[:nbins]]


def benchmark_result(
    meta: BenchMeta,
    r: Requests,
    itl_ns: np.ndarray,
    token_bins: np.ndarray,
    t0_ns: int,
    slo: dict[str, float] | None = None,
    errors: dict[str, int] | None = None,
) -> BenchmarkResult:
    meas = r.phase == PHASE_MEASURED
    comp = meas & (r.status == COMPLETED)
    fail = meas & (r.status == FAILED)
    n_comp, n_fail = int(comp.sum()), int(fail.sum())
    warm = int((r.phase == PHASE_WARMUP).sum())
    cool = int((r.phase == PHASE_COOLDOWN).sum())
    counts = RequestCounts(
        scheduled=meta.scheduled,
        completed=n_comp,
        failed=n_fail,
        incomplete=max(meta.scheduled - n_comp - n_fail - warm - cool, 0),
        warmup=warm,
        cooldown=cool,
    )

    ended = meas & (r.end > 0)
    if meas.any() and ended.any():
        t_start = int(r.sched[meas].min())
        t_end = int(r.end[ended].max())
        duration = max(t_end - t_start, 1) / 1e9
    else:
        duration = 0.0

    out_tok = r.n_out[comp].astype(np.int64)
    in_tok = r.prompt_len[comp].astype(np.int64)

    def rate(x: float) -> float:
        return x / duration if duration > 0 else 0.0

    throughput = Throughput(
        requests_per_s=rate(n_comp),
        output_tokens_per_s=rate(float(out_tok.sum())),
        input_tokens_per_s=rate(float(in_tok.sum())),
        total_tokens_per_s=rate(float(out_tok.sum() + in_tok.sum())),
    )

    has_first = comp & (r.first > 0)
    ttft = (r.first[has_first] - r.sched[has_first]).astype(np.float64)
    e2e = (r.end[comp] - r.sched[comp]).astype(np.float64)
    multi = has_first & (r.n_out > 1)
    tpot = (r.end[multi] - r.first[multi]) / (r.n_out[multi] - 1.0)
    got = meas & (r.recv > 0)
    lag = (r.recv[got] - r.sched[got]).astype(np.float64)
    eng = comp & (r.eng_sched > 0) & (r.eng_queued > 0)
    eng_queue = (r.eng_sched[eng] - r.eng_queued[eng]).astype(np.float64)
    engf = eng & (r.eng_first > 0)
    eng_prefill = (r.eng_first[engf] - r.eng_sched[engf]).astype(np.float64)

    workers = []
    for w in np.unique(r.worker[meas & (r.recv > 0)]).tolist():
        mine = r.worker == w
        w_out = int(r.n_out[comp & mine].sum())
        workers.append(
            WorkerStats(
                worker_id=int(w),
                completed=int((comp & mine).sum()),
                failed=int((fail & mine).sum()),
                output_tokens=w_out,
                output_tokens_per_s=rate(float(w_out)),
            )
        )

    sent = r.recv > 0
    last = int(r.end.max()) if len(r.end) and r.end.max() > 0 else t0_ns
    ends = np.where(r.end[sent] > 0, r.end[sent], last)
    peak, mean_inflight = _inflight(r.recv[sent], ends, t0_ns, last)
    meas_recv = np.sort(r.recv[meas & sent])
    span = float(meas_recv[-1] - meas_recv[0]) / 1e9 if len(meas_recv) > 1 else 0.0
    load = Load(
        profile=meta.profile,
        requested_rate=meta.requested_rate,
        concurrency=meta.concurrency,
        achieved_send_rate=float((len(meas_recv) - 1) / span) if span > 0 else 0.0,
        peak_inflight=peak,
        mean_inflight=mean_inflight,
    )

    nbins = int(np.ceil((last - t0_ns) / 1e9)) if last > t0_ns else 0
    bin_ends = t0_ns + (np.arange(nbins, dtype=np.int64) + 1) * 1_000_000_000
    starts_sorted = np.sort(r.recv[sent])
    ends_sorted = np.sort(ends)
    inflight_at = np.searchsorted(starts_sorted, bin_ends, "right") - np.searchsorted(
        ends_sorted, bin_ends, "right"
    )
    tokens = [int(x) for x in token_bins[:nbins]] + [0] * max(nbins - len(token_bins), 0)
    series = TimeSeries(
        t_s=[float(i + 1) for i in range(nbins)],
        sends=_bincount(r.recv[sent], t0_ns, nbins),
        completions=_bincount(r.end[r.end > 0], t0_ns, nbins),
        output_tokens=tokens,
        inflight=[int(x) for x in inflight_at],
    )

    goodput = None
    if slo:
        ok = np.ones(n_comp, bool)
        c_ttft = np.where(r.first[comp] > 0, r.first[comp] - r.sched[comp], np.inf) * _MS
        c_e2e = (r.end[comp] - r.sched[comp]) * _MS
        n_c = r.n_out[comp]
        c_tpot = np.where(n_c > 1, (r.end[comp] - r.first[comp]) / np.maximum(n_c - 1, 1), 0) * _MS
        for key, limit in slo.items():
            vals = {"ttft_ms": c_ttft, "tpot_ms": c_tpot, "e2e_ms": c_e2e}[key]
            ok &= vals <= limit
        good = int(ok.sum())
        goodput = Goodput(
            slo=dict(slo),
            requests_per_s=rate(good),
            fraction=good / n_comp if n_comp else 0.0,
        )

    cdf = {
        name: [float(x) for x in np.percentile(vals * _MS, CDF_PERCENTILES)]
        for name, vals in (
            ("ttft_ms", ttft),
            ("tpot_ms", tpot),
            ("itl_ms", itl_ns),
            ("e2e_ms", e2e),
        )
        if len(vals)
    }
    return BenchmarkResult(
        cdf_ms=cdf,
        index=meta.index,
        name=meta.name,
        load=load,
        requests=counts,
        duration_s=duration,
        throughput=throughput,
        ttft_ms=dist(ttft, _MS),
        itl_ms=dist(itl_ns, _MS),
        tpot_ms=dist(tpot, _MS),
        e2e_ms=dist(e2e, _MS),
        dispatch_lag_ms=dist(lag, _MS),
        engine_queue_ms=dist(eng_queue, _MS),
        engine_prefill_ms=dist(eng_prefill, _MS),
        prompt_tokens=dist(in_tok),
        output_tokens=dist(out_tok),
        workers=workers,
        timeseries=series,
        goodput=goodput,
        errors=dict(errors or {}),
    )
