"""Cooperative ``threading`` locks, and so everything built on them.

``threading.Condition``, ``Event``, ``Semaphore``, ``Barrier`` and ``queue.Queue``
are written in Python on top of ``threading.Lock``/``RLock`` and the private
``threading._allocate_lock`` (a ``Condition.wait`` is "acquire a fresh lock twice").
Replacing those three factories with cooperative locks makes every one of them
cooperative, as gevent does; objects created *before* patching keep real locks.

A cooperative lock wraps a real one, so threads and tasks can share it:

* outside a task (a thread, the hub greenlet, before ``run``) ``acquire`` is the
  real, blocking ``acquire``;
* inside a task, an uncontended ``acquire`` takes the lock at once; a contended one
  parks the task (the hub runs the others) until a ``release`` (by a task of any hub
  or by a thread) hands it a wake-up, then tries again. The wait is a checkpoint:
  cancellation, deadlines and budgets apply, ``acquire(timeout=t)`` is a
  ``move_on_after(t)`` around it, and a cancelled ``acquire`` does not hold the lock.

Why an uncontended ``acquire`` is not a checkpoint: the standard library calls
``acquire`` in ``finally`` blocks and ``__exit__`` paths (``Condition`` re-acquiring
its lock after a wait, ``Thread.start``), where an exception would leave its state
corrupt. For the same reason the re-acquire after a ``Condition.wait`` (the lock's
``_acquire_restore``) is masked: a cancelled ``Condition.wait`` raises ``Cancelled``
with the condition's lock held again, as ``with cond:`` expects.

``RLock`` ownership is per *task* inside a hub (per thread elsewhere): two tasks of
one thread are two owners. ``Thread.join`` from a task waits in a pool thread;
``Thread.start`` from a task waits for the new thread really (microseconds: greenrt's
own thread pool starts threads from tasks, and must not be cancelled half-way). ``queue.SimpleQueue`` (a C type) is replaced by the pure-Python one.
"""

from __future__ import annotations

import _thread
import threading as _threading
from collections import deque
from typing import Any

import greenrt
from greenrt import lowlevel as _ll

from ._common import _tls, real_allocate_lock, task_hub

_get_ident = _thread.get_ident

real_thread_start = _threading.Thread.start
real_start_new_thread = _thread.start_new_thread

# Threads started with the raw ``_thread.start_new_thread`` are invisible to
# ``threading.enumerate()``, which the hub's deadlock detector consults; while any is
# alive, a task parked on a cooperative lock (which such a thread may release) counts
# as waiting for a thread, so it is never reported as deadlocked.
_raw_alive = [0]
_raw_lock = real_allocate_lock()


def start_new_thread(function: Any, args: Any, kwargs: Any = None) -> Any:
    """``_thread.start_new_thread``, counting the thread while it runs."""
    if kwargs is None:
        kwargs = {}

    def run() -> None:
        try:
            function(*args, **kwargs)
        finally:
            with _raw_lock:
                _raw_alive[0] -= 1

    with _raw_lock:
        _raw_alive[0] += 1
    try:
        return real_start_new_thread(run, ())
    except BaseException:
        with _raw_lock:
            _raw_alive[0] -= 1
        raise
real_thread_join = _threading.Thread.join


def _owner_token() -> Any:
    hub = getattr(_tls, "hub", None)  # task_hub(), inlined: every RLock call
    if hub is not None and hub.current is not None and hub.driver is not None:
        return hub.current
    return _get_ident()


class _Waiter:
    __slots__ = ("hub", "task", "parked")

    def __init__(self, hub: Any, task: Any) -> None:
        self.hub = hub
        self.task = task
        self.parked = False

    def wake(self) -> None:
        """On the waiter's hub thread: reschedule it if it is still parked."""
        if self.parked:
            self.parked = False
            _ll.reschedule(self.task)


class Lock:
    """A ``threading.Lock`` usable by tasks and threads alike (module docstring)."""

    __slots__ = ("_lock", "_waiters", "__weakref__")

    def __init__(self) -> None:
        self._lock = real_allocate_lock()
        self._waiters: deque[Any] = deque()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        hub = task_hub()
        if hub is None:
            return self._lock.acquire(blocking, timeout)  # type: ignore[no-any-return]
        if not blocking and timeout != -1:
            raise ValueError("can't specify a timeout for a non-blocking call")
        if timeout < 0 and timeout != -1:
            raise ValueError("timeout value must be a non-negative number")
        if self._lock.acquire(False):
            return True
        if not blocking:
            return False
        if timeout == -1:
            self._wait(hub)
            return True
        with greenrt.move_on_after(timeout):
            self._wait(hub)
            return True
        return False

    def _wait(self, hub: Any) -> None:
        task = _ll.enter_checkpoint()
        w = _Waiter(hub, task)
        waiters = self._waiters
        while True:
            # register first, then try: a release between the try and the park finds
            # the waiter and wakes it (from another thread, through the hub's queue)
            waiters.append(w)
            if self._lock.acquire(False):
                try:
                    waiters.remove(w)
                except ValueError:
                    # a releaser popped us and its wake-up is on its way: pass it on,
                    # since we did not need it and another waiter may
                    self._wake_next()
                return

            def abort(w: Any = w) -> Any:
                w.parked = False
                try:
                    waiters.remove(w)
                except ValueError:
                    self._wake_next()  # we were handed a wake-up we cannot use
                return True

            w.parked = True
            counted = _raw_alive[0] > 0
            if counted:
                hub.threads_outstanding += 1
            try:
                _ll.park(abort, self)
            finally:
                if counted:
                    hub.threads_outstanding -= 1

    def _wake_next(self) -> None:
        try:
            w = self._waiters.popleft()
        except IndexError:
            return
        hub = w.hub
        if _ll.current_hub_or_none() is hub:
            w.wake()
        else:
            hub.call_soon_threadsafe(w.wake)

    def release(self) -> None:
        self._lock.release()
        if self._waiters:
            self._wake_next()

    def locked(self) -> bool:
        return self._lock.locked()  # type: ignore[no-any-return]

    __enter__ = acquire

    def __exit__(self, *exc: object) -> None:
        self.release()

    # what threading.Condition looks for on its lock

    def _is_owned(self) -> bool:
        if self._lock.acquire(False):
            self.release()
            return False
        return True

    def _release_save(self) -> None:
        self.release()

    def _acquire_restore(self, state: Any = None) -> None:
        if task_hub() is None:
            self._lock.acquire()
            return
        with greenrt.masked():
            self.acquire()

    def _at_fork_reinit(self) -> None:
        self._lock._at_fork_reinit()
        self._waiters.clear()

    def __repr__(self) -> str:
        return f"<greenrt.patch {'locked' if self.locked() else 'unlocked'} Lock at {id(self):#x}>"


class RLock:
    """A ``threading.RLock`` whose owner is the task (inside a hub) or the thread."""

    __slots__ = ("_block", "_owner", "_count", "__weakref__")

    def __init__(self) -> None:
        self._block = Lock()
        self._owner = None
        self._count = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        me = _owner_token()
        owner = self._owner
        if owner is me or (owner is not None and owner == me):
            self._count += 1
            return True
        # uncontended: take the inner lock at once (what Lock.acquire does first,
        # inside a task or not), without a second look-up of the hub
        rc = self._block._lock.acquire(False) or self._block.acquire(blocking, timeout)
        if rc:
            self._owner = me
            self._count = 1
        return rc

    __enter__ = acquire

    def release(self) -> None:
        me = _owner_token()
        if not (self._owner is me or (self._owner is not None and self._owner == me)):
            raise RuntimeError("cannot release un-acquired lock")
        self._count -= 1
        if not self._count:
            self._owner = None
            self._block.release()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def locked(self) -> bool:
        return self._block.locked()

    def _is_owned(self) -> bool:
        me = _owner_token()
        return self._owner is me or (self._owner is not None and self._owner == me)

    def _release_save(self) -> Any:
        if self._count == 0:
            raise RuntimeError("cannot release un-acquired lock")
        state = (self._count, self._owner)
        self._count = 0
        self._owner = None
        self._block.release()
        return state

    def _acquire_restore(self, state: Any) -> None:
        self._block._acquire_restore()
        self._count, self._owner = state

    def _at_fork_reinit(self) -> None:
        self._block._at_fork_reinit()
        self._owner = None
        self._count = 0

    def __repr__(self) -> str:
        return f"<greenrt.patch RLock owner={self._owner!r} count={self._count}>"


def allocate_lock() -> Lock:
    """``threading._allocate_lock`` / ``threading.Lock``: a cooperative lock."""
    return Lock()


class _StartedFlag:
    """A ``threading.Event`` stand-in on a *real* lock, for ``Thread._started``: the
    wait in ``Thread.start`` lasts microseconds, and parking the task there would
    hand the wake-up to a thread the deadlock detector may rightly ignore (greenrt's
    own pool workers), and make ``start`` cancellable half-way."""

    __slots__ = ("_lock", "_flag")

    def __init__(self) -> None:
        self._lock = real_allocate_lock()
        self._lock.acquire()
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        if not self._flag:
            self._flag = True
            self._lock.release()

    def clear(self) -> None:
        if self._flag:
            self._flag = False
            self._lock.acquire()

    def wait(self, timeout: Any = None) -> bool:
        if self._flag:
            return True
        if self._lock.acquire(True, -1 if timeout is None else timeout):
            self._lock.release()
        return self._flag


def thread_start(self: _threading.Thread) -> None:
    """``Thread.start``; inside a task its short wait for the thread to start is a
    real (blocking) wait, see ``_StartedFlag``."""
    if task_hub() is not None and not self._started.is_set():  # type: ignore[attr-defined]  # private stdlib API
        self._started = _StartedFlag()  # type: ignore[attr-defined]
    real_thread_start(self)


def thread_join(self: _threading.Thread, timeout: Any = None) -> None:
    """``Thread.join``; inside a task the wait runs in a pool thread (a checkpoint;
    a cancelled join abandons the wait, the thread is unaffected)."""
    if task_hub() is None or self is _threading.current_thread():
        return real_thread_join(self, timeout)
    greenrt.to_thread(real_thread_join, self, timeout, abandon_on_cancel=True, name="Thread.join")
