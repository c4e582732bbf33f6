"""The run's processes: the collector and every worker, local or remote.

The fleet starts them, admits remote workers, watches them (pidfds, heartbeats,
silence) and stops them. It owns the coordinator's one ``zmq.Poller``: the
sockets (local workers, remote workers, the collector) and every child's pidfd.
Messages about requests and results go to its :class:`Listener`, the benchmark loop.

Sockets, one typed decoder each. An identity proves nothing (a client may set its own
ROUTING_ID; a ROUTER refuses a second connection under one in use): a peer becomes a
worker (or the collector) only by a Hello with the run's token and, locally, the pid of
the process this fleet started for it.
- ``local``: ROUTER on a private ipc path; local workers.
- ``remote``: ROUTER on ``--listen``, encrypted with CURVE; remote workers, known only
  by the key they were admitted with, so no identity claimed over TCP can pose as a
  local peer or as another worker.
- ``collector``: ROUTER on a private ipc path; results only ever come from here.

Children get their configs (the run's token, the collector's secret key) as files in the
private ipc folder, never on a command line that other users can read.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import psutil
import zmq

from harness.collector import CollectorConfig
from harness.config import Run
from harness.launchers import Launcher
from harness.schema import WorkerEnv
from protocol import codec, transport
from protocol import messages as m
from protocol.transport import ipc_address, make_socket, private_ipc_dir, split_tcp
from workers.vllm_compat import startup_warnings

HEARTBEAT_TIMEOUT_S = 30.0  # a live local worker that says nothing this long (after Ready) is hung
# A remote worker has no process sentinel here: silence is how its death shows, from its
# admission on (its heartbeat goes on while its engine starts).
REMOTE_SILENCE_S = 10.0
# After Shutdown, children get this long to stop by themselves; then their process groups
# (vLLM's engine processes with them) are killed. The report is already written by then.
SHUTDOWN_GRACE_S = 3.0
LAUNCHED_GRACE_S = 10.0  # a launcher's workers, told to stop, get this long before it stops them
TICK_S = 0.25  # how often start-up calls its on_tick
# Done requests kept per worker for its Lost message: far more than can wait unsent in its
# event queue when it dies; one beyond them that lost its end counts as incomplete.
RECENT_DONE = 16384
_MAX_REJECT_KINDS = 20


class RunError(RuntimeError):
    """A run that cannot go on; the message is one line for the user."""


class Interrupted(Exception):
    pass


def _colon(detail: str) -> str:
    return f": {detail}" if detail else ""


@dataclass
class Peer:
    """The collector or a worker: a child process here, or a remote worker known by its identity."""

    name: str
    ident: bytes
    popen: subprocess.Popen[bytes] | None = None
    pidfd: int | None = None
    log: Path | None = None
    worker_id: int | None = None
    remote: bool = False
    alive: bool = True
    ready: bool = False
    hello: m.Hello | None = None
    info: m.WorkerInfo | None = None
    outstanding: dict[int, m.RequestSpec] = field(default_factory=dict)
    # The last requests it said were done, for the collector should it die (see m.Lost).
    recent_done: deque[m.RequestSpec] = field(default_factory=lambda: deque(maxlen=RECENT_DONE))
    last_seen: float = field(default_factory=time.monotonic)
    exit_reason: str | None = None
    key: str | None = None  # remote: the CURVE key it was admitted with
    dropped: int = 0  # Events messages it could not send to the collector

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


class Listener(Protocol):
    """What the benchmark loop hears from the fleet."""

    def on_done(self, w: Peer, msg: m.Done) -> None: ...

    def on_collector(self, msg: m.Progress | m.BenchResult) -> None: ...

    def on_lost(self, w: Peer, specs: list[m.RequestSpec]) -> None: ...


class Fleet:
    def __init__(self, run: Run, launcher: Launcher | None = None) -> None:
        self.run = run
        self.launcher = launcher  # starts the remote workers itself (--launcher ray)
        self.listener: Listener | None = None
        self.token = run.network.token if run.network else secrets.token_hex(16)
        self.interrupted: int | None = None  # set by the runner's signal handler
        self.rejected: Counter[str] = Counter()  # foreign or malformed messages, by kind
        self.warned: set[str] = set()  # each start-up warning once, however many workers say it
        self.peers: dict[int, Peer] = {}  # children by pidfd
        self.local_peers: dict[bytes, Peer] = {}
        self.remote_peers: dict[bytes, Peer] = {}
        self.workers: dict[int, Peer] = {}
        self.collector: Peer | None = None
        self.accepting = True  # remote workers may join until the first benchmark
        self.spawned_at: float | None = None
        self.early: list[tuple[bytes, m.Hello, str | None]] = []  # Hellos before the collector's
        self.admitting: dict[int, Peer] = {}  # admitted remote workers, until the collector says so
        self.up = codec.to_coordinator()
        self.down = codec.to_worker()
        self.ctl = codec.to_collector()
        self.results = codec.from_collector()
        self._bind()

    # --- sockets -------------------------------------------------------------

    def _bind(self) -> None:
        self.ctx = zmq.Context()
        self.ipc_dir = private_ipc_dir()
        self.control_addr = ipc_address(self.ipc_dir, "control")
        self.events_addr = ipc_address(self.ipc_dir, "events")
        self.collector_addr = ipc_address(self.ipc_dir, "collector")
        self.local = make_socket(self.ctx, zmq.ROUTER)
        self.local.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.local.bind(self.control_addr)
        self.coll = make_socket(self.ctx, zmq.ROUTER)
        self.coll.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.coll.bind(self.collector_addr)
        self.poller = zmq.Poller()
        for sock in (self.local, self.coll):
            self.poller.register(sock, zmq.POLLIN)
        self.remote: zmq.Socket | None = None
        self.auth: object | None = None
        self.events_tcp: str | None = None
        self.events_port = 0
        self.keys = transport.curve_keypair()  # the control port's, printed in the join command
        self.events_keys = transport.curve_keypair()  # the collector's events port's
        net = self.run.network
        if net is None:
            return
        host, port = split_tcp(net.listen)
        self.events_port = port + 1
        self.events_tcp = f"tcp://{host}:{self.events_port}"
        # Any client may open an encrypted connection; only a Hello with the token admits it.
        self.auth = transport.start_authenticator(self.ctx, None)
        self.remote = make_socket(self.ctx, zmq.ROUTER)
        self.remote.setsockopt(zmq.ROUTER_MANDATORY, 1)
        transport.curve_server(self.remote, self.keys[1])
        try:
            self.remote.bind(net.listen)
        except zmq.ZMQError as e:
            self.close()
            raise RunError(f"cannot listen on {net.listen}: {e}") from None
        self.poller.register(self.remote, zmq.POLLIN)

    @property
    def server_key(self) -> str:
        """The control port's CURVE public key: remote workers need it to connect."""
        return self.keys[0]

    def send(self, w: Peer, msg: m.CoordinatorToWorker) -> None:
        sock = self.remote if w.remote else self.local
        if not w.ident:
            return  # a local worker that has not said Hello cannot be reached yet
        try:
            assert sock is not None
            sock.send_multipart([w.ident, self.down.encode(msg)], copy=False)
        except zmq.ZMQError:
            pass  # the worker is gone; its sentinel or its silence reports that

    @property
    def collector_ready(self) -> bool:
        return self.collector is not None and self.collector.hello is not None

    def to_collector(self, msg: m.CoordinatorToCollector) -> None:
        c = self.collector
        if c is None or c.hello is None:
            raise RunError("the collector is not connected")
        try:
            self.coll.send_multipart([c.ident, self.ctl.encode(msg)], zmq.NOBLOCK)
        except zmq.ZMQError:
            raise RunError("the collector is gone") from None

    def poll(self, timeout_ms: int) -> None:
        """Wait up to ``timeout_ms`` for messages or deaths, and handle them all."""
        for sock, _ in self.poller.poll(timeout_ms):
            if sock is self.local or sock is self.remote:
                self._drain_workers(sock)
            elif sock is self.coll:
                self._drain_collector()
            else:
                self._reap(self.peers[sock])

    def _drain_workers(self, sock: zmq.Socket) -> None:
        remote = sock is self.remote
        for _ in range(10_000):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            where = "tcp" if remote else "ipc"
            if len(frames) != 2:
                self.reject(f"malformed frames ({where})")
                continue
            try:
                msg = self.up.decode(frames[1].buffer)
            except codec.DecodeError:
                self.reject(f"undecodable ({where})")
                continue
            ident = frames[0].bytes
            peer = (self.remote_peers if remote else self.local_peers).get(ident)
            key = transport.peer_key(frames[1]) if remote else None
            if peer is None:
                if remote and isinstance(msg, m.Hello) and not self.collector_ready:
                    self.early.append((ident, msg, key))  # admitted once the collector is up
                elif remote and isinstance(msg, m.Hello):
                    self._admit(ident, msg, key)
                elif isinstance(msg, m.Hello):
                    self._local_hello(ident, msg)
                else:
                    self.reject(f"unknown sender ({where})")
                continue
            if remote and key != peer.key:
                self.reject(f"another key on {peer.name}'s connection (tcp)")
                continue
            self._handle(peer, msg)

    def _drain_collector(self) -> None:
        for _ in range(10_000):
            try:
                frames = self.coll.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if len(frames) != 2:
                self.reject("malformed frames (collector link)")
                continue
            try:
                msg = self.results.decode(frames[1].buffer)
            except codec.DecodeError:
                self.reject("undecodable (collector link)")
                continue
            c = self.collector
            if c is not None and c.hello is not None and frames[0].bytes == c.ident:
                if isinstance(msg, m.Hello):
                    self.reject("second hello (collector link)")
                elif isinstance(msg, m.Admitted):
                    self._configure(msg.worker_id)
                elif self.listener is not None:
                    self.listener.on_collector(msg)
            elif isinstance(msg, m.Hello):
                self._collector_hello(frames[0].bytes, msg)
            else:
                self.reject("not the collector (collector link)")

    def reject(self, kind: str) -> None:
        """Count a dropped message; the first of each kind is logged, a flood is not."""
        if kind not in self.rejected:
            if len(self.rejected) >= _MAX_REJECT_KINDS:
                kind = "other"
            else:
                print(f"harness: rejected a message: {kind}", file=sys.stderr, flush=True)
        self.rejected[kind] += 1

    def _warn(self, lines: list[str]) -> None:
        for line in lines:
            if line not in self.warned:
                self.warned.add(line)
                print(f"harness: warning: {line}", file=sys.stderr, flush=True)

    # --- peers ---------------------------------------------------------------

    def _token_ok(self, hello: m.Hello) -> bool:
        return secrets.compare_digest(hello.token.encode(), self.token.encode())

    def _hello_ok(self, msg: m.Hello, role: str, peer: Peer | None) -> bool:
        """A local child's Hello: its role, the run's token and version, and the pid we started."""
        return (
            peer is not None and peer.popen is not None and peer.hello is None
            and msg.role == role and self._token_ok(msg)
            and msg.protocol_version == m.PROTOCOL_VERSION and msg.pid == peer.popen.pid
        )  # fmt: skip

    def _collector_hello(self, ident: bytes, msg: m.Hello) -> None:
        c = self.collector
        if not self._hello_ok(msg, "collector", c):
            self.reject("bad hello (collector link)")
            return
        assert c is not None
        c.ident, c.hello = ident, msg

    def _local_hello(self, ident: bytes, msg: m.Hello) -> None:
        w = self.workers.get(msg.worker_id) if isinstance(msg.worker_id, int) else None
        if w is None or w.remote or not self._hello_ok(msg, "worker", w):
            self.reject("bad hello (ipc)")
            return
        w.ident, w.hello = ident, msg
        self.local_peers[ident] = w

    def _admit(self, ident: bytes, hello: m.Hello, key: str | None) -> None:
        """A remote worker's Hello: check it, give it an id, and tell it what to run."""
        net = self.run.network
        assert net is not None
        remote = sum(1 for w in self.workers.values() if w.remote)
        refusal = None
        if key is None:
            refusal = "no CURVE key"
        elif not self._token_ok(hello):
            refusal = "wrong token"
        elif hello.protocol_version != m.PROTOCOL_VERSION:
            refusal = (
                f"protocol version {hello.protocol_version}, this run speaks {m.PROTOCOL_VERSION}"
            )
        elif hello.role != "worker":
            refusal = "not a worker"
        elif not self.accepting or remote >= net.remote_workers:
            refusal = "this run has all the workers it asked for"
        else:
            refusal = self._slot_refusal(hello)
        if refusal is not None:
            self.reject(f"remote worker refused: {refusal}")
            self.send(Peer("stranger", ident, remote=True), m.Refused(refusal))
            return
        wid = len(self.run.slots) + (self._slot(hello) if self.launcher else remote)
        name = f"harness-worker-{wid} ({hello.host[:100]})"
        w = Peer(name, ident, worker_id=wid, remote=True, hello=hello, key=key)
        self.remote_peers[ident] = w
        self.workers[wid] = w
        self.admitting[wid] = w
        self.to_collector(m.Admit(wid, key))  # Configure follows its Admitted: see m.Admitted

    def _configure(self, wid: int) -> None:
        """The collector has the worker's key: the worker may now connect to it, and start."""
        w = self.admitting.pop(wid, None)
        if w is None:
            self.reject("admitted an unknown worker (collector link)")
            return
        eng = self.run.engine
        self.send(w, m.Configure(wid, eng.kind, eng.args, eng.device, eng.tp, eng.cpu_kv_cache_gb or 1,
                                 self.events_port, events_key=self.events_keys[0],
                                 telemetry_s=self.run.config.telemetry_s,
                                 sampling=eng.sampling))  # fmt: skip

    @staticmethod
    def _slot(hello: m.Hello) -> int:
        slot = hello.launch.get("slot", "")
        return int(slot) if slot.isdigit() else -1

    def _slot_refusal(self, hello: m.Hello) -> str | None:
        """A launcher's worker joins as the worker of its slot; nobody else joins its run."""
        if self.launcher is None:
            return None
        slot = self._slot(hello)
        if hello.launch.get("launcher") != self.launcher.name or slot < 0:
            return f"this run's workers are started by its {self.launcher.name} launcher"
        if not slot < self.run.config.remote_workers:
            return f"no slot {slot} in this run"
        if len(self.run.slots) + slot in self.workers:
            return f"slot {slot} has joined already"
        return None

    def _handle(self, peer: Peer, msg: m.WorkerToCoordinator) -> None:
        if isinstance(msg, m.Ping):
            self.send(peer, m.Pong(msg.t_ns, time.monotonic_ns()))
            peer.last_seen = time.monotonic()
            peer.dropped = max(peer.dropped, msg.dropped)
            return
        if isinstance(msg, m.Hello):
            self.reject(f"second hello ({'tcp' if peer.remote else 'ipc'})")
            return
        peer.last_seen = time.monotonic()
        if isinstance(msg, m.Done):
            if self.listener is not None:
                self.listener.on_done(peer, msg)
        elif isinstance(msg, m.Ready):
            if msg.info.worker_id != peer.worker_id:
                self.reject("ready for another worker")
                return
            peer.info = msg.info
            peer.ready = True
            self._warn(startup_warnings(msg.info.engine_config))
        elif isinstance(msg, m.StartupFailed):
            raise RunError(f"{peer.name} failed to start its engine: {msg.error[:500]}")
        elif isinstance(msg, m.Heartbeat):
            peer.dropped = max(peer.dropped, msg.dropped)

    # --- processes -----------------------------------------------------------

    def _spawn(self, name: str, ident: bytes, module: str, config: object,
               env: dict[str, str], cores: list[int]) -> Peer:  # fmt: skip
        self.run.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.run.log_dir / f"{name}.log"
        full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        conf = os.path.join(self.ipc_dir, f"{name}.json")
        m.write_config(conf, config)
        with open(log, "wb") as fh:
            popen = subprocess.Popen(
                [sys.executable, "-m", module, name, conf],
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
        peer = Peer(name, ident, popen, pidfd, log)
        self.peers[pidfd] = peer
        self.poller.register(pidfd, zmq.POLLIN)
        return peer

    def _spawn_all(self) -> None:
        run = self.run
        # On CPU engines, the harness's own processes keep to the cores that the
        # model's threads leave free, so they never preempt the model.
        spare = sorted({c for slot in run.slots for c in slot.spare_cores})
        if spare:
            os.sched_setaffinity(0, spare)
        ccfg = CollectorConfig(
            coordinator_addr=self.collector_addr,
            events_addr=self.events_addr,
            events_tcp=self.events_tcp,
            token=self.token,
            slo=run.config.slo,
            parent_pid=os.getpid(),
            events_secret=self.events_keys[1] if self.events_tcp else None,
            records=[str(p) for p in run.records],
            save_token_times=run.save_token_times,
        )
        self.collector = self._spawn(
            "harness-collector", b"collector", "harness.collector", ccfg, {}, spare
        )
        eng = run.engine
        for slot in run.slots:
            wcfg = m.WorkerConfig(
                worker_id=slot.worker_id,
                coordinator_addr=self.control_addr,
                collector_addr=self.events_addr,
                token=self.token,
                engine=eng.kind,
                engine_args=eng.args,
                device=eng.device if eng.kind == "vllm" else "sim",
                devices=slot.devices,
                telemetry_s=run.config.telemetry_s,
                sampling=eng.sampling,
            )
            w = self._spawn(f"harness-worker-{slot.worker_id}", b"", "workers.main", wcfg,
                            slot.env, slot.spare_cores)  # fmt: skip
            w.worker_id = slot.worker_id  # its identity is known once its Hello comes
            self.workers[slot.worker_id] = w

    def start(self, on_tick: Callable[[Fleet], None] | None = None) -> None:
        """Start every process and wait until the collector and all workers are ready.

        ``on_tick`` (the console) sees the fleet about every ``TICK_S`` while it waits.
        """
        self._spawn_all()
        self.spawned_at = time.time()
        if self.launcher is not None:
            self.launcher.launch(self.server_key, self.token)
        run = self.run
        deadline = time.monotonic() + run.limits.startup_timeout_s
        next_tick = 0.0
        n = run.total_workers
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
                    f"engine start-up timed out after {run.limits.startup_timeout_s:g}s "
                    f"({', '.join(late) or 'harness-collector'} not ready; see {run.log_dir})"
                )
            self.poll(100)
            if self.collector_ready:
                early, self.early = self.early, []
                for ident, hello, key in early:
                    self._admit(ident, hello, key)
            self.check_hung()
            if on_tick is not None and time.monotonic() >= next_tick:
                next_tick = time.monotonic() + TICK_S
                on_tick(self)
            dead = [p for p in [*self.peers.values(), *self.workers.values()] if not p.alive]
            if dead:
                p = dead[0]
                how = "was lost" if p.remote else "exited"
                raise RunError(
                    f"{p.name} {how} during start-up ({p.exit_reason}){_colon(p.log_tail())}"
                )
        self.accepting = False

    def own_processes(self) -> dict[str, psutil.Process]:
        """The harness's own processes, for its cost: this one and the collector."""
        if not hasattr(self, "_own"):
            self._own = {"coordinator": psutil.Process()}
            c = self.collector
            if c is not None and c.popen is not None:
                try:
                    self._own["collector"] = psutil.Process(c.popen.pid)
                except psutil.Error:
                    pass
            for p in self._own.values():
                p.cpu_percent(None)  # counts from here
        return self._own

    def gpu_count(self) -> int:
        """GPUs the live workers' engines run on (0 on CPU)."""
        return sum(
            len(w.info.devices)
            for w in self.live_workers()
            if w.info is not None and w.info.device == "cuda"
        )

    def live_workers(self) -> list[Peer]:
        return [w for w in self.workers.values() if w.alive]

    def _reap(self, peer: Peer) -> None:
        """A child process ended (its pidfd said so)."""
        if not peer.alive or peer.popen is None or peer.pidfd is None:
            return
        self.poller.unregister(peer.pidfd)
        code = peer.popen.wait(timeout=5)
        try:
            os.killpg(peer.popen.pid, signal.SIGKILL)  # its engine processes die with it
        except (ProcessLookupError, PermissionError):
            pass
        self.lose(peer, f"exit code {code}" if code >= 0 else f"killed by signal {-code}")

    def lose(self, peer: Peer, why: str) -> None:
        """A worker is gone: its requests still in flight fail with the reason."""
        peer.alive = False
        peer.exit_reason = why
        if peer is self.collector:
            raise RunError(f"the collector died ({why}){_colon(peer.log_tail())}")
        if peer.remote:
            self.send(peer, m.Shutdown())  # if it is only cut off, it stops
        if not peer.outstanding and not peer.recent_done:
            return  # it had no requests (it may have died before the collector connected)
        specs = list(peer.outstanding.values())
        done = [m.started_of(s, 0) for s in peer.recent_done]
        peer.outstanding.clear()
        peer.recent_done.clear()
        wid = peer.worker_id if peer.worker_id is not None else -1
        lost = [m.started_of(s, 0) for s in specs]
        reason = f"worker {wid} died ({why})"
        self.to_collector(m.Lost(wid, lost, reason, time.monotonic_ns(), done))
        if self.listener is not None and specs:
            self.listener.on_lost(peer, specs)

    def check_hung(self) -> None:
        if self.launcher is not None:
            for slot, why in self.launcher.lost():
                self._launcher_lost(slot, why)
        now = time.monotonic()
        for w in list(self.workers.values()):
            if not w.alive:
                continue
            if not w.remote and w.ready and now - w.last_seen > HEARTBEAT_TIMEOUT_S:
                assert w.popen is not None
                w.popen.kill()  # its pidfd then reports the death
            elif w.remote and now - w.last_seen > REMOTE_SILENCE_S:
                self.lose(w, self._silence(w, now))

    def _silence(self, w: Peer, now: float) -> str:
        """Why a silent remote worker is lost, with what its launcher knows (an unreachable actor)."""
        why = f"silent for {now - w.last_seen:.0f}s"
        note = self.launcher.note(self._slot(w.hello)) if self.launcher and w.hello else None
        return f"{why}; {note}" if note else why

    def _launcher_lost(self, slot: int, why: str) -> None:
        """The launcher saw a worker end (an actor or a node lost, a worker that exited)."""
        wid = len(self.run.slots) + slot
        w = self.workers.get(wid)
        if w is None:
            raise RunError(f"harness-worker-{wid} ended before it joined: {why}")
        if w.alive:
            self.lose(w, why)

    def worker_envs(self) -> list[WorkerEnv]:
        out = []
        for w in self.workers.values():
            info = w.info
            launch = w.hello.launch if w.hello else {}
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
                    dropped_events=w.dropped,
                    launcher=launch.get("launcher", "remote") if w.remote else "local",
                    node=launch.get("node", ""),
                )
            )
        return out

    # --- shutdown ------------------------------------------------------------

    def _ask_to_stop(self) -> None:
        for w in self.workers.values():
            if w.remote or (w.alive and w.ready and w.ident):
                self.send(w, m.Shutdown())  # remote: it stops its own engine
            elif w.alive and w.popen is not None:
                w.popen.terminate()  # still starting its engine: it cannot hear Shutdown yet
        c = self.collector
        if c is not None and c.alive and c.popen is not None:
            try:
                if not self.collector_ready:
                    raise RunError("not connected")
                self.to_collector(m.Stop())
            except RunError:
                c.popen.terminate()  # cannot hear Stop: not connected yet

    def close(self) -> None:
        """Stop every child and its descendants (vLLM's EngineCore included). Never hangs."""
        self._ask_to_stop()
        children = [p for p in self.peers.values() if p.popen is not None]
        procs: list[psutil.Process] = []
        for c in children:
            try:
                p = psutil.Process(c.popen.pid)  # type: ignore[union-attr]
                procs.append(p)
                procs.extend(p.children(recursive=True))
            except psutil.NoSuchProcess:
                pass
        pids = {c.popen.pid for c in children}  # type: ignore[union-attr]
        psutil.wait_procs([p for p in procs if p.pid in pids], timeout=SHUTDOWN_GRACE_S)
        for p in procs:
            try:
                if p.is_running():
                    p.kill()
            except psutil.NoSuchProcess:
                pass
        _wait_dead(procs, 5.0)
        for c in children:
            _kill_session(c)
        # A moment for the Shutdowns to reach remote workers (local ones are stopped above).
        if self.remote is not None:
            self.remote.close(linger=1000)
        if self.auth is not None:
            self.auth.stop()  # type: ignore[attr-defined]
        self.local.close(0)
        self.coll.close(0)
        self.ctx.term()
        shutil.rmtree(self.ipc_dir, ignore_errors=True)
        if self.launcher is not None:
            # After the Shutdowns: workers that were ready end their engines by themselves;
            # one still starting cannot hear it and is stopped at once.
            self.launcher.close(0.0 if self.accepting else LAUNCHED_GRACE_S)


def _wait_dead(procs: list[psutil.Process], timeout_s: float) -> None:
    """Until every process has ended. A killed grandchild stays a zombie until init reaps
    it, which can take seconds (psutil.wait_procs waits for that); a zombie is dead."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = []
        for p in procs:
            try:
                if p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.NoSuchProcess:
                pass
        if not alive:
            return
        procs = alive
        time.sleep(0.01)


def _kill_session(c: Peer) -> None:
    assert c.popen is not None
    try:
        os.killpg(c.popen.pid, signal.SIGKILL)  # anything left in its session
    except (ProcessLookupError, PermissionError):
        pass
    if c.popen.poll() is None:
        try:
            c.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    if c.pidfd is not None:
        os.close(c.pidfd)
