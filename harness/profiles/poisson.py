"""poisson: seeded gamma-distributed gaps at each --rate (burstiness 1 is a Poisson process)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from harness.profiles import schedule
from harness.profiles.base import BenchPlan, PlanContext, Profile


class Poisson(Profile):
    name = "poisson"
    summary = "random arrivals at --rate R[,R...] requests/s, --burstiness B (1: Poisson)"
    takes = frozenset({"rate", "burstiness", "max_concurrency"})
    requires = frozenset({"rate"})
    order = 5

    def bench_count(self) -> int:
        return len(self.load.rates)

    def plans(self, ctx: PlanContext, results: Sequence[object]) -> Iterator[BenchPlan]:
        rng = np.random.default_rng([ctx.seed, 0xA77])
        ld = self.load
        for rate in ld.rates:
            n = schedule.schedule_length(rate, ctx.max_requests, ctx.max_seconds)
            off = schedule.poisson_offsets(rate, n, ld.burstiness, rng)
            off = schedule.within(off, ctx.max_seconds)
            name = schedule.rate_name(self.name, rate)
            yield BenchPlan(
                name, self.name, rate, max_concurrency=ld.max_concurrency, offsets_ns=off
            )
