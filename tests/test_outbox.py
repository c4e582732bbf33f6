"""The worker's outbox (workers/engine.py): what an engine reports, batched into messages."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from protocol import messages as m
from workers import engine
from workers.clock import HeadClock

WINDOW_S = 0.2  # long beside one loop iteration, so the test does not race the clock


@pytest.fixture
def window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "EVENTS_EVERY_NS", int(WINDOW_S * 1e9))


def _spec(rid: int) -> m.RequestSpec:
    return m.RequestSpec(rid, [5, 6], 4, sched_ns=1, bench=0)


def _tokens(ev: m.Events) -> list[int]:
    return np.frombuffer(ev.tok_rid, np.int64).tolist()


def _times(ev: m.Events) -> list[int]:
    return np.frombuffer(ev.tok_t_ns, np.int64).tolist()


def test_steps_faster_than_the_window_leave_together_and_done_is_not_held(window):
    events: list[tuple[float, m.Events]] = []
    done: list[tuple[float, m.Done]] = []

    async def go() -> None:
        ob = engine.Outbox(0, lambda e: events.append((time.monotonic(), e)),
                           lambda d: done.append((time.monotonic(), d)))  # fmt: skip
        ob.started(_spec(1), 10)  # after a quiet spell: leaves this iteration
        await asyncio.sleep(0)
        assert len(events) == 1
        for step in range(3):  # three engine steps, back to back
            ob.tokens(1, 1, 100 + step)
            await asyncio.sleep(0)
        ob.finished(1, 3, "length")
        await asyncio.sleep(0)
        assert len(events) == 1  # the steps wait for the window
        assert [d.rids for _, d in done] == [[1]]  # but the slot is freed at once
        await asyncio.sleep(WINDOW_S * 2)

    asyncio.run(go())
    assert len(events) == 2
    (t1, first), (t2, second) = events
    assert first.started[0].rid == 1 and not _tokens(first)
    assert _tokens(second) == [1, 1, 1]
    assert _times(second) == [100, 101, 102]  # their own times
    assert second.finished[0].rid == 1 and second.seq == first.seq + 1
    assert t2 - t1 >= WINDOW_S * 0.99
    assert done[0][0] < t2


def test_a_step_after_a_quiet_window_leaves_at_once(window):
    events: list[m.Events] = []

    async def go() -> None:
        ob = engine.Outbox(0, events.append, lambda _: None)
        ob.tokens(1, 1, 1)
        await asyncio.sleep(0)
        await asyncio.sleep(WINDOW_S * 1.5)
        ob.tokens(1, 1, 2)
        await asyncio.sleep(0)
        assert len(events) == 2

    asyncio.run(go())


def test_flush_sends_what_is_held_now_and_the_old_timer_is_gone(window):
    events: list[tuple[float, m.Events]] = []
    done: list[m.Done] = []

    async def go() -> None:
        ob = engine.Outbox(0, lambda e: events.append((time.monotonic(), e)), done.append)
        ob.tokens(1, 1, 1)
        await asyncio.sleep(0)
        await asyncio.sleep(WINDOW_S / 2)
        ob.tokens(1, 1, 2)  # held: due at the first message plus the window
        ob.failed(2, "boom")
        ob.flush()  # at stop: nothing may wait for a timer
        flushed = time.monotonic()
        assert len(events) == 2 and _times(events[1][1]) == [2]
        assert [d.failed for d in done] == [[2]]
        ob.tokens(1, 1, 3)  # due a window after the flush, not at the cancelled timer's time
        await asyncio.sleep(WINDOW_S * 2)
        assert len(events) == 3 and _times(events[2][1]) == [3]
        assert events[2][0] - flushed >= WINDOW_S * 0.99

    asyncio.run(go())
    assert len(done) == 1


def test_an_offset_that_moves_while_events_are_held_moves_none_of_them(window):
    """Each time is on the coordinator's clock as recorded: a request's end never lands
    before its last token (the collector would refuse it) when a Pong moves the offset."""
    events: list[m.Events] = []
    t = time.monotonic_ns()

    async def go() -> None:
        ob = engine.Outbox(0, events.append, lambda _: None)
        ob.clock.set(1_000_000, time.monotonic_ns(), slew=False)
        ob.started(_spec(1), 10)
        await asyncio.sleep(0)
        ob.tokens_batch(np.array([1]), t)
        ob.tokens(1, 1, t + 1)
        ob.finished(1, 2, "length")
        # At once (no slew): only mapping as recorded keeps the held times where they were.
        ob.clock.set(1_050_000, time.monotonic_ns(), slew=False)
        await asyncio.sleep(WINDOW_S * 2)

    asyncio.run(go())
    held = events[1]
    assert _times(held) == [t + 1_000_000, t + 1 + 1_000_000]
    assert _times(held)[-1] <= held.finished[0].end_ns


def test_vllms_own_times_pass_unchanged_on_the_heads_host_and_mapped_elsewhere():
    events: list[m.Events] = []
    times = m.EngineTimes(1_000, 0, 3_000, 4_000, 2)  # 0: unknown

    async def go() -> None:
        local = engine.Outbox(0, events.append, lambda _: None)
        local.finished(1, 4, "length", times)
        remote = engine.Outbox(1, events.append, lambda _: None)
        remote.clock.set(-500, 0, slew=False)
        remote.finished(2, 4, "length", times)
        local.flush()
        remote.flush()

    asyncio.run(go())
    assert HeadClock().identity
    assert events[0].finished[0].engine == times
    assert events[1].finished[0].engine == m.EngineTimes(500, 0, 2_500, 3_500, 2)
