"""This machine's floor for pacing: how late a process wakes for an absolute deadline.

The harness's dispatch lag cannot beat the operating system's wake-up latency. This
measures it with nothing of the harness: a thread sleeping to deadlines 1 ms apart
(optionally spinning the last stretch), and an asyncio loop's ``call_at``. Compare its
p99 with ``scripts/bench_schedule.py``'s pacing lag before reading the latter as the
harness's cost.

Then the floor for delivery: how long a process blocked on a pipe takes to run after
another process writes to it, and a bare ZeroMQ hop as the harness makes it (ROUTER to a
DEALER read by a thread, over ipc, sent at the period): a request crosses three wake-ups
before a worker stamps it (the coordinator's ZeroMQ I/O thread, the worker's, its
receiving thread). Compare with ``bench_schedule.py``'s delivery.

    python scripts/bench_timer.py [--n 3000] [--period-us 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import zmq
from _runs import ROOT, machine, write


def sleeper(n: int, period_ns: int, spin_ns: int) -> np.ndarray:
    late = np.empty(n, np.int64)
    t0 = time.monotonic_ns() + 10_000_000
    for i in range(n):
        due = t0 + i * period_ns
        wait = due - time.monotonic_ns() - spin_ns
        if wait > 0:
            time.sleep(wait / 1e9)
        while time.monotonic_ns() < due:  # the spin: at most spin_ns
            pass
        late[i] = time.monotonic_ns() - due
    return late


def _sleep_until_told(period_ns: int, conn: Connection, theirs: Connection, parent: int) -> None:
    theirs.close()  # the parent's end: once the parent is gone, this end reads end of file
    due, late = [], []
    t = time.monotonic_ns() + period_ns
    # The parent's word to stop (a zero-timeout select), or its end: never outlive it.
    while not conn.poll() and os.getppid() == parent:
        wait = t - time.monotonic_ns()
        if wait > 0:
            time.sleep(wait / 1e9)
        due.append(t)
        late.append(time.monotonic_ns() - t)
        t += period_ns
    try:
        conn.send((np.array(due, np.int64), np.array(late, np.int64)))
    except OSError:
        pass  # the parent is gone: nobody to tell


class Beside:
    """A bare process sleeping to deadlines ``period_ns`` apart (nanosleep, no spin) for as
    long as the ``with`` lasts: how late this machine met a sleeper's deadlines while
    something else (a harness run) loaded it. ``lateness(lo, hi)``: of the deadlines in
    [lo, hi) ns; none if the sleeper was lost (said on stderr)."""

    def __init__(self, period_ns: int) -> None:
        self.period_ns = period_ns
        self.due = self.late = np.zeros(0, np.int64)

    def __enter__(self) -> Beside:
        self._conn, child = multiprocessing.Pipe()
        self._proc = multiprocessing.get_context("fork").Process(
            target=_sleep_until_told,
            args=(self.period_ns, child, self._conn, os.getpid()),
            daemon=True,
        )
        self._proc.start()
        child.close()
        return self

    def __exit__(self, *exc: object) -> None:
        try:  # never in the way of an exception already on its way out
            self._conn.send(None)
            if self._conn.poll(30):
                self.due, self.late = self._conn.recv()
            else:
                print("bench_timer: the sleeper beside sent nothing in 30 s", file=sys.stderr)
        except (OSError, EOFError) as e:
            print(f"bench_timer: the sleeper beside was lost ({e!r})", file=sys.stderr)
        finally:
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()
            self._conn.close()

    def lateness(self, lo_ns: int, hi_ns: int) -> np.ndarray:
        return self.late[(self.due >= lo_ns) & (self.due < hi_ns)]


def loop_timer(n: int, period_ns: int) -> np.ndarray:
    late: list[int] = []

    async def go() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        t0 = time.monotonic_ns() + 10_000_000

        def fire(due: int) -> None:
            late.append(time.monotonic_ns() - due)
            if len(late) == n:
                done.set_result(None)

        for i in range(n):
            due = t0 + i * period_ns
            loop.call_at(due / 1e9, fire, due)  # asyncio's clock is time.monotonic()
        await done

    asyncio.run(go())
    return np.array(late, np.int64)


def _pipe_reader(fd: int, n: int, out: int) -> None:
    late = np.empty(n, np.int64)
    for i in range(n):
        sent = int.from_bytes(os.read(fd, 8), "little")
        late[i] = time.monotonic_ns() - sent
    os.write(out, late.tobytes())


def pipe_wakeup(n: int, period_ns: int) -> np.ndarray:
    """Another process, blocked reading a pipe: from the write to its wake-up."""
    r, w = os.pipe()
    back_r, back_w = os.pipe()
    ctx = multiprocessing.get_context("fork")
    reader = ctx.Process(target=_pipe_reader, args=(r, n, back_w))
    reader.start()
    os.close(r)
    os.close(back_w)  # the child's copies remain: its exit is this end's end of file
    time.sleep(0.2)
    t0 = time.monotonic_ns()
    for i in range(n):
        due = t0 + i * period_ns
        while time.monotonic_ns() < due:  # the writer keeps its CPU: only the reader sleeps
            pass
        os.write(w, time.monotonic_ns().to_bytes(8, "little"))
    os.close(w)
    data = _read_all(back_r, 8 * n)
    reader.join()
    return np.frombuffer(data, np.int64)


def _zmq_receiver(addr: str, n: int, out: int) -> None:
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.RCVHWM, 0)  # no limit: a stalled reader must not lose a message
    dealer.connect(addr)
    dealer.send(b"ready")
    late: list[int] = []

    def read() -> None:  # a thread blocked in a poll, as the worker's receiving thread is
        poller = zmq.Poller()
        poller.register(dealer, zmq.POLLIN)
        while len(late) < n:
            poller.poll()
            while len(late) < n:
                try:
                    sent = dealer.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                late.append(time.monotonic_ns() - int.from_bytes(sent[:8], "little"))

    thread = threading.Thread(target=read)
    thread.start()
    thread.join()
    os.write(out, np.array(late, np.int64).tobytes())


def zmq_hop(n: int, period_ns: int, tmp: Path) -> np.ndarray:
    """From a ROUTER's send to the receiving thread of a DEALER in another process: the
    sender spins between sends (it never sleeps), so only the receiver's wake-up counts."""
    return paced_hop(np.arange(n, dtype=np.int64) * period_ns, period_ns + 1, tmp)["delivery"]


def paced_hop(deadlines_ns: np.ndarray, spin_ns: int, tmp: Path) -> dict[str, np.ndarray]:
    """The harness's dispatch path with nothing of the harness: its floor at one schedule.

    A sender paces to each absolute deadline as the coordinator does (sleep, then spin the
    last ``spin_ns``) and sends through a bare ZeroMQ hop to a DEALER's receiving thread in
    another process. Returns, per send, ``pacing`` (send - due), ``delivery`` (receipt -
    send) and ``lag`` (receipt - due), in ns: what bench_schedule.py splits the same way.
    """
    addr = f"ipc://{tmp}/paced"
    n = len(deadlines_ns)
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    # A ROUTER drops what finds its peer's queue full, and a receiver that waits for a
    # lost message waits for ever: no limit on the queue, however long the reader stalls.
    router.setsockopt(zmq.SNDHWM, 0)
    router.bind(addr)
    back_r, back_w = os.pipe()
    reader = multiprocessing.get_context("fork").Process(
        target=_zmq_receiver, args=(addr, n, back_w)
    )
    reader.start()
    os.close(back_w)  # the child's copy remains: its exit is this end's end of file
    peer, _ = router.recv_multipart()
    due = deadlines_ns - deadlines_ns[0] + time.monotonic_ns() + 10_000_000
    sent = np.empty(n, np.int64)
    for i, t in enumerate(due.tolist()):
        wait = t - time.monotonic_ns() - spin_ns
        if wait > 0:
            time.sleep(wait / 1e9)
        while time.monotonic_ns() < t:
            pass
        now = sent[i] = time.monotonic_ns()
        router.send_multipart([peer, now.to_bytes(8, "little") + bytes(56)])
    delivery = np.frombuffer(_read_all(back_r, 8 * n), np.int64)
    reader.join()
    router.close(0)
    ctx.term()
    pacing = sent - due
    return {"pacing": pacing, "delivery": delivery, "lag": pacing + delivery}


def _read_all(fd: int, size: int) -> bytes:
    """``size`` bytes from a child's pipe, then the pipe closed; an error if it ended early."""
    data = b""
    try:
        while len(data) < size:
            chunk = os.read(fd, size - len(data))
            if not chunk:
                raise RuntimeError(f"the measuring process ended after {len(data)} of {size} bytes")
            data += chunk
    finally:
        os.close(fd)
    return data


def summary(late_ns: np.ndarray) -> dict[str, float]:
    ms = late_ns / 1e6
    return {f"p{q}_ms": round(float(np.percentile(ms, q)), 4) for q in (50, 90, 99, 99.9)} | {
        "max_ms": round(float(ms.max()), 4)
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--period-us", type=int, default=1000)
    ap.add_argument("--output", type=Path, default=ROOT / "results" / "bench_timer.json")
    a = ap.parse_args()
    period = a.period_us * 1000
    rows = {
        "sleep": summary(sleeper(a.n, period, 0)),
        "sleep, 200 us spin": summary(sleeper(a.n, period, 200_000)),
        "asyncio call_at": summary(loop_timer(a.n, period)),
        "pipe, another process": summary(pipe_wakeup(a.n, period)),
    }
    with tempfile.TemporaryDirectory() as tmp:
        rows["zeromq hop, thread"] = summary(zmq_hop(a.n, period, Path(tmp)))
    for name, s in rows.items():
        print(f"{name:>22}: lateness p50 {s['p50_ms']:.3f} ms, p99 {s['p99_ms']:.3f} ms, "
              f"p99.9 {s['p99.9_ms']:.3f} ms, max {s['max_ms']:.3f} ms")  # fmt: skip
    write(a.output, {"machine": machine(), "period_us": a.period_us, "n": a.n, "lateness": rows,
                     "note": "pipe: from the write to the reading process's wake-up; zeromq hop: "
                     "from a ROUTER's send to the stamp of a DEALER's receiving thread, ipc"})  # fmt: skip


if __name__ == "__main__":
    main()
