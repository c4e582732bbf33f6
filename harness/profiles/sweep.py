"""sweep: synchronous, then throughput, then --sweep-points constant rates between them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from harness.limits import Limits
from harness.profiles import schedule
from harness.profiles.base import BenchPlan, PlanContext, Profile
from harness.profiles.constant import constant_plan
from harness.profiles.throughput import Throughput


class Sweep(Profile):
    name = "sweep"
    summary = "synchronous, throughput, then --sweep-points constant rates between them"
    takes = frozenset({"sweep_points", "max_concurrency"})
    order = 6

    def bench_count(self) -> int:
        return self.load.sweep_points + 2

    def check_windows(self, limits: Limits) -> None:
        self.closed_loop_windows(limits)  # its first benchmark is synchronous
        Throughput(self.load).check_windows(limits)

    def plans(self, ctx: PlanContext, results: Sequence[object]) -> Iterator[BenchPlan]:
        yield BenchPlan("synchronous", "synchronous", concurrency=1)
        yield Throughput(self.load).plan(ctx)
        lo = _rate(results, 0)
        hi = _rate(results, 1)
        if lo <= 0 or hi <= 0:
            return  # a benchmark completed nothing: there is no range to sweep
        for rate in schedule.sweep_rates(lo, hi, self.load.sweep_points):
            yield constant_plan(rate, ctx, self.load.max_concurrency)


def _rate(results: Sequence[object], i: int) -> float:
    if len(results) <= i:
        return 0.0
    return float(results[i].throughput.requests_per_s)  # type: ignore[attr-defined]
