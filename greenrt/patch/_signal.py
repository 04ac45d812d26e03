"""The patched ``signal.signal``: a Python signal handler that *raises* interrupts
the task's blocking call, as it interrupts the main thread's blocking call
unpatched.

Python runs a signal handler in the main thread between two bytecodes. Unpatched,
the main thread is in the blocking call (``sendall``, ``accept``, ``select``...): the
call fails with ``EINTR``, the handler runs and its exception comes out of the call.
Inside a greenrt task the main thread is in the *hub's* wait instead, so without
this patch the exception would come out of the hub and end ``greenrt.run``.

With it, a handler installed while patched is wrapped. Run inside a task, or
outside any hub, the wrapper just calls it (the original behaviour). Run on the hub
greenlet (between tasks, typically while the hub waits), it calls the handler there
and, if the handler raises an ``Exception``, throws that exception into the
*target task* at its current wait, through the hub's own callback queue (a safe
point of the loop, never in the middle of hub code): the target is the task that
installed the handler if it is still alive, else the main task of ``run``
(gevent's rule: the main greenlet). The target's wait is cancelled the way a
cancellation would (no registration is left behind; each patched call documents
its state after an interruption, the same as after a cancellation) and the
exception is raised there. A handler that returns normally changes nothing: the
waits go on (PEP 475). If the target is not parked in a wait at that moment (it is
runnable, or has ended), the exception is raised on the hub as before, ending
``run``. ``KeyboardInterrupt`` and ``SystemExit`` from a handler keep going to the
hub (ending ``run``), as greenrt's SIGINT/SIGTERM handling expects.

``signal.getsignal`` and the return value of ``signal.signal`` give back the
handler the user installed, never the wrapper.
"""

from __future__ import annotations

import signal as _std_signal
from typing import Any

from greenrt.lowlevel import current_hub_or_none, reschedule_with_error

real_signal = _std_signal.signal
real_getsignal = _std_signal.getsignal


class _Handler:
    """The wrapper of one installed handler (see the module docstring)."""

    __slots__ = ("fn", "owner", "__weakref__")

    def __init__(self, fn: Any, owner: Any) -> None:
        self.fn = fn
        self.owner = owner

    def __call__(self, signum: Any, frame: Any) -> Any:
        hub = current_hub_or_none()
        if hub is None or hub.current is not None:
            return self.fn(signum, frame)
        try:
            return self.fn(signum, frame)
        except Exception as exc:
            target = _target(hub, self.owner)
            if target is None or not _can_queue(hub):
                raise
            hub.call_soon_threadsafe(_interrupt, target, exc)
            return None


def _target(hub: Any, owner: Any) -> Any:
    if owner is not None and owner._hub is hub and not owner._state_done:
        return owner
    root = hub.root_region
    if root is None:
        return None
    for task in root._live:
        return task
    return None


def _can_queue(hub: Any) -> bool:
    """``call_soon_threadsafe`` takes the hub's queue lock: if this thread holds it
    (the signal arrived inside the hub's own two-line critical section), taking it
    again would never return."""
    lock = hub._threadq_lock
    if lock.acquire(timeout=0.05):
        lock.release()
        return True
    return False


def _interrupt(task: Any, exc: Any) -> None:
    """On the hub, at a safe point: raise ``exc`` in ``task`` at its wait."""
    abort = task._abort_fn
    if task._state_done or abort is None or not abort():
        raise exc
    reschedule_with_error(task, exc)


def _unwrap(h: Any) -> Any:
    return h.fn if isinstance(h, _Handler) else h


def signal(signalnum: Any, handler: Any) -> Any:
    """``signal.signal``; a callable handler is wrapped so that an exception it
    raises while the hub waits reaches the task (see the module docstring). Not a
    checkpoint. Returns the previous handler as the user installed it."""
    if callable(handler) and not isinstance(handler, _Handler):
        hub = current_hub_or_none()
        handler = _Handler(handler, hub.current if hub is not None else None)
    return _unwrap(real_signal(signalnum, handler))


def getsignal(signalnum: Any) -> Any:
    """``signal.getsignal``: the handler as the user installed it. Not a checkpoint."""
    return _unwrap(real_getsignal(signalnum))


signal.__wrapped__ = real_signal  # type: ignore[attr-defined]
getsignal.__wrapped__ = real_getsignal  # type: ignore[attr-defined]
