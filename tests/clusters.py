"""Real local clusters for the launcher tests: a private Ray cluster and a one-node Slurm.

Each is started by the test that needs it and stopped in its teardown, on its own ports
and state folder, so it never touches another cluster on the same machine (``ray stop``
and Slurm's default ports are shared by every user of a host: neither is used here).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import psutil

ROOT = Path(__file__).resolve().parent.parent


def _runs() -> ModuleType:
    """scripts/_runs.py, the benchmark scripts' helpers, loaded once under their own name."""
    if "_runs" not in sys.modules:
        spec = importlib.util.spec_from_file_location("_runs", ROOT / "scripts" / "_runs.py")
        assert spec is not None and spec.loader is not None
        sys.modules["_runs"] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules["_runs"]


free_port = _runs().free_port  # one port-finder for the tests and the scripts
LOCAL_SLURM = ROOT / "tests" / "cluster" / "local_slurm.sh"


class RayCluster:
    """``ray start --head --block`` on free ports and a short temp dir of its own.

    SIGTERM to the blocking ``ray start`` stops exactly this cluster's processes.
    ``gpus`` are logical: Ray only counts them, which is enough to test placement.
    """

    def __init__(self, cpus: int = 4, gpus: int = 0) -> None:
        self.port = free_port()
        # AF_UNIX paths must stay under 107 bytes: keep the temp dir short.
        self.temp_dir = tempfile.mkdtemp(prefix="hr", dir="/tmp")
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT)}
        self.env.pop("RAY_ADDRESS", None)
        ray = str(Path(sys.executable).parent / "ray")
        self.log = open(Path(self.temp_dir) / "ray-start.log", "wb")  # noqa: SIM115
        cmd = [ray, "start", "--head", "--block", "--disable-usage-stats",
               f"--port={self.port}", f"--temp-dir={self.temp_dir}",
               "--include-dashboard=false", "--include-log-monitor=false",
               f"--dashboard-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
               f"--num-cpus={cpus}", f"--num-gpus={gpus}", "--object-store-memory=80000000"]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._wait_ready(cpus)

    def _wait_ready(self, cpus: int, timeout: float = 120.0) -> None:
        """Until the head node has registered its resources (GCS up is not enough)."""
        ray = str(Path(sys.executable).parent / "ray")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited {self.proc.returncode}: {self.tail()}")
            out = subprocess.run([ray, "status", f"--address={self.address}"], env=self.env,
                                 capture_output=True, text=True, timeout=60).stdout  # fmt: skip
            if f"/{cpus}.0 CPU" in out:
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the Ray cluster did not come up in {timeout:g}s: {self.tail()}")

    def tail(self) -> str:
        try:
            return (Path(self.temp_dir) / "ray-start.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def processes(self) -> list[psutil.Process]:
        """Every live process of this cluster: its temp dir is on their command lines."""
        found = []
        for p in psutil.process_iter(["cmdline", "status"]):
            try:
                if p.info["status"] == psutil.STATUS_ZOMBIE:
                    continue
                if any(self.temp_dir in part for part in p.info["cmdline"] or []):
                    found.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return found

    def stop(self) -> list[str]:
        """Stop this cluster; what had to be killed after ray start's own shutdown."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(45)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        deadline = time.monotonic() + 10
        left = self.processes()
        while left and time.monotonic() < deadline:
            time.sleep(0.25)
            left = self.processes()
        for p in left:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        self.log.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        return [" ".join(p.info["cmdline"] or [])[:100] for p in left]


class LocalSlurm:
    """A one-node Slurm (munged, slurmctld, slurmd) from tests/cluster/local_slurm.sh.

    Private state folder and ports, no /etc changes: commands find it through SLURM_CONF.
    """

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="hslurm", dir="/tmp")
        self.env = {
            **os.environ,
            "LOCAL_SLURM_DIR": self.dir,
            "LOCAL_SLURM_NO_ETC": "1",
            "LOCAL_SLURM_CTLD_PORT": str(free_port()),
            "LOCAL_SLURM_D_PORT": str(free_port()),
        }
        self.env["SLURM_CONF"] = f"{self.dir}/etc/slurm.conf"

    def up(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(LOCAL_SLURM), "up"], env=self.env,
                              capture_output=True, text=True, timeout=600)  # fmt: skip

    def down(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(LOCAL_SLURM), "down"], env=self.env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    def run(self, *cmd: str, timeout: float = 30, **kw: object) -> subprocess.CompletedProcess[str]:
        """A Slurm command with a time limit (with munged gone they hang for about 50 s)."""
        return subprocess.run(list(cmd), env=kw.pop("env", self.env), capture_output=True,  # type: ignore[arg-type]
                              text=True, timeout=timeout, **kw)  # type: ignore[call-overload]  # fmt: skip
