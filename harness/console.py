"""The live progress line: rewritten in place on a terminal, a plain line every few seconds otherwise."""

from __future__ import annotations

import sys
import time

from harness.bench_loop import LiveBench
from protocol.messages import Progress

_PLAIN_EVERY_S = 5.0


class ProgressLine:
    def __init__(
        self, total_benches: int | None, quiet: bool = False, max_seconds: float | None = None
    ) -> None:
        self.total = total_benches
        self.max_seconds = max_seconds
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.last: Progress | None = None
        self.last_plain = 0.0
        self.current = -1

    def __call__(self, b: LiveBench) -> None:
        if self.quiet:
            return
        if b.index != self.current:
            self.current, self.last = b.index, None
        if b.progress is not None:
            self.last = b.progress
        finished = b.result is not None
        now = time.monotonic()
        if not (self.tty or finished or now - self.last_plain >= _PLAIN_EVERY_S):
            return
        self.last_plain = now
        elapsed = max((time.monotonic_ns() - b.t0_ns) / 1e9, 1e-9)
        of = f"/{self.total}" if self.total else ""
        total = "?" if b.planned is None else str(b.planned)
        limit = self.max_seconds
        if b.planned is not None:
            frac = b.done / max(b.planned, 1)
        elif limit:
            frac = elapsed / limit
        else:
            frac = 0.0
        filled = int(min(max(frac, 0.0), 1.0) * 20)
        parts = [
            f"[{b.index + 1}{of} {b.plan.name}]",
            "[" + "#" * filled + "-" * (20 - filled) + "]",
            f"{b.done}/{total} done",
            f"{b.done / elapsed:,.1f} req/s",
            f"in-flight {b.inflight}",
            f"errors {b.failed}",
        ]
        if self.last is not None:
            parts.append(f"{self.last.output_tokens / elapsed:,.0f} tok/s")
            if self.last.ttft_p50_ms is not None:
                parts.append(f"TTFT p50 {self.last.ttft_p50_ms:,.1f} ms")
        parts.append(f"{elapsed:,.1f}s")
        line = "  ".join(parts)
        if self.tty:
            sys.stderr.write("\r\033[K" + line + ("\n" if finished else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()
