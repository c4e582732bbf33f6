"""replay: each request of a trace at its recorded time (scaled by --time-scale)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from harness.profiles import schedule
from harness.profiles.base import BenchPlan, PlanContext, Profile


class Replay(Profile):
    name = "replay"
    summary = "a trace's requests at their recorded times (--data TRACE.jsonl, --time-scale)"
    takes = frozenset({"time_scale", "max_concurrency"})
    order = 7

    def plans(self, ctx: PlanContext, results: Sequence[object]) -> Iterator[BenchPlan]:
        assert ctx.replay_ns is not None, "replay needs a trace (checked in resolve)"
        off = np.round(ctx.replay_ns * self.load.time_scale).astype(np.int64)
        if ctx.max_requests is not None:
            off = off[: ctx.max_requests]
        off = schedule.within(off, ctx.max_seconds)
        name = f"replay x{self.load.time_scale:g}"
        yield BenchPlan(name, self.name, max_concurrency=self.load.max_concurrency, offsets_ns=off)
