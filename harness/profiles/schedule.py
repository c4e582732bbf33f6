"""Open-loop send schedules: precomputed, seeded offsets from a benchmark's start (ns).

Semantics follow GuideLLM and ``vllm bench serve``: constant spaces sends evenly;
poisson draws gamma gaps (shape = burstiness, mean = 1/rate, so burstiness 1 is a
Poisson process and the gaps' CV is 1/sqrt(burstiness)).
"""

from __future__ import annotations

import math

import numpy as np


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


def within(offsets: np.ndarray, max_seconds: float | None) -> np.ndarray:
    """The sends scheduled before ``max_seconds``."""
    return offsets if max_seconds is None else offsets[offsets < int(max_seconds * 1e9)]


def sweep_rates(sync_rate: float, throughput_rate: float, points: int) -> list[float]:
    """K rates evenly spaced strictly between the synchronous and the throughput rate."""
    lo, hi = sorted((sync_rate, throughput_rate))
    return [float(r) for r in np.linspace(lo, hi, points + 2)[1:-1]]


def rate_name(profile: str, rate: float) -> str:
    """``constant@59.4/s``: three significant digits, enough to tell sweep points apart."""
    return f"{profile}@{rate:.3g}/s" if rate < 1000 else f"{profile}@{rate:,.0f}/s"
