"""This machine's floor for pacing: how late a process wakes for an absolute deadline.

The harness's dispatch lag cannot beat the operating system's wake-up latency. This
measures it with nothing of the harness: a thread sleeping to deadlines 1 ms apart
(optionally spinning the last stretch), and an asyncio loop's ``call_at``. Compare its
p99 with ``scripts/bench_schedule.py``'s pacing lag before reading the latter as the
harness's cost.

    python scripts/bench_timer.py [--n 3000] [--period-us 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import numpy as np
from _runs import ROOT, machine, write


def sleeper(n: int, period_ns: int, spin_ns: int) -> np.ndarray:
    late = np.empty(n, np.int64)
    t0 = time.monotonic_ns() + 10_000_000
    for i in range(n):
        due = t0 + i * period_ns
        wait = due - time.monotonic_ns() - spin_ns
        if wait > 0:
            time.sleep(wait / 1e9)
        while time.monotonic_ns() < due:  # the spin: at most spin_ns
            pass
        late[i] = time.monotonic_ns() - due
    return late


def loop_timer(n: int, period_ns: int) -> np.ndarray:
    late: list[int] = []

    async def go() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        t0 = time.monotonic_ns() + 10_000_000

        def fire(due: int) -> None:
            late.append(time.monotonic_ns() - due)
            if len(late) == n:
                done.set_result(None)

        for i in range(n):
            due = t0 + i * period_ns
            loop.call_at(due / 1e9, fire, due)  # asyncio's clock is time.monotonic()
        await done

    asyncio.run(go())
    return np.array(late, np.int64)


def summary(late_ns: np.ndarray) -> dict[str, float]:
    ms = late_ns / 1e6
    return {f"p{q}_ms": round(float(np.percentile(ms, q)), 4) for q in (50, 90, 99, 99.9)} | {
        "max_ms": round(float(ms.max()), 4)
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--period-us", type=int, default=1000)
    ap.add_argument("--output", type=Path, default=ROOT / "results" / "bench_timer.json")
    a = ap.parse_args()
    period = a.period_us * 1000
    rows = {
        "sleep": summary(sleeper(a.n, period, 0)),
        "sleep, 200 us spin": summary(sleeper(a.n, period, 200_000)),
        "asyncio call_at": summary(loop_timer(a.n, period)),
    }
    for name, s in rows.items():
        print(f"{name:>20}: lateness p50 {s['p50_ms']:.3f} ms, p99 {s['p99_ms']:.3f} ms, "
              f"max {s['max_ms']:.3f} ms")  # fmt: skip
    write(a.output, {"machine": machine(), "period_us": a.period_us, "n": a.n, "lateness": rows})


if __name__ == "__main__":
    main()
