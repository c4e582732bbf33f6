"""One benchmark at a time: pacing, dispatch and limits.

Every benchmark has one start, ``t0``, announced to the collector before any
request goes out: open-loop schedules are offsets from it, and closed-loop
profiles send their first requests at it. Sends are paced to absolute deadlines:
the poll sleeps to about 1 ms before a deadline, ``time.sleep`` (nanosleep) to
SPIN_NS before it, and a spin that yields the CPU covers the rest.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import psutil

from harness.config import Run
from harness.fleet import Fleet, Peer, RunError
from harness.profiles import BenchPlan
from harness.telemetry import efficiency, process_cost
from protocol import messages as m
from protocol.results import BenchmarkResult

_MS = 1_000_000
BATCH = 512  # most requests put in one Submit
BATCH_TOKENS = 4 << 20  # most prompt tokens in one Submit: long prompts make smaller batches
LEAD_NS = 50 * _MS  # a benchmark starts this far ahead, so its first sends are on time
# The collector accepts request ids only up to a bound the coordinator raises ahead of its
# sends (BeginBench, Extend): at least this many ahead, and as many as were sent so far.
RID_LOOKAHEAD = 65536
RESULT_TIMEOUT_S = 60.0
SHOW_EVERY_S = 0.25  # the live display, at most this often
QUIET_NS = 3 * _MS  # and only when no send is due sooner than this
CANCEL_TIMEOUT_S = 10.0  # for workers to confirm aborts
# The kernel wakes a sleeper up to a few hundred microseconds late (p99 0.2 ms on an idle
# 2-core VM, scripts/bench_timer.py); spinning the last stretch takes that out of the send
# time, at the cost of at most this much CPU per wake-up.
SPIN_NS = 150_000


@dataclass
class LiveBench:
    """A running benchmark, as the coordinator sees it."""

    index: int
    plan: BenchPlan
    t0_ns: int
    planned: int | None  # requests it sends if no limit stops it; None: until --max-seconds
    rid_lo: int
    sent: int = 0
    done: int = 0
    failed: int = 0
    inflight: int = 0
    peak_inflight: int = 0
    last_sched_ns: int = 0
    held: bool = False  # a cap held due requests back on the last pass
    stop_reason: str | None = None
    progress: m.Progress | None = None  # the collector's latest figures
    result: BenchmarkResult | None = None
    snapshot: BenchmarkResult | None = None  # the latest checkpoint of it while it runs

    @property
    def all_sent(self) -> bool:
        return self.planned is not None and self.sent >= self.planned


class BenchLoop:
    def __init__(
        self,
        run: Run,
        fleet: Fleet,
        on_progress: Callable[[LiveBench], None] | None = None,
        on_checkpoint: Callable[[BenchmarkResult], None] | None = None,
    ) -> None:
        self.run = run
        self.fleet = fleet
        fleet.listener = self
        self.on_progress = on_progress
        self.on_checkpoint = on_checkpoint
        self.samples = run.workload.samples
        self.max_tokens = max(s.output_tokens for s in self.samples)
        self.max_prompt = max(len(s.prompt) for s in self.samples)
        self.announced = 0  # the collector accepts request ids below this
        self.cost: dict[str, tuple[list[float], list[float]]] = {}  # process -> (cpu %, rss MB)
        self.next_rid = 0
        self.rr = 0
        self.bench: LiveBench | None = None
        self._deadlines: np.ndarray | None = None

    # --- what the fleet hears ---------------------------------------------------

    def on_done(self, w: Peer, msg: m.Done) -> None:
        b = self.bench
        failed = set(msg.failed)
        for rid in msg.rids:
            spec = w.outstanding.pop(rid, None)
            if spec is None:
                continue
            w.recent_done.append(spec)
            if b is not None and spec.bench == b.index:
                b.done += 1
                b.inflight -= 1
                b.failed += rid in failed

    def on_lost(self, w: Peer, specs: list[m.RequestSpec]) -> None:
        b = self.bench
        for spec in specs:
            if b is not None and spec.bench == b.index:
                b.done += 1
                b.failed += 1
                b.inflight -= 1

    def on_collector(self, msg: m.Progress | m.BenchResult) -> None:
        b = self.bench
        if b is None or msg.bench != b.index:
            return  # about a benchmark that is over
        if isinstance(msg, m.Progress):
            b.progress = msg  # shown at the loop's next quiet moment
        elif msg.partial:
            b.snapshot = msg.result
            if self.on_checkpoint:
                self.on_checkpoint(msg.result)
        else:
            b.result = msg.result

    # --- a benchmark -------------------------------------------------------------

    def run_bench(self, index: int, plan: BenchPlan) -> BenchmarkResult:
        b = self._begin(index, plan)
        self._drive(b)
        return self._finish(b)

    def _begin(self, index: int, plan: BenchPlan) -> LiveBench:
        planned = plan.planned(self.run.limits.max_requests)
        b = LiveBench(index, plan, time.monotonic_ns() + LEAD_NS, planned, self.next_rid)
        self.bench = b
        self._deadlines = plan.offsets_ns + b.t0_ns if plan.offsets_ns is not None else None
        self.announced = self._rid_bound(b)
        self.cost = {}
        self._sample_cost(start=True)
        self.fleet.to_collector(m.BeginBench(index, b.t0_ns, b.rid_lo, self.announced,
                                             self.max_tokens, self.max_prompt, plan.name))  # fmt: skip
        # The collector must know the benchmark before any of its events can reach it:
        # they travel on another socket, so wait for its first Progress as the ack.
        deadline = time.monotonic() + RESULT_TIMEOUT_S
        while b.progress is None:
            if time.monotonic() > deadline:
                raise RunError(f"the collector did not start benchmark {index} in time")
            self.fleet.poll(10)
        return b

    def _drive(self, b: LiveBench) -> None:
        drain_deadline: float | None = None
        cancel_deadline: float | None = None
        last_tick = last_shown = time.monotonic()
        next_checkpoint = last_tick + (self.run.config.checkpoint_s or 0)
        while True:
            now = time.monotonic_ns()
            if b.stop_reason is None:
                b.stop_reason = self._limit_reason(b, now)
            blocked = False
            if b.stop_reason is None and not b.all_sent and now >= b.t0_ns:
                blocked = self._send_due(b, now)
            if b.inflight <= 0 and (b.all_sent or b.stop_reason is not None):
                return
            if b.all_sent and drain_deadline is None:
                drain_deadline = time.monotonic() + self.run.limits.drain_timeout_s
            drained = drain_deadline is not None and time.monotonic() > drain_deadline
            if b.stop_reason is not None or drained:
                # A limit was hit: abort what is still in flight (counted incomplete).
                if cancel_deadline is None:
                    b.stop_reason = b.stop_reason or "drain_timeout"
                    self._cancel_all(b, "aborted: " + b.stop_reason)
                    cancel_deadline = time.monotonic() + CANCEL_TIMEOUT_S
                elif time.monotonic() > cancel_deadline:
                    return  # workers that do not confirm: the collector counts them incomplete
            if time.monotonic() - last_shown > SHOW_EVERY_S and self._quiet_moment(b):
                last_shown = time.monotonic()
                if self.on_progress:
                    self.on_progress(b)
            if time.monotonic() - last_tick > 0.5:
                last_tick = time.monotonic()
                self.fleet.check_hung()
                self._sample_cost()
                if self.run.config.checkpoint_s and last_tick >= next_checkpoint:
                    next_checkpoint = last_tick + self.run.config.checkpoint_s
                    self.fleet.to_collector(m.Snapshot(b.index, self.info(b, running=True)))
            self._wait(b, blocked)

    def _quiet_moment(self, b: LiveBench) -> bool:
        """No send is due soon: time for the display, whose redraw takes about a millisecond."""
        due = self._next_deadline(b)
        return due is None or due - time.monotonic_ns() > QUIET_NS

    def _next_deadline(self, b: LiveBench) -> int | None:
        """When the next send is due, if sending waits on the clock (not on a slot)."""
        if b.stop_reason is not None or b.all_sent:
            return None
        if self._deadlines is not None:
            return int(self._deadlines[b.sent])
        return b.t0_ns if b.sent == 0 else None

    def _wait(self, b: LiveBench, blocked: bool) -> None:
        """Sleep until the next send is due or a message arrives."""
        due = None if blocked else self._next_deadline(b)
        timeout_ms = 100
        if due is not None:
            wait_ns = due - time.monotonic_ns()
            if wait_ns < 2 * _MS:
                # Near a deadline: take what has arrived without waiting, then sleep the
                # rest precisely (nanosleep) rather than to the poll's millisecond.
                self.fleet.poll(0)
                rest = due - time.monotonic_ns()
                if rest > SPIN_NS:
                    time.sleep((rest - SPIN_NS) / 1e9)
                while time.monotonic_ns() < due:  # the last SPIN_NS: no wake-up to wait for
                    # Stay runnable but let a woken thread have this CPU meanwhile (the
                    # I/O thread carrying the last send, a worker's receiver): on a busy
                    # host a bare spin kept them waiting (bench_schedule.py, 10,000/s:
                    # lag p99 1.65 ms spinning, 1.34-1.45 ms yielding).
                    os.sched_yield()
                return
            timeout_ms = min(100, wait_ns // _MS - 1)
        self.fleet.poll(int(timeout_ms))

    def _send_due(self, b: LiveBench, now: int) -> bool:
        """Send what is due; True if a cap held some of it back."""
        cap = b.plan.max_concurrency if b.plan.open_loop else None
        if self._deadlines is not None:
            due = int(np.searchsorted(self._deadlines, now, "right"))
            want = min(due, b.sent + BATCH) - b.sent
            room = want if cap is None else min(want, cap - b.inflight)
            sched = self._deadlines[b.sent : b.sent + max(room, 0)].tolist()
        else:
            assert b.plan.concurrency is not None
            room = b.plan.concurrency - b.inflight
            if b.planned is not None:
                room = min(room, b.planned - b.sent)
            want = room = min(room, BATCH)
            sched = [now] * max(room, 0)
        sent = self._dispatch(b, sched, now if b.held else 0) if sched else 0
        b.held = sent < want
        return b.held

    def _rid_bound(self, b: LiveBench) -> int:
        ahead = b.rid_lo + b.sent + max(RID_LOOKAHEAD, b.sent)
        return ahead if b.planned is None else min(ahead, b.rid_lo + b.planned)

    def _announce(self, b: LiveBench) -> None:
        """Raise the collector's bound on request ids well before the sends reach it."""
        if self.next_rid + RID_LOOKAHEAD // 2 > self.announced:
            bound = self._rid_bound(b)
            if bound > self.announced:
                self.announced = bound
                self.fleet.to_collector(m.Extend(b.index, bound))

    def _pick(self) -> Peer | None:
        live = self.fleet.live_workers()
        cap = self.run.config.dispatch.max_inflight_per_worker
        if cap is not None:
            live = [w for w in live if len(w.outstanding) < cap]
        if not live:
            return None
        if self.run.config.dispatch.policy == "round-robin":
            self.rr += 1
            return live[self.rr % len(live)]
        return min(live, key=lambda w: len(w.outstanding))

    def _dispatch(self, b: LiveBench, sched: list[int], release_ns: int) -> int:
        """Send the next ``len(sched)`` requests, scheduled at ``sched``; returns how many went."""
        batches: dict[int, tuple[Peer, list[m.RequestSpec]]] = {}
        samples = self.samples
        sent = tokens = 0
        for t in sched:
            w = self._pick()
            if w is None or tokens > BATCH_TOKENS:
                break
            s = samples[b.sent % len(samples)]
            tokens += len(s.prompt)
            phase = self._phase(b, b.sent, t)
            spec = m.RequestSpec(
                self.next_rid, s.prompt, s.output_tokens, t, b.index, phase, release_ns
            )
            self.next_rid += 1
            batches.setdefault(id(w), (w, []))[1].append(spec)
            w.outstanding[spec.rid] = spec
            b.sent += 1
            b.inflight += 1
            b.last_sched_ns = t
            sent += 1
        if sent:
            self._announce(b)
        for w, specs in batches.values():
            now = time.monotonic_ns()
            for spec in specs:
                spec.dispatched_ns = now
            self.fleet.send(w, m.Submit(specs))
        b.peak_inflight = max(b.peak_inflight, b.inflight)
        return sent

    # --- limits and the end ------------------------------------------------------

    def _limit_reason(self, b: LiveBench, now: int) -> str | None:
        lim = self.run.limits
        if self.fleet.interrupted:
            return "interrupted"
        if not self.fleet.live_workers():
            return "all workers died"
        if lim.max_seconds is not None and now - b.t0_ns >= lim.max_seconds * 1e9:
            return "max_seconds"
        if lim.max_errors is not None and b.failed:
            if lim.max_errors >= 1 and b.failed >= lim.max_errors:
                return "max_errors"
            # A fraction of what was sent, not of what has ended: fast failures (rejected at
            # once) must not look like a high rate while the successes are still running.
            if lim.max_errors < 1 and b.done >= 10 and b.failed / b.sent > lim.max_errors:
                return "max_errors"
        return None

    def _cancel_all(self, b: LiveBench, reason: str) -> None:
        for w in self.fleet.live_workers():
            mine = sorted(rid for rid, s in w.outstanding.items() if s.bench == b.index)
            if mine:
                self.fleet.send(w, m.Cancel(mine, reason))

    def info(self, b: LiveBench, running: bool = False) -> m.BenchInfo:
        """The benchmark's facts, as the collector needs them."""
        p = b.plan
        done_early = b.stop_reason is not None or running or b.planned is None
        scheduled = b.sent if done_early else (b.planned or b.sent)
        return m.BenchInfo(
            b.index, p.name, p.profile, scheduled, p.rate, p.concurrency, p.max_concurrency
        )

    def _phase(self, b: LiveBench, k: int, sched_ns: int) -> int:
        """Warm-up, measured or cool-down: decided at send, from the benchmark's planned end."""
        lim = self.run.limits
        w, c = lim.warmup, lim.cooldown
        if k < (w.requests or 0) or (
            w.seconds is not None and sched_ns - b.t0_ns < w.seconds * 1e9
        ):
            return m.PHASE_WARMUP
        if c.requests and b.planned is not None and k >= b.planned - c.requests:
            return m.PHASE_COOLDOWN
        if c.seconds is not None and sched_ns >= self._end_ns(b) - c.seconds * 1e9:
            return m.PHASE_COOLDOWN
        return m.PHASE_MEASURED

    def _end_ns(self, b: LiveBench) -> float:
        """When sending is planned to end: the schedule's last send, or --max-seconds."""
        if self._deadlines is not None and len(self._deadlines):
            return float(self._deadlines[-1])
        max_s = self.run.limits.max_seconds
        return b.t0_ns + max_s * 1e9 if max_s is not None else float("inf")

    def snapshot_now(self, timeout_s: float = 3.0) -> BenchmarkResult | None:
        """The running benchmark's statistics so far, straight from the collector (None if it cannot say)."""
        b = self.bench
        if b is None:
            return None
        old, b.snapshot = b.snapshot, None
        try:
            self.fleet.to_collector(m.Snapshot(b.index, self.info(b, running=True)))
            deadline = time.monotonic() + timeout_s
            while b.snapshot is None and time.monotonic() < deadline:
                self.fleet.poll(20)
        except RunError:
            pass
        b.snapshot = b.snapshot or old
        return b.snapshot

    def _sample_cost(self, start: bool = False) -> None:
        """The harness's own CPU and memory: the coordinator, and the collector it started.

        psutil's CPU figure counts from its previous call: ``start`` begins the benchmark's
        count, so even one that ends before the first tick gets a figure at its end.
        """
        for name, proc in self.fleet.own_processes().items():
            try:
                cpu, rss = proc.cpu_percent(None), proc.memory_info().rss / 2**20
            except psutil.Error:
                continue
            if start:
                continue
            samples = self.cost.setdefault(name, ([], []))
            samples[0].append(cpu)
            samples[1].append(rss)

    def _enrich(self, res: BenchmarkResult) -> None:
        """What only the coordinator knows: its own cost, and the GPUs the tokens came from."""
        self._sample_cost()
        res.harness_cost = {
            k: c for k, (cpu, rss) in self.cost.items() if (c := process_cost(cpu, rss))
        }
        self.cost = {}
        res.efficiency = efficiency(self.fleet.gpu_count(), res.throughput.output_tokens,
                                    res.throughput.output_tokens_per_s, res.telemetry)  # fmt: skip

    def _finish(self, b: LiveBench) -> BenchmarkResult:
        self.fleet.to_collector(m.EndBench(b.index, b.sent, self.info(b)))
        deadline = time.monotonic() + RESULT_TIMEOUT_S
        while b.result is None:
            if time.monotonic() > deadline:
                raise RunError(f"the collector sent no result for benchmark {b.index} in time")
            self.fleet.poll(100)
        b.result.stop_reason = b.stop_reason
        self._enrich(b.result)
        if self.on_progress:
            self.on_progress(b)
        self.bench = None
        return b.result
