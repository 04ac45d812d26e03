"""Misuse errors say what to do (issue 21, "Error messages").

Each test provokes one mistake a new user makes and asserts the key part of the
message: the fix, not only the symptom.
"""

import threading
import unittest.mock

import pytest

import greenrt
from greenrt import InvariantViolation, NoHubError, RegionClosedError

# -- regions ------------------------------------------------------------------------


def test_spawn_on_a_region_never_entered_says_use_with(run):
    def main():
        r = greenrt.region(name="workers")
        r.spawn(greenrt.checkpoint)

    with pytest.raises(RegionClosedError) as ei:
        run(main)
    msg = str(ei.value)
    assert "never entered" in msg
    assert "with greenrt.region() as r:" in msg
    assert "'workers'" in msg


def test_spawn_on_a_closed_region_names_it_and_where_it_was_opened(run):
    def main():
        with greenrt.region(name="done") as r:
            pass
        r.spawn(greenrt.checkpoint)

    with pytest.raises(RegionClosedError) as ei:
        run(main)
    msg = str(ei.value)
    assert "'done'" in msg and "is closed" in msg
    line = main.__code__.co_firstlineno + 1  # the with statement
    assert f"opened at {__file__}:{line} in main" in msg


def test_region_entered_but_never_exited_names_region_and_site(run):
    def main():
        r = greenrt.region(name="leaky")
        r.__enter__()  # line recorded as the opening site
        return r

    with pytest.raises(InvariantViolation) as ei:
        run(main)
    msg = str(ei.value)
    assert "region" in msg and "'leaky'" in msg and "never exited" in msg
    line = main.__code__.co_firstlineno + 2
    assert f"opened at {__file__}:{line} in main" in msg
    assert "with greenrt.region() as r:" in msg


# -- no hub in this thread ----------------------------------------------------------


def _in_plain_thread(fn):
    out = []

    def body():
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out.append(e)

    th = threading.Thread(target=body, name="plain")
    th.start()
    th.join()
    return out[0] if out else None


@pytest.mark.parametrize("call", [
    pytest.param(lambda: greenrt.sleep(0.01), id="sleep"),
    pytest.param(lambda: greenrt.checkpoint(), id="checkpoint"),
    pytest.param(lambda: greenrt.Event().wait(), id="Event.wait"),
    pytest.param(lambda: greenrt.Lock().acquire(), id="Lock.acquire"),
    pytest.param(lambda: greenrt.Semaphore(0).acquire(), id="Semaphore.acquire"),
    pytest.param(lambda: greenrt.channel(1)[1].recv(), id="channel.recv"),
    pytest.param(lambda: greenrt.channel(1)[0].send(1), id="channel.send"),
    pytest.param(lambda: greenrt.net.open_tcp("127.0.0.1", 9), id="net.open_tcp"),
    pytest.param(lambda: greenrt.to_thread(len, ()), id="to_thread"),
])
def test_blocking_call_from_a_plain_thread_says_run_or_from_thread(call):
    e = _in_plain_thread(call)
    assert isinstance(e, NoHubError), repr(e)
    msg = str(e)
    assert "'plain'" in msg
    assert "greenrt.run" in msg and "greenrt.from_thread" in msg


def test_blocking_call_from_a_to_thread_worker_says_from_thread(run):
    def worker():
        try:
            greenrt.sleep(0.01)
        except NoHubError as e:
            return str(e)

    msg = run(greenrt.to_thread, worker)
    assert "to_thread worker" in msg and "greenrt.from_thread(fn" in msg


# -- what spawn / run / to_thread / the combinators accept ---------------------------


async def _async_fn():
    pass  # pragma: no cover - never awaited


class _AsyncMethods:
    async def method(self):
        pass  # pragma: no cover

    async def __call__(self):
        pass  # pragma: no cover


def _bad_task_fns():
    import functools

    return [
        pytest.param(_async_fn, "async function", id="async-def"),
        pytest.param(functools.partial(_async_fn), "async function", id="partial-of-async"),
        pytest.param(_AsyncMethods().method, "async function", id="async-method"),
        pytest.param(_AsyncMethods(), "__call__ is async", id="async-__call__"),
        pytest.param(unittest.mock.AsyncMock(), "async callable", id="AsyncMock"),
        pytest.param(42, "needs a callable", id="int"),
        pytest.param(None, "needs a callable", id="None"),
    ]


@pytest.mark.parametrize("fn,key", _bad_task_fns())
def test_spawn_refuses_at_the_call(run, fn, key):
    """The TypeError comes from spawn itself, before any task exists: the region's
    body can catch it at the call, and nothing was spawned."""
    def main():
        with greenrt.region() as r:
            try:
                r.spawn(fn)
            except TypeError as e:
                return str(e), r.statistics()["spawned"]
        return None, None

    msg, spawned = run(main)
    assert msg is not None and msg.startswith("spawn()") and key in msg
    assert spawned == 0
    if "async" in key:
        assert "greenrt runs blocking-style code" in msg and "plain `def`" in msg
    else:
        assert "spawn(fn, *args)" in msg


def test_spawn_refuses_a_coroutine_object_and_closes_it(run):
    coro = _async_fn()

    def main():
        with greenrt.region() as r:
            try:
                r.spawn(coro)
            except TypeError as e:
                return str(e)

    msg = run(main)
    assert "coroutine object" in msg and "not fn(*args)" in msg
    assert coro.cr_frame is None  # closed: no "never awaited" warning later


@pytest.mark.parametrize("fn,key", _bad_task_fns())
def test_run_refuses_before_starting_a_hub(fn, key):
    with pytest.raises(TypeError) as ei:
        greenrt.run(fn)
    assert str(ei.value).startswith("run()") and key in str(ei.value)
    assert greenrt.lowlevel.current_hub_or_none() is None


@pytest.mark.parametrize("api", ["to_thread", "race", "first_ok", "join", "hedge", "retry",
                                 "timeout", "from_thread"])
def test_the_other_entry_points_refuse_async_functions(run, api):
    calls = {
        "to_thread": lambda: greenrt.to_thread(_async_fn),
        "race": lambda: greenrt.race(greenrt.checkpoint, _async_fn),
        "first_ok": lambda: greenrt.first_ok(_async_fn),
        "join": lambda: greenrt.join(greenrt.checkpoint, _async_fn),
        "hedge": lambda: greenrt.hedge(_async_fn, 0.1),
        "retry": lambda: greenrt.retry(_async_fn, idempotent=True),
        "timeout": lambda: greenrt.timeout(1, _async_fn),
        "from_thread": lambda: greenrt.from_thread(_async_fn),
    }

    def main():
        try:
            calls[api]()
        except TypeError as e:  # not an ExceptionGroup: raised at the call
            return str(e)

    msg = run(main)
    assert msg is not None and msg.startswith(f"{api}()")
    assert "greenrt runs blocking-style code" in msg


def test_a_wrapper_returning_a_coroutine_fails_the_task_with_the_hint(run):
    """A sync wrapper around an async def passes the call-time check; the coroutine it
    returns makes the task fail with the same hint (and is closed, not leaked)."""
    def wrapper():
        return _async_fn()

    def main():
        with greenrt.region(policy="collect_all") as r:
            t = r.spawn(wrapper)
        return t  # pragma: no cover

    with pytest.raises(ExceptionGroup) as ei:
        run(main)
    (e,) = ei.value.exceptions
    assert isinstance(e, TypeError)
    assert "returned a coroutine object" in str(e) and "blocking-style" in str(e)


def test_spawn_keyword_arguments_suggest_functools_partial(run):
    def f(x, *, y):
        return x + y

    def main():
        with greenrt.region() as r:
            try:
                r.spawn(f, 1, y=2)
            except TypeError as e:
                msg = str(e)
            import functools

            t = r.spawn(functools.partial(f, y=2), 1)
        return msg, t.join()

    msg, value = run(main)
    assert "functools.partial(fn, y=...)" in msg and "name= and budget=" in msg
    assert value == 3


# -- durations ------------------------------------------------------------------------


_DURATION_APIS = {
    "sleep": (lambda v: greenrt.sleep(v), "seconds"),
    "move_on_after": (lambda v: greenrt.move_on_after(v), "seconds"),
    "fail_after": (lambda v: greenrt.fail_after(v), "seconds"),
    "cancel_scope": (lambda v: greenrt.cancel_scope(timeout=v), "timeout"),
    "timeout": (lambda v: greenrt.timeout(v, greenrt.checkpoint), "seconds"),
    "hedge": (lambda v: greenrt.hedge(greenrt.checkpoint, v), "delay"),
    "RetryPolicy": (lambda v: greenrt.RetryPolicy(initial_backoff=v), "initial_backoff"),
    "RetryPolicy.attempt_timeout": (lambda v: greenrt.RetryPolicy(attempt_timeout=v),
                                    "attempt_timeout"),
    "net.open_tcp": (lambda v: greenrt.net.open_tcp("127.0.0.1", 9, timeout=v), "timeout"),
}


_BAD_DURATIONS = [
    ("str", "1", TypeError, "number of seconds"),
    ("None", None, TypeError, "number of seconds"),
    ("bool", True, TypeError, "not bool"),
    ("complex", 1j, TypeError, "number of seconds"),
    ("negative", -1, ValueError, ">= 0"),
    ("-inf", float("-inf"), ValueError, ">= 0"),
    ("nan", float("nan"), ValueError, "NaN"),
]
#: where ``None`` means "no timeout", it is not a bad value
_NONE_OK = ("cancel_scope", "RetryPolicy.attempt_timeout", "net.open_tcp")


@pytest.mark.parametrize("api,value,exc,key", [
    pytest.param(api, value, exc, key, id=f"{api}-{vid}")
    for api in sorted(_DURATION_APIS) for vid, value, exc, key in _BAD_DURATIONS
    if not (value is None and api in _NONE_OK)
])
def test_bad_durations_name_the_parameter(run, api, value, exc, key):
    call, param = _DURATION_APIS[api]

    def main():
        try:
            call(value)
        except (TypeError, ValueError) as e:
            return e

    e = run(main)
    assert type(e) is exc, repr(e)
    assert str(e).startswith(f"{param} must be") and key in str(e)


@pytest.mark.parametrize("api,param", [
    ("move_on_at", "deadline"), ("fail_at", "deadline"), ("sleep_until", "deadline"),
    ("cancel_scope", "deadline"), ("Budget", "deadline"),
])
@pytest.mark.parametrize("value,exc", [("soon", TypeError), (False, TypeError),
                                       (float("nan"), ValueError)])
def test_bad_deadlines_name_the_parameter(run, api, param, value, exc):
    calls = {
        "move_on_at": lambda v: greenrt.move_on_at(v),
        "fail_at": lambda v: greenrt.fail_at(v),
        "sleep_until": lambda v: greenrt.sleep_until(v),
        "cancel_scope": lambda v: greenrt.cancel_scope(deadline=v),
        "Budget": lambda v: greenrt.Budget(deadline=v),
    }

    def main():
        try:
            calls[api](value)
        except (TypeError, ValueError) as e:
            return e

    e = run(main)
    assert type(e) is exc and str(e).startswith(f"{param} must be a hub time"), repr(e)


def test_durations_that_are_allowed(run):
    """Zero, ints, floats, numbers.Real and math.inf ("no limit") keep working; a past
    absolute deadline is allowed (it is already due)."""
    import fractions
    import math

    def main():
        greenrt.sleep(0)
        greenrt.sleep(fractions.Fraction(1, 1000))
        with greenrt.move_on_after(math.inf) as a:
            greenrt.sleep(0.001)
        with greenrt.fail_after(math.inf) as b:
            greenrt.sleep(0.001)
        with greenrt.move_on_at(greenrt.now() - 1) as c:
            greenrt.sleep(1)
        with greenrt.move_on_after(0.005) as d:
            greenrt.sleep(math.inf)  # sleeps until cancelled
        with greenrt.move_on_after(0.005) as e:
            greenrt.sleep_until(math.inf)
        return a, b, c, d, e

    a, b, c, d, e = run(main)
    assert a.deadline is None and b.deadline is None and not a.cancelled_caught
    assert c.cancelled_caught and d.cancelled_caught and e.cancelled_caught


# -- reasons print durations, not clock readings -----------------------------------


def test_timeout_reasons_print_a_duration_from_now(run):
    import re

    def main():
        with greenrt.cancel_scope(timeout=0.001) as sc:
            greenrt.sleep(1)
        inside = str(sc.reason)
        try:
            with greenrt.fail_after(0.001):
                greenrt.sleep(1)
        except greenrt.TooSlowError as e:
            too_slow = str(e), repr(e.reason)
        return inside, too_slow, sc.reason

    inside, (too_slow, rep), reason = run(main)
    for text in (inside, too_slow, rep):
        assert re.search(r"expired \d+(\.\d+)? (s|ms|us) ago", text), text
        # no raw clock reading such as "timeout 958.549694 reached"
        assert "reached (" not in text and not re.search(r"\d+\.\d{5,}", text), text
    assert reason.deadline is not None
    # outside the hub the reason cannot know "now": it says the deadline expired
    assert str(reason) == "timeout (deadline expired)"
    # before the deadline: "deadline in ..."
    early = greenrt.CancelReason("timeout", deadline=10.0, time=1.0)
    assert early.deadline_text(now=8.5) == "deadline in 1.5 s"
    assert early.deadline_text(now=10.2).startswith("expired 200 ms ago")



def test_blocking_call_on_the_hub_outside_a_task_says_spawn_or_in_task(run):
    def worker():
        try:
            greenrt.from_thread(greenrt.sleep, 0, in_task=False)
        except NoHubError as e:
            return str(e)

    msg = run(greenrt.to_thread, worker)
    assert "outside any task" in msg and "in_task=True" in msg and "spawn" in msg


@pytest.mark.parametrize("what", ["cancel", "defer", "reserve"])
def test_other_calls_on_a_region_never_entered_say_use_with(run, what):
    def main():
        r = greenrt.region()
        args = {"cancel": (), "defer": (greenrt.checkpoint,), "reserve": ("x",)}[what]
        getattr(r, what)(*args)

    with pytest.raises(RegionClosedError) as ei:
        run(main)
    assert f"{what} on a region that was never entered" in str(ei.value)
    assert "with greenrt.region() as r:" in str(ei.value)


def test_a_region_entered_twice_says_create_a_new_one(run):
    def main():
        r = greenrt.region(name="once")
        with r:
            pass
        with r:
            pass  # pragma: no cover

    with pytest.raises(InvariantViolation) as ei:
        run(main)
    assert "'once'" in str(ei.value) and "entered only once" in str(ei.value)
    assert "greenrt.region() for each with block" in str(ei.value)


def test_cancel_on_a_scope_never_entered_says_use_with(run):
    def main():
        greenrt.cancel_scope().cancel()

    with pytest.raises(InvariantViolation) as ei:
        run(main)
    assert "never entered" in str(ei.value) and "with greenrt.cancel_scope() as scope:" in str(ei.value)
