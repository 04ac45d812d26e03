"""The floor: a throwaway bare greenlet hub with no features.

What greenrt's features cost is measured against this. The hub is the calling
greenlet; tasks run in child greenlets; a deque is the only run queue; a yield is
"append myself to the deque and switch to the hub" (two switches per round trip:
task -> hub -> next task); ``ping_pong_direct`` is the same with a direct hand-off
(one switch: task -> next task), the floor of a hub that hands off like greenrt's
does. Spawning appends a task record; a task gets a greenlet
only when it first runs, taken from a free list that finished tasks return theirs
to, and joining is "the hub loop ran until the deque was empty".

No cancellation, no budgets, no ids, no contextvars reset, no tracing, no error
handling beyond "an exception ends the run". Not for use; for comparison only.

Standalone: ``python bench/bare_hub.py`` prints the three floor figures.
"""

from __future__ import annotations

import os
import sys
from collections import deque

from greenlet import getcurrent, greenlet

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402  (the shared clock)


class BareHub:
    __slots__ = ("ready", "glet", "free")

    def __init__(self):
        self.ready: deque = deque()
        self.glet = getcurrent()
        self.free: list = []

    # A "task" is a list [fn, args, greenlet-or-None]; cheapest mutable record.

    def spawn(self, fn, *args) -> list:
        t = [fn, args, None]
        self.ready.append(t)
        return t

    def run(self) -> None:
        """Run until nothing is runnable (join everything spawned)."""
        ready = self.ready
        pop = ready.popleft
        free = self.free
        while ready:
            t = pop()
            g = t[2]
            if g is None:
                g = free.pop() if free else greenlet(self._worker, self.glet)
                t[2] = g
            g.switch(t)

    def _worker(self, t) -> None:
        hub = self.glet
        free = self.free
        me = getcurrent()
        while True:
            t[0](*t[1])
            t[2] = None
            free.append(me)
            t = hub.switch()


class _YieldHub:
    """The ping-pong floor: the ready deque holds greenlets; a yield is
    ``ready.append(me); hub.switch()``."""

    def __init__(self):
        self.ready: deque = deque()
        self.glet = getcurrent()

    def run(self) -> None:
        ready = self.ready
        pop = ready.popleft
        while ready:
            pop().switch()


def spawn_join(n: int) -> float:
    """Spawn ``n`` trivial tasks on a fresh bare hub and run them all; seconds."""
    hub = BareHub()

    def noop():
        pass

    t0 = _common.clock()
    spawn = hub.spawn
    for _ in range(n):
        spawn(noop)
    hub.run()
    return _common.clock() - t0


def spawn_join_no_reuse(n: int) -> float:
    """Like ``spawn_join`` but a new greenlet per task, never reused; seconds."""
    ready: deque = deque()
    hub = getcurrent()

    def noop():
        pass

    t0 = _common.clock()
    for _ in range(n):
        ready.append(greenlet(noop, hub))
    pop = ready.popleft
    while ready:
        pop().switch()
    return _common.clock() - t0


def ping_pong(n: int) -> float:
    """Two tasks, each yielding ``n`` times through the bare hub; seconds for the
    ``2 * n`` round trips."""
    hub = _YieldHub()
    h = hub.glet

    def worker():
        me = getcurrent()
        append = hub.ready.append
        sw = h.switch
        for _ in range(n):
            append(me)
            sw()

    hub.ready.append(greenlet(worker, h))
    hub.ready.append(greenlet(worker, h))
    t0 = _common.clock()
    hub.run()
    return _common.clock() - t0


def ping_pong_direct(n: int) -> float:
    """Like ``ping_pong`` but a yielding task switches straight to the next task in
    the deque (one switch per round trip, no hub in between: the hand-off design).
    Seconds for the ``2 * n`` round trips."""
    ready: deque = deque()
    hub = getcurrent()

    def worker():
        me = getcurrent()
        append = ready.append
        pop = ready.popleft
        for _ in range(n):
            append(me)
            pop().switch()  # may be ``me`` itself: then the switch returns at once

    ready.append(greenlet(worker, hub))
    ready.append(greenlet(worker, hub))
    t0 = _common.clock()
    pop = ready.popleft
    while ready:
        pop().switch()
    return _common.clock() - t0


def raw_switch(n: int) -> float:
    """Two greenlets switching straight to each other, ``n`` round trips (two
    switches each, no hub, no queue); seconds."""
    main = getcurrent()

    def other():
        sw = main.switch
        while True:
            sw()

    g = greenlet(other)
    sw = g.switch
    t0 = _common.clock()
    for _ in range(n):
        sw()
    dt = _common.clock() - t0
    g.throw()  # GreenletExit ends it
    return dt


def park_idle(n: int) -> list:
    """Start ``n`` greenlets that each switch back to the caller and stay suspended
    (the memory floor of an idle blocked task). Returns them (keep them alive)."""
    main = getcurrent()

    def body():
        main.switch()

    gs = [greenlet(body) for _ in range(n)]
    for g in gs:
        g.switch()
    return gs


if __name__ == "__main__":
    n = 100_000
    print(f"bare spawn+join (free list): {min(spawn_join(n) for _ in range(3)) / n * 1e6:.2f} us/task")
    print(f"greenlet per task (no reuse): {min(spawn_join_no_reuse(n) for _ in range(3)) / n * 1e6:.2f} us/task")
    print(f"bare hub ping-pong: {2 * n / min(ping_pong(n) for _ in range(3)) / 1e6:.3f} M round trips/s")
    print(f"bare hand-off ping-pong: {2 * n / min(ping_pong_direct(n) for _ in range(3)) / 1e6:.3f} M round trips/s")
    print(f"raw greenlet switch: {n / min(raw_switch(n) for _ in range(3)) / 1e6:.3f} M round trips/s")
