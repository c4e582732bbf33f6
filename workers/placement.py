"""Which devices each worker gets: ``--workers W --tp T`` on the visible GPUs or CPU cores."""

from __future__ import annotations

import os
import shutil
import subprocess

import msgspec


class PlacementError(ValueError):
    """A layout that does not fit the node."""


class Slot(msgspec.Struct, frozen=True):
    worker_id: int
    devices: list[str]  # GPU ids (as CUDA_VISIBLE_DEVICES takes them) or CPU core ids
    env: dict[str, str]
    # CPU engines: cores kept free of the model's threads, for the Python side of the run.
    spare_cores: list[int] = []


def discover_gpus() -> list[str]:
    """Visible GPU ids, without initialising CUDA in this process."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [str(i) for i, line in enumerate(ln for ln in out.splitlines() if ln.startswith("GPU "))]


def gpu_names() -> dict[str, str]:
    if shutil.which("nvidia-smi") is None:
        return {}
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    pairs = (line.split(",", 1) for line in out.splitlines() if "," in line)
    return {i.strip(): n.strip() for i, n in pairs}


def place_gpus(workers: int, tp: int, gpus: list[str]) -> list[Slot]:
    """Worker i gets GPUs ``gpus[i*tp:(i+1)*tp]``."""
    if workers < 1 or tp < 1:
        raise PlacementError("--workers and --tp must be at least 1")
    need = workers * tp
    if need > len(gpus):
        raise PlacementError(
            f"--workers {workers} x --tp {tp} needs {need} GPUs, but {len(gpus)} are available"
            + (f" ({','.join(gpus)})" if gpus else "")
        )
    slots = []
    for i in range(workers):
        mine = gpus[i * tp : (i + 1) * tp]
        slots.append(Slot(i, mine, {"CUDA_VISIBLE_DEVICES": ",".join(mine)}))
    return slots


def named(slots: list[Slot]) -> list[Slot]:
    """The same slots, with each GPU id labelled by its model name for the report."""
    names = gpu_names()
    return [
        Slot(s.worker_id, [f"{g}: {names[g]}" if g in names else g for g in s.devices], s.env)
        for s in slots
    ]


def place_cpus(workers: int, cores: list[int], kv_cache_gb: int) -> list[Slot]:
    """Split the cores evenly; each worker's engine binds its OpenMP threads to its own."""
    if workers < 1:
        raise PlacementError("--workers must be at least 1")
    if workers > len(cores):
        raise PlacementError(
            f"--workers {workers} needs one CPU core each, but {len(cores)} are available"
        )
    per = len(cores) // workers
    slots = []
    for i in range(workers):
        mine = cores[i * per : (i + 1) * per]
        # Like vLLM's own "auto" binding, a share of two or more cores keeps one for the
        # worker's Python side (AsyncLLM's output handling, our socket I/O).
        omp = mine[:-1] if len(mine) > 1 else mine
        env = {
            "CUDA_VISIBLE_DEVICES": "",
            "VLLM_CPU_OMP_THREADS_BIND": ",".join(str(c) for c in omp),
            "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gb),
            "OMP_NUM_THREADS": str(len(omp)),
        }
        spare = mine[-1:] if len(mine) > 1 else []
        slots.append(Slot(i, [str(c) for c in mine], env, spare))
    return slots


def place_remote(
    engine: str, device: str, tp: int, kv_cache_gb: int, ray_executor: bool = False
) -> tuple[str, Slot]:
    """A remote worker's devices, found on its own host: its first ``tp`` visible GPUs, or its cores.

    Returns the device kind it resolved ("auto" becomes "cuda" where GPUs are visible).
    With vLLM's Ray executor (``distributed_executor_backend=ray``) vLLM places the
    engine's GPUs itself, on any nodes of its Ray cluster: nothing is placed here.
    """
    if engine == "sim":
        return "sim", Slot(0, [], {})
    if ray_executor and device != "cpu":
        return "cuda", Slot(0, [f"{tp} GPU(s) placed by vLLM's Ray executor"], {})
    gpus = discover_gpus() if device in ("auto", "cuda") else []
    if device == "cuda" or (device == "auto" and gpus):
        return "cuda", named(place_gpus(1, tp, gpus))[0]
    if tp != 1:
        raise PlacementError(f"no GPU visible here for --tp {tp}")
    return "cpu", place_cpus(1, usable_cores(), kv_cache_gb)[0]


def usable_cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))
