"""The report schema: every file the harness writes is one of these, encoded by msgspec.

Bump ``SCHEMA_VERSION`` when a field changes meaning or goes away; adding a
field with a default does not need a bump.
"""

from __future__ import annotations

import msgspec

SCHEMA_VERSION = 1


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
    """Every scheduled request is in exactly one of the last five fields."""

    scheduled: int
    completed: int
    failed: int
    incomplete: int
    warmup: int
    cooldown: int


class Throughput(msgspec.Struct):
    requests_per_s: float
    output_tokens_per_s: float
    input_tokens_per_s: float
    total_tokens_per_s: float


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


class TimeSeries(msgspec.Struct):
    """Per-second bins from the benchmark's start; ``inflight`` is sampled at each bin's end."""

    t_s: list[float]
    sends: list[int]
    completions: list[int]
    output_tokens: list[int]
    inflight: list[int]


class CollectorStats(msgspec.Struct):
    """The collector's own work for one benchmark: how close it came to its ceiling."""

    messages: int  # Events messages ingested
    token_entries: int  # (request, time, count) entries in them
    busy_s: float  # time spent ingesting them
    rejected: int  # malformed or foreign messages dropped


class Goodput(msgspec.Struct):
    slo: dict[str, float]
    requests_per_s: float
    fraction: float


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


# Percentiles at which cdf_ms samples each distribution.
CDF_PERCENTILES = [float(p) for p in range(0, 100)] + [99.5, 99.9, 100.0]


class WorkerEnv(msgspec.Struct):
    worker_id: int
    pid: int
    host: str
    device: str
    devices: list[str]
    startup_s: float
    kv_cache_tokens: int | None
    engine_config: dict[str, str]
    exit: str | None = None  # why it ended early, if it did
    remote: bool = False  # joined over TCP (harness worker --connect)
    clock_offset_ns: int = 0  # remote: the coordinator's clock minus the worker host's
    clock_error_ns: int = 0  # remote: bound on that offset's error (half the best round trip)


class Environment(msgspec.Struct):
    python: str
    platform: str
    cpu_count: int
    memory_gb: float
    packages: dict[str, str]
    workers: list[WorkerEnv] = []


class Report(msgspec.Struct):
    schema_version: int
    harness_version: str
    created_utc: str
    command: list[str]
    config: dict[str, object]
    environment: Environment
    benchmarks: list[BenchmarkResult]
    partial: bool = False
    stop_reason: str | None = None
    # Foreign or malformed messages the coordinator dropped, by kind (the collector's
    # count is per benchmark, in its CollectorStats).
    rejected_messages: dict[str, int] = {}
