"""throughput: every request at once, or --max-concurrency of them kept in flight."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from harness.checks import UsageError
from harness.limits import Limits
from harness.profiles.base import BenchPlan, PlanContext, Profile

# "Everything at once" for a run bounded only by time: this many in flight per worker.
UNBOUNDED_CONCURRENCY_PER_WORKER = 1024


class Throughput(Profile):
    name = "throughput"
    summary = "everything at once (or --max-concurrency in flight): the engine's peak"
    takes = frozenset({"max_concurrency"})
    order = 3

    def check_windows(self, limits: Limits) -> None:
        burst = self.load.max_concurrency is None and limits.max_requests is not None
        seconds = limits.warmup.seconds is not None or limits.cooldown.seconds is not None
        if burst and seconds:
            raise UsageError(
                "--profile throughput sends every request at once, so a window in seconds "
                "holds all or none of them: give it in requests (--warmup 100), or set "
                "--max-concurrency"
            )
        if not burst:
            self.closed_loop_windows(limits)

    def plans(self, ctx: PlanContext, results: Sequence[object]) -> Iterator[BenchPlan]:
        yield self.plan(ctx)

    def plan(self, ctx: PlanContext) -> BenchPlan:
        cap = self.load.max_concurrency
        if cap is not None:
            return BenchPlan("throughput", self.name, concurrency=cap, max_concurrency=cap)
        if ctx.max_requests is None:
            c = UNBOUNDED_CONCURRENCY_PER_WORKER * max(ctx.workers, 1)
            return BenchPlan("throughput", self.name, concurrency=c)
        zeros = np.zeros(ctx.max_requests, np.int64)
        return BenchPlan("throughput", self.name, offsets_ns=zeros)
