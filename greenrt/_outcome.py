"""Outcomes: how a task ended.

The four kinds form a chain ordered by severity::

    ok(value) < err(exception) < cancelled(reason) < panicked(exception)

``join`` keeps the more severe of two outcomes (the left one on a tie), which makes
it a lattice join on severity: commutative and associative up to ties, idempotent,
with ``ok(None)`` below everything. ``err`` is an ``Exception`` raised by the task's
function; ``panicked`` is any other ``BaseException`` escaping it (``SystemExit``,
``KeyboardInterrupt``, a runtime invariant violation): something the program did
not mean to happen at all.
"""

from __future__ import annotations

import enum
from typing import Any


class OutcomeKind(enum.IntEnum):
    OK = 0
    ERR = 1
    CANCELLED = 2
    PANICKED = 3


class Outcome:
    """An immutable outcome. Build one with ``Outcome.ok/err/cancelled/panicked``."""

    __slots__ = ("kind", "value")

    def __init__(self, kind: OutcomeKind, value: Any):
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "value", value)

    def __setattr__(self, name, value):  # pragma: no cover - immutability guard
        raise AttributeError("Outcome is immutable")

    @classmethod
    def ok(cls, value: Any = None) -> Outcome:
        return cls(OutcomeKind.OK, value)

    @classmethod
    def err(cls, exc: BaseException) -> Outcome:
        return cls(OutcomeKind.ERR, exc)

    @classmethod
    def cancelled(cls, reason: Any) -> Outcome:
        return cls(OutcomeKind.CANCELLED, reason)

    @classmethod
    def panicked(cls, exc: BaseException) -> Outcome:
        return cls(OutcomeKind.PANICKED, exc)

    @property
    def severity(self) -> int:
        return int(self.kind)

    @property
    def is_ok(self) -> bool:
        return self.kind is OutcomeKind.OK

    @property
    def is_err(self) -> bool:
        return self.kind is OutcomeKind.ERR

    @property
    def is_cancelled(self) -> bool:
        return self.kind is OutcomeKind.CANCELLED

    @property
    def is_panicked(self) -> bool:
        return self.kind is OutcomeKind.PANICKED

    @property
    def is_failure(self) -> bool:
        """err or panicked: the outcomes a region reports as errors."""
        return self.kind is OutcomeKind.ERR or self.kind is OutcomeKind.PANICKED

    def join(self, other: Outcome) -> Outcome:
        """The more severe outcome; ``self`` on a tie."""
        return other if other.kind > self.kind else self

    def unwrap(self) -> Any:
        """Return the value of ``ok``; raise the exception of ``err``/``panicked``;
        raise ``TaskCancelledError`` for ``cancelled``."""
        if self.kind is OutcomeKind.OK:
            return self.value
        if self.kind is OutcomeKind.CANCELLED:
            from ._exceptions import TaskCancelledError

            raise TaskCancelledError(self.value)
        raise self.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Outcome) and self.kind == other.kind and self.value is other.value

    def __hash__(self) -> int:
        return hash((self.kind, id(self.value)))

    def __repr__(self) -> str:
        if self.kind is OutcomeKind.CANCELLED:
            return f"cancelled({self.value})"
        return f"{self.kind.name.lower()}({self.value!r})"
