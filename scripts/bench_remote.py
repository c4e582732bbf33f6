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
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _runs import ROOT, harness_run, machine, write  # noqa: E402

from harness.options import run_argv  # noqa: E402

DEFAULT_ARGS = run_argv(
    engine="sim",
    sim="decode_ms=5",
    profile="concurrent",
    concurrency="64",
    max_requests=4096,
    data="prompt_tokens=128,output_tokens=64",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def remote_run(args: list[str], timeout: float = 900) -> dict[str, Any]:
    port = free_port()
    token = os.urandom(16).hex()
    env = {**os.environ, "HARNESS_TOKEN": token}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.json"
        own = run_argv(workers=0, quiet=True, listen=f"tcp://127.0.0.1:{port}", remote_workers=1,
                       output=out, log_dir=Path(tmp) / "logs")  # fmt: skip
        cmd = [sys.executable, "-m", "harness", "run", *args, *own]
        head = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
        worker = subprocess.Popen(
            [sys.executable, "-m", "harness", "worker", "--connect", f"tcp://127.0.0.1:{port}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _, err = head.communicate(timeout=timeout)
            worker.wait(timeout=60)
        finally:
            for p in (head, worker):
                if p.poll() is None:
                    p.kill()
        if head.returncode != 0:
            raise SystemExit(f"harness run failed ({head.returncode}): {err.strip()[-500:]}")
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
