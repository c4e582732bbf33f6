"""Scheduling fidelity: poisson at 100, 1,000, 5,000 and 10,000 requests/s on 2 zero-cost sim workers.

Reports achieved/requested send rate and the dispatch lag (scheduled -> received by a worker),
split into its hops: the coordinator's lateness (scheduled -> handed to its socket) and the
delivery (socket -> the worker's receipt). Targets: lag p99 <= 1 ms at 1,000/s, <= 2 ms at 10,000/s.

Before each rate, the first ``--floor-seconds`` (0 to skip) of the very schedule the
harness is about to send, with nothing of the harness: a sender paced as the coordinator
paces, one bare ZeroMQ hop, a receiving thread (``bench_timer.paced_hop``). Measured a minute apart from the harness's own run, it
is what this machine allows at that moment, and the difference is the harness's share: on
a VM whose neighbours come and go, a figure alone cannot say which of the two moved.

Then a busy engine (``--busy-rate``, 0 to skip): one sim worker whose event loop is held
20 us per running request after each 15 ms step, as vLLM's output processing holds it,
with about 250 requests in flight: the worker's receiving thread should keep delivery
near the idle figure although the loop is held a quarter of the time. Beside it, a bare
process sleeps to deadlines 1 ms apart: how late this machine woke any sleeper under
that load (the held loop keeps a CPU busy), the floor for that run's pacing and delivery.

    python scripts/bench_schedule.py --output results/bench_schedule.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _runs import harness_run, machine, write
from bench_timer import Beside, paced_hop, summary

from harness.bench_loop import SPIN_NS
from harness.profiles.base import LoadOptions, PlanContext
from harness.profiles.poisson import Poisson

BUSY = "decode_ms=15,output_us_per_seq=20"  # the busy engine's sim costs
SEED = 1  # the harness's --seed: the floor replays the schedule this gives
BESIDE_PERIOD_NS = 1_000_000  # the busy run's bare sleeper: a deadline every millisecond
MARGIN_S = 0.5  # of the benchmark's window at each end: the sleeper's figures are of its middle


def schedule(rate: float, seconds: float) -> np.ndarray:
    """The harness's own poisson schedule at ``rate`` (its offsets in ns), cut at ``seconds``."""
    ctx = PlanContext(max_requests=None, max_seconds=seconds, seed=SEED, workers=1)
    (plan,) = Poisson(LoadOptions(rates=(rate,))).plans(ctx, [])
    assert plan.offsets_ns is not None
    return plan.offsets_ns


def floor(rate: float, seconds: float) -> dict[str, float | int]:
    """Lag p50/p99 of a bare paced ZeroMQ hop on the harness's schedule at ``rate``."""
    offsets = schedule(rate, seconds)
    with tempfile.TemporaryDirectory() as tmp:
        hops = paced_hop(offsets, SPIN_NS, Path(tmp))
    ms = {k: v / 1e6 for k, v in hops.items()}
    return {"sends": len(offsets)} | {
        f"{k}_p{q}_ms": round(float(np.percentile(ms[k], q)), 4)
        for k in ("lag", "pacing", "delivery")
        for q in (50, 99)
    }


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="100,1000,5000,10000")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--busy-rate", type=float, default=200.0)
    ap.add_argument(
        "--sim", default="", help="the idle workers' sim costs, as --sim takes them (default: zero)"
    )
    ap.add_argument("--floor-seconds", type=float, default=5.0, help="0: no floor")
    ap.add_argument("--output", type=Path, default=Path("results/bench_schedule.json"))
    a = ap.parse_args()
    try:
        a.rate_list = [float(x) for x in a.rates.split(",")]
    except ValueError:
        ap.error(f"--rates takes numbers separated by commas, not {a.rates!r}")
    positive = [("--rates", r) for r in a.rate_list]
    positive += [("--seconds", a.seconds), ("--workers", a.workers)]
    for name, value in positive:
        if not 0 < value < float("inf"):
            ap.error(f"{name} must be positive and finite, not {value}")
    for name, value in {"--floor-seconds": a.floor_seconds, "--busy-rate": a.busy_rate}.items():
        if not 0 <= value < float("inf"):
            ap.error(f"{name} must be 0 (none) or positive and finite, not {value}")
    return a


def window(rep: dict, start_ns: int) -> tuple[int, int]:
    """When the report's benchmark ran (less MARGIN_S at each end), in monotonic ns, from its
    phase timings and ``start_ns``, taken just before the harness was started."""
    begin = 0.0
    for phase, took in rep["timings"].items():  # in order: set-up, spawn, engine start, ...
        if phase.startswith("benchmark"):
            return (start_ns + int((begin + MARGIN_S) * 1e9),
                    start_ns + int((begin + took - MARGIN_S) * 1e9))  # fmt: skip
        begin += took
    raise SystemExit("bench_schedule: the report's timings have no benchmark")


def measure(rate: float, workers: int, sim: str, data: str, seconds: float) -> tuple[dict, dict]:
    """One poisson benchmark on sim workers: its send rate, dispatch lag and hops; and the report."""
    costs = {"sim": sim} if sim else {}
    rep = harness_run(engine="sim", workers=workers, profile="poisson", rate=rate,
                      max_seconds=seconds, seed=SEED, data=data, **costs)  # fmt: skip
    b = rep["benchmarks"][0]
    sent = b["requests"]["scheduled"]
    achieved = b["load"]["achieved_send_rate"]
    return {
        "requested_rate": rate,
        "workers": workers,
        "sim": sim,
        "mean_inflight": b["load"]["mean_inflight"],
        "scheduled": sent,
        "schedule_rate": sent / seconds,
        "achieved_send_rate": achieved,
        "achieved_over_requested": achieved / rate,
        # A seeded Poisson schedule's own rate differs from the requested one by chance
        # (about 1/sqrt(n)); this ratio is the harness's fidelity to its schedule.
        "achieved_over_schedule": achieved / (sent / seconds),
        # dispatch_lag_p50_ms, ..., delivery_p99_ms: the report's distributions, flattened.
        **{
            f"{k.removesuffix('_ms')}_{q}_ms": (b[k] or {}).get(q)
            for k in ("dispatch_lag_ms", "pacing_lag_ms", "delivery_ms")
            for q in ("p50", "p99")
        },
        "dispatch_lag_max_ms": (b["dispatch_lag_ms"] or {}).get("max"),
        "completed": b["requests"]["completed"],
        "incomplete": b["requests"]["incomplete"],
    }, rep


def _ms(value: float | None, sign: str = "") -> str:
    """A figure in ms; n/a where no request was measured."""
    return "n/a" if value is None else f"{value:{sign}.3f} ms"


def show(row: dict, label: str) -> None:
    print(
        f"{row['requested_rate']:>7g}/s{label}: achieved {row['achieved_send_rate']:,.1f}/s "
        f"({row['achieved_over_requested']:.4f} of requested, "
        f"{row['achieved_over_schedule']:.4f} of schedule), "
        f"lag p50 {_ms(row['dispatch_lag_p50_ms'])} p99 {_ms(row['dispatch_lag_p99_ms'])} "
        f"(pacing p99 {_ms(row['pacing_lag_p99_ms'])}, delivery p99 {_ms(row['delivery_p99_ms'])})"
    )
    near = row.get("beside")
    if near:
        print(
            f"{'':>9} beside it, a bare process sleeping to 1 ms deadlines woke late by "
            f"p99 {near['p99_ms']:.3f} ms (max {near['max_ms']:.3f} ms, {near['n']} deadlines)"
        )
    base = row.get("floor")
    if base:
        print(
            f"{'':>9} floor (bare paced hop, just before): lag p99 {_ms(base['lag_p99_ms'])} "
            f"(pacing {_ms(base['pacing_p99_ms'])}, delivery {_ms(base['delivery_p99_ms'])}); "
            f"the harness's p99 is {_ms(row['over_floor_p99_ms'], '+')} over it"
        )


def busy(rate: float, seconds: float) -> dict:
    """The busy engine, with a bare sleeper beside it: what this machine allowed meanwhile."""
    with Beside(BESIDE_PERIOD_NS) as near:
        start = time.monotonic_ns()
        row, rep = measure(rate, 1, BUSY, "prompt_tokens=16,output_tokens=64", seconds)
    lo, hi = window(rep, start)
    late = near.lateness(lo, hi)
    got = {"n": len(late), "window_s": (hi - lo) / 1e9}
    row["beside"] = summary(late) | got if len(late) else None
    show(row, " busy")
    return row


def main() -> None:
    a = parse_args()
    rows = []
    for rate in a.rate_list:
        base = floor(rate, a.floor_seconds) if a.floor_seconds > 0 else None
        row, _ = measure(rate, a.workers, a.sim, "prompt_tokens=16,output_tokens=4", a.seconds)
        row["floor"] = base
        lag = row["dispatch_lag_p99_ms"]
        row["over_floor_p99_ms"] = lag - base["lag_p99_ms"] if base and lag is not None else None
        rows.append(row)
        show(row, f" (sim {a.sim})" if a.sim else "")
    if a.busy_rate > 0:
        rows.append(busy(a.busy_rate, a.seconds))
    write(
        a.output,
        {
            "benchmark": "bench_schedule",
            "machine": machine(),
            "args": {k: v for k, v in vars(a).items() if k != "rate_list"}
            | {"output": str(a.output)},
            "results": rows,
        },
    )


if __name__ == "__main__":
    main()
