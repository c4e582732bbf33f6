"""Where a run's wall time went: consecutive phases, from the moment the process started.

Each phase ends where the next begins, so the phases add up to the wall time by
construction; the first one (imports, options, the workload) runs from the process's
creation, so even Python's own start-up is counted.
"""

from __future__ import annotations

import time

import psutil


class Timings:
    def __init__(self) -> None:
        self.t0 = psutil.Process().create_time()  # the same clock as time.time()
        self.last = self.t0
        self.phases: dict[str, float] = {}

    def mark(self, phase: str, at: float | None = None) -> None:
        """``phase`` ended now (or at ``at``, a time.time())."""
        now = time.time() if at is None else at
        self.phases[phase] = round(self.phases.get(phase, 0.0) + max(now - self.last, 0.0), 6)
        self.last = max(now, self.last)

    @property
    def wall_s(self) -> float:
        return round(self.last - self.t0, 6)

    def as_dict(self) -> dict[str, float]:
        return {**self.phases, "wall": self.wall_s}
