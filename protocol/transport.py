"""Socket set-up shared by every process: one place for options and addresses."""

from __future__ import annotations

import os
import tempfile

import zmq

# Deep queues: a benchmark must never block or drop because a peer is a step behind.
_HWM = 1_000_000


def private_ipc_dir() -> str:
    """A 0700 folder for ipc:// socket files, so other users cannot connect."""
    return tempfile.mkdtemp(prefix="harness-")


def ipc_address(folder: str, name: str) -> str:
    return f"ipc://{os.path.join(folder, name)}"


def split_tcp(addr: str) -> tuple[str, int]:
    """``tcp://HOST:PORT`` as (HOST, PORT); ValueError if it is not one."""
    host, sep, port = addr.removeprefix("tcp://").rpartition(":")
    if not addr.startswith("tcp://") or not sep or not host or not port.isdigit():
        raise ValueError(f"expected tcp://HOST:PORT, got {addr!r}")
    return host, int(port)


def make_socket(ctx: zmq.Context, kind: int, *, identity: bytes | None = None) -> zmq.Socket:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, _HWM)
    sock.setsockopt(zmq.RCVHWM, _HWM)
    # Garbage from a stray peer must not allocate without bound.
    sock.setsockopt(zmq.MAXMSGSIZE, 1 << 30)
    sock.setsockopt(zmq.IPV6, 1)  # tcp:// (multi-node) may name IPv6 hosts; IPv4 still works
    if identity is not None:
        sock.setsockopt(zmq.ROUTING_ID, identity)
    return sock


def worker_identity(worker_id: int) -> bytes:
    return b"w%d" % worker_id


COLLECTOR_IDENTITY = b"collector"
