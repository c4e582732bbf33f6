"""The collector's ingest ceiling: token entries per second of its own CPU time.

Feeds the real ingest path (decode, checks, columns, statistics input) in this process
with Events shaped like an engine's: one entry per running request per step, ``inflight``
requests per message. Messages go in one at a time (a collector that keeps up) and in
batches (what it takes from its socket when it falls behind). CPU time, not wall time, so
other processes on the machine do not count against it.

Then whole requests (``--lifecycle-requests``, 0 to skip): each starts, gets 4 tokens over 4
steps and finishes, ``--new-per-step`` starting in each message, as short requests at a high
rate arrive: requests per CPU second, where the per-request records (starts, ends) cost more
than the token columns.

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


OUTPUTS = 4  # tokens per request, one per step, in the lifecycle measurement


def lifecycle_messages(requests: int, new: int, t0: int) -> list[bytes]:
    """Step s starts requests [s*new, (s+1)*new), gives each running one a token, ends the oldest."""
    enc = codec.events()
    out = []
    for s in range(requests // new + OUTPUTS):
        lo, hi = max(s - OUTPUTS + 1, 0) * new, min(s + 1, requests // new) * new
        t = t0 + 1000 * (s + 1)
        started = [m.Started(r, 0, 0, t0, t - 500, 16, OUTPUTS) for r in range(s * new, hi)]
        running = np.arange(lo, hi, dtype=np.int64)
        ending = range(lo, min(lo + new, hi)) if s >= OUTPUTS - 1 else range(0)
        out.append(enc.encode(m.Events(0, s, running.tobytes(), np.ones(len(running), np.int32).tobytes(),
                                       np.full(len(running), t, np.int64).tobytes(), started,
                                       [m.Finished(r, OUTPUTS, t + 100, "length") for r in ending])))  # fmt: skip
    return out


def measure_lifecycle(requests: int, new: int, batch: int) -> float:
    """Whole requests per CPU second, ``batch`` messages per ingest."""
    c = Collector(CollectorConfig("ipc://x", "ipc://y", "t"))
    t0 = time.monotonic_ns()
    c.bench = BenchAccumulator(m.BeginBench(0, t0, 0, requests, OUTPUTS, 10_000))
    raw = lifecycle_messages(requests, new, t0)
    dec = codec.events()
    cpu = time.process_time()
    for i in range(0, len(raw), batch):
        c.ingest_batch([dec.decode(r) for r in raw[i : i + batch]], "ipc")
    used = time.process_time() - cpu
    assert c.bench.n_ended == requests and not c.bench.rejected  # every request, exactly
    assert int(c.bench.c["n_out"].sum()) == requests * OUTPUTS
    return requests / used


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inflight", default="1,8,64,256,1024")
    ap.add_argument("--entries", type=int, default=400_000, help="token entries per measurement")
    ap.add_argument("--lifecycle-requests", type=int, default=100_000)
    ap.add_argument("--new-per-step", type=int, default=2)
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
    lifecycle = {}
    if a.lifecycle_requests:
        for batch in (1, 16, 256):
            lifecycle[f"requests_per_cpu_s_batch_{batch}"] = measure_lifecycle(
                a.lifecycle_requests, a.new_per_step, batch
            )
        print(f"whole requests ({a.new_per_step} new per message): " + ", ".join(
            f"batch {b}: {lifecycle[f'requests_per_cpu_s_batch_{b}']:,.0f}/s" for b in (1, 16, 256)))  # fmt: skip
    write(a.output, {"benchmark": "bench_ingest", "machine": machine(), "args": vars(a) | {"output": str(a.output)},
                     "results": rows, "lifecycle": lifecycle})  # fmt: skip


if __name__ == "__main__":
    main()
