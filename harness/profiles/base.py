"""What a load profile is: the options it takes, its benchmarks' plans, and its window rule.

A profile is one module in this package holding one :class:`Profile` subclass;
the package finds it by itself, so adding a profile touches that module and its tests.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from harness.checks import UsageError
from harness.limits import Limits

# The options that shape load; each profile takes some of them and refuses the rest.
LOAD_OPTIONS = (
    "rate",
    "concurrency",
    "max_concurrency",
    "burstiness",
    "sweep_points",
    "time_scale",
)


@dataclass(frozen=True)
class LoadOptions:
    """The load options, parsed and range-checked; ``given`` names those the user set."""

    rates: tuple[float, ...] = ()
    concurrencies: tuple[int, ...] = ()
    max_concurrency: int | None = None
    burstiness: float = 1.0
    sweep_points: int = 5
    time_scale: float = 1.0
    given: frozenset[str] = frozenset()


@dataclass(frozen=True)
class PlanContext:
    """What plans need from the rest of the run."""

    max_requests: int | None
    max_seconds: float | None
    seed: int
    workers: int  # local and remote: an unbounded throughput run keeps them all busy
    replay_ns: np.ndarray | None = None  # replay: the trace's send offsets


@dataclass(frozen=True, eq=False)
class BenchPlan:
    """One benchmark: open loop when ``offsets_ns`` is set, else closed loop at ``concurrency``.

    ``max_concurrency`` caps requests in flight under an open-loop schedule: a request
    due while the cap is reached waits for a slot, and its latency still counts from
    its scheduled time.
    """

    name: str
    profile: str
    rate: float | None = None
    concurrency: int | None = None
    max_concurrency: int | None = None
    offsets_ns: np.ndarray | None = field(default=None, repr=False)

    @property
    def open_loop(self) -> bool:
        return self.offsets_ns is not None

    def planned(self, max_requests: int | None) -> int | None:
        """How many requests it sends if no limit stops it early (None: until max_seconds)."""
        if self.offsets_ns is not None:
            return len(self.offsets_ns)
        return max_requests


class Profile:
    name: ClassVar[str]
    summary: ClassVar[str]  # one line for --help
    takes: ClassVar[frozenset[str]] = frozenset()  # of LOAD_OPTIONS
    requires: ClassVar[frozenset[str]] = frozenset()
    order: ClassVar[int] = 100  # position in --help

    def __init__(self, load: LoadOptions) -> None:
        self.load = load

    @classmethod
    def check(cls, load: LoadOptions) -> None:
        """Refuse load options this profile does not take, and demand the ones it needs."""
        for name in LOAD_OPTIONS:
            if name in load.given and name not in cls.takes:
                users = [p.name for p in _registry().values() if name in p.takes]
                raise UsageError(
                    f"--{name.replace('_', '-')} applies to --profile {' or '.join(users)}, "
                    f"not {cls.name}"
                )
        for name in sorted(cls.requires - load.given):
            raise UsageError(f"--profile {cls.name} needs --{name.replace('_', '-')}")

    def check_windows(self, limits: Limits) -> None:
        """Refuse windows this profile cannot place: a request's phase is set when it is sent."""

    def closed_loop_windows(self, limits: Limits) -> None:
        """A closed-loop benchmark's end is known in advance only through a limit."""
        c = limits.cooldown
        if c.seconds is not None and limits.max_seconds is None:
            raise UsageError(
                f"--cooldown {c.seconds:g}s with --profile {self.name} needs --max-seconds: "
                "its last send is not known in advance (or give --cooldown N requests)"
            )
        if c.requests and limits.max_requests is None:
            raise UsageError(
                f"--cooldown {c.requests} with --profile {self.name} needs --max-requests"
            )

    def bench_count(self) -> int:
        return 1

    def plans(self, ctx: PlanContext, results: Sequence[object]) -> Iterator[BenchPlan]:
        """The benchmarks, in order; a sweep's later ones depend on ``results`` of earlier ones."""
        raise NotImplementedError

    def record(self) -> dict[str, object]:
        """The load settings that took effect, for the report."""
        out: dict[str, object] = {"profile": self.name}
        ld = self.load
        values = {"rate": list(ld.rates), "concurrency": list(ld.concurrencies),
                  "max_concurrency": ld.max_concurrency, "burstiness": ld.burstiness,
                  "sweep_points": ld.sweep_points, "time_scale": ld.time_scale}  # fmt: skip
        for name in LOAD_OPTIONS:
            if name in self.takes and values[name] not in (None, []):
                out[name] = values[name]
        return out


def _registry() -> dict[str, type[Profile]]:
    from harness.profiles import PROFILES

    return PROFILES
