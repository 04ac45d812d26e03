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
from collections.abc import Callable, KeysView
from heapq import heappop as _heappop
from heapq import heappush as _heappush
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ._checkpoint import _enter, _park_slow, _raise_resume, current_task, park, yield_task
from ._exceptions import GreenrtError, InvalidStateError, InvariantViolation, NoHubError, WouldBlock
from ._hub import _CANCEL, _Raise
from ._hub import _tls as _hub_tls
from ._obligation import Obligation, reserve

if TYPE_CHECKING:  # pragma: no cover
    from ._task import Task

__all__ = [
    "Barrier", "BrokenBarrierError", "CapacityLimiter", "Condition", "Event", "Lock",
    "RWLock", "Semaphore",
]

#: A fast path (the resource was free) skips the yield half of the checkpoint, except
#: that every ``COOP_BUDGET``-th fast path on one primitive yields anyway, so a loop
#: that only ever finds its resource free still lets other tasks run.
COOP_BUDGET = 32

T = TypeVar("T")


def _checkpoint_task() -> Task[Any]:
    """The check half of a checkpoint; returns the current task."""
    try:
        hub = _hub_tls.hub
    except AttributeError:
        raise NoHubError() from None
    return _enter(hub)


def _note(obj: Any, write: bool = True) -> None:
    """Report an access to ``obj`` to a hub that wants them (``Hub.note_access``, the
    lab's schedule exploration). One attribute test on the real hub."""
    hub = getattr(_hub_tls, "hub", None)
    if hub is not None and hub.wants_access:
        hub.note_access(obj, write)


# The yield half of a checkpoint (cancellation was already checked).
_yield = yield_task


def _coop(obj: Any, task: Task[Any]) -> None:
    """Fast-path yield accounting, per primitive (deterministic under the lab)."""
    n = obj._coop + 1
    if n >= COOP_BUDGET:
        obj._coop = 0
        _yield(task)
    else:
        obj._coop = n


_MISSING = object()


class _WaitQueue:
    """A FIFO of parked tasks with O(1) removal on abort.

    ``wait(task, data)`` parks ``task`` until ``wake_first``/``wake_all`` hands it a
    value; an abort (cancellation) removes it from the queue and then runs
    ``on_abort`` (a primitive uses that to re-examine who can be served now). A task
    that was handed something has always been removed first, so it can no longer be
    aborted: hand-off and abort exclude each other.

    The queue maps each waiting task to its ``data`` (a parked task waits in exactly
    one place, so it is its own key: no per-wait key object or tuple).
    """

    __slots__ = ("_q",)

    def __init__(self) -> None:
        self._q: OrderedDict[Task[Any], Any] = OrderedDict()

    def __len__(self) -> int:
        return len(self._q)

    def __bool__(self) -> bool:
        return bool(self._q)

    def wait(self, task: Task[Any], data: Any = None, on_abort: Callable[[], None] | None = None,
             what: str | None = None) -> Any:
        """Park ``task`` (the current task) here. ``what`` names the wait for deadlock
        reports (``Task.waiting_for``)."""
        q = self._q
        q[task] = data  # a parked task waits in one place at a time: it is the key
        # The abort function is the task's own ``_abort_wait`` (a bound method: no
        # closure per wait); it finds the queue and ``on_abort`` on the task.
        task._wq = q
        task._wq_on_abort = on_abort
        abort = task._abort_wait
        hub = task._hub
        # fastpath park: copied from greenrt/_fastpath.py (python -m greenrt._fastpath --write)
        if task._pending:
            r = _park_slow(abort, what)  # may have to abort at once: the general path
        else:
            task._abort_fn = abort
            task.waiting_for = what
            nxt = None
            if hub._plain and not hub._cancel_lane:
                cd = hub._poll_countdown - 1
                if cd > 0:
                    timed = hub._timed
                    ready = hub._ready
                    if timed:
                        if hub._timed_streak < hub.streak_limit or not ready:
                            nxt = timed[0][3]
                            if nxt._glet is None:
                                nxt = None
                            else:
                                _heappop(timed)
                                hub._cancel_streak = 0
                                hub._timed_streak += 1
                    elif ready and ready[0]._glet is not None:
                        nxt = ready.popleft()
                        hub._cancel_streak = hub._timed_streak = 0
                    if nxt is not None:
                        hub._poll_countdown = cd
                        nxt._queued = False
                        hub.current = nxt
                        nxt._glet.switch()
            if nxt is None:
                hub._handoff()
            r = task._resume
            if r is not None:
                task._resume = None
                if r is _CANCEL or type(r) is _Raise:
                    _raise_resume(task, r)
        # end fastpath park
        return r

    def first(self) -> tuple[Task[Any], Any]:
        """``(task, data)`` of the first waiter (the queue must not be empty)."""
        q = self._q
        task = next(iter(q))
        return task, q[task]

    def wake_first(self, value: Any = None) -> tuple[Task[Any], Any]:
        """Hand ``value`` to the first waiter; return its ``(task, data)``."""
        task, data = self._q.popitem(False)
        hub = task._hub
        # fastpath reschedule: copied from greenrt/_fastpath.py (python -m greenrt._fastpath --write)
        if task._abort_fn is None:
            raise InvariantViolation(f"task {task.id} ({task.name}) woken but not parked")
        task._abort_fn = None
        task._resume = value
        if hub._plain and not (task._queued or task._pending or task._drains):
            task._queued = True
            sc = task._scope
            d = sc._deadline_eff
            if d is None:
                hub._ready.append(task)
            else:
                hub._timed_seq = tq = hub._timed_seq + 1
                _heappush(hub._timed, (d, -(sc._priority or 0), tq, task))
        else:
            hub._schedule(task)
        # end fastpath reschedule
        return task, data

    def wake_first_error(self, exc: BaseException) -> tuple[Task[Any], Any]:
        return self.wake_first(_Raise(exc))

    def wake_all(self, value: Any = None) -> int:
        n = 0
        while self._q:
            self.wake_first(value)
            n += 1
        return n

    def wake_all_error(self, make_exc: Callable[[], BaseException]) -> int:
        n = 0
        while self._q:
            self.wake_first_error(make_exc())
            n += 1
        return n

    def wake_matching_error(self, pred: Callable[[Any], bool],
                            make_exc: Callable[[], BaseException]) -> int:
        """Wake, with an error, every waiter whose data satisfies ``pred``."""
        q = self._q
        tasks = [t for t, d in q.items() if pred(d)]
        for task in tasks:
            del q[task]
            task._hub.reschedule(task, _Raise(make_exc()))
        return len(tasks)

    def tasks(self) -> list[Task[Any]]:
        return list(self._q)


class _WaitMap:
    """Parked tasks by key: a task waits under a key of its choosing (a request id, a
    reply token), and a waker wakes it by that key, with no queue order.

    The reply side of a request/response protocol: the requester parks under the
    request's key, the reader that parses the response wakes that key. The same
    hand-off rule as ``_WaitQueue``: a woken task has left the map and can no longer
    be aborted, an aborted one has left it before its ``Cancelled`` is raised, so a
    value given to ``wake`` reaches the task or ``wake`` returns False (nobody waits
    under that key any more: a late response) -- never both, never neither.

    The abort function is the task's own ``_abort_keyed_wait`` (a bound method: no
    closure or ``functools.partial`` per wait); the map and the key are kept on the
    task while it waits.
    """

    __slots__ = ("_q",)

    def __init__(self) -> None:
        self._q: dict[Any, Task[Any]] = {}

    def __len__(self) -> int:
        return len(self._q)

    def __bool__(self) -> bool:
        return bool(self._q)

    def __contains__(self, key: Any) -> bool:
        return key in self._q

    def wait(self, task: Task[Any], key: Any, what: Any = None) -> Any:
        """Park ``task`` (the current task, just past ``_enter``, with no switch
        since) under ``key``; a key another task waits under is a ``ValueError``.
        Not a checkpoint by itself. Both this and ``wake`` report an access to the
        map to the lab (a wake and a wait on it do not commute)."""
        hub = task._hub
        if hub.wants_access:
            hub.note_access(self, True)
        q = self._q
        if q.setdefault(key, task) is not task:
            raise ValueError(f"a task already waits under the key {key!r}")
        task._wq = q
        task._wq_key = key
        abort = task._abort_keyed_wait
        # fastpath park: copied from greenrt/_fastpath.py (python -m greenrt._fastpath --write)
        if task._pending:
            r = _park_slow(abort, what)  # may have to abort at once: the general path
        else:
            task._abort_fn = abort
            task.waiting_for = what
            nxt = None
            if hub._plain and not hub._cancel_lane:
                cd = hub._poll_countdown - 1
                if cd > 0:
                    timed = hub._timed
                    ready = hub._ready
                    if timed:
                        if hub._timed_streak < hub.streak_limit or not ready:
                            nxt = timed[0][3]
                            if nxt._glet is None:
                                nxt = None
                            else:
                                _heappop(timed)
                                hub._cancel_streak = 0
                                hub._timed_streak += 1
                    elif ready and ready[0]._glet is not None:
                        nxt = ready.popleft()
                        hub._cancel_streak = hub._timed_streak = 0
                    if nxt is not None:
                        hub._poll_countdown = cd
                        nxt._queued = False
                        hub.current = nxt
                        nxt._glet.switch()
            if nxt is None:
                hub._handoff()
            r = task._resume
            if r is not None:
                task._resume = None
                if r is _CANCEL or type(r) is _Raise:
                    _raise_resume(task, r)
        # end fastpath park
        return r

    def wake(self, key: Any, value: Any = None) -> bool:
        """Hand ``value`` to the task waiting under ``key``; False if none does (the
        value was not handed over). Not a checkpoint: the woken task runs later."""
        task = self._q.pop(key, None)
        if task is None:
            hub = getattr(_hub_tls, "hub", None)
            if hub is not None and hub.wants_access:
                hub.note_access(self, True)
            return False
        hub = task._hub
        if hub.wants_access:
            hub.note_access(self, True)
        # fastpath reschedule: copied from greenrt/_fastpath.py (python -m greenrt._fastpath --write)
        if task._abort_fn is None:
            raise InvariantViolation(f"task {task.id} ({task.name}) woken but not parked")
        task._abort_fn = None
        task._resume = value
        if hub._plain and not (task._queued or task._pending or task._drains):
            task._queued = True
            sc = task._scope
            d = sc._deadline_eff
            if d is None:
                hub._ready.append(task)
            else:
                hub._timed_seq = tq = hub._timed_seq + 1
                _heappush(hub._timed, (d, -(sc._priority or 0), tq, task))
        else:
            hub._schedule(task)
        # end fastpath reschedule
        return True

    def wake_error(self, key: Any, exc: BaseException) -> bool:
        """Make the wait under ``key`` raise ``exc``; False if nobody waits there.
        Not a checkpoint."""
        task = self._q.pop(key, None)
        if task is None:
            return False
        hub = task._hub
        if hub.wants_access:
            hub.note_access(self, True)
        hub.reschedule(task, _Raise(exc))
        return True

    def wake_all_error(self, make_exc: Callable[[], BaseException]) -> int:
        """Make every wait raise ``make_exc()`` (each key removed before its task is
        woken); the number woken. Not a checkpoint."""
        q = self._q
        n = 0
        while q:
            _key, task = q.popitem()
            task._hub.reschedule(task, _Raise(make_exc()))
            n += 1
        return n

    def keys(self) -> KeysView[Any]:
        """The keys waited under: a live, read-only view (``key in view`` costs a
        dict look-up, no Python call)."""
        return self._q.keys()


def _park_uninterruptible(queue: _WaitQueue, task: Task[Any], data: Any = None, what: str | None = None) -> Any:
    """Wait in ``queue`` without being abortable (not a checkpoint). For re-acquiring a
    lock that a caller must hold when it leaves, whatever happens (``Condition``)."""
    queue._q[task] = data
    return park(_never, what)


def _never() -> bool:
    return False


def _owner_name(task: Task[Any] | None) -> str:
    return "nobody" if task is None else f"task {task.id} ({task.name})"


# -- Event ---------------------------------------------------------------------------


class WaitLabel(str):
    """A ``Task.waiting_for`` label that also carries the object waited on (``.obj``),
    for wait-for graphs that name who holds it."""

    __slots__ = ("obj",)
    obj: Any

    def __new__(cls, label: str, obj: Any) -> WaitLabel:
        self = str.__new__(cls, label)
        self.obj = obj
        return self


class Event:
    """A one-shot flag: ``set()`` wakes every ``wait()``-er; it cannot be cleared
    (make a new Event instead; that avoids the lost-wakeup races of resettable events).
    """

    __slots__ = ("_flag", "_waiters", "_coop")

    def __init__(self) -> None:
        self._coop = 0
        self._flag = False
        self._waiters = _WaitQueue()

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        """Set the flag and wake all waiters. Not a checkpoint; idempotent."""
        hub = getattr(_hub_tls, "hub", None)
        if hub is not None and hub.wants_access:
            hub.note_access(self, True)
        if not self._flag:
            self._flag = True
            if self._waiters._q:
                self._waiters.wake_all(None)

    def wait(self) -> None:
        """Block until the flag is set. A checkpoint (also when already set). A
        cancelled wait leaves nothing behind."""
        try:
            hub = _hub_tls.hub
        except AttributeError:
            raise NoHubError() from None
        # fastpath enter: copied from greenrt/_fastpath.py (python -m greenrt._fastpath --write)
        task = hub.current
        if task is None or task._drains or task._pending or task._scope._quota_chain or hub._tracing:
            task = _enter(hub)
        # end fastpath enter
        if hub.wants_access:
            hub.note_access(self, False)
        if self._flag:
            _coop(self, task)
            return
        self._waiters.wait(task, what="Event.wait")

    def statistics(self) -> dict[str, Any]:
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
        self._coop = 0
        self._borrowers: dict[Any, None] = {}
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
        _note(self)
        self.acquire_on_behalf_of_nowait(current_task())

    def acquire_on_behalf_of(self, borrower: Any) -> None:
        """Take a token for ``borrower``, waiting (FIFO) if none is free.

        A checkpoint. A cancelled wait takes no token; if the token was handed over at
        the moment of cancellation, the call returns normally (the borrower holds it)
        and the cancellation is delivered at the next checkpoint.
        """
        task = _checkpoint_task()
        _note(self)
        if borrower in self._borrowers:
            raise InvalidStateError(f"{borrower!r} already holds a token of this limiter")
        if not self._waiters and len(self._borrowers) < self._total:
            self._borrowers[borrower] = None
            _coop(self, task)
            return
        self._waiters.wait(task, borrower, what="CapacityLimiter.acquire")

    def acquire(self) -> None:
        """``acquire_on_behalf_of(current task)``. A checkpoint; see there."""
        self.acquire_on_behalf_of(current_task())

    def release_on_behalf_of(self, borrower: Any) -> None:
        """Give back ``borrower``'s token. Not a checkpoint. Raises
        ``InvalidStateError`` if ``borrower`` holds none."""
        try:
            _note(self)
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

    def __exit__(self, *exc: object) -> None:
        self.release()

    def statistics(self) -> dict[str, Any]:
        return {"borrowed_tokens": len(self._borrowers), "total_tokens": self._total,
                "tasks_waiting": len(self._waiters), "borrowers": list(self._borrowers)}

    def __repr__(self) -> str:
        return (f"<CapacityLimiter {len(self._borrowers)}/{self._total} borrowed, "
                f"{len(self._waiters)} waiting>")


# -- Lock ------------------------------------------------------------------------------


class Lock:
    """A mutual-exclusion lock: FIFO-fair, not reentrant, with owner tracking.

    ``with lock: ...``. Only the owning task may release it; a release by another task
    raises ``InvalidStateError`` naming the owner. Acquiring a lock the task already
    holds raises ``InvalidStateError`` (it would deadlock).
    """

    __slots__ = ("_owner", "_waiters", "_acquired", "_coop", "_wait_label")

    def __init__(self) -> None:
        self._coop = 0
        self._owner: Task[Any] | None = None
        # what a waiter's Task.waiting_for says; it also carries the Lock, so a
        # deadlock report can name the holder
        self._wait_label = WaitLabel("Lock.acquire", self)
        self._waiters = _WaitQueue()
        self._acquired = 0

    def locked(self) -> bool:
        return self._owner is not None

    @property
    def owner(self) -> Task[Any] | None:
        """The task holding the lock, or ``None``."""
        return self._owner

    def acquire(self) -> None:
        """Take the lock, waiting in FIFO order while another task holds it.

        A checkpoint. A cancelled wait leaves the lock untouched (the task is removed
        from the queue). If the lock is handed to this task at the moment it is
        cancelled, ``acquire`` returns normally: the task owns the lock and receives
        the cancellation at its next checkpoint (``with lock:`` releases it then).
        """
        try:
            hub = _hub_tls.hub
        except AttributeError:
            raise NoHubError() from None
        # fastpath enter: copied from greenrt/_fastpath.py (python -m greenrt._fastpath --write)
        task = hub.current
        if task is None or task._drains or task._pending or task._scope._quota_chain or hub._tracing:
            task = _enter(hub)
        # end fastpath enter
        if hub.wants_access:
            hub.note_access(self)
        owner = self._owner
        if owner is None and not self._waiters._q:
            self._owner = task
            self._acquired += 1
            n = self._coop + 1
            if n >= COOP_BUDGET:
                self._coop = 0
                _yield(task)
            else:
                self._coop = n
            return
        if owner is task:
            raise InvalidStateError("this task already holds the Lock (it is not reentrant)")
        self._waiters.wait(task, what=self._wait_label)

    def acquire_nowait(self) -> None:
        """Take the lock or raise ``WouldBlock``. Not a checkpoint; never yields."""
        task = current_task()
        _note(self)
        if self._owner is task:
            raise InvalidStateError("this task already holds the Lock (it is not reentrant)")
        if self._owner is not None or self._waiters:
            raise WouldBlock(f"Lock is held by {_owner_name(self._owner)}")
        self._owner = task
        self._acquired += 1

    def release(self) -> None:
        """Release the lock; the longest waiter gets it at once. Not a checkpoint.
        Raises ``InvalidStateError`` unless the current task owns the lock."""
        try:
            task = _hub_tls.hub.current
        except AttributeError:
            raise NoHubError() from None
        if self._owner is not task or task is None:
            raise InvalidStateError(
                f"Lock released by {_owner_name(task)} but held by {_owner_name(self._owner)}")
        if task._hub.wants_access:
            task._hub.note_access(self)
        q = self._waiters._q
        if q:  # ``_hand_off`` inlined: the longest waiter owns the lock from now on
            t, _ = q.popitem(last=False)
            self._owner = t
            self._acquired += 1
            t._hub.reschedule(t, None)
        else:
            self._owner = None

    def _hand_off(self) -> None:
        if self._waiters:
            t, _ = self._waiters.first()
            self._owner = t
            self._acquired += 1
            self._waiters.wake_first(None)
        else:
            self._owner = None

    def _acquire_uninterruptible(self, task: Task[Any]) -> None:
        _note(self)
        if self._owner is None and not self._waiters:
            self._owner = task
            self._acquired += 1
        else:
            _park_uninterruptible(self._waiters, task, what="Lock.acquire (Condition re-acquire)")

    # ``with lock:`` binds nothing useful (``acquire`` returns None), like trio's Lock;
    # aliasing saves a frame on the hottest path.
    __enter__ = acquire

    def __exit__(self, etype: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # ``release`` inlined (one frame less on the hottest path); keep them in step.
        try:
            task = _hub_tls.hub.current
        except AttributeError:
            raise NoHubError() from None
        if self._owner is not task or task is None:
            raise InvalidStateError(
                f"Lock released by {_owner_name(task)} but held by {_owner_name(self._owner)}")
        if task._hub.wants_access:
            task._hub.note_access(self)
        q = self._waiters._q
        if q:  # ``_hand_off`` inlined: the longest waiter owns the lock from now on
            t, _ = q.popitem(last=False)
            self._owner = t
            self._acquired += 1
            t._hub.reschedule(t, None)
        else:
            self._owner = None

    def statistics(self) -> dict[str, Any]:
        o = self._owner
        return {"locked": o is not None, "owner": None if o is None else o.id,
                "tasks_waiting": len(self._waiters), "acquisitions": self._acquired}

    def __repr__(self) -> str:
        return f"<Lock owner={_owner_name(self._owner)} waiting={len(self._waiters)}>"


# -- Semaphore -------------------------------------------------------------------------


class Semaphore:
    """A counting semaphore whose permits are obligations.

    ``acquire()`` returns the permit, an :class:`~greenrt.Obligation` of kind
    ``semaphore_permit`` owned by the acquiring task and reserved at the caller's line.
    ``release()`` (or ``permit.commit()``) gives it back; a task that completes while
    holding one has leaked it: the runtime returns the permit (``on_abort``) and
    reports the leak with the reservation site.

    ``release()`` resolves the current task's oldest permit; from a task that holds
    none it resolves the oldest outstanding permit of any task, and when no permit is
    outstanding it adds one (bounded by ``max_value``; exceeding it raises
    ``InvalidStateError``). So ``value + outstanding`` only changes by such posts.
    """

    __slots__ = ("_value", "_max", "_waiters", "_held", "name", "_coop")

    def __init__(self, initial_value: int, *, max_value: int | None = None,
                 name: str | None = None):
        if not isinstance(initial_value, int) or initial_value < 0:
            raise ValueError(f"initial_value must be an int >= 0, not {initial_value!r}")
        if max_value is not None and max_value < initial_value:
            raise ValueError("max_value must be >= initial_value")
        self._coop = 0
        self._value = initial_value
        self._max = max_value
        self._waiters = _WaitQueue()
        self._held: OrderedDict[int, Obligation] = OrderedDict()
        self.name = name

    @property
    def value(self) -> int:
        """Permits available now."""
        return self._value

    @property
    def max_value(self) -> int | None:
        return self._max

    def _permit(self, stacklevel: int) -> Obligation:
        cell: list[Obligation] = []

        def done(*_: object) -> None:
            self._held.pop(cell[0].id, None)
            self._give_back()

        ob = reserve("semaphore_permit", name=self.name, on_commit=done, on_abort=done,
                     stacklevel=stacklevel + 1)
        cell.append(ob)
        self._held[ob.id] = ob
        return ob

    def _give_back(self) -> None:
        if self._waiters:
            self._waiters.wake_first(None)  # the permit passes straight to the waiter
        else:
            self._value += 1

    def acquire(self, *, _stacklevel: int = 1) -> Obligation:
        """Take a permit, waiting in FIFO order if none is free; return it.

        A checkpoint. A cancelled wait takes no permit. A permit handed over at the
        moment of cancellation is returned normally (the caller holds it; the
        cancellation comes at the next checkpoint), so no permit is ever lost.
        """
        task = _checkpoint_task()
        _note(self)
        if self._value > 0 and not self._waiters:
            self._value -= 1
            ob = self._permit(_stacklevel + 1)
            _coop(self, task)
            return ob
        self._waiters.wait(task, what="Semaphore.acquire")
        return self._permit(_stacklevel + 1)

    def acquire_nowait(self) -> Obligation:
        """Take a permit or raise ``WouldBlock``. Not a checkpoint."""
        current_task()
        _note(self)
        if self._value <= 0 or self._waiters:
            raise WouldBlock("no permit available")
        self._value -= 1
        return self._permit(2)

    def release(self) -> None:
        """Give a permit back (see the class docstring for whose). Not a checkpoint."""
        task = current_task()
        _note(self)
        held = self._held
        if held:
            mine = None
            for ob in held.values():
                if ob.owner_id == task.id:
                    mine = ob
                    break
            (mine or next(iter(held.values()))).commit()
            return
        if self._max is not None and self._value >= self._max:
            raise InvalidStateError(f"Semaphore released beyond its max_value {self._max}")
        self._give_back()

    def __enter__(self) -> Obligation:
        return self.acquire(_stacklevel=2)

    def __exit__(self, *exc: object) -> None:
        self.release()

    def statistics(self) -> dict[str, Any]:
        return {"value": self._value, "max_value": self._max, "held": len(self._held),
                "tasks_waiting": len(self._waiters)}

    def __repr__(self) -> str:
        return f"<Semaphore value={self._value} held={len(self._held)} waiting={len(self._waiters)}>"


# -- Condition -------------------------------------------------------------------------


class Condition:
    """A condition variable over a ``Lock`` (a new one by default).

    ``wait()`` releases the lock, waits for ``notify``, and re-acquires the lock before
    returning *or raising*: whatever happens, the caller holds the lock again when
    ``wait`` is over, so ``with cond:`` stays balanced.
    """

    __slots__ = ("_lock", "_waiters", "_notified")

    def __init__(self, lock: Lock | None = None):
        self._lock = lock if lock is not None else Lock()
        self._waiters = _WaitQueue()
        self._notified = 0

    @property
    def lock(self) -> Lock:
        return self._lock

    def acquire(self) -> None:
        """``lock.acquire()``. A checkpoint."""
        self._lock.acquire()

    def acquire_nowait(self) -> None:
        self._lock.acquire_nowait()

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def __enter__(self) -> Condition:
        self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def _check_owner(self, what: str) -> Task[Any]:
        task = current_task()
        if self._lock._owner is not task:
            raise InvalidStateError(f"Condition.{what}() requires holding the lock "
                                    f"(held by {_owner_name(self._lock._owner)})")
        return task

    def wait(self) -> None:
        """Release the lock, wait for a notification, re-acquire the lock.

        A checkpoint. The caller must hold the lock. A cancelled wait consumes no
        notification (the task leaves the queue first; a ``notify`` goes to the next
        waiter); a notification that arrives together with the cancellation is
        consumed and ``wait`` returns normally. Either way the lock is held again
        when ``wait`` returns or raises (the re-acquire cannot be interrupted).
        """
        task = _checkpoint_task()
        if self._lock._owner is not task:
            raise InvalidStateError("Condition.wait() requires holding the lock")
        _note(self)
        self._lock.release()
        try:
            self._waiters.wait(task, what="Condition.wait")
        finally:
            self._lock._acquire_uninterruptible(task)

    def wait_for(self, predicate: Callable[[], T]) -> T:
        """``wait()`` until ``predicate()`` is true; return its value. A checkpoint."""
        result = predicate()
        while not result:
            self.wait()
            result = predicate()
        return result

    def notify(self, n: int = 1) -> int:
        """Wake up to ``n`` waiters (they re-acquire the lock in order). Requires the
        lock. Not a checkpoint. Returns how many were woken."""
        self._check_owner("notify")
        _note(self)
        woken = 0
        while woken < n and self._waiters:
            self._waiters.wake_first(None)
            woken += 1
        self._notified += woken
        return woken

    def notify_all(self) -> int:
        """Wake every waiter. Requires the lock. Not a checkpoint."""
        return self.notify(len(self._waiters))

    def statistics(self) -> dict[str, Any]:
        return {"tasks_waiting": len(self._waiters), "notified": self._notified,
                "lock": self._lock.statistics()}


# -- Barrier ---------------------------------------------------------------------------


class BrokenBarrierError(GreenrtError):
    """The barrier was aborted (``Barrier.abort()``) while or before this task waited."""


class Barrier:
    """``parties`` tasks meet: each ``wait()`` blocks until ``parties`` tasks are
    waiting, then all are released and the barrier is reused (cyclic).

    ``wait`` returns the arrival index (0 for the first of the group, ``parties - 1``
    for the last). A cancelled waiter leaves the group before it trips (it does not
    count as arrived); a waiter released at the moment it is cancelled returns
    normally.
    """

    __slots__ = ("_parties", "_waiters", "_broken", "_generation")

    def __init__(self, parties: int):
        if not isinstance(parties, int) or parties < 1:
            raise ValueError(f"parties must be an int >= 1, not {parties!r}")
        self._parties = parties
        self._waiters = _WaitQueue()
        self._broken = False
        self._generation = 0

    @property
    def parties(self) -> int:
        return self._parties

    @property
    def n_waiting(self) -> int:
        return len(self._waiters)

    @property
    def broken(self) -> bool:
        return self._broken

    def wait(self) -> int:
        """Wait until ``parties`` tasks wait. A checkpoint. Raises ``BrokenBarrierError``
        if the barrier is or becomes broken."""
        task = _checkpoint_task()
        _note(self)
        if self._broken:
            raise BrokenBarrierError("the barrier is broken")
        if len(self._waiters) + 1 < self._parties:
            return self._waiters.wait(task, what="Barrier.wait")  # type: ignore[no-any-return]
        idx = 0
        while self._waiters:
            self._waiters.wake_first(idx)
            idx += 1
        self._generation += 1
        _yield(task)
        return idx

    def abort(self) -> None:
        """Break the barrier: current and future waiters get ``BrokenBarrierError``
        until ``reset()``. Not a checkpoint."""
        self._broken = True
        self._waiters.wake_all_error(lambda: BrokenBarrierError("the barrier was aborted"))

    def reset(self) -> None:
        """Make a broken barrier usable again (waiters, if any, are broken first)."""
        if self._waiters:
            self.abort()
        self._broken = False

    def statistics(self) -> dict[str, Any]:
        return {"parties": self._parties, "tasks_waiting": len(self._waiters),
                "broken": self._broken, "generation": self._generation}


# -- RWLock ----------------------------------------------------------------------------


class RWLock:
    """A readers-writer lock: many readers or one writer, FIFO-fair.

    A reader that arrives while a writer waits queues behind the writer (writers do
    not starve); when a writer leaves, the queued readers at the head of the queue are
    admitted together. Owners are tracked; releasing what you do not hold raises
    ``InvalidStateError``; neither mode is reentrant. A cancelled waiter leaves the
    queue and the lock re-examines who can be admitted (a cancelled writer at the head
    unblocks the readers behind it).
    """

    __slots__ = ("_readers", "_writer", "_waiters", "_coop")

    def __init__(self) -> None:
        self._coop = 0
        self._readers: dict[Task[Any], None] = {}
        self._writer: Task[Any] | None = None
        self._waiters = _WaitQueue()

    def _check_not_holding(self, task: Task[Any]) -> None:
        if task in self._readers or self._writer is task:
            raise InvalidStateError("this task already holds the RWLock (it is not reentrant)")

    def acquire_read(self) -> None:
        """Take a read lock. A checkpoint; cancel-safe (see ``Lock.acquire``)."""
        task = _checkpoint_task()
        _note(self)
        self._check_not_holding(task)
        if self._writer is None and not self._waiters:
            self._readers[task] = None
            _coop(self, task)
            return
        self._waiters.wait(task, "r", self._grant, "RWLock.acquire_read")

    def acquire_write(self) -> None:
        """Take the write lock. A checkpoint; cancel-safe (see ``Lock.acquire``)."""
        task = _checkpoint_task()
        _note(self)
        self._check_not_holding(task)
        if self._writer is None and not self._readers and not self._waiters:
            self._writer = task
            _coop(self, task)
            return
        self._waiters.wait(task, "w", self._grant, "RWLock.acquire_write")

    def acquire_read_nowait(self) -> None:
        task = current_task()
        self._check_not_holding(task)
        if self._writer is not None or self._waiters:
            raise WouldBlock("RWLock is write-locked or has waiters")
        self._readers[task] = None

    def acquire_write_nowait(self) -> None:
        task = current_task()
        self._check_not_holding(task)
        if self._writer is not None or self._readers or self._waiters:
            raise WouldBlock("RWLock is held")
        self._writer = task

    def release_read(self) -> None:
        task = current_task()
        _note(self)
        if task not in self._readers:
            raise InvalidStateError(f"{_owner_name(task)} does not hold a read lock")
        del self._readers[task]
        if not self._readers:
            self._grant()

    def release_write(self) -> None:
        task = current_task()
        _note(self)
        if self._writer is not task:
            raise InvalidStateError(
                f"RWLock write-released by {_owner_name(task)} but held by "
                f"{_owner_name(self._writer)}")
        self._writer = None
        self._grant()

    def _grant(self) -> None:
        w = self._waiters
        while w and self._writer is None:
            t, mode = w.first()
            if mode == "w":
                if self._readers:
                    return
                self._writer = t
                w.wake_first(None)
                return
            self._readers[t] = None
            w.wake_first(None)

    def read(self) -> _RWGuard:
        """``with rw.read(): ...``"""
        return _RWGuard(self.acquire_read, self.release_read)

    def write(self) -> _RWGuard:
        """``with rw.write(): ...``"""
        return _RWGuard(self.acquire_write, self.release_write)

    def statistics(self) -> dict[str, Any]:
        modes = list(self._waiters._q.values())
        return {"readers": len(self._readers),
                "writer": None if self._writer is None else self._writer.id,
                "tasks_waiting": len(modes), "readers_waiting": modes.count("r"),
                "writers_waiting": modes.count("w")}


class _RWGuard:
    __slots__ = ("_acq", "_rel")

    def __init__(self, acq: Callable[[], None], rel: Callable[[], None]) -> None:
        self._acq = acq
        self._rel = rel

    def __enter__(self) -> None:
        self._acq()

    def __exit__(self, *exc: object) -> None:
        self._rel()
