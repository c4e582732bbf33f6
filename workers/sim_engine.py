"""A declared simulation of an engine, for tests and for measuring the harness itself.

It models a continuous-batching scheduler: each step admits waiting requests
(their prefill produces their first token) and decodes one token for every
running request. A step costs::

    prefill_ms + prefill_us_per_token * admitted_prompt_tokens / 1000   (if it admits)
  + decode_ms + decode_us_per_seq * running / 1000                      (if any run)

Steps of a busy engine run back to back on absolute deadlines, so timer
jitter does not accumulate. Its numbers describe the harness, never an engine.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

import msgspec
import numpy as np

from protocol import messages as m
from workers.engine import Outbox
from workers.telemetry import SchedulerView


class SimParams(msgspec.Struct, forbid_unknown_fields=True):
    prefill_ms: float = 0.0
    prefill_us_per_token: float = 0.0
    decode_ms: float = 0.0
    decode_us_per_seq: float = 0.0
    # After each step the worker's event loop is held this long per running request, as
    # vLLM's output processing holds it: for measuring the harness around a busy engine.
    output_us_per_seq: float = 0.0
    max_num_seqs: int = 1024
    startup_s: float = 0.0
    # Every fail_every-th request (by request id) fails instead of running: for testing
    # error accounting and --max-errors. 0 = never.
    fail_every: int = 0
    # Tests only: how long its shutdown takes (an engine that will not stop).
    shutdown_delay_s: float = 0.0
    # Tests only: this long after its start the engine stops and says it is dead, as
    # vLLM's does when its engine core dies. 0 = never.
    die_after_s: float = 0.0


# A step that starts this late after the last one ended is not back to back:
# the worker was starved, and catching up would emit a burst no engine makes.
_RESYNC_NS = 2_000_000


def _hold(ns: float) -> None:
    """Keep the loop (and the GIL, as Python code does) for ``ns``."""
    end = time.perf_counter_ns() + ns
    while time.perf_counter_ns() < end:
        pass


class SimEngine:
    def __init__(
        self,
        worker_id: int,
        params: SimParams,
        outbox: Outbox,
        scheduler: SchedulerView | None = None,
    ) -> None:
        self.worker_id = worker_id
        self.p = params
        self.out = outbox
        self.scheduler = scheduler  # its own view of its batch, for telemetry (no KV cache)
        self._waiting: deque[m.RequestSpec] = deque()
        self._rid = np.zeros(0, np.int64)
        self._left = np.zeros(0, np.int32)
        self._max = np.zeros(0, np.int32)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.dead = False

    async def start(self) -> m.WorkerInfo:
        t0 = time.monotonic()
        if self.p.startup_s:
            # A line in the worker's log, as vLLM writes its own (harness run --verbose shows them).
            print(f"sim engine: simulating {self.p.startup_s:g} s of start-up", flush=True)
            await asyncio.sleep(self.p.startup_s)
        self._task = asyncio.get_running_loop().create_task(self._run())
        if self.p.die_after_s:
            asyncio.get_running_loop().call_later(self.p.die_after_s, self._die)
        return m.WorkerInfo(
            worker_id=self.worker_id,
            device="sim",
            devices=[],
            startup_s=time.monotonic() - t0,
            kv_cache_tokens=None,
            engine_config={k: str(v) for k, v in msgspec.structs.asdict(self.p).items()},
        )

    def add(self, spec: m.RequestSpec) -> None:
        if self.p.fail_every and spec.rid % self.p.fail_every == self.p.fail_every - 1:
            self.out.failed(spec.rid, "sim: injected failure")
            return
        self._waiting.append(spec)
        self._wake.set()

    def abort(self, rids: list[int], reason: str) -> None:
        gone = set(rids)
        kept = deque(s for s in self._waiting if s.rid not in gone)
        for s in self._waiting:
            if s.rid in gone:
                self.out.failed(s.rid, reason, aborted=True)
        self._waiting = kept
        if len(self._rid):
            mask = np.isin(self._rid, np.fromiter(gone, np.int64, len(gone)))
            for rid in self._rid[mask].tolist():
                self.out.failed(rid, reason, aborted=True)
            keep = ~mask
            self._rid, self._left, self._max = self._rid[keep], self._left[keep], self._max[keep]

    def _die(self) -> None:
        self.dead = self._closed = True
        self._wake.set()

    async def shutdown(self) -> None:
        if self.p.shutdown_delay_s:
            await asyncio.sleep(self.p.shutdown_delay_s)
        self._closed = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        p = self.p
        step_end = 0
        while not self._closed:
            if not self._waiting and not len(self._rid):
                self._wake.clear()
                await self._wake.wait()
                step_end = 0  # idle: the next step starts when work arrives, not back to back
                continue
            room = p.max_num_seqs - len(self._rid)
            admitted = [self._waiting.popleft() for _ in range(min(room, len(self._waiting)))]
            cost_ms = 0.0
            if admitted:
                prompt = sum(len(s.prompt) for s in admitted)
                cost_ms += p.prefill_ms + p.prefill_us_per_token * prompt / 1000.0
            if len(self._rid):
                cost_ms += p.decode_ms + p.decode_us_per_seq * len(self._rid) / 1000.0
            if self.scheduler is not None:
                self.scheduler.step(len(self._rid) + len(admitted), len(self._waiting))
            now = time.monotonic_ns()
            start = step_end if 0 <= now - step_end < _RESYNC_NS else now
            step_end = start + int(cost_ms * 1e6)
            delay = (step_end - time.monotonic_ns()) / 1e9
            # Yield even at zero cost, so the worker keeps receiving requests.
            await asyncio.sleep(max(delay, 0.0))
            t = time.monotonic_ns()
            # Requests aborted during the sleep were already removed.
            decoded = self._rid
            self._left -= 1
            if admitted:
                new_rid = np.fromiter((s.rid for s in admitted), np.int64, len(admitted))
                new_left = np.fromiter(
                    (max(s.max_tokens, 1) - 1 for s in admitted), np.int32, len(admitted)
                )
                new_max = new_left + 1
                self._rid = np.concatenate([decoded, new_rid])
                self._left = np.concatenate([self._left, new_left])
                self._max = np.concatenate([self._max, new_max])
                self.out.tokens_batch(self._rid, t)
            elif len(decoded):
                self.out.tokens_batch(decoded, t)
            if p.output_us_per_seq:
                _hold(p.output_us_per_seq * len(self._rid) * 1000)
            done = self._left <= 0
            if done.any():
                for rid, total in zip(
                    self._rid[done].tolist(), self._max[done].tolist(), strict=False
                ):
                    self.out.finished(rid, total, "length")
                keep = ~done
                self._rid, self._left, self._max = (
                    self._rid[keep],
                    self._left[keep],
                    self._max[keep],
                )
