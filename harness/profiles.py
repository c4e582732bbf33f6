"""Load profiles: what to send when. Open-loop schedules are precomputed and seeded.

Semantics follow GuideLLM and ``vllm bench serve``: synchronous is one
request at a time; concurrent N keeps N streams busy; throughput sends
everything at once (or keeps ``--max-concurrency`` busy); constant spaces sends
evenly; poisson draws gamma gaps (shape = burstiness, mean = 1/rate, so
burstiness 1 is a Poisson process and the gaps' CV is 1/sqrt(burstiness));
sweep runs synchronous, throughput, then K constant rates between them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PROFILES = ("synchronous", "concurrent", "throughput", "constant", "poisson", "sweep", "replay")


@dataclass
class BenchPlan:
    """One benchmark. Open loop when ``offsets_ns`` is set, else closed loop at ``concurrency``."""

    name: str
    profile: str
    rate: float | None = None
    concurrency: int | None = None
    offsets_ns: np.ndarray | None = None


def constant_offsets(rate: float, n: int) -> np.ndarray:
    return np.round(np.arange(n, dtype=np.float64) * (1e9 / rate)).astype(np.int64)


def poisson_offsets(rate: float, n: int, burstiness: float, rng: np.random.Generator) -> np.ndarray:
    gaps = rng.gamma(shape=burstiness, scale=1.0 / (rate * burstiness), size=max(n - 1, 0))
    return np.round(np.concatenate([[0.0], np.cumsum(gaps)]) * 1e9).astype(np.int64)


def schedule_length(rate: float, max_requests: int | None, max_seconds: float | None) -> int:
    """How many sends to precompute: enough to outlast whichever limit comes first."""
    n_time = None
    if max_seconds is not None:
        expect = rate * max_seconds
        n_time = int(math.ceil(expect + 6 * math.sqrt(expect + 1) + 16))
    if max_requests is None:
        assert n_time is not None
        return n_time
    return max_requests if n_time is None else min(max_requests, n_time)


def open_loop(
    profile: str,
    rate: float,
    max_requests: int | None,
    max_seconds: float | None,
    burstiness: float,
    rng: np.random.Generator,
) -> BenchPlan:
    n = schedule_length(rate, max_requests, max_seconds)
    if profile == "constant":
        off = constant_offsets(rate, n)
    else:
        off = poisson_offsets(rate, n, burstiness, rng)
    if max_seconds is not None:
        off = off[off < int(max_seconds * 1e9)]
    return BenchPlan(f"{profile}@{rate:g}/s", profile, rate=rate, offsets_ns=off)


def sweep_rates(sync_rate: float, throughput_rate: float, points: int) -> list[float]:
    """K rates evenly spaced strictly between the synchronous and the throughput rate."""
    lo, hi = sorted((sync_rate, throughput_rate))
    return [float(r) for r in np.linspace(lo, hi, points + 2)[1:-1]]
