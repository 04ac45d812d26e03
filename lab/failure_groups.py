"""Grouping the failures of an exploration by what failed (``greenrt-lab explore --all``).

``explore(..., stop_on_failure=False)`` keeps every failing run, and one bug usually
fails many of them. ``group_failures(failures)`` folds them by **failure signature**
(``lab.explorer.failure_signature``: the violated oracles, then ``error:Type`` of the
leaf exception, ``halted:reason``, ``divergence``, ``goal``), so the same bug found by
fifty schedules is one group with a count of fifty and **one** replay token: the one
of its first (lowest-index) run, the run every ``workers`` setting reports first.
Groups come in the order their first run was found. Pure data, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .explorer.results import Failure


@dataclass
class FailureGroup:
    """The failing runs that share one signature."""

    signature: tuple[str, ...]
    first: Failure                       #: the lowest-index run: its token replays the group
    found_by: str = ""                   #: the strategy that found ``first``
    indices: list[int] = field(default_factory=list)  #: every run of the group, in order
    strategies: list[str] = field(default_factory=list)  #: distinct finders, in order

    @property
    def count(self) -> int:
        return len(self.indices)

    @property
    def token(self) -> str:
        return self.first.token

    def describe(self) -> list[str]:
        """The group as printed by the command line: a heading with the count, then
        the first run, its replay and shrink commands (and trace, when recorded)."""
        sig = ", ".join(self.signature) or "(no signature)"
        runs = "run" if self.count == 1 else "runs"
        by = f", found by {', '.join(self.strategies)}" if self.strategies else ""
        lines = [f"{self.count} {runs} failed with {sig}{by}",
                 f"  first: run {self.first.index} ({self.first.origin})"]
        if self.count > 1:
            lines[-1] += f"; also runs {_ranges(self.indices[1:])}"
        if self.first.trace_path:
            lines.append(f"  trace: {self.first.trace_path}")
        lines.append(f"  replay: greenrt-lab replay {self.token}")
        lines.append(f"  shrink: greenrt-lab shrink {self.token}")
        return lines


def group_failures(failures: Sequence[Failure],
                   found_by: Sequence[str] = ()) -> list[FailureGroup]:
    """Fold ``failures`` (in report order) into one group per signature; ``found_by``
    (parallel to ``failures``, as ``ExploreResult.found_by``) names their strategies."""
    groups: dict[tuple[str, ...], FailureGroup] = {}
    for i, f in enumerate(failures):
        sig = tuple(f.signature)
        by = found_by[i] if i < len(found_by) else ""
        g = groups.get(sig)
        if g is None:
            g = groups[sig] = FailureGroup(sig, f, found_by=by)
        g.indices.append(f.index)
        if by and by not in g.strategies:
            g.strategies.append(by)
    return list(groups.values())


def _ranges(xs: Sequence[int], limit: int = 12) -> str:
    """``1, 3-5, 9`` for [1, 3, 4, 5, 9]; at most ``limit`` items, then ``… (+N)``."""
    items: list[str] = []
    i = 0
    xs = list(xs)
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[j] + 1:
            j += 1
        items.append(str(xs[i]) if i == j else f"{xs[i]}-{xs[j]}")
        i = j + 1
    if len(items) > limit:
        rest = len(items) - limit
        return ", ".join(items[:limit]) + f" … (+{rest} more)"
    return ", ".join(items)
