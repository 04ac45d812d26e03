"""Checkpoints and parking: the only places a task gives up control.

``checkpoint()`` is the rule every blocking call follows: first *check* (charge one
poll against the enclosing budgets, deliver a pending cancellation), then *yield* to
the hub so other tasks run. Blocking calls are checkpoints even when they could
complete at once.

``park(abort_fn)`` is the low-level wait every primitive is built on (Trio's
``wait_task_rescheduled``): the task leaves the run queues until somebody calls
``reschedule(task, value)``. If a deliverable cancellation arrives while it is
parked, the runtime calls ``abort_fn()``; returning ``True`` means "I have removed
this task from whatever it was waiting on", and the task wakes with ``Cancelled``.
Returning ``False`` means the wait cannot be abandoned now (a thread is still
running, say); the primitive will reschedule the task itself and the cancellation is
delivered at the next checkpoint.

Hazards: a primitive must never reschedule a task that is not parked on it (that is
a double wake; the hub detects queueing a task twice and raises
``InvariantViolation``), and must make sure that whatever it hands over on wake-up is
either consumed by the woken task or returned when the wait is aborted.
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappop as _heappop
from heapq import heappush as _heappush
from typing import TYPE_CHECKING, Any

from . import _trace as tr
from ._exceptions import InvariantViolation, NoHubError
from ._hub import _CANCEL, _Raise, _tls, current_hub
from ._scope import _find_target, charge_cost, charge_polls, deliver_pending
from ._usage import check_deadline, check_duration

_INF = float("inf")

if TYPE_CHECKING:  # pragma: no cover
    from ._hub import Hub
    from ._task import Task


def current_task() -> Task[Any]:
    """The running task. Raises ``NoHubError`` outside a task."""
    try:
        task: Task[Any] | None = _tls.hub.current
    except AttributeError:
        raise NoHubError() from None
    if task is None:
        raise NoHubError.outside_task()
    return task


def _enter(hub: Hub) -> Task[Any]:
    """The check half of a checkpoint; returns the current task."""
    task: Task[Any] | None = hub.current
    if task is None:
        raise NoHubError.outside_task()
    if task._drains or task._scope._quota_chain:
        charge_polls(task)
    if task._pending:
        deliver_pending(task)
    if hub._tracing:
        hub._emit(tr.CHECKPOINT, task.id, None)
    return task


def checkpoint() -> None:
    """Check for cancellation and budgets, then let other tasks run.

    A checkpoint. Raises ``Cancelled`` if a cancellation is pending for the task and
    not masked; charges one poll against every enclosing poll quota.
    """
    try:
        hub = _tls.hub
    except AttributeError:
        raise NoHubError() from None
    # fastpath enter: copied from greenrt/_fastpath.py (python -m greenrt._fastpath --write)
    task = hub.current
    if task is None or task._drains or task._pending or task._scope._quota_chain or hub._tracing:
        task = _enter(hub)
    # end fastpath enter
    # fastpath yield: copied from greenrt/_fastpath.py (python -m greenrt._fastpath --write)
    if hub._plain and not (task._queued or hub._cancel_lane or hub._timed
                           or task._scope._deadline_eff is not None):
        cd = hub._poll_countdown - 1
        ready = hub._ready
        if cd <= 0:
            hub._schedule(task)
            hub._handoff()
        elif not ready:
            hub._cancel_streak = hub._timed_streak = 0
            hub._poll_countdown = cd  # the only runnable task: keep running
        else:
            nxt = ready[0]
            glet = nxt._glet
            if glet is None:
                hub._schedule(task)
                hub._handoff()
            else:
                ready.popleft()
                ready.append(task)
                task._queued = True
                hub._cancel_streak = hub._timed_streak = 0
                nxt._queued = False
                hub._poll_countdown = cd
                hub.current = nxt
                glet.switch()
    else:
        hub._schedule(task)
        hub._handoff()
    # end fastpath yield
    r = task._resume
    if r is not None:
        task._resume = None
        _raise_resume(task, r)


def checkpoint_if_cancelled() -> None:
    """The check half of a checkpoint, without yielding. Raises ``Cancelled`` if due.

    Protocol code calls this once per message (a publish, a subscription's next
    message), so it carries the ``enter`` fast path instead of two more calls."""
    try:
        hub = _tls.hub
    except AttributeError:
        raise NoHubError("not inside greenrt.run()") from None
    # fastpath enter: copied from greenrt/_fastpath.py (python -m greenrt._fastpath --write)
    task = hub.current
    if task is None or task._drains or task._pending or task._scope._quota_chain or hub._tracing:
        task = _enter(hub)
    # end fastpath enter


def yield_task(task: Task[Any]) -> None:
    """The yield half of a checkpoint for ``task`` (the running task; its check half
    already ran): requeue it, run the others, and raise what it was resumed with, if
    anything. The one shared implementation behind ``lowlevel.yield_now`` and the
    fast-path fairness yields of sync primitives and streams."""
    task._hub._yield_task(task)
    r = task._resume
    if r is not None:
        task._resume = None
        _raise_resume(task, r)


def _raise_resume(task: Task[Any], r: Any) -> None:
    if r is _CANCEL:
        deliver_pending(task)
        raise InvariantViolation(f"task {task.id} was woken for a cancellation with none pending")
    if type(r) is _Raise:
        raise r.exc


def park(abort_fn: Callable[[], bool], wait_for: Any = None) -> Any:
    """Suspend the current task until ``reschedule`` wakes it; return the value given.

    Not itself a checkpoint (callers call ``checkpoint_if_cancelled`` or ``_enter``
    first, which is what makes their blocking call one). See the module docstring for
    the ``abort_fn`` contract. ``wait_for`` describes what the task waits on (an
    object or a short string); it is kept on the task while it is parked
    (``Task.waiting_for``) for deadlock reports and debugging. Cancelled while
    parked, the task wakes with ``Cancelled`` after ``abort_fn`` said it left its wait.
    """
    hub = _tls.hub
    task = hub.current
    abort = abort_fn
    what = wait_for
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


def _park_slow(abort_fn: Callable[[], bool], wait_for: Any = None) -> Any:
    """``park``'s general path: for a task with a pending cancellation, which may have
    to abort its wait at once."""
    hub = _tls.hub
    task = hub.current
    task._abort_fn = abort_fn
    task.waiting_for = wait_for
    if task._pending and _find_target(task) is not None:
        if abort_fn():
            task._abort_fn = None
            deliver_pending(task)
            raise InvariantViolation("pending cancellation vanished")
    hub._handoff()
    r = task._resume
    if r is None:
        return None
    task._resume = None
    if r is _CANCEL or type(r) is _Raise:
        _raise_resume(task, r)
    return r


def reschedule(task: Task[Any], value: Any = None) -> None:
    """Wake a parked task; ``park`` returns ``value`` in it. Not a checkpoint."""
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


def reschedule_with_error(task: Task[Any], exc: BaseException) -> None:
    """Wake a parked task; ``park`` raises ``exc`` in it. Not a checkpoint."""
    task._hub.reschedule(task, _Raise(exc))


def charge(n: int = 1) -> None:
    """Charge ``n`` units against every enclosing cost quota. Not a checkpoint: an
    exhausted quota is a cancellation request delivered at the next checkpoint."""
    task = current_task()
    if task._scope._quota_chain:
        charge_cost(task, n)


def now() -> float:
    """Hub time in seconds (monotonic on the real hub, virtual under the lab)."""
    return current_hub().now()


def sleep_until(deadline: float) -> None:
    """Sleep until hub time ``deadline``. A checkpoint; a cancelled sleep leaves
    nothing behind (its timer is removed). ``deadline`` must be a number (not NaN;
    ``TypeError``/``ValueError`` otherwise); ``math.inf`` sleeps until cancelled."""
    t = type(deadline)
    if (t is not float and t is not int) or deadline != deadline or deadline == _INF:
        if check_deadline(deadline, "deadline") == _INF:
            sleep_forever()
            return
        deadline = float(deadline)
    hub = current_hub()
    task = _enter(hub)
    if deadline <= hub.now():
        yield_task(task)
        return
    handle = hub.call_at(deadline, hub.reschedule, task, None)

    def abort() -> bool:
        handle.cancel()
        return True

    park(abort, "sleep")


def sleep(seconds: float) -> None:
    """Sleep for ``seconds`` (``sleep(0)`` is ``checkpoint()``). A checkpoint; a
    cancelled sleep leaves nothing behind. ``seconds`` must be a number >= 0
    (``TypeError``/``ValueError`` otherwise, raised before the checkpoint);
    ``math.inf`` sleeps until cancelled, like ``sleep_forever()``."""
    if seconds == 0 and seconds is not False:  # sleep(0) first: it is the hot one
        checkpoint()
        return
    t = type(seconds)
    if (t is not float and t is not int) or not 0 < seconds < _INF:
        seconds = check_duration(seconds, "seconds")  # raises unless a duration
        if seconds == _INF:
            sleep_forever()
            return
    sleep_until(current_hub().now() + seconds)


def sleep_forever() -> None:
    """Block until cancelled. A checkpoint."""
    hub = current_hub()
    _enter(hub)
    park(_abort_always, "sleep_forever")


def _abort_always() -> bool:
    return True
