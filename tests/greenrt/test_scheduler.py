"""Scheduler invariants: no lost wakeups, no double scheduling, fair lanes,
greenlet reuse that leaks nothing between tasks."""

import contextvars
import random
import sys

import pytest

import greenrt
from greenrt import lowlevel


def test_many_tasks_waking_each_other_lose_no_wakeup(run):
    """A ring of N tasks passes a token M times; each hop parks and is rescheduled by
    the previous task. A lost wakeup hangs (timeout guard); a double schedule raises
    InvariantViolation in the hub."""
    N, M = 200, 20
    parked = [None] * N
    hops = [0]

    def node(i):
        for _ in range(M):
            me = greenrt.current_task()
            parked[i] = me
            lowlevel.park(lambda: False)
            parked[i] = None
            hops[0] += 1
            if hops[0] == N * M:
                return
            nxt = parked[(i + 1) % N]
            while nxt is None:  # the next node has not parked yet
                greenrt.checkpoint()
                nxt = parked[(i + 1) % N]
            lowlevel.reschedule(nxt)

    def main():
        with greenrt.region() as r:
            for i in range(N):
                r.spawn(node, i)
            while parked[0] is None:
                greenrt.checkpoint()
            lowlevel.reschedule(parked[0])
        return hops[0]

    assert run(main) == N * M


def test_rescheduling_a_runnable_task_is_detected(run):
    def main():
        me = greenrt.current_task()
        with pytest.raises(greenrt.InvariantViolation):
            greenrt.lowlevel.current_hub()._schedule(me)
            greenrt.lowlevel.current_hub()._schedule(me)
        greenrt.lowlevel.current_hub()._ready.remove(me)
        me._queued = False
        with pytest.raises(greenrt.InvariantViolation):
            lowlevel.reschedule(me)  # not parked
        return True

    assert run(main)


def test_random_wake_storm(run):
    """Random tasks wake random parked tasks; every park is matched by exactly one
    wake and everything terminates."""
    rng = random.Random(1234)
    parked = {}
    woken = [0]
    N = 300

    def sleeper(i):
        parked[i] = greenrt.current_task()
        lowlevel.park(lambda: False)

    def waker():
        while parked or woken[0] < N:
            if parked:
                i = rng.choice(sorted(parked))
                t = parked.pop(i)
                lowlevel.reschedule(t)
                woken[0] += 1
            greenrt.checkpoint()

    def main():
        with greenrt.region() as r:
            for i in range(N):
                r.spawn(sleeper, i)
            r.spawn(waker)
        return woken[0]

    assert run(main) == N


def test_cancel_lane_cannot_starve_ready_tasks(run):
    """Tasks that swallow Cancelled and keep checkpointing live in the cancel lane;
    a plain ready task still progresses while they do."""
    progress = []

    def stubborn():
        try:
            greenrt.sleep_forever()
        except greenrt.Cancelled:
            pass
        for _ in range(50):
            try:
                greenrt.checkpoint()
            except greenrt.Cancelled:
                pass

    def plain():
        for i in range(50):
            greenrt.checkpoint()
            progress.append(i)

    hub_picks = []

    def main():
        hub = lowlevel.current_hub()
        with greenrt.region() as r:
            stubs = [r.spawn(stubborn) for _ in range(40)]
            greenrt.checkpoint()
            for s in stubs:
                s.cancel()
            r.spawn(plain)
            # while the stubborn tasks fill the cancel lane, the plain task still runs
            while len(progress) < 10:
                hub_picks.append(len(hub._cancel_lane))
                greenrt.checkpoint()
        return max(hub_picks)

    max_cancel_lane = run(main)
    assert len(progress) == 50
    assert max_cancel_lane >= 16  # the cancel lane really was busy


def test_timers_fire_in_deadline_order(run):
    order = []

    def sleeper(t0, d):
        # absolute deadlines from one reading: how late each task starts on a loaded
        # machine cannot reorder them (a relative sleep armed late could)
        greenrt.sleep_until(t0 + d)
        order.append(d)

    def main():
        t0 = greenrt.now()
        with greenrt.region() as r:
            for d in (0.03, 0.01, 0.02, 0.0, 0.015):
                r.spawn(sleeper, t0, d)
        return order

    assert run(main) == [0.0, 0.01, 0.015, 0.02, 0.03]


def test_busy_tasks_do_not_starve_timers(run):
    def main():
        stop = []

        def spinner():
            while not stop:
                greenrt.checkpoint()

        with greenrt.region() as r:
            r.spawn(spinner)
            r.spawn(spinner)
            greenrt.sleep(0.01)  # must wake although two tasks never block
            stop.append(1)
        return True

    assert run(main)


var = contextvars.ContextVar("var", default="unset")


def test_greenlet_reuse_resets_context_and_exception_state(run):
    seen = []

    def first():
        var.set("first")
        try:
            raise ValueError("inside first")
        except ValueError:
            greenrt.checkpoint()  # switch away while handling

    def second():
        seen.append((var.get(), sys.exc_info()[0]))

    def main():
        var.set("main")
        with greenrt.region() as r:
            r.spawn(first)
        hub = lowlevel.current_hub()
        free_before = len(hub._free_glets)
        with greenrt.region() as r:
            r.spawn(second)  # runs on the greenlet `first` returned
        assert free_before >= 1
        return seen

    # the child sees the spawner's context (copied at spawn), not the previous task's
    assert run(main) == [("main", None)]


def test_child_context_is_a_copy(run):
    def child():
        assert var.get() == "parent"
        var.set("child")

    def main():
        var.set("parent")
        with greenrt.region() as r:
            r.spawn(child)
        return var.get()

    assert run(main) == "parent"


def test_finished_task_releases_its_function_and_greenlet(run):
    import gc
    import weakref

    class Big:
        pass

    def main():
        big = Big()
        ref = weakref.ref(big)
        with greenrt.region() as r:
            t = r.spawn(lambda b: None, big)
        del big
        gc.collect()
        return ref() is None, t._glet is None

    assert run(main) == (True, True)


def test_illegal_task_transition_raises(run):
    def main():
        t = greenrt.current_task()
        with pytest.raises(greenrt.InvariantViolation):
            t._transition(greenrt.TaskState.COMPLETED)
        return True

    assert run(main)
