"""Every message type encodes and decodes to an equal value on the socket it travels."""

from __future__ import annotations

import numpy as np
import pytest

from protocol import codec
from protocol import messages as m
from protocol.results import (
    BenchmarkResult,
    Dist,
    Load,
    RequestCounts,
    Throughput,
    TimeSeries,
    WorkerStats,
)

_D = Dist(3, 1.0, 1.0, 0.5, 0.5, 1.5, 1.0, 1.4, 1.45, 1.49, 1.499)
RESULT = BenchmarkResult(
    index=0, name="constant@2/s", load=Load("constant", 2.0, None, 1.9, 3, 1.5),
    requests=RequestCounts(10, 8, 1, 1, 0, 0, 1), duration_s=5.0,
    throughput=Throughput(1.6, 20.0, 40.0, 60.0, 25.0, 3), ttft_ms=_D, itl_ms=_D, tpot_ms=None,
    e2e_ms=_D, dispatch_lag_ms=_D, engine_queue_ms=None, engine_prefill_ms=None,
    prompt_tokens=_D, output_tokens=_D, workers=[WorkerStats(0, 8, 1, 100, 20.0)],
    timeseries=TimeSeries([1.0], [2], [2], [20], [1], 1.0), errors={"boom": 1},
)  # fmt: skip

SPEC = m.RequestSpec(7, [1, 2, 3], 16, 123_456_789, 2, m.PHASE_WARMUP, 123_456_999)
INFO_B = m.BenchInfo(3, "poisson@4/s", "poisson", 100, 4.0, None, 8)
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
    (codec.to_coordinator, m.Ping(123, 4)),
    (codec.to_coordinator, m.Hello("worker", 3, 999, "node1", 1, "tok", {"python": "3.11"})),
    (codec.to_coordinator, m.Ready(INFO)),
    (codec.to_coordinator, m.StartupFailed(0, "ValueError: bad model")),
    (codec.to_coordinator, m.Heartbeat(0, 5)),
    (codec.to_coordinator, m.Done(1, [4, 5, 6], [5])),
    (codec.from_collector, m.Progress(0, 10, 1, 640, 12.5, 99, 2, 3.5)),
    (codec.from_collector, m.Progress(0, 0, 0, 0, None, 99)),
    (codec.from_collector, m.BenchResult(0, RESULT)),
    (codec.from_collector, m.BenchResult(0, RESULT, partial=True)),
    (codec.from_collector, m.Hello("collector", -1, 5, "", m.PROTOCOL_VERSION, "tok")),
    (codec.from_collector, m.Admitted(3)),
    (codec.to_collector, m.BeginBench(1, 1000, 64, 128, 256, 4096)),
    (codec.to_collector, m.Extend(1, 1 << 20)),
    (codec.to_collector, m.EndBench(1, 64, INFO_B)),
    (codec.to_collector, m.Lost(0, [m.Started(1, 0, 0, 5, 0, 8, 4)], "worker 0 died", 77)),
    (codec.to_collector, m.Snapshot(1, INFO_B)),
    (codec.to_collector, m.Stop()),
    (codec.to_collector, m.Admit(3, "iHVRxBK[U(DOqsT/dZAOBdm[&G@Y4oX1pY8X9rn=")),
    (
        codec.events,
        m.Events(
            0,
            1,
            np.array([1, 2], np.int64).tobytes(),
            np.array([1, 3], np.int32).tobytes(),
            np.array([10, 11], np.int64).tobytes(),
            [m.Started(1, 0, 0, 5, 6, 128, 64, 7)],
            [m.Finished(2, 64, 99, "length", m.EngineTimes(1, 2, 3, 4, 0))],
            [m.Failed(3, 100, "boom", False)],
        ),
    ),
    (
        codec.events,
        m.Telemetry(
            1,
            [
                m.TelemetrySample(
                    10**12,
                    40,
                    3.5,
                    1.0,
                    42.5,
                    60.0,
                    2,
                    10,
                    7,
                    0,
                    0,
                    0,
                    180.0,
                    900.5,
                    [m.GpuSample("0", 97.0, 70_000.0, 650.5, 1980.0, 61.0, 650.1)],
                )
            ],
            {"engine": "vLLM SchedulerStats"},
        ),  # fmt: skip
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
        m.CollectorToCoordinator,
        m.WorkerToCollector,
    ):
        union_types |= set(getattr(u, "__args__", (u,)))
    assert union_types == {type(msg) for _, msg in CASES}


@pytest.mark.parametrize(
    "junk",
    [b"", b"\xff\x00garbage", b"\x92\xa6submit\x01", b"\x92\xa3\xff\xfe\xfd\x01", b"\xa2\xc3\x28"],
    ids=["empty", "garbage", "short", "non-utf8-tag", "non-utf8-str"],
)
def test_garbage_is_a_decode_error(junk):
    with pytest.raises(codec.DecodeError):
        codec.to_worker().decode(junk)


def test_wrong_socket_type_is_rejected():
    data = codec.to_coordinator().encode(m.Heartbeat(0, 1))
    with pytest.raises(codec.DecodeError):
        codec.to_worker().decode(data)
