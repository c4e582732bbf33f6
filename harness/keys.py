"""Single key presses from the terminal, without Enter, while engines start.

Hand-written on ``termios`` (rich reads no keys; a TUI framework would take the
whole screen for one toggle). Only where it is safe: stdin is a terminal whose
foreground is this process, put in cbreak mode (no echo, no line buffering;
Ctrl-C still interrupts) for as short a time as it is used, and always restored.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import termios
import tty
from types import TracebackType


class Keys:
    """``with Keys() as keys: keys.pressed()``; reads nothing where stdin is no terminal of ours."""

    def __init__(self) -> None:
        self.fd: int | None = None
        self.saved: list | None = None

    def __enter__(self) -> Keys:
        try:
            fd = sys.stdin.fileno()
            # A background job that changed its terminal's mode would be stopped (SIGTTOU).
            if os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp():
                self.saved = termios.tcgetattr(fd)
                tty.setcbreak(fd, termios.TCSANOW)
                self.fd = fd
        except (OSError, ValueError, AttributeError, termios.error):
            self.fd = None
        return self

    def pressed(self) -> str:
        """The keys pressed since the last call ("" if none); never waits."""
        if self.fd is None:
            return ""
        out = b""
        try:
            while select.select([self.fd], [], [], 0)[0]:
                data = os.read(self.fd, 64)
                if not data:
                    break
                out += data
        except OSError:
            pass
        return out.decode(errors="ignore")

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        if self.fd is None or self.saved is None:
            return
        # Restoring from the background (Ctrl-Z, bg) must not stop the process.
        try:
            old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        except ValueError:  # not the main thread: it cannot be in the background here
            old = None
        try:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)
        except (OSError, termios.error):
            pass
        finally:
            if old is not None:
                signal.signal(signal.SIGTTOU, old)
            self.fd = None
