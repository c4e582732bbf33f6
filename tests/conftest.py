"""Shared helpers: run the real CLI in a subprocess and read its JSON report.

Command lines are built by :func:`harness.options.run_argv`, the one helper scripts
and tests use, from keyword options (``workers=2, rate=[1, 2]``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.options import run_argv

ROOT = Path(__file__).resolve().parent.parent
# Every process this test session starts inherits this, so a leak check can tell ours
# from those of other sessions running on the same machine.
SESSION_ENV = "HARNESS_TEST_SESSION"
os.environ.setdefault(SESSION_ENV, f"{os.getpid()}-{time.time_ns()}")
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def harness_cmd(tmp_path: Path, **options: Any) -> list[str]:
    """``harness run`` with ``options``, quiet, writing tmp_path/out.json and its logs there."""
    options.setdefault("output", [tmp_path / "out.json"])
    options.setdefault("log_dir", tmp_path / "logs")
    options.setdefault("quiet", True)
    return [sys.executable, "-m", "harness", "run", *run_argv(**options)]


def run_harness(
    tmp_path: Path, timeout: float = 120, check: bool = True, env: dict[str, str] | None = None,
    **options: Any,
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any] | None]:  # fmt: skip
    out = tmp_path / "out.json"
    full_env = {**ENV, "HARNESS_CACHE": str(tmp_path / "cache"), **(env or {})}
    cmd = harness_cmd(tmp_path, **options)
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=ROOT
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"harness exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    report = json.loads(out.read_text()) if out.exists() else None
    return proc, report


def start_harness(
    tmp_path: Path, env: dict[str, str] | None = None, **options: Any
) -> subprocess.Popen[str]:
    """The same, in the background."""
    full_env = {**ENV, "HARNESS_CACHE": str(tmp_path / "cache"), **(env or {})}
    return subprocess.Popen(harness_cmd(tmp_path, **options), cwd=ROOT, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


@pytest.fixture
def harness(tmp_path: Path):
    def _run(**options: Any):
        return run_harness(tmp_path, **options)

    return _run
