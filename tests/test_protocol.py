"""Every message type encodes and decodes to an equal value on the socket it travels."""

from __future__ import annotations

import numpy as np
import pytest

from protocol import codec
from protocol import messages as m

SPEC = m.RequestSpec(7, [1, 2, 3], 16, 123_456_789, 2, m.PHASE_WARMUP)
INFO = m.WorkerInfo(1, "cuda", ["0", "1"], 12.5, 4096, {"max_num_seqs": "256"})

CASES = [
    (codec.to_worker, m.Submit([SPEC, SPEC])),
    (codec.to_worker, m.Cancel([1, 2], "aborted: max_seconds")),
    (codec.to_worker, m.Shutdown()),
    (
        codec.to_worker,
        m.Configure(2, "vllm", {"model": "/m", "max_num_seqs": 8}, "auto", 4, 1, 5556, 1.0),
    ),
    (codec.to_worker, m.Refused("wrong token")),
    (codec.to_worker, m.Pong(-5, 10**18)),
    (codec.to_coordinator, m.Ping(123)),
    (codec.to_coordinator, m.Hello("worker", 3, 999, "node1", 1, "tok", {"python": "3.11"})),
    (codec.to_coordinator, m.Ready(INFO)),
    (codec.to_coordinator, m.StartupFailed(0, "ValueError: bad model")),
    (codec.to_coordinator, m.Heartbeat(0, 5)),
    (codec.to_coordinator, m.Done(1, [4, 5, 6], 1)),
    (codec.to_coordinator, m.Progress(0, 10, 1, 640, 12.5, 99)),
    (codec.to_coordinator, m.Progress(0, 0, 0, 0, None, 99)),
    (codec.to_coordinator, m.BenchResult(0, b"\x01\x02")),
    (codec.to_coordinator, m.BenchResult(0, b"", partial=True)),
    (codec.to_collector_control, m.BeginBench(1, 1000)),
    (codec.to_collector_control, m.EndBench(1, 64, b"meta")),
    (codec.to_collector_control, m.Lost(0, [m.Started(1, 0, 0, 5, 0, 8, 4)], "worker 0 died", 77)),
    (codec.to_collector_control, m.Snapshot(1, b"meta")),
    (codec.to_collector_control, m.Stop()),
    (
        codec.events,
        m.Events(
            0,
            1,
            np.array([1, 2], np.int64).tobytes(),
            np.array([1, 3], np.int32).tobytes(),
            np.array([10, 11], np.int64).tobytes(),
            [m.Started(1, 0, 0, 5, 6, 128, 64)],
            [m.Finished(2, 64, 99, "length", m.EngineTimes(1, 2, 3, 4, 0))],
            [m.Failed(3, 100, "boom", False)],
        ),
    ),
]


@pytest.mark.parametrize("make_codec,msg", CASES, ids=lambda x: type(x).__name__)
def test_round_trip(make_codec, msg):
    c = make_codec()
    assert c.decode(c.encode(msg)) == msg


def test_every_message_type_is_covered():
    union_types = set()
    for u in (
        m.CoordinatorToWorker,
        m.WorkerToCoordinator,
        m.CoordinatorToCollector,
        m.WorkerToCollector,
    ):
        union_types |= set(getattr(u, "__args__", (u,)))
    assert union_types == {type(msg) for _, msg in CASES}


@pytest.mark.parametrize("junk", [b"", b"\xff\x00garbage", b"\x92\xa6submit\x01"])
def test_garbage_is_a_decode_error(junk):
    with pytest.raises(codec.DecodeError):
        codec.to_worker().decode(junk)


def test_wrong_socket_type_is_rejected():
    data = codec.to_coordinator().encode(m.Heartbeat(0, 1))
    with pytest.raises(codec.DecodeError):
        codec.to_worker().decode(data)
