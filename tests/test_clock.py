"""A remote worker's map of its clock onto the coordinator's (workers/clock.py)."""

from __future__ import annotations

import random
import time

import zmq

from workers.clock import SLEW_FACTOR, HeadClock

MS = 1_000_000


def test_before_anything_is_recorded_a_new_offset_applies_at_once():
    c = HeadClock()
    c.set(-7_000 * MS, 5 * MS, slew=False)  # the join's probes: a skewed host, seconds away
    assert c.to_head(6 * MS) == 6 * MS - 7_000 * MS
    assert c.to_head(1 * MS) == 1 * MS - 7_000 * MS


def test_a_step_down_is_slewed_and_the_map_never_runs_backwards():
    c = HeadClock()
    c.set(1 * MS, 0, slew=False)
    before = c.to_head(100 * MS)
    delta = 50_000
    c.set(1 * MS - delta, 100 * MS)
    assert c.offset_ns == 1 * MS - delta
    assert c.to_head(100 * MS) == before  # where the map stood
    end = 100 * MS + delta * SLEW_FACTOR
    assert c.to_head(end) == end + 1 * MS - delta  # and where it arrives
    heads = [c.to_head(t) for t in range(99 * MS, end + MS, 1_000)]
    assert heads == sorted(heads)
    steps = [b - a for a, b in zip(heads, heads[1:], strict=False)]
    assert min(steps) >= 1_000 * (1 - 1 / SLEW_FACTOR) - 1  # forward at 0.95 or more


def test_a_stamp_taken_before_a_change_keeps_the_offset_of_its_time():
    c = HeadClock()
    c.set(1 * MS, 0, slew=False)
    c.set(3 * MS, 20 * MS)
    assert c.to_head(15 * MS) == 15 * MS + 1 * MS  # a receipt stamped before, mapped after


def test_times_recorded_between_random_changes_stay_in_order_and_where_they_were():
    """As a worker records them: mostly now, sometimes a stamp up to 1 ms old, with the
    offset moving up and down by up to 100 us at random moments in between (each change
    set at the moment of the call). A time mapped once maps the same ever after."""
    rng = random.Random(18)
    c = HeadClock()
    now, got = 10 * MS, []
    for _ in range(20_000):
        now += rng.randrange(1, 50_000)
        if rng.random() < 0.005:
            c.set(rng.randrange(-100_000, 100_000), now)
        t = now - (rng.randrange(MS) if rng.random() < 0.1 else 0)
        got.append((t, c.to_head(t)))
    assert [c.to_head(t) for t, _ in got] == [h for _, h in got]
    got.sort()
    heads = [h for _, h in got]
    assert heads == sorted(heads)


def test_a_pong_that_changes_nothing_adds_no_corner():
    c = HeadClock()
    c.set(5 * MS, 0, slew=False)
    c.set(4 * MS, 10 * MS)
    old = c.to_head(11 * MS)  # mid-slew: a queue time vLLM reports minutes later
    for i in range(10_000):  # hours of heartbeats that find the same offset
        c.set(4 * MS, 20 * MS + i * 1_000 * MS)
    assert c.to_head(11 * MS) == old


def test_a_worker_steps_its_map_during_the_join_and_slews_it_once_its_engine_runs():
    from protocol import messages as m
    from workers.main import Worker

    key = zmq.curve_keypair()[0].decode()
    cfg = m.WorkerConfig(0, "ipc:///tmp/harness-clock-test-c", "ipc:///tmp/harness-clock-test-e",
                         "t", "sim", remote=True, server_key=key)  # fmt: skip
    w = Worker(cfg)
    try:
        clock = w.outbox.clock

        def pong(offset_ns: int) -> None:  # a probe with no round trip: exactly this offset
            now = time.monotonic_ns()
            w._on_message(m.Pong(now, now + offset_ns), now)

        pong(-3_600_000 * MS)  # the join: an hour away, no engine yet
        at = time.monotonic_ns()
        assert clock.to_head(at) == at - 3_600_000 * MS  # at once, no slew from 0
        w.engine = object()  # type: ignore[assignment]
        w.clock = type(w.clock)()  # the next probe alone decides the offset
        pong(-3_600_000 * MS + 1 * MS)
        later = time.monotonic_ns() + 1_000
        assert clock.to_head(later) < later - 3_600_000 * MS + 1 * MS  # slewing, not there
        assert clock.offset_ns == -3_600_000 * MS + 1 * MS
    finally:
        w.link.close()
        w.push.close(0)
        w.ctx.term()
