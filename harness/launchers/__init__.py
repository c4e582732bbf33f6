"""Launchers start a run's workers elsewhere, through a scheduler that already places them.

Each launched worker is a plain ``harness worker --connect`` that joins the head over TCP,
told its slot (``HARNESS_LAUNCH_SLOT``) so the head knows which worker it is. What the
launcher sees of its workers (an actor or a node lost, and why) reaches the fleet through
:meth:`Launcher.lost`, read on the coordinator's own tick. Slurm needs no launcher here:
``scripts/slurm/harness.sbatch`` starts the head and the workers itself.
"""

from __future__ import annotations

from typing import Protocol


class Launcher(Protocol):
    name: str

    def launch(self, server_key: str, token: str) -> None:
        """Start every worker (without waiting for their engines)."""

    def lost(self) -> list[tuple[int, str]]:
        """Workers (by slot) that ended since the last call, each with the launcher's reason."""

    def note(self, slot: int) -> str | None:
        """What the launcher knows of a worker that went silent, if anything."""

    def close(self, grace_s: float) -> None:
        """Stop what is left of the workers (those told to stop get ``grace_s`` to end by
        themselves) and release what was reserved. Never hangs."""


def _prctl(option: int, value: int) -> None:
    """Linux's prctl; elsewhere nothing."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return
    libc.prctl(option, value, 0, 0, 0)


def die_with_parent() -> None:
    """In a child before exec: SIGKILL it when the thread that started it ends.

    For children whose parent can be SIGKILLed (by Ray, by Slurm, by a person), which
    cannot then stop them.
    """
    import signal

    _prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def adopt_orphans() -> None:
    """Become the parent of descendants whose own parent dies (vLLM's engine core outlives
    a killed frontend), so that this process can still find and stop them."""
    _prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
