"""greenrt: structured concurrency on greenlets.

Blocking-style code, tasks owned by regions, cancellation as request -> drain ->
finalize with bounded cleanup, budgets enforced at checkpoints, obligations with leak
detection. Start with ``greenrt.run(main)`` and ``with greenrt.region() as r``; the
rules are in ``docs/semantics.md``.
"""

from . import fs as fs
from . import lowlevel as lowlevel
from . import net as net
from ._budget import Budget
from ._checkpoint import (
    charge,
    checkpoint,
    checkpoint_if_cancelled,
    current_task,
    now,
    sleep,
    sleep_forever,
    sleep_until,
)
from ._driver import BusyResourceError, ClosedResourceError
from ._exceptions import (
    Cancelled,
    CleanupOverrun,
    Deadlock,
    GreenrtError,
    InvalidStateError,
    InvariantViolation,
    LimitExceeded,
    NoHubError,
    ObligationLeak,
    RegionClosedError,
    TaskCancelledError,
    TooSlowError,
    WouldBlock,
)
from ._obligation import Obligation, reserve
from ._outcome import Outcome, OutcomeKind
from ._process import Process, open_process, run_process
from ._reason import DEFAULT_CLEANUP_BUDGETS, CancelKind, CancelReason, CleanupBudget
from ._region import FinalizerBudget, Region, region
from ._run import run
from ._scope import (
    CancelScope,
    cancel_scope,
    fail_after,
    fail_at,
    masked,
    move_on_after,
    move_on_at,
)
from ._signals import SignalReceiver, open_signal_receiver
from ._task import Task, TaskState
from ._trace import TraceEvent, TraceRing
from .channel import (
    BrokenChannelError,
    EndOfChannel,
    Lagged,
    Permit,
    Receiver,
    Sender,
    broadcast,
    channel,
    oneshot,
    watch,
)
from .combinators import RetryPolicy, first_ok, hedge, join, race, retry, timeout
from .sync import Barrier, CapacityLimiter, Condition, Event, Lock, RWLock, Semaphore
from .threads import from_thread, to_thread

__version__ = "0.1.0"


def current_region() -> Region:
    """The region the current task belongs to."""
    return current_task().region


def current_budget() -> Budget:
    """The effective budget of the current code: the meet of every enclosing scope's
    deadline and remaining quotas."""
    task = current_task()
    s = task._scope
    deadline = s._deadline_eff
    polls = cost = None
    prio = 0
    for q in s._quota_chain:
        if q._polls_left is not None:
            polls = q._polls_left if polls is None else min(polls, q._polls_left)
        if q._cost_left is not None:
            cost = q._cost_left if cost is None else min(cost, q._cost_left)
        if q._priority is not None:
            prio = max(prio, q._priority)
    return Budget(deadline=deadline, poll_quota=None if polls is None else max(polls, 0),
                  cost_quota=None if cost is None else max(cost, 0), priority=prio or 128)


def current_deadline() -> float | None:
    """The effective deadline (hub time) of the current code, or ``None``."""
    return current_task()._scope._deadline_eff  # type: ignore[no-any-return]  # float | None


__all__ = [
    "Budget", "BusyResourceError", "CancelKind", "CancelReason", "CancelScope", "Cancelled",
    "CleanupOverrun", "Deadlock",
    "CleanupBudget", "ClosedResourceError", "DEFAULT_CLEANUP_BUDGETS", "FinalizerBudget",
    "GreenrtError", "InvalidStateError", "InvariantViolation", "LimitExceeded", "NoHubError",
    "Obligation", "ObligationLeak", "Outcome", "OutcomeKind", "Region", "RegionClosedError",
    "Task", "TaskCancelledError", "TaskState", "TooSlowError", "TraceEvent", "TraceRing",
    "WouldBlock", "cancel_scope", "charge", "checkpoint", "checkpoint_if_cancelled",
    "current_budget", "current_deadline", "current_region", "current_task", "fail_after",
    "fail_at", "masked", "move_on_after", "move_on_at", "now", "region", "reserve", "run",
    "sleep", "sleep_forever", "sleep_until",
]
__all__ += ["Barrier", "CapacityLimiter", "Condition", "Event", "Lock", "RWLock", "Semaphore",
            "from_thread", "to_thread", "BrokenChannelError", "EndOfChannel", "Lagged",
            "Permit", "Receiver", "Sender", "broadcast", "channel", "oneshot", "watch",
            "RetryPolicy", "first_ok", "hedge", "join", "race", "retry", "timeout"]
__all__ += ["Process", "SignalReceiver", "open_process", "open_signal_receiver", "run_process"]
