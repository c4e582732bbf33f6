"""scripts/slurm/harness.sbatch on a real one-node Slurm (Debian's slurm-wlm and munge).

The module starts its own Slurm (tests/cluster/local_slurm.sh: private state folder and
ports, installed with apt-get where missing) and brings it down afterwards. That needs
root; elsewhere the tests skip with the reason, unless HARNESS_REQUIRE_SLURM=1 (CI),
where that is a failure. Every Slurm command runs with a time limit.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.options import run_argv
from tests.clusters import LocalSlurm
from tests.conftest import ROOT

SBATCH = ROOT / "scripts" / "slurm" / "harness.sbatch"


def _unavailable(reason: str) -> None:
    if os.environ.get("HARNESS_REQUIRE_SLURM") == "1":
        pytest.fail(f"HARNESS_REQUIRE_SLURM=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def slurm():
    if os.geteuid() != 0:
        _unavailable("starting slurmctld, slurmd and munged needs root")
    s = LocalSlurm()
    up = s.up()
    if up.returncode != 0:
        s.down()
        lines = [ln for ln in up.stderr.splitlines() if ln.strip()]
        _unavailable(f"no local Slurm: {lines[-1] if lines else f'exit {up.returncode}'}")
    try:
        yield s
    finally:
        down = s.down()
        assert down.returncode == 0, down.stderr


def job_env(slurm: LocalSlurm, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in slurm.env.items() if k not in ("HARNESS_TOKEN", "HARNESS_SERVER_KEY")}
    return {**env, "PYTHONPATH": str(ROOT), "HARNESS_CACHE": str(tmp_path / "cache"), **extra}


def test_the_sbatch_script_runs_a_benchmark_with_two_workers_through_srun(tmp_path, slurm):
    token = "slurm-" + secrets.token_hex(12)
    env = job_env(slurm, tmp_path, HARNESS=f"{sys.executable} -m harness", HARNESS_TOKEN=token)
    args = run_argv(engine="sim", sim="decode_ms=5", profile="constant", rate=40, max_requests=240,
                    data="prompt_tokens=8,output_tokens=10", output=tmp_path / "out.json",
                    log_dir=tmp_path / "logs", quiet=True)  # fmt: skip
    proc = subprocess.Popen(
        ["sbatch", "--wait", "--ntasks=2", f"--chdir={tmp_path}", f"--output={tmp_path}/job.out",
         str(SBATCH), *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    on_command_lines, workers = [], {}
    deadline = time.monotonic() + 300
    try:
        while proc.poll() is None:
            assert time.monotonic() < deadline, "the job did not end in 300 s"
            for p in psutil.process_iter(["pid", "cmdline"]):
                try:
                    cmd = " ".join(p.info["cmdline"] or [])
                    if token in cmd:
                        on_command_lines.append(cmd)
                    env = p.environ() if cmd.endswith("-m harness worker") else {}
                    if env.get("HARNESS_TOKEN") == token and env.get("HARNESS_CONNECT"):
                        workers[p.pid] = env.get("SLURM_PROCID")  # address and key in env too
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
            time.sleep(0.2)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            slurm.run("scancel", "--full", "-u", "root")
    job_out = (tmp_path / "job.out").read_text()
    assert proc.returncode == 0, err + job_out
    assert on_command_lines == []  # the token travelled in the environment only
    assert sorted(set(workers.values())) == ["0", "1"]  # one worker per task, through srun
    rep = json.loads((tmp_path / "out.json").read_text())
    b = rep["benchmarks"][0]
    assert b["requests"]["completed"] == 240 and b["requests"]["failed"] == 0
    assert b["output_tokens"]["min"] == b["output_tokens"]["max"] == 10
    assert sorted(w["worker_id"] for w in b["workers"]) == [0, 1]
    assert all(w["completed"] > 0 for w in b["workers"])
    envs = rep["environment"]["workers"]
    node = os.uname().nodename.split(".")[0]
    assert [(w["launcher"], w["node"], w["remote"]) for w in envs] == [("slurm", node, True)] * 2
    assert (rep["config"]["workers"], rep["config"]["remote_workers"]) == (0, 2)
    assert "2 worker(s) on 1 node(s)" in job_out and "head exit 0" in job_out
    assert token not in (tmp_path / "out.json").read_text()
    logs = sorted(p.name for p in tmp_path.glob("results/logs/slurm-*/worker-*.log"))
    assert logs == ["worker-0.log", "worker-1.log"]


def test_make_sweep_node_runs_inside_a_job(tmp_path, slurm):
    venv = Path(sys.executable).parent.parent
    stamps = [f"-o{venv}/bin/.installed", f"-o{venv}/bin/.vllm-installed"]  # never install
    sim = "--engine sim --sim decode_ms=1 --sweep-points 2 --max-requests 30 --quiet"
    make = ["make", "-s", *stamps, f"VENV={venv}", "sweep-node", "DEVICE=cpu", "WORKERS_LIST=1 2",
            f"RESULTS={tmp_path}", "SWEEP_ID=slurm", f"ARGS={sim} --data prompt_tokens=8,output_tokens=4"]  # fmt: skip
    argv = ["--ntasks=1", f"--chdir={ROOT}", f"--output={tmp_path}/job.out",
            f"--wrap={shlex.join(make)}"]  # fmt: skip
    job = slurm.run("sbatch", "--wait", *argv, env=job_env(slurm, tmp_path), timeout=300)
    out = (tmp_path / "job.out").read_text()
    assert job.returncode == 0, job.stderr + out
    summary = json.loads((tmp_path / "slurm" / "summary.json").read_text())
    rows = {r["layout"]: r for r in summary["rows"]}
    assert set(rows) == {"1x1", "2x1"} and all(r["status"] == "ok" for r in rows.values())
    rep = json.loads((tmp_path / "slurm" / "2x1.json").read_text())
    assert [b["requests"]["completed"] for b in rep["benchmarks"]] == [30] * 4
