"""The offset between a remote worker's clock and the coordinator's, NTP-style.

CLOCK_MONOTONIC is one clock per host, not across hosts. A worker on another
node probes the coordinator (Ping, Pong) and keeps the offset of the probe
with the shortest round trip among the recent ones: a short round trip leaves
little room for asymmetric delay, so its error is at most half of it. Probing
goes on during the run, so slow drift between the hosts' clocks is followed.
"""

from __future__ import annotations

import bisect
from collections import deque


class ClockSync:
    def __init__(self, window: int = 32) -> None:
        self._samples: deque[tuple[int, int]] = deque(maxlen=window)  # (rtt, offset)

    def add(self, sent_ns: int, remote_ns: int, received_ns: int) -> None:
        """One probe: sent and received on this host's clock, ``remote_ns`` on the coordinator's."""
        rtt = received_ns - sent_ns
        if rtt < 0:
            return
        self._samples.append((rtt, remote_ns - (sent_ns + received_ns) // 2))

    @property
    def samples(self) -> int:
        return len(self._samples)

    def _best(self) -> tuple[int, int]:
        return min(self._samples) if self._samples else (0, 0)

    @property
    def offset_ns(self) -> int:
        """Add this to a local timestamp to put it on the coordinator's clock."""
        return self._best()[1]

    @property
    def error_ns(self) -> int:
        """Bound on the offset's error: half the best round trip."""
        return self._best()[0] // 2


# A new offset is reached over this many times the change, never in a step: a step down
# would put an event recorded just after it before one recorded just before (the collector
# refuses an output or an end earlier than its request's last), and a step up would
# stretch one gap. Slewed so, local time still maps forward at 0.95 or more.
SLEW_FACTOR = 20
# The map's last corners kept. A corner comes only with a change (a Pong that changes
# nothing adds none), so these reach back far beyond any stamp still to be mapped (vLLM's
# queue time of a request that ran for minutes).
KNOTS = 256


class HeadClock:
    """This host's clock mapped onto the coordinator's: a piecewise-linear, increasing map.

    Each new offset is reached by a slew from where the map stands; a time is mapped by
    the offset that held at that time (a receipt stamped before a change and recorded
    after it keeps the older offset), so the map never runs backwards.
    """

    def __init__(self) -> None:
        self._t = [0]  # the corners: local times, increasing
        self._off = [0]  # and the offset at each (linear in between, flat outside)
        self._last_t, self._last_off = 0, 0  # the last corner: past it, one addition

    @property
    def identity(self) -> bool:
        """Nothing ever moved: every time maps to itself (a worker on the head's host)."""
        return self._off == [0]

    @property
    def offset_ns(self) -> int:
        """The offset the map is at, or is slewing to."""
        return self._off[-1]

    def set(self, offset_ns: int, now_ns: int, slew: bool = True) -> None:
        """Move to ``offset_ns``, slewed from ``now_ns`` (or from the end of a slew still in
        progress); at once with ``slew`` False (before anything was recorded: the join's
        first probes). ``now_ns`` must be no earlier than any time mapped so far (the
        moment of the call, not the stamp of the Pong that brought the offset). No corner
        is ever placed before the last one, so no time already mapped moves, by even 1 ns."""
        if not slew:
            self._t, self._off = [now_ns], [offset_ns]
            self._last_t, self._last_off = now_ns, offset_ns
            return
        if offset_ns == self._last_off:
            return  # nothing changes
        t, off = list(self._t), list(self._off)
        begin = max(now_ns, self._last_t)
        if begin > self._last_t:
            t.append(begin)
            off.append(self._last_off)
        t.append(begin + abs(offset_ns - self._last_off) * SLEW_FACTOR)
        off.append(offset_ns)
        self._t, self._off = t[-KNOTS:], off[-KNOTS:]
        self._last_t, self._last_off = t[-1], off[-1]

    def to_head(self, t_ns: int) -> int:
        """``t_ns`` (this host's CLOCK_MONOTONIC) on the coordinator's clock."""
        if t_ns >= self._last_t:  # on every token: keep it to a comparison and an addition
            return t_ns + self._last_off
        return t_ns + self._at(t_ns)

    def _at(self, t_ns: int) -> int:
        t, off = self._t, self._off
        if t_ns >= t[-1]:
            return off[-1]
        i = bisect.bisect_right(t, t_ns)
        if i == 0:
            return off[0]
        t0, t1, o0, o1 = t[i - 1], t[i], off[i - 1], off[i]
        return o0 + (o1 - o0) * (t_ns - t0) // (t1 - t0)
