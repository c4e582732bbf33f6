"""A worker joined over TCP (``harness worker --connect``) vs the same worker started locally.

Runs the same benchmark with ``--workers 1`` and with ``--workers 0 --remote-workers 1``
on loopback TCP, alternating ``--repeat`` pairs, and writes both sides' throughput,
latencies and the remote worker's clock offset estimate. Everything after ``--`` goes
to ``harness run``.

    python scripts/bench_remote.py --output results/bench_remote.json -- \\
        --engine vllm --max-requests 8192 --profile concurrent --concurrency 128
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _runs import ROOT, free_port, harness_run, machine, write  # noqa: E402

from harness.options import run_argv  # noqa: E402

DEFAULT_ARGS = run_argv(
    engine="sim",
    sim="decode_ms=5",
    profile="concurrent",
    concurrency="64",
    max_requests=4096,
    data="prompt_tokens=128,output_tokens=64",
)


JOIN_S = 60  # for the head to listen and write its key
STOP_S = 15  # for a process told to stop (the worker's supervisor gives its engine 10 s)


def _tail(path: Path) -> str:
    return path.read_text(errors="replace").strip()[-500:] if path.exists() else ""


def _head_key(key_file: Path, head: subprocess.Popen[bytes], err: Path) -> str:
    """The head's public key, once it listens and has written it (0600)."""
    deadline = time.monotonic() + JOIN_S
    while not key_file.exists() or not key_file.read_text().strip():
        if head.poll() is not None:
            raise SystemExit(f"harness run failed ({head.returncode}): {_tail(err)}")
        if time.monotonic() > deadline:
            raise SystemExit(f"harness run wrote no key in {JOIN_S} s: {_tail(err)}")
        time.sleep(0.05)
    return key_file.read_text().strip()


def _wait(head: subprocess.Popen[bytes], worker: subprocess.Popen[bytes], tmp: Path,
          timeout: float) -> None:  # fmt: skip
    """Until the head ends; a worker that fails first ends it (the head would wait for it)."""
    deadline = time.monotonic() + timeout
    while head.poll() is None:
        if worker.poll() not in (None, 0):
            raise SystemExit(
                f"harness worker failed ({worker.returncode}): {_tail(tmp / 'worker.err')}"
            )
        if time.monotonic() > deadline:
            raise SystemExit(f"harness run did not end in {timeout:g} s: {_tail(tmp / 'head.err')}")
        time.sleep(0.1)
    if head.returncode != 0:
        raise SystemExit(f"harness run failed ({head.returncode}): {_tail(tmp / 'head.err')}")
    try:
        code = worker.wait(timeout=60)
    except subprocess.TimeoutExpired:
        raise SystemExit("harness worker did not exit 60 s after the run ended") from None
    if code != 0:  # the run's figures stand: the report was written before it stopped
        print(f"bench_remote: harness worker exited {code}: {_tail(tmp / 'worker.err')}",
              file=sys.stderr)  # fmt: skip


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM first: the worker's supervisor then stops its engine's whole session (vLLM's
    engine-core processes outlive a SIGKILL); SIGKILL only past STOP_S."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(STOP_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def remote_run(args: list[str], timeout: float = 900) -> dict[str, Any]:
    port = free_port(2)
    token = os.urandom(16).hex()
    env = {**os.environ, "HARNESS_TOKEN": token}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        out, key_file = tmp / "run.json", tmp / "head.key"
        own = run_argv(workers=0, quiet=True, listen=f"tcp://127.0.0.1:{port}", remote_workers=1,
                       key_file=key_file, output=out, log_dir=tmp / "logs")  # fmt: skip
        cmd = [sys.executable, "-m", "harness", "run", *args, *own]
        procs: list[subprocess.Popen[bytes]] = []
        try:
            with open(tmp / "head.err", "wb") as err:
                procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=err))
            key = _head_key(key_file, procs[0], tmp / "head.err")
            connect = ["--connect", f"tcp://127.0.0.1:{port}", "--server-key", key]
            with open(tmp / "worker.err", "wb") as err:
                procs.append(subprocess.Popen([sys.executable, "-m", "harness", "worker", *connect],
                                              cwd=ROOT, env=env, stdout=err, stderr=err))  # fmt: skip
            _wait(procs[0], procs[1], tmp, timeout)
        finally:
            _stop(procs)
        return json.loads(out.read_text())


def summary(rep: dict[str, Any]) -> dict[str, Any]:
    b = rep["benchmarks"][0]
    w = rep["environment"]["workers"][0]
    return {
        "completed": b["requests"]["completed"],
        "output_tokens_per_s": b["throughput"]["output_tokens_per_s"],
        "ttft_p50_ms": b["ttft_ms"]["p50"],
        "tpot_p50_ms": b["tpot_ms"]["p50"],
        "dispatch_lag_p50_ms": b["dispatch_lag_ms"]["p50"],
        "remote": w["remote"],
        "clock_offset_ns": w["clock_offset_ns"],
        "clock_error_ns": w["clock_error_ns"],
        "device": w["device"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2, help="alternating local/remote pairs")
    ap.add_argument("--output", type=Path, default=Path("results/bench_remote.json"))
    ap.add_argument("harness_args", nargs="*", help="after --: arguments of harness run")
    ns = ap.parse_args()
    args = ns.harness_args or DEFAULT_ARGS
    runs: dict[str, list[dict[str, Any]]] = {"local": [], "remote": []}
    for i in range(ns.repeat):
        order = ("local", "remote") if i % 2 == 0 else ("remote", "local")
        for kind in order:
            rep = harness_run(workers=1, extra=args) if kind == "local" else remote_run(args)
            runs[kind].append(summary(rep))
            s = runs[kind][-1]
            print(f"{kind}: {s['output_tokens_per_s']:.1f} output tok/s", file=sys.stderr)
    med = {k: statistics.median(r["output_tokens_per_s"] for r in v) for k, v in runs.items()}
    result = {
        "what": "one worker over loopback TCP vs the same worker local",
        "harness_args": args,
        "machine": machine(),
        "runs": runs,
        "median_output_tokens_per_s": med,
        "remote_over_local": med["remote"] / med["local"],
    }
    print(json.dumps({k: result[k] for k in ("median_output_tokens_per_s", "remote_over_local")}))
    write(ns.output, result)


if __name__ == "__main__":
    main()
