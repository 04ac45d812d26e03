"""Cancellation reasons: who asked a scope to stop, and why.

A :class:`CancelReason` is recorded on the scope that was cancelled. Kinds are
ordered by *severity*; a second request on the same scope can only strengthen the
recorded reason (a more severe kind replaces a less severe one, an equally severe one
keeps the first). Each kind carries a default *cleanup budget*: how many checkpoints
and how much time the cancelled code gets to clean up once ``Cancelled`` has been
delivered. More severe kinds get stricter budgets.

Invariants:
  * ``strengthen`` is monotone: the severity of the result is the maximum of both.
  * a cause chain is bounded (``MAX_CAUSE_DEPTH``): the links just above the original
    reason are cut out, so a long cascade of cancellations cannot grow memory without
    bound and the chain still ends at the original reason.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any


class CancelKind(enum.Enum):
    """The kind of a cancellation request. ``severity`` orders them."""

    USER = "user"
    TIMEOUT = "timeout"
    DEADLINE = "deadline"
    POLL_QUOTA = "poll_quota"
    COST_BUDGET = "cost_budget"
    FAIL_FAST = "fail_fast"
    RACE_LOST = "race_lost"
    LINKED_EXIT = "linked_exit"
    PARENT_CANCELLED = "parent_cancelled"
    RESOURCE_UNAVAILABLE = "resource_unavailable"
    SHUTDOWN = "shutdown"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @property
    def cleanup_budget(self) -> CleanupBudget:
        return DEFAULT_CLEANUP_BUDGETS[self]

    def __str__(self) -> str:
        return self.value


_SEVERITY = {
    CancelKind.USER: 0,
    CancelKind.TIMEOUT: 1,
    CancelKind.DEADLINE: 1,
    CancelKind.POLL_QUOTA: 2,
    CancelKind.COST_BUDGET: 2,
    CancelKind.FAIL_FAST: 3,
    CancelKind.RACE_LOST: 3,
    CancelKind.LINKED_EXIT: 3,
    CancelKind.PARENT_CANCELLED: 4,
    CancelKind.RESOURCE_UNAVAILABLE: 4,
    CancelKind.SHUTDOWN: 5,
}


@dataclass(frozen=True)
class CleanupBudget:
    """How much cleanup a cancelled scope gets: ``polls`` checkpoints and ``seconds``
    of (hub) time after ``Cancelled`` was delivered. When either runs out, every
    further checkpoint raises ``Cancelled`` again, even inside ``masked()`` (and yields
    to the hub first, so a task that swallows it cannot starve the others). A task that
    still reaches ``grace_polls`` more checkpoints, or is still running
    ``grace_seconds`` after the budget ran out, is *abandoned*: never resumed again,
    outcome ``panicked(CleanupOverrun)``."""

    polls: int
    seconds: float
    grace_polls: int = 10
    grace_seconds: float = 0.5


DEFAULT_CLEANUP_BUDGETS: dict[CancelKind, CleanupBudget] = {
    CancelKind.USER: CleanupBudget(polls=1000, seconds=5.0),
    CancelKind.TIMEOUT: CleanupBudget(polls=1000, seconds=5.0),
    CancelKind.DEADLINE: CleanupBudget(polls=1000, seconds=5.0),
    CancelKind.POLL_QUOTA: CleanupBudget(polls=500, seconds=2.0),
    CancelKind.COST_BUDGET: CleanupBudget(polls=500, seconds=2.0),
    CancelKind.FAIL_FAST: CleanupBudget(polls=300, seconds=2.0),
    CancelKind.RACE_LOST: CleanupBudget(polls=300, seconds=2.0),
    CancelKind.LINKED_EXIT: CleanupBudget(polls=300, seconds=2.0),
    CancelKind.PARENT_CANCELLED: CleanupBudget(polls=200, seconds=1.0),
    CancelKind.RESOURCE_UNAVAILABLE: CleanupBudget(polls=200, seconds=1.0),
    CancelKind.SHUTDOWN: CleanupBudget(polls=100, seconds=1.0, grace_polls=5, grace_seconds=0.2),
}

MAX_CAUSE_DEPTH = 8


@dataclass(frozen=True)
class CancelReason:
    """Why a scope was cancelled.

    ``origin_task`` and ``origin_region`` are ids (ints, deterministic per hub), not
    objects, so a reason never keeps a finished task alive. ``time`` is hub time.
    ``deadline`` (hub time) is set on the reasons a deadline or timeout produced;
    ``str()`` shows it as a duration from now (``expired 2.0 ms ago``, ``deadline in
    1.5 s``), never as a raw clock reading.
    """

    kind: CancelKind
    message: str = ""
    origin_task: int | None = None
    origin_region: int | None = None
    time: float | None = None
    cause: CancelReason | None = field(default=None, compare=False)
    deadline: float | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, CancelKind):
            object.__setattr__(self, "kind", CancelKind(self.kind))
        if self.cause is not None and self.cause.depth >= MAX_CAUSE_DEPTH:
            object.__setattr__(self, "cause", self.cause.truncated(MAX_CAUSE_DEPTH - 1))

    @property
    def severity(self) -> int:
        return self.kind.severity

    @property
    def depth(self) -> int:
        """Length of the cause chain, this reason included."""
        n, r = 1, self.cause
        while r is not None:
            n += 1
            r = r.cause
        return n

    def truncated(self, depth: int) -> CancelReason:
        """This reason with its cause chain cut to ``depth`` links in all.

        The links dropped are the ones just above the root: the nearest
        ``depth - 1`` links are kept and the chain still ends at the original
        reason, so a task many regions down can always tell why it was cancelled.
        """
        chain = self.chain()
        if len(chain) <= depth:
            return self
        if depth <= 1:
            return replace(self, cause=None)
        out = replace(chain[-1], cause=None)
        for link in reversed(chain[: depth - 1]):
            out = replace(link, cause=out)
        return out

    def strengthen(self, other: CancelReason | None) -> CancelReason:
        """The stronger of ``self`` and ``other``: higher severity wins, ties keep ``self``."""
        if other is None or other.kind.severity <= self.kind.severity:
            return self
        return other

    def chain(self) -> list[CancelReason]:
        out: list[CancelReason] = []
        r: CancelReason | None = self
        while r is not None:
            out.append(r)
            r = r.cause
        return out

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind.value, "message": self.message,
             "origin_task": self.origin_task, "origin_region": self.origin_region}
        if self.cause is not None:
            d["cause"] = self.cause.to_dict()
        return d

    def deadline_text(self, now: float | None = None) -> str | None:
        """``"expired 2.0 ms ago"`` / ``"deadline in 1.5 s"`` relative to ``now`` (by
        default the running hub's time; without a hub in this thread, relative to
        when the cancellation was requested), or ``None`` without a deadline."""
        d = self.deadline
        if d is None:
            return None
        if now is None:
            now = _hub_now()
        if now is None:
            if self.time is None or self.time >= d:
                return "deadline expired"
            return f"deadline was {format_seconds(d - self.time)} after the request"
        if d > now:
            return f"deadline in {format_seconds(d - now)}"
        return f"expired {format_seconds(now - d)} ago"

    def __str__(self) -> str:
        s = self.kind.value
        parts = [self.message] if self.message else []
        text = self.deadline_text()
        if text is not None:
            parts.append(text)
        if parts:
            s += f" ({'; '.join(parts)})"
        if self.cause is not None:
            s += f" <- {self.cause}"
        return s

    def __repr__(self) -> str:
        fields = [repr(self.kind.value)]
        if self.message:
            fields.append(f"message={self.message!r}")
        for name in ("origin_task", "origin_region"):
            v = getattr(self, name)
            if v is not None:
                fields.append(f"{name}={v}")
        if self.deadline is not None:
            fields.append(str(self.deadline_text()))
        if self.cause is not None:
            fields.append(f"cause={self.cause!r}")
        return f"CancelReason({', '.join(fields)})"


def format_seconds(s: float) -> str:
    """A duration for people: ``1.5 s``, ``250 ms``, ``40 us``, ``3600 s``."""
    if s != s or s in (float("inf"), float("-inf")):
        return f"{s} s"
    if s >= 100:
        return f"{s:.0f} s"
    if s >= 1:
        return f"{s:.3g} s"
    if s >= 0.001:
        return f"{s * 1000:.3g} ms"
    return f"{s * 1e6:.3g} us"


def _hub_now() -> float | None:
    from ._hub import _tls

    hub = getattr(_tls, "hub", None)
    if hub is None:
        return None
    try:
        now: float = hub.now()
    except Exception:  # noqa: BLE001 - a closed hub: fall back to the request time
        return None
    return now


def as_reason(reason: CancelReason | CancelKind | str | None, default: CancelKind = CancelKind.USER,
              **fields: Any) -> CancelReason:
    """Accept a reason, a kind, a kind name or a message, and return a ``CancelReason``.

    A plain string that is not a kind name becomes the message of a ``default`` reason.
    """
    if isinstance(reason, CancelReason):
        return reason
    if isinstance(reason, CancelKind):
        return CancelReason(reason, **fields)
    if isinstance(reason, str):
        try:
            return CancelReason(CancelKind(reason), **fields)
        except ValueError:
            return CancelReason(default, message=reason, **fields)
    return CancelReason(default, **fields)
