"""The collector's ingest ceiling: token entries per second of its own CPU time.

Feeds the real ingest path (decode, checks, columns, statistics input) in this process
with Events shaped like an engine's: one entry per running request per step, ``inflight``
requests per message. Messages go in one at a time (a collector that keeps up) and in
batches (what it takes from its socket when it falls behind). CPU time, not wall time, so
other processes on the machine do not count against it.

    python scripts/bench_ingest.py --output results/bench_ingest.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _runs import machine, write  # noqa: E402

from harness.accumulator import BenchAccumulator  # noqa: E402
from harness.collector import Collector, CollectorConfig  # noqa: E402
from protocol import codec  # noqa: E402
from protocol import messages as m  # noqa: E402


def messages(inflight: int, steps: int, t0: int) -> list[bytes]:
    enc = codec.events()
    rid = np.arange(inflight, dtype=np.int64).tobytes()
    ones = np.ones(inflight, np.int32).tobytes()
    return [enc.encode(m.Events(0, s, rid, ones, np.full(inflight, t0 + 1000 * (s + 1), np.int64).tobytes()))
            for s in range(steps)]  # fmt: skip


def measure(inflight: int, steps: int, batch: int) -> float:
    """Token entries per CPU second, ``batch`` messages per ingest."""
    c = Collector(CollectorConfig("ipc://x", "ipc://y", "t"))
    t0 = time.monotonic_ns()
    c.bench = BenchAccumulator(m.BeginBench(0, t0, 0, inflight, 1 << 30, 10_000))
    started = [m.Started(r, 0, 0, t0, t0 + 1, 16, 1 << 30) for r in range(inflight)]
    c.ingest(m.Events(0, 0, b"", b"", b"", started), "ipc")
    raw = messages(inflight, steps, t0)
    dec = codec.events()
    cpu = time.process_time()
    for i in range(0, len(raw), batch):
        c.ingest_batch([dec.decode(r) for r in raw[i : i + batch]], "ipc")
    used = time.process_time() - cpu
    assert int(c.bench.c["n_out"].sum()) == inflight * steps  # every entry taken
    return inflight * steps / used


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inflight", default="1,8,64,256,1024")
    ap.add_argument("--entries", type=int, default=400_000, help="token entries per measurement")
    ap.add_argument("--output", type=Path, default=Path("results/bench_ingest.json"))
    a = ap.parse_args()
    rows = []
    for inflight in (int(x) for x in a.inflight.split(",")):
        steps = max(a.entries // inflight, 200)
        row = {"inflight": inflight, "entries": inflight * steps}
        for batch in (1, 16, 256):
            row[f"entries_per_cpu_s_batch_{batch}"] = measure(inflight, steps, batch)
        rows.append(row)
        print(f"{inflight:5d} in flight: " + ", ".join(
            f"batch {b}: {row[f'entries_per_cpu_s_batch_{b}'] / 1e6:.2f} M/s" for b in (1, 16, 256)))  # fmt: skip
    write(a.output, {"benchmark": "bench_ingest", "machine": machine(), "args": vars(a) | {"output": str(a.output)},
                     "results": rows})  # fmt: skip


if __name__ == "__main__":
    main()
