"""Budgets: how much time, how many checkpoints and how much cost a scope may spend.

A ``Budget`` attached to a scope (a region, a ``cancel_scope``) limits everything that
runs inside it. A task's effective budget is the *meet* of the budgets of every scope
that encloses it: the earliest deadline, the smallest quotas, the highest priority.
``meet`` is commutative, associative and idempotent, and ``Budget.INFINITE`` is its
identity, so the order in which scopes are nested never changes the result.

Budgets are enforced at checkpoints: every checkpoint charges one poll against each
enclosing poll quota, ``greenrt.charge(n)`` charges ``n`` against each enclosing cost
quota, and a deadline arms a timer. Running out is a cancellation request of kind
``deadline``, ``poll_quota`` or ``cost_budget`` on the scope that owns the budget,
never a silent drop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_PRIORITY = 128


def _min(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return a if a <= b else b


@dataclass(frozen=True)
class Budget:
    """``deadline`` is absolute hub time (``greenrt.now()`` clock); quotas are counts.

    ``None`` means unlimited. Priority runs 0..255, higher is more urgent; the
    scheduler uses it to order tasks with equal deadlines in the timed lane.
    """

    deadline: float | None = None
    poll_quota: int | None = None
    cost_quota: int | None = None
    priority: int = DEFAULT_PRIORITY

    def __post_init__(self) -> None:
        d = self.deadline
        if d is not None and ((type(d) is not float and type(d) is not int) or d != d):
            from ._usage import check_deadline

            object.__setattr__(self, "deadline", check_deadline(d, "deadline"))
        for name in ("poll_quota", "cost_quota"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 0):
                raise ValueError(f"{name} must be a non-negative int or None, not {v!r}")
        if not (0 <= self.priority <= 255):
            raise ValueError(f"priority must be in 0..255, not {self.priority!r}")

    def meet(self, other: Budget) -> Budget:
        """The tighter of two budgets, field by field."""
        return Budget(
            deadline=_min(self.deadline, other.deadline),
            poll_quota=_min(self.poll_quota, other.poll_quota),
            cost_quota=_min(self.cost_quota, other.cost_quota),
            priority=max(self.priority, other.priority),
        )

    __and__ = meet

    @property
    def is_unlimited(self) -> bool:
        return self.deadline is None and self.poll_quota is None and self.cost_quota is None


Budget.INFINITE = Budget(priority=0)  # type: ignore[attr-defined]
