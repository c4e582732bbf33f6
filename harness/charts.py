"""The report's charts, as plotly figures: latency against throughput, CDFs, time series.

Plotly rather than hand-drawn SVG or matplotlib: a reader hovers for exact values,
zooms into a tail, and switches a latency axis to log scale, in one offline page.
Every figure shares one small layout (no plotly template, which would repeat about
10 kB of styling in every figure), units on every axis and the legend outside the
plot area, so it never sits on a curve.
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from harness.report import bench_label
from harness.schema import CDF_PERCENTILES, BenchmarkResult

COLORS = qualitative.D3
LATENCIES = (("ttft_ms", "TTFT"), ("tpot_ms", "TPOT"), ("itl_ms", "ITL"), ("e2e_ms", "E2E latency"))
# Which SLO limit (--slo key) applies to which latency chart.
SLO_OF = {"ttft_ms": "ttft_ms", "tpot_ms": "tpot_ms", "e2e_ms": "e2e_ms"}
_AXIS = {"gridcolor": "#e5e5e5", "linecolor": "#888", "ticks": "outside", "zeroline": False,
         "automargin": True}  # fmt: skip


def _layout(fig: go.Figure, title: str, xtitle: str, ytitle: str, height: int = 380) -> go.Figure:
    fig.update_layout(
        template="none",
        title={
            "text": title,
            "x": 0.01,
            "xanchor": "left",
            "xref": "container",
            "y": 0.985,
            "yanchor": "top",
            "yref": "container",
            "font": {"size": 15},
        },
        height=height,
        margin={"l": 64, "r": 16, "t": 84, "b": 52},
        font={"family": "system-ui, sans-serif", "size": 12},
        hovermode="closest",
        legend={"x": 1.02, "xanchor": "left", "y": 1, "yanchor": "top"},
        plot_bgcolor="white",
    )
    fig.update_xaxes(title_text=xtitle, **_AXIS)
    fig.update_yaxes(title_text=ytitle, **_AXIS)
    return fig


def _log_switch(fig: go.Figure, axis: str) -> None:
    """Buttons above the plot that switch ``axis`` ("xaxis" or "yaxis") between linear and log."""
    buttons = [
        {"label": kind, "method": "relayout", "args": [{f"{axis}.type": kind}]}
        for kind in ("linear", "log")
    ]
    fig.update_layout(updatemenus=[{"type": "buttons", "direction": "right", "buttons": buttons,
                                    "x": 0, "xanchor": "left", "y": 1.03, "yanchor": "bottom",
                                    "pad": {"t": 0, "b": 0}, "showactive": True,
                                    "font": {"size": 11}}])  # fmt: skip


def _slo_line(fig: go.Figure, limit: float | None, vertical: bool) -> None:
    if limit is None:
        return
    style = {"line_dash": "dash", "line_color": "#c00", "line_width": 1,
             "annotation_text": f"SLO {limit:g} ms", "annotation_font_color": "#c00"}  # fmt: skip
    if vertical:
        fig.add_vline(x=limit, annotation_position="top right", **style)
    else:
        fig.add_hline(y=limit, annotation_position="top left", **style)


def latency_curve(
    runs: Sequence[tuple[str, Sequence[BenchmarkResult]]], metric: str, label: str,
    slo: dict[str, float],
) -> go.Figure:  # fmt: skip
    """p50 and p99 of ``metric`` against the achieved request rate: one colour per run."""
    fig = go.Figure()
    for i, (run, benches) in enumerate(runs):
        have = sorted((b for b in benches if getattr(b, metric) is not None),
                      key=lambda b: b.throughput.requests_per_s)  # fmt: skip
        color = COLORS[i % len(COLORS)]
        for q, dash in (("p50", "solid"), ("p99", "dash")):
            name = f"{run} {q}" if run else q
            fig.add_trace(go.Scatter(
                x=[b.throughput.requests_per_s for b in have],
                y=[getattr(getattr(b, metric), q) for b in have],
                customdata=[bench_label(b) for b in have], name=name, legendgroup=run,
                mode="lines+markers", line={"color": color, "dash": dash, "width": 2},
                hovertemplate=f"%{{customdata}}<br>%{{x:,.2f}} req/s<br>{q} %{{y:,.2f}} ms"
                              f"<extra>{name}</extra>",
            ))  # fmt: skip
    _layout(fig, f"{label} vs achieved request rate", "achieved request rate (req/s)",
            f"{label} (ms)")  # fmt: skip
    fig.update_yaxes(rangemode="tozero")
    _slo_line(fig, slo.get(SLO_OF.get(metric, "")), vertical=False)
    _log_switch(fig, "yaxis")
    return fig


def cdf(
    benches: Sequence[BenchmarkResult], metric: str, label: str, slo: dict[str, float]
) -> go.Figure:
    """The latency's distribution, one line per benchmark."""
    fig = go.Figure()
    for i, b in enumerate(benches):
        xs = b.cdf_ms.get(metric)
        if not xs:
            continue
        name = bench_label(b)
        fig.add_trace(go.Scatter(
            x=xs, y=CDF_PERCENTILES[: len(xs)], name=name, mode="lines",
            line={"color": COLORS[i % len(COLORS)], "width": 2},
            hovertemplate=f"%{{x:,.2f}} ms at p%{{y}}<extra>{name}</extra>",
        ))  # fmt: skip
    _layout(fig, f"{label} CDF", f"{label} (ms)", "requests at or below (%)")
    fig.update_yaxes(range=[0, 100.5])
    _slo_line(fig, slo.get(SLO_OF.get(metric, "")), vertical=True)
    _log_switch(fig, "xaxis")
    return fig


def _rate_steps(
    t_s: list[float], counts: list[int], bin_s: float
) -> tuple[list[float], list[float]]:
    """Per-bin counts as per-second rates, one step per bin: from each bin's start to its end."""
    rates = [c / bin_s for c in counts]
    return [t - bin_s for t in t_s] + t_s[-1:], rates + rates[-1:]


# The time series leave room at the right for the in-flight axis, and the engines' line up.
TIMESERIES_X_DOMAIN = (0.0, 0.94)


def timeseries(b: BenchmarkResult, x_max: float | None = None) -> go.Figure:
    """Sends, completions and output tokens per second over the benchmark, and requests in flight.

    Each bin's count divided by its width (``bin_s``, which suits the benchmark's length)
    is a per-second rate, drawn as a step over its bin.
    """
    ts = b.timeseries
    bin_s = ts.bin_s if ts.bin_s > 0 else 1.0
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        specs=[[{"secondary_y": True}], [{}]])  # fmt: skip
    lines = [("sends/s", ts.sends, "req/s", 1), ("completions/s", ts.completions, "req/s", 1),
             ("output tok/s", ts.output_tokens, "tok/s", 2)]  # fmt: skip
    for i, (name, counts, unit, row) in enumerate(lines):
        xs, ys = _rate_steps(ts.t_s, counts, bin_s)
        fig.add_trace(go.Scatter(x=xs, y=ys, name=name, mode="lines", line_shape="hv",
                                 line={"color": COLORS[i]},
                                 hovertemplate=f"bin from %{{x:,.2f}} s: %{{y:,.2f}} {unit}<extra>{name}</extra>"),
                      row=row, col=1)  # fmt: skip
    # Sampled at each bin's end; nothing is in flight at the start.
    fig.add_trace(go.Scatter(x=[0.0, *ts.t_s], y=[0, *ts.inflight], name="in flight (right axis)",
                             mode="lines", line={"color": COLORS[7], "dash": "dot"},
                             hovertemplate="%{x:,.2f} s: %{y} in flight<extra></extra>"),
                  row=1, col=1, secondary_y=True)  # fmt: skip
    _layout(fig, f"{bench_label(b)}: over time (bins of {bin_s:g} s)", "", "", height=440)
    # Above the plot: at the right it would sit on the in-flight axis.
    fig.update_layout(legend={"orientation": "h", "x": 0, "xanchor": "left", "y": 1.02,
                              "yanchor": "bottom"})  # fmt: skip
    fig.update_xaxes(title_text="time since the benchmark's start (s)", row=2, col=1)
    fig.update_yaxes(title_text="rate (req/s)", rangemode="tozero", row=1, col=1, secondary_y=False)
    fig.update_yaxes(title_text="in flight (requests)", rangemode="tozero", showgrid=False,
                     tickmode="auto", row=1, col=1, secondary_y=True)  # fmt: skip
    fig.update_yaxes(title_text="output (tok/s)", rangemode="tozero", row=2, col=1)
    fig.update_xaxes(domain=TIMESERIES_X_DOMAIN)
    if x_max:
        fig.update_xaxes(range=[0, x_max])
    return fig


def _worker_lines(fig: go.Figure, row: int, name: str, unit: str, series: list[tuple[str, list[float], list]],
                  dash: str | None = None) -> None:  # fmt: skip
    for i, (who, xs, ys) in enumerate(series):
        fig.add_trace(go.Scatter(x=xs, y=ys, name=f"{who} {name}", mode="lines+markers", marker={"size": 4},
                                 line={"color": COLORS[i % len(COLORS)], "dash": dash}, legendgroup=who,
                                 hovertemplate=f"%{{x:,.2f}} s: %{{y:,.2f}} {unit}<extra>{who} {name}</extra>"),
                      row=row, col=1)  # fmt: skip


def telemetry(b: BenchmarkResult, x_max: float | None = None) -> go.Figure:
    """The engines under the latency time series, on its time axis: one line per worker.

    KV cache use, requests running (solid) and waiting (dotted), preemptions per interval,
    and the GPUs' SM utilization and power (or, on CPU, the engine processes' CPU), so a
    TTFT spike can be read against a full cache, a queue, a preemption burst or a power cap.
    """
    ws = b.telemetry

    def per_worker(attr: str) -> list[tuple[str, list[float], list]]:
        return [(f"worker {w.worker_id}", w.series.t_s, getattr(w.series, attr)) for w in ws]

    def per_gpu(attr: str) -> list[tuple[str, list[float], list]]:
        return [(f"worker {w.worker_id} GPU {g.index}", w.series.t_s, getattr(g, attr))
                for w in ws for g in w.series.gpus]  # fmt: skip

    gpu = any(w.series.gpus for w in ws)
    kv = [x for x in per_worker("kv_usage_pct") if any(v is not None for v in x[2])]
    panels = [("KV cache (%)", "%", [("KV cache", kv, "solid")])] if kv else []
    panels += [("requests", "", [("running", per_worker("running"), "solid"),
                                ("waiting", per_worker("waiting"), "dot")]),
              ("preemptions", "", [("preemptions", per_worker("preemptions"), "solid")])]  # fmt: skip
    if gpu:
        panels += [("GPU SM (%)", "%", [("SM util", per_gpu("sm_util_pct"), "solid")]),
                   ("GPU power (W)", "W", [("power", per_gpu("power_w"), "solid")])]  # fmt: skip
    else:
        panels.append(("CPU (%)", "%", [("CPU", per_worker("cpu_pct"), "solid")]))
    fig = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.05)
    for row, (_, unit, lines) in enumerate(panels, 1):
        for name, series, dash in lines:
            _worker_lines(fig, row, name, unit, series, dash)
    # Its legend (above: at the right it would narrow the plots) takes a line per 3 entries.
    legend_px = 18 * -(-len(fig.data) // 3)
    _layout(fig, f"{bench_label(b)}: the engines", "", "", height=150 * len(panels) + legend_px)
    fig.update_layout(
        legend={"orientation": "h", "x": 0, "xanchor": "left", "y": 1.02, "yanchor": "bottom"},
        margin={"t": 50 + legend_px},
    )
    for row, (title, _, _) in enumerate(panels, 1):
        fig.update_yaxes(title_text=title, rangemode="tozero", row=row, col=1)
    fig.update_xaxes(title_text="time since the benchmark's start (s)", row=len(panels), col=1)
    # The latency series' x axis leaves room for its right-hand axis: the same here, so
    # the two line up.
    fig.update_xaxes(domain=TIMESERIES_X_DOMAIN)
    if x_max:
        fig.update_xaxes(range=[0, x_max])
    return fig


# Its charts stack in one column: each benchmark's engines right under its latency series.
OVER_TIME = "Over time"


def report_figures(
    benches: Sequence[BenchmarkResult], slo: dict[str, float]
) -> list[tuple[str, list[go.Figure]]]:
    """Every chart of a report, by section, in page order; charts with no data left out."""
    sections = [
        (
            "Latency vs throughput",
            [latency_curve([("", benches)], m, t, slo) for m, t in LATENCIES],
        ),
        ("Latency distributions", [cdf(benches, m, t, slo) for m, t in LATENCIES]),
        (OVER_TIME, [f for b in benches for f in _over_time(b)]),
    ]
    return [(name, [f for f in figs if has_data(f)]) for name, figs in sections]


def _over_time(b: BenchmarkResult) -> list[go.Figure]:
    """A benchmark's time series and, under it on the same axis, its engines'."""
    end = max(
        [*b.timeseries.t_s, *(t for w in b.telemetry for t in w.series.t_s[-1:])], default=None
    )
    out = [timeseries(b, end)] if b.timeseries.t_s else []
    if b.telemetry:
        out.append(telemetry(b, end))
    return out


def has_data(fig: go.Figure) -> bool:
    """Whether some trace has a point: a chart of nothing is left out, not drawn empty."""
    return any(len(t.x or ()) for t in fig.data)
