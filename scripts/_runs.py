"""Shared by the benchmark scripts: run ``harness run`` and read its report."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def harness_run(args: list[str], timeout: float = 900) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.json"
        cmd = [sys.executable, "-m", "harness", "run", *args, "--quiet", "--output", str(out)]
        cmd += ["--log-dir", str(Path(tmp) / "logs")]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise SystemExit(
                f"harness run failed ({proc.returncode}): {proc.stderr.strip()[-500:]}"
            )
        return json.loads(out.read_text())


def machine() -> dict[str, Any]:
    import os

    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
    }


def write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path}", file=sys.stderr)
