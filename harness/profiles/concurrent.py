"""concurrent: N streams, each sending its next request as soon as its last one ends."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from harness.limits import Limits
from harness.profiles.base import BenchPlan, PlanContext, Profile


class Concurrent(Profile):
    name = "concurrent"
    summary = "N streams kept busy (--concurrency 1,4,16: one benchmark each)"
    takes = frozenset({"concurrency"})
    requires = frozenset({"concurrency"})
    order = 2

    def bench_count(self) -> int:
        return len(self.load.concurrencies)

    def check_windows(self, limits: Limits) -> None:
        self.closed_loop_windows(limits)

    def plans(self, ctx: PlanContext, results: Sequence[object]) -> Iterator[BenchPlan]:
        for c in self.load.concurrencies:
            yield BenchPlan(f"concurrent@{c}", self.name, concurrency=c)
