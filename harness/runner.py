"""``harness run`` from a validated config to a written report."""

from __future__ import annotations

import datetime as dt
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import msgspec
import numpy as np

from harness import __version__, environment, profiles
from harness.config import RunConfig
from harness.console import ProgressLine
from harness.coordinator import Coordinator, Interrupted, RunError
from harness.render import write_output
from harness.report import summary
from harness.schema import SCHEMA_VERSION, BenchmarkResult, Report
from harness.workload import Workload

EXIT_OK = 0
EXIT_FAILED = 1  # the run could not complete (engine start-up, collector death, ...)
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # SIGINT or SIGTERM: a partial report was written

# "Everything at once" for throughput runs bounded only by time.
UNBOUNDED_CONCURRENCY_PER_WORKER = 1024


def plans(
    cfg: RunConfig, results: list[BenchmarkResult], replay: np.ndarray | None = None
) -> Iterator[profiles.BenchPlan]:
    """The run's benchmarks; a sweep's later ones depend on ``results`` of its earlier ones.

    ``replay`` holds a trace's send offsets (ns) for the replay profile.
    """
    rng = np.random.default_rng([cfg.seed, 0xA77])
    n = cfg.max_requests
    if cfg.profile == "replay":
        assert replay is not None
        off = np.round(replay * cfg.time_scale).astype(np.int64)
        if n is not None:
            off = off[:n]
        if cfg.max_seconds is not None:
            off = off[off < int(cfg.max_seconds * 1e9)]
        yield profiles.BenchPlan(f"replay x{cfg.time_scale:g}", "replay", offsets_ns=off)
    elif cfg.profile == "synchronous":
        yield profiles.BenchPlan("synchronous", "synchronous", concurrency=1)
    elif cfg.profile == "concurrent":
        for c in cfg.concurrencies:
            yield profiles.BenchPlan(f"concurrent@{c}", "concurrent", concurrency=c)
    elif cfg.profile == "throughput":
        yield throughput_plan(cfg)
    elif cfg.profile in ("constant", "poisson"):
        for rate in cfg.rates:
            yield profiles.open_loop(cfg.profile, rate, n, cfg.max_seconds, cfg.burstiness, rng)
    elif cfg.profile == "sweep":
        yield profiles.BenchPlan("synchronous", "synchronous", concurrency=1)
        yield throughput_plan(cfg)
        lo = results[0].throughput.requests_per_s if results else 0.0
        hi = results[1].throughput.requests_per_s if len(results) > 1 else 0.0
        if lo <= 0 or hi <= 0:
            return
        for rate in profiles.sweep_rates(lo, hi, cfg.sweep_points):
            yield profiles.open_loop("constant", rate, n, cfg.max_seconds, cfg.burstiness, rng)


def throughput_plan(cfg: RunConfig) -> profiles.BenchPlan:
    if cfg.max_concurrency is not None:
        return profiles.BenchPlan("throughput", "throughput", concurrency=cfg.max_concurrency)
    if cfg.max_requests is None:
        c = UNBOUNDED_CONCURRENCY_PER_WORKER * cfg.workers
        return profiles.BenchPlan("throughput", "throughput", concurrency=c)
    return profiles.BenchPlan(
        "throughput", "throughput", offsets_ns=np.zeros(cfg.max_requests, np.int64)
    )


def bench_count(cfg: RunConfig) -> int:
    return {
        "concurrent": len(cfg.concurrencies),
        "constant": len(cfg.rates),
        "poisson": len(cfg.rates),
        "sweep": cfg.sweep_points + 2,
    }.get(cfg.profile, 1)


def execute(
    cfg: RunConfig,
    coordinator: Coordinator,
    outputs: list[Path],
    command: list[str],
    workload: Workload,
    replay: np.ndarray | None = None,
) -> int:
    results: list[BenchmarkResult] = []
    stop_reason: str | None = None
    code = EXIT_OK
    config = msgspec.to_builtins({**msgspec.structs.asdict(cfg), "workload": workload.summary()})

    def report(benchmarks: list[BenchmarkResult], partial: bool, why: str | None) -> Report:
        return Report(
            schema_version=SCHEMA_VERSION,
            harness_version=__version__,
            created_utc=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            command=command,
            config=config,
            environment=environment.collect(coordinator.worker_envs()),
            benchmarks=benchmarks,
            partial=partial,
            stop_reason=why,
            rejected_messages=dict(coordinator.rejected),
        )

    def checkpoint(running: BenchmarkResult) -> None:
        # A crash of anything, this process included, loses at most --checkpoint-s.
        snap = report([*results, running], True, "running: checkpoint")
        for path in outputs:
            write_output(snap, path)

    coordinator.on_checkpoint = checkpoint

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if coordinator.interrupted:
            raise KeyboardInterrupt  # the second signal: leave now
        coordinator.interrupted = signum
        print(
            f"\nharness: {signal.Signals(signum).name}: stopping; a second one exits at once",
            file=sys.stderr,
        )

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            coordinator.start()
            for i, plan in enumerate(plans(cfg, results, replay)):
                res = coordinator.run_bench(i, plan)
                if res is not None:
                    results.append(res)
                if coordinator.interrupted:
                    stop_reason, code = "interrupted", EXIT_INTERRUPTED
                    break
                if res is not None and res.stop_reason == "max_errors":
                    stop_reason, code = "max_errors", EXIT_FAILED
                    print(f"harness: error: {plan.name}: --max-errors reached", file=sys.stderr)
                    break
                if not any(w.alive for w in coordinator.workers.values()):
                    stop_reason, code = "all workers died", EXIT_FAILED
                    break
        except Interrupted:
            stop_reason, code = "interrupted", EXIT_INTERRUPTED
        except RunError as e:
            stop_reason, code = str(e), EXIT_FAILED
            print(f"harness: error: {e}", file=sys.stderr)
        except KeyboardInterrupt:
            stop_reason, code = "interrupted twice", EXIT_INTERRUPTED
        running = coordinator.bench
        if code != EXIT_OK and running is not None and running.snapshot is not None:
            running.snapshot.stop_reason = stop_reason
            results.append(running.snapshot)  # the last checkpoint of the benchmark cut short
        final = report(results, code != EXIT_OK, stop_reason)
    finally:
        try:
            coordinator.close()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
    for path in outputs:
        write_output(final, path)
    if not cfg.quiet and results:
        print(summary(final))
    if not cfg.quiet:
        for path in outputs:
            print(f"report: {path}", file=sys.stderr)
    return code


def new_progress(cfg: RunConfig) -> ProgressLine:
    return ProgressLine(bench_count(cfg), quiet=cfg.quiet, max_seconds=cfg.max_seconds)
