"""Shared by the benchmark scripts: run ``harness run`` and read its report."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.options import run_argv  # noqa: E402


def harness_run(
    timeout: float = 900,
    extra: list[str] | None = None,
    env: dict[str, str] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """``harness run`` with ``options`` (keywords of :func:`harness.options.run_argv`); its report.

    ``env`` adds to this process's environment (the harness's workers inherit it).
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.json"
        argv = run_argv(**options, quiet=True, output=out, log_dir=Path(tmp) / "logs")
        cmd = [sys.executable, "-m", "harness", "run", *argv, *(extra or [])]
        full_env = {**os.environ, **env} if env else None
        proc = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=full_env
        )
        if proc.returncode != 0:
            raise SystemExit(
                f"harness run failed ({proc.returncode}): {proc.stderr.strip()[-500:]}"
            )
        return json.loads(out.read_text())


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
    }


def write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path}", file=sys.stderr)


def free_port(count: int = 1, host: str = "127.0.0.1") -> int:
    """A port whose ``count - 1`` successors are free too (the head's collector takes PORT+1)."""
    for _ in range(100):
        with socket.socket() as a:
            a.bind((host, 0))
            port = int(a.getsockname()[1])
        if port + count > 65535:
            continue
        socks = []
        try:
            for p in range(port, port + count):
                s = socket.socket()
                socks.append(s)
                s.bind((host, p))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise SystemExit(f"no {count} free consecutive ports on {host}")
