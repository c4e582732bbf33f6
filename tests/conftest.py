"""Shared helpers: run the real CLI in a subprocess and read its JSON report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_harness(
    args: list[str], tmp_path: Path, timeout: float = 120, check: bool = True
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any] | None]:
    out = tmp_path / "out.json"
    cmd = [sys.executable, "-m", "harness", "run", *args, "--output", str(out), "--quiet"]
    cmd += ["--log-dir", str(tmp_path / "logs")]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HARNESS_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"harness exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    report = json.loads(out.read_text()) if out.exists() else None
    return proc, report


@pytest.fixture
def harness(tmp_path: Path):
    def _run(*args: str, **kw: Any):
        return run_harness(list(args), tmp_path, **kw)

    return _run
