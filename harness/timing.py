"""Where a run's wall time went: consecutive phases, from the moment the process started.

Each phase ends where the next begins, so the phases add up to the wall time by
construction; the first one (imports, options, the workload) runs from the process's
creation, so even Python's own start-up is counted.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil


def process_start() -> float:
    """When this process started, on time.time()'s clock, to the kernel's tick (10 ms).

    psutil's create_time adds the start to the boot time, which Linux gives in whole
    seconds: up to a second off. The start in ticks since boot, against CLOCK_BOOTTIME,
    is not.
    """
    try:
        after_name = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        since_boot = int(after_name[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime
        return time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - since_boot)
    except (OSError, ValueError, IndexError, AttributeError):
        return psutil.Process().create_time()


class Timings:
    def __init__(self) -> None:
        self.t0 = process_start()  # on time.time()'s clock
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
