"""Thousands of hostile frames at every socket of a running head: the run stays exact.

A head with a local and a remote sim worker runs a fixed workload while this test
sends, to the local control socket (also claiming a local worker's identity), the
local events socket, the collector's private link, and the TCP control and events
ports (encrypted and not): random bytes; every message type with hostile values
(extremes, negatives, NaN, infinities, huge strings and lists, foreign ids); and those
messages mutated (flipped bytes, truncated, a type tag that is not UTF-8). The run must
complete with every request and token exact, a valid report, and the collector's
memory bounded.
"""

from __future__ import annotations

import math
import time

import msgspec
import numpy as np
import psutil
import zmq

from harness.report import read_json
from protocol import messages as m
from tests.test_multinode import free_port_pair, head, worker
from tests.test_reliability import children_named

INTS = [0, -1, 1, 7, 2**15, 2**31 - 1, 2**31, 2**53, 2**63 - 1, 2**64 - 1, -(2**63), 70_000, 10**12]
FLOATS = [math.nan, math.inf, -math.inf, -1.0, 0.0, 1e308, 5e-324]
STRS = ["", "x" * 5_000, "\x00", "wrong-token", "w0", "collector", "\u2603" * 50]
N, OUT, RATE = 1500, 6, 100  # 15 s of load: the fuzzing happens while it runs


def hostile(rng: np.random.Generator, t: msgspec.inspect.Type, depth: int = 0) -> object:
    """A value of type ``t``, chosen to break things: extremes, not plausible values."""
    mi = msgspec.inspect
    pick = lambda xs: xs[int(rng.integers(len(xs)))]  # noqa: E731
    if isinstance(t, mi.IntType):
        return pick(INTS)
    if isinstance(t, mi.FloatType):
        return pick(FLOATS)
    if isinstance(t, mi.StrType):
        return pick(STRS)
    if isinstance(t, mi.BoolType):
        return bool(rng.integers(2))
    if isinstance(t, mi.BytesType):
        return pick([b"", b"\x01" * 7, b"\xff" * 8, rng.bytes(int(rng.integers(1, 1024)))])
    if isinstance(t, mi.ListType):
        n = 0 if depth > 2 else int(pick([0, 1, 3, 60]))
        return [hostile(rng, t.item_type, depth + 1) for _ in range(n)]
    if isinstance(t, mi.DictType):
        return {pick(STRS): pick(STRS) for _ in range(int(rng.integers(3)))}
    if isinstance(t, mi.UnionType):
        return hostile(rng, pick(list(t.types)), depth)
    if isinstance(t, mi.NoneType):
        return None
    if isinstance(t, mi.StructType):
        return t.cls(**{f.name: hostile(rng, f.type, depth + 1) for f in t.fields})
    return None


def frames(rng: np.random.Generator, union: object, count: int) -> list[bytes]:
    """Random bytes, hostile messages of every type in ``union``, and mutations of them."""
    enc = msgspec.msgpack.Encoder()
    info = msgspec.inspect.type_info(union)
    types = list(info.types) if isinstance(info, msgspec.inspect.UnionType) else [info]
    out: list[bytes] = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            out.append(rng.bytes(int(rng.integers(1, 300))))
            continue
        msg = enc.encode(hostile(rng, types[int(rng.integers(len(types)))]))
        if kind == 2:  # flip some bytes
            b = bytearray(msg)
            for j in rng.integers(0, len(b), size=max(1, len(b) // 20)):
                b[int(j)] = int(rng.integers(256))
            msg = bytes(b)
        elif kind == 3:  # truncate, or a type tag that is not UTF-8
            msg = (
                msg[: int(rng.integers(1, len(msg) + 1))]
                if rng.integers(2)
                else b"\x92\xa3\xff\xfe\xfd" + msg
            )
        out.append(msg)
    return out


def _socket(
    ctx: zmq.Context,
    kind: int,
    addr: str,
    server_key: str | None = None,
    ident: bytes | None = None,
):
    s = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, 100_000)
    if ident is not None:
        s.setsockopt(zmq.ROUTING_ID, ident)
    if server_key is not None:
        public, secret = zmq.curve_keypair()
        s.setsockopt(zmq.CURVE_SERVERKEY, server_key.encode())
        s.setsockopt(zmq.CURVE_PUBLICKEY, public)
        s.setsockopt(zmq.CURVE_SECRETKEY, secret)
    s.connect(addr)
    return s


UNIONS = [
    m.WorkerToCoordinator,
    m.WorkerToCoordinator,
    m.Events,
    m.CollectorToCoordinator,
    m.WorkerToCoordinator,
    m.WorkerToCoordinator,
    m.Events,
    m.Events,
]  # as the targets below
ROUNDS = 10


def test_hostile_frames_at_every_socket_leave_the_run_exact(tmp_path):
    rng = np.random.default_rng(13)
    # Made before the run, so that sending them takes a fraction of the benchmark's time.
    batches = [[frames(rng, u, 60) for u in UNIONS] for _ in range(ROUNDS)]
    port = free_port_pair()
    h = head(tmp_path, port, 1, dict(workers=1, sim="decode_ms=2", profile="constant", rate=RATE, max_requests=N,
                                     data=f"prompt_tokens=8,output_tokens={OUT}"))  # fmt: skip
    remote = worker(h)
    cfg = m.read_config(
        children_named(h.proc.pid, "harness-worker-0")[0].cmdline()[-1], m.WorkerConfig
    )
    collector = children_named(h.proc.pid, "harness-collector")[0]
    folder = cfg.coordinator_addr.removeprefix("ipc://").rsplit("/", 1)[0]
    ctx = zmq.Context()
    rss = [collector.memory_info().rss]
    sent = 0
    try:
        targets = [
            _socket(ctx, zmq.DEALER, cfg.coordinator_addr),
            _socket(ctx, zmq.DEALER, cfg.coordinator_addr, ident=b"w0"),
            _socket(ctx, zmq.PUSH, cfg.collector_addr),
            _socket(ctx, zmq.DEALER, f"ipc://{folder}/collector"),
            _socket(ctx, zmq.DEALER, f"tcp://127.0.0.1:{port}", h.key),
            _socket(ctx, zmq.DEALER, f"tcp://127.0.0.1:{port}"),
            _socket(ctx, zmq.PUSH, f"tcp://127.0.0.1:{port + 1}", h.key),
            _socket(ctx, zmq.PUSH, f"tcp://127.0.0.1:{port + 1}"),
        ]
        for batch in batches:  # rounds while the benchmark runs
            for sock, datas in zip(targets, batch, strict=True):
                for data in datas:
                    sent += 1  # offered: a socket that cannot connect refuses it at once
                    try:
                        sock.send(data, zmq.NOBLOCK)
                    except zmq.Again:
                        pass
            try:
                rss.append(collector.memory_info().rss)
            except psutil.NoSuchProcess:
                break
            time.sleep(0.25)
        running = h.proc.poll() is None
        _, err = h.communicate(timeout=180)
        remote_code = remote.wait(timeout=30)
    finally:
        ctx.destroy(0)
        if remote.poll() is None:
            remote.kill()
    assert sent >= 3000 and running, err  # all of it reached a head that was still running
    assert h.returncode == 0, err
    assert remote_code == 0
    rep = read_json(tmp_path / "out.json")  # a valid report
    b = rep.benchmarks[0]
    assert (b.requests.completed, b.requests.failed, b.requests.incomplete) == (N, 0, 0)
    assert b.output_tokens.min == b.output_tokens.max == OUT
    assert sum(w.output_tokens for w in b.workers) == N * OUT
    assert b.itl_ms.count == N * (OUT - 1) and b.ttft_ms.count == N
    assert sorted(w.worker_id for w in b.workers) == [0, 1]
    assert sum(rep.rejected_messages.values()) > 0 and b.collector.rejected > 0
    assert max(rss) - rss[0] < 100 * 2**20, [r >> 20 for r in rss]
