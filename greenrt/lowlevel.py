"""The low-level API: what sync primitives, I/O and the lab build on.

Stable for greenrt's own packages and for ``protocols``/``lab``; application code
should not need it. ``park``/``reschedule`` follow the contract in
``greenrt._checkpoint``; ``Hub`` is the interface an alternative hub implements
(``now``, ``_wait``, ``_wakeup``, optionally ``_pick`` and ``_has_io_waiters``).
"""

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._checkpoint import _enter, park, reschedule, reschedule_with_error, yield_task
from ._checkpoint import _enter as _enter_checkpoint
from ._driver import EpollDriver, SelectorDriver
from ._dump import format_snapshot as format_task_snapshot
from ._dump import snapshot as _snapshot
from ._exceptions import NoHubError
from ._hub import Hub, RealHub, TimerHandle, _tls, current_hub
from ._scope import deliver_pending
from ._task import repr_outcome
from .sync import _WaitMap, _WaitQueue

if TYPE_CHECKING:  # pragma: no cover
    from _typeshed import FileDescriptorLike

    from ._task import Task


def current_hub_or_none() -> Hub | None:
    """The hub running in this thread, or ``None`` outside ``run()`` (no exception:
    for code that only reports to a hub when there is one)."""
    return getattr(_tls, "hub", None)


def enter_checkpoint() -> "Task[Any]":
    """The check half of a checkpoint for the current task (charge a poll, deliver a
    pending cancellation); returns the task. Blocking primitives call this first and
    then either complete at once or ``park``. Raises ``Cancelled`` if one is due."""
    try:
        hub = _tls.hub
    except AttributeError:
        raise NoHubError() from None
    # fastpath enter: copied from greenrt/_fastpath.py (python -m greenrt._fastpath --write)
    task = hub.current
    if task is None or task._drains or task._pending or task._scope._quota_chain or hub._tracing:
        task = _enter(hub)
    # end fastpath enter
    return task  # type: ignore[no-any-return]  # the enter copy binds the current task


def yield_now() -> None:
    """The yield half of a checkpoint: requeue the current task and let the others run,
    without checking for cancellation (call ``enter_checkpoint`` for that). For
    primitives whose fast path completed without blocking but must stay fair."""
    yield_task(current_hub().current)


def wait_readable(fd: "FileDescriptorLike") -> None:
    """Park until ``fd`` is readable. A checkpoint; cancellation leaves no registration."""
    hub = current_hub()
    _enter_checkpoint(hub)
    hub.driver.wait_readable(fd)


def wait_writable(fd: "FileDescriptorLike") -> None:
    """Park until ``fd`` is writable. A checkpoint; cancellation leaves no registration."""
    hub = current_hub()
    _enter_checkpoint(hub)
    hub.driver.wait_writable(fd)


def notify_closing(fd: "FileDescriptorLike") -> None:
    """Wake tasks waiting on ``fd`` with ``ClosedResourceError``; call before closing."""
    current_hub().driver.notify_closing(fd)


def dump(hub: Hub | None = None, *, stacks: bool = True) -> str:
    """Every live task of ``hub`` (default: this thread's), as an indented region tree:
    per task its state, what it waits for (and who holds it), its deadline as a
    duration from now, its budget left, a pending cancellation and its stack; per
    region its state, policy and where it was opened. The same text a real hub's
    ``Deadlock`` carries and ``run(..., dump_signal=)`` logs. Not a checkpoint; never
    switches (safe from a signal handler or a done-callback)."""
    if hub is None:
        hub = current_hub()
    return format_task_snapshot(_snapshot(hub, sys._getframe(1)), stacks=stacks)


def task_snapshot(hub: Hub | None = None) -> dict[str, Any]:
    """The structured form of ``dump()`` (plain dicts and lists: JSON-serializable);
    ``format_task_snapshot(snapshot)`` gives the text. Durations (``deadline_in``)
    are seconds from the snapshot's ``time``, negative when past. Not a checkpoint."""
    if hub is None:
        hub = current_hub()
    return _snapshot(hub, sys._getframe(1))


def note_access(obj: Any, write: bool = True) -> None:
    """Tell the hub that the current task touched ``obj`` (``write`` or read).

    The real hub ignores it (one attribute test); the lab's schedule exploration uses
    it to decide which steps are dependent. Protocol code that shares mutable state
    between tasks through something other than greenrt's primitives should call it.
    Not a checkpoint."""
    hub = getattr(_tls, "hub", None)
    if hub is not None and hub.wants_access:
        hub.note_access(obj, write)


class WaitQueue(_WaitQueue):
    """A FIFO of parked tasks, for building blocking primitives outside ``greenrt``.

    It is the queue ``greenrt.sync`` builds on, so waits on it behave like waits on a
    ``Lock`` or an ``Event``: they are labelled (``Task.waiting_for`` is the ``what``
    given, shown by deadlock reports and task dumps), reported to the lab as an
    access to the queue, and cancel-safe by hand-off:

    * ``park()`` is a checkpoint. It returns the value a waker hands over with
      ``wake_one``/``wake_all`` (or raises the error given to ``wake_one_error``).
    * A cancelled waiter is removed before ``Cancelled`` is raised (no entry is left)
      and ``on_abort`` runs, so a primitive can re-examine who to serve next. A waiter
      that was already handed a value can no longer be cancelled out of it: the value
      is returned, and the cancellation is delivered at its next checkpoint. Nothing
      handed over is lost.
    * Deadlines: wrap the ``park()`` in ``greenrt.fail_after``/``move_on_after`` (or
      run it under a region budget); expiry is a cancellation like any other.

    Not thread-safe: use it from tasks of one hub (``greenrt.from_thread`` from
    threads).
    """

    __slots__ = ()

    def park(self, data: Any = None, *, what: Any = None,
             on_abort: Callable[[], None] | None = None) -> Any:
        """Park the current task at the back of the queue until woken; a checkpoint.

        ``data`` travels with the waiter (``first()``, ``wake_one`` return it);
        ``what`` labels the wait. On cancellation the task has left the queue."""
        try:
            hub = _tls.hub
        except AttributeError:
            raise NoHubError() from None
        # fastpath enter: copied from greenrt/_fastpath.py (python -m greenrt._fastpath --write)
        task = hub.current
        if task is None or task._drains or task._pending or task._scope._quota_chain or hub._tracing:
            task = _enter(hub)
        # end fastpath enter
        if hub.wants_access:
            hub.note_access(self, True)
        return self.wait(task, data, on_abort, what or "WaitQueue.park")

    def wake_one(self, value: Any = None) -> bool:
        """Hand ``value`` to the first waiter, if any; True if one was woken.
        Not a checkpoint (the woken task runs later)."""
        if not self._q:
            return False
        self.wake_first(value)
        return True

    def wake_one_error(self, exc: BaseException) -> bool:
        """Make the first waiter's ``park()`` raise ``exc``; True if one was woken."""
        if not self._q:
            return False
        self.wake_first_error(exc)
        return True

    def statistics(self) -> dict[str, int]:
        """``{"waiting": n}``: the number of parked tasks."""
        return {"waiting": len(self._q)}


class WaitMap(_WaitMap):
    """Parked tasks by key, for the reply side of request/response protocols.

    A requester parks under a key of its own (a request id, a reply token); whoever
    reads the response wakes that key. Waits behave like waits on a ``WaitQueue``
    (labelled, reported to the lab, cancel-safe by hand-off):

    * ``park(key)`` is a checkpoint; ``wait(task, key)`` is its park half, for a
      caller that has already called ``enter_checkpoint()`` (which returned ``task``)
      and done its work in between. Both return the value given to ``wake``, or
      raise the error given to ``wake_error``/``wake_all_error``. A key another task
      waits under is a ``ValueError`` (nothing parked).
    * ``wake(key, value)`` is True if a task waited under ``key``: it has left the map
      and will get ``value``, and can no longer be cancelled out of it (a
      cancellation is delivered at its next checkpoint). False means nobody waits
      there (never parked, already woken, or cancelled): the value was not handed
      over, so the caller still has it (a late response). Never both, never neither.
    * A cancelled waiter has left the map before ``Cancelled`` is raised.
    * No closure or ``functools.partial`` per wait: the abort is a method of the
      task, which keeps the key while it waits.
    * ``keys()`` is a live, read-only view (``key in m.keys()`` at dict speed);
      ``len(m)``, ``key in m`` and ``m.statistics()`` count the waiters.

    Deadlines: wrap the wait in ``greenrt.fail_after``/``move_on_after``, or expire
    keys yourself with ``wake_error`` (one task serving many deadlines).

    Not thread-safe: use it from tasks of one hub.
    """

    __slots__ = ()

    def park(self, key: Any, *, what: Any = None) -> Any:
        """Park the current task under ``key`` until woken; a checkpoint. On
        cancellation the task has left the map."""
        try:
            hub = _tls.hub
        except AttributeError:
            raise NoHubError() from None
        # fastpath enter: copied from greenrt/_fastpath.py (python -m greenrt._fastpath --write)
        task = hub.current
        if task is None or task._drains or task._pending or task._scope._quota_chain or hub._tracing:
            task = _enter(hub)
        # end fastpath enter
        return _WaitMap.wait(self, task, key, what or "WaitMap.park")

    def statistics(self) -> dict[str, int]:
        """``{"waiting": n}``: the number of parked tasks."""
        return {"waiting": len(self._q)}


__all__ = [
    "WaitMap", "WaitQueue", "note_access", "dump", "task_snapshot", "format_task_snapshot",
    "EpollDriver", "Hub", "RealHub", "SelectorDriver", "TimerHandle", "current_hub",
    "current_hub_or_none", "deliver_pending", "repr_outcome",
    "enter_checkpoint", "notify_closing", "park", "reschedule", "reschedule_with_error",
    "wait_readable", "wait_writable", "yield_now",
]
