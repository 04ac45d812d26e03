"""Checking DPOR's independence assumption on the program itself (``strategy="dpor"``).

DPOR only reorders steps whose footprints conflict, and a footprint holds only what
the runtime sees (greenrt's primitives and channels, simulated streams, cancellation,
spawns, ``lab.shared``/``lab.access``). State it does not see — a plain dict shared
by tasks, a flag polled by hand — makes two steps look independent when they are
not, and DPOR would explore one order and call the tree complete.

So the default ``dpor`` tests its own premise. After each explored run ``R`` it runs
one *witness* ``R'``: another linearization of ``R``'s happens-before order (the
partial order of program order, the dependencies DPOR saw, wake-ups and spawns) that
switches task at every decision where the order allows it (round-robin among the
tasks whose next step is enabled, least recently run first) — as far from ``R``,
which DPOR makes with as few preemptions as it can, as the order allows. If DPOR's view of the program is right, ``R'`` is in the
same Mazurkiewicz class as ``R`` and must be indistinguishable from it: the same
steps per task, the same events per task, the same outcome. If anything differs,
some task reads state the lab cannot see; the exploration names the tasks whose
behaviour changed and continues as exhaustive DFS (``ExploreResult.notes``), which
needs no dependency information. A witness that fails is a failure like any other.

This is a test, not a proof: hidden state that changes nothing observable in ``R'``
(and yet matters in some other class) escapes it. ``dpor:declared`` skips the
witnesses (today's behaviour, half the runs) for programs that declare everything.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..choice import Strategy

#: Event kinds that describe scheduling rather than what a task did.
_SCHEDULING = frozenset(("lab.choice", "task.switch", "lab.timer"))
_ADDR = re.compile(r"0x[0-9a-fA-F]+")


class HBWitness(Strategy):
    """Re-run ``R`` along another linearization of its happens-before order."""

    name = "dpor-witness"

    def __init__(self, sched: list, clocks: list[dict], env: list[tuple[str, int]]):
        self.hub = None
        self.mismatch = None  # never: a divergence here is a finding, not an error
        self.diverged: str | None = None
        self.env = env
        self.env_pos = 0
        # each task's steps in R: (global index, requirements {task: steps of it done})
        local: dict[int, int] = {}
        pos: dict[int, int] = {}
        for j, s in enumerate(sched):
            pos[j] = local.get(s.task, 0)
            local[s.task] = pos[j] + 1
        self.steps: dict[int, list[tuple[int, dict]]] = {}
        for j, s in enumerate(sched):
            req = {t: pos[i] + 1 for t, i in clocks[j].items() if t != s.task}
            self.steps.setdefault(s.task, []).append((j, req))
        self.total = local
        self.done: dict[int, int] = {}
        self.seen = 0
        self.ran: dict[int, int] = {}  # task -> when the witness last picked it
        self.clock = 0

    def bind(self, hub) -> None:
        self.hub = hub

    def _catch_up(self) -> None:
        sched = self.hub.sched
        done = self.done
        while self.seen < len(sched):
            t = sched[self.seen].task
            done[t] = done.get(t, 0) + 1
            self.seen += 1

    def choose(self, what: str, n: int, ids: Sequence[int] | None = None) -> int:
        if what != "task" or ids is None:
            if self.env_pos < len(self.env):
                w, i = self.env[self.env_pos]
                self.env_pos += 1
                if w == what and i < n:
                    return i
            self._diverge(f"an environment decision ({what} among {n}) differs")
            return 0
        self._catch_up()
        done = self.done
        sched = self.hub.sched
        last = sched[-1].task if sched else None
        best = None
        for k, t in enumerate(ids):
            m = done.get(t, 0)
            mine = self.steps.get(t, ())
            if m >= len(mine):
                self._diverge(f"task {t} runs more steps than in the explored run")
                continue
            j, req = mine[m]
            if all(done.get(q, 0) >= c for q, c in req.items()):
                key = (t == last, self.ran.get(t, -1), -j)
                if best is None or key < best[0]:
                    best = (key, k)
        if best is None:
            self._diverge("no runnable task's next step is enabled in the explored order")
            return 0
        self.clock += 1
        self.ran[ids[best[1]]] = self.clock
        return best[1]

    def _diverge(self, why: str) -> None:
        if self.diverged is None:
            self.diverged = why

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


def environment_answers(res) -> list[tuple[str, int]]:
    """The non-scheduling decisions of a run, in order (from its ``lab.choice`` events)."""
    if res.full_trace() is None:
        return []
    return [(e["data"]["what"], e["data"]["i"]) for e in _events(res)
            if e["kind"] == "lab.choice" and e["data"].get("what") != "task"]


def _events(res) -> list[dict]:
    return [r for r in res.full_trace().records if r.get("type", "ev") == "ev" and "kind" in r]


def observation(res) -> tuple[dict, str]:
    """What the program observably did: per task, its non-scheduling events (kind and
    data, addresses scrubbed); and the outcome (failure signature, return value)."""
    per: dict[Any, list] = {}
    for e in _events(res):
        if e["kind"] in _SCHEDULING or e.get("task") is None:
            continue
        # ids (regions, obligations, timers) are numbered per run in creation order,
        # which an equivalent reordering may change: compare the rest of the data
        data = sorted((k, v) for k, v in (e.get("data") or {}).items()
                      if not isinstance(v, int) and v is not None)
        per.setdefault(e["task"], []).append(_ADDR.sub("0x?", f"{e['kind']}{data}"))
    from .judging import failure_signature

    out = _ADDR.sub("0x?", f"{failure_signature(res)} {res.value!r}")
    return per, out


def task_names(res) -> dict[int, str]:
    """Task id -> name, from a run's spawn events."""
    return {e["task"]: e["data"].get("name", "?") for e in _events(res)
            if e["kind"] == "task.spawn"}


def compare(a, b, names: dict[int, str]) -> str | None:
    """None when two observations agree, else which tasks behaved differently."""
    pa, oa = a
    pb, ob = b
    tasks = sorted({t for t in set(pa) | set(pb) if pa.get(t) != pb.get(t)})
    if not tasks and oa == ob:
        return None
    who = ", ".join(f"task {t} ({names.get(t, '?')})" for t in tasks) or "the outcome"
    return who
