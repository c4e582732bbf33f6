"""The collector process: token events in, statistics out.

``python -m harness.collector harness-collector CONFIG_JSON``. It PULLs every
worker's ``Events`` and keeps the running benchmark's requests as columns
(:class:`~harness.accumulator.BenchAccumulator`); the coordinator drives it over
a private link (BeginBench, EndBench, Snapshot, Lost, Stop, Admit) and gets
``Progress`` and ``BenchResult`` back. Events of any other benchmark are late:
counted and dropped, so nothing from one benchmark ever counts in the next.
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
from harness.accumulator import BIN_NS, MAX_WORKER_ID, BenchAccumulator
from harness.records import RecordSink, record
from harness.telemetry import telemetry_results
from protocol import codec, transport
from protocol import messages as m
from protocol.results import BenchmarkResult, CollectorStats
from protocol.transport import make_socket

# After the coordinator ends a benchmark, events still in flight get this long to arrive.
DRAIN_TIMEOUT_S = 10.0
# After a worker's death, how long its last events (already sent) may take to arrive: a
# remote worker that was only cut off may still deliver them over a slow path.
LOST_GRACE_S = 2.0
PROGRESS_EVERY_S = 0.25
COLLECTOR_NICE = 10
_BATCH = 1000  # messages taken from a socket before looking at the other
_BATCH_ENTRIES = 1 << 16  # and token entries: one vectorized pass sorts them, so not too many


class CollectorConfig(msgspec.Struct):
    coordinator_addr: str  # the coordinator's private link (ipc)
    events_addr: str
    token: str
    slo: dict[str, float] = {}
    parent_pid: int = 0
    events_tcp: str | None = None  # multi-node: remote workers push here too, over CURVE
    events_secret: str | None = None  # that port's CURVE secret key
    records: list[str] = []  # per-request record files (.jsonl, .jsonl.gz, .parquet)
    save_token_times: bool = False


Ends = list[tuple[bool, list[m.Finished] | list[m.Failed]]]  # (failed?, records), in order


def _by_worker(evs: list[m.Events]) -> tuple[dict[int, list[m.Started]], dict[int, Ends]]:
    """The messages' starts, and their ends, gathered by worker.

    Each worker's records keep the order it sent them in (its ends as runs of finishes and
    failures, so a Failed then a Finished of one request still ends it failed). Between
    workers there is no order to keep: their messages interleave by chance on the socket.
    """
    started: dict[int, list[m.Started]] = {}
    ends: dict[int, Ends] = {}
    for ev in evs:
        if ev.started:
            started.setdefault(ev.worker_id, []).extend(ev.started)
        for failed, recs in ((False, ev.finished), (True, ev.failed)):
            if recs:
                runs = ends.setdefault(ev.worker_id, [])
                if runs and runs[-1][0] == failed:
                    runs[-1][1].extend(recs)  # type: ignore[arg-type]
                else:
                    runs.append((failed, list(recs)))
    return started, ends


class Collector:
    def __init__(self, cfg: CollectorConfig) -> None:
        self.cfg = cfg
        self.sink = RecordSink(cfg.records) if cfg.records else None
        self.gate = transport.KeyGate()  # remote workers' keys, as the coordinator admits them
        self.bench: BenchAccumulator | None = None
        self.rejected: Counter[str] = Counter()  # messages no benchmark could take
        self.ev_codec = codec.events()
        self.up = codec.from_collector()
        self.ctl = codec.to_collector()

    # --- ingest --------------------------------------------------------------

    def ingest(self, ev: m.Events | m.Telemetry, peer: str) -> None:
        if isinstance(ev, m.Telemetry):
            if self.bench is not None and 0 <= ev.worker_id < MAX_WORKER_ID:
                self.bench.add_telemetry(ev)
            return
        self.ingest_batch([ev], peer)

    def ingest_batch(self, evs: list[m.Events], peer: str) -> None:
        """Messages taken from one socket in one go, applied in one pass.

        Every request's starts come first, then its outputs in time order, then its end:
        the order a worker reports them in, whatever messages they came in.
        """
        acc = self.bench
        if acc is None:
            self.rejected[f"events with no benchmark running ({peer})"] += len(evs)
            return
        before = sum(acc.rejected.values())
        good = [ev for ev in evs if 0 <= ev.worker_id < MAX_WORKER_ID]
        if len(good) < len(evs):
            acc.reject("bad worker id", len(evs) - len(good))
        # One call per worker (and run of one kind) for the whole batch: the checks and columns are
        # vectorized, so their set-up is paid once, not once per message.
        started, ends = _by_worker(good)
        for wid, recs in started.items():
            mine = [s for s in recs if s.bench == acc.bench and acc.rid_lo <= s.rid < acc.rid_hi]
            acc.late += len(recs) - len(mine)
            if mine:
                acc.started(mine, wid)
        self._tokens(acc, good)
        for wid, runs in ends.items():
            for failed, recs in runs:
                ours = [r for r in recs if acc.rid_lo <= r.rid < acc.rid_hi]
                acc.late += len(recs) - len(ours)
                if ours:
                    (acc.failed if failed else acc.finished)(ours, wid)  # type: ignore[arg-type]
        if sum(acc.rejected.values()) > before:
            self._tag_peer(acc, peer)

    def _tokens(self, acc: BenchAccumulator, evs: list[m.Events]) -> None:
        """Every message's token columns as one set of arrays, with the worker of each entry."""
        parts = []
        for ev in evs:
            if not (ev.tok_rid or ev.tok_n or ev.tok_t_ns):
                continue
            if (
                len(ev.tok_rid) % 8
                or len(ev.tok_n) % 4
                or len(ev.tok_t_ns) % 8
                or not (len(ev.tok_rid) // 8 == len(ev.tok_n) // 4 == len(ev.tok_t_ns) // 8)
            ):
                acc.reject("ragged token columns")
                continue
            parts.append(ev)
        if not parts:
            return
        rid = np.frombuffer(b"".join(ev.tok_rid for ev in parts), np.int64)
        n = np.frombuffer(b"".join(ev.tok_n for ev in parts), np.int32)
        t = np.frombuffer(b"".join(ev.tok_t_ns for ev in parts), np.int64)
        wid = np.repeat(np.array([ev.worker_id for ev in parts], np.int32),
                        [len(ev.tok_n) // 4 for ev in parts])  # fmt: skip
        mine = acc.mine(rid)
        if not mine.all():
            acc.late += int((~mine).sum())
            rid, n, t, wid = rid[mine], n[mine], t[mine], wid[mine]
        if len(rid):
            acc.tokens(rid, n, t, wid)

    @staticmethod
    def _tag_peer(acc: BenchAccumulator, peer: str) -> None:
        """Name the peer in the kinds just counted (kinds without one are this message's)."""
        for kind in [k for k in acc.rejected if "(" not in k]:
            acc.rejected[f"{kind} ({peer})"] += acc.rejected.pop(kind)

    # --- results -------------------------------------------------------------

    def result(self, acc: BenchAccumulator, info: m.BenchInfo) -> BenchmarkResult:
        res = stats.benchmark_result(info, acc.columns(), acc.chunks(), acc.token_bins, acc.t0_ns,
                                     BIN_NS, self.cfg.slo or None, dict(acc.errors))  # fmt: skip
        res.telemetry = telemetry_results(acc.telemetry, acc.telemetry_sources, acc.t0_ns)
        rejected = acc.rejected + self.rejected
        res.collector = CollectorStats(acc.messages, acc.entries, acc.busy_ns / 1e9,
                                       sum(rejected.values()), dict(rejected), acc.late)  # fmt: skip
        if self.sink is not None:
            res.collector.records_written = self.sink.written + len(self.sink.rows)
            res.collector.records_error = self.sink.error
        return res

    def control(self, msg: m.CoordinatorToCollector, dealer: zmq.Socket) -> bool:
        """One message from the coordinator; False when it says stop."""
        acc = self.bench
        if isinstance(msg, m.BeginBench):
            self.bench = BenchAccumulator(msg, token_times=self.cfg.save_token_times)
            if self.sink is not None:
                self.bench.on_end = self._recorder(self.bench)
            self.rejected.clear()
            dealer.send(self.up.encode(self.bench.progress()))  # the ack
        elif isinstance(msg, m.Extend):
            if acc is not None and msg.bench == acc.bench:
                acc.extend(msg.rid_hi)
        elif isinstance(msg, m.EndBench):
            if acc is not None and msg.bench == acc.bench:
                acc.end_msg = msg
                acc.end_deadline = time.monotonic() + DRAIN_TIMEOUT_S
        elif isinstance(msg, m.Snapshot):
            if acc is not None and msg.bench == acc.bench:
                dealer.send(
                    self.up.encode(m.BenchResult(acc.bench, self.result(acc, msg.info), True))
                )
        elif isinstance(msg, m.Lost):
            if acc is not None:
                acc.lost(msg)
        elif isinstance(msg, m.Admit):
            self.gate.allowed[msg.key] = msg.worker_id
            dealer.send(self.up.encode(m.Admitted(msg.worker_id)))
        elif isinstance(msg, m.Stop):
            return False
        return True

    def _recorder(self, acc: BenchAccumulator):  # type: ignore[no-untyped-def]
        sink = self.sink
        assert sink is not None

        def on_end(k: int) -> None:
            times = acc.token_times.pop(k, []) if acc.token_times is not None else None
            sink.add(record(acc, k, acc.name, times))

        return on_end

    def _finish_if_done(self, dealer: zmq.Socket) -> None:
        acc = self.bench
        end = acc.end_msg if acc is not None else None
        if acc is None or end is None:
            return
        if self._all_ended(acc, end):
            acc.fail_stranded()
            if self.sink is not None:  # every request that started has its row, ended or not
                for k in acc.pending_rows():
                    times = acc.token_times.pop(k, []) if acc.token_times is not None else None
                    self.sink.add(record(acc, k, acc.name, times))
                self.sink.flush()
            dealer.send(self.up.encode(m.BenchResult(acc.bench, self.result(acc, end.info))))
            self.bench = None  # its columns go; anything of it that still comes is late

    @staticmethod
    def _all_ended(acc: BenchAccumulator, end: m.EndBench) -> bool:
        """Every request ended, or the rest died with their workers, or the drain timed out."""
        now = time.monotonic()
        if acc.n_ended >= end.expected_rids or now > acc.end_deadline:
            return True
        if not acc.dead or now < acc.lost_at + LOST_GRACE_S:
            return False
        return acc.n_ended + acc.stranded() >= end.expected_rids

    # --- loop ----------------------------------------------------------------

    def _drain_events(self, pull: zmq.Socket, peer: str) -> None:
        """Take what is queued (up to a batch) and ingest it in one pass."""
        batch: list[m.Events] = []
        entries = 0
        for _ in range(_BATCH):
            try:
                data = pull.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            try:
                ev = self.ev_codec.decode(data.buffer)
            except codec.DecodeError:
                self._reject(f"undecodable ({peer})")
                continue
            if (
                peer == "tcp"
                and self.gate.allowed.get(transport.peer_key(data) or "") != ev.worker_id
            ):
                self._reject("events under another worker's key (tcp)")
                continue
            if isinstance(ev, m.Telemetry):
                self.ingest(ev, peer)
                continue
            batch.append(ev)
            entries += len(ev.tok_rid) // 8
            if entries >= _BATCH_ENTRIES:
                break
        if not batch:
            return
        t0 = time.perf_counter_ns()
        self.ingest_batch(batch, peer)
        acc = self.bench
        if acc is not None:
            acc.messages += len(batch)
            acc.entries += entries
            acc.busy_ns += time.perf_counter_ns() - t0

    def _reject(self, kind: str) -> None:
        if self.bench is not None:
            self.bench.reject(kind)
        else:
            self.rejected[kind] += 1

    def _drain_control(self, dealer: zmq.Socket) -> bool:
        while True:
            try:
                data = dealer.recv(zmq.NOBLOCK)
            except zmq.Again:
                return True
            try:
                msg = self.ctl.decode(data)
            except codec.DecodeError:
                self.rejected["undecodable control message"] += 1
                continue
            if not self.control(msg, dealer):
                return False

    def run(self) -> int:
        ctx = zmq.Context()
        pulls = {"ipc": make_socket(ctx, zmq.PULL)}
        pulls["ipc"].bind(self.cfg.events_addr)
        auth = None
        if self.cfg.events_tcp and self.cfg.events_secret:
            # Only the keys the coordinator admitted (token checked) may even connect.
            auth = transport.start_authenticator(ctx, self.gate)
            pulls["tcp"] = make_socket(ctx, zmq.PULL)
            transport.curve_server(pulls["tcp"], self.cfg.events_secret)
            pulls["tcp"].bind(self.cfg.events_tcp)
        link = make_socket(ctx, zmq.DEALER)
        link.connect(self.cfg.coordinator_addr)
        link.send(
            self.up.encode(
                m.Hello("collector", -1, os.getpid(), "", m.PROTOCOL_VERSION, self.cfg.token)
            )
        )
        poller = zmq.Poller()
        for sock in (*pulls.values(), link):
            poller.register(sock, zmq.POLLIN)
        transport.settle_memory()
        next_progress = time.monotonic()
        try:
            while True:
                ready = dict(poller.poll(timeout=100))
                for peer, pull in pulls.items():
                    if pull in ready:
                        self._drain_events(pull, peer)
                if link in ready and not self._drain_control(link):
                    return 0
                self._finish_if_done(link)
                now = time.monotonic()
                if self.bench is not None and self.bench.end_msg is None and now >= next_progress:
                    link.send(self.up.encode(self.bench.progress()))
                    next_progress = now + PROGRESS_EVERY_S
                if self.cfg.parent_pid and os.getppid() != self.cfg.parent_pid:
                    return 1  # the coordinator is gone
        finally:
            if self.sink is not None:
                self.sink.close()
            for sock in (*pulls.values(), link):
                sock.close(0)
            if auth is not None:
                auth.stop()  # type: ignore[attr-defined]
            ctx.term()


def main(argv: list[str]) -> int:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Nothing here is latency-critical (tokens carry their own timestamps), while the
    # coordinator's pacing and the workers' receipts are: yield the CPU to them.
    os.nice(COLLECTOR_NICE)
    cfg = m.read_config(argv[-1], CollectorConfig)
    return Collector(cfg).run()  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
