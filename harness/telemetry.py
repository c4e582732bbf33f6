"""Workers' telemetry over a benchmark: series on its time axis, and what they add up to.

The samples were aggregated on the workers (one per interval, scheduler figures as
means over the interval's engine steps); here they become per-worker series, in
seconds from the benchmark's start like the latency time series, and a summary. A
figure an engine does not report stays None; a source that is missing says why.
"""

from __future__ import annotations

from protocol import messages as m
from protocol.results import (
    Efficiency,
    GpuSeries,
    ProcessCost,
    TelemetrySeries,
    TelemetrySummary,
    WorkerTelemetry,
)


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _energy(samples: list[m.TelemetrySample]) -> float | None:
    """Joules of the worker's GPUs: the driver's counter where it has one, else power x time."""
    if not any(s.gpus for s in samples):
        return None
    total = 0.0
    last_t = None
    for s in samples:
        for g in s.gpus:
            if g.energy_j >= 0:
                total += g.energy_j
            elif last_t is not None:
                total += g.power_w * (s.t_ns - last_t) / 1e9
        last_t = s.t_ns
    return total


def _gpu_series(samples: list[m.TelemetrySample]) -> list[GpuSeries]:
    indexes = sorted({g.index for s in samples for g in s.gpus})
    out = []
    for i in indexes:
        rows = [next((g for g in s.gpus if g.index == i), None) for s in samples]

        def col(attr: str, rows: list[m.GpuSample | None] = rows) -> list[float]:
            return [getattr(g, attr) if g is not None else 0.0 for g in rows]

        out.append(GpuSeries(i, col("sm_util_pct"), col("mem_used_mb"), col("power_w"),
                             col("sm_clock_mhz"), col("temp_c")))  # fmt: skip
    return out


def _summary(samples: list[m.TelemetrySample]) -> TelemetrySummary:
    stepped = [s for s in samples if s.steps]
    kv = [s.kv_usage_pct for s in stepped if s.kv_usage_pct >= 0]
    queries = sum(s.prefix_queries for s in samples)
    drafted = sum(s.spec_draft_tokens for s in samples)
    power = [sum(g.power_w for g in s.gpus) for s in samples if s.gpus]
    return TelemetrySummary(
        samples=len(samples),
        running_mean=_mean([s.running for s in stepped]) or 0.0,
        waiting_mean=_mean([s.waiting for s in stepped]) or 0.0,
        kv_usage_mean_pct=_mean(kv),
        kv_usage_max_pct=max(
            (s.kv_usage_max_pct for s in stepped if s.kv_usage_max_pct >= 0), default=None
        ),
        preemptions=sum(s.preemptions for s in samples),
        prefix_hit_rate=sum(s.prefix_hits for s in samples) / queries if queries else None,
        spec_acceptance_rate=sum(s.spec_accepted_tokens for s in samples) / drafted
        if drafted
        else None,
        cpu_mean_pct=_mean([s.cpu_pct for s in samples]) or 0.0,
        rss_max_mb=max((s.rss_mb for s in samples), default=0.0),
        power_mean_w=_mean(power),
        energy_j=_energy(samples),
    )


def telemetry_results(
    by_worker: dict[int, list[m.TelemetrySample]], sources: dict[int, dict[str, str]], t0_ns: int
) -> list[WorkerTelemetry]:
    out = []
    for wid in sorted(by_worker):
        samples = sorted(by_worker[wid], key=lambda s: s.t_ns)
        if not samples:
            continue
        series = TelemetrySeries(
            t_s=[round((s.t_ns - t0_ns) / 1e9, 6) for s in samples],
            running=[s.running for s in samples],
            waiting=[s.waiting for s in samples],
            kv_usage_pct=[s.kv_usage_pct if s.kv_usage_pct >= 0 else None for s in samples],
            preemptions=[s.preemptions for s in samples],
            prefix_hit_pct=[
                100 * s.prefix_hits / s.prefix_queries if s.prefix_queries else None
                for s in samples
            ],
            cpu_pct=[s.cpu_pct for s in samples],
            rss_mb=[s.rss_mb for s in samples],
            gpus=_gpu_series(samples),
        )
        out.append(WorkerTelemetry(wid, sources.get(wid, {}), _summary(samples), series))
    return out


def process_cost(cpu: list[float], rss_mb: list[float]) -> ProcessCost | None:
    if not cpu:
        return None
    return ProcessCost(sum(cpu) / len(cpu), max(cpu), max(rss_mb, default=0.0))


def efficiency(gpus: int, output_tokens: int, output_tokens_per_s: float,
               telemetry: list[WorkerTelemetry]) -> Efficiency:  # fmt: skip
    """Per GPU and per joule: how to choose a layout for efficiency as well as speed."""
    energies = [w.summary.energy_j for w in telemetry if w.summary.energy_j is not None]
    energy = sum(energies) if energies and gpus else None
    return Efficiency(
        gpus=gpus,
        output_tokens_per_s_per_gpu=output_tokens_per_s / gpus if gpus else None,
        energy_j=energy,
        output_tokens_per_joule=output_tokens / energy if energy else None,
    )


def _total(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return sum(vals) if vals else None


def node_figures(telemetry: list[WorkerTelemetry]) -> dict[str, float | int | None]:
    """The workers' summaries as one row: queues and power add up, KV usage is per engine."""
    s = [w.summary for w in telemetry]
    kv_means = [x.kv_usage_mean_pct for x in s if x.kv_usage_mean_pct is not None]
    return {
        "running_mean": _total([x.running_mean for x in s]),
        "waiting_mean": _total([x.waiting_mean for x in s]),
        "kv_usage_mean_pct": _mean(kv_means),
        "kv_usage_max_pct": max(
            (x.kv_usage_max_pct for x in s if x.kv_usage_max_pct is not None), default=None
        ),
        "preemptions": sum(x.preemptions for x in s) if s else None,
        "power_mean_w": _total([x.power_mean_w for x in s]),
        "energy_j": _total([x.energy_j for x in s]),
    }
