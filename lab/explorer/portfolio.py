"""The default strategy: a portfolio (``strategy=None`` or ``"portfolio"``).

No single strategy finds every bug: PCT finds orderings of small depth among many
steps that uniform random misses, a preemption-bounded DFS finds bugs that need
exactly one or two preemptions, uniform random finds lost wake-ups the others'
biases avoid, and only cancellation injection finds a cancellation at one checkpoint
among many. The portfolio runs them all, interleaved so that each gets its share of
the budget from the first runs on (as Coyote does):

==========  ====================================================================
member      run ``i`` of the member
==========  ====================================================================
random      uniform, seed ``derive_seed(seed, i)``
pct:2/3/5   PCT of depth 2, 3 and 5 (``n``, ``k`` measured by a calibration run),
            each with the fair tail
dfs:2       the next run of a depth-first search with at most 2 preemptions and
            the fair tail (one tree, advanced in order)
inject      the calibration run's schedule with a cancellation at one of its
            checkpoints, in a seeded order (then random schedules with a seeded
            checkpoint)
==========  ====================================================================

Runs are numbered round-robin over the members (run ``r`` is member ``r % 6``), made
in rounds, taken in index order, and the report stops at the lowest failing index:
so the result depends only on the program, the seed and ``runs``, never on
``workers`` (sampled members go to worker processes; the DFS member runs in the
calling process, its tree being shared state). ``ExploreResult.found_by`` names the
member of each failure.
"""

from __future__ import annotations

import random

from .dpor import analyse
from .injection import Inject
from .job import _execute, _outcome
from .strategies import FAIR_AFTER, RunSpec, derive_seed
from .tree import _Tree

MEMBERS = ("random", "pct:2", "pct:3", "pct:5", "dfs:2", "inject")
ROUND = 8  # runs per member per round


class Portfolio:
    def __init__(self, ex):
        self.ex = ex
        self.calib = ex.calibrate()
        self.tree = _Tree("dfs", 2, ex.seed, fair_after=FAIR_AFTER)
        pts = list(range(len(self.calib.checkpoints)))
        random.Random(derive_seed(ex.seed, -7)).shuffle(pts)
        self.points = pts
        self.inject_n = 0

    def spec(self, r: int, member: str) -> RunSpec | None:
        ex = self.ex
        s = derive_seed(ex.seed, r)
        if member == "random":
            return RunSpec(r, "random", s, member=member)
        if member.startswith("pct:"):
            p = ex.pct_params(int(member[4:]), self.calib)
            return RunSpec(r, "pct", s, p, member=member)
        if member == "inject":
            k = self.inject_n
            self.inject_n += 1
            if k < len(self.points):
                base = self.calib.spec
                return RunSpec(r, base.kind, base.seed, dict(base.params),
                               inject=Inject(self.points[k], ex.inject_tasks), member=member)
            at = random.Random(s).randrange(max(1, len(self.calib.checkpoints)))
            return RunSpec(r, "random", s, inject=Inject(at, ex.inject_tasks), member=member)
        return None  # dfs: made in this process

    def _dfs(self, r: int):
        strat = self.tree.next_strategy()
        if strat is None:
            return None
        spec = RunSpec(r, "dfs", self.ex.seed, member="dfs:2")
        res, inj = _execute(self.ex.job, spec, strategy=strat)
        if strat.mismatch is not None:
            return None  # the program is not deterministic: the member drops out
        an = analyse(res.schedule or [])
        o = _outcome(self.ex.job, spec, res, inj, an)
        o.redundant = o.redundant or strat.redundant
        self.tree.after_run(strat, res.schedule or [], [])
        return o

    def run(self) -> None:
        ex = self.ex
        budget = ex.runs
        r = 0
        while r < budget and not ex.stopped:
            n = min(ROUND * len(MEMBERS), budget - r)
            idx = list(range(r, r + n))
            sampled = []
            tree_runs = []
            for k in idx:
                member = MEMBERS[k % len(MEMBERS)]
                if member == "dfs:2":
                    tree_runs.append(k)
                else:
                    sampled.append(self.spec(k, member))
            outs = {o.index: o for o in ex.run_specs(sampled, budget, report=False)}
            for k in tree_runs:
                o = self._dfs(k)
                if o is None:  # the tree is exhausted: a random run instead
                    sp = RunSpec(k, "random", derive_seed(ex.seed, k), member="random")
                    o = ex.run_specs([sp], budget, report=False)[0]
                outs[k] = o
            # take in index order up to the lowest failure among the sampled (whose
            # run_specs stopped there) and the tree runs
            for k in idx:
                o = outs.get(k)
                if o is None:
                    break
                ex.take([o], lambda o: o.spec.member or o.spec.label())
                ex.injected += o.spec.inject is not None
                if ex.progress is not None:
                    ex.progress(ex.reported, budget, len(ex.failures))
                if o.failed and ex.stop_on_failure:
                    break
            r += n
