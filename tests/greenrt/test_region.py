"""Regions: quiescence at close, no orphans, policies, errors, finalizers."""

import traceback

import pytest

import greenrt
from greenrt import Cancelled


def test_close_waits_for_children_and_grandchildren(run):
    done = []

    def grandchild(i):
        greenrt.sleep(0.001 * i)
        done.append(("gc", i))

    def child(i):
        with greenrt.region() as r:
            for j in range(3):
                r.spawn(grandchild, j)
        done.append(("c", i))

    def main():
        with greenrt.region() as r:
            for i in range(4):
                r.spawn(child, i)
        # quiescence: every descendant completed before the block ended
        assert len(done) == 4 * 3 + 4
        assert r.state == "closed"
        assert r.statistics()["live"] == 0
        return r.statistics()

    st = run(main)
    assert st["spawned"] == 4 and st["completed"] == 4


def test_children_may_spawn_siblings_while_parent_waits(run):
    order = []

    def second():
        order.append("second")

    def first(r):
        greenrt.sleep(0.001)
        r.spawn(second)
        order.append("first")

    def main():
        with greenrt.region() as r:
            r.spawn(first, r)
        return order

    assert run(main) == ["first", "second"]


def test_spawn_refused_once_draining(run):
    def main():
        with greenrt.region() as r:
            r.spawn(greenrt.sleep_forever)
            r.cancel()
            greenrt.checkpoint()
        with pytest.raises(greenrt.RegionClosedError):
            r.spawn(lambda: None)
        return True

    assert run(main)


def test_failure_surfaces_as_exception_group_with_traceback(run):
    def deep_failure():
        raise KeyError("missing")

    def child():
        greenrt.checkpoint()
        deep_failure()

    def main():
        with pytest.raises(ExceptionGroup) as ei:
            with greenrt.region() as r:
                r.spawn(child)
        (exc,) = ei.value.exceptions
        assert isinstance(exc, KeyError)
        names = [f.name for f in traceback.extract_tb(exc.__traceback__)]
        assert "deep_failure" in names and "child" in names
        return True

    assert run(main)


def test_collect_all_lets_siblings_finish(run):
    finished = []

    def bad(i):
        raise ValueError(i)

    def good():
        greenrt.sleep(0.01)
        finished.append("good")

    def main():
        with pytest.raises(ExceptionGroup) as ei:
            with greenrt.region(policy="collect_all") as r:
                r.spawn(bad, 1)
                r.spawn(good)
                r.spawn(bad, 2)
        assert sorted(e.args[0] for e in ei.value.exceptions) == [1, 2]
        return finished

    assert run(main) == ["good"]


def test_body_exception_cancels_children_and_is_grouped(run):
    def main():
        with pytest.raises(ExceptionGroup) as ei:
            with greenrt.region() as r:
                t = r.spawn(greenrt.sleep_forever)
                greenrt.checkpoint()
                raise RuntimeError("body")
        assert [type(e) for e in ei.value.exceptions] == [RuntimeError]
        assert t.outcome.is_cancelled
        assert t.outcome.value.kind is greenrt.CancelKind.FAIL_FAST
        return True

    assert run(main)


def test_no_orphans_after_any_failure_mode(run):
    """Whatever happens inside, every task spawned is completed when run returns."""
    spawned = []

    def leaf(mode):
        greenrt.checkpoint()
        if mode == "raise":
            raise OSError("leaf")
        if mode == "panic":
            raise SystemExit(3)
        greenrt.sleep_forever()

    def branch(modes):
        with greenrt.region() as r:
            for m in modes:
                spawned.append(r.spawn(leaf, m))

    def main():
        with pytest.raises(BaseExceptionGroup):
            with greenrt.region() as r:
                spawned.append(r.spawn(branch, ["sleep", "sleep", "raise"]))
                spawned.append(r.spawn(branch, ["sleep", "panic"]))
                spawned.append(r.spawn(leaf, "sleep"))

    run(main)
    assert spawned and all(t.done for t in spawned)
    assert any(t.outcome.is_panicked for t in spawned)


def test_panic_makes_base_exception_group(run):
    def main():
        with greenrt.region() as r:
            r.spawn(lambda: (_ for _ in ()).throw(SystemExit(2)))

    with pytest.raises(BaseExceptionGroup) as ei:
        run(main)
    assert isinstance(ei.value.exceptions[0], SystemExit)


def test_outer_cancel_passes_through_region_as_cancelled(run):
    def main():
        with greenrt.move_on_after(0.01) as s:
            with greenrt.region() as r:
                r.spawn(greenrt.sleep_forever)
                greenrt.sleep_forever()
        return s.cancelled_caught

    assert run(main) is True


def test_finalizers_run_lifo_after_children(run):
    log = []

    def child():
        greenrt.sleep(0.001)
        log.append("child")

    def main():
        with greenrt.region() as r:
            r.defer(log.append, "first deferred")
            r.defer(log.append, "second deferred")
            r.spawn(child)
        return log

    assert run(main) == ["child", "second deferred", "first deferred"]


def test_finalizer_runs_even_when_cancelled_and_is_masked(run):
    log = []

    def fin():
        greenrt.sleep(0.001)  # may block: masked from the outer cancellation
        log.append("finalized")

    def main():
        with greenrt.move_on_after(0.005):
            with greenrt.region() as r:
                r.defer(fin)
                greenrt.sleep_forever()
        return log

    assert run(main) == ["finalized"]


def test_finalizer_budget_is_enforced(run):
    def hang():
        greenrt.sleep_forever()

    def main():
        fb = greenrt.FinalizerBudget(seconds=0.01, polls=100)
        with pytest.raises(ExceptionGroup) as ei:
            with greenrt.region(finalizer_budget=fb) as r:
                r.defer(hang)
        assert isinstance(ei.value.exceptions[0], TimeoutError)
        return True

    assert run(main)


def test_join_returns_value_and_raises(run):
    def main():
        with greenrt.region(policy="collect_all") as r:
            a = r.spawn(lambda: 7)
            b = r.spawn(lambda: 1 / 0)
            c = r.spawn(greenrt.sleep_forever)
            assert a.join() == 7
            with pytest.raises(ZeroDivisionError):
                b.join()
            c.cancel()
            with pytest.raises(greenrt.TaskCancelledError):
                c.join()
            r.cancel()  # the ZeroDivisionError is still reported by the region
        return True

    with pytest.raises(ExceptionGroup):
        run(main)


def test_cancelled_join_leaves_task_running(run):
    def slow():
        greenrt.sleep(0.02)
        return "done"

    def main():
        with greenrt.region() as r:
            t = r.spawn(slow)
            with greenrt.move_on_after(0.001):
                t.join()
            assert not t.done
            return t.join()

    assert run(main) == "done"


def test_task_ids_are_sequential(run):
    def main():
        with greenrt.region() as r:
            ts = [r.spawn(lambda: None) for _ in range(5)]
        return [t.id for t in ts], greenrt.current_task().id

    ids, me = run(main)
    assert me == 1 and ids == [2, 3, 4, 5, 6]


def test_root_region_has_no_defer(run):
    def main():
        with pytest.raises(greenrt.RegionClosedError):
            greenrt.current_region().defer(print)
        return True

    assert run(main)


def test_cancelled_is_base_exception():
    assert not issubclass(Cancelled, Exception)


def test_calls_outside_run_raise_nohub():
    with pytest.raises(greenrt.NoHubError):
        greenrt.checkpoint()
    with pytest.raises(greenrt.NoHubError):
        greenrt.now()


def test_nested_run_refused(run):
    def main():
        with pytest.raises(RuntimeError):
            greenrt.run(lambda: None)
        return True

    assert run(main)
