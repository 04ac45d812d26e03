"""Synchronization primitives for greenrt tasks.

``Lock``, ``Semaphore``, ``Event``, ``Condition``, ``CapacityLimiter``, ``Barrier`` and
``RWLock``. They serve tasks of one hub; none of them is thread-safe (use
``greenrt.from_thread`` to reach them from a worker thread).

Every blocking method is a checkpoint: it first checks for cancellation (and charges
the poll budget), then completes at once or parks the task in a FIFO queue. Waiting is
cancel-safe; the rules that make it so:

* **Hand-off, not wake-and-retry.** Whoever frees a resource (``release``, ``set``,
  ``notify``...) removes the first waiter from the queue and hands the resource to it
  directly (``reschedule``). From that instant the waiter owns the resource: its wait
  can no longer be aborted (the runtime calls ``abort_fn`` only for a task that is
  still parked, and ``reschedule`` un-parks it), so the blocking call returns
  normally and a cancellation requested at the same moment is delivered at the
  task's *next* checkpoint. A cancellation therefore either removes the waiter
  before the hand-off (nothing was taken: no lost permit, no stuck lock) or arrives
  after it (the caller holds the resource and releases it while unwinding, e.g. in
  ``with lock:``'s ``__exit__``). There is no third case.
* **Fairness.** Hand-off also makes every queue FIFO: a task that arrives while
  others wait queues behind them even if the resource is momentarily free (no
  barging), so a waiter cannot starve.
* ``X_nowait`` never blocks and never yields; it raises ``greenrt.WouldBlock``.

Obligations. A ``Semaphore`` permit is an obligation of kind ``semaphore_permit``
(``greenrt.reserve`` with an ``on_abort`` hook that returns the permit): a task that
completes while holding one has leaked it; the runtime returns the permit and reports
the leak with the site of the ``acquire`` call.

Hazards: ``Lock``, ``RWLock`` and ``CapacityLimiter`` track owners; releasing
something you do not hold raises ``InvalidStateError`` naming the owner, because a
release by the wrong task is a bug that would otherwise surface much later as a
stuck or doubly-held lock.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from ._checkpoint import _enter, current_task, park
from ._exceptions import InvalidStateError, WouldBlock
from ._hub import current_hub

__all__ = ["CapacityLimiter", "Event"]


def _checkpoint_task():
    """The check half of a checkpoint; returns the current task."""
    return _enter(current_hub())


def _yield(task) -> None:
    """The yield half of a checkpoint for a fast path (cancellation already checked)."""
    from ._checkpoint import _raise_resume

    hub = task._hub
    hub._schedule(task)
    hub._glet.switch()
    r = task._resume
    if r is not None:
        task._resume = None
        _raise_resume(task, r)


class _WaitQueue:
    """A FIFO of parked tasks with O(1) removal on abort.

    ``wait(data)`` parks the current task until ``wake_first``/``wake_all`` hands it a
    value; an abort (cancellation) removes it from the queue, so a task that is handed
    something has always been removed first and can no longer be aborted.
    """

    __slots__ = ("_q",)

    def __init__(self) -> None:
        self._q: OrderedDict = OrderedDict()

    def __len__(self) -> int:
        return len(self._q)

    def __bool__(self) -> bool:
        return bool(self._q)

    def wait(self, task, data: Any = None) -> Any:
        key = object()
        q = self._q
        q[key] = (task, data)

        def abort() -> bool:
            q.pop(key, None)
            return True

        return park(abort)

    def first(self):
        """``(task, data)`` of the first waiter (the queue must not be empty)."""
        return next(iter(self._q.values()))

    def wake_first(self, value: Any = None):
        """Hand ``value`` to the first waiter; return its ``(task, data)``."""
        _, (task, data) = self._q.popitem(last=False)
        task._hub.reschedule(task, value)
        return task, data

    def wake_all(self, value: Any = None) -> int:
        n = 0
        while self._q:
            self.wake_first(value)
            n += 1
        return n

    def tasks(self) -> list:
        return [t for t, _ in self._q.values()]


def _owner_name(task) -> str:
    return "nobody" if task is None else f"task {task.id} ({task.name})"


# -- Event ---------------------------------------------------------------------------


class Event:
    """A one-shot flag: ``set()`` wakes every ``wait()``-er; it cannot be cleared
    (make a new Event instead; that avoids the lost-wakeup races of resettable events).
    """

    __slots__ = ("_flag", "_waiters")

    def __init__(self) -> None:
        self._flag = False
        self._waiters = _WaitQueue()

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        """Set the flag and wake all waiters. Not a checkpoint; idempotent."""
        if not self._flag:
            self._flag = True
            self._waiters.wake_all(None)

    def wait(self) -> None:
        """Block until the flag is set. A checkpoint (also when already set). A
        cancelled wait leaves nothing behind."""
        task = _checkpoint_task()
        if self._flag:
            _yield(task)
            return
        self._waiters.wait(task)

    def statistics(self) -> dict:
        return {"set": self._flag, "tasks_waiting": len(self._waiters)}

    def __repr__(self) -> str:
        return f"<Event set={self._flag} waiting={len(self._waiters)}>"


# -- CapacityLimiter -------------------------------------------------------------------


class CapacityLimiter:
    """At most ``total_tokens`` borrowers at a time; each borrower holds one token.

    A borrower is the current task by default (``acquire_on_behalf_of`` names another
    object, e.g. a thread job). A borrower cannot hold two tokens at once, and only the
    borrower can give its token back. ``total_tokens`` can be changed at any time; a
    raise wakes waiters at once, a cut takes effect as tokens come back.
    """

    def __init__(self, total_tokens: int):
        self._borrowers: dict = {}
        self._waiters = _WaitQueue()
        self._total = 0
        self.total_tokens = total_tokens

    @property
    def total_tokens(self) -> int:
        return self._total

    @total_tokens.setter
    def total_tokens(self, value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"total_tokens must be an int >= 1, not {value!r}")
        self._total = value
        self._hand_off()

    @property
    def borrowed_tokens(self) -> int:
        return len(self._borrowers)

    @property
    def available_tokens(self) -> int:
        return max(0, self._total - len(self._borrowers))

    def _hand_off(self) -> None:
        w = self._waiters
        while w and len(self._borrowers) < self._total:
            _, borrower = w.first()
            self._borrowers[borrower] = None
            w.wake_first(None)

    def acquire_on_behalf_of_nowait(self, borrower: Any) -> None:
        """Take a token for ``borrower`` or raise ``WouldBlock``. Not a checkpoint."""
        if borrower in self._borrowers:
            raise InvalidStateError(f"{borrower!r} already holds a token of this limiter")
        if self._waiters or len(self._borrowers) >= self._total:
            raise WouldBlock("no token available")
        self._borrowers[borrower] = None

    def acquire_nowait(self) -> None:
        """Take a token for the current task or raise ``WouldBlock``. Not a checkpoint."""
        self.acquire_on_behalf_of_nowait(current_task())

    def acquire_on_behalf_of(self, borrower: Any) -> None:
        """Take a token for ``borrower``, waiting (FIFO) if none is free.

        A checkpoint. A cancelled wait takes no token; if the token was handed over at
        the moment of cancellation, the call returns normally (the borrower holds it)
        and the cancellation is delivered at the next checkpoint.
        """
        task = _checkpoint_task()
        if borrower in self._borrowers:
            raise InvalidStateError(f"{borrower!r} already holds a token of this limiter")
        if not self._waiters and len(self._borrowers) < self._total:
            self._borrowers[borrower] = None
            try:
                _yield(task)
            except BaseException:
                # Cancelled while yielding: the call did not complete, so give it back.
                self.release_on_behalf_of(borrower)
                raise
            return
        self._waiters.wait(task, borrower)

    def acquire(self) -> None:
        """``acquire_on_behalf_of(current task)``. A checkpoint; see there."""
        self.acquire_on_behalf_of(current_task())

    def release_on_behalf_of(self, borrower: Any) -> None:
        """Give back ``borrower``'s token. Not a checkpoint. Raises
        ``InvalidStateError`` if ``borrower`` holds none."""
        try:
            del self._borrowers[borrower]
        except KeyError:
            raise InvalidStateError(f"{borrower!r} does not hold a token of this limiter") from None
        self._hand_off()

    def release(self) -> None:
        """Give back the current task's token. Not a checkpoint."""
        self.release_on_behalf_of(current_task())

    def __enter__(self) -> CapacityLimiter:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def statistics(self) -> dict:
        return {"borrowed_tokens": len(self._borrowers), "total_tokens": self._total,
                "tasks_waiting": len(self._waiters), "borrowers": list(self._borrowers)}

    def __repr__(self) -> str:
        return (f"<CapacityLimiter {len(self._borrowers)}/{self._total} borrowed, "
                f"{len(self._waiters)} waiting>")
