"""CSV and a self-contained HTML page, both rendered from a report (the JSON is the source of truth).

The page inlines plotly's JavaScript once and every chart as JSON, so it opens
offline, anywhere; :mod:`harness.charts` makes the charts.
"""

from __future__ import annotations

import csv
import html
import io
from pathlib import Path

import msgspec
import plotly.io as pio
import plotly.offline

from harness import charts
from harness.report import bench_label, fmt_num, send_rate, to_json
from harness.schema import BenchmarkResult, Dist, Report
from harness.telemetry import node_figures

DISTS = ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms", "dispatch_lag_ms", "pacing_lag_ms",
         "delivery_ms", "engine_queue_ms", "engine_prefill_ms")  # fmt: skip
STATS = ("mean", "p50", "p90", "p95", "p99", "p999")


def csv_rows(report: Report) -> list[dict[str, object]]:
    rows = []
    for b in report.benchmarks:
        row: dict[str, object] = {
            "index": b.index,
            "name": b.name,
            "profile": b.load.profile,
            "requested_rate": b.load.requested_rate,
            "concurrency": b.load.concurrency,
            "achieved_send_rate": b.load.achieved_send_rate,
            "duration_s": b.duration_s,
            **{f"requests_{k}": v for k, v in msgspec.structs.asdict(b.requests).items()},
            **msgspec.structs.asdict(b.throughput),
            "goodput_requests_per_s": b.goodput.requests_per_s if b.goodput else None,
            "peak_inflight": b.load.peak_inflight,
            "mean_inflight": b.load.mean_inflight,
            **_efficiency_cells(b),
        }
        for d in DISTS:
            dist = getattr(b, d)
            for st in STATS:
                row[f"{d}_{st}"] = getattr(dist, st) if dist is not None else None
        rows.append(row)
    return rows


def _efficiency_cells(b: BenchmarkResult) -> dict[str, object]:
    """GPUs, per-GPU and per-joule throughput, and the engines' telemetry summed over workers."""
    e = b.efficiency
    cells: dict[str, object] = {
        "gpus": e.gpus if e else None,
        "output_tokens_per_s_per_gpu": e.output_tokens_per_s_per_gpu if e else None,
        "output_tokens_per_joule": e.output_tokens_per_joule if e else None,
    }
    cells.update({f"engines_{k}": v for k, v in node_figures(b.telemetry).items()})
    return cells


def to_csv(report: Report) -> str:
    rows = csv_rows(report)
    out = io.StringIO()
    if rows:
        w = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    return out.getvalue()


# --- HTML --------------------------------------------------------------------

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:24px;color:#222}"
    "table{border-collapse:collapse;margin:8px 0 20px;font-size:13px}"
    ".wide{overflow-x:auto}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
    "th{background:#f4f4f4;text-align:center}td:first-child{text-align:left}"
    ".charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(620px,1fr));gap:12px}"
    ".stack{grid-template-columns:minmax(620px,1200px)}.chart{min-height:380px;border:1px solid #eee}"
    "pre{background:#f6f6f6;padding:8px;overflow:auto;max-height:400px}"
    ".partial{color:#b00;font-weight:600}.better{color:#070;font-weight:600}"
    ".worse{color:#b00;font-weight:600}.same{color:#777}.warn{color:#a60}"
)
# Draws every chart, then records how many drew (an SVG with a trace in it): a browser
# test reads ``data-charts="drew/total"`` back.
_DRAW = """<script>(() => {
const figs = JSON.parse(document.getElementById('figures').textContent);
const cfg = {displaylogo: false, responsive: true, modeBarButtonsToRemove: ['select2d', 'lasso2d']};
const draws = figs.map((f, i) => Plotly.newPlot('chart-' + i, f.data, f.layout, cfg));
Promise.allSettled(draws).then(() => {
  const c = [...document.querySelectorAll('div.chart')];
  const ok = c.filter(d => d.querySelector('svg.main-svg g.trace'));
  document.documentElement.dataset.charts = ok.length + '/' + c.length;
});
})();</script>"""


def _cells(row: list[str], tag: str = "td") -> str:
    out = []
    for c in row:
        cls = next(
            (f' class="{v}"' for v in ("better", "worse", "same") if c.endswith(f" {v}")), ""
        )
        out.append(f"<{tag}{cls}>{html.escape(c)}</{tag}>")
    return "<tr>" + "".join(out) + "</tr>"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    return f"<table>{_cells(headers, 'th')}{''.join(_cells(r) for r in rows)}</table>"


def _grouped_table(groups: list[tuple[str, list[str]]], rows: list[list[str]]) -> str:
    """A table whose header names each group of columns once, over its columns' own names."""
    top, sub = [], []
    for group, cols in groups:
        if len(cols) == 1 and not cols[0]:
            top.append(f'<th rowspan="2">{html.escape(group)}</th>')
        else:
            top.append(f'<th colspan="{len(cols)}">{html.escape(group)}</th>')
            sub += [f"<th>{html.escape(c)}</th>" for c in cols]
    head = f"<tr>{''.join(top)}</tr><tr>{''.join(sub)}</tr>"
    return f"<div class='wide'><table>{head}{''.join(_cells(r) for r in rows)}</table></div>"


def _q(d: Dist | None, key: str) -> str:
    return fmt_num(None if d is None else getattr(d, key))


def summary_table(report: Report) -> str:
    slo = bool(report.config.get("slo"))
    groups = [("benchmark", [""]), ("send rate (req/s)", ["requested", "achieved"]),
              ("throughput", ["req/s", "output tok/s"])]  # fmt: skip
    groups += [(f"{label} (ms)", ["p50", "p99"]) for _, label in charts.LATENCIES]
    groups += [("engine p50 (ms)", ["queue", "prefill"])]
    groups += [("goodput (req/s)", [""])] * slo
    groups += [("requests", ["completed", "failed", "incomplete", "aborted"])]
    rows = []
    for b in report.benchmarks:
        row = [bench_label(b), fmt_num(b.load.requested_rate), fmt_num(send_rate(b)),
               fmt_num(b.throughput.requests_per_s), fmt_num(b.throughput.output_tokens_per_s)]  # fmt: skip
        for metric, _ in charts.LATENCIES:
            row += [_q(getattr(b, metric), "p50"), _q(getattr(b, metric), "p99")]
        row += [_q(b.engine_queue_ms, "p50"), _q(b.engine_prefill_ms, "p50")]
        if slo:
            row.append(fmt_num(b.goodput.requests_per_s if b.goodput else None))
        r = b.requests
        rows.append(row + [str(r.completed), str(r.failed), str(r.incomplete), str(r.aborted)])
    return _grouped_table(groups, rows)


def worker_tables(report: Report) -> str:
    per_bench = _table(
        ["benchmark", "worker", "completed", "failed", "output tokens", "output tok/s"],
        [[bench_label(b), str(w.worker_id), str(w.completed), str(w.failed), f"{w.output_tokens:,}",
          fmt_num(w.output_tokens_per_s)] for b in report.benchmarks for w in b.workers],
    )  # fmt: skip
    procs = _table(
        ["worker", "host", "device", "devices", "start-up (s)", "KV cache (tokens)", "exit"],
        [[str(w.worker_id), w.host + (" (remote)" if w.remote else ""), w.device,
          ",".join(w.devices) or "-", fmt_num(w.startup_s),
          "-" if w.kv_cache_tokens is None else f"{w.kv_cache_tokens:,}", w.exit or "-"]
         for w in report.environment.workers],
    )  # fmt: skip
    return per_bench + procs


def engine_tables(report: Report) -> str:
    """Each worker's telemetry in figures, what measured it, and what the harness itself cost."""
    benches = report.benchmarks
    sources = sorted(
        {f"{k}: {v}" for b in benches for w in b.telemetry for k, v in w.sources.items()}
    )
    notes = "".join(f"<p class='note'>{html.escape(x)}</p>" for x in sources)
    eff = [[bench_label(b), str(b.efficiency.gpus), fmt_num(b.efficiency.output_tokens_per_s_per_gpu),
            fmt_num(b.efficiency.energy_j), fmt_num(b.efficiency.output_tokens_per_joule)]
           for b in benches if b.efficiency and b.efficiency.gpus]  # fmt: skip
    eff_heads = ["benchmark", "GPUs", "output tok/s per GPU", "GPU energy (J)", "output tokens per joule"]  # fmt: skip
    cost = _table(["benchmark", "process", "CPU mean (%)", "CPU max (%)", "RSS max (MB)"],
                  [[bench_label(b), name, fmt_num(c.cpu_mean_pct), fmt_num(c.cpu_max_pct), fmt_num(c.rss_max_mb)]
                   for b in benches for name, c in b.harness_cost.items()])  # fmt: skip
    return (
        _engine_table(benches)
        + notes
        + (_table(eff_heads, eff) if eff else "")
        + "<h3>The harness's own cost</h3>"
        + cost
    )


def _engine_table(benches: list[BenchmarkResult]) -> str:
    rows = []
    for b in benches:
        for w in b.telemetry:
            sm = w.summary
            rows.append([bench_label(b), str(w.worker_id), fmt_num(sm.running_mean), fmt_num(sm.waiting_mean),
                         fmt_num(sm.kv_usage_mean_pct), fmt_num(sm.kv_usage_max_pct), str(sm.preemptions),
                         fmt_num(None if sm.prefix_hit_rate is None else 100 * sm.prefix_hit_rate),
                         fmt_num(sm.cpu_mean_pct), fmt_num(sm.rss_max_mb), fmt_num(sm.power_mean_w),
                         fmt_num(sm.energy_j)])  # fmt: skip
    if not rows:
        return "<p>No engine telemetry in this report (run with --no-telemetry, or before telemetry).</p>"
    return _table(["benchmark", "worker", "running (mean)", "waiting (mean)", "KV cache mean (%)",
                   "KV cache max (%)", "preemptions", "prefix hits (%)", "CPU (%)", "RSS max (MB)",
                   "GPU power (W)", "GPU energy (J)"], rows)  # fmt: skip


def _json_pre(obj: object) -> str:
    return f"<pre>{html.escape(msgspec.json.format(msgspec.json.encode(obj)).decode())}</pre>"


def page(title: str, sections: list[tuple[str, str | list]]) -> str:
    """One offline HTML page: plotly's bundle once, then each section (HTML, or figures)."""
    figs, parts = [], []
    for heading, content in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        if isinstance(content, str):
            parts.append(content)
            continue
        divs = [
            f'<div class="chart" id="chart-{len(figs) + i}"></div>' for i in range(len(content))
        ]
        cls = "charts stack" if heading == charts.OVER_TIME else "charts"
        parts.append(f'<div class="{cls}">{"".join(divs)}</div>')
        figs += content
    # "</" inside the JSON would end its <script> element; "<\/" is the same JSON string.
    data = "[" + ",".join(pio.to_json(f, validate=False) for f in figs) + "]"
    data = data.replace("</", "<\\/")
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>"
        f"<script>{plotly.offline.get_plotlyjs()}</script></head><body>"
        f"<h1>{html.escape(title)}</h1>{''.join(parts)}"
        f'<script type="application/json" id="figures">{data}</script>'
        f"{_DRAW}</body></html>\n"
    )


def _slo(report: Report) -> dict[str, float]:
    """The run's --slo limits in ms (empty without one)."""
    slo = report.config.get("slo")
    return {str(k): float(v) for k, v in slo.items()} if isinstance(slo, dict) else {}


def to_html(report: Report, title: str = "vllm-harness report") -> str:
    slo = _slo(report)
    partial = (
        f'<p class="partial">Partial report: {html.escape(report.stop_reason or "")}</p>'
        if report.partial
        else ""
    )
    intro = (
        f"<p>{html.escape(report.created_utc)} &middot; harness {html.escape(report.harness_version)}"
        f" &middot; <code>{html.escape(' '.join(report.command))}</code></p>{partial}"
    )
    return page(title, [
        ("Summary", intro + summary_table(report)),
        *charts.report_figures(report.benchmarks, slo),
        ("Workers", worker_tables(report)),
        ("Engines and devices", engine_tables(report)),
        ("Config", _json_pre(report.config)),
        ("Environment", _json_pre(report.environment)),
    ])  # fmt: skip


# --- compare -----------------------------------------------------------------


def compare_html(names: list[str], reports: list[Report]) -> str:
    """The runs' latency-throughput curves overlaid (one colour per run), and the deltas."""
    from harness.compare import differences, rows

    slo = _slo(reports[0])
    runs = list(zip(names, [r.benchmarks for r in reports], strict=True))
    figs = [charts.latency_curve(runs, m, label, slo) for m, label in charts.LATENCIES]
    headers = ["benchmark", "metric", names[0]] + [h for n in names[1:] for h in (n, "delta")]
    table, warnings = rows(reports[0], reports[1:])
    diffs = differences(reports)
    notes = "".join(f"<p class='warn'>{html.escape(w)}</p>" for w in warnings)
    diff_table = (
        _table(["setting", *names], [[k, *v] for k, v in diffs]) if diffs else "<p>none</p>"
    )
    return page("vllm-harness compare", [
        ("Latency vs throughput", [f for f in figs if charts.has_data(f)]),
        (f"Benchmarks paired by load (delta: against {names[0]})", _table(headers, table) + notes),
        ("Differences between the runs", diff_table),
    ])  # fmt: skip


def render(report: Report, path: Path) -> bytes:
    """``report`` in the format ``path``'s suffix names."""
    if path.suffix == ".json":
        return to_json(report)
    if path.suffix == ".csv":
        return to_csv(report).encode()
    if path.suffix == ".html":
        return to_html(report).encode()
    raise ValueError(f"{path}: no format for {path.suffix!r}")
