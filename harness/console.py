"""What people see while a run runs: engine start-up, then each benchmark's progress.

On a terminal, a rich ``Live`` region on stderr, redrawn in place and laid out by
rich to the terminal's width (read again at every redraw), so nothing wraps behind
its back; each finished benchmark leaves one line above it. With stderr not a
terminal, one plain line every few seconds. With ``--quiet``, nothing. What is
drawn comes from :mod:`harness.views`.
"""

from __future__ import annotations

import os
import re
import time
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console, RenderableType
from rich.live import Live
from rich.text import Text

from harness.keys import Keys
from harness.views import (
    bench_view,
    done_text,
    fmt_time,
    plain_line,
    render_bench,
    render_startup,
    startup_done_line,
    worker_states,
)

if TYPE_CHECKING:
    from harness.bench_loop import LiveBench
    from harness.config import Run
    from harness.fleet import Fleet

REDRAW_S = 0.25  # a terminal's redraws, at most this often: rendering runs in the pacing loop
PLAIN_EVERY_S = 5.0
TAIL_LINES = 5
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|[\x00-\x08\x0b-\x1f\x7f]")


class LogTail:
    """The last lines of a growing log file, read from where the last read stopped."""

    MAX_READ = 256 * 1024

    def __init__(self, path: Path, keep: int = TAIL_LINES) -> None:
        self.path, self.pos, self.rest = path, 0, ""
        self.lines: deque[str] = deque(maxlen=keep)

    def poll(self) -> list[str]:
        """New complete lines since the last call (ANSI codes and progress-bar redraws removed)."""
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < self.pos or size - self.pos > self.MAX_READ:
                    self.pos, self.rest = max(0, size - self.MAX_READ), ""  # skip a flood
                f.seek(self.pos)
                data = f.read(self.MAX_READ)
        except OSError:
            return []
        self.pos += len(data)
        *done, self.rest = (self.rest + data.decode(errors="replace")).split("\n")
        new = [_ANSI.sub("", ln.split("\r")[-1]).rstrip() for ln in done]
        new = [ln for ln in new if ln.strip()]
        self.lines.extend(new)
        return new


# --- the display --------------------------------------------------------------


class Display:
    """Start-up, then benchmarks; ``with display:`` around the run, which always ends it cleanly.

    Every write is shielded: a closed or broken stderr turns the display off, never the run.
    """

    def __init__(self, run: Run) -> None:
        self.quiet, self.verbose = run.quiet, run.verbose
        self.limits = run.limits
        self.count = run.profile.bench_count()
        self.console = Console(stderr=True, highlight=False)
        self.tty = self.console.is_terminal and not self.quiet
        self.live: Live | None = None
        self.keys = Keys()
        self.tails: dict[str, LogTail] = {}
        self.since = time.monotonic()
        self.last_draw = 0.0
        self.current = -1  # the last benchmark whose end was shown

    def __enter__(self) -> Display:
        self.since = time.monotonic()
        if self.tty:
            self.live = Live(console=self.console, auto_refresh=False, transient=True,
                             redirect_stdout=False, redirect_stderr=True)  # fmt: skip
            self._safe(self.live.start)
            self.keys.__enter__()
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.keys.__exit__(None, None, None)
        if self.live is not None:
            self._safe(self.live.stop)
            self.live = None

    def _safe(self, fn, *args) -> None:  # type: ignore[no-untyped-def]
        try:
            fn(*args)
        except (OSError, ValueError):  # stderr closed or a broken pipe: no more display
            live, self.live = self.live, None
            self.quiet, self.tty = True, False
            if live is not None:
                try:
                    live.stop()  # gives sys.stderr back, whatever its last write does
                except (OSError, ValueError):
                    pass

    def _due(self, force: bool) -> bool:
        now = time.monotonic()
        every = REDRAW_S if self.tty else PLAIN_EVERY_S
        if force or now - self.last_draw >= every:
            self.last_draw = now
            return True
        return False

    def _show(self, renderable: RenderableType) -> None:
        if self.live is not None:
            self.live.update(renderable, refresh=True)

    def _print(self, line: RenderableType) -> None:
        """A line that stays (above the live region on a terminal, which it empties)."""
        if self.live is not None:
            self.live.update(Text(""), refresh=True)
            self.live.console.print(line)
        else:
            self.console.file.write(f"{line}\n")
            self.console.file.flush()

    # --- start-up ---------------------------------------------------------------

    def startup(self, fleet: Fleet) -> None:
        """Fleet.start's tick (about every 0.25 s) while the engines start."""
        if not self.quiet:
            self._safe(self._startup, fleet)

    def _startup(self, fleet: Fleet) -> None:
        force = "v" in self.keys.pressed().lower()
        if force:
            self.verbose = not self.verbose
        new = self._poll_tails(fleet) if self.verbose else []
        rows = worker_states(fleet, self.since)
        elapsed = time.monotonic() - self.since
        if self.tty:
            if self._due(force):
                keys = self.keys.fd is not None
                self._show(render_startup(rows, self._tail_lines(), self.verbose, keys, elapsed))
            return
        for line in new:
            self._print(line)
        if self._due(False):
            ready = sum(1 for _, state, _ in rows if state == "ready")
            self._print(
                f"Starting engines: {ready}/{len(rows)} processes ready, {fmt_time(elapsed)}"
            )

    def _poll_tails(self, fleet: Fleet) -> list[str]:
        """New log lines of the workers still starting, each with its worker's name."""
        out = []
        for w in fleet.workers.values():
            if w.log is None or w.ready:
                continue
            tail = self.tails.setdefault(w.name, LogTail(w.log))
            out += [f"{w.name} | {ln}" for ln in tail.poll()]
        return out

    def _tail_lines(self) -> dict[str, list[str]]:
        return {name: list(t.lines) for name, t in self.tails.items()}

    def started(self, fleet: Fleet, ok: bool) -> None:
        """Start-up is over: a line that stays, or where it failed, every process's last state."""
        self.keys.__exit__(None, None, None)  # the terminal is the user's again
        if self.quiet:
            return
        rows = worker_states(fleet, self.since)
        if not ok:
            rows = [(n, "not ready" if st == "starting" else st, t) for n, st, t in rows]
        elapsed = time.monotonic() - self.since
        if ok:
            self._safe(self._print, startup_done_line(rows, elapsed))
        elif self.tty:
            last = render_startup(rows, self._tail_lines(), self.verbose, False, elapsed)
            self._safe(self._print, last)
        else:
            for name, state, secs in rows:
                self._safe(self._print, f"  {name}: {state} {secs}".rstrip())

    # --- benchmarks -------------------------------------------------------------

    def __call__(self, b: LiveBench) -> None:
        """BenchLoop's progress callback: the running benchmark, and each one as it ends."""
        if not self.quiet:
            self._safe(self._bench, b)

    def _bench(self, b: LiveBench) -> None:
        if b.result is not None:
            if b.index > self.current:
                self.current = b.index
                v = bench_view(b, self.limits, self.count)
                self._print(done_text(v) if self.tty else plain_line(v))
            return
        if self._due(False):
            v = bench_view(b, self.limits, self.count)
            if self.tty:
                self._show(render_bench(v))
            else:
                self._print(plain_line(v))
