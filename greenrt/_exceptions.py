"""The exceptions greenrt raises.

Every error the runtime raises is typed and specific, and carries the reason it was
raised. ``Cancelled`` is the one ``BaseException``: it is not an error, it is the
runtime asking a task to unwind, and ordinary ``except Exception`` blocks must not
catch it by accident.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ._obligation import Obligation
    from ._reason import CancelReason


class Cancelled(BaseException):
    """Raised at a checkpoint when the task's scope has been cancelled.

    ``reason`` says who asked and why (a :class:`CancelReason`). The exception is
    aimed at one scope (the outermost cancelled scope of the task that is not
    behind a ``masked()`` section); that scope catches it when it exits. Code may
    catch ``Cancelled`` to clean up, but must re-raise it: a swallowed cancellation
    is cancelled again once the cleanup budget of its reason kind runs out.

    ``cleanup_exhausted`` is true when this delivery is the hard stop that follows
    an exhausted cleanup budget.
    """

    def __init__(self, reason: CancelReason, scope: Any = None, cleanup_exhausted: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.cleanup_exhausted = cleanup_exhausted
        self._scope = scope

    def __str__(self) -> str:
        tail = " (cleanup budget exhausted)" if self.cleanup_exhausted else ""
        return f"cancelled: {self.reason}{tail}"

    def __repr__(self) -> str:
        return f"Cancelled({self.reason!r}, cleanup_exhausted={self.cleanup_exhausted})"


class GreenrtError(Exception):
    """Base class of the runtime's own errors."""


class WouldBlock(GreenrtError):
    """Raised by ``X_nowait`` calls when the operation would have to wait."""


class LimitExceeded(GreenrtError):
    """A configured limit was exceeded. ``limit`` names it, ``value`` is what was seen
    (``None`` when only "more than the maximum" is known), ``maximum`` the configured
    bound. The default message says what is known and never prints ``None``:
    ``limit 'mask_depth' exceeded: 17 > 16``."""

    def __init__(self, limit: str, value: Any = None, maximum: Any = None, message: str | None = None):
        self.limit = limit
        self.value = value
        self.maximum = maximum
        super().__init__(message or f"limit {limit!r} exceeded{limit_detail(value, maximum)}")


def limit_detail(value: Any, maximum: Any) -> str:
    """The tail of a limit message: ``": 17 > 16"``, ``" (more than 16)"``, ``": 17"`` or
    ``""``, depending on which of the observed value and the maximum are known."""
    if value is None:
        return "" if maximum is None else f" (more than {maximum})"
    if maximum is None:
        return f": {value}"
    return f": {value} > {maximum}"


class ObligationLeak(GreenrtError):
    """A task completed (or a region closed) while holding unresolved obligations.

    ``obligations`` lists them; each one's ``site`` names where it was reserved.
    The runtime has already aborted them.
    """

    def __init__(self, obligations: list[Obligation], where: str) -> None:
        self.obligations = list(obligations)
        self.where = where
        sites = "; ".join(f"{ob.kind} reserved at {ob.site}" for ob in self.obligations)
        super().__init__(f"{where} leaked {len(self.obligations)} obligation(s): {sites}")


class InvalidStateError(GreenrtError):
    """An operation was attempted in a state that does not allow it
    (committing an aborted obligation, joining a task from itself, ...)."""


class RegionClosedError(InvalidStateError):
    """``spawn`` on a region that is draining or closed."""


class TaskCancelledError(GreenrtError):
    """``Task.join()`` on a task whose outcome is ``cancelled``. ``reason`` is its reason."""

    def __init__(self, reason: CancelReason):
        self.reason = reason
        super().__init__(f"task was cancelled: {reason}")


class TooSlowError(TimeoutError, GreenrtError):
    """Raised by ``fail_after`` / ``fail_at`` when their deadline cancels the block.

    ``reason`` is the scope's ``CancelReason`` (its ``deadline`` the hub time that
    expired); the message shows the deadline as a duration, not a clock reading."""

    def __init__(self, message: str = "deadline reached", reason: CancelReason | None = None):
        super().__init__(message)
        self.reason = reason


class CleanupOverrun(GreenrtError):
    """The outcome (``panicked``) of a task that was *abandoned*: its cleanup budget
    ran out and it kept swallowing the ``Cancelled`` that followed, past the grace of
    its reason kind. The hub never resumes such a task (see ``docs/semantics.md``).

    ``reason`` is the cancellation it swallowed, ``budget`` the cleanup budget it
    overran, ``site`` the ``file:line`` of its last checkpoint."""

    def __init__(self, reason: Any, budget: Any, site: str | None):
        self.reason = reason
        self.budget = budget
        self.site = site
        super().__init__(f"task abandoned: it kept running after its cleanup budget "
                         f"({budget}) for a {getattr(reason, 'kind', reason)} cancellation ran out"
                         + (f"; last checkpoint at {site}" if site else ""))


class Deadlock(GreenrtError):
    """Nothing can ever run again: every task is blocked, with no timer, no I/O
    registration, no thread or cross-thread call and no signal handler that could wake
    one. Raised into the root task by the real hub. ``graph`` is the wait-for graph
    (``{"blocked": [{"task", "name", "waits_for", "held_by"}...], "cycle": [...]}``);
    ``str()`` formats it."""

    def __init__(self, graph: dict[str, Any], snapshot: dict[str, Any] | None = None) -> None:
        self.graph = graph
        #: the task dump taken when the deadlock was found (``lowlevel.task_snapshot``
        #: form), or None; ``str()`` formats it like ``lowlevel.dump()``
        self.snapshot = snapshot
        lines = ["deadlock: every task is blocked and nothing can wake one"]
        if graph.get("cycle"):
            lines.append("  cycle: " + " -> ".join(f"task {t}" for t in graph["cycle"]))
        if snapshot is not None:
            from ._dump import format_snapshot

            lines.extend(format_snapshot(snapshot).splitlines()[1:])
        else:
            for b in graph.get("blocked", ()):
                held = f", held by task {b['held_by']}" if b.get("held_by") is not None else ""
                lines.append(f"  task {b['task']} ({b['name']}) waits for {b['waits_for']}{held}")
        super().__init__("\n".join(lines))


class InvariantViolation(GreenrtError):
    """The runtime detected a broken internal invariant (a bug: a task queued twice,
    an illegal state transition, a ``Cancelled`` escaping the scope it targets)."""


class NoHubError(RuntimeError):
    """A greenrt call was made outside ``greenrt.run()`` (or ``lab.run()``).

    Without a message, ``NoHubError()`` says what to do: no hub runs in this thread,
    so run the code in a task of ``greenrt.run(main)``; from a worker thread started
    by ``greenrt.to_thread`` call back with ``greenrt.from_thread``; in any other
    thread run a hub there. ``NoHubError.outside_task()`` is the error for a blocking
    call made on the hub outside any task (in a hub callback)."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message if message is not None else _no_hub_message())

    @classmethod
    def outside_task(cls) -> NoHubError:
        return cls("this code runs on the hub but outside any task (in a hub callback, "
                   "such as from_thread(fn, in_task=False) or call_soon): blocking calls "
                   "(sleep, channels, locks, sockets) need a task; spawn one with "
                   "region.spawn(fn), or use from_thread(fn) with in_task=True")


def _no_hub_message() -> str:
    import threading

    th = threading.current_thread()
    if th.name == "greenrt-worker":
        return ("not inside greenrt.run(): this is a greenrt.to_thread worker thread, "
                "which runs no hub; call greenrt.from_thread(fn, *args) to run fn in the "
                "task waiting for this thread")
    return (f"not inside greenrt.run(): no greenrt hub runs in thread {th.name!r}; "
            "greenrt's blocking calls (sleep, channels, locks, sockets) run inside a "
            "task: call them from greenrt.run(main) (a hub per thread: run one in this "
            "thread with greenrt.run), or, from a worker started by greenrt.to_thread, "
            "through greenrt.from_thread(fn, *args)")
