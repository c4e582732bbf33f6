"""constant: sends evenly spaced at each --rate."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from harness.profiles import schedule
from harness.profiles.base import BenchPlan, PlanContext, Profile


class Constant(Profile):
    name = "constant"
    summary = "evenly spaced sends at --rate R[,R...] requests/s"
    takes = frozenset({"rate", "max_concurrency"})
    requires = frozenset({"rate"})
    order = 4

    def bench_count(self) -> int:
        return len(self.load.rates)

    def plans(self, ctx: PlanContext, results: Sequence[object]) -> Iterator[BenchPlan]:
        for rate in self.load.rates:
            yield constant_plan(rate, ctx, self.load.max_concurrency)


def constant_plan(rate: float, ctx: PlanContext, cap: int | None) -> BenchPlan:
    n = schedule.schedule_length(rate, ctx.max_requests, ctx.max_seconds)
    off = schedule.within(schedule.constant_offsets(rate, n), ctx.max_seconds)
    name = schedule.rate_name("constant", rate)
    return BenchPlan(name, "constant", rate=rate, max_concurrency=cap, offsets_ns=off)
