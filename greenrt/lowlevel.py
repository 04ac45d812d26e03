"""The low-level API: what sync primitives, I/O and the lab build on.

Stable for greenrt's own packages and for ``protocols``/``lab``; application code
should not need it. ``park``/``reschedule`` follow the contract in
``greenrt._checkpoint``; ``Hub`` is the interface an alternative hub implements
(``now``, ``_wait``, ``_wakeup``, optionally ``_pick`` and ``_has_io_waiters``).
"""

from ._checkpoint import _enter as _enter_checkpoint
from ._checkpoint import park, reschedule, reschedule_with_error, yield_task
from ._driver import EpollDriver, SelectorDriver
from ._hub import Hub, RealHub, TimerHandle, _tls, current_hub
from ._scope import deliver_pending
from ._task import repr_outcome


def current_hub_or_none():
    """The hub running in this thread, or ``None`` outside ``run()`` (no exception:
    for code that only reports to a hub when there is one)."""
    return getattr(_tls, "hub", None)


def enter_checkpoint():
    """The check half of a checkpoint for the current task (charge a poll, deliver a
    pending cancellation); returns the task. Blocking primitives call this first and
    then either complete at once or ``park``."""
    return _enter_checkpoint(current_hub())


def yield_now() -> None:
    """The yield half of a checkpoint: requeue the current task and let the others run,
    without checking for cancellation (call ``enter_checkpoint`` for that). For
    primitives whose fast path completed without blocking but must stay fair."""
    yield_task(current_hub().current)


def wait_readable(fd) -> None:
    """Park until ``fd`` is readable. A checkpoint; cancellation leaves no registration."""
    hub = current_hub()
    _enter_checkpoint(hub)
    hub.driver.wait_readable(fd)


def wait_writable(fd) -> None:
    """Park until ``fd`` is writable. A checkpoint; cancellation leaves no registration."""
    hub = current_hub()
    _enter_checkpoint(hub)
    hub.driver.wait_writable(fd)


def notify_closing(fd) -> None:
    """Wake tasks waiting on ``fd`` with ``ClosedResourceError``; call before closing."""
    current_hub().driver.notify_closing(fd)


__all__ = [
    "EpollDriver", "Hub", "RealHub", "SelectorDriver", "TimerHandle", "current_hub",
    "current_hub_or_none", "deliver_pending", "repr_outcome",
    "enter_checkpoint", "notify_closing", "park", "reschedule", "reschedule_with_error",
    "wait_readable", "wait_writable", "yield_now",
]
