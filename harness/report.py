"""Writing, reading and printing reports. The JSON report is the source of truth."""

from __future__ import annotations

import math
from pathlib import Path

import msgspec
from rich.cells import cell_len
from rich.columns import Columns
from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

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
        return rate_name(ld.profile, ld.requested_rate).replace("@", " ")
    if ld.profile == "concurrent" and ld.concurrency is not None:
        return f"concurrent {ld.concurrency}"
    return bench_label(b)


def _p(d: Dist | None, key: str) -> str:
    return fmt_sig(None if d is None else getattr(d, key))


def _end_columns(report: Report) -> list[tuple[str, str, list[str]]]:
    """(header, unit, cells) of each column after the load: what the end of a run shows."""
    bs = report.benchmarks
    cols = [("req/s", "", [fmt_sig(b.throughput.requests_per_s) for b in bs]),
            ("out\ntok/s", "", [fmt_sig(b.throughput.output_tokens_per_s) for b in bs])]  # fmt: skip
    for m in ("TTFT", "ITL", "E2E"):
        for q in ("p50", "p99"):
            cols.append((f"{m}\n{q}", "ms", [_p(getattr(b, f"{m.lower()}_ms"), q) for b in bs]))
    if report.config.get("slo"):
        good = [fmt_sig(b.goodput.requests_per_s) if b.goodput else "-" for b in bs]
        cols.append(("good\nreq/s", "", good))
    if any(b.efficiency and b.efficiency.gpus for b in bs):  # a GPU run: choose for efficiency too
        eff = [b.efficiency for b in bs]
        cols.append(
            ("tok/s\n/GPU", "", [fmt_sig(e.output_tokens_per_s_per_gpu) if e else "-" for e in eff])
        )
        cols.append(
            ("out\ntok/J", "", [fmt_sig(e.output_tokens_per_joule) if e else "-" for e in eff])
        )
    cols.append(("failed", "", [str(b.requests.failed) for b in bs]))
    if any(b.requests.aborted for b in bs):
        cols.append(("aborted", "", [str(b.requests.aborted) for b in bs]))
    return cols


def end_table(report: Report) -> Table:
    """One row per benchmark, made to fit 80 columns: short headers with units, 3 digits."""
    t = Table(box=None, padding=(0, 1), collapse_padding=True, pad_edge=False,
              header_style="bold", row_styles=["", "dim"] if len(report.benchmarks) > 3 else None)  # fmt: skip
    t.add_column("load", overflow="fold")
    cols = _end_columns(report)
    for head, unit, _ in cols:
        # Three header lines (name, statistic, unit) keep the latency columns 5 characters wide.
        t.add_column(f"{head}\n{unit}" if unit else head, justify="right", no_wrap=True)
    for i, b in enumerate(report.benchmarks):
        t.add_row(load_cell(b), *(cells[i] for _, _, cells in cols))
    return t


def end_blocks(report: Report) -> Group:
    """The same figures, a block per benchmark: for terminals too narrow for the table."""
    cols = _end_columns(report)
    parts: list[RenderableType] = []
    for i, b in enumerate(report.benchmarks):
        items = [Text.assemble((head.replace("\n", " ") + " ", "dim"), cells[i] + (f" {unit}" if unit else ""))
                 for head, unit, cells in cols]  # fmt: skip
        parts += [Text(load_cell(b), style="bold"), Columns(items, padding=(0, 2))]
    return Group(*parts)


def print_end_table(report: Report, console: Console) -> None:
    """The table where it fits the console (its load column may wrap between words), else blocks."""
    table = end_table(report)
    one_line = Measurement.get(console, console.options.update(width=10**4), table).maximum
    loads = ["load", *(load_cell(b) for b in report.benchmarks)]
    slack = max(map(cell_len, loads)) - max(cell_len(w) for ld in loads for w in ld.split())
    console.print(table if one_line - slack <= console.width else end_blocks(report))
