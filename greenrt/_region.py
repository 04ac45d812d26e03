"""Regions: task-owning scopes, the nurseries of this runtime.

``with greenrt.region() as r: r.spawn(fn, *args)``. Leaving the block waits until
every child has completed, so when the ``with`` statement ends the region is
*quiescent*: no live children, no unresolved region obligations, no pending
finalizers. No task outlives its region, and ``greenrt.run()`` returns only when the
root region is closed.

States::

    open -> closing -> finalizing -> closed           (normal exit)
    open | closing -> draining -> finalizing -> closed (after a cancellation)

``spawn`` is accepted while ``open`` or ``closing`` (children may add siblings while
the parent waits) and refused with ``RegionClosedError`` from ``draining`` on.

Policies: ``fail_fast`` (default) cancels the region with reason ``fail_fast`` when a
child fails (outcome ``err`` or ``panicked``) or when the body raises;
``collect_all`` lets every child run to completion. Either way, every failure leaves
the block together in one ``ExceptionGroup`` (``BaseExceptionGroup`` if a panic is
among them), each exception with its original traceback. A cancellation caused by the
region itself (``r.cancel()``, its budget's deadline, fail-fast) is absorbed; a
cancellation of an enclosing scope passes through as ``Cancelled`` when nothing
failed.

Finalizers registered with ``defer`` run LIFO at close, after the children, in the
owning task, inside ``masked()`` and under a *finalizer budget* (a time limit and a
poll quota per finalizer): a finalizer that hangs is cancelled, and its failure is
reported with the region's other errors.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from sys import _getframe
from types import TracebackType
from typing import TYPE_CHECKING, Any, Never, TypeVar, TypeVarTuple

from . import _trace as tr
from ._budget import Budget
from ._checkpoint import park
from ._exceptions import (
    Cancelled,
    InvariantViolation,
    NoHubError,
    ObligationLeak,
    RegionClosedError,
)
from ._hub import current_hub
from ._obligation import Obligation, _caller_site, abort_leaked, log_leak
from ._reason import CancelKind, CancelReason
from ._scope import CancelScope, _finalize_scope, cancel_scope, deliver_pending, masked
from ._task import Task
from ._usage import CO_ASYNC as _CO_ASYNC
from ._usage import check_task_fn, kwargs_refused

if TYPE_CHECKING:  # pragma: no cover
    from ._hub import Hub
    from ._outcome import Outcome

POLICIES = ("fail_fast", "collect_all")
T = TypeVar("T")
Ts = TypeVarTuple("Ts")


@dataclass(frozen=True)
class FinalizerBudget:
    seconds: float = 5.0
    polls: int = 1000


_ALLOWED = {
    "open": {"closing", "draining"},
    "closing": {"draining", "finalizing"},
    "draining": {"finalizing"},
    "finalizing": {"closed"},
    "closed": set(),
}


class Region:
    """A task-owning scope. Create with ``greenrt.region(...)``; see module docs."""

    # Set when the region is opened (``__enter__``, or ``run`` for the root region);
    # typed ``Any`` because they are None only before that, when nothing reads them.
    id: int | None
    _hub: Hub
    _owner: Any  # the owning Task; None for the root region
    _parent_region: Region | None
    _waiter: Any
    _on_empty: Callable[[], None] | None
    _body_cancelled: Any
    _site: Any

    def __init__(self, *, policy: str = "fail_fast", budget: Budget | None = None,
                 name: str | None = None, leak_policy: str | None = None,
                 finalizer_budget: FinalizerBudget | None = None):
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, not {policy!r}")
        self.policy = policy
        self.name = name
        self.budget = budget
        self.leak_policy = leak_policy
        self.finalizer_budget = finalizer_budget or FinalizerBudget()
        self.id = None
        self._hub = None  # type: ignore[assignment]  # set when opened
        self._owner = None
        self._parent_region = None
        self._scope: CancelScope = None  # type: ignore[assignment]  # set when opened
        self._state = "new"
        self._live: dict[Task[Any], None] = {}
        self._failures: list[BaseException] = []
        self._finalizers: list[functools.partial[Any]] = []
        self._obligations: dict[int, Obligation] | None = None
        self._waiter = None
        self._spawned = self._completed = self._failed = self._cancelled = 0
        #: tasks of this region abandoned for overrunning their cleanup budget
        self._abandoned = 0
        #: called when the last live child completes (set when the owner was abandoned)
        self._on_empty = None
        self._body_cancelled = None
        #: where the ``with`` statement entered the region (a ``(file, line, function)``)
        self._site = None

    # -- public ---------------------------------------------------------------------

    @property
    def state(self) -> str:
        return self._state

    @property
    def scope(self) -> CancelScope:
        return self._scope

    @property
    def cancel_called(self) -> bool:
        return self._scope is not None and self._scope._reason is not None

    def children(self) -> list[Task[Any]]:
        """The live child tasks, in spawn order."""
        return list(self._live)

    def spawn(self, fn: Callable[[*Ts], T], *args: *Ts, name: str | None = None,
              budget: Budget | None = None, **kwargs: Never) -> Task[T]:
        """Start ``fn(*args)`` as a child task and return its ``Task``.

        Not a checkpoint: the child runs when the caller next blocks. ``budget``
        limits the child alone (met with the region's). Raises ``RegionClosedError``
        once the region is draining (or was never entered), and ``TypeError`` at
        once for anything but a plain callable (an ``async def`` or a coroutine
        included: greenrt runs blocking-style code) or for keyword arguments meant for
        ``fn``: use ``spawn(functools.partial(fn, key=value))``.
        """
        if kwargs:
            raise kwargs_refused("spawn", kwargs, "name= and budget=")
        st = self._state
        if st != "open" and st != "closing":
            raise self._spawn_refused(st)
        # A plain or bound Python function costs two attribute loads here (measured:
        # the cheapest form); anything else, or an async one, takes the full check,
        # which raises TypeError for anything but a sync callable.
        try:
            async_fn = fn.__code__.co_flags & _CO_ASYNC
        except AttributeError:
            async_fn = True
        if async_fn:
            check_task_fn(fn, "spawn")
        hub = self._hub
        if name is None:
            name = getattr(fn, "__qualname__", None) or _callable_name(fn)
        task = Task(hub, self, fn, args, name, budget)
        self._live[task] = None
        self._spawned += 1
        if hub._tracing:
            hub._emit(tr.TASK_SPAWN, task.id, self.id, name=name,
                      parent=hub.current.id if hub.current is not None else None)
        # fastpath schedule: copied from greenrt/_fastpath.py (python -m greenrt._fastpath --write)
        if hub._plain and not (task._queued or task._pending or task._drains
                               or task._scope._deadline_eff is not None):
            task._queued = True
            hub._ready.append(task)
        else:
            hub._schedule(task)
        # end fastpath schedule
        return task

    def cancel(self, reason: CancelReason | CancelKind | str | None = None) -> None:
        """Cancel every child and the region's own block (default kind ``user``).

        Not a checkpoint. The region absorbs the resulting ``Cancelled``.
        """
        if self._state == "new":
            raise self._never_entered("cancel")
        self._scope.cancel(reason)

    def defer(self, fn: Callable[[*Ts], object], *args: *Ts) -> None:
        """Register ``fn(*args)`` to run when the region closes, after its children,
        LIFO, masked and under the finalizer budget."""
        if self._state == "new":
            raise self._never_entered("defer")
        if self._owner is None:
            raise RegionClosedError("the root region has no finalizers; open a region in main")
        if self._state in ("finalizing", "closed"):
            raise RegionClosedError(f"region {self.id} is {self._state}: cannot defer")
        self._finalizers.append(functools.partial(fn, *args))

    def reserve(self, kind: str, *, name: str | None = None,
                on_commit: Callable[[], Any] | None = None,
                on_abort: Callable[[Any], Any] | None = None) -> Obligation:
        """Reserve an obligation owned by the region: it must be resolved before the
        region closes, or the close reports an ``ObligationLeak``. Not a checkpoint."""
        if self._state == "new":
            raise self._never_entered("reserve")
        ob = Obligation(self._hub, self, kind, name, _caller_site(1), on_commit, on_abort)
        if self._obligations is None:
            self._obligations = {}
        self._obligations[ob.id] = ob
        if self._hub._tracing:
            self._hub._emit(tr.OBLIGATION_RESERVE, None, self.id, obligation=ob.id, kind=kind,
                            site=ob.site)
        return ob

    def statistics(self) -> dict[str, Any]:
        """Counts and state: live children, spawned, completed, failed, cancelled,
        abandoned (tasks that overran their cleanup budget and were never resumed
        again), pending finalizers, unresolved region obligations."""
        return {
            "id": self.id, "name": self.name, "state": self._state, "policy": self.policy,
            "live": len(self._live), "spawned": self._spawned, "completed": self._completed,
            "failed": self._failed, "cancelled": self._cancelled, "abandoned": self._abandoned,
            "finalizers_pending": len(self._finalizers),
            "obligations_pending": len(self._obligations or ()),
            "cancel_reason": str(self._scope._reason) if self._scope and self._scope._reason else None,
        }

    def __repr__(self) -> str:
        return f"<Region {self.id} {self.name!r} {self._state} live={len(self._live)}>"

    # -- internals ------------------------------------------------------------------

    def _never_entered(self, what: str) -> RegionClosedError:
        return RegionClosedError(
            f"{what} on {'region ' + repr(self.name) if self.name else 'a region'} "
            "that was never entered: a region owns tasks only inside its block; use "
            f"`with greenrt.region() as r:` and call r.{what}(...) inside it")

    def _spawn_refused(self, st: str) -> Exception:
        if st == "new":
            return self._never_entered("spawn")
        return RegionClosedError(f"region {self.describe()} is {st}: cannot spawn (a region "
                                 "accepts spawns until it starts draining; spawn into an "
                                 "enclosing region that is still open)")

    def describe(self) -> str:
        """``"3 'workers' (opened at app.py:12 in main)"``: the region's id, name and
        where its ``with`` statement entered it, for error messages."""
        out = f"{self.id}" if self.name is None else f"{self.id} {self.name!r}"
        site = self.opened_at
        if site is not None:
            out += f" (opened at {site[0]}:{site[1]} in {site[2]})"
        return out

    @property
    def opened_at(self) -> tuple[str, int, str] | None:
        """``(file, line, function)`` of the ``with`` statement that entered the region
        (``None`` before that, and for the root region). Entering records only the
        caller's code object and instruction offset; the line is looked up here."""
        site = self._site
        if site is None:
            return None
        code, lasti = site
        line = code.co_firstlineno
        for start, end, ln in code.co_lines():
            if start <= lasti < end and ln is not None:
                line = ln
                break
        return code.co_filename, line, code.co_name

    def _set_state(self, new: str) -> None:
        if new not in _ALLOWED.get(self._state, ()):
            raise InvariantViolation(f"region {self.id}: illegal transition {self._state} -> {new}")
        self._state = new
        hub = self._hub
        if hub._tracing:
            hub._emit(tr.REGION_STATE, self._owner.id if self._owner else None, self.id, state=new)

    def _effective_leak_policy(self) -> str:
        r: Region | None = self
        while r is not None:
            if r.leak_policy is not None:
                return r.leak_policy
            r = r._parent_region
        return self._hub.leak_policy

    def _open(self, hub: Hub, owner: Task[Any] | None, parent_scope: CancelScope | None) -> None:
        self._hub = hub
        self._owner = owner
        self.id = hub._next_region_id()
        scope = CancelScope(budget=self.budget, name=self.name)
        scope._region = self
        self._scope = scope
        scope._attach(hub, owner, parent_scope)
        scope._state = "entered"
        if owner is not None:
            owner._scope = scope
            self._parent_region = owner._task_region
        self._state = "open"
        if hub._tracing:
            hub._emit(tr.REGION_OPEN, owner.id if owner else None, self.id, name=self.name,
                      policy=self.policy,
                      parent=self._parent_region.id if self._parent_region else None)

    def _child_done(self, task: Task[Any]) -> None:
        live = self._live
        del live[task]
        self._completed += 1
        out: Outcome[Any] = task._outcome  # type: ignore[assignment]  # completed
        sev = out[0]
        if sev:  # not ok
            if sev == 2:
                self._cancelled += 1
            else:
                self._failed += 1
                self._failures.append(out[1])
                if self.policy == "fail_fast" and self._state in ("open", "closing"):
                    self._scope._request(CancelReason(
                        CancelKind.FAIL_FAST, message=f"task {task.id} ({task.name}) failed: "
                        f"{type(out[1]).__name__}", origin_task=task.id, origin_region=self.id,
                        time=self._hub.now()))
        if self._scope._reason is not None and self._state in ("open", "closing"):
            self._set_state("draining")
        if not live:
            w = self._waiter
            if w is not None and w._abort_fn is not None:
                self._waiter = None
                self._hub.reschedule(w, None)
            cb = self._on_empty
            if cb is not None:
                self._on_empty = None
                cb()

    def _wait_children(self) -> None:
        while self._live:
            self._waiter = self._owner
            park(_never_abort, self)
        self._waiter = None

    # -- context manager -------------------------------------------------------------

    def __enter__(self) -> Region:
        if self._state != "new":
            raise InvariantViolation(
                f"region {self.describe()} is {self._state}: a region can be entered only "
                "once; create a new one with greenrt.region() for each with block")
        hub = current_hub()
        task = hub.current
        if task is None:
            raise NoHubError.outside_task()
        # Where the region was opened, for task dumps and the never-exited error: the
        # caller's code and instruction offset only (formatted by ``opened_at``); a
        # full _caller_site (f_lineno decodes the line table) cost 20% of an
        # enter/exit pair in instructions.
        f = _getframe(1)
        self._site = (f.f_code, f.f_lasti)
        self._open(hub, task, task._scope)
        return self

    def __exit__(self, etype: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        owner = self._owner
        if owner._scope is not self._scope:
            raise InvariantViolation(
                f"region {self.describe()} exited out of order: a region or cancel scope "
                "entered inside it is still open; nest with statements, never interleave "
                "__enter__/__exit__ by hand")
        body_exc = exc
        if exc is not None and not isinstance(exc, Cancelled) and self.policy == "fail_fast":
            self._scope._request(CancelReason(
                CancelKind.FAIL_FAST, message=f"region body raised {type(exc).__name__}",
                origin_task=owner.id, origin_region=self.id, time=self._hub.now()))
        if self._state == "open":
            self._set_state("draining" if self._scope._reason is not None else "closing")
        self._wait_children()
        if self._state == "closing" and self._scope._reason is not None:
            self._set_state("draining")
        self._set_state("finalizing")
        errors: list[BaseException] = []
        self._run_finalizers(errors)
        self._check_obligations(errors)
        # Leave the scope: this catches a Cancelled aimed at the region itself.
        owner._scope = self._scope._parent
        self._scope._detach()
        self._scope._state = "exited"
        absorbed = False
        if isinstance(body_exc, Cancelled) or isinstance(body_exc, BaseExceptionGroup):
            try:
                absorbed = _finalize_scope(owner, self._scope, body_exc)
            except BaseException as rest:  # a group with the region's Cancelled split off
                body_exc = rest
        else:
            _finalize_scope(owner, self._scope, None)
        self._set_state("closed")
        if self._hub._tracing:
            self._hub._emit(tr.REGION_CLOSE, owner.id, self.id, failures=len(self._failures),
                            errors=len(errors))
        failures = self._failures + errors
        if body_exc is not None and not absorbed and not isinstance(body_exc, Cancelled):
            failures.insert(0, body_exc)
        if failures:
            msg = f"region {self.id}" + (f" ({self.name})" if self.name else "") + " failed"
            if all(isinstance(e, Exception) for e in failures):
                raise ExceptionGroup(msg, failures) from None  # type: ignore[type-var]  # all Exception
            raise BaseExceptionGroup(msg, failures) from None
        if body_exc is None or absorbed:
            # Leaving a region is the check half of a checkpoint: a cancellation of an
            # enclosing scope that arrived while we waited is delivered now.
            if owner._pending:
                deliver_pending(owner)
            return absorbed
        return False  # a Cancelled aimed elsewhere propagates unchanged

    def _run_finalizers(self, errors: list[BaseException]) -> None:
        fb = self.finalizer_budget
        while self._finalizers:
            fn = self._finalizers.pop()
            with masked():
                with cancel_scope(timeout=fb.seconds, budget=Budget(poll_quota=fb.polls)) as sc:
                    try:
                        fn()
                    except Exception as e:  # reported with the region's errors
                        errors.append(e)
                        if self._hub._tracing:
                            self._hub._emit(tr.FINALIZER_ERROR, self._owner.id, self.id,
                                            error=type(e).__name__)
                if sc.cancelled_caught:
                    errors.append(TimeoutError(
                        f"finalizer {getattr(fn.func, '__qualname__', fn)} exceeded its budget: "
                        f"{sc.reason}"))

    def _check_obligations(self, errors: list[BaseException]) -> None:
        obs = self._obligations
        if not obs:
            return
        leaked = abort_leaked(obs.values(), None, f"region {self.id}")
        self._obligations = None
        if not leaked:
            return
        policy = self._effective_leak_policy()
        if policy == "error":
            errors.append(ObligationLeak(leaked, f"region {self.id}"))
        elif policy == "log":
            log_leak(leaked, f"region {self.id}")


def _callable_name(fn: Any) -> str:
    """A deterministic name for a task function (never a repr with an address)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__qualname__", None)
    if name is None:
        name = type(fn).__qualname__
    return name


def _never_abort() -> bool:
    # A region waiting for its children cannot stop waiting: cancellation reaches the
    # children through the scope tree, and the wait ends when they have drained.
    return False


def region(*, policy: str = "fail_fast", budget: Budget | None = None, name: str | None = None,
           leak_policy: str | None = None, finalizer_budget: FinalizerBudget | None = None) -> Region:
    """Open a task-owning region: ``with greenrt.region() as r: r.spawn(fn)``.

    Leaving the block waits for every child; the wait itself cannot be interrupted
    (cancellation reaches the children instead, and they drain within their cleanup
    budgets), and once the region is closed a pending cancellation of an enclosing
    scope is delivered, as at any checkpoint. ``budget`` applies to the block and every child.
    ``leak_policy`` (``error``/``log``/``abort``) is inherited by nested regions.
    """
    return Region(policy=policy, budget=budget, name=name, leak_policy=leak_policy,
                  finalizer_budget=finalizer_budget)
