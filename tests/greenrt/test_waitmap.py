"""``greenrt.lowlevel.WaitMap``: parked tasks by key (the reply side of request/response).

What its docstring promises, each tried: a wake by key hands its value to exactly the
task parked under that key; ``wake`` is False for a key nobody waits under (never
parked, already woken, cancelled) and the value is then not handed over; ``park()``
is a checkpoint and ``wait()`` is not; a key held by another waiter is a
``ValueError`` that parks nothing; a cancelled waiter has left the map before
``Cancelled`` is raised; a value handed over is never lost to a cancellation at the
same moment, and a cancellation is never lost to a wake (never both, never neither,
under every interleaving the lab explores); waits are labelled; the lab sees the map."""

from __future__ import annotations

import pytest

import greenrt
from greenrt import lowlevel


def _until(pred):
    while not pred():
        greenrt.checkpoint()


def test_a_wake_reaches_the_task_parked_under_its_key():
    m = lowlevel.WaitMap()
    got = {}

    def waiter(key):
        got[key] = m.park(key)

    def main():
        with greenrt.region() as r:
            for key in ("a", "b", 3):
                r.spawn(waiter, key)
            _until(lambda: len(m) == 3)
            assert m.statistics() == {"waiting": 3}
            assert set(m.keys()) == {"a", "b", 3} and "b" in m and "z" not in m
            assert m.wake(3, "three") is True
            assert m.wake("a", "A") is True
            assert m.wake("a", "again") is False  # already woken: not handed over
            assert m.wake("never", 1) is False     # nobody ever parked there
            assert m.wake("b") is True
        assert got == {"a": "A", "b": None, 3: "three"}
        assert not m and len(m) == 0

    greenrt.run(main)


def test_keys_is_a_live_read_only_view():
    m = lowlevel.WaitMap()

    def main():
        view = m.keys()
        with greenrt.region() as r:
            r.spawn(m.park, "k")
            _until(lambda: "k" in view)  # the view follows the map
            assert not hasattr(view, "pop") and not hasattr(view, "__setitem__")
            m.wake("k")
        assert "k" not in view

    greenrt.run(main)


def test_park_is_a_checkpoint_and_wait_is_not():
    m = lowlevel.WaitMap()

    def main():
        with greenrt.cancel_scope() as s:
            s.cancel()
            m.park("k")  # raises at once: a pending cancellation is delivered
            pytest.fail("park() did not check for cancellation")  # pragma: no cover
        assert len(m) == 0 and s.cancelled_caught

        # wait(): the caller did the check half itself; the wait is still cancellable
        with greenrt.move_on_after(0.01) as s2:
            task = lowlevel.enter_checkpoint()
            m.wait(task, "k2")
        assert s2.cancelled_caught and len(m) == 0

    greenrt.run(main)


def test_a_taken_key_is_a_value_error_that_parks_nothing():
    m = lowlevel.WaitMap()

    def main():
        with greenrt.region() as r:
            first = r.spawn(m.park, "k")
            _until(lambda: "k" in m)
            with pytest.raises(ValueError, match="already waits"):
                m.park("k")
            assert len(m) == 1 and first.waiting_for == "WaitMap.park"
            assert m.wake("k", 1)
        assert first.outcome.unwrap() == 1

    greenrt.run(main)


def test_a_cancelled_waiter_has_left_the_map_and_a_later_wake_is_false():
    m = lowlevel.WaitMap()
    seen = []

    def main():
        with greenrt.region() as r:
            def waiter():
                try:
                    m.park("k")
                except greenrt.Cancelled:
                    seen.append("k" in m)  # already gone when Cancelled is raised
                    raise
            t = r.spawn(waiter)
            _until(lambda: "k" in m)
            t.cancel()
            _until(lambda: seen)
            assert m.wake("k", "late") is False  # the value stays with the caller
        assert seen == [False] and len(m) == 0

    greenrt.run(main)


def test_a_value_handed_over_is_not_lost_to_a_simultaneous_cancel():
    m = lowlevel.WaitMap()
    result = []

    def waiter(box):
        with greenrt.cancel_scope() as s:
            box.append(s)
            result.append(m.park("k"))
            try:  # the hand-off won: the cancellation comes at the next checkpoint
                greenrt.checkpoint()
            except greenrt.Cancelled:
                result.append("cancelled after")
                raise

    def main():
        box = []
        with greenrt.region() as r:
            r.spawn(waiter, box)
            _until(lambda: "k" in m)
            assert m.wake("k", "reply")  # hand-off first ...
            box[0].cancel()              # ... then a cancel before the waiter runs
        assert result == ["reply", "cancelled after"]

    greenrt.run(main)


def test_wake_error_and_wake_all_error_raise_in_the_waiters():
    m = lowlevel.WaitMap()
    raised = []

    def waiter(key):
        try:
            m.park(key)
        except LookupError as e:
            raised.append((key, str(e)))

    def main():
        with greenrt.region() as r:
            for key in range(4):
                r.spawn(waiter, key)
            _until(lambda: len(m) == 4)
            assert m.wake_error(2, KeyError("two")) is True
            assert m.wake_error(2, KeyError("again")) is False
            assert m.wake_all_error(lambda: IndexError("all")) == 3
            assert len(m) == 0
        assert sorted(raised) == [(0, "all"), (1, "all"), (2, "'two'"), (3, "all")]

    greenrt.run(main)


def test_the_label_reaches_deadlock_reports():
    m = lowlevel.WaitMap()

    def main():
        m.park("token-1", what="reply to request 1")

    with pytest.raises(greenrt.Deadlock) as ei:
        greenrt.run(main)
    assert ei.value.graph["blocked"][0]["waits_for"] == "reply to request 1"


def test_a_finished_task_keeps_no_reference_to_the_map_or_its_key():
    m = lowlevel.WaitMap()

    def main():
        with greenrt.region() as r:
            t = r.spawn(m.park, "k")
            _until(lambda: "k" in m)
            m.wake("k")
        assert t._wq is None and t._wq_key is None

    greenrt.run(main)


def _wake_or_cancel_program():
    """A waker and a canceller race for one waiter: exactly one of them wins, and the
    loser sees it (``wake`` False, or the waiter got the value)."""
    m = lowlevel.WaitMap()
    out = {}

    def waiter(box):
        with greenrt.cancel_scope() as s:
            box.append(s)
            out["got"] = m.park("k")
        out["cancelled"] = s.cancelled_caught

    def waker():
        greenrt.checkpoint()
        out["woke"] = m.wake("k", "v")

    def canceller(box):
        greenrt.checkpoint()
        box[0].cancel()

    def main():
        box = []
        with greenrt.region() as r:
            r.spawn(waiter, box)
            _until(lambda: "k" in m)
            r.spawn(waker)
            r.spawn(canceller, box)
        return out

    return main()


def test_under_the_lab_a_wake_and_a_cancel_never_both_and_never_neither_win():
    from greenrt import lab

    seen = set()
    for seed in range(30):
        res = lab.run(_wake_or_cancel_program, seed=seed)
        res.check()
        out = res.value
        # the waker handed "v" over exactly when the waiter returned it
        assert out["woke"] == (out.get("got") == "v"), out
        if not out["woke"]:
            assert out["cancelled"] is True and "got" not in out, out
        seen.add(out["woke"])
        assert out["woke"] or out["cancelled"]
    assert seen == {True, False}, "the seeds never exercised both orders"


def test_the_lab_sees_park_and_wake_as_accesses_to_the_map():
    from greenrt.lab import runner

    m = lowlevel.WaitMap()

    def main():
        with greenrt.region() as r:
            r.spawn(m.park, "k")
            _until(lambda: "k" in m)
            m.wake("k")
            m.wake("k")  # late: still an access (it depends on the order)

    res = runner._run(main, (), seed=1, record=None, strict=True, strategy=None, disable=(),
                      net=None, max_steps=10_000, max_time=None, leak_policy="error",
                      instruments=(), trace=True, entry=None, track=True)
    assert res.error is None and res.violations == [], res
    accesses = [a for step in res.schedule for a in step.fp if type(a[0]) is not tuple]
    assert {k for k, _ in accesses} == {0}  # one object: the map
    assert sorted(w for _, w in accesses) == [True, True, True]  # park, wake, late wake
