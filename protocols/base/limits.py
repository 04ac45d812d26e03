"""The limits base: every protocol's limits are one frozen dataclass deriving
:class:`Limits`.

A subclass declares its fields with safe defaults (those of ``docs/security.md``)
and says which fields are sizes/counts and which are timeouts; ``__post_init__``
validates them once, so a ``Limits`` object that exists is a valid one::

    @dataclass(frozen=True)
    class RedisLimits(Limits):
        positive_ints = ("max_bulk_bytes", "max_depth")
        timeouts = ("connect_timeout",)
        max_bulk_bytes: int = 64 * 1024 * 1024
        max_depth: int = 32
        connect_timeout: float | None = 10.0

``replace(**changes)`` returns a validated copy. ``None`` disables a timeout; a size
or count limit cannot be disabled (make it large instead): an unbounded allocation
from untrusted input is exactly what these objects exist to prevent.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

__all__ = ["Limits"]


@dataclasses.dataclass(frozen=True)
class Limits:
    """Base class for a protocol's limits; see the module docstring."""

    #: names of fields that must be positive ints (sizes, counts)
    positive_ints: ClassVar[tuple[str, ...]] = ()
    #: names of fields that must be positive numbers, or None (timeouts, seconds)
    timeouts: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        cls = type(self).__name__
        for name in self.positive_ints:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{cls}.{name} must be a positive int, not {v!r}")
        for name in self.timeouts:
            v = getattr(self, name)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"{cls}.{name} must be a positive number of seconds or None, "
                                 f"not {v!r}")

    def replace(self, **changes: Any):
        """A validated copy with some fields changed (unknown names are a TypeError)."""
        return dataclasses.replace(self, **changes)
