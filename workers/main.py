"""Worker process entry: ``python -m workers.main harness-worker-N CONFIG_JSON``.

The first argument only names the process for ``ps``. The coordinator sets
``CUDA_VISIBLE_DEVICES`` and the vLLM CPU variables in this process's
environment before it starts, so nothing here can import torch too early.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from typing import Any

import msgspec
import zmq

from protocol import codec
from protocol import messages as m
from protocol.transport import make_socket, worker_identity
from workers.engine import Engine, Outbox

EXIT_STARTUP_FAILED = 3
EXIT_ENGINE_DIED = 4
EXIT_ORPHANED = 5


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1] if text else ''}".strip().rstrip(":")


class Worker:
    def __init__(self, cfg: m.WorkerConfig) -> None:
        self.cfg = cfg
        self.ctx = zmq.Context()
        self.dealer = make_socket(self.ctx, zmq.DEALER, identity=worker_identity(cfg.worker_id))
        self.dealer.connect(cfg.coordinator_addr)
        self.push = make_socket(self.ctx, zmq.PUSH)
        self.push.connect(cfg.collector_addr)
        self.up = codec.to_coordinator()
        self.down = codec.to_worker()
        self.ev = codec.events()
        self.outbox = Outbox(cfg.worker_id, self._send_events, self._send_up)
        self.engine: Engine = self._build_engine()
        self.stopping = asyncio.Event()
        self.bad_messages = 0

    def _build_engine(self) -> Engine:
        cfg = self.cfg
        if cfg.engine == "sim":
            from workers.sim_engine import SimEngine, SimParams

            params = msgspec.convert(cfg.engine_args, SimParams)
            return SimEngine(cfg.worker_id, params, self.outbox)
        from workers.vllm_engine import VllmEngine

        return VllmEngine(
            cfg.worker_id, dict(cfg.engine_args), cfg.device, cfg.devices, self.outbox
        )

    def _send_events(self, msg: m.Events) -> None:
        self.push.send(self.ev.encode(msg), copy=False)

    def _send_up(self, msg: Any) -> None:
        self.dealer.send(self.up.encode(msg), copy=False)
        # Sending can consume the edge-triggered readiness of the socket's FD.
        asyncio.get_running_loop().call_soon(self._on_readable)

    def _on_readable(self) -> None:
        while self.dealer.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            data = self.dealer.recv(zmq.NOBLOCK, copy=False)
            try:
                msg = self.down.decode(data.buffer)
            except codec.DecodeError:
                self.bad_messages += 1
                continue
            if isinstance(msg, m.Submit):
                now = time.monotonic_ns()
                for spec in msg.requests:
                    self.outbox.started(spec, now)
                    self.engine.add(spec)
            elif isinstance(msg, m.Cancel):
                self.engine.abort(msg.rids, msg.reason)
            elif isinstance(msg, m.Shutdown):
                self.stopping.set()

    async def _heartbeat(self) -> None:
        parent = os.getppid()
        while True:
            if os.getppid() != parent:
                os._exit(EXIT_ORPHANED)  # the coordinator is gone: nobody will stop us
            self._send_up(m.Heartbeat(self.cfg.worker_id, time.monotonic_ns()))
            if getattr(self.engine, "dead", False):
                self.outbox.flush()
                os._exit(EXIT_ENGINE_DIED)
            await asyncio.sleep(self.cfg.heartbeat_s)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        cfg = self.cfg
        self._send_up(
            m.Hello(
                role="worker",
                worker_id=cfg.worker_id,
                pid=os.getpid(),
                host=socket.gethostname(),
                protocol_version=m.PROTOCOL_VERSION,
                token=cfg.token,
                versions={"python": sys.version.split()[0]},
            )
        )
        hb = loop.create_task(self._heartbeat())
        try:
            info = await self.engine.start()
        except Exception as e:  # noqa: BLE001 - reported to the coordinator, one line
            self._send_up(m.StartupFailed(cfg.worker_id, _one_line(e)))
            hb.cancel()
            await asyncio.sleep(0.2)
            return EXIT_STARTUP_FAILED
        loop.add_reader(self.dealer.getsockopt(zmq.FD), self._on_readable)
        self._send_up(m.Ready(info))
        self._on_readable()
        await self.stopping.wait()
        loop.remove_reader(self.dealer.getsockopt(zmq.FD))
        hb.cancel()
        self.outbox.flush()
        ob = self.outbox
        print(
            f"harness-worker-{cfg.worker_id}: {ob.messages_sent} event messages, "
            f"{ob.events_sent} token entries, {self.bad_messages} rejected messages",
            flush=True,
        )
        await self.engine.shutdown()
        return 0

    def close(self) -> None:
        self.dealer.close(0)
        self.push.close(linger=2000)
        self.ctx.term()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m workers.main NAME CONFIG_JSON", file=sys.stderr)
        return 2
    cfg = msgspec.json.decode(argv[1], type=m.WorkerConfig)
    # The coordinator owns Ctrl-C: it aborts requests and then tells us to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    worker = Worker(cfg)
    try:
        return asyncio.run(worker.run())
    finally:
        worker.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
