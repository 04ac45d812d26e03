"""Strict mode: refuse the ambient sources of nondeterminism while a lab run lasts.

A lab test must not silently become flaky. Under ``lab.run(strict=True)`` (the
default) these calls made *by the program* raise ``NondeterminismError`` naming the
call and saying how to model it instead:

=========================================  ============================================
refused                                    model it with
=========================================  ============================================
``time.time/time_ns/monotonic[_ns]/``      ``greenrt.now()`` (the virtual clock)
``perf_counter[_ns]``
``time.sleep``                             ``greenrt.sleep()`` (virtual, cancellable)
the global ``random`` functions            ``lab.rng()``: a ``random.Random`` seeded
(``random.random``, ``randint``,           from the run's choice stream, so replay
``choice``, ``shuffle``, ``seed``...)      reproduces it
``os.urandom``                             ``lab.rng().randbytes(n)``
``greenrt.to_thread`` (hub seam)           a task that sleeps for the call's duration
real sockets / raw fds (driver seam)       ``greenrt.net`` on ``lab.net``'s simulated
                                           network
=========================================  ============================================

How: the module attributes above are replaced for the duration of ``lab.run`` and
restored afterwards (also when the run fails). A replacement refuses only when it is
called in the thread of an active strict lab run *and* its direct caller is program
code; calls from the standard library's logging, from pytest, hypothesis and the lab
itself, and calls from other threads, go to the original function. So a
``logger.warning`` in the program still gets a timestamp, and a watchdog thread of
the test runner keeps working.

Limits (documented, not detected): a name bound before the run
(``from time import time``) keeps the original function; C code and ``datetime.now()``
are not covered; ``secrets``/``uuid.uuid4`` are refused only through ``os.urandom``.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .errors import NondeterminismError

_TIME_FUNCS = ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter",
               "perf_counter_ns", "sleep")
_ALLOWED_CALLERS = ("logging", "_pytest", "pytest", "pluggy", "hypothesis",
                    "importlib", "linecache", "traceback", "threading")

_state = threading.local()
_lock = threading.Lock()
_depth = 0
_saved: list[tuple[Any, str, Any]] = []


def _random_funcs() -> list[str]:
    inst = getattr(random, "_inst", None)
    names = []
    for name in sorted(dir(random)):
        f = getattr(random, name)
        if getattr(f, "__self__", None) is inst and inst is not None and callable(f):
            names.append(name)
    return names


def active_hub():
    """The strict lab hub running in this thread, or ``None``."""
    return getattr(_state, "hub", None)


def _caller_is_program(frame) -> bool:
    mod = frame.f_globals.get("__name__", "") if frame is not None else ""
    top = mod.split(".", 1)[0]
    if mod == "greenrt.lab" or mod.startswith("greenrt.lab."):
        return False  # the lab itself (its clock, its trace writer)
    return top not in _ALLOWED_CALLERS


def _wrap(label: str, orig: Callable, hint: str) -> Callable:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        hub = getattr(_state, "hub", None)
        if hub is not None and _caller_is_program(sys._getframe(1)):
            raise NondeterminismError(f"{label}()", hint)
        return orig(*args, **kwargs)

    refuse.__wrapped__ = orig  # type: ignore[attr-defined]
    refuse.__name__ = getattr(orig, "__name__", label)
    refuse.__qualname__ = refuse.__name__
    refuse.__doc__ = getattr(orig, "__doc__", None)
    return refuse


def _install() -> None:
    from .hub import HINTS

    for name in _TIME_FUNCS:
        orig = getattr(time, name)
        _saved.append((time, name, orig))
        hint = "use greenrt.sleep(), which sleeps on the lab's virtual clock" \
            if name == "sleep" else HINTS["time"]
        setattr(time, name, _wrap(f"time.{name}", orig, hint))
    for name in _random_funcs():
        orig = getattr(random, name)
        _saved.append((random, name, orig))
        setattr(random, name, _wrap(f"random.{name}", orig, HINTS["random"]))
    _saved.append((os, "urandom", os.urandom))
    os.urandom = _wrap("os.urandom", os.urandom, HINTS["urandom"])


def _uninstall() -> None:
    while _saved:
        mod, name, orig = _saved.pop()
        setattr(mod, name, orig)


@contextmanager
def strict_guard(hub, enabled: bool = True) -> Iterator[None]:
    """Refuse the calls listed in the module docstring in this thread while the
    block runs (if ``enabled``). Reentrant across threads: the patches stay while any
    guard is active and are removed by the last one."""
    global _depth
    if not enabled:
        yield
        return
    with _lock:
        if _depth == 0:
            _install()
        _depth += 1
    prev = getattr(_state, "hub", None)
    _state.hub = hub
    try:
        yield
    finally:
        _state.hub = prev
        with _lock:
            _depth -= 1
            if _depth == 0:
                _uninstall()
