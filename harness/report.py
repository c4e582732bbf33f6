"""Writing, reading and printing reports. The JSON report is the source of truth."""

from __future__ import annotations

from pathlib import Path

import msgspec

from harness.schema import SCHEMA_VERSION, BenchmarkResult, Dist, Report


class ReportError(ValueError):
    pass


def to_json(report: Report) -> bytes:
    return msgspec.json.format(msgspec.json.encode(report), indent=2) + b"\n"


def read_json(path: Path) -> Report:
    try:
        raw = msgspec.json.decode(path.read_bytes())
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ReportError(f"{path}: is a directory (give a report file)") from None
    except OSError as e:
        raise ReportError(f"{path}: {e.strerror or e}") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as e:
        raise ReportError(f"{path}: not JSON ({e})") from None
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if not isinstance(version, int):
        raise ReportError(f"{path}: not a harness report (no schema_version)")
    if version > SCHEMA_VERSION:
        raise ReportError(
            f"{path}: schema version {version} is newer than this harness reads ({SCHEMA_VERSION});"
            " upgrade vllm-harness"
        )
    try:
        return msgspec.convert(raw, Report)
    except msgspec.ValidationError as e:
        raise ReportError(f"{path}: {e}") from None


def fmt_num(x: float | None) -> str:
    """A table cell: two decimals with thousands separators, "-" for no value."""
    return "-" if x is None else f"{x:,.2f}"


def _d(dist: Dist | None, key: str) -> str:
    return "-" if dist is None else fmt_num(getattr(dist, key))


def bench_table(b: BenchmarkResult) -> str:
    """One benchmark in the style of ``vllm bench serve``."""
    r = b.requests
    lines = [
        f"{'=' * 22} {b.name} {'=' * max(4, 40 - len(b.name))}",
        f"{'Requests completed / failed / incomplete:':<44}{r.completed} / {r.failed} / {r.incomplete}",
        f"{'Warm-up / cool-down requests (excluded):':<44}{r.warmup} / {r.cooldown}",
        f"{'Benchmark duration (s):':<44}{fmt_num(b.duration_s)}",
        f"{'Request throughput (req/s):':<44}{fmt_num(b.throughput.requests_per_s)}",
        f"{'Output token throughput (tok/s):':<44}{fmt_num(b.throughput.output_tokens_per_s)}",
        f"{'Total token throughput (tok/s):':<44}{fmt_num(b.throughput.total_tokens_per_s)}",
        f"{'Send rate requested / achieved (req/s):':<44}"
        f"{fmt_num(b.load.requested_rate)} / {fmt_num(b.load.achieved_send_rate)}",
        f"{'In-flight peak / mean:':<44}{b.load.peak_inflight} / {fmt_num(b.load.mean_inflight)}",
    ]
    if b.goodput is not None:
        lines.append(
            f"{'Goodput (req/s meeting every SLO):':<44}{fmt_num(b.goodput.requests_per_s)}"
        )
    lines.append(f"{'':<16}{'mean':>12}{'p50':>12}{'p90':>12}{'p99':>12}{'max':>12}")
    for label, d in (
        ("TTFT (ms)", b.ttft_ms),
        ("TPOT (ms)", b.tpot_ms),
        ("ITL (ms)", b.itl_ms),
        ("E2E (ms)", b.e2e_ms),
        ("Dispatch lag", b.dispatch_lag_ms),
    ):
        cells = "".join(f"{_d(d, k):>12}" for k in ("mean", "p50", "p90", "p99", "max"))
        lines.append(f"{label:<16}{cells}")
    if len(b.workers) > 1:
        for w in b.workers:
            lines.append(
                f"  worker {w.worker_id}: {w.completed} done, {w.failed} failed, "
                f"{fmt_num(w.output_tokens_per_s)} output tok/s"
            )
    for err, n in list(b.errors.items())[:5]:
        lines.append(f"  error x{n}: {err}")
    return "\n".join(lines)


def summary(report: Report) -> str:
    parts = [bench_table(b) for b in report.benchmarks]
    if report.partial:
        parts.append(f"PARTIAL report: the run stopped early ({report.stop_reason}).")
    return "\n\n".join(parts)
