"""The virtual clock of a lab run.

Time starts at 0.0 and moves only forward, only when the lab hub finds nothing
runnable and jumps to the earliest timer (``advance_to``). While tasks run, time
stands still: a computation takes no virtual time, so results never depend on how
fast the machine is. Times are floats, compared exactly; the hub sets the clock to a
timer's own ``when`` value (never ``now + delta``), so a timer due at ``t`` is due
exactly when the clock reads ``t``.
"""

from __future__ import annotations


class VirtualClock:
    """A monotonic virtual clock. ``now`` is read directly (hot path)."""

    __slots__ = ("now", "jumps")

    def __init__(self, start: float = 0.0):
        self.now = float(start)
        self.jumps = 0

    def advance_to(self, when: float) -> None:
        """Move the clock to ``when``; never backwards."""
        if when > self.now:
            self.now = when
            self.jumps += 1

    def __repr__(self) -> str:
        return f"VirtualClock(now={self.now!r})"
