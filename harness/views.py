"""What a running benchmark and the engines' start-up look like: figures, lines, rich renderables.

Pure: made from the coordinator's state (a ``LiveBench``, the ``Fleet``), no I/O;
:mod:`harness.console` draws them. Counts come from the collector (``Progress``):
a request aborted by a limit is counted as aborted, never as done.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.columns import Columns
from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from harness.limits import Limits
from harness.report import fmt_sig

if TYPE_CHECKING:
    from harness.bench_loop import LiveBench
    from harness.fleet import Fleet, Peer

MIN_RATE_S = 1.0  # rates are shown once a benchmark has run this long: before, they are noise


# --- what a benchmark looks like now ---------------------------------------------


@dataclass
class BenchView:
    position: str  # "2/7"
    name: str
    phase: str
    elapsed_s: float
    eta_s: float | None
    fraction: float | None  # of the benchmark, for the bar
    done: int  # completed + failed: requests that ended on their own
    failed: int
    aborted: int
    inflight: int
    req_s: float | None
    tok_s: float | None
    ttft_p50_ms: float | None
    itl_p50_ms: float | None


def phase(b: LiveBench, limits: Limits, elapsed_s: float) -> str:
    """warm-up, measuring, cool-down, draining (all sent, waiting), stopping (a limit: aborting)."""
    if b.result is not None:
        return "done"
    if b.stop_reason is not None:
        return f"stopping ({b.stop_reason.replace('_', '-')})"
    if b.all_sent:
        return "draining"
    w, c = limits.warmup, limits.cooldown
    if (w.requests and b.sent < w.requests) or (w.seconds and elapsed_s < w.seconds):
        return "warm-up"
    if c.requests and b.planned is not None and b.sent >= b.planned - c.requests:
        return "cool-down"
    end_s = _send_end_s(b, limits)
    if c.seconds and end_s is not None and elapsed_s >= end_s - c.seconds:
        return "cool-down"
    return "measuring"


def _send_end_s(b: LiveBench, limits: Limits) -> float | None:
    """When sending is planned to end, in seconds from the start (None: unknown)."""
    off = b.plan.offsets_ns
    ends = [float(off[-1]) / 1e9] if off is not None and len(off) else []
    ends += [limits.max_seconds] if limits.max_seconds is not None else []
    return min(ends) if ends else None


def eta(b: LiveBench, limits: Limits, elapsed_s: float, ended: int) -> float | None:
    """Seconds left, where they can be known: from the plan, the measured pace and --max-seconds."""
    if b.result is not None:
        return 0.0
    guesses = []
    if limits.max_seconds is not None and b.stop_reason is None:
        guesses.append(limits.max_seconds - elapsed_s)  # then in-flight requests are aborted
    if b.planned is not None:
        schedule = _send_end_s(b, limits) if b.plan.open_loop else None
        paced = elapsed_s >= MIN_RATE_S and ended > 0
        if paced:
            by_pace = (b.planned - ended) / (ended / elapsed_s)
            guesses.append(max(by_pace, (schedule or 0.0) - elapsed_s))
        elif schedule is not None:
            guesses.append(schedule - elapsed_s)  # at least until the last send
    return max(0.0, min(guesses)) if guesses else None


def bench_view(b: LiveBench, limits: Limits, count: int | None) -> BenchView:
    """The benchmark now: the collector's live figures while it runs, its result once it ended."""
    position = f"{b.index + 1}/{count}" if count else str(b.index + 1)
    if b.result is not None:
        return _ended_view(b, position)
    elapsed = max(0.0, (time.monotonic_ns() - b.t0_ns) / 1e9)
    p = b.progress
    completed, failed, aborted = (p.completed, p.failed, p.aborted) if p else (0, 0, 0)
    ended = completed + failed + aborted
    # Done by count or by the clock, whichever ends it first.
    parts = [ended / b.planned] if b.planned else []
    parts += [elapsed / limits.max_seconds] if limits.max_seconds else []
    rated = p is not None and elapsed >= MIN_RATE_S
    return BenchView(
        position, b.plan.name, phase(b, limits, elapsed), elapsed, eta(b, limits, elapsed, ended),
        max(parts) if parts else None, completed + failed, failed, aborted, max(b.inflight, 0),
        req_s=completed / elapsed if rated else None,
        tok_s=p.output_tokens / elapsed if rated and p else None,
        ttft_p50_ms=p.ttft_p50_ms if p else None, itl_p50_ms=p.itl_p50_ms if p else None,
    )  # fmt: skip


def _ended_view(b: LiveBench, position: str) -> BenchView:
    """The collector's final word: measured requests, over the measured time."""
    r = b.result
    assert r is not None
    q = r.requests
    return BenchView(
        position, b.plan.name, "done", r.duration_s, 0.0, 1.0, q.completed + q.failed, q.failed,
        q.aborted, 0, r.throughput.requests_per_s, r.throughput.output_tokens_per_s,
        r.ttft_ms.p50 if r.ttft_ms else None, r.itl_ms.p50 if r.itl_ms else None,
    )  # fmt: skip


def fmt_time(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.1f} s" if s < 120 else f"{int(s // 60)} min {int(s % 60):02d} s"


def count_fields(v: BenchView) -> list[tuple[str, str]]:
    return [("done", f"{v.done:,}"), ("failed", f"{v.failed:,}"), ("aborted", f"{v.aborted:,}"),
            ("in flight", f"{v.inflight:,}")]  # fmt: skip


def rate_fields(v: BenchView) -> list[tuple[str, str]]:
    """Rates and latencies, only those measured so far."""
    out = []
    if v.req_s is not None:
        out += [("req/s", fmt_sig(v.req_s)), ("out tok/s", fmt_sig(v.tok_s))]
    if v.ttft_p50_ms is not None:
        out.append(("TTFT p50", f"{fmt_sig(v.ttft_p50_ms)} ms"))
    if v.itl_p50_ms is not None:
        out.append(("ITL p50", f"{fmt_sig(v.itl_p50_ms)} ms"))
    return out


def plain_line(v: BenchView) -> str:
    """One line for logs (stderr not a terminal)."""
    head = f"[{v.position}] {v.name}: {v.phase}, {fmt_time(v.elapsed_s)}"
    if v.eta_s is not None and v.phase != "done":
        head += f", ETA {fmt_time(v.eta_s)}"
    fields = [f"{k} {val}" for k, val in count_fields(v) + rate_fields(v)]
    return f"{head} | {', '.join(fields)}"


def _fields(fields: list[tuple[str, str]]) -> Columns:
    return Columns([Text.assemble((k + " ", "dim"), (val, "bold")) for k, val in fields],
                   padding=(0, 3))  # fmt: skip


def render_bench(v: BenchView) -> RenderableType:
    head = Text.assemble((f"[{v.position}] ", "cyan"), (v.name, "bold"), f"  {v.phase}",
                         no_wrap=True, overflow="ellipsis")  # fmt: skip
    when = fmt_time(v.elapsed_s) + (f", ETA {fmt_time(v.eta_s)}" if v.eta_s is not None else "")
    bar = Table.grid(padding=(0, 1))
    bar.add_column(max_width=40)
    bar.add_column(no_wrap=True, overflow="ellipsis")
    pct = f"{min(v.fraction, 1.0):.0%}  " if v.fraction is not None else ""
    bar.add_row(ProgressBar(total=1.0, completed=min(v.fraction or 0.0, 1.0), width=40,
                            pulse=v.fraction is None), pct + when)  # fmt: skip
    return Group(head, bar, _fields(count_fields(v)), _fields(rate_fields(v)))


def done_text(v: BenchView) -> Text:
    """The lines a finished benchmark leaves: its counts, then its rates and latencies."""
    counts = "  ".join(f"{k} {val}" for k, val in count_fields(v)[:3])
    rates = "  ".join(f"{k} {val}" for k, val in rate_fields(v))
    return Text.assemble(("✓ ", "green"), (f"[{v.position}] ", "cyan"), (v.name, "bold"),
                         f"  {fmt_time(v.elapsed_s)}  {counts}\n  {rates}")  # fmt: skip


# --- engine start-up ----------------------------------------------------------


def worker_states(fleet: Fleet, since: float) -> list[tuple[str, str, str]]:
    """(process, state, seconds) for the collector and each worker: starting, ready or failed."""
    now = time.monotonic()
    rows = []
    c = fleet.collector
    if c is not None:
        rows.append((c.name, "ready" if fleet.collector_ready else _state(c), ""))
    for w in fleet.workers.values():
        if w.ready and w.info is not None:
            rows.append((w.name, "ready", fmt_time(w.info.startup_s)))
        else:
            rows.append((w.name, _state(w), fmt_time(now - since)))
    missing = fleet.run.total_workers - len(fleet.workers)
    if missing > 0:
        rows.append((f"{missing} remote worker(s)", "not joined yet", fmt_time(now - since)))
    return rows


def _state(p: Peer) -> str:
    if not p.alive:
        return f"failed ({p.exit_reason or 'exited'})"
    return "ready" if p.ready else "starting"


def render_startup(
    rows: list[tuple[str, str, str]], tails: Mapping[str, Sequence[str]], verbose: bool, keys: bool,
    elapsed_s: float,
) -> RenderableType:  # fmt: skip
    hint = f" · press v to {'hide' if verbose else 'show'} vLLM's log" if keys else ""
    head = Text.assemble(("Starting engines", "bold"), f" · {fmt_time(elapsed_s)}", (hint, "dim"),
                         no_wrap=True, overflow="ellipsis")  # fmt: skip
    table = Table.grid(padding=(0, 2))
    table.add_column(no_wrap=True, overflow="ellipsis")
    table.add_column(no_wrap=True, overflow="ellipsis")
    table.add_column(justify="right", no_wrap=True)
    styles = {"ready": "green", "starting": "yellow"}
    for name, state, secs in rows:
        table.add_row(name, Text(state, style=styles.get(state, "red")), secs)
    parts: list[RenderableType] = [head, table]
    if verbose:
        for name, state, _ in rows:
            lines = tails.get(name)
            if lines and state != "ready":
                parts.append(Text(f"── {name} log", style="dim", no_wrap=True, overflow="ellipsis"))
                parts += [Text(ln, style="dim", no_wrap=True, overflow="ellipsis") for ln in lines]
    return Group(*parts)


def startup_done_line(rows: list[tuple[str, str, str]], elapsed_s: float) -> str:
    workers = [f"{name} {secs}" for name, state, secs in rows if state == "ready" and secs]
    return f"Engines ready in {fmt_time(elapsed_s)}" + (
        f" ({', '.join(workers)})" if workers else ""
    )
