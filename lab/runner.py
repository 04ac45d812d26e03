"""``lab.run``: run a program under the lab hub and judge it.

``run(fn, *args, seed=0, record=None, strict=True, ...)`` builds a ``LabHub`` with a
seeded strategy, runs ``fn(*args)`` through ``greenrt.run(fn, hub=...,
handle_signals=False)`` inside the strict-mode guard, collects the facts the oracles
need, tears down whatever is still alive, checks the oracles and returns a
``LabResult``. It never raises for what the program did (errors, violations, a halt
are all in the result) — only for misuse (unknown oracle names, bad seeds) and for
``KeyboardInterrupt``/``SystemExit``, which are re-raised after the teardown.

The trace header records everything replay needs to rebuild the same hub: seed,
strategy, strictness, options (limits, network configuration, disabled oracles),
the program entry (``module:qualname`` and its file) and its arguments when they are
plain JSON.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import inspect
import json
import platform
from dataclasses import dataclass, field
from typing import Any

import greenrt
from greenrt.lowlevel import repr_outcome

from . import oracles as _oracles
from .choice import Strategy, make_strategy
from .errors import LabFailure, ReplayDivergence
from .hub import DEFAULT_MAX_STEPS, LabHalt, LabHub, describe_wait, site_name
from .strict import strict_guard
from .trace import FORMAT, Trace, env_key, event_record


@dataclass
class LabResult:
    """The result of one lab run.

    ``outcome`` is the main task's ``greenrt.Outcome`` (``None`` if a halted run never
    finished it), ``value`` its value, ``error`` what ``greenrt.run`` raised (the main
    task's exception or ``TaskCancelledError``) or the reason the run was halted.
    ``violations`` are the oracle verdicts; ``stats`` counts steps, switches, choices,
    events, timers and the final virtual time; ``trace`` is the in-memory trace
    (``None`` with ``trace=False``) and ``trace_path`` where it was written.
    """

    seed: int
    strategy: dict[str, Any]
    outcome: Any
    value: Any
    error: BaseException | None
    halted: str | None
    violations: list[_oracles.Violation]
    disabled: tuple[str, ...]
    stats: dict[str, Any]
    trace: Trace | None
    trace_path: str | None = None
    divergence: ReplayDivergence | None = None
    entry: str | None = None
    events: list = field(default_factory=list, repr=False)
    #: tracked runs (``lab.explore``): the hub's ``Step`` list (see ``lab.hub``)
    schedule: list | None = field(default=None, repr=False)
    #: the index of each choice's answer, in order (what a replay token stores)
    choice_indices: list = field(default_factory=list, repr=False)
    #: ``lazy_trace`` runs: builds ``trace`` on first ``full_trace()``
    trace_maker: Any = field(default=None, repr=False, compare=False)

    def full_trace(self) -> Trace | None:
        """The in-memory trace, built now if the run deferred it (``lab.explore``
        builds the records of a run only when it needs them: a failure's run hash, a
        DPOR witness's observation)."""
        if self.trace is None and self.trace_maker is not None:
            self.trace = self.trace_maker()
            self.trace_maker = None
        return self.trace

    @property
    def ok(self) -> bool:
        """No error, no violation, no divergence, not halted."""
        return (self.error is None and not self.violations and self.divergence is None
                and self.halted is None)

    @property
    def final_hash(self) -> str | None:
        return self.trace.final_hash if self.trace is not None else None

    @property
    def verdicts(self) -> dict[str, str]:
        """``{oracle: "ok" | "violated" | "off"}``."""
        bad = {v.oracle for v in self.violations}
        return {n: "off" if n in self.disabled else "violated" if n in bad else "ok"
                for n in _oracles.ORACLES}

    def violations_of(self, oracle: str) -> list[_oracles.Violation]:
        return [v for v in self.violations if v.oracle == oracle]

    def summary(self) -> str:
        lines = [f"lab run of {self.entry or '?'} with seed {self.seed} "
                 f"({self.strategy.get('name')}): "
                 + ("ok" if self.ok else "FAILED")]
        if self.outcome is not None:
            lines.append(f"  outcome: {repr_outcome(self.outcome)}")
        if self.halted:
            lines.append(f"  halted ({self.halted}): {self.error}")
        elif self.error is not None:
            lines.append(f"  error: {type(self.error).__name__}: {self.error}")
        if self.divergence is not None:
            lines.append(f"  replay {self.divergence}")
        for v in self.violations:
            lines.append(f"  violation {v}")
        s = self.stats
        lines.append(f"  steps={s.get('steps')} switches={s.get('switches')} "
                     f"choices={s.get('choices')} events={s.get('events')} "
                     f"virtual_time={s.get('virtual_time')!r}")
        if self.final_hash:
            lines.append(f"  final hash: {self.final_hash}")
        if self.trace_path:
            lines.append(f"  trace: {self.trace_path}")
            lines.append(f"  replay: greenrt-lab replay {self.trace_path}")
        return "\n".join(lines)

    def check(self) -> LabResult:
        """Raise ``LabFailure`` (an ``AssertionError``) with ``summary()`` unless ok."""
        if not self.ok:
            raise LabFailure(self.summary()) from self.error
        return self


# -- entries ------------------------------------------------------------------------


def entry_of(fn) -> tuple[str, str | None]:
    """``("module:qualname", file)`` naming ``fn`` (unwrapping partials)."""
    target = fn
    while isinstance(target, functools.partial):
        target = target.func
    target = inspect.unwrap(target)
    mod = getattr(target, "__module__", None) or "?"
    qn = getattr(target, "__qualname__", None) or type(target).__name__
    try:
        f = inspect.getsourcefile(target)
    except TypeError:
        f = None
    return f"{mod}:{qn}", site_name(f) if f else None


def _json_args(args: tuple) -> list | None:
    try:
        s = json.dumps(list(args), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return None
    back = json.loads(s)
    return back if back == list(args) else None


def _net_dict(net: Any) -> Any:
    if net is None:
        return None
    if hasattr(net, "to_dict"):
        return net.to_dict()
    return dict(net)


# -- run ----------------------------------------------------------------------------


#: The garbage collector's young-generation threshold while a lab run executes.
RUN_GC_THRESHOLD = 20_000


@contextlib.contextmanager
def run_gc_threshold():
    """Raise the collector's young-generation threshold to ``RUN_GC_THRESHOLD`` for
    the block (restored after it; nested uses and a disabled collector are left as
    they are). A run allocates a few container objects per step (events, steps,
    footprints) that live until it ends: at the default threshold (700) the collector
    rescans them every ~100 steps. Cyclic garbage is still collected, less often."""
    threshold = gc.get_threshold()
    if not threshold[0] or threshold[0] >= RUN_GC_THRESHOLD:
        yield
        return
    gc.set_threshold(RUN_GC_THRESHOLD, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)


def run(fn, *args: Any, seed: int = 0, record: str | None = None, strict: bool = True,
        strategy: Strategy | str | None = None, disable=(), net: Any = None,
        max_steps: int = DEFAULT_MAX_STEPS, max_time: float | None = None,
        leak_policy: str = "error", instruments=(), trace: bool = True,
        entry: tuple[str, str | None] | None = None) -> LabResult:
    """Run ``fn(*args)`` under the lab hub and return a ``LabResult``.

    ``seed`` seeds the default ``random`` strategy (``strategy`` substitutes another
    ``lab.choice.Strategy``). ``record`` writes the trace file there. ``strict``
    refuses nondeterminism (see ``lab.strict``). ``disable`` names oracles to turn
    off. ``net`` configures the simulated network (``lab.net.NetConfig`` or a dict).
    ``max_steps``/``max_time`` halt runaway programs. ``trace=False`` records nothing
    and checks no oracle (for benchmarks). ``entry`` overrides the recorded program
    name (``("module:function", file)``).
    """
    return _run(fn, args, seed=seed, record=record, strict=strict, strategy=strategy,
                disable=disable, net=net, max_steps=max_steps, max_time=max_time,
                leak_policy=leak_policy, instruments=instruments, trace=trace, entry=entry)


def _run(fn, args: tuple, *, seed: int, record, strict: bool, strategy, disable, net,
         max_steps: int, max_time, leak_policy: str, instruments, trace: bool, entry,
         header: dict | None = None, checker_factory=None, key: bytes | None = None,
         track: bool = False, setup=None, lazy_trace: bool = False) -> LabResult:
    from . import __version__

    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, not {type(seed).__name__}")
    disable = _oracles.validate_names(disable)
    strat = make_strategy(strategy, seed)
    if header is None:
        ent, ent_file = entry if entry is not None else entry_of(fn)
        jargs = _json_args(args)
        header = {
            "type": "header", "format": FORMAT, "seed": seed, "strategy": strat.describe(),
            "entry": ent, "entry_file": ent_file, "args": jargs,
            "args_replayable": jargs is not None, "python": platform.python_version(),
            "greenrt": greenrt.__version__, "lab": __version__, "strict": strict,
            "options": {"max_steps": max_steps, "max_time": max_time,
                        "leak_policy": leak_policy, "net": _net_dict(net),
                        "disable": list(disable)},
        }
    hub = LabHub(strategy=strat, strict=strict, max_steps=max_steps, max_time=max_time,
                 trace=trace, net_config=net, instruments=instruments,
                 leak_policy=leak_policy, track=track)
    if setup is not None:
        setup(hub)
    if checker_factory is not None:
        hub.checker = checker_factory(hub)
    value = error = None
    halted = None
    interrupt: BaseException | None = None
    with run_gc_threshold():
        with strict_guard(hub, strict):
            try:
                value = greenrt.run(fn, *args, hub=hub, handle_signals=False)
            except LabHalt as h:
                halted, error = h.reason, h.error
            except (KeyboardInterrupt, SystemExit) as e:
                interrupt = e
            except BaseException as e:  # noqa: BLE001 - the program's failure is a result
                error = e
    if halted is None and hub._halt is not None:  # e.g. a divergence on the last step
        halted, error = hub._halt.reason, hub._halt.error
    alive = [describe_wait(t) for t in hub.live_tasks()]
    events = hub.events if hub.events is not None else []
    hub.events = None  # the teardown's events are not part of the run
    hub.checker = None
    hub._instruments = []
    hub._tracing = False
    hub.teardown()
    if interrupt is not None:
        raise interrupt
    main = hub.main_task
    outcome = main.outcome if main is not None else None
    divergence = error if isinstance(error, ReplayDivergence) else None
    violations: list[_oracles.Violation] = []
    if trace:
        facts = _oracles.Facts(events=events, deadlocks=hub.deadlocks,
                               quiescence_findings=hub.quiescence_findings,
                               alive_at_exit=alive, sid_task=hub.sid_task, halted=halted)
        violations = _oracles.check(facts, disable)
    stats = {
        "steps": hub.steps, "switches": hub.steps, "choices": hub.choices,
        "events": len(events), "timers_fired": hub.stats["timers_fired"],
        "virtual_time": hub.clock.now, "tasks": hub.spawned,
        "deadlocks": len(hub.deadlocks), "alive_at_exit": len(alive),
    }
    tr = None
    path = None
    maker = None
    if trace:
        footer = {"complete": halted is None,
                  "outcome": repr_outcome(outcome) if outcome is not None else f"halted:{halted}"}

        def maker() -> Trace:
            return Trace(dict(header), [event_record(ev) for ev in events], footer,
                         key=key if key is not None else env_key())

        if not lazy_trace or record is not None:
            tr = maker()
            maker = None
        if record is not None:
            path = tr.save(record)
    if divergence is not None:
        error = None
        halted = None
    chosen = [ev.data["i"] for ev in events if ev.kind == "lab.choice"]
    return LabResult(seed=seed, strategy=header["strategy"], outcome=outcome, value=value,
                     error=error, halted=halted, violations=violations, disabled=disable,
                     stats=stats, trace=tr, trace_path=path, divergence=divergence,
                     entry=header.get("entry"), events=events,
                     schedule=hub.sched if track else None, choice_indices=chosen,
                     trace_maker=maker)


def rng():
    """A ``random.Random`` for the running lab program, seeded from the run's choice
    stream (so a replay reproduces it). Outside the lab: ``RuntimeError``."""
    from greenrt.lowlevel import current_hub

    hub = current_hub()
    if not isinstance(hub, LabHub):
        raise RuntimeError("lab.rng() is only available inside lab.run()")
    return hub.rng()


def check_determinism(fn, *args: Any, seed: int = 0, runs: int = 2, **kw: Any) -> str | None:
    """Run ``fn`` ``runs`` times with the same seed; ``None`` if every trace is the
    same, else a message naming the first differing event."""
    base = run(fn, *args, seed=seed, **kw)
    for n in range(1, runs):
        other = run(fn, *args, seed=seed, **kw)
        d = first_difference(base.trace.records, other.trace.records)
        if d is not None:
            step, a, b = d
            from .errors import _short

            return (f"runs 1 and {n + 1} with seed {seed} differ at step {step}: first run "
                    f"{'ended' if a is None else _short(a)}, run {n + 1} "
                    f"{'ended' if b is None else _short(b)}")
    return None


def first_difference(a: list, b: list) -> tuple[int, Any, Any] | None:
    """``(step, a_record, b_record)`` of the first difference (``None`` past an end)."""
    for i in range(max(len(a), len(b))):
        x = a[i] if i < len(a) else None
        y = b[i] if i < len(b) else None
        if x != y:
            return i, x, y
    return None
