"""Combinators: join, race, first_ok, timeout, hedge and retry.

The concurrent combinators (``join``, ``race``, ``first_ok``, ``hedge``) run each
function as a child task of a private region opened inside the call, so they inherit
the caller's cancel scopes, deadline and budget, and they cannot return before every
child has completed: the region's close is the drain. There are no orphan tasks, and
a loser's cleanup, however long it blocks (within its cleanup budget), finishes
before the combinator returns.

``timeout`` and ``retry`` run the function in the calling task (no child task to
orphan), inside a cancel scope; they need no region.

Deadlines: every combinator runs under the caller's scopes, so the tighter deadline
always wins. If the caller's deadline is sooner than ``timeout``'s, the caller's scope
cancels first and the caller sees its own ``Cancelled`` (caught by its own scope),
not ``TooSlowError``. ``retry`` reads ``greenrt.current_deadline()`` before each
backoff and gives up (raising the last error) instead of sleeping into a deadline it
could not meet; it also gives up when the poll budget cannot pay for another attempt.

Losing: ``race``/``first_ok``/``hedge`` cancel the losers with reason ``race_lost``
(a ``CancelReason`` naming the winner task). A loser that fails with an ordinary
exception after the winner was decided does not change the result; the failure is
recorded as a ``combinator.loser_error`` trace event and logged once on the
``greenrt`` logger (ERROR, with its traceback). A panic (a ``BaseException``
other than ``Cancelled``) in any child propagates out of the region as usual.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple, overload

from ._checkpoint import checkpoint_if_cancelled, now, sleep
from ._exceptions import Cancelled, InvalidStateError
from ._hub import current_hub
from ._log import log_detached
from ._outcome import Outcome
from ._reason import CancelKind, CancelReason
from ._region import region
from ._scope import fail_after, move_on_after
from ._usage import check_duration, check_task_fn
from .sync import Event

if TYPE_CHECKING:  # pragma: no cover
    from ._task import Task

__all__ = ["RetryPolicy", "first_ok", "hedge", "join", "race", "retry", "timeout"]

T = TypeVar("T")
T1 = TypeVar("T1")
T2 = TypeVar("T2")
T3 = TypeVar("T3")
T4 = TypeVar("T4")
Ts = TypeVarTuple("Ts")


def _name(fn: Any) -> str:
    if isinstance(fn, functools.partial):
        fn = fn.func
    return getattr(fn, "__qualname__", None) or repr(fn)


# -- join ------------------------------------------------------------------------------


# The overloads give the element type of the list: one type per call arity up to four
# (a union of the functions' results); past that, ``list[Any]``.
@overload
def join(f1: Callable[[], T1], /) -> list[T1]: ...
@overload
def join(f1: Callable[[], T1], f2: Callable[[], T2], /) -> list[T1 | T2]: ...
@overload
def join(f1: Callable[[], T1], f2: Callable[[], T2], f3: Callable[[], T3], /
         ) -> list[T1 | T2 | T3]: ...
@overload
def join(f1: Callable[[], T1], f2: Callable[[], T2], f3: Callable[[], T3],
         f4: Callable[[], T4], /) -> list[T1 | T2 | T3 | T4]: ...
@overload
def join(*fns: Callable[[], Any]) -> list[Any]: ...
def join(*fns: Callable[[], Any]) -> list[Any]:
    """Run every ``fn()`` concurrently; return their results in argument order.

    A checkpoint (the caller blocks until all are done). If one fails, the others are
    cancelled (``fail_fast``) and the failures leave as an ``ExceptionGroup``.
    """
    for fn in fns:
        check_task_fn(fn, "join")
    results: list[Any] = [None] * len(fns)

    def store(i: int, fn: Callable[[], Any]) -> None:
        results[i] = fn()

    with region(name="join") as r:
        for i, fn in enumerate(fns):
            r.spawn(store, i, fn, name=f"join[{i}]:{_name(fn)}")
    return results


# -- race / first_ok -------------------------------------------------------------------


class _Contest:
    """Shared state of a race: who won, who failed, what to cancel."""

    def __init__(self, need_ok: bool):
        self.need_ok = need_ok
        self.tasks: list[Task[None]] = []
        self.winner: int | None = None
        self.outcome: Outcome[Any] | None = None
        self.errors: dict[int, Exception] = {}
        self.region_id: int | None = None
        self.progress: Event | None = None

    def settle(self, i: int, outcome: Outcome[Any]) -> None:
        if self.winner is not None:
            if outcome.is_err:
                hub = current_hub()
                hub.emit("combinator.loser_error", index=i, error=type(outcome.value).__name__)
                log_detached("race loser %d failed after the winner (%d) was decided", outcome.value,
                             i, self.winner)
            return
        if self.need_ok and not outcome.is_ok:
            self.errors[i] = outcome.value
            if len(self.errors) == len(self.tasks) and self.progress is not None:
                self.progress.set()
            return
        self.winner = i
        self.outcome = outcome
        winner_task = self.tasks[i]
        hub = current_hub()
        reason = CancelReason(CancelKind.RACE_LOST, message=f"lost to task {winner_task.id}",
                              origin_task=winner_task.id, origin_region=self.region_id,
                              time=hub.now())
        for j, t in enumerate(self.tasks):
            if j != i:
                t.cancel(reason)
        if self.progress is not None:
            self.progress.set()


def _contestant(c: _Contest, i: int, fn: Callable[[], Any]) -> None:
    try:
        value = fn()
    except Exception as exc:
        c.settle(i, Outcome.err(exc))
    else:
        c.settle(i, Outcome.ok(value))


def _finish_contest(c: _Contest, what: str) -> Any:
    if c.winner is None:
        if c.need_ok and c.errors and len(c.errors) == len(c.tasks):
            errs = [c.errors[i] for i in sorted(c.errors)]
            raise ExceptionGroup(f"{what}: all {len(errs)} attempts failed", errs)
        # Nobody finished: the caller's scope was cancelled. Deliver that.
        checkpoint_if_cancelled()
        raise InvalidStateError(f"{what} ended without a winner")
    return c.outcome.unwrap()  # type: ignore[union-attr]  # a winner has an outcome


@overload
def race(f1: Callable[[], T1], /) -> T1: ...
@overload
def race(f1: Callable[[], T1], f2: Callable[[], T2], /) -> T1 | T2: ...
@overload
def race(f1: Callable[[], T1], f2: Callable[[], T2], f3: Callable[[], T3], /
         ) -> T1 | T2 | T3: ...
@overload
def race(f1: Callable[[], T1], f2: Callable[[], T2], f3: Callable[[], T3],
         f4: Callable[[], T4], /) -> T1 | T2 | T3 | T4: ...
@overload
def race(*fns: Callable[[], Any]) -> Any: ...
def race(*fns: Callable[[], Any]) -> Any:
    """Run every ``fn()`` concurrently; the first to *complete* wins.

    Returns the winner's value, or raises the winner's exception if the first to
    complete failed. The losers are cancelled with reason ``race_lost`` and drained
    (they have completed) before ``race`` returns or raises. A checkpoint; if the
    caller is cancelled first, every contestant is cancelled and drained and the
    caller gets ``Cancelled``.
    """
    if not fns:
        raise ValueError("race() needs at least one function")
    for fn in fns:
        check_task_fn(fn, "race")
    c = _Contest(need_ok=False)
    with region(name="race", policy="collect_all") as r:
        c.region_id = r.id
        for i, fn in enumerate(fns):
            c.tasks.append(r.spawn(_contestant, c, i, fn, name=f"race[{i}]:{_name(fn)}"))
    return _finish_contest(c, "race")


@overload
def first_ok(f1: Callable[[], T1], /) -> T1: ...
@overload
def first_ok(f1: Callable[[], T1], f2: Callable[[], T2], /) -> T1 | T2: ...
@overload
def first_ok(f1: Callable[[], T1], f2: Callable[[], T2], f3: Callable[[], T3], /
         ) -> T1 | T2 | T3: ...
@overload
def first_ok(f1: Callable[[], T1], f2: Callable[[], T2], f3: Callable[[], T3],
         f4: Callable[[], T4], /) -> T1 | T2 | T3 | T4: ...
@overload
def first_ok(*fns: Callable[[], Any]) -> Any: ...
def first_ok(*fns: Callable[[], Any]) -> Any:
    """Like ``race``, but only a *successful* completion wins; failures are kept.

    Returns the first successful value (the others are cancelled with ``race_lost``
    and drained); if every function fails, raises an ``ExceptionGroup`` of their
    errors in argument order. A checkpoint.
    """
    if not fns:
        raise ValueError("first_ok() needs at least one function")
    for fn in fns:
        check_task_fn(fn, "first_ok")
    c = _Contest(need_ok=True)
    with region(name="first_ok", policy="collect_all") as r:
        c.region_id = r.id
        for i, fn in enumerate(fns):
            c.tasks.append(r.spawn(_contestant, c, i, fn, name=f"first_ok[{i}]:{_name(fn)}"))
    return _finish_contest(c, "first_ok")


# -- timeout ---------------------------------------------------------------------------


# (ignore: mypy reads the scope's ``__exit__ -> bool`` as "may swallow"; fail_after
# raises TooSlowError instead, so the body's return is the only way out)
def timeout(seconds: float, fn: Callable[[*Ts], T], *args: *Ts) -> T:  # type: ignore[return]
    """Run ``fn(*args)`` in the calling task; raise ``TooSlowError`` (a
    ``TimeoutError``) if it takes longer than ``seconds``.

    The tighter deadline wins: when an enclosing deadline expires first, the
    enclosing scope's ``Cancelled`` propagates instead (and that scope catches it).
    """
    check_task_fn(fn, "timeout")
    with fail_after(seconds, name="timeout"):
        return fn(*args)


# -- hedge -----------------------------------------------------------------------------


def hedge(fn: Callable[[], T], delay: float, n: int = 2) -> T:
    """Start ``fn()``; if no copy has succeeded after ``delay`` seconds, start another,
    up to ``n`` copies. The first success wins; the other copies are cancelled
    (``race_lost``) and drained before ``hedge`` returns.

    A copy that fails makes the next one start at once (no point waiting). If all
    ``n`` fail, raises an ``ExceptionGroup`` of their errors. A checkpoint. The
    caller's deadline bounds everything: no copy is started once it is due.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, not {n!r}")
    check_duration(delay, "delay")
    check_task_fn(fn, "hedge")
    c = _Contest(need_ok=True)
    with region(name="hedge", policy="collect_all") as r:
        c.region_id = r.id
        for k in range(n):
            c.progress = Event()
            c.tasks.append(r.spawn(_contestant, c, k, fn, name=f"hedge[{k}]:{_name(fn)}"))
            if k == n - 1:
                break
            with move_on_after(delay):
                c.progress.wait()
            if c.winner is not None:
                break
            checkpoint_if_cancelled()  # the caller's deadline may be due: start no copy
    return _finish_contest(c, "hedge")  # type: ignore[no-any-return]  # fn's result


# -- retry -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How ``retry`` retries.

    * ``max_attempts``: attempts in all (1 = no retry).
    * backoff before attempt ``k+1``: ``initial_backoff * multiplier**(k-1)``, capped
      at ``max_backoff``, then scaled by a random factor in ``[1-jitter, 1+jitter]``
      drawn from ``rng`` (pass a seeded ``random.Random`` for reproducible runs; the
      default ``jitter=0`` draws nothing).
    * ``retry_on``: exception types worth retrying (others propagate at once).
      ``Cancelled`` is never retried.
    * ``retry_non_idempotent``: a non-idempotent operation is retried only if this is
      ``True``, or a tuple of exception types that guarantee the failed attempt had no
      effect (e.g. ``(ConnectionRefusedError,)``).
    * ``attempt_timeout``: a per-attempt limit (``TooSlowError``, retried like any
      error in ``retry_on``).
    """

    max_attempts: int = 3
    initial_backoff: float = 0.1
    max_backoff: float = 10.0
    multiplier: float = 2.0
    jitter: float = 0.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    retry_non_idempotent: bool | tuple[type[BaseException], ...] = False
    attempt_timeout: float | None = None
    rng: random.Random | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError("max_attempts must be an int >= 1")
        check_duration(self.initial_backoff, "initial_backoff")
        check_duration(self.max_backoff, "max_backoff")
        if self.multiplier < 1:
            raise ValueError("multiplier must be >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be within [0, 1]")
        if self.attempt_timeout is not None and check_duration(
                self.attempt_timeout, "attempt_timeout") <= 0:
            raise ValueError("attempt_timeout must be > 0")

    def backoff(self, attempt: int) -> float:
        """The pause after failed attempt number ``attempt`` (1-based)."""
        d = self.initial_backoff
        for _ in range(attempt - 1):
            d *= self.multiplier
            if d >= self.max_backoff:
                break
        d = min(d, self.max_backoff)
        if self.jitter:
            rng = self.rng if self.rng is not None else random
            d *= 1 + self.jitter * (2 * rng.random() - 1)
        return d

    def may_retry(self, exc: BaseException, idempotent: bool) -> bool:
        if not isinstance(exc, Exception) or not isinstance(exc, self.retry_on):
            return False
        if idempotent:
            return True
        allow = self.retry_non_idempotent
        if allow is True:
            return True
        return bool(allow) and isinstance(exc, allow)  # type: ignore[arg-type]  # a tuple here


def retry(fn: Callable[[], T], policy: RetryPolicy | None = None, *, idempotent: bool) -> T:
    """Call ``fn()`` until it succeeds, per ``policy``; return its value.

    ``idempotent`` must be stated: a non-idempotent ``fn`` is retried only when the
    policy allows it (``retry_non_idempotent``). The backoff sleeps are checkpoints;
    ``retry`` never sleeps past the caller's deadline (it raises the last error at
    once, with a note, when the next attempt could not start in time), and stops when
    the caller's poll budget is spent. The final error is the last attempt's, with a
    note saying why ``retry`` gave up. ``Cancelled`` is never retried.
    """
    check_task_fn(fn, "retry")
    if policy is None:
        policy = RetryPolicy()
    from . import current_budget, current_deadline

    hub = current_hub()
    attempt = 0
    while True:
        attempt += 1
        if hub._tracing:
            hub.emit("retry.attempt", attempt=attempt, fn=_name(fn))
        try:
            if policy.attempt_timeout is not None:
                with fail_after(policy.attempt_timeout, name="retry attempt"):
                    return fn()
            return fn()
        except Cancelled:
            raise
        except Exception as exc:
            if not policy.may_retry(exc, idempotent):
                if not idempotent and isinstance(exc, policy.retry_on):
                    exc.add_note("retry: not retried because the operation is not idempotent")
                raise
            if attempt >= policy.max_attempts:
                exc.add_note(f"retry: gave up after {attempt} attempts")
                raise
            delay = policy.backoff(attempt)
            deadline = current_deadline()
            if deadline is not None and now() + delay >= deadline:
                exc.add_note(f"retry: gave up after {attempt} attempts: the next attempt "
                             f"(after {delay:.3g}s backoff) would start past the deadline")
                raise
            if current_budget().poll_quota == 0:
                exc.add_note(f"retry: gave up after {attempt} attempts: poll budget spent")
                raise
            if hub._tracing:
                hub.emit("retry.backoff", attempt=attempt, delay=delay,
                         error=type(exc).__name__)
        sleep(delay)
