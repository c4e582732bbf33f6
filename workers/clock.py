"""The offset between a remote worker's clock and the coordinator's, NTP-style.

CLOCK_MONOTONIC is one clock per host, not across hosts. A worker on another
node probes the coordinator (Ping, Pong) and keeps the offset of the probe
with the shortest round trip among the recent ones: a short round trip leaves
little room for asymmetric delay, so its error is at most half of it. Probing
goes on during the run, so slow drift between the hosts' clocks is followed.
"""

from __future__ import annotations

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
