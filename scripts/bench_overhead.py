"""The harness's own ceiling: a zero-cost sim engine, 1, 2 and 4 workers.

Three runs per worker count:
- dispatch: many one-token requests sent at once; reports requests/s dispatched
  (worker receipts per second) and completed, and the dispatch lag;
- paced: a constant rate (default 50,000 requests/s: issue 18's target is that rate within 0.1%) for 5 s; reports the achieved
  send rate and the dispatch lag when sends follow a schedule;
- tokens: long outputs; reports output tokens/s through the collector, and checks
  that no token event was lost (every request has exactly its output length).

    python scripts/bench_overhead.py --output results/bench_overhead.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _runs import harness_run, machine, write


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--dispatch-requests", type=int, default=50_000)
    ap.add_argument("--token-requests", type=int, default=4_000)
    ap.add_argument("--paced-rate", type=float, default=50_000)
    ap.add_argument("--output-tokens", type=int, default=512)
    ap.add_argument("--output", type=Path, default=Path("results/bench_overhead.json"))
    a = ap.parse_args()
    rows = []
    for w in [int(x) for x in a.workers.split(",")]:

        def sim(profile: str, out_tokens: int, workers: int = w, **limits: object) -> dict:
            rep = harness_run(engine="sim", workers=workers, profile=profile,
                              data=f"prompt_tokens=16,output_tokens={out_tokens}", **limits)  # fmt: skip
            return rep["benchmarks"][0]

        d = sim("throughput", 1, max_requests=a.dispatch_requests)
        t = sim("throughput", a.output_tokens, max_requests=a.token_requests)
        p = sim("constant", 1, rate=a.paced_rate, max_seconds=5)
        expected = a.token_requests * a.output_tokens
        got = sum(x["output_tokens"] for x in t["workers"])
        row = {
            "workers": w,
            "dispatched_requests_per_s": d["load"]["achieved_send_rate"],
            "completed_requests_per_s": d["throughput"]["requests_per_s"],
            "dispatch_lag_p50_ms": d["dispatch_lag_ms"]["p50"],
            "dispatch_lag_p99_ms": d["dispatch_lag_ms"]["p99"],
            "paced_requested_rate": a.paced_rate,
            "paced_achieved_rate": p["load"]["achieved_send_rate"],
            "paced_ratio": p["load"]["achieved_send_rate"] / a.paced_rate,
            "paced_within_0.1pct": abs(p["load"]["achieved_send_rate"] / a.paced_rate - 1) <= 0.001,
            "paced_dispatch_lag_p50_ms": p["dispatch_lag_ms"]["p50"],
            "paced_dispatch_lag_p99_ms": p["dispatch_lag_ms"]["p99"],
            "paced_completed": p["requests"]["completed"],
            "paced_scheduled": p["requests"]["scheduled"],
            "collector_tokens_per_s": t["throughput"]["output_tokens_per_s"],
            # Its ceiling: entries ingested per second of the collector's own busy time.
            "collector_busy_s": t["collector"]["busy_s"],
            "collector_capacity_tokens_per_s": expected / t["collector"]["busy_s"],
            "collector_messages": t["collector"]["messages"],
            "token_events_expected": expected,
            "token_events_collected": got,
            "lost_events": expected - got,
            "requests_completed": d["requests"]["completed"] + t["requests"]["completed"],
        }
        rows.append(row)
        print(
            f"workers={w}: burst dispatch {row['dispatched_requests_per_s']:,.0f} req/s, "
            f"paced {row['paced_achieved_rate']:,.0f}/{a.paced_rate:,.0f} req/s "
            f"(lag p99 {row['paced_dispatch_lag_p99_ms']:.1f} ms), "
            f"completed {row['completed_requests_per_s']:,.0f} req/s, lag p99 "
            f"{row['dispatch_lag_p99_ms']:.1f} ms, collector {row['collector_tokens_per_s']:,.0f} tok/s "
            f"(capacity {row['collector_capacity_tokens_per_s']:,.0f}), "
            f"lost {row['lost_events']}"
        )
    write(
        a.output,
        {
            "benchmark": "bench_overhead",
            "machine": machine(),
            "args": vars(a) | {"output": str(a.output)},
            "results": rows,
        },
    )


if __name__ == "__main__":
    main()
