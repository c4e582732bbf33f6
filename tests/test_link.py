"""The worker's receiving thread (workers/link.py), in process: bounded, ordered, stamped."""

from __future__ import annotations

import asyncio
import time

import zmq

from protocol import codec
from protocol import messages as m
from workers.link import MAX_PENDING, Link


def _pair(ctx: zmq.Context) -> tuple[zmq.Socket, zmq.Socket]:
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a full pipe waits, never a silent drop
    router.setsockopt(zmq.SNDTIMEO, 10_000)  # while its I/O thread moves them on (CI once
    # filled the pipe faster than that, and a non-blocking send failed)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.ROUTING_ID, b"w")
    dealer.connect(f"tcp://127.0.0.1:{port}")
    return router, dealer


def _wait(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_loop_that_falls_behind_holds_the_rest_in_the_socket_and_gets_all_in_order():
    """The thread stops reading once MAX_PENDING wait for the loop (no unbounded buffer in
    Python); when the loop catches up, every message arrives once, in order, stamped."""
    ctx = zmq.Context()
    router, dealer = _pair(ctx)
    loop = asyncio.new_event_loop()
    got: list[tuple[m.CoordinatorToWorker, int]] = []
    bad: list[int] = []
    link = Link(ctx, dealer, lambda msgs, b: (got.extend(msgs), bad.append(b)))
    try:
        link.start(loop)
        link.send(codec.to_coordinator().encode(m.Heartbeat(0, 1, 0)))  # the loop's send
        _wait(lambda: router.poll(0))
        ident, _ = router.recv_multipart()  # it went out through the thread
        enc = codec.to_worker()
        n = MAX_PENDING + 500  # the rest fits the socket's own queue (1000)
        for i in range(n):
            router.send_multipart([ident, enc.encode(m.Cancel([i], "x"))])
        router.send_multipart([ident, b"\xff not a message"])
        _wait(lambda: link.handed >= MAX_PENDING)
        time.sleep(0.2)  # the loop has not run: the thread must not read on
        assert link.handed == MAX_PENDING and got == []
        deadline = time.monotonic() + 20
        while len(got) < n and time.monotonic() < deadline:
            loop.run_until_complete(asyncio.sleep(0.01))
        assert [msg.rids[0] for msg, _ in got] == list(range(n))
        stamps = [t for _, t in got]
        assert stamps == sorted(stamps) and stamps[0] > 0
        while sum(bad) < 1 and time.monotonic() < deadline:
            loop.run_until_complete(asyncio.sleep(0.01))
        assert sum(bad) == 1
    finally:
        assert link.close()
        router.close(0)
        loop.close()
        ctx.term()
