"""Crashes, signals and hostile traffic: nothing lost, nothing hangs, nothing left behind."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import msgspec
import numpy as np
import psutil
import pytest
import zmq

from protocol import messages as m
from tests.conftest import start_harness

ROOT = Path(__file__).resolve().parent.parent


def start(tmp_path: Path, **options: object) -> subprocess.Popen[str]:
    """``harness run`` on the sim engine, in the background."""
    return start_harness(tmp_path, engine="sim", **options)


def children_named(pid: int, name: str, timeout: float = 30) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [
            c
            for c in psutil.Process(pid).children(recursive=True)
            if any(name in part for part in c.cmdline())
        ]
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no child {name} of {pid}")


def accounted(b: dict) -> bool:
    q = b["requests"]
    return (
        q["scheduled"]
        == q["completed"] + q["failed"] + q["incomplete"] + q["warmup"] + q["cooldown"]
    )


def test_kill_9_of_one_worker_fails_its_requests_and_the_run_goes_on(tmp_path):
    proc = start(
        tmp_path,
        workers="2",
        sim="decode_ms=5",
        profile="constant",
        rate="100",
        max_requests="300",
        data="prompt_tokens=8,output_tokens=50",
    )
    victim = children_named(proc.pid, "harness-worker-1")[0]
    time.sleep(1.5)
    victim.kill()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    rep = json.loads((tmp_path / "out.json").read_text())
    b = rep["benchmarks"][0]
    assert accounted(b)
    assert b["requests"]["failed"] > 0
    assert b["requests"]["completed"] + b["requests"]["failed"] == 300
    assert list(b["errors"]) == ["worker 1 died (killed by signal 9)"]
    w1 = [w for w in rep["environment"]["workers"] if w["worker_id"] == 1][0]
    assert w1["exit"] == "killed by signal 9"
    # The survivor took the rest of the load.
    survivor = [w for w in b["workers"] if w["worker_id"] == 0][0]
    assert survivor["completed"] > 150


def test_sigint_writes_a_partial_report_and_leaves_no_process(tmp_path):
    proc = start(
        tmp_path,
        workers="2",
        sim="decode_ms=10",
        profile="concurrent",
        concurrency="8",
        max_requests="10000",
        data="prompt_tokens=8,output_tokens=20",
    )
    children_named(proc.pid, "harness-worker-1")
    kids = psutil.Process(proc.pid).children(recursive=True)
    time.sleep(2.0)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 15
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    rep = json.loads((tmp_path / "out.json").read_text())
    assert rep["partial"] is True and rep["stop_reason"] == "interrupted"
    b = rep["benchmarks"][0]
    assert accounted(b)
    assert b["requests"]["completed"] > 0
    assert (
        b["requests"]["incomplete"] > 0 or b["requests"]["scheduled"] == b["requests"]["completed"]
    )
    _, alive = psutil.wait_procs(kids, timeout=5)
    assert alive == []


def test_hostile_traffic_is_rejected_and_the_run_completes(tmp_path):
    proc = start(
        tmp_path,
        workers="2",
        sim="decode_ms=2",
        profile="constant",
        rate="200",
        max_requests="400",
        data="prompt_tokens=8,output_tokens=10",
    )
    worker = children_named(proc.pid, "harness-worker-0")[0]
    cfg = msgspec.json.decode(worker.cmdline()[-1], type=m.WorkerConfig)
    ctx = zmq.Context()
    rng = np.random.default_rng(5)
    try:
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(cfg.coordinator_addr)
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.connect(cfg.collector_addr)
        enc = msgspec.msgpack.Encoder()
        hostile_up = [
            b"",
            b"\xc1garbage",
            enc.encode(m.Submit([])),  # a type the coordinator never takes
            enc.encode(m.Hello("worker", 0, 1, "x", 999, "wrong-token")),  # bad version and token
            enc.encode(m.Done(0, [1, 2, 3])),  # from a stranger
            enc.encode(m.Heartbeat(0, 1)),
        ]
        hostile_events = [
            b"\x00\x01\x02",
            enc.encode(m.Cancel([1])),
            enc.encode(m.Events(9, 1, b"\x01" * 7, b"", b"", [], [], [])),  # ragged columns
            enc.encode(m.Events(9, 1, b"", b"", b"", [m.Started(10**12, 0, 0, 1, 1, 1, 1)])),
            enc.encode(m.Events(9, 1, b"", b"", b"", [], [m.Finished(10**9, 1, 1, "length")])),
        ]
        for _ in range(20):
            for msg in hostile_up:
                dealer.send(msg)
            dealer.send_multipart([b"a", b"b", b"c"])
            for msg in hostile_events:
                push.send(msg)
            push.send(rng.bytes(int(rng.integers(1, 200))))
            dealer.send(rng.bytes(int(rng.integers(1, 200))))
            time.sleep(0.02)
    finally:
        ctx.destroy(0)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    rep = json.loads((tmp_path / "out.json").read_text())
    b = rep["benchmarks"][0]
    assert b["requests"]["completed"] == 400 and b["requests"]["failed"] == 0
    assert b["output_tokens"]["min"] == b["output_tokens"]["max"] == 10


def test_ipc_folder_is_private(tmp_path):
    proc = start(
        tmp_path,
        sim="decode_ms=5",
        max_requests="200",
        profile="synchronous",
        data="prompt_tokens=8,output_tokens=10",
    )
    worker = children_named(proc.pid, "harness-worker-0")[0]
    cfg = msgspec.json.decode(worker.cmdline()[-1], type=m.WorkerConfig)
    folder = Path(cfg.coordinator_addr.removeprefix("ipc://")).parent
    assert folder.stat().st_mode & 0o777 == 0o700
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert not folder.exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM])
def test_sigterm_is_handled_like_sigint(tmp_path, sig):
    proc = start(
        tmp_path,
        sim="decode_ms=10",
        profile="synchronous",
        max_requests="1000",
        data="prompt_tokens=8,output_tokens=10",
    )
    children_named(proc.pid, "harness-worker-0")
    time.sleep(1.0)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert json.loads((tmp_path / "out.json").read_text())["partial"] is True


def test_collector_death_stops_the_run_and_keeps_the_last_checkpoint(tmp_path):
    proc = start(
        tmp_path,
        sim="decode_ms=5",
        profile="concurrent",
        concurrency="4",
        max_requests="100000",
        checkpoint_s="1",
        data="prompt_tokens=8,output_tokens=10",
    )
    collector = children_named(proc.pid, "harness-collector")[0]
    out = tmp_path / "out.json"
    deadline = time.monotonic() + 30
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    mid = json.loads(out.read_text())  # a checkpoint, written while the run goes on
    assert mid["partial"] is True and mid["stop_reason"] == "running: checkpoint"
    assert mid["benchmarks"][0]["requests"]["completed"] > 0
    time.sleep(1.5)
    collector.kill()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    lines = [ln for ln in err.splitlines() if ln.startswith("harness:")]
    assert lines == [lines[0]] and lines[0].startswith("harness: error: the collector died")
    assert f"report: {out}" in err
    rep = json.loads(out.read_text())
    assert rep["partial"] is True and "collector died" in rep["stop_reason"]
    b = rep["benchmarks"][0]
    assert b["requests"]["completed"] >= mid["benchmarks"][0]["requests"]["completed"]
    assert b["stop_reason"] == rep["stop_reason"]
