"""Validation of user input: every number finite and in range, one line per mistake.

Everything here raises :class:`UsageError`, which the CLI prints as one line and
exit code 2, before anything slow starts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path


class UsageError(ValueError):
    """Bad input; the message is one line for the user."""


# Far beyond any real run, small enough that arithmetic on it stays exact and in range.
MAX_COUNT = 10**9
MAX_SECONDS = 10 * 365 * 86400.0


def number(value: float, name: str, *, lo: float, hi: float, lo_open: bool = False) -> float:
    """``value`` if it is finite and within [lo, hi] (or (lo, hi] with ``lo_open``)."""
    if not math.isfinite(value):
        raise UsageError(f"{name} must be a finite number (got {value})")
    if value < lo or (lo_open and value == lo):
        raise UsageError(f"{name} must be {'>' if lo_open else '>='} {lo:g} (got {value:g})")
    if value > hi:
        raise UsageError(f"{name} must be at most {hi:g} (got {value:g})")
    return value


def count(value: int, name: str, *, lo: int = 1, hi: int = MAX_COUNT) -> int:
    if not lo <= value <= hi:
        raise UsageError(f"{name} must be an integer in [{lo}, {hi:,}] (got {value})")
    return value


def seconds(value: float, name: str, *, allow_zero: bool = False) -> float:
    return number(value, name, lo=0.0, hi=MAX_SECONDS, lo_open=not allow_zero)


def float_list(text: str, name: str, *, hi: float = 1e7) -> list[float]:
    """``1,2.5,4``: each value finite and > 0."""
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise UsageError(f"{name}: expected numbers separated by commas, got {text!r}")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise UsageError(f"{name}: expected numbers separated by commas, got {text!r}") from None
    return [number(v, name, lo=0.0, hi=hi, lo_open=True) for v in values]


def int_list(text: str, name: str, *, hi: int = 10**6) -> list[int]:
    """``1,4,16``: each a whole number in [1, hi]."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise UsageError(
            f"{name}: expected whole numbers separated by commas, got {text!r}"
        ) from None
    return [count(v, name, hi=hi) for v in values]


def distinct(values: Sequence[float], name: str) -> None:
    if len(set(values)) != len(values):
        raise UsageError(f"{name}: a value is given twice ({', '.join(f'{v:g}' for v in values)})")


def writable_file(path: Path, name: str) -> Path:
    """``path`` can be written: not a folder, under no file, in a folder we can create files in.

    Checked before the engines start, by creating (and removing) a file where the report
    will go or in the nearest folder that exists, so a typo never costs a finished run.
    Root ignores permission bits, so only trying tells.
    """
    import os
    import tempfile

    if path.is_dir():
        raise UsageError(f"{name} {path}: is a directory")
    probe = path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"{name} {path}: {probe} is not a directory")
    try:
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".harness-probe-")
    except OSError as e:
        raise UsageError(f"{name} {path}: cannot write in {probe} ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(tmp)
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{name} {path}: not writable")
    return path
