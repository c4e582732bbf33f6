"""The report schema: every file the harness writes is one of these, encoded by msgspec.

Bump ``SCHEMA_VERSION`` when a field changes meaning or goes away; adding a
field with a default does not need a bump.
"""

from __future__ import annotations

import msgspec

from protocol.results import (  # noqa: F401 - the report schema re-exports them
    CDF_PERCENTILES,
    BenchmarkResult,
    CollectorStats,
    Dist,
    Goodput,
    Load,
    RequestCounts,
    Throughput,
    TimeSeries,
    WorkerStats,
)

# 2: ITL is one value per output (vLLM's), the time series count measured requests only,
# and the config is the resolved run's.
SCHEMA_VERSION = 2


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
    dropped_events: int = 0  # Events messages it could not send because the collector fell behind
    launcher: str = ""  # what started it: local (the head), remote (by hand), ray or slurm
    node: str = ""  # where its launcher placed it: Ray's node IP and id, or Slurm's node name


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
    records: list[str] = []  # per-request record files of this run (harness export reads them)
    # Where the wall time went, in seconds: consecutive phases from the process's start
    # (imports and set-up, spawn, engine start, each benchmark, results, shutdown) and "wall".
    timings: dict[str, float] = {}
