"""Benchmark results: what the collector computes and the report records.

They live here because they cross a socket (the collector's ``BenchResult``);
``harness.schema`` wraps them in the report. Fields are only added, with
defaults; a change of meaning bumps the report's schema version.
"""

from __future__ import annotations

import msgspec


class Dist(msgspec.Struct):
    """A distribution. Percentiles use linear interpolation (numpy's default, as vLLM's bench)."""

    count: int
    mean: float
    median: float
    std: float
    min: float
    max: float
    p50: float
    p90: float
    p95: float
    p99: float
    p999: float


class RequestCounts(msgspec.Struct):
    """Every scheduled request is in exactly one of completed, failed, incomplete, warmup
    and cooldown. ``aborted`` is the part of ``incomplete`` that was sent and then aborted
    (by a limit, the drain timeout or Ctrl-C); the rest of it was never sent."""

    scheduled: int
    completed: int
    failed: int
    incomplete: int
    warmup: int
    cooldown: int
    aborted: int = 0
    # The part of ``completed`` that the model stopped itself (EOS or a stop string, with
    # --sampling) before its max_tokens; 0 with the default sampling.
    stopped: int = 0


class Throughput(msgspec.Struct):
    requests_per_s: float
    output_tokens_per_s: float
    input_tokens_per_s: float
    total_tokens_per_s: float
    # vLLM's: the most outputs in one second, and the most requests open in one second.
    max_output_tokens_per_s: float = 0.0
    max_concurrent_requests: int = 0
    input_tokens: int = 0  # totals over completed measured requests
    output_tokens: int = 0


class WorkerStats(msgspec.Struct):
    worker_id: int
    completed: int
    failed: int
    output_tokens: int
    output_tokens_per_s: float


class Load(msgspec.Struct):
    profile: str
    requested_rate: float | None
    concurrency: int | None
    achieved_send_rate: float
    peak_inflight: int
    mean_inflight: float
    max_concurrency: int | None = None  # the cap on in-flight requests, where one applied


class TimeSeries(msgspec.Struct):
    """Measured requests in bins of ``bin_s`` seconds from the benchmark's start (``t_s`` is
    each bin's end): sends, completions and output tokens counted per bin; ``inflight``
    sampled at each bin's end."""

    t_s: list[float]
    sends: list[int]
    completions: list[int]
    output_tokens: list[int]
    inflight: list[int]
    bin_s: float = 1.0


class CollectorStats(msgspec.Struct):
    """The collector's own work for one benchmark: how close it came to its ceiling."""

    messages: int  # Events messages ingested
    token_entries: int  # (request, time, count) entries in them
    busy_s: float  # time spent ingesting them
    rejected: int  # malformed or foreign messages (or parts of them) dropped
    rejected_by_kind: dict[str, int] = {}  # "kind (peer)": count
    late: int = 0  # well-formed records of an earlier benchmark, dropped
    records_written: int = 0  # per-request rows written so far (--output *.jsonl)
    records_error: str | None = None  # why writing them stopped, if it did


class Goodput(msgspec.Struct):
    """Completed requests meeting every SLO (value <= limit), per second of the benchmark."""

    slo: dict[str, float]
    requests_per_s: float  # TTFT and E2E from the scheduled send
    fraction: float  # of completed requests, on that clock
    from_send_requests_per_s: float | None = None  # on vLLM's clock (from the send)


class GpuSeries(msgspec.Struct):
    index: str
    sm_util_pct: list[float]
    mem_used_mb: list[float]
    power_w: list[float]
    sm_clock_mhz: list[float]
    temp_c: list[float]


class TelemetrySeries(msgspec.Struct):
    """One worker's samples, at ``t_s`` seconds from the benchmark's start (each interval's end).

    None where the engine does not report a figure (the sim engine has no KV cache)."""

    t_s: list[float]
    running: list[float]
    waiting: list[float]
    kv_usage_pct: list[float | None]
    preemptions: list[int]
    prefix_hit_pct: list[float | None]
    cpu_pct: list[float]
    rss_mb: list[float]
    gpus: list[GpuSeries] = []


class TelemetrySummary(msgspec.Struct):
    samples: int
    running_mean: float
    waiting_mean: float
    kv_usage_mean_pct: float | None
    kv_usage_max_pct: float | None
    preemptions: int
    prefix_hit_rate: float | None  # prefix-cache hits / queries (tokens)
    spec_acceptance_rate: float | None  # accepted / drafted tokens, with speculative decoding
    cpu_mean_pct: float
    rss_max_mb: float
    power_mean_w: float | None  # the worker's GPUs together
    energy_j: float | None


class WorkerTelemetry(msgspec.Struct):
    worker_id: int
    sources: dict[str, str]  # what measured each figure, or why it is missing
    summary: TelemetrySummary
    series: TelemetrySeries


class ProcessCost(msgspec.Struct):
    """One of the harness's own processes over a benchmark: what the harness itself cost."""

    cpu_mean_pct: float
    cpu_max_pct: float
    rss_max_mb: float


class Efficiency(msgspec.Struct):
    gpus: int  # the GPUs the benchmark's workers ran on (0 on CPU)
    output_tokens_per_s_per_gpu: float | None
    energy_j: float | None  # the GPUs', as NVML counted it over the benchmark
    output_tokens_per_joule: float | None


class BenchmarkResult(msgspec.Struct):
    index: int
    name: str
    load: Load
    requests: RequestCounts
    duration_s: float
    throughput: Throughput
    ttft_ms: Dist | None
    itl_ms: Dist | None
    tpot_ms: Dist | None
    e2e_ms: Dist | None
    dispatch_lag_ms: Dist | None
    engine_queue_ms: Dist | None
    engine_prefill_ms: Dist | None
    prompt_tokens: Dist | None
    output_tokens: Dist | None
    workers: list[WorkerStats]
    timeseries: TimeSeries
    goodput: Goodput | None = None
    errors: dict[str, int] = {}
    # Why sending stopped before the schedule ran out: max_seconds, max_errors,
    # drain_timeout, interrupted, all workers died. None when it ran out.
    stop_reason: str | None = None
    # Latency CDFs for plotting: ttft_ms, tpot_ms, itl_ms, e2e_ms at CDF_PERCENTILES.
    cdf_ms: dict[str, list[float]] = {}
    collector: CollectorStats | None = None
    # TTFT and E2E from the worker's receipt of the request: what vLLM's client measures.
    ttft_from_send_ms: Dist | None = None
    e2e_from_send_ms: Dist | None = None
    # Dispatch lag in two hops: the coordinator's lateness in handing a request to its
    # socket, and from there to the worker's receipt (ZeroMQ and the worker's loop).
    pacing_lag_ms: Dist | None = None
    delivery_ms: Dist | None = None
    telemetry: list[WorkerTelemetry] = []  # per worker: scheduler, KV cache, devices
    harness_cost: dict[str, ProcessCost] = {}  # the coordinator's and the collector's own
    efficiency: Efficiency | None = None


# Percentiles at which cdf_ms samples each distribution.
CDF_PERCENTILES = [float(p) for p in range(0, 100)] + [99.5, 99.9, 100.0]
