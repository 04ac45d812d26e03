"""Misuse checks for the public API: task functions and durations.

Each check raises at the call that made the mistake, with a message that says what to
do, and costs (almost) nothing on the common path: the callers test the plain case
inline (``type(fn) is FunctionType`` and no async flag; ``type(x) is float``) and call
in here only for anything else.
"""

from __future__ import annotations

import functools
import inspect
from types import CoroutineType, FunctionType, MethodType
from typing import Any

#: code flags of functions that return an awaitable or an async iterator when called
CO_ASYNC = inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR | inspect.CO_ITERABLE_COROUTINE

_BLOCKING_STYLE = ("greenrt runs blocking-style code, not coroutines: write the task "
                   "as a plain `def` and call greenrt's blocking functions without "
                   "`await` (greenrt.sleep(1), not await asyncio.sleep(1))")


def _label(fn: Any) -> str:
    name = getattr(fn, "__qualname__", None)
    if isinstance(name, str):
        return name
    r = repr(fn)
    return r if len(r) <= 60 else r[:57] + "..."


def check_task_fn(fn: Any, where: str) -> None:
    """Raise ``TypeError`` unless ``fn`` can run as a task body (``fn(*args)`` in a
    greenlet): it must be callable and must not be a coroutine, a coroutine function
    or an async generator function (also behind ``functools.partial`` or a bound
    method). ``where`` names the API for the message (``"spawn"``, ``"run"``...)."""
    f = fn
    if type(f) is MethodType:  # the common case after a plain function: a bound method
        f = f.__func__
        if type(f) is FunctionType and not f.__code__.co_flags & CO_ASYNC:
            return
    for _ in range(64):  # a chain of partials / methods; bounded
        if type(f) is FunctionType:
            if f.__code__.co_flags & CO_ASYNC:
                raise TypeError(f"{where}() got the async function {_label(fn)}: "
                                f"{_BLOCKING_STYLE}")
            return
        if isinstance(f, MethodType):
            f = f.__func__
        elif isinstance(f, functools.partial):
            f = f.func
        else:
            break
    if not callable(f):  # (a coroutine object is not callable either)
        if inspect.isawaitable(f):
            if inspect.iscoroutine(f):
                f.close()  # never awaited: close it so Python does not warn about it later
            raise TypeError(f"{where}() got a coroutine object ({_label(f)}), not a function: "
                            f"{_BLOCKING_STYLE}; pass the function and its arguments, "
                            f"{where}(fn, *args), not fn(*args)")
        raise TypeError(f"{where}() needs a callable, got {type(f).__name__} {_label(f)}: "
                        f"pass the function itself and its arguments separately, "
                        f"{where}(fn, *args) (fn(*args) would call it here and pass its result)")
    call = getattr(type(f), "__call__", None)  # noqa: B004 - the method itself, to test it
    if type(call) is FunctionType and call.__code__.co_flags & CO_ASYNC:
        raise TypeError(f"{where}() got {_label(f)}, whose __call__ is async: {_BLOCKING_STYLE}")
    # objects that present themselves as async functions (unittest.mock.AsyncMock)
    flags = getattr(getattr(f, "__code__", None), "co_flags", 0)
    if type(flags) is int and flags & CO_ASYNC:
        raise TypeError(f"{where}() got {_label(f)}, an async callable: {_BLOCKING_STYLE}")


def coroutine_returned(value: CoroutineType[Any, Any, Any], task_name: str) -> TypeError:
    """The error for a task function that *returned* the coroutine ``value`` (a sync
    wrapper around an ``async def``, which ``check_task_fn`` cannot see). Closes the
    coroutine so Python does not warn that it was never awaited."""
    value.close()
    return TypeError(f"task {task_name} returned a coroutine object instead of running: "
                     f"{_BLOCKING_STYLE}")


def kwargs_refused(where: str, kwargs: dict[str, Any], accepted: str) -> TypeError:
    """``spawn(fn, x=1)``: the keywords are the API's own, not ``fn``'s."""
    names = ", ".join(sorted(kwargs))
    return TypeError(f"{where}() got unexpected keyword argument(s) {names} (it accepts only "
                     f"{accepted}): to pass keyword arguments to the function, wrap it, "
                     f"{where}(functools.partial(fn, {next(iter(kwargs))}=...), *args)")


def _as_real(value: Any, name: str, what: str) -> float:
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {what}, not {type(value).__name__} {value!r:.40}")
    return float(value)


def check_duration(value: Any, name: str) -> float:
    """``value`` as a duration in seconds for the parameter ``name``: a real number
    (not a ``bool``), not NaN, not negative; ``math.inf`` means "no limit". Raises
    ``TypeError`` or ``ValueError`` naming the parameter."""
    t = type(value)
    if t is not float and t is not int:
        value = _as_real(value, name, "a number of seconds (int or float)")
    if value >= 0:
        return value  # type: ignore[no-any-return]  # an int or a float here
    if value != value:
        raise ValueError(f"{name} must be a number of seconds, not NaN")
    raise ValueError(f"{name} must be >= 0 seconds, not {value!r} (clamp a computed "
                     f"remaining time with max(0, ...); math.inf means no limit)")


def check_deadline(value: Any, name: str) -> float:
    """``value`` as an absolute hub time for the parameter ``name``: a real number (not
    a ``bool``), not NaN; past and infinite deadlines are allowed (``math.inf``: none)."""
    t = type(value)
    if t is not float and t is not int:
        value = _as_real(value, name, "a hub time in seconds (a number from greenrt.now())")
    if value != value:
        raise ValueError(f"{name} must be a hub time in seconds, not NaN")
    return value  # type: ignore[no-any-return]  # an int or a float here
