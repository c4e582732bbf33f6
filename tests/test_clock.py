"""A remote worker's map of its clock onto the coordinator's (workers/clock.py)."""

from __future__ import annotations

import random

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


def test_times_recorded_between_random_changes_stay_in_order():
    """As a worker records them: mostly now, sometimes a stamp up to 1 ms old, with the
    offset moving up and down by up to 100 us at random moments in between."""
    rng = random.Random(18)
    c = HeadClock()
    now, got = 10 * MS, []
    for _ in range(20_000):
        now += rng.randrange(1, 50_000)
        if rng.random() < 0.02:
            c.set(rng.randrange(-100_000, 100_000), now)
        t = now - (rng.randrange(MS) if rng.random() < 0.1 else 0)
        got.append((t, c.to_head(t)))
    got.sort()
    heads = [h for _, h in got]
    assert heads == sorted(heads)
