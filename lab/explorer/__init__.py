"""``lab.explore`` (this module is ``lab.explorer``): run a program under many schedules and report what fails.

::

    res = lab.explore(main, runs=500)                      # the portfolio
    res = lab.explore(main, runs=500, strategy="pct:3", seed=1, workers=2)
    res.ok, res.failures[0].token, res.classes, res.found_by, res.notes

Strategies (``strategy=``):

``None``       (default; also ``"portfolio"``) random, pct:2/3/5, a fair dfs:2 and
               sampled cancellation injection, round-robin (``portfolio``).
``random``     every run answers every decision uniformly from its own seed
               (``derive_seed(seed, i)``).
``pct:d``      probabilistic concurrency testing of depth ``d`` (``lab.choice.
               PCTStrategy``). A first, uniform run measures ``n`` (tasks) and ``k``
               (steps); then for a bug of depth ``d`` each run finds it with
               probability ``>= 1/(n*k^(d-1))``.
``dfs[:b]``    systematic depth-first search of the decision tree (task picks and
               timer ties), with at most ``b`` preemptions per run (a preemption:
               picking another task while the one that ran last is still runnable);
               ``dfs`` alone is exhaustive. New decisions continue the last task.
``dpor``       dynamic partial-order reduction with sleep sets (Flanagan & Godefroid,
               POPL 2005): after each run, every pair of *racing* steps (dependent,
               by different tasks, not ordered by happens-before) adds a backtrack
               point so the reverse order is tried; sleep sets stop re-running
               orders already covered. Dependencies come from what the runtime
               reports (``Hub.note_access``: locks, semaphores, events, conditions,
               barriers, channels, oneshots, broadcasts, watches; streams of the
               simulated network; cancellation requests vs the target's checkpoints;
               spawns; objects declared with ``lab.shared``/``lab.access``).
               The default ``dpor`` does not trust silence: a program that reports
               nothing is explored with every step dependent, and a declaring
               program's runs are each checked by a happens-before witness
               (``soundness``) that falls back to ``dfs`` on undeclared sharing.
``dpor:declared``  the same without those checks: sound only when every shared
               object is a greenrt object or declared.

PCT, DFS and DPOR switch to a fair tail after ``FAIR_AFTER`` steps, so a livelock
verdict (``halted:step_limit``) comes from a schedule fair to every task. A tree is
``complete`` only when it was exhausted with no environment decision (network,
faults, ``lab.rng``) and no run reaching the fair tail; ``notes`` says why not.

DFS and DPOR explore in one process (the tree is shared state); random, PCT,
cancellation injection and corpus replays spread over ``workers`` processes.

**Interleaving classes.** Every run is tracked: each step (from one pick to the next)
records the objects it read and wrote. Two runs are in the same class (Mazurkiewicz
trace) when they order every pair of dependent steps the same way; the class
fingerprint hashes the dependency edges between steps named ``(task, n-th step of
that task)``. ``ExploreResult.classes`` counts distinct fingerprints (of the
dependencies the runtime reports).

**Cancellation injection** (``inject=``): ``"all"`` cancels the task at each of its
checkpoints in turn, one run per checkpoint; ``"sample:N"`` a seeded sample of N
checkpoints; ``"last:N"`` the last N checkpoints before the base run's failure (or
its end). A base run (the strategy's run 0) counts the checkpoints; every injected
run repeats its schedule up to the injection point. The cancellation (kind
``user``, message ``lab: injected at checkpoint K``) is requested when the k-th
checkpoint event is emitted: a call that parks there receives it at once, other
checkpoints at the task's next one. An injected run fails on an oracle violation or
on an error that is not the injected cancellation surfacing (``TaskCancelledError``
of the main task, ``Cancelled``).

**Faults** (``faults=lab.faults.FaultPlan(...)``): partitions, resets, latency
spikes, datagram drops and I/O errors on the simulated network, drawn from each
run's choice stream; ``liveness=True`` stops them at ``until`` (healing everything)
and fails the run unless the program reaches its goal within ``grace``.

**Determinism.** Run ``i`` depends only on ``(program, seed, strategy, i)``. Runs are
numbered before they are dispatched, results are taken in index order, and the
report stops at the lowest failing index (``stop_on_failure``): so the result is the
same for every ``workers``. Progress goes to the ``progress(done, total, failures)``
callback (the CLI draws a bar); library code never prints.

**Failures** carry a replay token (``lab.token``); ``corpus=DIR`` saves them there
and replays the corpus's tokens for the same program first on the next exploration.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from typing import Any

from ..errors import LabError
from ..hub import DEFAULT_MAX_STEPS, LabHalt
from ..runner import entry_of
from . import job as _jobmod
from .corpus import _load_corpus, save_token
from .dpor import analyse, independent
from .injection import Inject
from .job import (
    EXPLORE_MAX_STEPS,
    TokenReplay,
    _execute,
    _Job,
    _outcome,
    _token_for,
    _work,
    job_from_token,
    replay_token,
)
from .judging import RunOutcome, failure_signature
from .results import ExploreResult, Failure
from .soundness import HBWitness, compare, environment_answers, observation, task_names
from .strategies import FAIR_AFTER, RunSpec, derive_seed, parse_strategy
from .tree import _Tree
from .workers import _run_specs


def _opaque(sched: list) -> bool:
    """Whether no step of a run reported an access the lab can see (a runtime object,
    a declared name): only spawns and cancellation state."""
    for st in sched:
        for k, _ in st.fp:
            if type(k) is not tuple or k[0] not in ("cancel", "spawn"):
                return False
    return True


class _Exploration:
    """The state of one ``explore`` call: the job, the runs reported so far, the
    failures, the classes seen; one method per way of exploring."""

    def __init__(self, job: _Job, *, seed: int, runs: int | None, workers: int,
                 stop_on_failure: bool, progress, corpus: str | None,
                 record_dir: str | None, inject_tasks: str):
        self.job = job
        self.seed = seed
        self.runs = runs
        self.workers = workers
        self.stop_on_failure = stop_on_failure
        self.progress = progress
        self.corpus = corpus
        self.record_dir = record_dir
        self.inject_tasks = inject_tasks
        self.failures: list[Failure] = []
        self.classes: dict[str, None] = {}
        self.reported = 0
        self.redundant = 0
        self.maxsteps = 0
        self.steps = 0
        self.injected = 0
        self.complete = False
        self.notes: list[str] = []
        self.found_by: list[str] = []
        self.blob = None
        self.pool = None
        self.workers_used = 1
        if workers > 1:
            from .workers import _portable

            self.blob = _portable(job)
            if self.blob is not None:
                self.workers_used = workers
            else:
                self.notes.append("the program is not importable by name or file: "
                                  "ran in this process (same results as with workers)")

    @property
    def stopped(self) -> bool:
        return bool(self.failures) and self.stop_on_failure

    # -- bookkeeping --------------------------------------------------------------------

    def note(self, o: RunOutcome) -> None:
        self.maxsteps = max(self.maxsteps, o.steps)
        self.steps += o.steps
        if o.redundant:
            self.redundant += 1
        elif o.cls is not None:
            self.classes.setdefault(o.cls, None)

    def fail(self, o: RunOutcome, label: str) -> None:
        seed = o.spec.seed if o.spec else self.seed
        tok = _token_for(self.job, o, label, seed).encode()
        path = None
        if self.record_dir is not None:
            res, _ = _execute(self.job, RunSpec(o.index, "indices", seed, {"choices": o.choices},
                                                inject=o.spec.inject if o.spec else None),
                              record=os.path.join(self.record_dir, f"run{o.index}.jsonl"))
            path = res.trace_path
        self.failures.append(Failure(o.index, o.signature, tok, o.message, trace_path=path))
        self.found_by.append(label)
        if self.corpus is not None:
            save_token(self.corpus, tok)

    def take(self, outs: list[RunOutcome], label=None) -> None:
        """Account for runs made in index order (``label(o)`` names their strategy)."""
        for o in outs:
            self.note(o)
            if o.failed:
                self.fail(o, label(o) if label is not None else o.spec.label())
        self.reported += len(outs)

    def run_specs(self, specs: list[RunSpec], total: int, report: bool = True) -> list[RunOutcome]:
        if self.blob is not None and self.pool is None and len(specs) > 1:
            from .workers import open_pool

            self.pool = open_pool(self.blob, self.workers_used)
        return _run_specs(specs, self.workers_used, self.stop_on_failure,
                          self.progress if report else None, total,
                          self.reported, len(self.failures), blob=self.blob, pool=self.pool)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    # -- 1. the regression corpus ----------------------------------------------------------

    def replay_corpus(self) -> int:
        replayed = 0
        for fname, tok in _load_corpus(self.corpus, self.job.entry[0]):
            replayed += 1
            sp = RunSpec(index=-replayed, kind="indices", seed=tok.seed,
                         params={"choices": tok.choices, "strict": False},
                         inject=Inject(**tok.inject) if tok.inject else None, origin="corpus")
            o = _work(sp)
            if o.failed:
                self.failures.append(Failure(sp.index, o.signature, tok.encode(), o.message,
                                             origin=f"corpus {fname}"))
                self.found_by.append("corpus")
        return replayed

    # -- 2a. a tree: DFS, DPOR ---------------------------------------------------------------

    def tree(self, name: str, param, label: str) -> str:
        """Explore the DFS/DPOR tree; returns the label the result carries (``dpor``
        turns into ``dpor->dfs`` when its witness finds undeclared sharing)."""
        checked = name == "dpor" and param != "declared"
        tree = _Tree(name, param if name == "dfs" else None, self.seed, fair_after=FAIR_AFTER)
        tree.world = checked
        i = self.reported
        exhausted = False
        while self.runs is None or i < self.runs:
            strat = tree.next_strategy()
            if strat is None:
                exhausted = True
                break
            spec = RunSpec(i, name, self.seed)
            res, inj = _execute(self.job, spec, strategy=strat)
            if strat.mismatch is not None:
                raise LabError(strat.mismatch)
            sched = res.schedule or []
            clocks: list = []
            if tree.world and i == self.reported and not _opaque(sched):
                tree.world = False  # the program reports what it shares: trust + witness
                self.notes.append("dpor: tasks report their shared state; steps that report "
                                  "nothing are taken as independent and checked by witnesses")
            elif tree.world and i == self.reported:
                self.notes.append("dpor: no task reports an access the lab can see, so every "
                                  "step is taken as dependent on every other (declare shared "
                                  "state with lab.shared/lab.access, or use dpor:declared)")
            an = analyse(sched, clocks)
            races = an[1]
            if tree.world:
                races = analyse(sched, world=True)[1]
            o = _outcome(self.job, spec, res, inj, an)
            o.redundant = o.redundant or strat.redundant
            tree.after_run(strat, sched, races if name == "dpor" else [])
            self.note(o)
            i += 1
            if o.failed and not o.redundant:
                self.fail(o, label)
                if self.stop_on_failure:
                    break
            # an opaque program's tree already orders every pair of steps: no witness
            if checked and not tree.world and not o.redundant \
                    and (self.runs is None or i < self.runs):
                w_o, why = self._witness(i, res, sched, clocks)
                i += 1
                if w_o is not None and w_o.failed:
                    self.fail(w_o, label + "(witness)")
                    if self.stop_on_failure:
                        break
                if why is not None:
                    self.notes.append(
                        f"dpor: {why}; the program shares state the lab cannot see "
                        f"(declare it with lab.shared/lab.access); explored with dfs instead")
                    self.reported = i
                    return self.tree("dfs", None, "dpor->dfs")
            if self.progress is not None:
                self.progress(i, self.runs or 0, len(self.failures))
        self.reported = i
        if exhausted or (not self.stopped and tree.prefix is None):
            if tree.env_runs:
                self.notes.append(
                    f"{name}: tree exhausted for one realization of the environment "
                    f"({tree.env_runs} runs made network/fault/rng decisions, answered from "
                    f"the seed): not complete")
            elif tree.tailed_runs:
                self.notes.append(
                    f"{name}: tree exhausted up to the fair tail ({tree.tailed_runs} runs "
                    f"longer than {FAIR_AFTER} steps): not complete")
            else:
                self.complete = True
        return label

    def _witness(self, i: int, res, sched: list, clocks: list):
        """Run the happens-before witness of ``res`` (see ``soundness``); returns its
        outcome and why it disagrees with ``res`` (None when it agrees)."""
        w = HBWitness(sched, clocks, environment_answers(res))
        spec = RunSpec(i, "dpor-witness", self.seed)
        wres, winj = _execute(self.job, spec, strategy=w)
        wo = _outcome(self.job, spec, wres, winj)
        self.note(wo)
        names = task_names(res)
        if w.diverged is not None:
            return wo, f"an equivalent reordering diverged ({w.diverged})"
        who = compare(observation(res), observation(wres), names)
        if who is not None:
            return wo, f"an equivalent reordering changed what {who} did"
        return wo, None

    # -- 2b. sampled runs: random, PCT -------------------------------------------------------

    def calibrate(self) -> RunOutcome:
        """A uniform run (not counted) that measures tasks, steps and checkpoints."""
        return _work(RunSpec(0, "random", derive_seed(self.seed, 0)), count=True)

    def pct_params(self, depth: int, calib: RunOutcome) -> dict:
        return {"depth": depth, "tasks": max(1, calib.tasks), "steps": max(1, calib.steps)}

    def sampled(self, name: str, param) -> str:
        params = self.pct_params(param, self.calibrate()) if name == "pct" else {}
        label = f"pct:{param}" if name == "pct" else name
        specs = [self._base_spec(name, i, params) for i in range(self.runs)]
        self.take(self.run_specs(specs, self.runs), lambda o: label)
        return label

    def _base_spec(self, name: str, b: int, params: dict) -> RunSpec:
        if name == "random":
            return RunSpec(b, "random", derive_seed(self.seed, b))
        return RunSpec(b, "pct", derive_seed(self.seed, b), dict(params))

    # -- 2c. cancellation injection ----------------------------------------------------------

    def injection(self, name: str, param, inject: str) -> str:
        mode, _, arg = inject.partition(":")
        if mode not in ("all", "sample", "last") or (mode != "all" and not arg.isdigit()):
            raise ValueError(f"inject must be 'all', 'sample:N' or 'last:N', not {inject!r}")
        params = self.pct_params(param, self.calibrate()) if name == "pct" else {}
        label = f"pct:{param}" if name == "pct" else name
        budget = self.runs
        b = 0
        while True:
            base = self._base_spec(name, b, params)
            bo = _work(base, count=True)
            self.take([bo], lambda o: label)
            if self.stopped:
                break
            pts = list(range(len(bo.checkpoints)))
            if mode == "sample":
                k = min(int(arg), len(pts))
                pts = sorted(random.Random(derive_seed(self.seed, -1 - b)).sample(pts, k))
            elif mode == "last":
                fs = bo.fail_step
                if fs is not None:
                    pts = [p for p in pts if bo.checkpoints[p][0] <= fs]
                pts = pts[-int(arg):] if int(arg) > 0 else []
            if budget is not None:
                pts = pts[:max(0, budget - self.reported)]
            specs = [RunSpec(self.reported + n, base.kind, base.seed, dict(base.params),
                             inject=Inject(p, self.inject_tasks)) for n, p in enumerate(pts)]
            outs = self.run_specs(specs, self.reported + len(specs))
            self.take(outs, lambda o: label + f"+inject:{o.spec.inject.at}")
            self.injected += len(outs)
            b += 1
            if self.stopped or budget is None or self.reported >= budget:
                break
        return label

    # -- 2d. the portfolio -------------------------------------------------------------------

    def portfolio(self) -> str:
        from .portfolio import Portfolio

        pf = Portfolio(self)
        pf.run()
        return "portfolio"

    def result(self, label: str, t0: float, replayed: int) -> ExploreResult:
        return ExploreResult(self.job.entry[0], label, self.seed, self.reported, self.failures,
                             len(self.classes), self.complete, self.redundant,
                             time.perf_counter() - t0, corpus_replayed=replayed,
                             max_steps_seen=self.maxsteps, class_ids=list(self.classes),
                             injected=self.injected, notes=self.notes,
                             found_by=self.found_by, workers=self.workers_used,
                             steps=self.steps)


def explore(fn, *args: Any, runs: int | None = 100, strategy: str | None = None, seed: int = 0,
            inject: str | None = None, inject_tasks: str = "*", faults: Any = None,
            workers: int = 1, corpus: str | None = None, stop_on_failure: bool = True,
            progress: Callable[[int, int, int], None] | None = None, disable=(),
            net: Any = None, strict: bool = True, max_steps: int = EXPLORE_MAX_STEPS,
            max_time: float | None = None, goal: Callable[[Any], bool] | None = None,
            entry: tuple[str, str | None] | None = None,
            record_dir: str | None = None) -> ExploreResult:
    """Explore schedules of ``fn(*args)``; see the module docstring.

    ``strategy=None`` (the default) runs the portfolio. ``runs`` caps the number of
    runs (``None``: until the DFS/DPOR tree is exhausted, or every injection point is
    covered). ``goal(value)`` must hold for the main task's return value (liveness).
    ``record_dir`` saves trace files of failing runs. Not a checkpoint: it runs the
    program in fresh lab hubs (and worker processes), never in the caller's hub.
    """
    from ..oracles import validate_names

    if strategy is None and inject is not None:
        strategy = "random"  # inject= drives its own runs over random schedules
    name, param = parse_strategy(strategy)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError("seed must be an int")
    if workers < 1:
        raise ValueError("workers must be >= 1")
    if runs is not None and runs < 1:
        raise ValueError("runs must be >= 1 or None")
    if runs is None and name in ("random", "pct", "portfolio") and inject is None:
        raise ValueError(f"strategy {name} needs a number of runs")
    if inject is not None and name not in ("random", "pct"):
        raise ValueError("inject= combines with random or pct (the portfolio samples "
                         "injections itself), not with dfs/dpor")
    disable = validate_names(disable)
    ent = entry if entry is not None else entry_of(fn)
    job = _Job(fn=fn, args=tuple(args), entry=ent, goal=goal, faults=faults,
               inject_tasks=inject_tasks,
               options={"strict": strict, "disable": disable, "net": net,
                        "max_steps": max_steps if max_steps else DEFAULT_MAX_STEPS,
                        "max_time": max_time})
    _jobmod._JOB = job
    t0 = time.perf_counter()
    ex = _Exploration(job, seed=seed, runs=runs, workers=workers,
                      stop_on_failure=stop_on_failure, progress=progress, corpus=corpus,
                      record_dir=record_dir, inject_tasks=inject_tasks)
    label = strategy or "portfolio"
    try:
        replayed = ex.replay_corpus() if corpus is not None else 0
        if not ex.stopped:
            if name in ("dfs", "dpor"):
                label = ex.tree(name, param, label)
            elif name == "portfolio":
                label = ex.portfolio()
            elif inject is None:
                label = ex.sampled(name, param)
            else:
                label = ex.injection(name, param, inject)
        return ex.result(label, t0, replayed)
    finally:
        ex.close()
        _jobmod._JOB = None


__all__ = ["EXPLORE_MAX_STEPS", "ExploreResult", "Failure", "Inject", "LabHalt", "RunOutcome",
           "RunSpec", "TokenReplay", "analyse", "derive_seed", "explore", "failure_signature",
           "independent", "job_from_token", "parse_strategy", "replay_token", "save_token"]
