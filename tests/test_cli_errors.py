"""Bad input: one line on stderr, exit code 2, no traceback, nothing started."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CASES = [
    (["--engine", "sim", "--profile", "bogus"], "Invalid value for '--profile'"),
    (
        ["--engine", "sim", "--profile", "constant", "--rate", "0"],
        "--rate must be > 0",
    ),
    (
        ["--engine", "sim", "--profile", "constant", "--rate", "-3"],
        "--rate must be > 0",
    ),
    (["--engine", "sim", "--profile", "constant"], "--profile constant needs --rate"),
    (["--engine", "sim", "--profile", "concurrent"], "needs --concurrency"),
    (
        ["--engine", "sim", "--rate", "5"],
        "--rate applies to --profile constant or poisson, not throughput",
    ),
    (["--engine", "nope"], "Invalid value for '--engine'"),
    (["--engine", "sim", "--data", "prompt_tokens=-4"], "must not be negative"),
    (["--engine", "sim", "--data", "colour=blue"], "unknown key 'colour'"),
    (["--engine", "sim", "--sim", "warp=9"], "--sim"),
    (["--engine", "sim", "--slo", "latency=5"], "--slo: unknown key"),
    (["--engine", "sim", "--max-requests", "0"], "--max-requests must be an integer in [1,"),
    (
        ["--engine", "sim", "--engine-arg", "max_num_seqs=4"],
        "--engine-arg applies to --engine vllm",
    ),
    (["--engine", "sim", "--warmup", "abc"], "--warmup: expected a request count"),
    (["--engine", "vllm", "--device", "cuda", "--workers", "2", "--tp", "4"], "needs 8 GPUs"),
    (["--engine", "vllm", "--model", "/nonexistent/model"], "no such file"),
    (["--engine", "vllm", "--device", "cpu", "--workers", "64"], "needs one CPU core each"),
    (
        ["--engine", "vllm", "--device", "cpu", "--tp", "3"],
        "does not divide the model's 4 attention heads",
    ),
    (
        ["--engine", "sim", "--max-seconds", "5", "--cooldown", "3"],
        "--cooldown 3 with --profile throughput needs --max-requests",
    ),
    (
        ["--engine", "vllm", "--device", "cpu", "--engine-arg", "no_such_field=1"],
        "not an AsyncEngineArgs field",
    ),
    (["--engine", "vllm", "--device", "cpu", "--engine-arg", "noequals"], "expected key=value"),
    (["--engine", "sim", "--remote-workers", "2"], "--remote-workers needs --listen"),
    (["--engine", "sim", "--listen", "tcp://127.0.0.1:7000"], "--listen needs --remote-workers"),
    (
        ["--engine", "sim", "--listen", "127.0.0.1:7000", "--remote-workers", "1"],
        "--listen: expected tcp://HOST:PORT",
    ),
    (
        ["--engine", "sim", "--listen", "tcp://127.0.0.1:65535", "--remote-workers", "1"],
        "port 65535 is out of range",
    ),
    (["--engine", "sim", "--workers", "0"], "--workers must be > 0"),
    (["--engine", "sim", "--workers", "x"], "harness: error:"),
    (["--engine", "sim", "--no-such-option"], "harness: error:"),
]


def cli(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``harness run`` exactly as typed (raw arguments: mistakes included)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HARNESS_CACHE": str(tmp_path / "cache"),
           "CUDA_VISIBLE_DEVICES": ""}  # fmt: skip
    out = ["--output", str(tmp_path / "out.json"), "--log-dir", str(tmp_path / "logs")]
    return subprocess.run([sys.executable, "-m", "harness", "run", *argv, *out], capture_output=True,
                          text=True, timeout=60, env=env, cwd=ROOT)  # fmt: skip


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    if "AsyncEngineArgs" in message and importlib.util.find_spec("vllm") is None:
        pytest.skip("checking engine-argument names needs vllm")
    proc = cli(tmp_path, *args)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("harness: error:")
    assert message in lines[0]
    assert not (tmp_path / "out.json").exists()


def test_engine_args_file_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    proc = cli(tmp_path, "--engine", "vllm", "--device", "cpu", "--engine-args-file", str(bad))
    assert proc.returncode == 2 and "not a JSON object" in proc.stderr
    broken = tmp_path / "broken.json"
    broken.write_text("{nope")
    proc = cli(tmp_path, "--engine", "vllm", "--device", "cpu", "--engine-args-file", str(broken))
    assert proc.returncode == 2 and str(broken) in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_report_of_a_newer_schema_is_a_clear_error(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "future.json"
    path.write_text('{"schema_version": 99, "benchmarks": []}')
    out = subprocess.run(
        [sys.executable, "-m", "harness", "report", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "schema version 99 is newer" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


WORKER_CASES = [
    (["--connect", "tcp://127.0.0.1:7000"], "needs --token"),
    (["--connect", "head:7000", "--token", "t"], "--connect: expected tcp://HOST:PORT"),
    (["--token", "t"], "harness: error:"),
    (
        ["--connect", "tcp://127.0.0.1:7000", "--token", "t", "--model", "/nonexistent"],
        "--model /nonexistent: not a directory",
    ),
]


@pytest.mark.parametrize("args,message", WORKER_CASES, ids=[" ".join(a) for a, _ in WORKER_CASES])
def test_bad_worker_input_is_one_line_and_exit_2(args, message, monkeypatch):
    import subprocess
    import sys

    monkeypatch.delenv("HARNESS_TOKEN", raising=False)
    out = subprocess.run(
        [sys.executable, "-m", "harness", "worker", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("harness: error:"), out.stderr
    assert message in lines[0]
