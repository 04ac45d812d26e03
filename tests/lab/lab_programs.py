"""Programs the lab tests run (loaded by file path, also from other processes).

Each ``*_violation`` program breaks exactly the property its oracle checks; the
``RESERVE_LINE``-style markers let the tests compute the expected reservation site
instead of hard-coding a line number.
"""

from __future__ import annotations

import greenrt
from greenrt import CancelKind, Cancelled
from greenrt.lowlevel import current_hub


def switchy(tasks: int = 4, rounds: int = 6) -> list:
    """A switch-heavy, timer-using program with a result that depends on the schedule."""
    log: list = []

    def worker(n: int) -> None:
        for i in range(rounds):
            log.append((n, i))
            if i % 3 == 2:
                greenrt.sleep(0.001 * (n + 1))
            else:
                greenrt.checkpoint()

    with greenrt.region(name="workers") as r:
        for n in range(tasks):
            r.spawn(worker, n, name=f"worker{n}")
    return log


def switchy_modified(tasks: int = 4, rounds: int = 6) -> list:
    """``switchy`` with one extra checkpoint in worker 2's third round."""
    log: list = []

    def worker(n: int) -> None:
        for i in range(rounds):
            log.append((n, i))
            if n == 2 and i == 3:
                greenrt.checkpoint()
            if i % 3 == 2:
                greenrt.sleep(0.001 * (n + 1))
            else:
                greenrt.checkpoint()

    with greenrt.region(name="workers") as r:
        for n in range(tasks):
            r.spawn(worker, n, name=f"worker{n}")
    return log


switchy_modified.__qualname__ = "switchy"  # an edited version of the same program


def timer_tie() -> list:
    """Three sleepers due at the same virtual instant: the lab picks the firing order."""
    order: list = []

    def sleeper(n: int) -> None:
        greenrt.sleep(1.0)
        order.append(n)

    with greenrt.region() as r:
        for n in range(3):
            r.spawn(sleeper, n, name=f"sleeper{n}")
    return order


def _noop() -> None:
    pass


def quiescence_violation() -> None:
    """A child schedules a raw hub callback that outlives its region."""

    def scheduler() -> None:
        current_hub().call_later(10.0, _noop)

    with greenrt.region(name="fire-and-forget") as r:
        r.spawn(scheduler, name="scheduler")


def region_leak_violation() -> None:
    """A region entered by hand and never exited."""
    r = greenrt.region(name="abandoned")
    r.__enter__()


def orphan_violation() -> None:
    """A task left sleeping in a region that is never closed: alive after run()."""
    r = greenrt.region(name="abandoned")
    r.__enter__()
    r.spawn(greenrt.sleep_forever, name="forgotten")
    greenrt.sleep(1.0)


def obligation_violation() -> None:
    """A worker reserves a lease and forgets to commit or abort it."""

    def leaky() -> None:
        greenrt.reserve("lease")  # RESERVE_LINE

    with greenrt.region(policy="collect_all") as r:
        r.spawn(leaky, name="leaky")


def _race(outer, drain: bool) -> str:
    """A hand-written race of two contestants spawned into ``outer``."""

    def contestant(delay: float) -> float:
        try:
            greenrt.sleep(delay)
        except Cancelled:
            greenrt.sleep(0.5)  # cleanup that takes a while (allowed while draining)
            raise
        return delay

    fast = outer.spawn(contestant, 1.0, name="fast")
    slow = outer.spawn(contestant, 2.0, name="slow")
    while not (fast.done or slow.done):
        greenrt.sleep(0.1)
    winner, loser = (fast, slow) if fast.done else (slow, fast)
    loser.cancel(CancelKind.RACE_LOST)
    if drain:
        try:
            loser.join()
        except greenrt.TaskCancelledError:
            pass
    return winner.name


def race_violation() -> None:
    """The racer returns without draining the loser."""
    with greenrt.region(name="outer") as outer:
        outer.spawn(_race, outer, False, name="racer")


def race_ok() -> None:
    """The same race, draining the loser (no violation)."""
    with greenrt.region(name="outer") as outer:
        outer.spawn(_race, outer, True, name="racer")


def cleanup_budget_violation() -> None:
    """A cancelled worker's cleanup sleeps longer than its cleanup budget (5 s)."""

    def slow_cleanup() -> None:
        try:
            greenrt.sleep_forever()
        except Cancelled:
            greenrt.sleep(60.0)
            raise

    with greenrt.region() as r:
        t = r.spawn(slow_cleanup, name="slow_cleanup")
        greenrt.sleep(1.0)
        t.cancel()


def swallow_violation() -> None:
    """A cancelled worker swallows its Cancelled and returns normally."""

    def swallower() -> str:
        try:
            greenrt.sleep_forever()
        except Cancelled:
            return "swallowed"
        return "unreachable"

    with greenrt.region() as r:
        t = r.spawn(swallower, name="swallower")
        greenrt.sleep(1.0)
        t.cancel()


def deadlock_violation() -> None:
    """Two tasks join each other: a wait-for cycle."""
    box: dict = {}

    def a() -> None:
        greenrt.checkpoint()
        box["b"].join()

    def b() -> None:
        greenrt.checkpoint()
        box["a"].join()

    with greenrt.region(name="pair") as r:
        box["a"] = r.spawn(a, name="a")
        box["b"] = r.spawn(b, name="b")


def busy_wait() -> None:
    """Waits for virtual time to pass without ever blocking: never ends."""
    start = greenrt.now()
    while greenrt.now() < start + 1.0:
        greenrt.checkpoint()


def uses_time_time() -> float:
    import time

    return time.time()


def uses_time_sleep() -> None:
    import time

    time.sleep(0.001)


def uses_random() -> float:
    import random

    return random.random()


def uses_urandom() -> bytes:
    import os

    return os.urandom(4)


def uses_to_thread() -> int:
    return greenrt.to_thread(lambda: 41) + 1


def uses_lab_rng() -> list:
    import greenrt.lab as lab

    return [lab.rng().randrange(1000) for _ in range(5)]


def long_sleep() -> list:
    out = [greenrt.now()]
    greenrt.sleep(3600.0)
    out.append(greenrt.now())
    with greenrt.move_on_after(10.0) as s:
        greenrt.sleep_forever()
    out.append(greenrt.now())
    out.append(s.cancelled_caught)
    return out


def fails() -> None:
    raise ValueError("boom")
