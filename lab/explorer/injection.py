"""Cancellation injection: cancel a task at its K-th checkpoint (``inject=``)."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from greenrt import CancelKind, CancelReason


@dataclass
class Inject:
    """A cancellation to inject: at the ``at``-th checkpoint (0-based) of a task whose
    name matches ``tasks`` (fnmatch pattern)."""

    at: int
    tasks: str = "*"

    def to_dict(self) -> dict:
        return {"at": self.at, "tasks": self.tasks}


class _Injector:
    """Instrument: counts checkpoints of matching tasks, cancels at number ``at``."""

    def __init__(self, hub, at: int | None, pattern: str):
        self.hub = hub
        self.at = at
        self.pattern = pattern
        self.count = 0
        self.points: list[tuple[int, int]] = []  # (event seq, task id) per checkpoint
        self.fired = False
        self._names: dict[int, bool] = {}

    def _match(self, tid: int) -> bool:
        m = self._names.get(tid)
        if m is None:
            t = self.hub.tasks.get(tid)
            m = self.pattern == "*" or (t is not None and fnmatch.fnmatchcase(t.name, self.pattern))
            self._names[tid] = m
        return m

    def __call__(self, ev) -> None:
        if ev.kind != "checkpoint" or ev.task is None or not self._match(ev.task):
            return
        k = self.count
        self.count += 1
        self.points.append((ev.seq, ev.task))
        if k == self.at and not self.fired:
            self.fired = True
            t = self.hub.tasks.get(ev.task)
            if t is not None and not t._state_done:
                t.cancel(CancelReason(CancelKind.USER, message=f"lab: injected at checkpoint {k}",
                                      time=self.hub.now()))
