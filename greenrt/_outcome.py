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
from typing import Any, Generic, Never, TypeVar, overload

T_co = TypeVar("T_co", covariant=True)
U = TypeVar("U")


class OutcomeKind(enum.IntEnum):
    OK = 0
    ERR = 1
    CANCELLED = 2
    PANICKED = 3


_OK, _ERR, _CANCELLED, _PANICKED = 0, 1, 2, 3
_KINDS = (OutcomeKind.OK, OutcomeKind.ERR, OutcomeKind.CANCELLED, OutcomeKind.PANICKED)


class Outcome(tuple[int, Any], Generic[T_co]):
    """An immutable outcome: a ``(severity, value)`` pair. Build one with
    ``Outcome.ok/err/cancelled/panicked``; ``kind`` is the ``OutcomeKind``.

    Generic in the value of ``ok``: ``Outcome[int]`` unwraps to an ``int``. The
    failure constructors return ``Outcome[Never]``, which fits any ``Outcome[T]``.
    """

    __slots__ = ()

    def __new__(cls, kind: int, value: Any) -> Outcome[Any]:
        return tuple.__new__(cls, (int(kind), value))

    @overload
    @classmethod
    def ok(cls) -> Outcome[None]: ...
    @overload
    @classmethod
    def ok(cls, value: U) -> Outcome[U]: ...
    @classmethod
    def ok(cls, value: Any = None) -> Outcome[Any]:
        return tuple.__new__(cls, (_OK, value))

    @classmethod
    def err(cls: type[Outcome[Any]], exc: BaseException) -> Outcome[Never]:
        return tuple.__new__(cls, (_ERR, exc))

    @classmethod
    def cancelled(cls: type[Outcome[Any]], reason: Any) -> Outcome[Never]:
        return tuple.__new__(cls, (_CANCELLED, reason))

    @classmethod
    def panicked(cls: type[Outcome[Any]], exc: BaseException) -> Outcome[Never]:
        return tuple.__new__(cls, (_PANICKED, exc))

    @property
    def kind(self) -> OutcomeKind:
        return _KINDS[self[0]]

    @property
    def value(self) -> Any:
        return self[1]

    @property
    def severity(self) -> int:
        return self[0]

    @property
    def is_ok(self) -> bool:
        return self[0] == _OK

    @property
    def is_err(self) -> bool:
        return self[0] == _ERR

    @property
    def is_cancelled(self) -> bool:
        return self[0] == _CANCELLED

    @property
    def is_panicked(self) -> bool:
        return self[0] == _PANICKED

    @property
    def is_failure(self) -> bool:
        """err or panicked: the outcomes a region reports as errors."""
        k = self[0]
        return k == _ERR or k == _PANICKED

    def join(self, other: Outcome[U]) -> Outcome[T_co | U]:
        """The more severe outcome; ``self`` on a tie."""
        return other if other[0] > self[0] else self

    def unwrap(self) -> T_co:
        """Return the value of ``ok``; raise the exception of ``err``/``panicked``;
        raise ``TaskCancelledError`` for ``cancelled``."""
        k = self[0]
        if k == _OK:
            return self[1]  # type: ignore[no-any-return]  # the value of ok is a T_co
        if k == _CANCELLED:
            from ._exceptions import TaskCancelledError

            raise TaskCancelledError(self[1])
        raise self[1]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Outcome) and self[0] == other[0] and self[1] is other[1]

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash((self[0], id(self[1])))

    def __repr__(self) -> str:
        if self[0] == _CANCELLED:
            return f"cancelled({self[1]})"
        return f"{_KINDS[self[0]].name.lower()}({self[1]!r})"
