"""``lab.explore`` (this module is ``lab.explorer``): run a program under many schedules and report what fails.

::

    res = lab.explore(main, runs=500, strategy="pct:3", seed=1, workers=2)
    res.ok, res.failures[0].token, res.classes

Strategies (``strategy=``):

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

DFS and DPOR explore in one process (the tree is shared state); random, PCT,
cancellation injection and corpus replays spread over ``workers`` processes.

**Interleaving classes.** Every run is tracked: each step (from one pick to the next)
records the objects it read and wrote. Two runs are in the same class (Mazurkiewicz
trace) when they order every pair of dependent steps the same way; the class
fingerprint hashes the dependency edges between steps named ``(task, n-th step of
that task)``. ``ExploreResult.classes`` counts distinct fingerprints. Caveat: state
the runtime does not know about (plain Python objects not declared with
``lab.shared``) is invisible: DPOR treats steps touching only such state as
independent and would not reorder them — declare shared state.

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

import fnmatch
import hashlib
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from greenrt import CancelKind, Cancelled, CancelReason, TaskCancelledError

from .choice import IndexReplayStrategy, PCTStrategy, RandomStrategy, Strategy
from .errors import LabError
from .hub import DEFAULT_MAX_STEPS, LabHalt
from .runner import LabResult, _json_args, _run, entry_of
from .token import Token, decode, run_hash

EXPLORE_MAX_STEPS = 200_000


# -- run specifications ------------------------------------------------------------------


def derive_seed(seed: int, i: int) -> int:
    """The seed of run ``i`` of an exploration with ``seed`` (same on every platform)."""
    d = hashlib.sha256(f"greenrt-lab/{seed}/{i}".encode()).digest()
    return int.from_bytes(d[:6], "big")


def parse_strategy(spec: str) -> tuple[str, int | None]:
    """``"random"``, ``"pct:3"``, ``"dfs"``, ``"dfs:2"``, ``"dpor"`` -> (name, param)."""
    if not isinstance(spec, str):
        raise ValueError(f"strategy must be a string, not {type(spec).__name__}")
    name, _, p = spec.partition(":")
    if name not in ("random", "pct", "dfs", "dpor"):
        raise ValueError(f"unknown strategy {spec!r} (random, pct:d, dfs[:bound], dpor)")
    if p:
        if name in ("random", "dpor"):
            raise ValueError(f"strategy {name} takes no parameter")
        try:
            v = int(p)
        except ValueError:
            raise ValueError(f"bad parameter in {spec!r}") from None
        if v < (1 if name == "pct" else 0) or v > 64:
            raise ValueError(f"parameter out of range in {spec!r}")
        return name, v
    return name, (3 if name == "pct" else None)


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


@dataclass
class RunSpec:
    """What one run does: its index, strategy, and optional injection."""

    index: int
    kind: str  # random | pct | indices
    seed: int
    params: dict[str, Any] = field(default_factory=dict)
    inject: Inject | None = None
    origin: str = "explore"  # explore | corpus

    def strategy(self) -> Strategy:
        if self.kind == "random":
            return RandomStrategy(self.seed)
        if self.kind == "pct":
            p = self.params
            return PCTStrategy(self.seed, p["depth"], p["tasks"], p["steps"])
        if self.kind == "indices":
            return IndexReplayStrategy(self.params["choices"], strict=self.params.get("strict", True))
        raise LabError(f"unknown run kind {self.kind!r}")

    def label(self) -> str:
        if self.kind == "pct":
            return f"pct:{self.params['depth']}"
        return self.kind


@dataclass
class RunOutcome:
    """The picklable summary of one run."""

    index: int
    failed: bool
    signature: list[str]
    message: str
    choices: list[int]
    run_hash: str
    steps: int
    tasks: int
    cls: str | None
    checkpoints: list[tuple[int, int]] = field(default_factory=list)
    fail_step: int | None = None
    spec: RunSpec | None = None
    redundant: bool = False


# -- judging a run ----------------------------------------------------------------------


def _is_cancellation(e: BaseException | None) -> bool:
    if e is None:
        return True
    if isinstance(e, (TaskCancelledError, Cancelled)):
        return True
    if isinstance(e, BaseExceptionGroup):
        return all(_is_cancellation(x) for x in e.exceptions)
    return False


def failure_signature(res: LabResult, injected: bool = False,
                      goal: Callable[[Any], bool] | None = None) -> list[str]:
    """What failed, most specific first: violated oracles, then ``error:Type``,
    ``halted:reason``, ``divergence``, ``goal``. Empty when the run is fine."""
    sig: list[str] = []
    for v in res.violations:
        if v.oracle not in sig:
            sig.append(v.oracle)
    if res.error is not None and res.halted is None:
        if not (injected and _is_cancellation(res.error)):
            sig.append(f"error:{type(res.error).__name__}")
    if res.halted is not None and res.halted != "sleep_blocked":
        sig.append(f"halted:{res.halted}")
    if res.divergence is not None:
        sig.append("divergence")
    if goal is not None and not sig and res.error is None:
        try:
            ok = goal(res.value)
        except Exception:  # noqa: BLE001 - a broken goal predicate is a failed goal
            ok = False
        if not ok:
            sig.append("goal")
    return sig


def _fail_step(res: LabResult) -> int | None:
    steps = [v.step for v in res.violations if v.step is not None]
    return min(steps) if steps else None


# -- dependency analysis ------------------------------------------------------------------


def _merge_fp(fp: list) -> dict:
    d: dict = {}
    for k, w in fp:
        if w:
            d[k] = True
        elif k not in d:
            d[k] = False
    return d


def independent(a: dict, ka: int, b: dict, kb: int) -> bool:
    """Whether two footprints (``{key: write}``) commute. Integer keys at or beyond
    ``ka``/``kb`` name objects first seen in that step (numbered per run), so two
    such sets are compared conservatively: any fresh object on both sides is a
    dependency."""
    if len(a) > len(b):
        a, ka, b, kb = b, kb, a, ka
    fresh_a = fresh_b = False
    for k, w in a.items():
        if type(k) is int and k >= ka:
            fresh_a = True
            continue
        wb = b.get(k)
        if wb is not None and (w or wb):
            return False
    for k in b:
        if type(k) is int and k >= kb:
            fresh_b = True
            break
    return not (fresh_a and fresh_b)


def analyse(sched: list) -> tuple[str, list[tuple[int, int, dict]]]:
    """Class fingerprint and races of a tracked run.

    Returns ``(fingerprint, races)`` where each race ``(i, j, clock_j)`` says step
    ``i`` and step ``j`` (by different tasks) are dependent and not ordered by
    happens-before through anything else (program order, earlier dependencies,
    wake-ups and spawns); ``clock_j`` is step ``j``'s vector clock before it ran.
    """
    clocks: dict[int, dict] = {}
    pending: dict[int, dict] = {}
    acc: dict = {}
    step_clock: list[dict] = []
    local: dict[int, int] = {}
    names: list[tuple[int, int]] = []
    edges: set = set()
    races: list = []
    for j, s in enumerate(sched):
        p = s.task
        c = clocks.get(p)
        c = dict(c) if c else {}
        w = pending.pop(p, None)
        if w:
            for t, v in w.items():
                if c.get(t, -1) < v:
                    c[t] = v
        n = local.get(p, 0)
        local[p] = n + 1
        names.append((p, n))
        fp = _merge_fp(s.fp)
        before = dict(c)
        deps: list[int] = []
        for key, wr in fp.items():
            lw, reads = acc.get(key, (None, ()))
            cands = [] if lw is None else [lw]
            if wr:
                cands.extend(reads)
            for i in cands:
                q = sched[i].task
                if q == p:
                    continue
                deps.append(i)
                if before.get(q, -1) < i:
                    races.append((i, j, before))
        for i in deps:
            edges.add((names[i], names[j]))
            for t, v in step_clock[i].items():
                if c.get(t, -1) < v:
                    c[t] = v
        c[p] = j
        step_clock.append(c)
        clocks[p] = c
        for t in s.woke:
            pw = pending.get(t)
            if pw is None:
                pending[t] = dict(c)
            else:
                for x, v in c.items():
                    if pw.get(x, -1) < v:
                        pw[x] = v
        for key, wr in fp.items():
            if wr:
                acc[key] = (j, [])
            else:
                lw, reads = acc.get(key, (None, []))
                acc[key] = (lw, list(reads) + [j])
    h = hashlib.sha256(repr((sorted(edges), sorted(local.items()))).encode())
    return h.hexdigest()[:20], races


# -- tree exploration (DFS, DPOR) -----------------------------------------------------------


class _Node:
    __slots__ = ("what", "n", "ids", "chosen", "done", "todo", "sleep", "fps", "objs",
                 "preempts", "prev")

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
            fp = _merge_fp(s.fp)
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
            return i
        # a new decision
        if what == "task":
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
        elif what == "timer":
            j = 0
            node = _Node(what, n, None, 0, {}, 0, self.preempts, None)
            node.done.add(0)
            node.todo = set(range(n))
        else:
            j = self.rng.randrange(n)
            node = _Node(what, n, None, j, {}, 0, self.preempts, None)
        tree.path.append(node)
        return j

    def describe(self) -> dict[str, Any]:
        return {"name": self.tree.kind, "bound": self.tree.bound, "seed": self.tree.seed}


class _Tree:
    """The decision tree of a DFS/DPOR exploration (stateless: re-executes prefixes)."""

    def __init__(self, kind: str, bound: int | None, seed: int):
        self.kind = kind
        self.bound = bound
        self.seed = seed
        self.path: list[_Node] = []
        self.prefix: list[int] | None = []

    def next_strategy(self) -> _TreeStrategy | None:
        if self.prefix is None:
            return None
        return _TreeStrategy(self, self.prefix)

    def after_run(self, strat: _TreeStrategy, sched: list, races) -> None:
        if self.kind == "dpor":
            strat._catch_up()
            for i, j, before in races:
                si = sched[i]
                if si.choice is None or si.choice >= len(self.path):
                    continue
                node = self.path[si.choice]
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
            if node.what == "task" and self.kind == "dpor":
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


# -- the job (set before forking workers) ----------------------------------------------------


@dataclass
class _Job:
    fn: Callable
    args: tuple
    entry: tuple[str, str | None]
    options: dict[str, Any]
    faults: Any = None
    goal: Callable[[Any], bool] | None = None
    inject_tasks: str = "*"


_JOB: _Job | None = None


def _execute(job: _Job, spec: RunSpec, strategy: Strategy | None = None,
             record: str | None = None, count: bool = False,
             ) -> tuple[LabResult, _Injector | None]:
    strat = strategy if strategy is not None else spec.strategy()
    inj_holder: list = []
    fault_setup = job.faults.setup if job.faults is not None else None

    def setup(hub) -> None:
        if spec.inject is not None or count:
            at = spec.inject.at if spec.inject is not None else None
            pattern = spec.inject.tasks if spec.inject is not None else job.inject_tasks
            inj = _Injector(hub, at, pattern)
            inj_holder.append(inj)
            hub.add_instrument(inj)
        if fault_setup is not None:
            fault_setup(hub)

    o = job.options
    max_time = o.get("max_time")
    if job.faults is not None and job.faults.liveness:
        lim = job.faults.until + job.faults.grace
        max_time = lim if max_time is None else min(max_time, lim)
    res = _run(job.fn, job.args, seed=spec.seed, record=record, strict=o.get("strict", True),
               strategy=strat, disable=o.get("disable", ()), net=o.get("net"),
               max_steps=o.get("max_steps", EXPLORE_MAX_STEPS), max_time=max_time,
               leak_policy="error", instruments=(), trace=True, entry=job.entry,
               track=True, setup=setup)
    return res, (inj_holder[0] if inj_holder else None)


def _outcome(job: _Job, spec: RunSpec, res: LabResult, inj: _Injector | None,
             analysis: tuple | None = None) -> RunOutcome:
    sig = failure_signature(res, injected=spec.inject is not None, goal=job.goal)
    sched = res.schedule or []
    if analysis is None:
        analysis = analyse(sched)
    cls = analysis[0] if res.halted != "sleep_blocked" else None
    failed = bool(sig)
    return RunOutcome(
        index=spec.index, failed=failed, signature=sig,
        message=res.summary() if failed else "", choices=list(res.choice_indices),
        run_hash=run_hash(res.trace.records) if failed and res.trace is not None else "",
        steps=res.stats["steps"], tasks=res.stats["tasks"], cls=cls,
        checkpoints=list(inj.points) if inj is not None and spec.inject is None else [],
        fail_step=_fail_step(res), spec=spec, redundant=res.halted == "sleep_blocked")


def _work(spec: RunSpec, count: bool = False) -> RunOutcome:
    job = _JOB
    assert job is not None
    res, inj = _execute(job, spec, count=count)
    return _outcome(job, spec, res, inj)


# -- results ----------------------------------------------------------------------------------


@dataclass
class Failure:
    """A failing run: its index, what failed, the replay token and its summary."""

    index: int
    signature: list[str]
    token: str
    summary: str
    origin: str = "explore"
    trace_path: str | None = None

    def __str__(self) -> str:
        return (f"run {self.index} ({self.origin}) failed: {', '.join(self.signature)}\n"
                f"  replay: greenrt-lab replay {self.token}")


@dataclass
class ExploreResult:
    """What an exploration found. ``runs`` counts runs reported (up to and including
    the first failure when ``stop_on_failure``); ``classes`` distinct interleaving
    classes among them; ``complete`` is true when a DFS/DPOR tree was exhausted."""

    entry: str
    strategy: str
    seed: int
    runs: int
    failures: list[Failure]
    classes: int
    complete: bool
    redundant: int
    seconds: float
    corpus_replayed: int = 0
    max_steps_seen: int = 0
    class_ids: list[str] = field(default_factory=list, repr=False)
    injected: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def first_failure(self) -> Failure | None:
        return self.failures[0] if self.failures else None

    def summary(self) -> str:
        rate = self.runs / self.seconds if self.seconds > 0 else 0.0
        lines = [f"explored {self.entry} with {self.strategy} (seed {self.seed}): "
                 f"{self.runs} runs, {self.classes} interleaving classes"
                 + (", tree complete" if self.complete else "")
                 + (f", {self.redundant} sleep-set-blocked" if self.redundant else "")
                 + (f", {self.injected} injected cancellations" if self.injected else "")
                 + (f", {self.corpus_replayed} corpus tokens replayed" if self.corpus_replayed else "")
                 + f", {rate:.0f} runs/s: " + ("ok" if self.ok else f"{len(self.failures)} FAILED")]
        for f in self.failures:
            lines.append(str(f))
        return "\n".join(lines)

    def check(self) -> ExploreResult:
        if not self.ok:
            from .errors import LabFailure

            raise LabFailure(self.summary() + "\n" + self.failures[0].summary)
        return self


# -- explore ----------------------------------------------------------------------------------


def _token_for(job: _Job, out: RunOutcome, strategy_label: str, seed: int) -> Token:
    from . import __version__

    o = job.options
    opts = {"strict": o.get("strict", True), "disable": list(o.get("disable", ())),
            "max_steps": o.get("max_steps", EXPLORE_MAX_STEPS)}
    if o.get("max_time") is not None:
        opts["max_time"] = o["max_time"]
    if o.get("net") is not None:
        from .runner import _net_dict

        opts["net"] = _net_dict(o["net"])
    inj = None
    if out.spec is not None and out.spec.inject is not None:
        inj = out.spec.inject.to_dict()
    return Token(entry=job.entry[0], entry_file=job.entry[1], args=_json_args(job.args),
                 choices=out.choices, run_hash=out.run_hash, seed=seed,
                 strategy=strategy_label, options=opts, inject=inj,
                 faults=job.faults.to_dict() if job.faults is not None else None,
                 signature=out.signature, lab=__version__)


def _work_chunk(specs: list[RunSpec]) -> list[RunOutcome]:
    return [_work(sp) for sp in specs]


CHUNK = 8


def _run_specs(specs: list[RunSpec], workers: int, stop_on_failure: bool,
               progress, total: int, done0: int, fails0: int) -> list[RunOutcome]:
    """Run specs in index order (in parallel when ``workers > 1``); with
    ``stop_on_failure`` stop after the lowest failing index (all lower ones done)."""
    out: list[RunOutcome] = []
    fails = fails0
    if workers <= 1 or len(specs) <= 1:
        for sp in specs:
            o = _work(sp)
            out.append(o)
            if o.failed:
                fails += 1
            if progress is not None:
                progress(done0 + len(out), total, fails)
            if o.failed and stop_on_failure:
                break
        return out
    import concurrent.futures as cf
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    results: dict[int, RunOutcome] = {}
    first_fail: int | None = None
    # Chunks of CHUNK consecutive runs per task keep the IPC cost per run low.
    chunks = [list(range(s, min(s + CHUNK, len(specs)))) for s in range(0, len(specs), CHUNK)]
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
        window = workers * 3
        it = iter(range(len(chunks)))
        running: dict = {}

        def submit_more() -> None:
            while len(running) < window:
                c = next(it, None)
                if c is None or (first_fail is not None and chunks[c][0] > first_fail):
                    return
                running[ex.submit(_work_chunk, [specs[k] for k in chunks[c]])] = chunks[c][0]

        submit_more()
        while running:
            finished, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                running.pop(fut)
                for o in fut.result():
                    k = o.index - specs[0].index
                    results[k] = o
                    if o.failed:
                        fails += 1
                        if stop_on_failure and (first_fail is None or k < first_fail):
                            first_fail = k
                if progress is not None:
                    progress(done0 + len(results), total, fails)
            if first_fail is not None:
                for fut, k in list(running.items()):
                    if k > first_fail and fut.cancel():
                        del running[fut]
            submit_more()
    last = len(specs) - 1 if first_fail is None else first_fail
    return [results[k] for k in range(last + 1)]  # every index <= last was run


def _load_corpus(corpus: str, entry: str) -> list[tuple[str, Token]]:
    found = []
    if not os.path.isdir(corpus):
        return found
    for name in sorted(os.listdir(corpus)):
        if not name.endswith(".token"):
            continue
        with open(os.path.join(corpus, name), encoding="ascii", errors="replace") as f:
            text = f.read(1 << 20)
        try:
            tok = decode(text)
        except LabError:
            continue
        if tok.entry == entry:
            found.append((name, tok))
    return found


def save_token(corpus: str, token: str) -> str:
    """Save ``token`` in the corpus directory (file name from its hash); the path."""
    os.makedirs(corpus, exist_ok=True)
    name = hashlib.sha256(token.encode()).hexdigest()[:16] + ".token"
    path = os.path.join(corpus, name)
    if not os.path.exists(path):
        tmp = path + f".tmp{os.getpid()}"
        with open(tmp, "w", encoding="ascii") as f:
            f.write(token + "\n")
        os.replace(tmp, path)
    return path


def explore(fn, *args: Any, runs: int | None = 100, strategy: str = "random", seed: int = 0,
            inject: str | None = None, inject_tasks: str = "*", faults: Any = None,
            workers: int = 1, corpus: str | None = None, stop_on_failure: bool = True,
            progress: Callable[[int, int, int], None] | None = None, disable=(),
            net: Any = None, strict: bool = True, max_steps: int = EXPLORE_MAX_STEPS,
            max_time: float | None = None, goal: Callable[[Any], bool] | None = None,
            entry: tuple[str, str | None] | None = None,
            record_dir: str | None = None) -> ExploreResult:
    """Explore schedules of ``fn(*args)``; see the module docstring.

    ``runs`` caps the number of runs (``None``: until the DFS/DPOR tree is exhausted,
    or every injection point is covered). ``goal(value)`` must hold for the main
    task's return value (liveness). ``record_dir`` saves trace files of failing runs.
    """
    global _JOB
    from .oracles import validate_names

    name, param = parse_strategy(strategy)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError("seed must be an int")
    if workers < 1:
        raise ValueError("workers must be >= 1")
    if runs is not None and runs < 1:
        raise ValueError("runs must be >= 1 or None")
    if runs is None and name in ("random", "pct") and inject is None:
        raise ValueError(f"strategy {name} needs a number of runs")
    disable = validate_names(disable)
    ent = entry if entry is not None else entry_of(fn)
    job = _Job(fn=fn, args=tuple(args), entry=ent, goal=goal, faults=faults,
               inject_tasks=inject_tasks,
               options={"strict": strict, "disable": disable, "net": net,
                        "max_steps": max_steps if max_steps else DEFAULT_MAX_STEPS,
                        "max_time": max_time})
    _JOB = job
    t0 = time.perf_counter()
    failures: list[Failure] = []
    classes: dict[str, None] = {}
    reported = 0
    redundant = 0
    maxsteps = 0
    label = strategy
    try:
        # 1. the regression corpus
        replayed = 0
        if corpus is not None:
            for fname, tok in _load_corpus(corpus, ent[0]):
                replayed += 1
                sp = RunSpec(index=-replayed, kind="indices", seed=tok.seed,
                             params={"choices": tok.choices, "strict": False},
                             inject=Inject(**tok.inject) if tok.inject else None,
                             origin="corpus")
                o = _work(sp)
                if o.failed:
                    failures.append(Failure(sp.index, o.signature, tok.encode(), o.message,
                                            origin=f"corpus {fname}"))
            if failures and stop_on_failure:
                return ExploreResult(ent[0], label, seed, 0, failures, 0, False, 0,
                                     time.perf_counter() - t0, replayed)

        def note(o: RunOutcome) -> None:
            nonlocal redundant, maxsteps
            maxsteps = max(maxsteps, o.steps)
            if o.redundant:
                redundant += 1
            elif o.cls is not None:
                classes.setdefault(o.cls, None)

        def fail(o: RunOutcome, lab_label: str) -> None:
            tok = _token_for(job, o, lab_label, o.spec.seed if o.spec else seed).encode()
            path = None
            if record_dir is not None:
                res, _ = _execute(job, RunSpec(o.index, "indices", o.spec.seed if o.spec else 0,
                                               {"choices": o.choices},
                                               inject=o.spec.inject if o.spec else None),
                                  record=os.path.join(record_dir, f"run{o.index}.jsonl"))
                path = res.trace_path
            failures.append(Failure(o.index, o.signature, tok, o.message, trace_path=path))
            if corpus is not None:
                save_token(corpus, tok)

        injected = 0
        complete = False
        if name in ("dfs", "dpor"):
            if inject is not None:
                raise ValueError("inject= combines with random or pct, not with dfs/dpor")
            tree = _Tree(name, param if name == "dfs" else None, seed)
            i = 0
            while runs is None or i < runs:
                strat = tree.next_strategy()
                if strat is None:
                    complete = True
                    break
                spec = RunSpec(i, name, seed)
                res, inj = _execute(job, spec, strategy=strat)
                if strat.mismatch is not None:
                    raise LabError(strat.mismatch)
                an = analyse(res.schedule or [])
                o = _outcome(job, spec, res, inj, an)
                o.redundant = o.redundant or strat.redundant
                tree.after_run(strat, res.schedule or [], an[1] if name == "dpor" else [])
                note(o)
                i += 1
                if o.failed and not o.redundant:
                    fail(o, label)
                    if stop_on_failure:
                        break
                if progress is not None:
                    progress(i, runs or 0, len(failures))
            else:
                complete = tree.prefix is None
            reported = i
        else:
            def base_spec(b: int, params: dict) -> RunSpec:
                if name == "random":
                    return RunSpec(b, "random", derive_seed(seed, b))
                return RunSpec(b, "pct", derive_seed(seed, b), dict(params))

            params: dict = {}
            if name == "pct":
                calib = _work(RunSpec(0, "random", derive_seed(seed, 0)))
                params = {"depth": param, "tasks": max(1, calib.tasks),
                          "steps": max(1, calib.steps)}
                label = f"pct:{param}"
            if inject is None:
                specs = [base_spec(i, params) for i in range(runs)]
                outs = _run_specs(specs, workers, stop_on_failure, progress, runs, 0, 0)
                for o in outs:
                    note(o)
                    if o.failed:
                        fail(o, label)
                reported = len(outs)
            else:
                mode, _, arg = inject.partition(":")
                if mode not in ("all", "sample", "last") or (mode != "all" and not arg.isdigit()):
                    raise ValueError(f"inject must be 'all', 'sample:N' or 'last:N', not {inject!r}")
                budget = runs
                b = 0
                while True:
                    base = base_spec(b, params)
                    bo = _work(base, count=True)
                    note(bo)
                    reported += 1
                    if bo.failed:
                        fail(bo, label)
                        if stop_on_failure:
                            break
                    pts = list(range(len(bo.checkpoints)))
                    if mode == "sample":
                        k = min(int(arg), len(pts))
                        pts = sorted(random.Random(derive_seed(seed, -1 - b)).sample(pts, k))
                    elif mode == "last":
                        fs = bo.fail_step
                        if fs is not None:
                            pts = [p for p in pts if bo.checkpoints[p][0] <= fs]
                        pts = pts[-int(arg):] if int(arg) > 0 else []
                    if budget is not None:
                        pts = pts[:max(0, budget - reported)]
                    specs = [RunSpec(reported + n, base.kind, base.seed, dict(base.params),
                                     inject=Inject(p, inject_tasks)) for n, p in enumerate(pts)]
                    total = reported + len(specs)
                    outs = _run_specs(specs, workers, stop_on_failure, progress, total,
                                      reported, len(failures))
                    for o in outs:
                        note(o)
                        if o.failed:
                            fail(o, label + f"+inject:{o.spec.inject.at}")
                    reported += len(outs)
                    injected += len(outs)
                    b += 1
                    if (failures and stop_on_failure) or budget is None or reported >= budget:
                        break
            complete = False
        return ExploreResult(ent[0], label, seed, reported, failures, len(classes), complete,
                             redundant, time.perf_counter() - t0,
                             corpus_replayed=replayed, max_steps_seen=maxsteps,
                             class_ids=list(classes), injected=injected)
    finally:
        _JOB = None


# -- replaying a token --------------------------------------------------------------------------


def job_from_token(tok: Token, fn=None, faults=None) -> _Job:
    from .replay import load_entry

    if fn is None:
        fn = load_entry(tok.entry, tok.entry_file)
    o = dict(tok.options)
    net = o.get("net")
    if net is not None:
        from .net import NetConfig

        o["net"] = NetConfig.from_dict(net)
    o["disable"] = tuple(o.get("disable", ()))
    if faults is None and tok.faults:
        from .faults import FaultPlan

        faults = FaultPlan.from_dict(tok.faults)
    return _Job(fn=fn, args=tuple(tok.args or ()), entry=(tok.entry, tok.entry_file),
                options=o, faults=faults)


@dataclass
class TokenReplay:
    """The result of replaying a token: ``reproduced`` when the run hash matches."""

    result: LabResult
    signature: list[str]
    reproduced: bool
    run_hash: str


def replay_token(token: str | Token, fn=None, *, record: str | None = None,
                 strict_choices: bool = True) -> TokenReplay:
    """Re-run the run a token describes. ``reproduced`` is true when the run hash
    equals the token's (the same events, step for step)."""
    tok = decode(token) if isinstance(token, str) else token
    job = job_from_token(tok, fn)
    spec = RunSpec(0, "indices", tok.seed, {"choices": tok.choices, "strict": strict_choices},
                   inject=Inject(**tok.inject) if tok.inject else None)
    res, _ = _execute(job, spec, record=record)
    sig = failure_signature(res, injected=tok.inject is not None)
    h = run_hash(res.trace.records) if res.trace is not None else ""
    return TokenReplay(res, sig, bool(tok.run_hash) and h.startswith(tok.run_hash), h)


__all__ = ["ExploreResult", "Failure", "Inject", "LabHalt", "TokenReplay", "analyse",
           "derive_seed", "explore", "failure_signature", "independent", "parse_strategy",
           "replay_token", "save_token"]
