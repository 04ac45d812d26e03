"""Cancel scopes: where cancellation is requested, delivered and finalized.

Theory of operation
-------------------
Every piece of running code sits inside a stack of *scopes*. Each task has a root
scope (the ``Task`` object itself); ``cancel_scope()``, ``move_on_after()``,
``masked()`` and every region push more. A region's scope is owned by the task that
runs the ``with`` block, and the root scopes of the region's children hang below it,
so the scopes of all tasks form one tree that mirrors the region tree.

Cancellation has three phases:

1. **Request.** ``scope.cancel(reason)`` records the reason on the scope (a second
   request only strengthens it) and walks the scope's subtree. Every task found is
   marked ``_pending`` and, if it is parked in a blocking call and the cancellation is
   deliverable, its wait is aborted so it wakes in the cancel lane. Crossing into a
   child task, the request is *materialized* on the child's root scope: with the same
   reason when the cancelled scope is the child's own region, otherwise as
   ``parent_cancelled`` whose cause is the original reason (a ``shutdown`` stays
   ``shutdown``, the most severe kind). Shielded scopes
   (``masked()``) stop the walk.

2. **Drain.** At its next checkpoint the task computes its *target*: the outermost
   scope of its own stack that has a reason and was not delivered yet, looking no
   further out than the innermost ``masked()`` section. It raises
   ``Cancelled(reason)`` aimed at that scope, marks the scope delivered and starts a
   *drain*: the reason kind's cleanup budget (a poll count and a time limit). While
   draining, checkpoints do not raise for that scope again, so cleanup may block.
   When the budget is spent, every checkpoint raises ``Cancelled`` again, masked or
   not: cleanup is bounded even for code that swallows ``Cancelled``.

3. **Finalize.** The targeted scope catches its own ``Cancelled`` when it exits
   (``move_on_after`` continues after the block, ``fail_after`` raises
   ``TooSlowError``, a task completes ``cancelled(reason)``); its drain ends and the
   trace records ``cancel.finalize``.

Invariants: a ``Cancelled`` is caught only by the scope it targets; scopes exit in
strict LIFO order per task (anything else raises ``InvariantViolation``); a scope is
delivered at most once (exhaustion re-raises are not new deliveries).

Hazards: the walk in (1) is proportional to the size of the cancelled subtree; it
uses insertion-ordered dicts, never sets, so the order tasks are woken in is
deterministic.
"""

from __future__ import annotations

from heapq import heappush as _heappush
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import _trace as tr
from ._budget import Budget
from ._exceptions import Cancelled, InvariantViolation, LimitExceeded, NoHubError, TooSlowError
from ._hub import _tls, current_hub
from ._reason import CancelKind, CancelReason, CleanupBudget, as_reason
from ._usage import check_deadline, check_duration

_INF = float("inf")

if TYPE_CHECKING:  # pragma: no cover
    from ._hub import Hub
    from ._region import Region
    from ._task import Task

MAX_MASK_DEPTH = 16


class _Drain:
    """Cleanup budget of one delivered cancellation."""

    __slots__ = ("scope", "polls_left", "timer", "exhausted", "reported", "budget",
                 "overruns", "exhausted_at")

    timer: Any
    exhausted_at: Any  # float once exhausted

    def __init__(self, scope: CancelScope, polls: int, budget: CleanupBudget | None = None):
        self.scope = scope
        self.polls_left = polls
        self.timer = None
        self.exhausted = False
        self.reported = False
        self.budget = budget
        #: checkpoints reached after the budget ran out (each re-raises Cancelled)
        self.overruns = 0
        self.exhausted_at = None


class CancelScope:
    """A region of code that can be cancelled as a unit, with an optional budget.

    Use the helpers rather than the class: ``cancel_scope()``, ``move_on_after()``,
    ``fail_after()``, ``masked()``. After the block, ``cancelled_caught`` tells whether
    the scope's own cancellation ended it, and ``reason`` holds its reason.
    """

    # Scopes (and tasks, which are scopes) are plain instances with class-level
    # defaults: a spawn assigns only what differs from these, which keeps the spawn
    # path short. Mutable state (the children dict, the drain list) is created lazily.
    # The runtime graph (hub, owner task, parent scope) is set by ``_attach`` before
    # anything reads it: those fields are typed as set, with the class default ignored.
    id: int | None = None
    _sid: int | None = None
    name: str | None = None
    _hub: Hub = None  # type: ignore[assignment]
    _owner: Any = None  # the owning Task
    _parent: Any = None  # CancelScope | None
    _children: dict[CancelScope, None] | None = None
    _reason: CancelReason | None = None
    _delivered = False
    _shield = False
    _deadline: float | None = None
    _deadline_eff: float | None = None
    _deadline_kind = CancelKind.DEADLINE
    _timer: Any = None
    _polls_left: int | None = None
    _cost_left: int | None = None
    _quota_chain: tuple[CancelScope, ...] = ()
    _priority: int | None = None
    _region: Region | None = None
    _cleanup: CleanupBudget | None = None
    _fail_on_timeout = False
    cancelled_caught = False
    _state = "new"

    def __init__(self, *, deadline: float | None = None, budget: Budget | None = None,
                 shield: bool = False, name: str | None = None,
                 deadline_kind: CancelKind = CancelKind.DEADLINE,
                 cleanup: CleanupBudget | None = None):
        if name is not None:
            self.name = name
        if shield:
            self._shield = True
        if budget is not None:
            if budget.deadline is not None:
                deadline = budget.deadline if deadline is None else min(deadline, budget.deadline)
            self._polls_left = budget.poll_quota
            self._cost_left = budget.cost_quota
            self._priority = budget.priority
        if deadline is not None:
            self._deadline = self._deadline_eff = deadline
            self._deadline_kind = deadline_kind
        if cleanup is not None:
            self._cleanup = cleanup

    # -- public surface -------------------------------------------------------------

    @property
    def reason(self) -> CancelReason | None:
        """The recorded cancellation reason, or ``None``."""
        return self._reason

    @property
    def cancel_called(self) -> bool:
        return self._reason is not None

    @property
    def deadline(self) -> float | None:
        """This scope's own deadline (hub time), or ``None``."""
        return self._deadline

    def cancel(self, reason: CancelReason | CancelKind | str | None = None) -> None:
        """Request cancellation of everything inside this scope.

        Not a checkpoint; never blocks. ``reason`` may be a ``CancelReason``, a
        ``CancelKind``, a kind name, or a message (kind ``user``). Calling it again
        can only strengthen the recorded reason.
        """
        hub = self._hub
        if hub is None:
            raise InvariantViolation(
                "cancel() on a cancel scope that was never entered: use it in a with "
                "statement first (`with greenrt.cancel_scope() as scope:`), then cancel it")
        cur = hub.current
        self._request(as_reason(reason, origin_task=cur.id if cur is not None else None,
                                origin_region=_region_id(self), time=hub.now()))

    # -- entering and leaving -------------------------------------------------------

    def _attach(self, hub: Hub, owner: Task[Any] | None, parent: CancelScope | None) -> None:
        self._hub = hub
        self._owner = owner
        self._parent = parent
        hub._scope_counter = sid = hub._scope_counter + 1
        self.id = self._sid = sid
        own = self._deadline
        if parent is not None:
            ch = parent._children
            if ch is None:
                parent._children = {self: None}
            else:
                ch[self] = None
            pd = parent._deadline_eff
            # Always stored on the instance (even when equal to the class default):
            # these two are read at every checkpoint, and instance reads are the fast ones.
            self._deadline_eff = pd if pd is not None and (own is None or pd < own) else own
            chain = parent._quota_chain
        else:
            self._deadline_eff = own
            chain = ()
        if self._polls_left is not None or self._cost_left is not None:
            chain = chain + (self,)
        self._quota_chain = chain
        if own is not None:
            if own <= hub.now():
                self._on_deadline()
            elif hub._fast_paths:
                # the hub's deadline heap: no timer handle, no call (``Hub._deadlines``);
                # the entry holds the scope through a one-slot cell, emptied on exit,
                # so a dead entry keeps nothing alive
                hub._timer_seq = seq = hub._timer_seq + 1
                self._timer = cell = [self]
                _heappush(hub._deadlines, (own, seq, cell))
            else:
                self._timer = hub.call_at(own, self._on_deadline)

    def _disarm(self) -> None:
        """Drop the scope's deadline timer (O(1): lazy deletion)."""
        timer = self._timer
        self._timer = None
        if type(timer) is list:  # a cell in the hub's deadline heap
            timer[0] = None
            hub = self._hub
            hub._dead_deadlines = n = hub._dead_deadlines + 1
            if n > 256 and n > len(hub._deadlines) // 2:
                hub._compact_deadlines()
        else:
            timer.cancel()

    def _detach(self) -> None:
        if self._timer is not None:
            self._disarm()
        parent = self._parent
        if parent is not None:
            ch = parent._children
            if ch:
                ch.pop(self, None)

    def __enter__(self) -> CancelScope:
        if self._state != "new":
            raise InvariantViolation("a cancel scope can be entered only once: create a new "
                                     "one (greenrt.cancel_scope(), move_on_after()...) for "
                                     "each with block")
        try:
            hub = _tls.hub
        except AttributeError:
            raise NoHubError() from None
        task = hub.current
        if task is None:
            raise NoHubError.outside_task()
        if self._shield:
            depth = 0
            s = task._scope
            while s is not None and s._owner is task:
                if s._shield:
                    depth += 1
                s = s._parent
            if depth >= MAX_MASK_DEPTH:
                raise LimitExceeded("mask_depth", depth + 1, MAX_MASK_DEPTH)
        self._attach(hub, task, task._scope)
        task._scope = self
        self._state = "entered"
        return self

    def __exit__(self, etype: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        task = self._owner
        parent = self._parent
        if task._scope is not self:
            raise InvariantViolation(
                f"cancel scope {self._sid} exited out of order (innermost is {task._scope._sid}):"
                " nest with statements, never interleave __enter__/__exit__ by hand")
        task._scope = parent
        # _detach, inlined (the hot exit of every timeout block)
        if self._timer is not None:
            self._disarm()
        if parent is not None:
            ch = parent._children
            if ch:
                ch.pop(self, None)
        self._state = "exited"
        if exc is None and not task._drains and not self._delivered:
            return False  # what _finalize_scope decides for a quiet exit
        return _finalize_scope(task, self, exc)

    # -- cancellation ---------------------------------------------------------------

    def _on_deadline(self) -> None:
        self._timer = None
        hub = self._hub
        kind = self._deadline_kind
        self._request(CancelReason(kind, origin_region=_region_id(self), time=hub.now(),
                                   deadline=self._deadline))

    def _request(self, reason: CancelReason) -> None:
        old = self._reason
        new = reason if old is None else old.strengthen(reason)
        if new is old:
            return
        self._reason = new
        hub = self._hub
        if hub._tracing:
            owner = self._owner
            hub._emit(tr.CANCEL_REQUEST, owner.id if owner is not None else None,
                      _region_id(self), scope=self._sid, reason=new.to_dict(),
                      strengthened=old is not None)
        _propagate(self, new)


def _region_id(scope: CancelScope | None) -> int | None:
    while scope is not None:
        if scope._region is not None:
            return scope._region.id
        scope = scope._parent
    return None


def _propagate(scope: CancelScope, reason: CancelReason) -> None:
    """Wake every task under ``scope`` and materialize the request on child roots."""
    owner = scope._owner
    if owner is not None:
        _notify(owner)
    stack: list[CancelScope] = [scope]
    while stack:
        s = stack.pop()
        region = s._region
        if region is not None and region._live:
            # The root scopes of the region's child tasks hang below its scope; they
            # are found through the region (spawn order) rather than ``_children``.
            derived = reason if s is scope else derive_parent_reason(reason, scope)
            child: CancelScope
            for child in list(region._live):
                child._request(derived)
        if s._children:
            for child in list(s._children):
                if not child._shield:
                    stack.append(child)


def derive_parent_reason(reason: CancelReason, scope: CancelScope) -> CancelReason:
    """The reason a child task receives when ``scope``, above its own region, is
    cancelled: ``parent_cancelled`` caused by ``reason`` — unless ``reason`` is more
    severe than that (``shutdown``), which then travels down unchanged in kind so
    every task gets its stricter cleanup budget."""
    kind = CancelKind.PARENT_CANCELLED
    if reason.kind.severity > kind.severity:
        kind = reason.kind
    return CancelReason(kind, message=f"scope {scope._sid} cancelled",
                        origin_task=reason.origin_task, origin_region=_region_id(scope),
                        time=reason.time, cause=reason)


def effective_reason(scope: CancelScope | None) -> CancelReason | None:
    """The reason that cancels code at ``scope``, looking outward up to a shield."""
    s = scope
    while s is not None:
        if s._reason is not None:
            return s._reason
        if s._shield:
            return None
        s = s._parent
    return None


def _notify(task: Task[Any]) -> None:
    if task._state_done:
        return
    task._pending = True
    if task._reason is not None:
        task._note_cancel_requested()
    abort = task._abort_fn
    if abort is not None and _find_target(task) is not None:
        if abort():
            task._abort_fn = None
            task._hub._reschedule_cancel(task)


def _find_target(task: Task[Any]) -> _Drain | CancelScope | None:
    """The scope a ``Cancelled`` would be aimed at now, or ``None``.

    An exhausted drain is always a target (bounded cleanup pierces masks).
    """
    for d in task._drains:
        if d.exhausted:
            return d
    target: CancelScope | None = None
    s = task._scope
    while s is not None and s._owner is task:
        if s._reason is not None and not s._delivered:
            target = s
        if s._shield:
            break
        s = s._parent
    return target


def _any_undelivered(task: Task[Any]) -> bool:
    s = task._scope
    while s is not None and s._owner is task:
        if s._reason is not None and not s._delivered:
            return True
        s = s._parent
    return False


def deliver_pending(task: Task[Any]) -> None:
    """Raise the pending ``Cancelled`` for ``task`` if there is one to deliver."""
    target = _find_target(task)
    if target is None:
        task._pending = _any_undelivered(task)
        return
    hub = task._hub
    if isinstance(target, _Drain):
        scope = target.scope
        if not target.reported:
            target.reported = True
            target.exhausted_at = hub.now()
            if hub._tracing:
                hub._emit(tr.CANCEL_EXHAUSTED, task.id, _region_id(scope), scope=scope._sid,
                          reason=scope._reason.to_dict())  # type: ignore[union-attr]
        else:
            # The task swallowed the previous hard stop and reached another checkpoint.
            target.overruns += 1
            cb = target.budget or scope._reason.kind.cleanup_budget  # type: ignore[union-attr]
            if (target.overruns > cb.grace_polls
                    or hub.now() - target.exhausted_at > cb.grace_seconds):
                from ._task import abandon

                abandon(task, scope._reason, cb)  # type: ignore[arg-type]  # never returns
        # Yield before raising: a task that swallows this in a loop burns its own
        # time slice, never the hub's (other tasks, timers, I/O and signals run).
        hub._yield_task(task)
        # (a drain's scope was delivered, so it has a reason)
        raise Cancelled(scope._reason, scope, cleanup_exhausted=True)  # type: ignore[arg-type]
    scope = target
    scope._delivered = True
    reason: CancelReason = scope._reason  # type: ignore[assignment]  # a target has one
    cb = scope._cleanup or reason.kind.cleanup_budget
    d = _Drain(scope, cb.polls, cb)
    d.timer = hub.call_at(hub.now() + cb.seconds, _drain_timeout, task, d)
    if task._drains:
        task._drains.append(d)
    else:
        task._drains = [d]
    task._pending = _any_undelivered(task)
    if scope is task:
        task._note_cancelling()
    if hub._tracing:
        hub._emit(tr.CANCEL_DRAIN, task.id, _region_id(scope), scope=scope._sid,
                  reason=reason.to_dict(), cleanup_polls=cb.polls, cleanup_seconds=cb.seconds)
    raise Cancelled(reason, scope)


def _drain_timeout(task: Task[Any], d: _Drain) -> None:
    d.timer = None
    if any(x is d for x in task._drains):
        d.exhausted = True
        _notify(task)


def charge_polls(task: Task[Any]) -> None:
    """Charge one poll to the task's drain or its enclosing poll quotas."""
    drains = task._drains
    if drains:
        for d in drains:
            d.polls_left -= 1
            if d.polls_left < 0:
                d.exhausted = True
                task._pending = True
        return
    for s in task._scope._quota_chain:
        if s._polls_left is not None:
            s._polls_left -= 1
            if s._polls_left < 0:
                hub = s._hub
                s._request(CancelReason(CancelKind.POLL_QUOTA, message="poll quota exhausted",
                                        origin_task=task.id, origin_region=_region_id(s),
                                        time=hub.now()))


def charge_cost(task: Task[Any], n: int) -> None:
    for s in task._scope._quota_chain:
        if s._cost_left is not None:
            s._cost_left -= n
            if s._cost_left < 0:
                hub = s._hub
                s._request(CancelReason(CancelKind.COST_BUDGET, message="cost budget exhausted",
                                        origin_task=task.id, origin_region=_region_id(s),
                                        time=hub.now()))


def _end_drain(task: Task[Any], scope: CancelScope) -> None:
    drains: list[_Drain] = task._drains  # type: ignore[assignment]  # a tuple only if empty
    for i in range(len(drains) - 1, -1, -1):
        d = drains[i]
        if d.scope is scope:
            if d.timer is not None:
                d.timer.cancel()
            del drains[i]
    # An exhausted drain of an inner scope means nothing once that scope is gone.


def _finalize_scope(task: Task[Any], scope: CancelScope, exc: BaseException | None) -> bool:
    """Common exit path of a scope: end its drain, catch its own ``Cancelled``."""
    if task._drains:
        _end_drain(task, scope)
    caught = False
    if exc is not None:
        if isinstance(exc, Cancelled):
            caught = exc._scope is scope
        elif isinstance(exc, BaseExceptionGroup):
            match, rest = exc.split(lambda e: isinstance(e, Cancelled) and e._scope is scope)
            if match is not None:
                scope.cancelled_caught = True
                _trace_finalize(task, scope)
                if rest is not None:
                    raise rest
                caught = True
                exc = None
    if caught:
        scope.cancelled_caught = True
        _trace_finalize(task, scope)
        if scope._fail_on_timeout and exc is not None:
            raise TooSlowError(f"deadline reached: {scope._reason}", scope._reason) from exc
        return True
    if scope._delivered:
        _trace_finalize(task, scope)
    return False


def _trace_finalize(task: Task[Any], scope: CancelScope) -> None:
    hub = task._hub
    if hub._tracing:
        r = scope._reason
        hub._emit(tr.CANCEL_FINALIZE, task.id, _region_id(scope), scope=scope._sid,
                  reason=r.to_dict() if r is not None else None)


# -- user-facing helpers ---------------------------------------------------------------


def cancel_scope(*, deadline: float | None = None, timeout: float | None = None,
                 budget: Budget | None = None, name: str | None = None,
                 shield: bool = False) -> CancelScope:
    """A cancellable block with an optional deadline, timeout and budget.

    ``with cancel_scope(timeout=2) as s: ...`` — when the timeout expires the block is
    cancelled with kind ``timeout`` (``deadline`` for an absolute ``deadline``);
    the scope catches its own ``Cancelled`` and execution continues after the block
    with ``s.cancelled_caught`` true. ``budget`` adds poll and cost quotas.
    ``shield=True`` hides cancellations of enclosing scopes from the block (like
    ``masked()``). Entering and leaving are not checkpoints.
    """
    kind = CancelKind.DEADLINE
    if deadline is not None:
        deadline = _deadline_arg(deadline, "deadline")
    if timeout is not None:
        d = _timeout_deadline(timeout, "timeout")
        if d is not None and (deadline is None or d < deadline):
            deadline = d
            kind = CancelKind.TIMEOUT
    return CancelScope(deadline=deadline, budget=budget, name=name, shield=shield,
                       deadline_kind=kind)


def _timeout_deadline(seconds: Any, param: str) -> float | None:
    """The hub time ``seconds`` from now (``None`` for ``math.inf``: no deadline);
    ``TypeError``/``ValueError`` naming ``param`` for anything but a duration."""
    t = type(seconds)
    if (t is not float and t is not int) or not 0 <= seconds < _INF:
        seconds = check_duration(seconds, param)
        if seconds == _INF:
            return None
    deadline: float = current_hub().now() + seconds
    return deadline


def _deadline_arg(deadline: Any, param: str) -> float | None:
    """An absolute deadline argument checked (a number, not NaN); ``math.inf`` is none."""
    t = type(deadline)
    if (t is not float and t is not int) or deadline != deadline or deadline == _INF:
        deadline = check_deadline(deadline, param)
        if deadline == _INF:
            return None
    checked: float = deadline
    return checked


def _scope_at(deadline: float | None, kind: CancelKind, name: str | None) -> CancelScope:
    if deadline is None:
        return CancelScope(name=name)
    return CancelScope(deadline=deadline, name=name, deadline_kind=kind)


_TIMEOUT = CancelKind.TIMEOUT  # enum attribute reads are slow; these helpers are hot
_DEADLINE = CancelKind.DEADLINE
_new_scope = CancelScope.__new__


def move_on_after(seconds: float, *, name: str | None = None) -> CancelScope:
    """``cancel_scope(timeout=seconds)``: give up on the block after ``seconds``.

    ``seconds`` must be a number >= 0 (``TypeError``/``ValueError`` otherwise, raised
    here); ``math.inf`` means no limit. Entering and leaving are not checkpoints."""
    # The common case inlined (a number, a live hub): the scope is built without
    # __init__'s keyword parsing; anything else takes the checked path, which raises.
    t = type(seconds)
    if (t is float or t is int) and 0 <= seconds < _INF:
        try:
            hub = _tls.hub
        except AttributeError:
            raise NoHubError() from None
        s: CancelScope = _new_scope(CancelScope)
        s._deadline = s._deadline_eff = hub.now() + seconds
        s._deadline_kind = _TIMEOUT
        if name is not None:
            s.name = name
        return s
    return _scope_at(_timeout_deadline(seconds, "seconds"), _TIMEOUT, name)


def move_on_at(deadline: float, *, name: str | None = None) -> CancelScope:
    """``cancel_scope(deadline=deadline)``: give up on the block at hub time ``deadline``
    (a number, possibly past; ``math.inf``: never)."""
    return _scope_at(_deadline_arg(deadline, "deadline"), _DEADLINE, name)


def fail_after(seconds: float, *, name: str | None = None) -> CancelScope:
    """Like ``move_on_after`` but raise ``TooSlowError`` (a ``TimeoutError``) when the
    timeout cancels the block."""
    s = move_on_after(seconds, name=name)
    s._fail_on_timeout = True
    return s


def fail_at(deadline: float, *, name: str | None = None) -> CancelScope:
    """Like ``move_on_at`` but raise ``TooSlowError`` when the deadline cancels the block."""
    s = _scope_at(_deadline_arg(deadline, "deadline"), _DEADLINE, name)
    s._fail_on_timeout = True
    return s


def masked(*, name: str | None = None) -> CancelScope:
    """Defer delivery of cancellations requested on enclosing scopes.

    Inside ``with masked():`` checkpoints still yield and still charge budgets, but a
    cancellation of an *enclosing* scope is held back and delivered at the first
    checkpoint after the block. Scopes opened inside the mask still work (a
    ``move_on_after`` inside a mask times out normally). Two things pierce a mask: the
    exhaustion of a cleanup budget (cleanup is always bounded) and nothing else.
    Nesting is bounded by ``MAX_MASK_DEPTH`` (16); deeper raises ``LimitExceeded``.
    """
    return CancelScope(shield=True, name=name or "masked")
