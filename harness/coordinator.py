"""The coordinator: starts the collector and workers, paces requests, and gathers results.

It is one thread with one ``zmq.Poller`` over the ROUTER socket and every
child's pidfd, so a message or a child's death wakes it at once. Sends are
paced to absolute deadlines: the poll sleeps to about 1 ms before a
deadline, and ``time.sleep`` (nanosleep, microsecond-accurate) covers the rest.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np
import psutil
import zmq

from harness import profiles
from harness.collector import CollectorConfig
from harness.config import RunConfig
from harness.schema import BenchmarkResult, WorkerEnv
from harness.stats import BenchMeta
from harness.workload import Workload
from protocol import codec
from protocol import messages as m
from protocol.transport import (
    COLLECTOR_IDENTITY,
    ipc_address,
    make_socket,
    private_ipc_dir,
    split_tcp,
    worker_identity,
)
from workers.placement import Slot

_MS = 1_000_000
_BATCH = 512  # most requests put in one Submit
_LEAD_NS = 50 * _MS  # open-loop schedules start this far ahead, so the first sends are on time
_HEARTBEAT_TIMEOUT_S = 30.0  # a live worker that says nothing this long (after Ready) is hung
# A remote worker has no process sentinel here: silence is how its death shows. Before it is
# Ready, vLLM's start-up may block its loop for minutes, so only the start-up timeout applies.
_REMOTE_SILENCE_S = 10.0
_RESULT_TIMEOUT_S = 60.0
_SHUTDOWN_TIMEOUT_S = 15.0
_CANCEL_TIMEOUT_S = 10.0  # for workers to confirm aborts


def _colon(detail: str) -> str:
    return f": {detail}" if detail else ""


class RunError(RuntimeError):
    """A run that cannot go on; the message is one line for the user."""


class Interrupted(Exception):
    pass


@dataclass
class Child:
    """A collector or worker: a child process here, or a remote worker known by its identity."""

    name: str
    ident: bytes
    popen: subprocess.Popen[bytes] | None = None
    pidfd: int | None = None
    log: Path | None = None
    worker_id: int | None = None
    alive: bool = True
    ready: bool = False
    hello: m.Hello | None = None
    info: m.WorkerInfo | None = None
    outstanding: dict[int, m.RequestSpec] = field(default_factory=dict)
    last_seen: float = field(default_factory=time.monotonic)
    exit_reason: str | None = None

    @property
    def remote(self) -> bool:
        return self.popen is None

    def log_tail(self) -> str:
        if self.log is None:
            return ""
        try:
            lines = [ln for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        for ln in reversed(lines):
            if "Error" in ln or "error" in ln:
                return ln.strip()[-300:]
        return lines[-1].strip()[-300:] if lines else ""


@dataclass
class BenchState:
    index: int
    plan: profiles.BenchPlan
    t0_ns: int
    planned: int
    sent: int = 0
    done: int = 0
    failed: int = 0
    inflight: int = 0
    peak_inflight: int = 0
    stop_reason: str | None = None
    result: BenchmarkResult | None = None
    snapshot: BenchmarkResult | None = None  # the latest checkpoint of a running benchmark
    collector_ack: bool = False


class Coordinator:
    def __init__(
        self,
        cfg: RunConfig,
        workload: Workload,
        slots: list[Slot],
        engine_args: dict[str, object],
        log_dir: Path,
        on_progress: Callable[[BenchState, m.Progress | None], None] | None = None,
        on_checkpoint: Callable[[BenchmarkResult], None] | None = None,
        token: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.workload = workload
        self.slots = slots
        self.engine_args = engine_args
        self.log_dir = log_dir
        self.on_progress = on_progress
        self.on_checkpoint = on_checkpoint
        self.token = token or secrets.token_hex(16)
        self.ctx = zmq.Context()
        self.ipc_dir = private_ipc_dir()
        self.router = make_socket(self.ctx, zmq.ROUTER)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.control_addr = ipc_address(self.ipc_dir, "control")
        self.events_addr = ipc_address(self.ipc_dir, "events")
        self.router.bind(self.control_addr)
        self.poller = zmq.Poller()
        self.poller.register(self.router, zmq.POLLIN)
        self.children: dict[int, Child] = {}  # by pidfd
        self.peers: dict[bytes, Child] = {}  # by socket identity
        self.workers: dict[int, Child] = {}
        self.collector: Child | None = None
        self.collector_ready = False
        self.up = codec.to_coordinator()
        self.down = codec.to_worker()
        self.ctl = codec.to_collector_control()
        self.rejected: Counter[str] = Counter()  # foreign or malformed messages, by kind
        self.next_rid = 0
        self.rr = 0
        self.bench: BenchState | None = None
        self.interrupted: int | None = None
        self.stop_reason: str | None = None
        self.results: list[BenchmarkResult] = []
        # Multi-node: remote workers reach the same ROUTER, and the collector, over TCP.
        self.accepting = True  # remote workers may join until the first benchmark
        self.events_tcp: str | None = None
        self.events_port = 0
        if cfg.listen:
            host, port = split_tcp(cfg.listen)
            self.events_port = port + 1
            self.events_tcp = f"tcp://{host}:{self.events_port}"
            try:
                self.router.bind(cfg.listen)
            except zmq.ZMQError as e:
                self.close()
                raise RunError(f"cannot listen on {cfg.listen}: {e}") from None

    # --- processes -------------------------------------------------------------

    def _spawn(
        self,
        name: str,
        ident: bytes,
        module: str,
        config: bytes,
        env: dict[str, str],
        cores: list[int],
    ) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        with open(log, "wb") as fh:
            popen = subprocess.Popen(
                [sys.executable, "-m", module, name, config.decode()],
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches only us; we stop the children
            )
        if cores:
            # Before it imports anything: its children (vLLM's EngineCore) inherit this.
            os.sched_setaffinity(popen.pid, cores)
        pidfd = os.pidfd_open(popen.pid)
        child = Child(name, ident, popen, pidfd, log)
        self.children[pidfd] = child
        self.peers[ident] = child
        self.poller.register(pidfd, zmq.POLLIN)
        return child

    def start(self) -> None:
        # On CPU engines, the harness's own processes keep to the cores that the
        # model's threads leave free, so they never preempt the model.
        spare = sorted({c for slot in self.slots for c in slot.spare_cores})
        if spare:
            os.sched_setaffinity(0, spare)
        ccfg = CollectorConfig(
            coordinator_addr=self.control_addr,
            events_addr=self.events_addr,
            events_tcp=self.events_tcp,
            token=self.token,
            slo=self.cfg.slo,
            parent_pid=os.getpid(),
        )
        self.collector = self._spawn(
            "harness-collector",
            COLLECTOR_IDENTITY,
            "harness.collector",
            msgspec.json.encode(ccfg),
            {},
            spare,
        )
        for slot in self.slots:
            wcfg = m.WorkerConfig(
                worker_id=slot.worker_id,
                coordinator_addr=self.control_addr,
                collector_addr=self.events_addr,
                token=self.token,
                engine=self.cfg.engine,
                engine_args=self.engine_args,
                device=self.cfg.device if self.cfg.engine == "vllm" else "sim",
                devices=slot.devices,
            )
            child = self._spawn(
                f"harness-worker-{slot.worker_id}",
                worker_identity(slot.worker_id),
                "workers.main",
                msgspec.json.encode(wcfg),
                slot.env,
                slot.spare_cores,
            )
            child.worker_id = slot.worker_id
            self.workers[slot.worker_id] = child
        deadline = time.monotonic() + self.cfg.startup_timeout_s
        n = len(self.slots) + self.cfg.remote_workers
        while not (
            self.collector_ready
            and len(self.workers) == n
            and all(w.ready for w in self.workers.values())
        ):
            if self.interrupted:
                raise Interrupted()
            if time.monotonic() > deadline:
                late = [w.name for w in self.workers.values() if not w.ready]
                if len(self.workers) < n:
                    late.append(f"{n - len(self.workers)} remote worker(s) never joined")
                raise RunError(
                    f"engine start-up timed out after {self.cfg.startup_timeout_s:g}s "
                    f"({', '.join(late) or 'harness-collector'} not ready; see {self.log_dir})"
                )
            self._pump(100)
            self._check_hung()
            dead = [c for c in self.peers.values() if not c.alive]
            if dead:
                c = dead[0]
                raise RunError(
                    f"{c.name} exited during start-up ({c.exit_reason}){_colon(c.log_tail())}"
                )
        self.accepting = False

    def worker_envs(self) -> list[WorkerEnv]:
        out = []
        for w in self.workers.values():
            info = w.info
            out.append(
                WorkerEnv(
                    worker_id=w.worker_id or 0,
                    pid=w.popen.pid if w.popen else (w.hello.pid if w.hello else 0),
                    host=w.hello.host if w.hello else "",
                    device=info.device if info else "",
                    devices=info.devices if info else [],
                    startup_s=info.startup_s if info else 0.0,
                    kv_cache_tokens=info.kv_cache_tokens if info else None,
                    engine_config=info.engine_config if info else {},
                    exit=w.exit_reason,
                    remote=w.remote,
                    clock_offset_ns=info.clock_offset_ns if info else 0,
                    clock_error_ns=info.clock_error_ns if info else 0,
                )
            )
        return out

    # --- messages --------------------------------------------------------------

    def _send_worker(self, ident: bytes, msg: m.CoordinatorToWorker) -> None:
        try:
            self.router.send_multipart([ident, self.down.encode(msg)], copy=False)
        except zmq.ZMQError:
            pass  # the worker is gone; its sentinel or its silence reports that

    def _send_collector(self, msg: m.CoordinatorToCollector) -> None:
        try:
            self.router.send_multipart([COLLECTOR_IDENTITY, self.ctl.encode(msg)])
        except zmq.ZMQError:
            raise RunError("the collector is gone") from None

    def _pump(self, timeout_ms: int) -> None:
        for sock, _ in self.poller.poll(timeout_ms):
            if sock is self.router:
                self._drain_router()
            else:
                self._reap(self.children[sock])

    def _drain_router(self) -> None:
        for _ in range(10_000):
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if len(frames) != 2:
                self._reject("malformed frames")
                continue
            ident = frames[0].bytes
            try:
                msg = self.up.decode(frames[1].buffer)
            except codec.DecodeError:
                self._reject("undecodable")
                continue
            self._handle(ident, msg)

    def _reject(self, kind: str) -> None:
        """Count a dropped message; the first of each kind is logged, a flood is not."""
        if kind not in self.rejected:
            if len(self.rejected) >= 20:
                kind = "other"
            else:
                print(f"harness: rejected a message: {kind}", file=sys.stderr, flush=True)
        self.rejected[kind] += 1

    def _token_ok(self, hello: m.Hello) -> bool:
        return secrets.compare_digest(hello.token.encode(), self.token.encode())

    def _admit(self, ident: bytes, hello: m.Hello) -> None:
        """A remote worker's Hello: check it, give it an id, and tell it what to run."""
        cfg = self.cfg
        remote = sum(1 for w in self.workers.values() if w.remote)
        refusal = None
        if not self._token_ok(hello):
            refusal = "wrong token"
        elif hello.protocol_version != m.PROTOCOL_VERSION:
            refusal = (
                f"protocol version {hello.protocol_version}, this run speaks {m.PROTOCOL_VERSION}"
            )
        elif hello.role != "worker" or not ident.startswith(b"r"):
            refusal = "not a worker"
        elif not self.accepting or remote >= cfg.remote_workers:
            refusal = "this run has all the workers it asked for"
        if refusal is not None:
            self._reject(f"remote worker refused: {refusal}")
            self._send_worker(ident, m.Refused(refusal))
            return
        wid = len(self.slots) + remote
        w = Child(f"harness-worker-{wid} ({hello.host})", ident, worker_id=wid, hello=hello)
        self.peers[ident] = w
        self.workers[wid] = w
        self._send_worker(
            ident,
            m.Configure(
                wid,
                cfg.engine,
                self.engine_args,
                cfg.device,
                cfg.tp,
                cfg.cpu_kv_cache_gb,
                self.events_port,
            ),
        )

    def _handle(self, ident: bytes, msg: m.WorkerToCoordinator) -> None:
        peer = self.peers.get(ident)
        if peer is None:
            if isinstance(msg, m.Hello) and self.cfg.listen:
                self._admit(ident, msg)
            else:
                self._reject("unknown sender")
            return
        if isinstance(msg, m.Ping):
            self._send_worker(ident, m.Pong(msg.t_ns, time.monotonic_ns()))
            peer.last_seen = time.monotonic()
            return
        if isinstance(msg, m.Hello):
            if (
                not self._token_ok(msg)
                or msg.protocol_version != m.PROTOCOL_VERSION
                or peer.hello is not None
                or peer.popen is None
                or msg.pid != peer.popen.pid
            ):
                self._reject("bad hello")
                return
            peer.hello = msg
            if peer is self.collector:
                self.collector_ready = True
            return
        if peer.hello is None:
            self._reject("before hello")  # nothing counts before a valid Hello
            return
        peer.last_seen = time.monotonic()
        if isinstance(msg, m.Done):
            self._on_done(peer, msg)
        elif isinstance(msg, m.Progress):
            if self.bench is not None and msg.bench == self.bench.index:
                self.bench.collector_ack = True
                if self.on_progress:
                    self.on_progress(self.bench, msg)
        elif isinstance(msg, m.BenchResult):
            if self.bench is not None and msg.bench == self.bench.index:
                res = msgspec.msgpack.decode(msg.payload, type=BenchmarkResult)
                if msg.partial:
                    self.bench.snapshot = res
                    if self.on_checkpoint:
                        self.on_checkpoint(res)
                else:
                    self.bench.result = res
        elif isinstance(msg, m.Ready):
            peer.info = msg.info
            peer.ready = True
            peer.last_seen = time.monotonic()
        elif isinstance(msg, m.StartupFailed):
            raise RunError(f"{peer.name} failed to start its engine: {msg.error}")
        # Heartbeat: last_seen is all it updates.

    def _on_done(self, w: Child, msg: m.Done) -> None:
        b = self.bench
        for rid in msg.rids:
            if w.outstanding.pop(rid, None) is not None:
                if b is not None:
                    b.done += 1
                    b.inflight -= 1
        if b is not None:
            b.failed += msg.n_failed

    def _reap(self, child: Child) -> None:
        """A child process ended (its pidfd said so)."""
        if not child.alive or child.popen is None or child.pidfd is None:
            return
        self.poller.unregister(child.pidfd)
        code = child.popen.wait(timeout=5)
        try:
            os.killpg(child.popen.pid, signal.SIGKILL)  # its engine processes die with it
        except (ProcessLookupError, PermissionError):
            pass
        self._lose(child, f"exit code {code}" if code >= 0 else f"killed by signal {-code}")

    def _lose(self, child: Child, why: str) -> None:
        """A worker is gone: its requests still in flight fail with the reason."""
        child.alive = False
        child.exit_reason = why
        if child is self.collector:
            raise RunError(f"the collector died ({child.exit_reason}){_colon(child.log_tail())}")
        if child.remote:
            self._send_worker(child.ident, m.Shutdown())  # if it is only cut off, it stops
        if child.outstanding:
            lost = [
                m.Started(s.rid, s.bench, s.phase, s.sched_ns, 0, len(s.prompt), s.max_tokens)
                for s in child.outstanding.values()
            ]
            child.outstanding.clear()
            reason = f"worker {child.worker_id} died ({child.exit_reason})"
            wid = child.worker_id if child.worker_id is not None else -1
            self._send_collector(m.Lost(wid, lost, reason, time.monotonic_ns()))
            if self.bench is not None:
                self.bench.done += len(lost)
                self.bench.failed += len(lost)
                self.bench.inflight -= len(lost)

    def _check_hung(self) -> None:
        now = time.monotonic()
        for w in self.workers.values():
            if not (w.alive and w.ready):
                continue
            if w.popen is not None and now - w.last_seen > _HEARTBEAT_TIMEOUT_S:
                w.popen.kill()  # its pidfd then reports the death
            elif w.popen is None and now - w.last_seen > _REMOTE_SILENCE_S:
                self._lose(w, f"silent for {now - w.last_seen:.0f}s")

    # --- dispatch --------------------------------------------------------------

    def _pick(self) -> Child | None:
        live = [w for w in self.workers.values() if w.alive]
        if not live:
            return None
        cap = self.cfg.max_inflight_per_worker
        if cap is not None:
            live = [w for w in live if len(w.outstanding) < cap]
            if not live:
                return None
        if self.cfg.dispatch == "round-robin":
            self.rr += 1
            return live[self.rr % len(live)]
        return min(live, key=lambda w: len(w.outstanding))

    def _phase(self, k: int, offset_ns: int, b: BenchState) -> int:
        cfg = self.cfg
        if cfg.warmup.requests is not None and k < cfg.warmup.requests:
            return m.PHASE_WARMUP
        if cfg.warmup.seconds is not None and offset_ns < cfg.warmup.seconds * 1e9:
            return m.PHASE_WARMUP
        if cfg.cooldown.requests is not None and k >= b.planned - cfg.cooldown.requests:
            return m.PHASE_COOLDOWN
        if cfg.cooldown.seconds is not None:
            end = cfg.max_seconds
            offs = b.plan.offsets_ns
            if end is None and offs is not None and len(offs):
                end = offs[-1] / 1e9
            if end is not None and offset_ns >= (end - cfg.cooldown.seconds) * 1e9:
                return m.PHASE_COOLDOWN
        return m.PHASE_MEASURED

    def _dispatch(self, b: BenchState, sched: list[int]) -> int:
        """Send the next ``len(sched)`` requests, scheduled at ``sched``; returns how many went."""
        batches: dict[int, list[m.RequestSpec]] = {}
        samples = self.workload.samples
        sent = 0
        for t in sched:
            w = self._pick()
            if w is None:
                break
            rid = self.next_rid
            self.next_rid += 1
            s = samples[rid % len(samples)]
            phase = self._phase(b.sent, t - b.t0_ns, b)
            spec = m.RequestSpec(rid, s.prompt, s.output_tokens, t, b.index, phase)
            batches.setdefault(w.ident, []).append(spec)
            w.outstanding[rid] = spec
            b.sent += 1
            b.inflight += 1
            sent += 1
        for ident, specs in batches.items():
            self._send_worker(ident, m.Submit(specs))
        b.peak_inflight = max(b.peak_inflight, b.inflight)
        return sent

    # --- benchmarks ------------------------------------------------------------

    def _limit_reason(self, b: BenchState, now: int) -> str | None:
        cfg = self.cfg
        if self.interrupted:
            return "interrupted"
        if not any(w.alive for w in self.workers.values()):
            return "all workers died"
        if cfg.max_seconds is not None and now - b.t0_ns >= cfg.max_seconds * 1e9:
            return "max_seconds"
        if cfg.max_errors is not None and b.failed:
            if cfg.max_errors >= 1 and b.failed >= cfg.max_errors:
                return "max_errors"
            # A fraction of what was sent, not of what has ended: fast failures (rejected at
            # once) must not look like a high rate while the successes are still running.
            if cfg.max_errors < 1 and b.done >= 10 and b.failed / b.sent > cfg.max_errors:
                return "max_errors"
        return None

    def run_bench(self, index: int, plan: profiles.BenchPlan) -> BenchmarkResult | None:
        cfg = self.cfg
        open_loop = plan.offsets_ns is not None
        if open_loop:
            assert plan.offsets_ns is not None
            planned = len(plan.offsets_ns)
        else:
            planned = cfg.max_requests if cfg.max_requests is not None else sys.maxsize
        b = BenchState(index, plan, time.monotonic_ns() + _LEAD_NS, planned)
        self.bench = b
        self._send_collector(m.BeginBench(index, b.t0_ns))
        # The collector must know the benchmark before any of its events can reach it:
        # they travel on another socket, so wait for its first Progress as the ack.
        deadline = time.monotonic() + _RESULT_TIMEOUT_S
        while not b.collector_ack:
            if time.monotonic() > deadline:
                raise RunError(f"the collector did not start benchmark {index} in time")
            self._pump(10)
        if not open_loop:
            b.t0_ns = time.monotonic_ns()
        t0 = b.t0_ns
        deadlines = (plan.offsets_ns + t0) if open_loop else None
        conc = plan.concurrency or 1
        drain_deadline: float | None = None
        cancel_deadline: float | None = None
        last_tick = time.monotonic()
        next_checkpoint = last_tick + (cfg.checkpoint_s or 0)
        while True:
            now = time.monotonic_ns()
            reason = b.stop_reason or self._limit_reason(b, now)
            if reason is not None and b.stop_reason is None:
                b.stop_reason = reason
            blocked = False  # due requests that no worker can take yet (per-worker cap)
            if b.stop_reason is None and b.sent < b.planned:
                if deadlines is not None:
                    k = b.sent
                    hi = min(int(np.searchsorted(deadlines, now, "right")), k + _BATCH)
                    if hi > k:
                        blocked = self._dispatch(b, deadlines[k:hi].tolist()) < hi - k
                else:
                    room = min(conc - b.inflight, b.planned - b.sent, _BATCH)
                    if room > 0:
                        blocked = self._dispatch(b, [now] * room) < room
            all_sent = b.sent >= b.planned
            if b.inflight <= 0 and (all_sent or b.stop_reason is not None):
                break
            drained = all_sent and drain_deadline is not None and time.monotonic() > drain_deadline
            if b.stop_reason is not None or drained:
                # A limit was hit: abort what is still in flight (counted incomplete).
                if cancel_deadline is None:
                    b.stop_reason = b.stop_reason or "drain_timeout"
                    self._cancel_all("aborted: " + b.stop_reason)
                    cancel_deadline = time.monotonic() + _CANCEL_TIMEOUT_S
                elif time.monotonic() > cancel_deadline:
                    break  # workers that do not confirm: the collector counts them incomplete
            if all_sent and drain_deadline is None:
                drain_deadline = time.monotonic() + cfg.drain_timeout_s
            if time.monotonic() - last_tick > 0.5:
                last_tick = time.monotonic()
                self._check_hung()
                if self.on_progress:
                    self.on_progress(b, None)
                if cfg.checkpoint_s and time.monotonic() >= next_checkpoint:
                    next_checkpoint = time.monotonic() + cfg.checkpoint_s
                    self._send_collector(m.Snapshot(index, self._meta(b, running=True)))
            # Sleep until the next send is due, or a message arrives.
            timeout_ms = 100
            if deadlines is not None and not all_sent and b.stop_reason is None and not blocked:
                wait_ns = int(deadlines[b.sent]) - time.monotonic_ns()
                if wait_ns < 2 * _MS:
                    # Near a deadline: take what has arrived without waiting, then sleep the
                    # rest precisely (nanosleep) rather than to the poll's millisecond.
                    self._pump(0)
                    if wait_ns > 20_000:
                        time.sleep((wait_ns - 20_000) / 1e9)
                    continue
                timeout_ms = min(100, wait_ns // _MS - 1)
            self._pump(int(timeout_ms))
        self._send_collector(m.EndBench(index, b.sent, self._meta(b)))
        deadline = time.monotonic() + _RESULT_TIMEOUT_S
        while b.result is None:
            if time.monotonic() > deadline:
                raise RunError(f"the collector sent no result for benchmark {index} in time")
            self._pump(100)
        b.result.stop_reason = b.stop_reason
        if self.on_progress:
            self.on_progress(b, None)
        self.bench = None
        return b.result

    def _meta(self, b: BenchState, running: bool = False) -> bytes:
        p = b.plan
        scheduled = b.sent if (b.stop_reason or running) else b.planned
        meta = BenchMeta(b.index, p.name, p.profile, scheduled, p.rate, p.concurrency)
        return msgspec.msgpack.encode(meta)

    def _cancel_all(self, reason: str) -> None:
        for w in self.workers.values():
            if w.alive and w.outstanding:
                self._send_worker(w.ident, m.Cancel(sorted(w.outstanding), reason))

    # --- shutdown --------------------------------------------------------------

    def close(self) -> None:
        """Stop every child and its descendants (vLLM's EngineCore included). Never hangs."""
        for w in self.workers.values():
            if w.remote or (w.alive and w.ready):
                self._send_worker(w.ident, m.Shutdown())  # remote: it stops its own engine
            elif w.alive and w.popen is not None:
                w.popen.terminate()  # still starting its engine: it cannot hear Shutdown yet
        if self.collector is not None and self.collector.alive:
            try:
                if not self.collector_ready:
                    raise RunError("not connected")
                self._send_collector(m.Stop())
            except RunError:
                self.collector.popen.terminate()  # cannot hear Stop: not connected yet
        procs: list[psutil.Process] = []
        for c in self.children.values():
            try:
                p = psutil.Process(c.popen.pid)
                procs.append(p)
                procs.extend(p.children(recursive=True))
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(
            [p for p in procs if p.pid in {c.popen.pid for c in self.children.values()}],
            timeout=_SHUTDOWN_TIMEOUT_S,
        )
        for p in procs:
            try:
                if p.is_running():
                    p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=5)
        for c in self.children.values():
            try:
                os.killpg(c.popen.pid, signal.SIGKILL)  # anything left in its session
            except (ProcessLookupError, PermissionError):
                pass
            if c.popen.poll() is None:
                try:
                    c.popen.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            os.close(c.pidfd)
        # A moment for the Shutdowns to reach remote workers (local ones are stopped above).
        self.router.close(linger=1000 if self.cfg.remote_workers else 0)
        self.ctx.term()
        shutil.rmtree(self.ipc_dir, ignore_errors=True)
