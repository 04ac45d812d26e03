"""Tasks: units of work running in their own greenlet, each owned by one region.

A task's life::

    created -> running -> finalizing -> completed(outcome)
    created/running -> cancel_requested -> cancelling -> finalizing -> completed

``cancel_requested`` means a cancellation is recorded on the task's root scope;
``cancelling`` means ``Cancelled`` has been delivered and the task is draining; a
task that finishes before a requested cancellation is delivered goes straight from
``cancel_requested`` to ``finalizing``. Any other transition is a bug and raises
``InvariantViolation``.

A task *is* its own root cancel scope (``Task`` subclasses ``CancelScope``): one
object per spawn instead of two, which matters when spawning is a hot path.

Greenlets are reused. A task gets a greenlet only when it first runs, from the hub's
free list; when it completes, its greenlet goes back to the list. Everything a task
could leave behind in a greenlet is reset before the next task runs on it: the
``contextvars`` context is replaced by the new task's (a copy of its spawner's, taken
at spawn time; ``None`` when the spawner's is empty, which behaves the same and saves
an allocation), the exception state is clean because the body runs inside a
``try``/``except`` that has fully unwound, and all per-task runtime state lives on the
``Task`` object, never on the greenlet.

A finished task drops its references to itself (as its own root scope and that
scope's owner) so reference counting frees it: otherwise every finished task would be
cyclic garbage, and the cyclic collector would rescan all of them on every pass.
"""

from __future__ import annotations

import enum
import os
import sys
from collections.abc import Callable
from types import CoroutineType as _CoroutineType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from greenlet import getcurrent

from . import _trace as tr
from ._checkpoint import checkpoint, park
from ._exceptions import (
    Cancelled,
    CleanupOverrun,
    InvalidStateError,
    InvariantViolation,
    ObligationLeak,
)
from ._log import log_detached, logger
from ._obligation import abort_leaked, log_leak
from ._outcome import Outcome
from ._scope import (
    CancelScope,
    _end_drain,
    _trace_finalize,
    derive_parent_reason,
    effective_reason,
)
from ._usage import coroutine_returned

if TYPE_CHECKING:  # pragma: no cover
    from types import FrameType

    from ._budget import Budget
    from ._hub import Hub
    from ._reason import CancelKind, CancelReason, CleanupBudget
    from ._region import Region
    from ._scope import _Drain

T = TypeVar("T")


class TaskState(enum.StrEnum):
    CREATED = "created"
    RUNNING = "running"
    CANCEL_REQUESTED = "cancel_requested"
    CANCELLING = "cancelling"
    FINALIZING = "finalizing"
    COMPLETED = "completed"

    def __str__(self) -> str:
        return self.value


_S = TaskState
# Module-level aliases: enum attribute access is slow, and these are on hot paths.
_CREATED = TaskState.CREATED
_RUNNING = TaskState.RUNNING
_CANCEL_REQUESTED = TaskState.CANCEL_REQUESTED
_CANCELLING = TaskState.CANCELLING
_FINALIZING = TaskState.FINALIZING
_COMPLETED = TaskState.COMPLETED
_OK_NONE = Outcome.ok(None)
_MISSING = object()
_ALLOWED = {
    _S.CREATED: frozenset({_S.RUNNING, _S.CANCEL_REQUESTED}),
    _S.RUNNING: frozenset({_S.CANCEL_REQUESTED, _S.FINALIZING}),
    _S.CANCEL_REQUESTED: frozenset({_S.CANCELLING, _S.FINALIZING}),
    _S.CANCELLING: frozenset({_S.FINALIZING}),
    _S.FINALIZING: frozenset({_S.COMPLETED}),
    _S.COMPLETED: frozenset(),
}


class Task(CancelScope, Generic[T]):
    """A task. Created by ``Region.spawn``; never construct one directly.

    ``id`` is sequential per hub (deterministic), ``name`` defaults to the function's
    qualified name. ``state`` and, once completed, ``outcome`` are public.
    Generic in the function's result: ``spawn(fn)`` with ``fn() -> int`` gives a
    ``Task[int]``, whose ``join()`` returns an ``int``.
    """

    # The fields every spawn assigns live in slots (the fastest stores); the rarely
    # set ones keep class-level defaults in CancelScope and here, in the instance dict.
    __slots__ = ("_fn", "_args", "_tstate", "_task_region", "_glet", "_scope", "_pending",
                 "_abort_fn", "_resume", "_queued", "_drains", "_context", "_hub", "_owner",
                 "_parent", "id", "_sid", "_quota_chain", "_deadline_eff", "name", "_state",
                 "_wq", "_wq_on_abort", "_wq_key")

    # Slot types (the runtime graph is typed loosely: ``Any`` where a field is None only
    # before a task starts or after it completes, when nothing reads it).
    _fn: Any  # Callable[..., T]; None once completed
    _args: Any  # tuple; None once completed
    _tstate: TaskState
    _task_region: Region
    _glet: Any
    _scope: Any
    _pending: bool
    _abort_fn: Callable[[], bool] | None
    _resume: Any
    _queued: bool
    _drains: list[_Drain] | tuple[()]
    _context: Any
    _hub: Any
    _owner: Any
    _parent: Any
    id: int
    _sid: int
    _quota_chain: tuple[Any, ...]
    _deadline_eff: float | None
    name: str
    # The wait queue (its dict) the task last parked in, and that wait's ``on_abort``:
    # what ``_abort_wait`` needs (``sync._WaitQueue.wait``); dropped when it completes.
    _wq: Any
    _wq_on_abort: Callable[[], None] | None
    # The key of a wait in a ``sync._WaitMap`` (``_abort_keyed_wait`` pops it from _wq).
    _wq_key: Any

    # Defaults for the rarely set fields (see CancelScope): spawning assigns only the
    # fields below in __init__.
    _outcome: Outcome[T] | None = None
    _obligations: dict[int, Any] | None = None
    _waiters: dict[Task[Any], None] | None = None
    _state_done = False
    _done_callbacks: list[Callable[[Task[T]], object]] | None = None
    #: What the task waits on while parked (set by ``park``; for diagnostics only).
    waiting_for: Any = None

    def __init__(self, hub: Hub, region: Region, fn: Callable[..., T], args: tuple[Any, ...],
                 name: str, budget: Budget | None = None) -> None:
        if budget is not None:
            CancelScope.__init__(self, budget=budget)
        self._fn = fn
        self._args = args
        self.name = name
        self._tstate = _CREATED
        self._task_region = region
        self._glet = None
        self._scope = self
        self._pending = False
        self._abort_fn = None
        self._resume = None
        self._queued = False
        self._drains = ()
        self._wq = None
        # The task runs in a copy of its spawner's context; an empty one needs no copy
        # (None: the greenlet starts with no context, and a ContextVar.set() in the
        # task creates a fresh one). Saves a GC-tracked allocation per plain spawn.
        ctx = getcurrent().gr_context
        self._context = ctx.copy() if ctx else None
        self._state = "entered"
        rs = region._scope
        # A light version of CancelScope._attach: a task's root scope is not entered
        # in its parent's ``_children`` (the region's ``_live`` already lists it) and
        # is identified in traces by the negative task id.
        self._hub = hub
        self._owner = self
        self._parent = rs
        hub._task_counter += 1
        self.id = tid = hub._task_counter
        self._sid = -tid
        chain = rs._quota_chain
        pd = rs._deadline_eff
        if budget is not None:
            if self._polls_left is not None or self._cost_left is not None:
                chain = chain + (self,)
            own = self._deadline
            if own is not None and (pd is None or own < pd):
                pd = own
            if self._deadline is not None:
                if self._deadline <= hub.now():
                    self._on_deadline()
                else:
                    self._timer = hub.call_at(self._deadline, self._on_deadline)
        self._quota_chain = chain
        self._deadline_eff = pd
        if rs._reason is not None or rs._parent is not None:
            inherited = effective_reason(rs)
            if inherited is not None:
                self._request(inherited if rs._reason is inherited
                              else derive_parent_reason(inherited, rs))

    # -- public -------------------------------------------------------------------------

    @property
    def state(self) -> TaskState:
        return self._tstate

    @property
    def outcome(self) -> Outcome[T] | None:
        """The outcome once completed, else ``None``."""
        return self._outcome

    @property
    def region(self) -> Region:
        return self._task_region

    @property
    def done(self) -> bool:
        return self._state_done

    def cancel(  # noqa: D401 - same contract as the scope's
            self, reason: CancelReason | CancelKind | str | None = None) -> None:
        """Request cancellation of this task (default kind ``user``).

        Not a checkpoint. The task receives ``Cancelled`` at its next checkpoint, or at
        once if it is blocked. No effect on a completed task.
        """
        if self._state_done:
            return
        CancelScope.cancel(self, reason)

    def join(self) -> T:
        """Wait for the task to complete and return its value.

        Raises the task's exception if it failed, ``TaskCancelledError`` if it was
        cancelled. A checkpoint. Cancelling the joiner leaves the task untouched (it
        keeps running in its region); joining can be retried.
        """
        if not self._state_done:
            me = self._hub.current
            if me is self:
                raise InvalidStateError("a task cannot join itself")
            if self._waiters is None:
                self._waiters = {}
            self._waiters[me] = None

            def abort() -> bool:
                self._waiters.pop(me, None)  # type: ignore[union-attr]  # set above
                return True

            park(abort, self)
        else:
            checkpoint()
        return self._outcome.unwrap()  # type: ignore[union-attr]  # done: set by _finish

    def add_done_callback(self, fn: Callable[[Task[T]], object]) -> None:
        """Call ``fn(task)`` (on the hub, not a checkpoint) when the task completes."""
        if self._state_done:
            fn(self)
            return
        if self._done_callbacks is None:
            self._done_callbacks = []
        self._done_callbacks.append(fn)

    def __repr__(self) -> str:
        return f"<Task {self.id} {self.name!r} {self._tstate.value}>"

    def _abort_wait(self) -> bool:
        """The abort function of a wait in a ``sync._WaitQueue`` (``park``'s contract):
        leave the queue and run the wait's ``on_abort`` if the task was still in it."""
        if self._wq.pop(self, _MISSING) is not _MISSING:
            on_abort = self._wq_on_abort
            if on_abort is not None:
                on_abort()
        return True

    def _abort_keyed_wait(self) -> bool:
        """The abort function of a wait in a ``sync._WaitMap``: leave the map. (A
        task woken by key has been popped from it already, and is no longer
        abortable: the runtime does not call this then.)"""
        q = self._wq
        if q.get(self._wq_key) is self:
            del q[self._wq_key]
        return True

    # -- state machine ------------------------------------------------------------------

    def _transition(self, new: TaskState) -> None:
        old = self._tstate
        if new not in _ALLOWED[old]:
            raise InvariantViolation(f"task {self.id}: illegal transition {old} -> {new}")
        self._tstate = new

    def _note_cancel_requested(self) -> None:
        if self._tstate is _RUNNING or self._tstate is _CREATED:
            self._transition(_CANCEL_REQUESTED)

    def _note_cancelling(self) -> None:
        if self._tstate is _CANCEL_REQUESTED:
            self._transition(_CANCELLING)


def _worker_main(task: Any) -> None:  # a Task, then None between two tasks
    """Body of every task greenlet: run tasks until the free list is full."""
    hub = task._hub
    free = hub._free_glets
    me = getcurrent()
    while True:
        _run_task(task)
        # Common case on the real hub: the next ready task has not started yet, so
        # run it right here, on this greenlet, without any switch.
        # fastpath run_in_place: copied from greenrt/_fastpath.py (python -m greenrt._fastpath --write)
        task = None
        if hub._plain and not (hub._cancel_lane or hub._timed):
            cd = hub._poll_countdown - 1
            ready = hub._ready
            if cd > 0 and ready and ready[0]._glet is None:
                task = ready.popleft()
                hub._cancel_streak = hub._timed_streak = 0
                hub._poll_countdown = cd
                task._queued = False
                hub.current = task
                task._glet = me
                me.gr_context = task._context
        # end fastpath run_in_place
        if task is not None:
            continue
        if len(free) >= hub.free_greenlet_limit:
            return
        free.append(me)
        # Hand control to the next runnable task; we come back here only when a new
        # task is started on this greenlet (possibly at once, if it is the next one).
        task = hub._handoff()
        while task is None:  # defensive: woken without a task to run
            task = hub._glet.switch()


def _run_task(task: Task[Any]) -> None:
    hub = task._hub
    outcome: Outcome[Any]
    if task._tstate is _CREATED:
        task._tstate = _RUNNING
    if hub._tracing:
        hub._emit(tr.TASK_START, task.id, task._task_region.id, name=task.name)
    try:
        args = task._args
        # fn(*args) is CALL_FUNCTION_EX, which CPython 3.11 runs in a nested C-level
        # eval loop; a plain call of a Python function does not nest. Every C frame
        # on a task's stack is copied out and back in by each greenlet switch and
        # kept on the heap while the task is parked.
        if not args:
            value = task._fn()
        elif len(args) == 1:
            value = task._fn(args[0])
        else:
            value = task._fn(*args)
    except Cancelled as exc:
        if exc._scope is task:
            outcome = Outcome.cancelled(exc.reason)
            task.cancelled_caught = True
        else:
            outcome = Outcome.panicked(InvariantViolation(
                f"task {task.id} ({task.name}) let a Cancelled aimed at scope "
                f"{getattr(exc._scope, 'id', None)} escape"))
            outcome.value.__cause__ = exc
    except Exception as exc:
        outcome = Outcome.err(exc)
    except BaseException as exc:  # noqa: BLE001 - panics are outcomes too
        outcome = Outcome.panicked(exc)
    else:
        if value is None:
            outcome = _OK_NONE
        elif type(value) is _CoroutineType:  # a sync wrapper around an async def
            outcome = Outcome.err(coroutine_returned(value, f"{task.id} ({task.name})"))
        else:
            outcome = Outcome.ok(value)
    _finish(task, outcome)


def _unexited_message(task: Task[Any]) -> str:
    """Name every scope the task left entered (innermost first): a region by its name
    and the line that opened it."""
    names = []
    sc = task._scope
    while sc is not None and sc is not task:
        r = sc._region
        if r is not None:
            names.append(f"region {r.describe()}")
        else:
            names.append(f"cancel scope {sc.name!r}" if sc.name else "a cancel scope")
        sc = sc._parent
    return (f"task {task.id} ({task.name}) completed inside {', '.join(names) or 'a scope'} "
            "that was entered but never exited: open regions and scopes with a `with` "
            "statement (`with greenrt.region() as r:`), never by calling __enter__ by hand "
            "or inside a generator that is not run to its end")


def _finish(task: Task[Any], outcome: Outcome[Any]) -> None:
    hub = task._hub
    st = task._tstate
    if st is _RUNNING or st is _CANCEL_REQUESTED or st is _CANCELLING:
        task._tstate = _FINALIZING
    else:
        task._transition(_FINALIZING)  # raises: not a legal predecessor
    if task._scope is not task:
        # Scopes are with-blocks, so this means a scope object was exited by hand.
        outcome = outcome.join(Outcome.panicked(InvariantViolation(_unexited_message(task))))
        task._scope = task
    if task._drains:
        for d in list(task._drains):
            _end_drain(task, d.scope)
    obs = task._obligations
    if obs:
        outcome = _handle_leaks(task, outcome)
    if task._drains or (task._reason is not None and task._delivered):
        _trace_finalize(task, task)
    if task._timer is not None:
        task._timer.cancel()
        task._timer = None
    task._outcome = outcome
    task._tstate = _COMPLETED
    task._state_done = True
    task._abort_fn = None
    if hub._tracing:
        hub._emit(tr.TASK_COMPLETE, task.id, task._task_region.id, outcome=repr_outcome(outcome))
    # Release what the task held so a finished task keeps nothing alive.
    task._fn = None
    task._args = None
    task._context = None
    task._glet = None
    task._wq = task._wq_on_abort = task._wq_key = None
    # A task is its own root scope and that scope's owner: drop both self-references
    # so a finished task is freed by reference counting instead of being left, with
    # its outcome, to the cyclic GC (whose collections then scan every live task).
    task._scope = task._owner = None
    task._task_region._child_done(task)
    waiters = task._waiters
    if waiters:
        task._waiters = None
        for w in waiters:
            if w._abort_fn is not None:
                hub.reschedule(w, None)
    cbs = task._done_callbacks
    if cbs:
        task._done_callbacks = None
        for cb in cbs:
            try:
                cb(task)
            except Exception as exc:  # noqa: BLE001 - the task is done: nobody to raise to
                log_detached("done callback %r of task %s (%s) raised", exc, cb, task.id, task.name)


def _handle_leaks(task: Task[Any], outcome: Outcome[Any]) -> Outcome[Any]:
    leaked = abort_leaked(task._obligations.values(),  # type: ignore[union-attr]  # caller checked
                          task.id, f"task {task.id} ({task.name})")
    task._obligations = None
    if not leaked:
        return outcome
    policy = task._task_region._effective_leak_policy()
    if policy == "error":
        err = ObligationLeak(leaked, f"task {task.id} ({task.name})")
        if outcome.is_ok:
            return Outcome.err(err)
        if outcome.value is not None and isinstance(outcome.value, BaseException):
            outcome.value.add_note(str(err))
    elif policy == "log":
        log_leak(leaked, f"task {task.id} ({task.name})")
    return outcome



#: Greenlets of abandoned tasks. They stay referenced for the life of the process: a
#: greenlet that is garbage-collected is resumed with GreenletExit, which would run
#: the very code that refused to stop (and it could swallow that too).
_ABANDONED_GREENLETS: list[Any] = []

_GREENRT_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _user_site() -> str | None:
    """``file:line`` of the innermost frame outside greenrt (the last checkpoint)."""
    f: FrameType | None = sys._getframe(1)
    while f is not None:
        fn = f.f_code.co_filename
        if not os.path.abspath(fn).startswith(_GREENRT_DIR):
            return f"{fn}:{f.f_lineno}"
        f = f.f_back
    return None


def abandon(task: Task[Any], reason: CancelReason, budget: CleanupBudget) -> None:
    """Stop resuming ``task`` for good: it overran its cleanup budget and the grace that
    follows by swallowing ``Cancelled``. Runs in the task's own greenlet, from the
    checkpoint that found the overrun, and never returns.

    The task completes with ``panicked(CleanupOverrun)`` (its obligations are aborted
    and reported under the usual leak policy, its region counts it as ``abandoned``
    and may close); a region the task opened itself has its children cancelled
    (``shutdown``), and the task completes once they have. Its greenlet is switched
    away from and never switched back to (see ``_ABANDONED_GREENLETS``)."""
    from ._reason import CancelKind, CancelReason

    hub = task._hub
    exc = CleanupOverrun(reason, budget, _user_site())
    _ABANDONED_GREENLETS.append(getcurrent())
    region = task._task_region
    region._abandoned += 1
    logger.warning("greenrt: task %s (%s) abandoned: %s", task.id, task.name, exc)
    if hub._tracing:
        hub._emit(tr.CANCEL_ABANDONED, task.id, region.id, reason=reason.to_dict(),
                  site=exc.site, polls=budget.polls, seconds=budget.seconds)
    inner = []
    s = task._scope
    while s is not None and s is not task and s._owner is task:
        r = getattr(s, "_region", None)
        if r is not None and r._live:
            inner.append(r)
        s = s._parent
    task._scope = task  # its inner scopes are never exited: the task ends at its root

    def finish() -> None:
        if not any(r._live for r in inner):
            _finish(task, Outcome.panicked(exc))

    if inner:
        for r in inner:
            r._on_empty = finish
            r._scope._request(CancelReason(
                CancelKind.SHUTDOWN, message=f"its owner task {task.id} was abandoned",
                origin_task=task.id, origin_region=r.id, time=hub.now()))
    else:
        _finish(task, Outcome.panicked(exc))
    hub._handoff()
    raise InvariantViolation(f"abandoned task {task.id} was resumed")  # pragma: no cover


def repr_outcome(outcome: Outcome[Any]) -> str:
    kind = outcome.kind.name.lower()
    v = outcome.value
    if outcome.is_ok:
        return kind
    if outcome.is_cancelled:
        return f"{kind}:{v.kind.value}"
    return f"{kind}:{type(v).__name__}"
