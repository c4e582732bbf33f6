"""When a benchmark stops, and which of its requests are measured."""

from __future__ import annotations

import msgspec


class Window(msgspec.Struct, frozen=True):
    """A warm-up or cool-down window: ``requests`` or ``seconds`` (one of them)."""

    requests: int | None = None
    seconds: float | None = None


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    max_requests: int | None = None  # per benchmark; None: until max_seconds or the trace's end
    max_seconds: float | None = None
    max_errors: float | None = None  # a count (>= 1) or a fraction of requests sent (< 1)
    warmup: Window = Window()
    cooldown: Window = Window()
    drain_timeout_s: float = 60.0
    startup_timeout_s: float = 600.0
