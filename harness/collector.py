"""The collector process: token events in, statistics out.

``python -m harness.collector harness-collector CONFIG_JSON``. It PULLs every
worker's ``Events``, keeps one row of columns per request (about 90 bytes)
plus one float64 per measured output token for the pooled ITL, and computes
a benchmark's statistics when the coordinator says it has ended. Memory per
request is bounded; memory per token is 8 bytes for measured tokens only.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter

import msgspec
import numpy as np
import zmq

from harness import stats
from harness.schema import BenchmarkResult, CollectorStats
from protocol import codec
from protocol import messages as m
from protocol.transport import COLLECTOR_IDENTITY, make_socket

# After the coordinator ends a benchmark, events still in flight get this long to arrive.
DRAIN_TIMEOUT_S = 10.0
PROGRESS_EVERY_S = 0.25
_MAX_ERROR_KINDS = 50
_RID_SLACK = 1 << 20
COLLECTOR_NICE = 10


class CollectorConfig(msgspec.Struct):
    coordinator_addr: str
    events_addr: str
    token: str
    slo: dict[str, float] = {}
    parent_pid: int = 0
    events_tcp: str | None = None  # multi-node: remote workers push here too


_COLS: dict[str, type] = {
    "bench": np.int32,
    "phase": np.int8,
    "status": np.int8,
    "worker": np.int16,
    "sched": np.int64,
    "recv": np.int64,
    "first": np.int64,
    "last": np.int64,
    "end": np.int64,
    "prompt_len": np.int32,
    "n_out": np.int32,
    "eng_queued": np.int64,
    "eng_sched": np.int64,
    "eng_first": np.int64,
}


class Table:
    """Per-request columns indexed by request id (the coordinator numbers them densely from 0)."""

    def __init__(self, capacity: int = 1024) -> None:
        self.cap = capacity
        self.c = {k: np.zeros(capacity, t) for k, t in _COLS.items()}
        self.c["bench"][:] = -1

    def plausible(self, rid_max: int) -> bool:
        """Request ids are dense: one far past the table is foreign, not a reason to allocate."""
        return rid_max < self.cap + _RID_SLACK

    def ensure(self, rid_max: int) -> None:
        if rid_max < self.cap:
            return
        new = max(self.cap * 2, rid_max + 1)
        for k, col in self.c.items():
            grown = np.zeros(new, col.dtype)
            if k == "bench":
                grown[:] = -1
            grown[: self.cap] = col
            self.c[k] = grown
        self.cap = new


class BenchState:
    def __init__(self, bench: int, t0_ns: int) -> None:
        self.bench = bench
        self.t0_ns = t0_ns
        self.itl: list[np.ndarray] = []
        self.token_bins = np.zeros(0, np.int64)
        self.errors: Counter[str] = Counter()
        self.ended = 0
        self.completed = 0
        self.failed = 0
        self.out_tokens = 0
        self.ttft_ns: list[int] = []
        self.end_msg: m.EndBench | None = None
        self.end_deadline = 0.0
        self.messages = 0
        self.entries = 0
        self.busy_ns = 0

    def add_tokens(self, t_ns: np.ndarray, n: np.ndarray) -> None:
        idx = (t_ns - self.t0_ns) // 1_000_000_000
        idx = np.maximum(idx, 0)
        hi = int(idx.max()) + 1
        if hi > len(self.token_bins):
            self.token_bins = np.concatenate(
                [self.token_bins, np.zeros(max(hi - len(self.token_bins), 16), np.int64)]
            )
        np.add.at(self.token_bins, idx, n)


class Collector:
    def __init__(self, cfg: CollectorConfig) -> None:
        self.cfg = cfg
        self.table = Table()
        self.benches: dict[int, BenchState] = {}
        self.bad_messages = 0
        self.ev_codec = codec.events()
        self.up = codec.to_coordinator()
        self.ctl = codec.to_collector_control()

    # --- ingest --------------------------------------------------------------

    def _start(self, started: list[m.Started], worker_id: int, only_new: bool = False) -> bool:
        t = self.table
        c = t.c
        top = max(s.rid for s in started)
        if min(s.rid for s in started) < 0 or not t.plausible(top):
            self.bad_messages += 1
            return False
        t.ensure(top)
        for s in started:
            r = s.rid
            if only_new and c["bench"][r] != -1:
                continue
            c["bench"][r] = s.bench
            c["phase"][r] = s.phase
            c["worker"][r] = worker_id
            c["sched"][r] = s.sched_ns
            c["recv"][r] = s.recv_ns
            c["prompt_len"][r] = s.prompt_len
        return True

    def lost(self, msg: m.Lost) -> None:
        if msg.requests and self._start(msg.requests, msg.worker_id, only_new=True):
            for s in msg.requests:
                self._end(s.rid, msg.end_ns, stats.FAILED, msg.reason)

    def ingest(self, ev: m.Events) -> None:
        t = self.table
        c = t.c
        if ev.started and not self._start(ev.started, ev.worker_id):
            return
        if ev.tok_rid:
            if len(ev.tok_rid) % 8 or len(ev.tok_n) % 4 or len(ev.tok_t_ns) % 8:
                self.bad_messages += 1
                return
            rid = np.frombuffer(ev.tok_rid, np.int64)
            n = np.frombuffer(ev.tok_n, np.int32)
            tt = np.frombuffer(ev.tok_t_ns, np.int64)
            if (
                len(rid) != len(n)
                or len(rid) != len(tt)
                or rid.min() < 0
                or not t.plausible(int(rid.max()))
            ):
                self.bad_messages += 1
            else:
                t.ensure(int(rid.max()))
                self._tokens(rid, n, tt)
        for f in ev.finished:
            self._end(f.rid, f.end_ns, stats.COMPLETED)
            if f.engine is not None and f.rid < t.cap:
                c["eng_queued"][f.rid] = f.engine.queued_ns
                c["eng_sched"][f.rid] = f.engine.scheduled_ns
                c["eng_first"][f.rid] = f.engine.first_token_ns
        for f in ev.failed:
            self._end(f.rid, f.end_ns, stats.ABORTED if f.aborted else stats.FAILED, f.error)

    def _tokens(self, rid: np.ndarray, n: np.ndarray, tt: np.ndarray) -> None:
        c = self.table.c
        if len(np.unique(rid)) != len(rid):
            order = np.lexsort((tt, rid))
            rid, n, tt = rid[order], n[order], tt[order]
            dup = np.zeros(len(rid), bool)
            dup[1:] = rid[1:] == rid[:-1]
        else:
            dup = None
        prev = c["last"][rid]
        if dup is not None:
            prev[dup] = tt[np.flatnonzero(dup) - 1]
        first = prev == 0
        if first.any():
            c["first"][rid[first]] = tt[first]
        if dup is None:
            c["last"][rid] = tt
            c["n_out"][rid] += n
        else:
            tail = np.ones(len(rid), bool)
            tail[:-1] = rid[1:] != rid[:-1]
            c["last"][rid[tail]] = tt[tail]
            np.add.at(c["n_out"], rid, n)
        bench = c["bench"][rid]
        measured = c["phase"][rid] == m.PHASE_MEASURED
        for b in np.unique(bench).tolist():
            st = self.benches.get(b)
            if st is None:
                continue
            mine = bench == b
            st.add_tokens(tt[mine], n[mine])
            st.out_tokens += int(n[mine].sum())
            sel = mine & measured
            if sel.any():
                st.itl.append(stats.inter_token_gaps(tt[sel], n[sel], prev[sel]))
            fsel = mine & first & measured
            if fsel.any():
                st.ttft_ns.extend((tt[fsel] - c["sched"][rid[fsel]]).tolist())

    def _end(self, rid: int, end_ns: int, status: int, error: str | None = None) -> None:
        c = self.table.c
        if rid < 0 or rid >= self.table.cap or c["status"][rid] != stats.PENDING:
            self.bad_messages += 1
            return
        c["status"][rid] = status
        c["end"][rid] = end_ns
        st = self.benches.get(int(c["bench"][rid]))
        if st is None:
            return
        st.ended += 1
        if status == stats.COMPLETED:
            st.completed += 1
        elif status == stats.FAILED:
            st.failed += 1
        if error is not None and status == stats.FAILED and c["phase"][rid] == m.PHASE_MEASURED:
            key = error if (error in st.errors or len(st.errors) < _MAX_ERROR_KINDS) else "other"
            st.errors[key] += 1

    # --- results -------------------------------------------------------------

    def result(self, st: BenchState, end: m.EndBench | m.Snapshot) -> BenchmarkResult:
        c = self.table.c
        sel = np.flatnonzero(c["bench"] == st.bench)
        cols = {k: c[k][sel] for k in stats.Requests.__dataclass_fields__ if k != "rid"}
        req = stats.Requests(rid=sel, **cols)
        meta = msgspec.msgpack.decode(end.meta, type=stats.BenchMeta)
        itl = np.concatenate(st.itl) if st.itl else np.zeros(0)
        res = stats.benchmark_result(
            meta, req, itl, st.token_bins, st.t0_ns, self.cfg.slo or None, dict(st.errors)
        )
        res.collector = CollectorStats(st.messages, st.entries, st.busy_ns / 1e9, self.bad_messages)
        return res

    def progress(self, st: BenchState) -> m.Progress:
        ttft = float(np.median(st.ttft_ns)) / 1e6 if st.ttft_ns else None
        if len(st.ttft_ns) > 100_000:  # keep the live median cheap on long runs
            st.ttft_ns = st.ttft_ns[-50_000:]
        return m.Progress(
            st.bench, st.completed, st.failed, st.out_tokens, ttft, time.monotonic_ns()
        )

    # --- loop ----------------------------------------------------------------

    def run(self) -> int:
        ctx = zmq.Context()
        pull = make_socket(ctx, zmq.PULL)
        pull.bind(self.cfg.events_addr)
        if self.cfg.events_tcp:
            pull.bind(self.cfg.events_tcp)
        dealer = make_socket(ctx, zmq.DEALER, identity=COLLECTOR_IDENTITY)
        dealer.connect(self.cfg.coordinator_addr)
        dealer.send(
            self.up.encode(
                m.Hello("collector", -1, os.getpid(), "", m.PROTOCOL_VERSION, self.cfg.token)
            )
        )
        poller = zmq.Poller()
        poller.register(pull, zmq.POLLIN)
        poller.register(dealer, zmq.POLLIN)
        next_progress = time.monotonic()
        active: BenchState | None = None
        try:
            while True:
                ready = dict(poller.poll(timeout=100))
                if pull in ready:
                    for _ in range(1000):
                        try:
                            data = pull.recv(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        try:
                            ev = self.ev_codec.decode(data.buffer)
                        except codec.DecodeError:
                            self.bad_messages += 1
                            continue
                        t0 = time.perf_counter_ns()
                        self.ingest(ev)
                        if active is not None:
                            active.messages += 1
                            active.entries += len(ev.tok_rid) // 8
                            active.busy_ns += time.perf_counter_ns() - t0
                if dealer in ready:
                    while True:
                        try:
                            data = dealer.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        try:
                            msg = self.ctl.decode(data)
                        except codec.DecodeError:
                            self.bad_messages += 1
                            continue
                        if isinstance(msg, m.BeginBench):
                            active = BenchState(msg.bench, msg.t0_ns)
                            self.benches[msg.bench] = active
                            dealer.send(self.up.encode(self.progress(active)))  # the ack
                        elif isinstance(msg, m.EndBench):
                            st = self.benches.get(msg.bench)
                            if st is not None:
                                st.end_msg = msg
                                st.end_deadline = time.monotonic() + DRAIN_TIMEOUT_S
                        elif isinstance(msg, m.Snapshot):
                            st = self.benches.get(msg.bench)
                            if st is not None:
                                res = msgspec.msgpack.encode(self.result(st, msg))
                                dealer.send(self.up.encode(m.BenchResult(st.bench, res, True)))
                        elif isinstance(msg, m.Lost):
                            self.lost(msg)
                        elif isinstance(msg, m.Stop):
                            return 0
                now = time.monotonic()
                for st in list(self.benches.values()):
                    end = st.end_msg
                    if end is not None and (st.ended >= end.expected_rids or now > st.end_deadline):
                        res = self.result(st, end)
                        payload = msgspec.msgpack.encode(res)
                        dealer.send(self.up.encode(m.BenchResult(st.bench, payload)))
                        st.end_msg = None
                        st.itl = []
                        if st is active:
                            active = None  # no more progress for a finished benchmark
                if active is not None and now >= next_progress:
                    dealer.send(self.up.encode(self.progress(active)))
                    next_progress = now + PROGRESS_EVERY_S
                if self.cfg.parent_pid and os.getppid() != self.cfg.parent_pid:
                    return 1  # the coordinator is gone
        finally:
            pull.close(0)
            dealer.close(0)
            ctx.term()


def main(argv: list[str]) -> int:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Nothing here is latency-critical (tokens carry their own timestamps), while the
    # coordinator's pacing and the workers' receipts are: yield the CPU to them.
    os.nice(COLLECTOR_NICE)
    cfg = msgspec.json.decode(argv[-1], type=CollectorConfig)
    return Collector(cfg).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
