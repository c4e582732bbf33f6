"""Standard streams that never end a run.

A benchmark may run for hours with its stderr closed (``2>&-``), piped into a program
that exits early (``2>&1 | head -1``), or on a terminal that goes away. What it
measured matters more than what it prints: a stream that fails is dropped quietly.
"""

from __future__ import annotations

import io
from typing import Any, TextIO


class SafeStream(io.TextIOBase):
    def __init__(self, inner: TextIO | None) -> None:
        self.inner = inner
        self.broken = inner is None  # Python starts with None for a closed descriptor

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                self.inner.write(text)  # type: ignore[union-attr]
            except (OSError, ValueError):
                self.broken = True
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self.inner.flush()  # type: ignore[union-attr]
            except (OSError, ValueError):
                self.broken = True

    def isatty(self) -> bool:
        try:
            return not self.broken and self.inner.isatty()  # type: ignore[union-attr]
        except (OSError, ValueError):
            return False

    def fileno(self) -> int:
        if self.inner is None:
            raise io.UnsupportedOperation("closed stream")
        return self.inner.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.inner, "encoding", None) or "utf-8"

    def writable(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def protect() -> None:
    """Make ``sys.stdout`` and ``sys.stderr`` safe for the rest of this process."""
    import sys

    if not isinstance(sys.stdout, SafeStream):
        sys.stdout = SafeStream(sys.stdout)  # type: ignore[assignment]
    if not isinstance(sys.stderr, SafeStream):
        sys.stderr = SafeStream(sys.stderr)  # type: ignore[assignment]
