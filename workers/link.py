"""The worker's link to the coordinator, on a thread of its own.

The engine's event loop is busy for milliseconds at a time (vLLM's output processing
runs on it, for every step, and grows with the batch), so a request that waited for the
loop to read it would be stamped late, and the dispatch lag would measure the engine's
output processing instead of the harness. Here a thread owns the DEALER: it takes each
message off the socket the moment it arrives, stamps it, decodes it and hands it to the
loop. ZeroMQ sockets are not thread-safe, so what the loop sends goes to the thread
through an inproc pipe, and only the thread touches the DEALER.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from protocol import codec
from protocol import messages as m

# A thread that wants the GIL waits up to the interpreter's switch interval (5 ms by
# default) while the loop runs Python: the receiving thread would then stamp up to 5 ms
# late. At 0.2 ms the loop gives the GIL up sooner, and only while the thread wants it.
SWITCH_INTERVAL_S = 0.0002
JOIN_TIMEOUT_S = 2.0
# Messages handed to the loop and not yet taken: past this the thread stops reading, and
# the socket's own bounded queue pushes back on the coordinator, as when the loop read it
# (else a loop that cannot keep up would buffer without bound, decoded, in Python).
MAX_PENDING = 1000
PAUSED_POLL_MS = 1  # while paused: how often it looks whether the loop has caught up
LINGER_MS = 500  # for what the thread passed on last (a Done, a StartupFailed) to leave
EXIT_LINK_FAILED = 7  # the thread failed: a worker that cannot hear the coordinator exits
_STOP = b""  # on the inproc pipe: the thread ends (no message encodes to zero bytes)
_ids = itertools.count()

# Messages taken off the socket, each with when (time.monotonic_ns), and how many were bad.
OnMessages = Callable[[list[tuple[m.CoordinatorToWorker, int]], int], None]


class Link:
    """The DEALER to the coordinator, read and written by one thread.

    ``on_messages`` runs on the loop, once for all that arrived together (one wake-up of
    the loop, not one per message); ``send`` is for the loop's thread only.
    """

    def __init__(
        self,
        ctx: zmq.Context[Any],
        dealer: zmq.Socket[Any],
        on_messages: OnMessages,
    ) -> None:
        self.dealer = dealer
        self.on_messages = on_messages
        self.down = codec.to_worker()
        addr = f"inproc://harness-link-{next(_ids)}"
        self._rx = ctx.socket(zmq.PAIR)  # the thread's end
        self._rx.bind(addr)
        self._tx = ctx.socket(zmq.PAIR)  # the loop's end
        self._tx.connect(addr)
        self._thread: threading.Thread | None = None
        self.handed = 0  # written by the thread only
        self.taken = 0  # written by the loop only

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self._thread = threading.Thread(
            target=self._run, args=(loop,), name="harness-link", daemon=True
        )
        self._thread.start()

    def send(self, data: bytes) -> None:
        self._tx.send(data, copy=False)

    def close(self) -> bool:
        """Stop the thread (after it has passed on everything sent before), then the
        sockets; False if the thread would not stop (its sockets are left open)."""
        if self._thread is not None and self._thread.is_alive():
            try:
                self._tx.send(_STOP, zmq.NOBLOCK)
            except zmq.Again:  # its pipe is full: the thread is stuck sending
                return False
            self._thread.join(JOIN_TIMEOUT_S)
            if self._thread.is_alive():
                return False
        self._tx.close(0)
        self._rx.close(0)
        self.dealer.close(LINGER_MS)
        return True

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            self._serve(loop)
        except Exception as e:  # noqa: BLE001 - one line, then out: never a silent deaf worker
            print(f"harness-link: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            os._exit(EXIT_LINK_FAILED)

    def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        both = zmq.Poller()
        both.register(self.dealer, zmq.POLLIN)
        both.register(self._rx, zmq.POLLIN)
        sends = zmq.Poller()
        sends.register(self._rx, zmq.POLLIN)
        while True:
            if self.handed - self.taken < MAX_PENDING:
                ready = dict(both.poll())
            else:  # the loop is behind: only its sends, until it catches up
                ready = dict(sends.poll(PAUSED_POLL_MS))
            if self.dealer in ready:
                self._receive(loop)
            if self._rx in ready and not self._forward():
                return

    def _receive(self, loop: asyncio.AbstractEventLoop) -> None:
        """Everything waiting on the DEALER, each stamped as it is taken off."""
        got: list[tuple[m.CoordinatorToWorker, int]] = []
        bad = 0
        room = MAX_PENDING - (self.handed - self.taken)
        while len(got) + bad < room:
            try:
                data = self.dealer.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            now = time.monotonic_ns()
            try:
                got.append((self.down.decode(data.buffer), now))
            except codec.DecodeError:
                bad += 1
        self.handed += len(got) + bad
        try:
            loop.call_soon_threadsafe(self._deliver, got, bad)
        except RuntimeError:  # the loop has closed: nobody is left to hand them to
            pass

    def _deliver(self, got: list[tuple[m.CoordinatorToWorker, int]], bad: int) -> None:
        """On the loop: the burst, then its count as taken (the thread may read again)."""
        try:
            self.on_messages(got, bad)
        finally:
            self.taken += len(got) + bad

    def _forward(self) -> bool:
        """What the loop sent, to the coordinator; False once the loop says stop."""
        while True:
            try:
                data = self._rx.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return True
            if len(data) == 0:
                return False
            self.dealer.send(data, copy=False)
