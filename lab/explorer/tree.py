"""The decision tree of a DFS/DPOR exploration (stateless: re-executes prefixes)."""

from __future__ import annotations

import random
from typing import Any

from ..choice import FairTail, Strategy
from ..errors import LabError
from .dpor import _merge_fp, independent


class _Node:
    __slots__ = ("what", "n", "ids", "chosen", "done", "todo", "sleep", "fps", "objs",
                 "preempts", "prev", "fixed")

    def __init__(self, what: str, n: int, ids, chosen: int, sleep: dict, objs: int,
                 preempts: int, prev):
        self.what = what
        self.n = n
        self.ids = tuple(ids) if ids is not None else None
        self.chosen = chosen
        self.done: set = set()  # explored alternatives (task ids for task nodes, else indices)
        self.todo: set = set()  # DPOR backtrack set (task ids) / DFS alternatives (indices)
        self.sleep = sleep  # DPOR: {task id: (footprint, objs)} on entry
        self.fps: dict = {}  # DPOR: task id -> (footprint of its step here, objs)
        self.objs = objs
        self.preempts = preempts
        self.prev = prev
        self.fixed = False  # a fair-tail or environment decision: never branched on


class _TreeStrategy(Strategy):
    """One run of a tree exploration: replay ``prefix`` then decide per the tree."""

    def __init__(self, tree: _Tree, prefix: list[int]):
        self.tree = tree
        self.prefix = prefix
        self.pos = 0
        self.name = tree.kind
        self.hub = None
        self.mismatch: str | None = None
        self.rng = random.Random(tree.seed)
        self.sleep: dict = {}
        self.seen = 0
        self.preempts = 0
        self.redundant = False
        self.last_ts = 0
        self.fair = FairTail(tree.fair_after)
        self.tailed = False  # the run reached the fair tail
        self.env = 0  # environment decisions (net, fault, rng) answered from the seed

    def bind(self, hub) -> None:
        self.hub = hub

    def _catch_up(self) -> None:
        """DPOR: propagate the sleep set over the steps finished since the last call."""
        tree = self.tree
        sched = self.hub.sched
        end = len(sched)
        while self.seen < end:
            s = sched[self.seen]
            self.seen += 1
            fp = _merge_fp(s.fp, tree.world)
            k = s.objs
            if s.choice is not None:
                node = tree.path[s.choice]
                node.fps[s.task] = (fp, k)
                node.done.add(s.task)
                cand = dict(self.sleep)
                for t in node.done:
                    if t != s.task and t in node.fps:
                        cand[t] = node.fps[t]
            else:
                cand = self.sleep
                if s.task in cand:
                    self.redundant = True
            self.sleep = {t: v for t, v in cand.items()
                          if t != s.task and independent(v[0], v[1], fp, k)}

    def choose(self, what: str, n: int, ids=None) -> int:
        tree = self.tree
        hub = self.hub
        pos = self.pos
        self.pos += 1
        dpor = tree.kind == "dpor"
        prev = hub._step.task if hub is not None and hub._step is not None else None
        if dpor:
            self._catch_up()
            ts = hub.stats["timers_fired"]
            if ts != self.last_ts or what == "timer":
                self.last_ts = ts
                self.sleep = {}  # time moved: sleeping steps may have changed
        if pos < len(self.prefix):
            node = tree.path[pos]
            if node.what != what or node.n != n or (ids is not None and node.ids != tuple(ids)):
                self.mismatch = (f"decision #{pos} differs from the explored tree "
                                 f"(was {node.what} among {node.n}, now {what} among {n}): "
                                 f"the program is not deterministic")
                return 0
            i = self.prefix[pos]
            if what == "task":
                if prev in ids and ids[i] != prev:
                    self.preempts += 1
                self.fair.ran(ids[i])
                if node.fixed:
                    self.tailed = True
            elif what != "timer":
                self.env += 1
            return i
        # a new decision
        if what == "task" and self.fair.active(hub.steps):
            # the fair tail: one answer, no alternatives (see FAIR_AFTER)
            self.tailed = True
            j = self.fair.pick(ids)
            node = _Node(what, n, ids, j, {}, len(hub._objs), self.preempts, prev)
            node.fixed = True
            node.done.add(ids[j] if dpor else j)
            if prev in ids and ids[j] != prev:
                self.preempts += 1
        elif what == "task":
            cands = [j for j, t in enumerate(ids) if t not in self.sleep] if dpor else list(range(n))
            if not cands:
                self.redundant = True
                hub._stop("sleep_blocked", LabError("every runnable task is in the sleep set"))
            j = next((j for j in cands if ids[j] == prev), cands[0])
            node = _Node(what, n, ids, j, dict(self.sleep) if dpor else {},
                         len(hub._objs), self.preempts, prev)
            if dpor:
                node.todo = {ids[j]}
            else:
                node.done.add(j)
                for a in range(n):
                    pre = self.preempts + (1 if prev in ids and ids[a] != prev else 0)
                    if tree.bound is None or pre <= tree.bound:
                        node.todo.add(a)
            if prev in ids and ids[j] != prev:
                self.preempts += 1
            self.fair.ran(ids[j])
        elif what == "timer":
            j = 0
            node = _Node(what, n, None, 0, {}, 0, self.preempts, None)
            node.done.add(0)
            node.todo = set(range(n))
        else:
            j = self.rng.randrange(n)
            node = _Node(what, n, None, j, {}, 0, self.preempts, None)
            node.fixed = True
            self.env += 1
        tree.path.append(node)
        return j

    def describe(self) -> dict[str, Any]:
        return {"name": self.tree.kind, "bound": self.tree.bound, "seed": self.tree.seed}


class _Tree:
    """The decision tree of a DFS/DPOR exploration (stateless: re-executes prefixes)."""

    def __init__(self, kind: str, bound: int | None, seed: int, fair_after: int | None = None):
        self.kind = kind
        self.bound = bound
        self.seed = seed
        self.fair_after = fair_after
        self.world = False  # dpor: steps with no known access write WORLD (dpor._merge_fp)
        #: runs that reached the fair tail / made environment decisions: the tree
        #: then covers the schedules up to the tail, for one realization of the
        #: environment, and is never reported complete
        self.tailed_runs = 0
        self.env_runs = 0
        self.path: list[_Node] = []
        self.prefix: list[int] | None = []

    def next_strategy(self) -> _TreeStrategy | None:
        if self.prefix is None:
            return None
        return _TreeStrategy(self, self.prefix)

    def after_run(self, strat: _TreeStrategy, sched: list, races) -> None:
        self.tailed_runs += strat.tailed
        self.env_runs += strat.env > 0
        if self.kind == "dpor":
            strat._catch_up()
            for i, j, before in races:
                si = sched[i]
                if si.choice is None or si.choice >= len(self.path):
                    continue
                node = self.path[si.choice]
                if node.fixed:
                    continue
                p = sched[j].task
                if p in node.ids:
                    node.todo.add(p)
                    continue
                e = None
                for k in range(i + 1, j):
                    q = sched[k].task
                    if q in node.ids and before.get(q, -1) >= k:
                        e = q
                        break
                if e is not None:
                    node.todo.add(e)
                else:
                    node.todo.update(node.ids)
        self._advance()

    def _advance(self) -> None:
        path = self.path
        while path:
            node = path[-1]
            if node.fixed:
                pass
            elif node.what == "task" and self.kind == "dpor":
                left = sorted(t for t in node.todo
                              if t not in node.done and t not in node.sleep)
                if left:
                    t = left[0]
                    node.chosen = node.ids.index(t)
                    self.prefix = [x.chosen for x in path]
                    return
            elif node.what in ("task", "timer"):
                left = sorted(a for a in node.todo if a not in node.done)
                if left:
                    node.chosen = left[0]
                    node.done.add(left[0])
                    self.prefix = [x.chosen for x in path]
                    return
            path.pop()
        self.prefix = None  # exhausted
