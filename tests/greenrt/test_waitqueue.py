"""``greenrt.lowlevel.WaitQueue``: the public wait queue protocol code builds on.

What its docstring promises, each tried: FIFO hand-off, ``park()`` is a checkpoint, a
cancelled waiter leaves no entry and runs ``on_abort``, a value handed over is never
lost to a cancellation arriving at the same moment, waits are labelled for deadlock
reports, and the lab sees the queue as a shared object."""

from __future__ import annotations

import pytest

import greenrt
from greenrt import lowlevel


def test_fifo_hand_off_with_data_and_values():
    q = lowlevel.WaitQueue()
    got = []

    def waiter(i):
        got.append((i, q.park(data=i)))

    def main():
        with greenrt.region() as r:
            for i in range(3):
                r.spawn(waiter, i)
            while len(q) < 3:
                greenrt.checkpoint()
            assert q.statistics() == {"waiting": 3}
            assert q.first()[1] == 0
            assert q.wake_one("a") is True
            assert q.wake_all("b") == 2
            assert q.wake_one("c") is False
        assert got == [(0, "a"), (1, "b"), (2, "b")]
        assert len(q) == 0

    greenrt.run(main)


def test_park_is_a_checkpoint():
    q = lowlevel.WaitQueue()

    def main():
        with greenrt.cancel_scope() as s:
            s.cancel()
            q.park()  # raises at once: a pending cancellation is delivered
            pytest.fail("park() did not check for cancellation")  # pragma: no cover
        assert len(q) == 0

    greenrt.run(main)


def test_a_cancelled_waiter_leaves_no_entry_and_runs_on_abort():
    q = lowlevel.WaitQueue()
    aborted = []

    def main():
        with greenrt.move_on_after(0.01) as s:
            q.park(on_abort=lambda: aborted.append(len(q)))
        assert s.cancelled_caught
        assert len(q) == 0 and q.tasks() == []
        assert aborted == [0]  # on_abort ran after the waiter had left the queue

    greenrt.run(main)


def test_a_value_handed_over_is_not_lost_to_a_simultaneous_cancel():
    q = lowlevel.WaitQueue()
    result = []

    def waiter(scope_box):
        with greenrt.cancel_scope() as s:
            scope_box.append(s)
            result.append(q.park())
            # The hand-off won: the cancellation comes at the next checkpoint.
            try:
                greenrt.checkpoint()
            except greenrt.Cancelled:
                result.append("cancelled after")
                raise

    def main():
        box = []
        with greenrt.region() as r:
            r.spawn(waiter, box)
            while not q:
                greenrt.checkpoint()
            q.wake_one("permit")  # hand-off first ...
            box[0].cancel()       # ... then a cancel before the waiter ever runs
        assert result == ["permit", "cancelled after"]

    greenrt.run(main)


def test_wake_one_error_raises_in_the_waiter():
    q = lowlevel.WaitQueue()

    def main():
        with greenrt.region() as r:
            def waiter():
                with pytest.raises(KeyError):
                    q.park()
            r.spawn(waiter)
            while not q:
                greenrt.checkpoint()
            assert q.wake_one_error(KeyError("x"))

    greenrt.run(main)


def test_the_label_reaches_deadlock_reports():
    q = lowlevel.WaitQueue()

    def main():
        q.park(what="pool checkout for 'db'")

    with pytest.raises(greenrt.Deadlock) as ei:
        greenrt.run(main)
    assert ei.value.graph["blocked"][0]["waits_for"] == "pool checkout for 'db'"


def test_a_parked_task_reports_what_it_waits_for():
    q = lowlevel.WaitQueue()
    seen = []

    def main():
        with greenrt.region() as r:
            t = r.spawn(lambda: q.park(what="a label"))
            while not q:
                greenrt.checkpoint()
            seen.append(t.waiting_for)
            q.wake_all()
        assert seen == ["a label"]

    greenrt.run(main)


def test_the_lab_sees_park_and_note_access_as_accesses_to_the_queue():
    from greenrt.lab import runner

    q = lowlevel.WaitQueue()

    def main():
        with greenrt.region() as r:
            r.spawn(q.park)
            while not q:
                greenrt.checkpoint()
            lowlevel.note_access(q, False)
            q.wake_one()

    res = runner._run(main, (), seed=1, record=None, strict=True, strategy=None, disable=(),
                      net=None, max_steps=10_000, max_time=None, leak_policy="error",
                      instruments=(), trace=True, entry=None, track=True)
    assert res.error is None and res.violations == [], res
    # Objects are numbered in order of first access (tuples are the hub's own keys).
    accesses = [a for step in res.schedule for a in step.fp if type(a[0]) is not tuple]
    assert {k for k, _ in accesses} == {0}  # one object: the queue
    assert sorted(w for _, w in accesses) == [False, True]  # note_access(read), park(write)
