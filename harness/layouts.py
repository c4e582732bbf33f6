"""Node layouts (workers x tensor-parallel size) and the summary of a layout sweep.

A sweep directory holds one report per layout, ``<workers>x<tp>.json``, and a
``<workers>x<tp>.failed.json`` for a layout that failed. The summary answers
"which layout, and what load does it hold": per layout the peak output tokens/s,
the highest request rate whose benchmark met the SLO, and the p99 TTFT and ITL there.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import msgspec

from harness.report import ReportError, fmt_num, read_json
from harness.schema import BenchmarkResult

# A benchmark meets the SLO when at least this share of its requests met every SLO.
SLO_SHARE = 0.99
_NAME = re.compile(r"^(\d+)x(\d+)\.json$")


class Layout(msgspec.Struct, frozen=True):
    workers: int
    tp: int

    @property
    def name(self) -> str:
        return f"{self.workers}x{self.tp}"


class Skipped(msgspec.Struct, frozen=True):
    tp: int
    reason: str


class LayoutFailure(msgspec.Struct):
    layout: str
    error: str
    returncode: int


class LayoutRow(msgspec.Struct):
    layout: str
    workers: int
    tp: int
    status: str  # "ok", "failed" or "partial"
    peak_output_tokens_per_s: float | None = None
    # At the peak: per GPU, and per joule of GPU energy (NVML); None on CPU or without it.
    peak_output_tokens_per_s_per_gpu: float | None = None
    output_tokens_per_joule: float | None = None
    best_slo_rate: float | None = None  # requests/s of the fastest benchmark meeting the SLO
    ttft_p99_ms: float | None = None  # at that benchmark (or at the peak without an SLO)
    itl_p99_ms: float | None = None
    error: str | None = None
    best: bool = False


class SweepSummary(msgspec.Struct):
    directory: str
    slo: dict[str, float]
    rows: list[LayoutRow]
    best: str | None


def enumerate_layouts(
    gpus: int, tps: list[int], heads: int | None
) -> tuple[list[Layout], list[Skipped]]:
    """Every ``workers x tp`` that uses all ``gpus``; tp values that cannot are skipped with why."""
    layouts, skipped = [], []
    for tp in tps:
        if tp < 1 or gpus % tp:
            skipped.append(Skipped(tp, f"tp {tp} does not divide {gpus} GPUs"))
        elif heads and heads % tp:
            skipped.append(
                Skipped(tp, f"tp {tp} does not divide the model's {heads} attention heads")
            )
        else:
            layouts.append(Layout(gpus // tp, tp))
    return layouts, skipped


def _meets(b: BenchmarkResult) -> bool:
    return b.goodput is not None and b.requests.completed > 0 and b.goodput.fraction >= SLO_SHARE


def row_for(layout: Layout, benches: list[BenchmarkResult], partial: bool) -> LayoutRow:
    row = LayoutRow(layout.name, layout.workers, layout.tp, "partial" if partial else "ok")
    if not benches:
        return row
    peak = max(benches, key=lambda b: b.throughput.output_tokens_per_s)
    row.peak_output_tokens_per_s = peak.throughput.output_tokens_per_s
    if peak.efficiency is not None:
        row.peak_output_tokens_per_s_per_gpu = peak.efficiency.output_tokens_per_s_per_gpu
        row.output_tokens_per_joule = peak.efficiency.output_tokens_per_joule
    at = peak
    if any(b.goodput is not None for b in benches):
        ok = [b for b in benches if _meets(b)]
        if not ok:
            return row
        at = max(ok, key=lambda b: b.throughput.requests_per_s)
        row.best_slo_rate = at.throughput.requests_per_s
    row.ttft_p99_ms = at.ttft_ms.p99 if at.ttft_ms else None
    row.itl_p99_ms = at.itl_ms.p99 if at.itl_ms else None
    return row


def summarize(folder: Path) -> SweepSummary:
    rows: list[LayoutRow] = []
    slo: dict[str, float] = {}
    if not folder.is_dir():
        raise ReportError(f"{folder}: no such sweep directory")
    for path in sorted(folder.iterdir()):
        if path.name.endswith(".failed.json"):
            f = msgspec.json.decode(path.read_bytes(), type=LayoutFailure)
            w, t = (int(x) for x in f.layout.split("x"))
            rows.append(LayoutRow(f.layout, w, t, "failed", error=f.error))
            continue
        match = _NAME.match(path.name)
        if not match:
            continue
        rep = read_json(path)
        slo = slo or {k: float(v) for k, v in dict(rep.config.get("slo") or {}).items()}  # type: ignore[call-overload]
        layout = Layout(int(match[1]), int(match[2]))
        rows.append(row_for(layout, rep.benchmarks, rep.partial))
    if not rows:
        raise ReportError(f"{folder}: no layout results (<workers>x<tp>.json)")
    key = "best_slo_rate" if slo else "peak_output_tokens_per_s"
    scored = [r for r in rows if getattr(r, key) is not None]
    best = max(scored, key=lambda r: getattr(r, key)) if scored else None
    if best is not None:
        best.best = True
    rows.sort(key=lambda r: (-r.workers, r.tp))
    return SweepSummary(str(folder), slo, rows, best.layout if best else None)


def table(s: SweepSummary) -> str:
    slo = ",".join(f"{k}={v:g}" for k, v in s.slo.items()) or "none"
    head = (f"{'layout':<9}{'status':<9}{'peak out tok/s':>16}{'per GPU':>10}{'tok/J':>8}"
            f"{'SLO rate req/s':>16}{'TTFT p99 ms':>13}{'ITL p99 ms':>12}")  # fmt: skip
    lines = [f"sweep {s.directory}  (SLO: {slo}; met = {SLO_SHARE:.0%} of requests)", head]
    for r in s.rows:
        mark = " <- best" if r.best else ""
        lines.append(
            f"{r.layout:<9}{r.status:<9}{fmt_num(r.peak_output_tokens_per_s):>16}"
            f"{fmt_num(r.peak_output_tokens_per_s_per_gpu):>10}{fmt_num(r.output_tokens_per_joule):>8}"
            f"{fmt_num(r.best_slo_rate):>16}{fmt_num(r.ttft_p99_ms):>13}{fmt_num(r.itl_p99_ms):>12}{mark}"
            + (f"  {r.error}" if r.error else "")
        )
    return "\n".join(lines)


def to_html(s: SweepSummary) -> str:
    """One self-contained page: no scripts, no network."""
    cells = []
    for r in s.rows:
        style = ' style="background:#e6f4ea;font-weight:bold"' if r.best else ""
        vals = [r.layout + (" (best)" if r.best else ""), r.status,
                fmt_num(r.peak_output_tokens_per_s), fmt_num(r.peak_output_tokens_per_s_per_gpu),
                fmt_num(r.output_tokens_per_joule), fmt_num(r.best_slo_rate),
                fmt_num(r.ttft_p99_ms), fmt_num(r.itl_p99_ms), r.error or ""]  # fmt: skip
        cells.append(f"<tr{style}>" + "".join(f"<td>{html.escape(v)}</td>" for v in vals) + "</tr>")
    slo = ", ".join(f"{html.escape(k)} &le; {v:g}" for k, v in s.slo.items()) or "none"
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Layout sweep</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}</style></head><body>"
        f"<h1>Layout sweep</h1><p>{html.escape(s.directory)}. SLO: {slo}"
        f" (met when {SLO_SHARE:.0%} of requests meet it).</p><table><tr><th>layout</th>"
        "<th>status</th><th>peak output tok/s</th><th>per GPU</th><th>output tok/J</th>"
        "<th>highest SLO rate (req/s)</th>"
        "<th>TTFT p99 (ms)</th><th>ITL p99 (ms)</th><th>error</th></tr>"
        + "".join(cells)
        + "</table></body></html>\n"
    )


def write_summary(s: SweepSummary, path: Path) -> None:
    """The summary as ``path`` (.json or .html), or as summary.json and summary.html in a folder."""
    from harness.output import atomic_write

    targets = [path / "summary.json", path / "summary.html"] if path.is_dir() else [path]
    for t in targets:
        data = (
            msgspec.json.format(msgspec.json.encode(s)) + b"\n"
            if t.suffix == ".json"
            else to_html(s).encode()
        )
        atomic_write(t, data)
