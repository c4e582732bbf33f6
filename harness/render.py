"""CSV and a self-contained HTML page, both rendered from a report (the JSON is the source of truth).

The HTML draws its charts as inline SVG from Python: no script libraries, no
network, so the page opens anywhere and shows the same thing everywhere.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Sequence
from pathlib import Path

import msgspec

from harness.report import fmt_num, to_json
from harness.schema import CDF_PERCENTILES, BenchmarkResult, Report

DISTS = ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms", "dispatch_lag_ms")
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
        }
        for d in DISTS:
            dist = getattr(b, d)
            for st in STATS:
                row[f"{d}_{st}"] = getattr(dist, st) if dist is not None else None
        rows.append(row)
    return rows


def to_csv(report: Report) -> str:
    rows = csv_rows(report)
    out = io.StringIO()
    if rows:
        w = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    return out.getvalue()


# --- SVG charts --------------------------------------------------------------

_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
_W, _H, _L, _R, _T, _B = 560, 300, 64, 16, 28, 44

Series = tuple[str, Sequence[float], Sequence[float]]


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)]


def _fmt(x: float) -> str:
    a = abs(x)
    return f"{x:,.0f}" if a >= 100 else f"{x:.1f}" if a >= 1 else f"{x:.3g}"


def line_chart(title: str, xlabel: str, ylabel: str, series: list[Series], chart_id: str) -> str:
    """One SVG line chart with markers, axes, ticks and a legend."""
    pts = [(x, y) for _, xs, ys in series for x, y in zip(xs, ys, strict=True)]
    out = [
        f'<figure class="chart" id="{html.escape(chart_id)}"><figcaption>{html.escape(title)}</figcaption>'
    ]
    out.append(
        f'<svg class="chart-svg" viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" role="img">'
    )
    if not pts:
        out.append(
            f'<text x="{_W / 2}" y="{_H / 2}" text-anchor="middle">no data</text></svg></figure>'
        )
        return "".join(out)
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(0.0, min(p[1] for p in pts)), max(p[1] for p in pts)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        y1 = y0 + 1
    pw, ph = _W - _L - _R, _H - _T - _B

    def sx(x: float) -> float:
        return _L + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return _T + ph - (y - y0) / (y1 - y0) * ph

    out.append(f'<rect x="{_L}" y="{_T}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
    for t in _ticks(x0, x1):
        out.append(
            f'<text x="{sx(t):.1f}" y="{_T + ph + 16}" font-size="11" text-anchor="middle">{_fmt(t)}</text>'
        )
    for t in _ticks(y0, y1):
        out.append(
            f'<line x1="{_L}" x2="{_L + pw}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#eee"/>'
        )
        out.append(
            f'<text x="{_L - 6}" y="{sy(t) + 4:.1f}" font-size="11" text-anchor="end">{_fmt(t)}</text>'
        )
    out.append(
        f'<text x="{_L + pw / 2}" y="{_H - 6}" font-size="12" text-anchor="middle">{html.escape(xlabel)}</text>'
    )
    out.append(
        f'<text x="14" y="{_T + ph / 2}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 14 {_T + ph / 2})">{html.escape(ylabel)}</text>'
    )
    for i, (label, xs, ys) in enumerate(series):
        color = _COLORS[i % len(_COLORS)]
        pairs = sorted(zip(xs, ys, strict=True))
        if not pairs:
            continue
        d = "M" + " L".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pairs)
        out.append(f'<path class="series" d="{d}" fill="none" stroke="{color}" stroke-width="2"/>')
        if len(pairs) <= 40:
            for x, y in pairs:
                out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{color}"/>')
        ly = _T + 14 + 14 * i
        out.append(f'<rect x="{_L + 8}" y="{ly - 9}" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{_L + 22}" y="{ly}" font-size="11">{html.escape(label)}</text>')
    out.append("</svg></figure>")
    return "".join(out)


def _curve(benches: list[BenchmarkResult], metric: str, prefix: str = "") -> list[Series]:
    have = [b for b in benches if getattr(b, metric) is not None]
    xs = [b.throughput.requests_per_s for b in have]
    return [
        (f"{prefix}{q}", xs, [getattr(getattr(b, metric), q) for b in have]) for q in ("p50", "p99")
    ]


def charts(report: Report) -> list[str]:
    bs = report.benchmarks
    out = []
    for metric, label in (("ttft_ms", "TTFT"), ("itl_ms", "ITL"), ("e2e_ms", "E2E latency")):
        out.append(line_chart(f"{label} vs achieved request rate", "requests/s", "ms",
                              _curve(bs, metric), f"curve-{metric}"))  # fmt: skip
    for metric, label in (("ttft_ms", "TTFT"), ("itl_ms", "ITL"), ("e2e_ms", "E2E latency")):
        series = [
            (b.name, b.cdf_ms[metric], CDF_PERCENTILES[: len(b.cdf_ms[metric])])
            for b in bs
            if metric in b.cdf_ms
        ]
        out.append(line_chart(f"{label} CDF", "ms", "percentile", series, f"cdf-{metric}"))
    for b in bs:
        ts = b.timeseries
        out.append(line_chart(
            f"{b.name}: requests per second", "seconds", "requests",
            [("sends", ts.t_s, ts.sends), ("completions", ts.t_s, ts.completions),
             ("in flight", ts.t_s, ts.inflight)],
            f"ts-requests-{b.index}",
        ))  # fmt: skip
        rate = [x / ts.bin_s for x in ts.output_tokens]
        out.append(line_chart(f"{b.name}: output tokens per second", "seconds", "tokens/s",
                              [("output tokens", ts.t_s, rate)], f"ts-tokens-{b.index}"))  # fmt: skip
    return out


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def to_html(report: Report, title: str = "vllm-harness report") -> str:
    bs = report.benchmarks
    summary = _table(
        ["benchmark", "req/s", "output tok/s", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99",
         "E2E p99", "completed", "failed", "incomplete"],
        [[b.name, fmt_num(b.throughput.requests_per_s), fmt_num(b.throughput.output_tokens_per_s),
          fmt_num(b.ttft_ms.p50 if b.ttft_ms else None), fmt_num(b.ttft_ms.p99 if b.ttft_ms else None),
          fmt_num(b.itl_ms.p50 if b.itl_ms else None), fmt_num(b.itl_ms.p99 if b.itl_ms else None),
          fmt_num(b.e2e_ms.p99 if b.e2e_ms else None), str(b.requests.completed),
          str(b.requests.failed), str(b.requests.incomplete)] for b in bs],
    )  # fmt: skip
    workers = _table(
        ["benchmark", "worker", "completed", "failed", "output tokens", "output tok/s"],
        [[b.name, str(w.worker_id), str(w.completed), str(w.failed), str(w.output_tokens),
          fmt_num(w.output_tokens_per_s)] for b in bs for w in b.workers],
    )  # fmt: skip
    config = html.escape(msgspec.json.format(msgspec.json.encode(report.config)).decode())
    env = html.escape(msgspec.json.format(msgspec.json.encode(report.environment)).decode())
    partial = (
        f'<p class="partial">Partial report: {html.escape(report.stop_reason or "")}</p>'
        if report.partial
        else ""
    )
    # The check a browser test reads back: every chart drew at least one series.
    check = (
        "<script>const c=[...document.querySelectorAll('figure.chart')];"
        "const ok=c.filter(f=>[...f.querySelectorAll('path.series')].some(p=>p.getAttribute('d').length>1));"
        "document.documentElement.dataset.charts=ok.length+'/'+c.length;</script>"
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:24px;color:#222}"
        "table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;"
        "padding:3px 8px;text-align:right}figure{display:inline-block;margin:8px}"
        "figcaption{font-weight:600;margin-bottom:4px}pre{background:#f6f6f6;padding:8px;"
        "overflow:auto;max-height:400px}.partial{color:#b00;font-weight:600}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(report.created_utc)} &middot; harness {html.escape(report.harness_version)}"
        f" &middot; {html.escape(' '.join(report.command))}</p>{partial}"
        f"<h2>Summary</h2>{summary}<h2>Latency and throughput</h2>{''.join(charts(report))}"
        f"<h2>Workers</h2>{workers}<h2>Config</h2><pre>{config}</pre>"
        f"<h2>Environment</h2><pre>{env}</pre>{check}</body></html>\n"
    )


# --- compare -----------------------------------------------------------------


def compare_html(names: list[str], reports: list[Report]) -> str:
    """The runs' latency-throughput curves overlaid, with the comparison table."""
    from harness.compare import differences, rows

    figs = []
    for m, label in (("ttft_ms", "TTFT"), ("itl_ms", "ITL"), ("e2e_ms", "E2E latency")):
        series: list[Series] = []
        for n, rep in zip(names, reports, strict=True):
            series += _curve(rep.benchmarks, m, prefix=f"{n} ")
        figs.append(
            line_chart(f"{label} vs achieved request rate", "requests/s", "ms", series, f"cmp-{m}")
        )
    headers = ["benchmark", "metric", names[0]] + [h for n in names[1:] for h in (n, "delta")]
    table, warnings = rows(reports[0], reports[1:])
    diffs = differences(reports)
    notes = "".join(f"<p class='warn'>{html.escape(w)}</p>" for w in warnings)
    diff_table = _table(["setting", *names], [[k, *v] for k, v in diffs]) if diffs else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>vllm-harness compare</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:24px}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}figure{display:inline-block}"
        f"</style></head><body><h1>Compare</h1>{''.join(figs)}{_table(headers, table)}{notes}"
        f"<h2>Differences between the runs</h2>{diff_table or '<p>none</p>'}</body></html>\n"
    )


def render(report: Report, path: Path) -> bytes:
    """``report`` in the format ``path``'s suffix names."""
    if path.suffix == ".json":
        return to_json(report)
    if path.suffix == ".csv":
        return to_csv(report).encode()
    if path.suffix == ".html":
        return to_html(report).encode()
    raise ValueError(f"{path}: no format for {path.suffix!r}")
