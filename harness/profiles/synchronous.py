"""synchronous: one request at a time, the next sent when the last one ends."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from harness.limits import Limits
from harness.profiles.base import BenchPlan, PlanContext, Profile


class Synchronous(Profile):
    name = "synchronous"
    summary = "one request at a time"
    order = 1

    def check_windows(self, limits: Limits) -> None:
        self.closed_loop_windows(limits)

    def plans(self, ctx: PlanContext, results: Sequence[object]) -> Iterator[BenchPlan]:
        yield BenchPlan("synchronous", self.name, concurrency=1)
