"""Writing reports so that none is ever lost: atomically, safely, and elsewhere if need be.

Each file is written to a fresh temporary file beside it (created exclusively, so a
planted symlink is never followed) and renamed over the target, so a reader sees the
old report or the new one, never half of one. A write that fails still leaves the
report somewhere: a fallback path that is named on stderr.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from harness.schema import Report


class WriteFailed(OSError):
    """Some outputs could not be written; ``fallbacks`` maps each to where it went instead."""

    def __init__(self, fallbacks: dict[Path, Path | None]) -> None:
        super().__init__("; ".join(f"{k} -> {v}" for k, v in fallbacks.items()))
        self.fallbacks = fallbacks


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def fallback_path(path: Path, run_id: str) -> Path:
    """Where a report goes when its own path fails: the temp folder, named after the run."""
    return Path(tempfile.gettempdir()) / f"harness-{run_id}-{path.name}"


class Outputs:
    """The run's report files, rewritten at each checkpoint and at the end."""

    def __init__(self, paths: tuple[Path, ...], run_id: str) -> None:
        self.paths = paths
        self.run_id = run_id
        self.failed: dict[Path, Path | None] = {}
        self.replaces = [p for p in paths if p.exists()]  # reports of earlier runs

    def notice_replaced(self) -> None:
        for p in self.replaces:
            try:
                print(
                    f"harness: replacing {p}, which an earlier run wrote (--no-clobber keeps it)",
                    file=sys.stderr,
                )
            except (OSError, ValueError):
                pass

    def write(self, report: Report, final: bool = False, only: str | None = None) -> None:
        """Every output (or those ending in ``only``); a failed one goes to its fallback
        (final write: the failure is kept)."""
        from harness.render import render

        for path in self.paths:
            if only is not None and path.suffix != only:
                continue
            if path in self.failed and only is not None:
                continue  # already saved elsewhere, and said so
            try:
                data = render(report, path)
                atomic_write(path, data)
                self.failed.pop(path, None)
            except (OSError, ValueError) as e:
                if not final:
                    continue  # a checkpoint: the next one or the final write tries again
                self.failed[path] = self._fallback(report, path, e)

    def _fallback(self, report: Report, path: Path, err: Exception) -> Path | None:
        from harness.render import render

        alt = fallback_path(path, self.run_id)
        why = getattr(err, "strerror", None) or str(err)
        try:
            atomic_write(alt, render(report, path))
        except (OSError, ValueError) as e2:
            print(f"harness: error: cannot write {path} ({why}) nor {alt} ({e2})", file=sys.stderr)
            return None
        print(f"harness: error: cannot write {path} ({why}); saved it as {alt}", file=sys.stderr)
        return alt
