"""to_thread / from_thread on the real hub with real threads.

No timing thresholds: threads are coordinated with threading.Event gates; timeouts on
those waits are hang guards only.
"""

import contextvars
import threading
import time

import pytest

import greenrt
from greenrt import CancelKind, Cancelled
from greenrt.lowlevel import RealHub, current_hub
from greenrt.threads import (
    DEFAULT_THREAD_LIMIT,
    ThreadCallbackError,
    default_thread_limiter,
    from_thread,
    to_thread,
)

GUARD = 10.0  # seconds; a hang guard, never a measured threshold


def _wait_until(pred, guard=GUARD):
    """Let the hub run until ``pred()`` is true (hang guard only)."""
    end = time.monotonic() + guard
    while not pred():
        if time.monotonic() > end:
            raise AssertionError("condition never became true")
        greenrt.sleep(0.001)


def test_result_runs_in_another_thread():
    def main():
        return to_thread(lambda a, b: (a + b, threading.get_ident()), 2, 3)

    value, ident = greenrt.run(main)
    assert value == 5
    assert ident != threading.get_ident()


def test_exception_propagates_with_type():
    class Boom(Exception):
        pass

    def bad():
        raise Boom("in thread")

    def main():
        with pytest.raises(Boom, match="in thread"):
            to_thread(bad)
        return "ok"

    assert greenrt.run(main) == "ok"


def test_hub_runs_other_tasks_while_thread_blocks():
    gate = threading.Event()

    def blocking():
        # Only a greenrt task can open the gate: if the hub were blocked this would
        # time out and return False.
        return gate.wait(GUARD)

    def opener():
        greenrt.sleep(0)
        gate.set()

    def main():
        with greenrt.region() as r:
            r.spawn(opener)
            return to_thread(blocking)

    assert greenrt.run(main) is True


def test_completion_wakes_the_hub_without_polling():
    # The hub has nothing else to do: it blocks in epoll with no timeout. Only the
    # wake-up byte written by call_soon_threadsafe can end that wait, and the number of
    # polls does not grow with the length of the thread's work.
    def main():
        hub = current_hub()
        before = hub.stats["polls"]
        to_thread(time.sleep, 0.3)
        return hub.stats["polls"] - before

    polls = greenrt.run(main)
    assert polls <= 3


def test_contextvars_are_copied_into_the_thread():
    var = contextvars.ContextVar("var", default="unset")

    def main():
        var.set("from task")
        return to_thread(var.get)

    assert greenrt.run(main) == "from task"


def test_default_limit_is_40_and_configurable():
    def main():
        lim = default_thread_limiter()
        assert lim.total_tokens == DEFAULT_THREAD_LIMIT == 40
        lim.total_tokens = 7
        assert default_thread_limiter().total_tokens == 7
        return to_thread(lambda: 1)

    assert greenrt.run(main) == 1
    # A new hub gets a fresh limiter.
    assert greenrt.run(lambda: default_thread_limiter().total_tokens) == 40


def test_pool_bound_holds():
    bound, n = 3, 10
    lock = threading.Lock()
    state = {"active": 0, "max": 0, "ran": 0}
    release = threading.Event()

    def work():
        with lock:
            state["active"] += 1
            state["max"] = max(state["max"], state["active"])
        release.wait(GUARD)
        with lock:
            state["active"] -= 1
            state["ran"] += 1

    def main():
        lim = default_thread_limiter()
        lim.total_tokens = bound
        with greenrt.region() as r:
            for _ in range(n):
                r.spawn(to_thread, work)
            _wait_until(lambda: state["active"] == bound)
            stats = lim.statistics()
            assert stats["borrowed_tokens"] == bound
            assert stats["tasks_waiting"] == n - bound
            release.set()
        assert lim.statistics()["borrowed_tokens"] == 0

    greenrt.run(main)
    assert state["max"] == bound
    assert state["ran"] == n


def test_explicit_limiter():
    def main():
        lim = greenrt.CapacityLimiter(1)
        with greenrt.region() as r:
            t1 = r.spawn(lambda: to_thread(threading.get_ident, limiter=lim))
            t2 = r.spawn(lambda: to_thread(threading.get_ident, limiter=lim))
        assert lim.borrowed_tokens == 0
        return t1.outcome.value, t2.outcome.value

    a, b = greenrt.run(main)
    assert isinstance(a, int) and isinstance(b, int)


def test_cancel_waits_for_thread_and_drops_result():
    started, go = threading.Event(), threading.Event()
    effects = []

    def work():
        started.set()
        go.wait(GUARD)
        effects.append("thread done")
        return "result"

    seen = {}

    def host():
        try:
            to_thread(work)
        except Cancelled as c:
            seen["reason"] = c.reason.kind
            seen["effects_at_cancel"] = list(effects)
            raise
        seen["returned"] = True

    def main():
        with greenrt.region() as r:
            t = r.spawn(host)
            _wait_until(started.is_set)
            t.cancel("stop")
            # The host cannot leave while its thread runs.
            for _ in range(20):
                greenrt.sleep(0)
            assert not t.done
            assert "thread done" not in effects
            go.set()
        return t

    t = greenrt.run(main)
    assert t.outcome.is_cancelled
    assert seen == {"reason": CancelKind.USER, "effects_at_cancel": ["thread done"]}


def test_cancel_waits_for_thread_and_chains_exception():
    started, go = threading.Event(), threading.Event()

    def work():
        started.set()
        go.wait(GUARD)
        raise ValueError("thread failed")

    seen = {}

    def host():
        try:
            to_thread(work)
        except Cancelled as c:
            seen["context"] = c.__context__
            raise

    def main():
        with greenrt.region() as r:
            t = r.spawn(host)
            _wait_until(started.is_set)
            t.cancel()
            go.set()
        return t

    t = greenrt.run(main)
    assert t.outcome.is_cancelled
    assert isinstance(seen["context"], ValueError)
    assert str(seen["context"]) == "thread failed"


def test_cancel_inside_masked_returns_result():
    started, go = threading.Event(), threading.Event()

    def work():
        started.set()
        go.wait(GUARD)
        return 99

    seen = {}

    def host():
        with greenrt.masked():
            seen["value"] = to_thread(work, abandon_on_cancel=True)
        greenrt.checkpoint()  # the deferred cancellation is delivered here
        seen["after"] = True

    def main():
        with greenrt.region() as r:
            t = r.spawn(host)
            _wait_until(started.is_set)
            t.cancel()
            go.set()
        return t

    t = greenrt.run(main)
    assert seen == {"value": 99}
    assert t.outcome.is_cancelled


def test_abandon_on_cancel_leaves_at_once_and_discards_result():
    started, go, finished = threading.Event(), threading.Event(), threading.Event()
    ring = greenrt.TraceRing(capacity=100_000)

    def work():
        started.set()
        go.wait(GUARD)
        finished.set()
        return "late result"

    seen = {}

    def host():
        try:
            to_thread(work, abandon_on_cancel=True, name="slow")
        except Cancelled:
            seen["thread_finished_at_cancel"] = finished.is_set()
            raise

    def main():
        lim = default_thread_limiter()
        with greenrt.region() as r:
            t = r.spawn(host)
            _wait_until(started.is_set)
            t.cancel()
        # The region closed while the thread still runs; the token is still held.
        assert t.outcome.is_cancelled
        assert not finished.is_set()
        assert lim.borrowed_tokens == 1
        go.set()
        _wait_until(lambda: lim.borrowed_tokens == 0)

    greenrt.run(main, instruments=[ring])
    assert seen == {"thread_finished_at_cancel": False}
    ev = ring.events("thread.abandoned")
    assert len(ev) == 1 and ev[0].data["job"] == "slow" and ev[0].data["ok"] is True


def test_cancel_while_waiting_for_a_token_takes_nothing():
    go = threading.Event()
    ran = []

    def main():
        lim = greenrt.CapacityLimiter(1)
        with greenrt.region() as r:
            r.spawn(lambda: to_thread(go.wait, GUARD, limiter=lim))
            _wait_until(lambda: lim.borrowed_tokens == 1)
            waiter = r.spawn(lambda: to_thread(ran.append, "never", limiter=lim))
            _wait_until(lambda: lim.statistics()["tasks_waiting"] == 1)
            waiter.cancel()
            greenrt.sleep(0)
            assert lim.statistics()["tasks_waiting"] == 0
            go.set()
        assert lim.borrowed_tokens == 0
        # The token is usable again.
        assert to_thread(lambda: "again", limiter=lim) == "again"
        return waiter

    waiter = greenrt.run(main)
    assert waiter.outcome.is_cancelled
    assert ran == []


def test_from_thread_runs_blocking_fn_in_host_task():
    def main():
        ev = greenrt.Event()
        host_ids = []

        def on_hub(x):
            host_ids.append(greenrt.current_task().id)
            ev.wait()  # blocks: only another task can set it
            greenrt.sleep(0)
            return x * 2

        def setter():
            greenrt.sleep(0.001)
            ev.set()

        def work():
            return from_thread(on_hub, 21)

        with greenrt.region() as r:
            r.spawn(setter)
            host = r.spawn(to_thread, work)
        return host.outcome.value, host_ids == [host.id]

    assert greenrt.run(main) == (42, True)


def test_from_thread_exceptions_and_plain_hub_call():
    def fails():
        raise KeyError("on hub")

    def work():
        out = []
        try:
            from_thread(fails)
        except KeyError as e:
            out.append(e.args[0])
        out.append(from_thread(lambda: current_hub() is not None, in_task=False))
        try:
            from_thread(greenrt.sleep, 0, in_task=False)
        except greenrt.NoHubError:
            out.append("no task")
        return out

    assert greenrt.run(lambda: to_thread(work)) == ["on hub", True, "no task"]


def test_from_thread_many_calls_in_sequence():
    def main():
        counter = {"n": 0}

        def bump():
            greenrt.checkpoint()
            counter["n"] += 1
            return counter["n"]

        def work():
            return [from_thread(bump) for _ in range(50)]

        return to_thread(work)

    assert greenrt.run(main) == list(range(1, 51))


def test_from_thread_sees_host_cancellation():
    started = threading.Event()
    seen = {}

    def work():
        started.set()
        try:
            from_thread(greenrt.sleep_forever)
        except Cancelled as c:
            seen["thread_saw"] = c.reason.kind
            raise

    def main():
        with greenrt.region() as r:
            t = r.spawn(to_thread, work)
            _wait_until(started.is_set)
            greenrt.sleep(0.001)
            t.cancel()
        return t

    t = greenrt.run(main)
    assert t.outcome.is_cancelled
    assert seen["thread_saw"] is CancelKind.USER


def test_from_thread_after_abandon_raises():
    started, go = threading.Event(), threading.Event()
    seen = {}

    def work():
        started.set()
        go.wait(GUARD)
        try:
            from_thread(lambda: "nope")
        except ThreadCallbackError as e:
            seen["error"] = str(e)

    def main():
        lim = default_thread_limiter()
        with greenrt.region() as r:
            t = r.spawn(lambda: to_thread(work, abandon_on_cancel=True))
            _wait_until(started.is_set)
            t.cancel()
        go.set()
        _wait_until(lambda: lim.borrowed_tokens == 0)

    greenrt.run(main)
    assert "abandoned" in seen["error"]


def test_from_thread_outside_worker_raises():
    with pytest.raises(ThreadCallbackError, match="not started by to_thread"):
        from_thread(lambda: 1)

    def main():
        with pytest.raises(ThreadCallbackError, match="hub thread"):
            from_thread(lambda: 1)

    greenrt.run(main)


def test_strict_hub_refuses_threads():
    class StrictHub(RealHub):
        def check_nondeterminism(self, what):
            raise RuntimeError(f"nondeterministic: {what}")

    ran = []

    def main():
        with pytest.raises(RuntimeError, match="nondeterministic: to_thread"):
            to_thread(ran.append, 1)

    greenrt.run(main, hub=StrictHub())
    assert ran == []


def test_to_thread_is_a_checkpoint():
    ran = []

    def main():
        greenrt.current_task().cancel()
        with pytest.raises(Cancelled):
            to_thread(ran.append, 1)
        return "raised"

    assert greenrt.run(main) == "raised"
    assert ran == []


def test_complete_on_cancel_returns_result_then_cancels_at_next_checkpoint():
    started, go = threading.Event(), threading.Event()
    log = []

    def work():
        started.set()
        go.wait(GUARD)
        return "kept"

    def host():
        try:
            log.append(("returned", to_thread(work, complete_on_cancel=True)))
            greenrt.checkpoint()
        except Cancelled:
            log.append("cancelled")
            raise

    def main():
        with greenrt.region() as r:
            t = r.spawn(host)
            _wait_until(started.is_set)
            t.cancel()
            for _ in range(10):
                greenrt.sleep(0)
            assert not t.done
            go.set()
        with pytest.raises(ValueError):
            to_thread(work, abandon_on_cancel=True, complete_on_cancel=True)
        return t

    t = greenrt.run(main)
    assert t.outcome.is_cancelled
    assert log == [("returned", "kept"), "cancelled"]
