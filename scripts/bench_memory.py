"""Memory over a long run: 1,000,000 requests on the zero-cost sim engine, RSS per process.

Samples the resident memory of the coordinator, the collector and each worker
every 0.5 s and reports each one's peak, and the collector's bytes per request.

    python scripts/bench_memory.py --output results/bench_memory.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from _runs import ROOT, machine, write

from harness.options import run_argv


def role(p: psutil.Process, root: int) -> str:
    if p.pid == root:
        return "coordinator"
    cmd = " ".join(p.cmdline())
    for name in ("harness-collector", *(f"harness-worker-{i}" for i in range(64))):
        if f" {name} " in f" {cmd} ":
            return name
    return "other"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--rate", type=float, default=40_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--output-tokens", type=int, default=4)
    ap.add_argument(
        "--records", action="store_true", help="also write requests.jsonl.gz (every request)"
    )
    ap.add_argument("--output", type=Path, default=Path("results/bench_memory.json"))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.json"
        cmd = [sys.executable, "-m", "harness", "run", *run_argv(
            engine="sim", workers=a.workers, profile="constant", rate=a.rate,
            max_requests=a.requests, checkpoint_s=0, quiet=True,
            data=f"prompt_tokens=16,output_tokens={a.output_tokens}",
            output=[out, *([Path(tmp) / "requests.jsonl.gz"] if a.records else [])],
            log_dir=Path(tmp) / "logs")]  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
        peak: dict[str, int] = {}
        first: dict[str, int] = {}
        samples = []
        t0 = time.monotonic()
        while proc.poll() is None:
            try:
                procs = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children()]
                now = {}
                for p in procs:
                    r = role(p, proc.pid)
                    now[r] = p.memory_info().rss
                    peak[r] = max(peak.get(r, 0), now[r])
                    first.setdefault(r, now[r])
                samples.append({"t_s": round(time.monotonic() - t0, 1), **now})
            except psutil.NoSuchProcess:
                pass
            time.sleep(0.5)
        err = proc.stderr.read() if proc.stderr else ""
        if proc.returncode != 0:
            raise SystemExit(f"run failed: {err[-500:]}")
        b = json.loads(out.read_text())["benchmarks"][0]
        rows = sum(1 for _ in gzip.open(Path(tmp) / "requests.jsonl.gz")) if a.records else None
    done = b["requests"]["completed"]
    grow = peak.get("harness-collector", 0) - first.get("harness-collector", 0)
    result = {
        "requests": a.requests,
        "completed": done,
        "output_tokens_per_request": a.output_tokens,
        "peak_rss_mb": {k: round(v / 2**20, 1) for k, v in sorted(peak.items())},
        "collector_growth_mb": round(grow / 2**20, 1),
        "collector_bytes_per_request": round(grow / max(done, 1), 1),
        "duration_s": b["duration_s"],
        "request_records": rows,
    }
    print(json.dumps(result, indent=2))
    write(a.output, {"benchmark": "bench_memory", "machine": machine(), "args": {k: str(v) for k, v in vars(a).items()}, "result": result, "samples": samples[::4]})  # fmt: skip


if __name__ == "__main__":
    main()
