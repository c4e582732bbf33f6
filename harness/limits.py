"""When a benchmark stops, and which of its requests are measured."""

from __future__ import annotations

import msgspec


class Window(msgspec.Struct, frozen=True):
    """A warm-up or cool-down window: ``requests`` or ``seconds`` (one of them)."""

    requests: int | None = None
    seconds: float | None = None


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    max_requests: int | None = None  # per benchmark; None: until max_seconds or the trace's end
    max_seconds: float | None = None
    max_errors: float | None = None  # a count (>= 1) or a fraction of requests sent (< 1)
    warmup: Window = Window()
    cooldown: Window = Window()
    drain_timeout_s: float = 60.0
    startup_timeout_s: float = 600.0


class MemoryCeiling(msgspec.Struct, frozen=True):
    """Peak resident memory to plan with, per process (docs/architecture.md states the same).

    Measured with scripts/bench_memory.py: 1,000,000 requests of 4 output tokens at 40,000/s
    on 2 sim workers, every request written to requests.jsonl.gz.
    """

    collector_base_mb: int = 60
    collector_per_request: int = 450  # bytes, the statistics pass included
    collector_per_output: int = 16  # bytes per output of a measured request
    coordinator_base_mb: int = 150
    coordinator_per_request: int = 16  # the schedule
    worker_mb: int = 120  # a sim worker; a vLLM one is vLLM's

    def collector_mb(self, requests: int, outputs: int) -> float:
        extra = requests * self.collector_per_request + outputs * self.collector_per_output
        return self.collector_base_mb + extra / 2**20

    def coordinator_mb(self, requests: int) -> float:
        return self.coordinator_base_mb + requests * self.coordinator_per_request / 2**20


MEMORY = MemoryCeiling()
