"""Statistics of one benchmark, from its per-request columns. Pure functions of numpy arrays.

Every figure named like a ``vllm bench serve`` figure is computed as vLLM's
``calculate_metrics`` computes it, in the same arithmetic: values in seconds
(float64), in request (send) order, then multiplied by 1000; population std;
linear percentiles. docs/metrics.md states each definition, its clock and its
population. In short, over completed measured requests (success: at least one
output token):

- TTFT = first output - scheduled send (``ttft_ms``) or - the worker's receipt
  (``ttft_from_send_ms``, vLLM's client clock); E2E likewise, to the last output;
- TPOT = (E2E - TTFT) / (output tokens - 1), for requests of more than one token;
- ITL = one value per output after the first: the gap to the previous output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.accumulator import ABORTED, COMPLETED, FAILED, FINISH_STOP
from protocol.messages import PHASE_COOLDOWN, PHASE_MEASURED, PHASE_WARMUP, BenchInfo
from protocol.results import (
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

_PCTS = [50.0, 90.0, 95.0, 99.0, 99.9]
_S = 1e9  # ns per second
SLO_METRICS = {"ttft_ms": "ttft", "tpot_ms": "tpot", "e2e_ms": "e2e"}
# Time-series bin widths (s): the smallest that keeps a benchmark within MAX_BINS.
BIN_WIDTHS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 3600.0)
MAX_BINS = 240


def dist(values_s: np.ndarray, scale: float = 1000.0) -> Dist | None:
    """A distribution of values in seconds, reported in ms exactly as vLLM reports them
    (each statistic taken in seconds, then multiplied by 1000); ``scale=1`` for counts."""
    if len(values_s) == 0:
        return None
    v = np.asarray(values_s, dtype=np.float64)

    def f(x: float) -> float:
        return float(x * scale) if scale != 1 else float(x)

    p50, p90, p95, p99, p999 = (f(np.percentile(v, p)) for p in _PCTS)
    return Dist(count=int(len(v)), mean=f(np.mean(v)), median=f(np.median(v)), std=f(np.std(v)),
                min=f(v.min()), max=f(v.max()), p50=p50, p90=p90, p95=p95, p99=p99, p999=p999)  # fmt: skip


@dataclass
class Latencies:
    """Per completed measured request, in send order (seconds)."""

    ttft: np.ndarray
    ttft_send: np.ndarray
    e2e: np.ndarray
    e2e_send: np.ndarray
    tpot: np.ndarray  # requests of more than one output token
    all_tpot: np.ndarray  # every request, 0 where it had one token (as vLLM's goodput)
    itl: np.ndarray  # every output gap


def latencies(
    c: dict[str, np.ndarray], comp: np.ndarray, chunks: tuple[np.ndarray, ...]
) -> Latencies:
    first, last, sched, recv = (c[k][comp] for k in ("first", "last", "sched", "recv"))
    n = c["n_out"][comp].astype(np.float64)
    ttft, ttft_send = (first - sched) / _S, (first - recv) / _S
    e2e, e2e_send = (last - sched) / _S, (last - recv) / _S
    multi = n > 1
    # vLLM: (latency - ttft) / (output_len - 1), on its client's clock (from the send).
    tpot = (e2e_send[multi] - ttft_send[multi]) / (n[multi] - 1)
    all_tpot = np.zeros(len(n))
    all_tpot[multi] = tpot
    ck, gap = chunks
    later = np.zeros(len(ck), bool)
    later[1:] = ck[1:] == ck[:-1]
    later &= comp[chunk_rows(c, ck)]
    itl = gap[later] / _S
    return Latencies(ttft, ttft_send, e2e, e2e_send, tpot, all_tpot, itl)


def chunk_rows(c: dict[str, np.ndarray], ck: np.ndarray) -> np.ndarray:
    """Each output's position among the started rows (its own row where every row started)."""
    k = c["k"]
    if not len(k) or int(k[-1]) == len(k) - 1:
        return ck
    return np.searchsorted(k, ck).astype(np.int32)


def goodput(lat: Latencies, slo: dict[str, float], send_clock: bool) -> np.ndarray:
    """Which requests met every SLO: ``slo >= value``, compared in seconds, as vLLM does."""
    good = np.ones(len(lat.ttft), bool)
    for key, limit_ms in slo.items():
        name = SLO_METRICS[key]
        if name == "tpot":
            vals = lat.all_tpot
        else:
            vals = getattr(lat, f"{name}_send" if send_clock else name)
        good &= (limit_ms / 1000) >= vals
    return good


def _inflight(starts: np.ndarray, ends: np.ndarray, t_lo: int, t_hi: int) -> tuple[int, float]:
    """Peak and time-weighted mean of the number of open [start, end) intervals in [t_lo, t_hi].

    The mean is each interval's overlap with the window, summed; the peak is at a start:
    the starts up to it minus the ends up to it (an end at the same time closes first).
    """
    if len(starts) == 0 or t_hi <= t_lo:
        return 0, 0.0
    overlap = np.clip(np.minimum(ends, t_hi) - np.maximum(starts, t_lo), 0, None)
    mean = float(overlap.sum() / (t_hi - t_lo))
    del overlap
    s = np.sort(starts)
    open_at = np.arange(1, len(s) + 1) - np.searchsorted(np.sort(ends), s, "right")
    return int(open_at.max()), mean


def vllm_peaks(
    c: dict[str, np.ndarray], comp: np.ndarray, chunks: tuple[np.ndarray, ...]
) -> tuple[float, int]:
    """vLLM's max_output_tokens_per_s and max_concurrent_requests, computed its way.

    One-second buckets from the earliest send of a successful request: each output
    counts once (as vLLM counts each streamed chunk), and a request counts in every
    bucket from its send to its last output.
    """
    if not comp.any():
        return 0.0, 0
    start = c["recv"][comp] / _S
    lat = (c["last"][comp] - c["recv"][comp]) / _S
    ttft = (c["first"][comp] - c["recv"][comp]) / _S
    lo = float(start.min())
    nb = int(np.ceil(float((start + lat).max()) - lo)) + 1
    tokens = _output_buckets(c, comp, chunks, (start + ttft), lo, nb)
    s0 = (start - lo).astype(np.int64)
    s1 = (start + lat - lo).astype(np.int64) + 1
    conc = np.bincount(s0, minlength=nb + 1)[: nb + 1] - np.bincount(s1, minlength=nb + 1)[: nb + 1]
    return float(tokens.max()), int(np.cumsum(conc)[:nb].max())


def _output_buckets(c: dict[str, np.ndarray], comp: np.ndarray, chunks: tuple[np.ndarray, ...],
                    first_s: np.ndarray, lo: float, nb: int) -> np.ndarray:  # fmt: skip
    """Completed requests' outputs per one-second bucket, at the times vLLM reconstructs."""
    ck, gap = chunks
    row = chunk_rows(c, ck)
    keep = comp[row]
    if not keep.any():
        return np.zeros(nb)
    pos = (np.cumsum(comp, dtype=np.int32) - 1)[row[keep] if not keep.all() else row]
    if not keep.all():
        ck, gap = ck[keep], gap[keep]
    first = np.ones(len(ck), bool)
    first[1:] = ck[1:] != ck[:-1]
    steps = gap / _S
    steps[first] = first_s[pos[first]]
    del pos
    # vLLM adds each gap to a running float: a cumulative sum restarted per request.
    b = (_segment_cumsum(steps, first) - lo).astype(np.int32)
    del steps
    b = b[(b >= 0) & (b < nb)]
    return np.bincount(b, minlength=nb)[:nb].astype(np.float64)


def _segment_cumsum(steps: np.ndarray, starts: np.ndarray, block: int = 1 << 20) -> np.ndarray:
    """Running sums of ``steps`` that restart where ``starts`` is set, added left to right.

    Each segment becomes a row of a zero-padded matrix, so ``cumsum`` along rows adds in
    the same order as vLLM's loop (adding 0.0 changes nothing); rows go in blocks to cap memory.
    """
    begin = np.flatnonzero(starts)
    length = np.diff(np.append(begin, len(steps)))
    out = np.empty(len(steps))
    i = 0
    while i < len(begin):
        width = int(length[i:].max())
        rows = max(1, min(len(begin) - i, block // max(width, 1)))
        b, n = begin[i : i + rows], length[i : i + rows]
        col = np.arange(width)
        mask = col[None, :] < n[:, None]
        where = (b[:, None] + col[None, :])[mask]
        mat = np.zeros((rows, width))
        mat[mask] = steps[where]
        out[where] = np.cumsum(mat, axis=1)[mask]
        i += rows
    return out


def bin_width(span_s: float) -> float:
    for w in BIN_WIDTHS:
        if span_s / w <= MAX_BINS:
            return w
    return BIN_WIDTHS[-1]


def timeseries(c: dict[str, np.ndarray], meas: np.ndarray, comp: np.ndarray, token_bins: np.ndarray,
               t0: int, t_end: int, fine_ns: int) -> TimeSeries:  # fmt: skip
    """Measured requests' sends, completions, output tokens and in-flight count per bin."""
    span = max(t_end - t0, 0) / _S
    w = bin_width(span)
    w_ns = int(round(w * _S))
    nb = int(np.ceil(span / w)) if span > 0 else 0
    sent = meas & (c["recv"] > 0)
    ends = np.where(c["end"][sent] > 0, c["end"][sent], t_end)

    def count(t: np.ndarray) -> list[int]:
        idx = (t - t0) // w_ns
        idx = idx[(idx >= 0) & (idx < nb)]
        return np.bincount(idx, minlength=nb)[:nb].astype(int).tolist() if nb else []

    per = max(w_ns // fine_ns, 1)
    fine = token_bins[: nb * per]
    fine = np.pad(fine, (0, nb * per - len(fine)))
    tokens = fine.reshape(nb, per).sum(axis=1).astype(int).tolist() if nb else []
    # Bins are whole multiples of the collector's 100 ms bins, so tokens land in the bin of
    # their arrival exactly.
    bin_ends = t0 + (np.arange(nb, dtype=np.int64) + 1) * w_ns
    inflight = np.searchsorted(np.sort(c["recv"][sent]), bin_ends, "right") - np.searchsorted(
        np.sort(ends), bin_ends, "right"
    )
    return TimeSeries(
        t_s=[round((i + 1) * w, 6) for i in range(nb)],
        sends=count(c["recv"][sent]),
        completions=count(c["end"][comp]),
        output_tokens=tokens,
        inflight=[int(x) for x in inflight],
        bin_s=w,
    )


def _counts(info: BenchInfo, c: dict[str, np.ndarray]) -> RequestCounts:
    ph, st = c["phase"], c["status"]
    meas = ph == PHASE_MEASURED
    comp, fail = int((meas & (st == COMPLETED)).sum()), int((meas & (st == FAILED)).sum())
    warm, cool = int((ph == PHASE_WARMUP).sum()), int((ph == PHASE_COOLDOWN).sum())
    return RequestCounts(
        scheduled=info.scheduled, completed=comp, failed=fail,
        incomplete=max(info.scheduled - comp - fail - warm - cool, 0),
        warmup=warm, cooldown=cool, aborted=int((meas & (st == ABORTED)).sum()),
        stopped=int((meas & (st == COMPLETED) & (c["finish"] == FINISH_STOP)).sum()),
    )  # fmt: skip


def _workers(
    c: dict[str, np.ndarray], meas: np.ndarray, comp: np.ndarray, rate
) -> list[WorkerStats]:  # type: ignore[no-untyped-def]
    out = []
    fail = meas & (c["status"] == FAILED)
    for w in np.unique(c["worker"][meas & (c["recv"] > 0)]).tolist():
        mine = c["worker"] == w
        tok = int(c["n_out"][comp & mine].sum())
        out.append(WorkerStats(worker_id=int(w), completed=int((comp & mine).sum()),
                               failed=int((fail & mine).sum()), output_tokens=tok,
                               output_tokens_per_s=rate(float(tok))))  # fmt: skip
    return out


def _load(info: BenchInfo, c: dict[str, np.ndarray], meas: np.ndarray, t0: int, t_end: int) -> Load:
    sent = meas & (c["recv"] > 0)
    recv = np.sort(c["recv"][sent])
    span = float(recv[-1] - recv[0]) / _S if len(recv) > 1 else 0.0
    ends = np.where(c["end"][sent] > 0, c["end"][sent], t_end)
    peak, mean = _inflight(c["recv"][sent], ends, int(recv[0]) if len(recv) else t0, t_end)
    return Load(profile=info.profile, requested_rate=info.requested_rate, concurrency=info.concurrency,
                achieved_send_rate=float((len(recv) - 1) / span) if span > 0 else 0.0,
                peak_inflight=peak, mean_inflight=mean, max_concurrency=info.max_concurrency)  # fmt: skip


def _engine_dists(
    c: dict[str, np.ndarray], comp: np.ndarray, meas: np.ndarray
) -> dict[str, Dist | None]:
    got = meas & (c["recv"] > 0)
    release = np.maximum(c["sched"], c["release"])
    eng = comp & (c["eng_sched"] > 0) & (c["eng_queued"] > 0)
    engf = eng & (c["eng_first"] > 0)
    disp = got & (c["dispatched"] > 0)
    return {
        "dispatch_lag_ms": dist((c["recv"][got] - release[got]) / _S),
        "pacing_lag_ms": dist((c["dispatched"][disp] - release[disp]) / _S),
        "delivery_ms": dist((c["recv"][disp] - c["dispatched"][disp]) / _S),
        "engine_queue_ms": dist((c["eng_sched"][eng] - c["eng_queued"][eng]) / _S),
        "engine_prefill_ms": dist((c["eng_first"][engf] - c["eng_sched"][engf]) / _S),
    }


def benchmark_result(
    info: BenchInfo,
    c: dict[str, np.ndarray],
    chunks: tuple[np.ndarray, np.ndarray],
    token_bins: np.ndarray,
    t0_ns: int,
    fine_ns: int,
    slo: dict[str, float] | None = None,
    errors: dict[str, int] | None = None,
) -> BenchmarkResult:
    meas = c["phase"] == PHASE_MEASURED
    comp = meas & (c["status"] == COMPLETED)
    ended = meas & (c["end"] > 0)
    t_start = int(c["sched"][meas].min()) if meas.any() else t0_ns
    t_end = int(c["end"][ended].max()) if ended.any() else t_start
    duration = max(t_end - t_start, 1) / _S if ended.any() else 0.0

    def rate(x: float) -> float:
        return x / duration if duration > 0 else 0.0

    out_tok = c["n_out"][comp].astype(np.int64)
    in_tok = c["prompt_len"][comp].astype(np.int64)
    lat = latencies(c, comp, chunks)
    good = None
    if slo:
        g, gs = goodput(lat, slo, False), goodput(lat, slo, True)
        n = int(comp.sum())
        good = Goodput(slo=dict(slo), requests_per_s=rate(int(g.sum())), fraction=int(g.sum()) / n if n else 0.0,
                       from_send_requests_per_s=rate(int(gs.sum())))  # fmt: skip
    peak_tok, peak_conc = vllm_peaks(c, comp, chunks)
    return BenchmarkResult(
        index=info.index, name=info.name, load=_load(info, c, meas, t0_ns, t_end),
        requests=_counts(info, c), duration_s=duration,
        throughput=Throughput(requests_per_s=rate(int(comp.sum())), output_tokens_per_s=rate(int(out_tok.sum())),
                              input_tokens_per_s=rate(int(in_tok.sum())),
                              total_tokens_per_s=rate(int(out_tok.sum() + in_tok.sum())),
                              max_output_tokens_per_s=peak_tok, max_concurrent_requests=peak_conc,
                              input_tokens=int(in_tok.sum()), output_tokens=int(out_tok.sum())),
        ttft_ms=dist(lat.ttft), itl_ms=dist(lat.itl), tpot_ms=dist(lat.tpot), e2e_ms=dist(lat.e2e),
        ttft_from_send_ms=dist(lat.ttft_send), e2e_from_send_ms=dist(lat.e2e_send),
        prompt_tokens=dist(in_tok, 1), output_tokens=dist(out_tok, 1),
        workers=_workers(c, meas, comp, rate),
        timeseries=timeseries(c, meas, comp, token_bins, t0_ns, t_end, fine_ns),
        goodput=good, errors=dict(errors or {}),
        cdf_ms={name: [float(x) for x in np.percentile(v * 1000, CDF_PERCENTILES)]
                for name, v in (("ttft_ms", lat.ttft), ("tpot_ms", lat.tpot), ("itl_ms", lat.itl),
                                ("e2e_ms", lat.e2e)) if len(v)},
        **_engine_dists(c, comp, meas),
    )  # fmt: skip
