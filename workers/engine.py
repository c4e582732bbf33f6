"""The engine interface and the outbox that batches what engines report."""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Callable
from typing import Protocol

import numpy as np

from protocol import messages as m
from workers.clock import HeadClock

# While an engine reports faster than this (a zero-cost sim, a tiny model at thousands of
# requests/s), its token events leave at most this often: every message costs the worker,
# both ZeroMQ I/O threads and the collector tens of microseconds whatever its size, and on
# a busy host that CPU comes out of the dispatch lag. Events carry their own times (on the
# coordinator's clock from the moment they are recorded), so holding them changes no
# figure; Done, which frees the coordinator's slots, is not held. A worker killed outright
# loses what it held: the requests among them whose Done went ahead are counted failed
# with it, as the ones still in flight are.
EVENTS_EVERY_NS = 1_000_000


class Engine(Protocol):
    """An inference engine driven by one worker.

    Engines report through the :class:`Outbox` they were built with, never by
    return value, so a whole engine step becomes one message.
    """

    async def start(self) -> m.WorkerInfo: ...

    def add(self, spec: m.RequestSpec) -> None: ...

    def abort(self, rids: list[int], reason: str) -> None: ...

    async def shutdown(self) -> None: ...


class Outbox:
    """Buffers token events and request ends into as few messages as keep them prompt.

    Everything an engine reports within one event-loop iteration (one engine
    output step) leaves as one ``Events`` message and one ``Done`` message; an
    ``Events`` that would follow the last one by less than EVENTS_EVERY_NS waits
    until then and takes the steps in between with it.
    Engines stamp times on this host's clock; ``clock`` moves them to the
    coordinator's as they are recorded (by nothing on the coordinator's own host), so
    a change of offset while events are held moves none of them.
    """

    def __init__(
        self,
        worker_id: int,
        send_events: Callable[[m.Events], None],
        send_done: Callable[[m.Done], None],
    ) -> None:
        self.worker_id = worker_id
        self._send_events = send_events
        self._send_done = send_done
        self._seq = 0
        self._rid = array("q")
        self._n = array("i")
        self._t = array("q")
        self._started: list[m.Started] = []
        self._finished: list[m.Finished] = []
        self._failed: list[m.Failed] = []
        self._done: list[int] = []
        self._failed_rids: list[int] = []
        self._due: asyncio.Handle | None = None  # the next Events: this iteration, or later
        self._done_scheduled = False
        self._last_events_ns = 0
        self.events_sent = 0
        self.messages_sent = 0
        self.clock = HeadClock()

    def _touch(self) -> None:
        if self._due is not None:
            return
        loop = asyncio.get_running_loop()
        wait_ns = self._last_events_ns + EVENTS_EVERY_NS - time.monotonic_ns()
        if wait_ns > 0:
            self._due = loop.call_later(wait_ns / 1e9, self._flush_events)
        else:
            self._due = loop.call_soon(self._flush_events)

    def _touch_done(self) -> None:
        if not self._done_scheduled:
            self._done_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_done)

    def _head(self, t_ns: int) -> int:
        return self.clock.to_head(t_ns) if t_ns else 0  # 0 means unknown, and stays so

    def started(self, spec: m.RequestSpec, recv_ns: int) -> None:
        self._started.append(m.started_of(spec, self.clock.to_head(recv_ns)))
        self._touch()

    def tokens(self, rid: int, n: int, t_ns: int) -> None:
        self._rid.append(rid)
        self._n.append(n)
        self._t.append(self.clock.to_head(t_ns))
        self._touch()

    def tokens_batch(self, rids: np.ndarray, t_ns: int) -> None:
        """One token for each of ``rids``, all seen at ``t_ns``."""
        k = len(rids)
        self._rid.frombytes(rids.astype(np.int64, copy=False).tobytes())
        self._n.frombytes(np.ones(k, np.int32).tobytes())
        self._t.frombytes(np.full(k, self.clock.to_head(t_ns), np.int64).tobytes())
        self._touch()

    def finished(
        self,
        rid: int,
        output_tokens: int,
        reason: str,
        engine: m.EngineTimes | None = None,
    ) -> None:
        if engine is not None and not self.clock.identity:
            head = self._head
            e = engine
            engine = m.EngineTimes(
                head(e.queued_ns),
                head(e.scheduled_ns),
                head(e.first_token_ns),
                head(e.last_token_ns),
                e.preemptions,
            )
        end = self.clock.to_head(time.monotonic_ns())
        self._finished.append(m.Finished(rid, output_tokens, end, reason, engine))
        self._done.append(rid)
        self._touch()
        self._touch_done()

    def failed(self, rid: int, error: str, aborted: bool = False) -> None:
        self._failed.append(m.Failed(rid, self.clock.to_head(time.monotonic_ns()), error, aborted))
        self._done.append(rid)
        if not aborted:
            self._failed_rids.append(rid)
        self._touch()
        self._touch_done()

    def flush(self) -> None:
        """Everything buffered, now: at stop, where nothing may wait for the window."""
        self._flush_events()
        self._flush_done()

    def _flush_events(self) -> None:
        if self._due is not None:
            self._due.cancel()  # when called directly: the pending call has nothing to send
            self._due = None
        if self._rid or self._started or self._finished or self._failed:
            self._last_events_ns = time.monotonic_ns()
            self._seq += 1
            self._send_events(
                m.Events(
                    self.worker_id,
                    self._seq,
                    self._rid.tobytes(),
                    self._n.tobytes(),
                    self._t.tobytes(),
                    self._started,
                    self._finished,
                    self._failed,
                )
            )
            self.events_sent += len(self._rid)
            self.messages_sent += 1
            self._rid = array("q")
            self._n = array("i")
            self._t = array("q")
            self._started = []
            self._finished = []
            self._failed = []

    def _flush_done(self) -> None:
        self._done_scheduled = False
        if self._done:
            self._send_done(m.Done(self.worker_id, self._done, self._failed_rids))
            self._done = []
            self._failed_rids = []
