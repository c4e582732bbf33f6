"""Writing, reading and printing reports. The JSON report is the source of truth."""

from __future__ import annotations

import math
from pathlib import Path

import msgspec
from rich.table import Table

from harness.profiles.schedule import rate_name
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


def fmt_sig(x: float | None, digits: int = 3) -> str:
    """``digits`` significant digits, thousands separators, no exponent: for narrow columns."""
    if x is None or not math.isfinite(x):
        return "-"
    if x == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    return f"{x:,.{decimals}f}"


def bench_label(b: BenchmarkResult) -> str:
    """A benchmark's name for display: its requested rate rounded (older reports named it in full)."""
    ld = b.load
    if ld.requested_rate is not None:
        return rate_name(ld.profile, ld.requested_rate)
    if ld.max_concurrency is not None and ld.profile != "concurrent":
        return f"{b.name} cap {ld.max_concurrency}"
    return b.name


def send_rate(b: BenchmarkResult) -> float | None:
    """The achieved send rate where one was asked for (paced or replayed), else None.

    A burst or a closed loop has no send rate to achieve: its figure would be a
    meaningless 0 (all sent at once) or the completion rate again.
    """
    paced = b.load.requested_rate is not None or b.load.profile == "replay"
    return b.load.achieved_send_rate if paced and b.load.achieved_send_rate > 0 else None


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
        f"{fmt_num(b.load.requested_rate)} / {fmt_num(send_rate(b))}",
        f"{'In-flight peak / mean (requests):':<44}{b.load.peak_inflight} / {fmt_num(b.load.mean_inflight)}",
    ]
    if b.goodput is not None:
        lines.append(
            f"{'Goodput (req/s meeting every SLO):':<44}{fmt_num(b.goodput.requests_per_s)}"
        )
    lines.append(f"{'':<18}{'mean':>12}{'p50':>12}{'p90':>12}{'p99':>12}{'max':>12}")
    for label, d in (
        ("TTFT (ms)", b.ttft_ms),
        ("TPOT (ms)", b.tpot_ms),
        ("ITL (ms)", b.itl_ms),
        ("E2E (ms)", b.e2e_ms),
        ("Dispatch lag (ms)", b.dispatch_lag_ms),
    ):
        cells = "".join(f"{_d(d, k):>12}" for k in ("mean", "p50", "p90", "p99", "max"))
        lines.append(f"{label:<18}{cells}")
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


def load_cell(b: BenchmarkResult) -> str:
    """The load a benchmark put on the engines, short: profile and rate, streams or cap."""
    ld = b.load
    if ld.requested_rate is not None:
        return f"{ld.profile} {fmt_sig(ld.requested_rate)}/s"
    if ld.profile == "concurrent" and ld.concurrency is not None:
        return f"concurrent {ld.concurrency}"
    return bench_label(b)


def _p(d: Dist | None, key: str) -> str:
    return fmt_sig(None if d is None else getattr(d, key))


def end_table(report: Report) -> Table:
    """One row per benchmark, made to fit 80 columns: short headers with units, 3 digits."""
    slo = bool(report.config.get("slo"))
    aborted = any(b.requests.aborted for b in report.benchmarks)
    t = Table(box=None, padding=(0, 1), collapse_padding=True, pad_edge=False,
              header_style="bold", row_styles=["", "dim"] if len(report.benchmarks) > 3 else None)  # fmt: skip
    t.add_column("load", overflow="fold")
    # Three header lines (name, statistic, unit) keep the latency columns 5 characters wide.
    heads = ["req/s", "out\ntok/s"]
    heads += [f"{m}\n{q}\nms" for m in ("TTFT", "ITL", "E2E") for q in ("p50", "p99")]
    heads += ["good\nreq/s"] * slo + ["failed"] + ["abort-\ned"] * aborted
    for h in heads:
        t.add_column(h, justify="right", no_wrap=True)
    for b in report.benchmarks:
        row = [load_cell(b), fmt_sig(b.throughput.requests_per_s),
               fmt_sig(b.throughput.output_tokens_per_s)]  # fmt: skip
        for d in (b.ttft_ms, b.itl_ms, b.e2e_ms):
            row += [_p(d, "p50"), _p(d, "p99")]
        if slo:
            row.append(fmt_sig(b.goodput.requests_per_s) if b.goodput else "-")
        row.append(str(b.requests.failed))
        if aborted:
            row.append(str(b.requests.aborted))
        t.add_row(*row)
    return t
