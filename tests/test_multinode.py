"""Multi-node: remote workers join over TCP (here on loopback), with a token and a clock offset."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgspec
import psutil
import pytest
import zmq

from protocol import messages as m
from tests.clusters import free_port
from tests.conftest import harness_cmd
from workers.clock import ClockSync

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "test-token-123"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def free_port_pair() -> int:
    """A port whose successor is free too (the collector listens on PORT+1)."""
    return free_port(2)


class Head:
    """A head (``harness run --listen``) and what it printed for the workers to join it."""

    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc, self.port = proc, port
        assert proc.stderr is not None
        self.printed = proc.stderr.readline()  # the join command, before anything else
        joins = "harness worker --connect" in self.printed
        self.key = self.printed.split("--server-key '", 1)[1].split("'", 1)[0] if joins else ""
        self.token = self.printed.rsplit("--token ", 1)[1].strip() if joins else ""

    def communicate(self, timeout: float) -> tuple[str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return out, self.printed + err

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode


def head(
    tmp_path: Path,
    port: int,
    remote: int,
    options: dict[str, object],
    engine: str = "sim",
    token: str | None = TOKEN,
) -> Head:
    """``harness run --listen`` on this port, waiting for ``remote`` workers."""
    cmd = harness_cmd(
        tmp_path, engine=engine, listen=f"tcp://127.0.0.1:{port}", remote_workers=remote,
        startup_timeout=60 if engine == "sim" else 400, **options,
    )  # fmt: skip
    env = {**ENV, "HARNESS_CACHE": str(tmp_path / "cache")}
    env.pop("HARNESS_TOKEN", None)
    if token is not None:
        env["HARNESS_TOKEN"] = token
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return Head(proc, port)


def worker(
    h: Head, *extra: str, token: str = TOKEN, key: str | None = None, join_s: int = 60
) -> subprocess.Popen[str]:
    return worker_at(h.port, key or h.key, *extra, token=token, join_s=join_s)


def worker_at(
    port: int, key: str, *extra: str, token: str = TOKEN, join_s: int = 60
) -> subprocess.Popen[str]:
    """``harness worker`` joining whatever listens on this port with this key."""
    cmd = [sys.executable, "-m", "harness", "worker", "--connect", f"tcp://127.0.0.1:{port}"]
    cmd += ["--server-key", key]
    return subprocess.Popen(
        [*cmd, "--token", token, "--join-timeout", str(join_s), *extra],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def constant_rate(sim: str, rate: int, n: int, output_tokens: int) -> dict[str, object]:
    """One local sim worker at a constant rate; the remote ones join it."""
    return dict(workers=1, sim=sim, profile="constant", rate=rate, max_requests=n,
                data=f"prompt_tokens=8,output_tokens={output_tokens}")  # fmt: skip


def report(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "out.json").read_text())


def test_clock_sync_keeps_the_probe_with_the_shortest_round_trip():
    c = ClockSync(window=4)
    assert (c.offset_ns, c.error_ns, c.samples) == (0, 0, 0)
    c.add(1_000, 501_000, 3_000)  # rtt 2000: offset 501000 - 2000
    c.add(10_000, 600_000, 30_000)  # rtt 20000, asymmetric: ignored while a better one is kept
    assert (c.offset_ns, c.error_ns) == (499_000, 1_000)
    c.add(5, 0, 1)  # a negative round trip is not a probe
    assert c.samples == 2
    for t in range(4):  # the window moves on: old probes are forgotten
        c.add(100_000 * (t + 1), 100_000 * (t + 1) - 7_000 + 50, 100_000 * (t + 1) + 100)
    assert (c.offset_ns, c.error_ns) == (-7_000, 50)


def test_outbox_moves_every_local_time_to_the_coordinators_clock():
    import asyncio

    import numpy as np

    from workers.engine import Outbox

    sent: list[m.Events] = []
    off = -7_000_000_000

    async def go() -> None:
        ob = Outbox(3, sent.append, lambda _: None)
        ob.clock.set(off, 0, slew=False)
        ob.started(m.RequestSpec(1, [5, 6], 4, sched_ns=111, bench=0), 10_000_000_000)
        ob.tokens(1, 2, 10_000_000_500)
        ob.finished(1, 4, "length", m.EngineTimes(10_000_000_100, 0, 10_000_000_400, 0, 1))
        ob.failed(2, "boom")
        ob.flush()

    before = time.monotonic_ns()
    asyncio.run(go())
    (ev,) = sent
    assert ev.started[0].sched_ns == 111  # already the coordinator's
    assert ev.started[0].recv_ns == 10_000_000_000 + off
    assert np.frombuffer(ev.tok_t_ns, np.int64).tolist() == [10_000_000_500 + off]
    eng = ev.finished[0].engine
    assert eng == m.EngineTimes(10_000_000_100 + off, 0, 10_000_000_400 + off, 0, 1)
    for t in (ev.finished[0].end_ns, ev.failed[0].end_ns):
        assert before + off <= t <= time.monotonic_ns() + off


def test_remote_workers_join_with_a_skewed_clock_and_every_request_counts(tmp_path):
    port = free_port_pair()
    key_file = tmp_path / "head.key"
    opts = constant_rate("prefill_ms=20,decode_ms=2", 150, 300, 12)
    h = head(tmp_path, port, 2, {**opts, "key_file": key_file})
    # For scripts that start the workers (scripts/slurm/harness.sbatch): the key, 0600.
    assert key_file.read_text() == h.key + "\n" and key_file.stat().st_mode & 0o777 == 0o600
    plain = worker(h)
    # This host's clock pretends to be 1000 s ahead: only the offset estimate can fix that.
    skewed = worker(h, "--clock-skew-s", "1000")
    _, err = h.communicate(timeout=120)
    assert h.returncode == 0, err
    assert f"--connect tcp://127.0.0.1:{port} --server-key '{h.key}'" in h.printed
    assert h.printed.rstrip().endswith("--token $HARNESS_TOKEN")
    for w in (plain, skewed):
        out, werr = w.communicate(timeout=30)
        assert w.returncode == 0, werr
        assert "joined tcp://127.0.0.1" in out
    rep = report(tmp_path)
    b = rep["benchmarks"][0]
    assert b["requests"]["completed"] == 300 and b["requests"]["failed"] == 0
    assert b["output_tokens"]["min"] == b["output_tokens"]["max"] == 12
    per = {w["worker_id"]: w for w in b["workers"]}
    assert sorted(per) == [0, 1, 2]
    assert all(w["completed"] > 0 for w in per.values())
    assert sum(w["output_tokens"] for w in per.values()) == 300 * 12
    envs = {w["worker_id"]: w for w in rep["environment"]["workers"]}
    assert [envs[i]["remote"] for i in (0, 1, 2)] == [False, True, True]
    offsets = sorted(envs[i]["clock_offset_ns"] for i in (1, 2))
    assert abs(offsets[0] + 1000 * 10**9) < 50 * 10**6  # the skewed host: -1000 s
    assert abs(offsets[1]) < 50 * 10**6  # the same host: no offset
    assert all(0 < envs[i]["clock_error_ns"] < 50 * 10**6 for i in (1, 2))
    # Every first token comes after the 20 ms prefill: times from both clocks line up.
    assert b["ttft_ms"]["min"] >= 19.0
    assert b["ttft_ms"]["max"] < 10_000
    assert b["dispatch_lag_ms"]["min"] > -1.0
    assert rep["config"]["listen"] == f"tcp://127.0.0.1:{port}"
    assert TOKEN not in json.dumps(rep)


def curve_socket(ctx: zmq.Context, kind: int, server_key: str | None) -> zmq.Socket:
    """A client socket: encrypted to ``server_key`` with a fresh key of its own, or plain."""
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    if server_key is not None:
        public, secret = zmq.curve_keypair()
        sock.setsockopt(zmq.CURVE_SERVERKEY, server_key.encode())
        sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
    return sock


def test_stray_clients_are_refused_and_the_run_completes(tmp_path):
    port = free_port_pair()
    h = head(tmp_path, port, 1, constant_rate("decode_ms=2", 100, 400, 10))
    wrong = worker(h, token="not-the-token")
    _, werr = wrong.communicate(timeout=60)
    assert wrong.returncode == 6 and "wrong token" in werr, werr
    # Without the head's key no connection is even made: the worker hears nothing.
    other_key = zmq.curve_keypair()[0].decode()
    blind = worker(h, key=other_key, join_s=3)
    _, berr = blind.communicate(timeout=60)
    assert blind.returncode == 6 and "no answer" in berr, berr
    ctx = zmq.Context()
    enc = msgspec.msgpack.Encoder()
    dec = msgspec.msgpack.Decoder(m.CoordinatorToWorker)
    try:
        stray = curve_socket(ctx, zmq.DEALER, h.key)
        stray.setsockopt(zmq.ROUTING_ID, b"w0")  # a local worker's identity: no use over TCP
        stray.connect(f"tcp://127.0.0.1:{port}")
        stray.send(enc.encode(m.Hello("worker", -1, 1, "x", 999, TOKEN)))
        assert stray.poll(10_000), "no answer to a Hello of another protocol version"
        answer = dec.decode(stray.recv())
        assert isinstance(answer, m.Refused) and "protocol version 999" in answer.reason
        for junk in (b"\xc1junk", enc.encode(m.Done(0, [1, 2])), enc.encode(m.Ping(5))):
            stray.send(junk)
        plain = curve_socket(ctx, zmq.DEALER, None)  # no CURVE at all: never connects
        plain.connect(f"tcp://127.0.0.1:{port}")
        plain.send(enc.encode(m.Hello("worker", -1, 1, "x", m.PROTOCOL_VERSION, TOKEN)))
        for key in (None, h.key):  # the events port admits only keys the token check admitted
            push = curve_socket(ctx, zmq.PUSH, key)
            push.connect(f"tcp://127.0.0.1:{port + 1}")
            push.send(b"\x00garbage", zmq.NOBLOCK)
            push.send(enc.encode(m.Events(0, 1, b"\x01" * 7, b"", b"", [], [], [])), zmq.NOBLOCK)
        good = worker(h)
        assert good.stdout is not None and "joined" in good.stdout.readline()
        late = worker(h)  # the run has the one remote worker it asked for
        _, lerr = late.communicate(timeout=60)
        assert late.returncode == 6 and "has all the workers it asked for" in lerr
        _, err = h.communicate(timeout=120)
        assert h.returncode == 0, err
        # It was told to stop: it ends at once (in about 0.05 s here), not after the 30 s
        # silence that would mean its Shutdown was lost. Read to the end, never a full pipe.
        out, gerr = good.communicate(timeout=60)
        why = f"worker exit {good.returncode}: {out[-500:]} {gerr[-1000:]} head: {err[-1000:]}"
        assert good.returncode == 0, why
        assert not plain.poll(0)  # it never got an answer
    finally:
        ctx.destroy(0)
    rep = report(tmp_path)
    b = rep["benchmarks"][0]
    assert b["requests"]["completed"] == 400 and b["requests"]["failed"] == 0
    assert b["output_tokens"]["min"] == b["output_tokens"]["max"] == 10
    assert b["collector"]["rejected"] == 0  # nothing reached the collector
    rejected = rep["rejected_messages"]
    assert rejected["remote worker refused: wrong token"] == 1
    assert rejected["unknown sender (tcp)"] >= 2
    assert rejected["undecodable (tcp)"] >= 1
    assert "rejected a message: remote worker refused: wrong token" in err


def test_a_worker_is_told_to_start_only_once_the_collector_admits_its_key(tmp_path):
    """libzmq never retries a connection its authenticator refused once: a worker that
    connected to the events port before the collector had its key would push every event
    into the void. With the collector stopped, the worker waits; then every event counts."""
    from tests.test_reliability import children_named

    port = free_port_pair()
    h = head(tmp_path, port, 1, constant_rate("decode_ms=2", 100, 200, 6))
    collector = children_named(h.proc.pid, "harness-collector")[0]
    sockets_of(collector.pid, port + 1, "LISTEN")  # its Hello to the head follows at once
    time.sleep(1.0)  # for the head to take it: a Hello before it would wait anyway
    collector.suspend()  # its gate (and its authenticator) cannot answer
    try:
        w = worker(h)
        assert w.stdout is not None
        sockets_of(w.pid, port, "ESTABLISHED")  # its Hello follows at once; the head answers in ms
        waited = select_lines(w.stdout, 2.0)
        assert waited == [], f"told to start while the collector was stopped: {waited}"
    finally:
        collector.resume()
    assert "joined" in w.stdout.readline()
    _, err = h.communicate(timeout=120)
    out, werr = w.communicate(timeout=60)
    assert h.returncode == 0 and w.returncode == 0, f"{err[-1500:]} {werr[-1000:]}"
    rep = report(tmp_path)
    b = rep["benchmarks"][0]
    per = {x["worker_id"]: x for x in b["workers"]}
    envs = {x["worker_id"]: x for x in rep["environment"]["workers"]}
    assert per[1]["completed"] > 0 and envs[1]["remote"] and envs[1]["dropped_events"] == 0
    assert b["requests"]["completed"] == 200 and b["output_tokens"]["min"] == 6


@pytest.mark.parametrize("pongs", [True, False], ids=["answers pings", "no pongs"])
def test_a_worker_whose_events_key_is_refused_says_so_and_stops(tmp_path, pongs):
    """A head whose collector will not take the worker's key (here a stand-in for the head,
    its events port's authenticator refusing everyone): the worker must not go on pushing
    events nobody receives. It tells the head why and exits 3. A head that answers no
    clock probe is left at once, the events port's watch closed (else exit would wait)."""
    from zmq.auth.thread import ThreadAuthenticator

    port = free_port_pair()
    ctx = zmq.Context()
    auth = ThreadAuthenticator(ctx)
    auth.start()

    class Gate:  # one authenticator per context, one gate per ZAP domain
        def __init__(self, admit: bool) -> None:
            self.admit = admit

        def callback(self, domain: str, key: bytes) -> bool:
            return self.admit

    auth.configure_curve_callback(domain="control", credentials_provider=Gate(True))
    auth.configure_curve_callback(domain="events", credentials_provider=Gate(False))
    (c_pub, c_sec), (e_pub, e_sec) = zmq.curve_keypair(), zmq.curve_keypair()
    control, events = ctx.socket(zmq.ROUTER), ctx.socket(zmq.PULL)
    for sock, secret, domain, at in (
        (control, c_sec, "control", port),
        (events, e_sec, "events", port + 1),
    ):
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
        sock.setsockopt(zmq.ZAP_DOMAIN, domain.encode())
        sock.bind(f"tcp://127.0.0.1:{at}")
    enc, dec = msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder(m.WorkerToCoordinator)
    w = worker_at(port, c_pub.decode())
    failed: list[m.StartupFailed] = []
    try:
        deadline = time.monotonic() + 60
        while w.poll() is None and time.monotonic() < deadline:
            if not control.poll(100):
                continue
            ident, data = control.recv_multipart()
            msg = dec.decode(data)
            if isinstance(msg, m.Hello):
                conf = m.Configure(1, "sim", {}, "sim", 1, 1, port + 1, events_key=e_pub.decode())
                control.send_multipart([ident, enc.encode(conf)])
            elif isinstance(msg, m.Ping) and pongs:
                pong = m.Pong(msg.t_ns, time.monotonic_ns())
                control.send_multipart([ident, enc.encode(pong)])
            elif isinstance(msg, m.StartupFailed):
                failed.append(msg)
        out, err = w.communicate(timeout=30)
    finally:
        if w.poll() is None:
            w.kill()
        auth.stop()
        ctx.destroy(0)
    if not pongs:
        assert w.returncode == 6 and "no clock probe came back" in err, f"{out} {err}"
        assert failed == []
        return
    assert w.returncode == 3, f"{out} {err}"
    assert "the collector's events port refused this worker (key not admitted)" in err
    assert len(failed) == 1 and "refused this worker (key not admitted)" in failed[0].error


def sockets_of(pid: int, port: int, status: str, timeout: float = 60) -> None:
    """Until ``pid`` or a process under it has a TCP socket on ``port`` in ``status``
    (LISTEN: bound to it; ESTABLISHED: connected to it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        for p in procs:
            try:
                conns = p.net_connections("tcp")
            except psutil.NoSuchProcess:
                continue
            ends = [(c.laddr if status == "LISTEN" else c.raddr, c.status) for c in conns]
            if any(a and a.port == port and st == status for a, st in ends):
                return
        time.sleep(0.02)
    raise AssertionError(f"no socket {status} on port {port} under {pid} in {timeout:g}s")


def select_lines(stream, seconds: float) -> list[str]:  # type: ignore[no-untyped-def]
    """The lines a child's pipe gives within ``seconds`` (none, if it stays quiet)."""
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(stream, selectors.EVENT_READ)
    lines, deadline = [], time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0 and sel.select(left):
        line = stream.readline()
        if not line:
            break
        lines.append(line)
    return lines


def test_a_remote_worker_that_goes_silent_is_lost_and_its_requests_fail(tmp_path):
    port = free_port_pair()
    h = head(
        tmp_path,
        port,
        1,
        constant_rate("decode_ms=5", 60, 1200, 40),
        token=None,
    )
    # Without a token the head makes one and prints the command that joins.
    assert f"--connect tcp://127.0.0.1:{port} --server-key '{h.key}' --token " in h.printed
    w = worker(h, token=h.token)
    deadline = time.monotonic() + 60
    while "joined" not in (line := w.stdout.readline() if w.stdout else ""):
        assert time.monotonic() < deadline and line, "the remote worker did not join"
    time.sleep(2.0)
    # The node is gone: no sentinel here, only silence.
    procs = [psutil.Process(w.pid), *psutil.Process(w.pid).children(recursive=True)]
    for p in procs:
        p.send_signal(signal.SIGKILL)
    psutil.wait_procs(procs, timeout=10)
    _, err = h.communicate(timeout=120)
    assert h.returncode == 0, err
    rep = report(tmp_path)
    b = rep["benchmarks"][0]
    q = b["requests"]
    assert q["completed"] + q["failed"] + q["incomplete"] == 1200
    assert q["failed"] > 0
    assert [k for k in b["errors"] if k.startswith("worker 1 died (silent for")] == list(
        b["errors"]
    )
    envs = {e["worker_id"]: e for e in rep["environment"]["workers"]}
    assert envs[1]["exit"].startswith("silent for")
    survivor = [x for x in b["workers"] if x["worker_id"] == 0][0]
    assert survivor["completed"] > 600
    assert not [p for p in psutil.process_iter(["cmdline"]) if _is_remote(p, port)]


def _is_remote(p: psutil.Process, port: int) -> bool:
    cmd = p.info.get("cmdline") or []
    return any(f"127.0.0.1:{port}" in part for part in cmd)


def test_a_listen_address_in_use_is_one_line_and_exit_1(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        h = head(tmp_path, port, 1, constant_rate("decode_ms=1", 10, 10, 2))
        _, err = h.communicate(timeout=60)
    assert h.returncode == 1, err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("harness: error:")]
    assert f"cannot listen on tcp://127.0.0.1:{port}" in line and "in use" in line
    assert "Traceback" not in err


def test_a_remote_worker_killed_while_its_engine_starts_is_reported_within_15_s(tmp_path):
    # 60 s of simulated engine start-up, during which the worker's heartbeat goes on.
    opts = dict(workers=0, sim="startup_s=60,decode_ms=1", max_requests=10,
                data="prompt_tokens=8,output_tokens=2")  # fmt: skip
    h = head(tmp_path, free_port_pair(), 1, opts)
    w = worker(h)
    deadline = time.monotonic() + 60
    assert w.stdout is not None
    while "simulating 60 s of start-up" not in (line := w.stdout.readline()):
        assert time.monotonic() < deadline and line, "the worker did not start its engine"
    time.sleep(12)  # past the silence limit: a worker that heartbeats while it starts lives on
    assert h.proc.poll() is None
    procs = [psutil.Process(w.pid), *psutil.Process(w.pid).children(recursive=True)]
    for p in procs:
        p.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    lines: queue.SimpleQueue[tuple[float, str]] = queue.SimpleQueue()
    threading.Thread(target=lambda: [lines.put((time.monotonic(), ln)) for ln in h.proc.stderr],
                     daemon=True).start()  # fmt: skip
    at, line = lines.get(timeout=15)
    while not line.startswith("harness: error:"):
        at, line = lines.get(timeout=max(0.1, killed + 15 - time.monotonic()))
    assert at - killed < 15, at - killed  # long before --startup-timeout (60 s)
    assert "harness-worker-0 (" in line and "was lost during start-up (silent for 10s)" in line
    assert h.proc.wait(timeout=60) == 1
