"""Cancellation: request -> drain -> finalize, for every source of cancellation."""

import os
import signal

import pytest

import greenrt
from greenrt import Budget, CancelKind, Cancelled


def _phases(rec, task_id):
    return rec.cancel_phases(task_id)


def _assert_protocol(rec, task_id, kind):
    """request (some scope of the task) -> drain -> finalize, with the given kind."""
    evs = [e for e in rec.events() if e.task == task_id and e.kind in
           ("cancel.request", "cancel.drain", "cancel.finalize")]
    kinds = [e.kind for e in evs]
    assert "cancel.drain" in kinds, kinds
    d = kinds.index("cancel.drain")
    assert "cancel.request" in kinds[:d], kinds
    assert "cancel.finalize" in kinds[d:], kinds
    drain = evs[d]
    assert drain.data["reason"]["kind"] == kind
    assert evs[kinds.index("cancel.finalize", d)].data["scope"] == drain.data["scope"]


def test_explicit_task_cancel(run, rec):
    seen = {}

    def victim():
        try:
            greenrt.sleep_forever()
        except Cancelled as c:
            seen["reason"] = c.reason
            seen["state"] = greenrt.current_task().state
            raise

    def main():
        with greenrt.region() as r:
            t = r.spawn(victim)
            greenrt.sleep(0.01)
            assert t.state is greenrt.TaskState.RUNNING
            t.cancel("stop it")
            assert t.state is greenrt.TaskState.CANCEL_REQUESTED
        return t

    t = run(main)
    assert t.outcome.is_cancelled
    assert t.outcome.value.kind is CancelKind.USER
    assert t.outcome.value.message == "stop it"
    assert seen["reason"].kind is CancelKind.USER
    assert seen["state"] is greenrt.TaskState.CANCELLING
    _assert_protocol(rec, t.id, "user")


def test_deadline_from_region_budget(run, rec):
    def victim():
        greenrt.sleep(10)

    def main():
        with greenrt.region(budget=Budget(deadline=greenrt.now() + 0.02)) as r:
            t = r.spawn(victim)
        return t, r

    t, r = run(main)
    assert t.outcome.is_cancelled and t.outcome.value.kind is CancelKind.DEADLINE
    assert r.cancel_called
    _assert_protocol(rec, t.id, "deadline")


def test_poll_quota(run, rec):
    count = []

    def spinner():
        while True:
            greenrt.checkpoint()
            count.append(1)

    def main():
        with greenrt.region() as r:
            t = r.spawn(spinner, budget=Budget(poll_quota=10))
        return t

    t = run(main)
    assert t.outcome.is_cancelled and t.outcome.value.kind is CancelKind.POLL_QUOTA
    assert len(count) == 10  # ten checkpoints passed, the eleventh raised
    _assert_protocol(rec, t.id, "poll_quota")


def test_cost_quota(run, rec):
    sent = []

    def sender():
        for i in range(100):
            greenrt.charge(100)
            greenrt.checkpoint()
            sent.append(i)

    def main():
        with greenrt.region() as r:
            t = r.spawn(sender, budget=Budget(cost_quota=1000))
        return t

    t = run(main)
    assert t.outcome.is_cancelled and t.outcome.value.kind is CancelKind.COST_BUDGET
    assert len(sent) == 10  # 10 * 100 = 1000 fits; the 11th charge exceeds
    _assert_protocol(rec, t.id, "cost_budget")


def test_fail_fast_sibling(run, rec):
    def bad():
        greenrt.sleep(0.01)
        raise ValueError("boom")

    def good():
        greenrt.sleep_forever()

    holder = {}

    def main():
        with pytest.raises(ExceptionGroup) as ei:
            with greenrt.region() as r:
                holder["good"] = r.spawn(good)
                r.spawn(bad)
        assert [type(e) for e in ei.value.exceptions] == [ValueError]
        return holder["good"]

    t = run(main)
    assert t.outcome.is_cancelled and t.outcome.value.kind is CancelKind.FAIL_FAST
    _assert_protocol(rec, t.id, "fail_fast")


def test_parent_cancellation_reaches_grandchildren(run, rec):
    tasks = {}

    def grandchild():
        greenrt.sleep_forever()

    def child():
        with greenrt.region() as r:
            tasks["gc"] = r.spawn(grandchild)

    def main():
        with greenrt.region() as r:
            tasks["c"] = r.spawn(child)
            greenrt.sleep(0.01)
            tasks["c"].cancel()
        return tasks

    run(main)
    gc = tasks["gc"].outcome
    assert gc.is_cancelled and gc.value.kind is CancelKind.PARENT_CANCELLED
    assert gc.value.cause.kind is CancelKind.USER
    _assert_protocol(rec, tasks["gc"].id, "parent_cancelled")
    assert tasks["c"].outcome.is_cancelled


def _shutdown_main(out):
    def worker():
        try:
            greenrt.sleep_forever()
        finally:
            out["cleanup_ran"] = True

    with greenrt.region() as r:
        out["w"] = r.spawn(worker)
        greenrt.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)
        greenrt.sleep(5)


def test_sigint_is_shutdown_then_keyboardinterrupt(run, rec):
    out = {}
    with pytest.raises(KeyboardInterrupt):
        run(_shutdown_main, out)
    assert out["cleanup_ran"]
    w = out["w"].outcome
    assert w.is_cancelled
    assert w.value.kind is CancelKind.SHUTDOWN
    _assert_protocol(rec, out["w"].id, "shutdown")
    assert rec.of("signal")


def test_sigterm_exits_with_128_plus_signum(run):
    def main():
        os.kill(os.getpid(), signal.SIGTERM)
        greenrt.sleep(5)

    with pytest.raises(SystemExit) as ei:
        run(main)
    assert ei.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # restored


def test_cleanup_may_block_while_draining(run):
    log = []

    def victim():
        try:
            greenrt.sleep_forever()
        except Cancelled:
            greenrt.sleep(0.01)  # a blocking call during cleanup succeeds
            greenrt.checkpoint()
            log.append("cleaned")
            raise

    def main():
        with greenrt.region() as r:
            t = r.spawn(victim)
            greenrt.sleep(0)
            t.cancel()
        return t

    t = run(main)
    assert log == ["cleaned"]
    assert t.outcome.is_cancelled


def test_swallowing_cancelled_is_bounded_by_cleanup_polls(run, rec):
    polls = []

    def stubborn():
        try:
            greenrt.sleep_forever()
        except Cancelled:
            pass  # swallowed!
        while True:
            try:
                greenrt.checkpoint()
                polls.append(1)
            except Cancelled as c:
                assert c.cleanup_exhausted
                raise

    def main():
        with greenrt.region() as r:
            t = r.spawn(stubborn)
            greenrt.sleep(0)
            t.cancel(greenrt.CancelReason(CancelKind.SHUTDOWN))
        return t

    t = run(main)
    assert t.outcome.is_cancelled
    assert len(polls) == CancelKind.SHUTDOWN.cleanup_budget.polls
    assert rec.of("cancel.exhausted", task=t.id)


def test_swallowing_cancelled_is_bounded_by_cleanup_time(run):
    def stubborn():
        try:
            greenrt.sleep_forever()
        except Cancelled:
            pass
        greenrt.sleep(60)  # cleanup that blocks too long is cut at the time limit

    def main():
        with greenrt.region() as r:
            t = r.spawn(stubborn)
            greenrt.sleep(0)
            t.cancel(greenrt.CancelReason(CancelKind.SHUTDOWN))
        return t

    t = run(main)
    assert t.outcome.is_cancelled


def test_masked_defers_delivery(run):
    log = []

    def victim():
        with greenrt.masked():
            greenrt.sleep(0.02)  # cancel arrives during this sleep
            log.append("masked section finished")
        greenrt.checkpoint()  # the deferred cancellation is delivered here
        log.append("unreachable")

    def main():
        with greenrt.region() as r:
            t = r.spawn(victim)
            greenrt.sleep(0.005)
            t.cancel()
        return t

    t = run(main)
    assert log == ["masked section finished"]
    assert t.outcome.is_cancelled


def test_mask_nesting_is_bounded(run):
    def main():
        from contextlib import ExitStack

        with ExitStack() as stack:
            for _ in range(greenrt._scope.MAX_MASK_DEPTH):
                stack.enter_context(greenrt.masked())
            with pytest.raises(greenrt.LimitExceeded):
                stack.enter_context(greenrt.masked())

    run(main)


def test_scope_inside_mask_still_times_out(run):
    def main():
        with greenrt.masked():
            with greenrt.move_on_after(0.01) as s:
                greenrt.sleep(10)
        return s.cancelled_caught

    assert run(main) is True


def test_move_on_after_and_fail_after(run):
    def main():
        with greenrt.move_on_after(0.01) as s:
            greenrt.sleep(10)
        assert s.cancelled_caught and s.reason.kind is CancelKind.TIMEOUT
        with pytest.raises(greenrt.TooSlowError):
            with greenrt.fail_after(0.01):
                greenrt.sleep(10)
        with greenrt.fail_after(10) as s2:
            greenrt.sleep(0)
        assert not s2.cancelled_caught
        return True

    assert run(main)


def test_nested_scopes_outer_wins(run):
    def main():
        with greenrt.cancel_scope() as outer:
            with greenrt.cancel_scope() as inner:
                inner.cancel()
                outer.cancel()
                greenrt.checkpoint()
        return outer.cancelled_caught, inner.cancelled_caught

    assert run(main) == (True, False)


def test_second_request_only_strengthens(run):
    def main():
        with greenrt.cancel_scope() as s:
            s.cancel(CancelKind.SHUTDOWN)
            s.cancel(CancelKind.USER)
            assert s.reason.kind is CancelKind.SHUTDOWN
            greenrt.checkpoint()
        return s.reason.kind

    assert run(main) is CancelKind.SHUTDOWN


def test_cancel_before_start_delivers_at_first_checkpoint(run):
    ran = []

    def child():
        ran.append("started")
        greenrt.checkpoint()
        ran.append("unreachable")

    def main():
        with greenrt.region() as r:
            t = r.spawn(child)
            t.cancel()
        return t

    t = run(main)
    assert ran == ["started"] and t.outcome.is_cancelled


def test_region_cancel_is_absorbed(run):
    def main():
        with greenrt.region() as r:
            r.spawn(greenrt.sleep_forever)
            r.cancel()
            greenrt.sleep_forever()
        return "after"

    assert run(main) == "after"


def test_spawn_into_cancelled_region_scope_is_cancelled(run):
    def main():
        with greenrt.cancel_scope() as s:
            s.cancel()
            with greenrt.region() as r:
                t = r.spawn(greenrt.sleep_forever)
        return t

    t = run(main)
    assert t.outcome.is_cancelled
    assert t.outcome.value.kind is CancelKind.PARENT_CANCELLED
