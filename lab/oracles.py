"""Oracles: properties checked after every lab run.

Each oracle reads the run's events (``greenrt.TraceEvent`` in emission order) and a
few facts the lab hub collected while the run was live (deadlock reports, timers
pending at region close, tasks alive at exit), and returns ``Violation`` records
whose message names the violation precisely: the task and region ids and names, the
step (event index) and virtual time, and where applicable the reservation site or
the wait-for graph. Every oracle can be turned off by name
(``lab.run(..., disable=("deadlock",))``).

==================  =================================================================
name                what it checks
==================  =================================================================
``quiescence``      when a region closes, every task spawned into it has completed,
                    and no timer scheduled by one of its tasks is still pending (work
                    that outlives its structured scope, e.g. a raw ``call_later``)
``leak``            every region opened during the run was closed, every task spawned
                    completed (a region entered by hand and never exited leaks)
``obligation``      no obligation leaked (``obligation.leak``; reports the reservation
                    site) and none was left unresolved at the end of the run
``race_drain``      a task cancelled with ``race_lost`` completes before its racer
                    moves on: before the racer completes, and before the racer closes
                    the innermost region it had open when it cancelled the loser
``cancel_protocol`` per scope, request -> drain -> finalize in that order, delivered at
                    most once; cleanup within its budget (no ``cancel.exhausted``); a
                    task that received its own cancellation must not complete ``ok``
                    (the ``Cancelled`` was swallowed)
``deadlock``        the hub never found every task blocked with no timer and no I/O
                    pending; the verdict lists each blocked task, what it waits on and
                    the wait-for cycle
``orphan``          no task is alive when ``run`` returns
==================  =================================================================

Blind spot of ``race_drain`` (documented): a racer that keeps running inside a
longer-lived region after a hand-written race is only checked when that region
closes, which by construction waits for the loser.

``leak`` and ``orphan`` are skipped when the run was halted (step limit, divergence,
an unbreakable deadlock): every task is then alive by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ORACLES = ("quiescence", "leak", "obligation", "race_drain", "cancel_protocol", "deadlock",
           "orphan")


@dataclass
class Violation:
    """One oracle verdict against the run."""

    oracle: str
    message: str
    step: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"[{self.oracle}] {self.message}"


@dataclass
class Facts:
    """What the oracles read. ``events`` are TraceEvents; the rest comes from the hub."""

    events: list
    deadlocks: list[dict] = field(default_factory=list)
    quiescence_findings: list[dict] = field(default_factory=list)
    alive_at_exit: list[dict] = field(default_factory=list)
    sid_task: dict[int, int] = field(default_factory=dict)
    halted: str | None = None


def validate_names(names) -> tuple[str, ...]:
    names = tuple(names)
    for n in names:
        if n not in ORACLES:
            raise ValueError(f"unknown oracle {n!r}; known: {', '.join(ORACLES)}")
    return names


#: Every event kind an oracle (``_Index`` and the scans below) looks at.
_ORACLE_KINDS = frozenset({
    "task.spawn", "task.complete", "region.open", "region.close",
    "obligation.reserve", "obligation.commit", "obligation.abort", "obligation.leak",
    "cancel.request", "cancel.drain", "cancel.finalize", "cancel.exhausted",
})


class _Index:
    """Per-task and per-region facts derived from the events, built once."""

    def __init__(self, events):
        # The oracles read only these kinds; one pass keeps them (in order) so that
        # each oracle scans a few events per task, not the scheduling events
        # (task.switch, lab.choice, checkpoint) that make up most of a trace.
        kinds = _ORACLE_KINDS
        self.events = events = [ev for ev in events if ev.kind in kinds]
        self.names: dict[int, str] = {}
        self.task_region: dict[int, int] = {}
        self.spawn_step: dict[int, int] = {}
        #: the task that spawned each task (``None`` for the root)
        self.parent: dict[int, Any] = {}
        self.complete: dict[int, tuple[int, str]] = {}
        self.region_open: dict[int, tuple[int, Any, Any]] = {}
        self.region_close: dict[int, int] = {}
        for ev in events:
            k = ev.kind
            if k == "task.spawn":
                self.names[ev.task] = ev.data.get("name", "?")
                self.task_region[ev.task] = ev.region
                self.spawn_step[ev.task] = ev.seq
                self.parent[ev.task] = ev.data.get("parent")
            elif k == "task.complete":
                self.complete[ev.task] = (ev.seq, ev.data.get("outcome", "?"))
            elif k == "region.open":
                self.region_open[ev.region] = (ev.seq, ev.task, ev.data.get("name"))
            elif k == "region.close":
                self.region_close[ev.region] = ev.seq

    def t(self, tid) -> str:
        if tid is None:
            return "the hub"
        return f"task {tid} ({self.names.get(tid, '?')})"

    def r(self, rid) -> str:
        o = self.region_open.get(rid)
        name = o[2] if o else None
        return f"region {rid}" + (f" ({name})" if name else "")


def _quiescence(f: Facts, ix: _Index) -> list[Violation]:
    out = []
    for tid, rid in ix.task_region.items():
        close = ix.region_close.get(rid)
        if close is None:
            continue
        done = ix.complete.get(tid)
        if done is None or done[0] > close:
            out.append(Violation("quiescence", (
                f"{ix.r(rid)} closed at step {close} while {ix.t(tid)} was still live "
                f"({f'completed at step {done[0]}' if done else 'never completed'})"),
                close, {"region": rid, "task": tid}))
    for q in f.quiescence_findings:
        out.append(Violation("quiescence", (
            f"{ix.r(q['region'])} closed at step {q['step']} (t={q['time']!r}) with timer "
            f"#{q['timer']} ({q['fn']}) still pending, scheduled by task {q['task']} "
            f"({q['name']}) for t={q['due']!r}: work outlives its region"),
            q["step"], dict(q)))
    return out


def _leak(f: Facts, ix: _Index) -> list[Violation]:
    if f.halted:
        return []
    out = []
    for rid, (step, owner, _) in sorted(ix.region_open.items()):
        if rid in ix.region_close:
            continue
        tail = ""
        if owner is not None and owner in ix.complete:
            tail = f"; its owner {ix.t(owner)} completed at step {ix.complete[owner][0]} " \
                   f"with the region still open"
        out.append(Violation("leak", f"{ix.r(rid)} opened by {ix.t(owner)} at step {step} "
                             f"was never closed{tail}", step, {"region": rid, "owner": owner}))
    for tid, step in sorted(ix.spawn_step.items()):
        if tid not in ix.complete:
            out.append(Violation("leak", f"{ix.t(tid)} spawned into {ix.r(ix.task_region[tid])} "
                                 f"at step {step} never completed", step, {"task": tid}))
    return out


def _obligation(f: Facts, ix: _Index) -> list[Violation]:
    out = []
    reserved: dict[int, Any] = {}
    for ev in ix.events:
        k = ev.kind
        if k == "obligation.reserve":
            reserved[ev.data["obligation"]] = ev
        elif k in ("obligation.commit", "obligation.abort"):
            reserved.pop(ev.data.get("obligation"), None)
        elif k == "obligation.leak":
            d = ev.data
            res = reserved.pop(d.get("obligation"), None)
            owner = ix.t(ev.task) if ev.task is not None else d.get("where", "a region")
            out.append(Violation("obligation", (
                f"obligation {d.get('obligation')} ({d.get('kind')}) leaked by {owner} at step "
                f"{ev.seq}: reserved at {d.get('site')}"),
                ev.seq, {"obligation": d.get("obligation"), "kind": d.get("kind"),
                         "site": d.get("site"), "task": ev.task, "where": d.get("where"),
                         "reserved_step": res.seq if res is not None else None}))
    if not f.halted:
        for oid, ev in reserved.items():
            owner = ix.t(ev.task) if ev.task is not None else ix.r(ev.region)
            out.append(Violation("obligation", (
                f"obligation {oid} ({ev.data.get('kind')}) reserved by {owner} at step {ev.seq} "
                f"was never resolved: reserved at {ev.data.get('site')}"),
                ev.seq, {"obligation": oid, "site": ev.data.get("site")}))
    return out


def _race_drain(f: Facts, ix: _Index) -> list[Violation]:
    out = []
    open_regions: dict[int, list[int]] = {}
    live_in_region: dict[int, dict[int, None]] = {}
    checked: set = set()
    pending = []  # (loser, canceller, step, region_at_request)
    for ev in ix.events:
        k = ev.kind
        if k == "region.open" and ev.task is not None:
            open_regions.setdefault(ev.task, []).append(ev.region)
        elif k == "region.close" and ev.task is not None:
            lst = open_regions.get(ev.task)
            if lst and ev.region in lst:
                lst.remove(ev.region)
        elif k == "task.spawn":
            live_in_region.setdefault(ev.region, {})[ev.task] = None
        elif k == "task.complete":
            live_in_region.get(ev.region, {}).pop(ev.task, None)
        elif k == "cancel.request":
            reason = ev.data.get("reason") or {}
            if reason.get("kind") != "race_lost":
                continue
            sid = ev.data.get("scope")
            if sid in f.sid_task:
                losers = [f.sid_task[sid]]
            else:
                losers = list(live_in_region.get(ev.region, {}))
            canceller = reason.get("origin_task")
            racing = None
            if canceller is not None and open_regions.get(canceller):
                racing = open_regions[canceller][-1]
            for lo in losers:
                if lo in checked or lo == canceller:
                    continue
                checked.add(lo)
                pending.append((lo, canceller, ev.seq, racing))
    for lo, c, step, racing in pending:
        ends = []
        spawner = ix.parent.get(lo)
        if (c is not None and spawner is not None and spawner != c
                and ix.task_region.get(c) == ix.task_region.get(lo)):
            # A fellow contestant cancelled the loser (``greenrt.race``: the winner
            # cancels its siblings and completes at once). The racer is the task that
            # spawned them: the race ends when it closes their region or completes.
            shared = ix.task_region[lo]
            if shared in ix.region_close:
                ends.append((ix.region_close[shared], f"its racing {ix.r(shared)} closed"))
            if spawner in ix.complete:
                ends.append((ix.complete[spawner][0], f"{ix.t(spawner)} completed"))
            c = spawner
        else:
            if c is not None and c in ix.complete:
                ends.append((ix.complete[c][0], f"{ix.t(c)} completed"))
            if racing is not None and racing in ix.region_close:
                ends.append((ix.region_close[racing], f"its racing {ix.r(racing)} closed"))
        done = ix.complete.get(lo)
        if ends:
            end_step, what = min(ends)
            if done is None or done[0] > end_step:
                out.append(Violation("race_drain", (
                    f"race loser {ix.t(lo)} was not drained: cancelled with race_lost by "
                    f"{ix.t(c)} at step {step}, but the race ended at step {end_step} ({what}) "
                    f"before the loser completed "
                    f"({f'at step {done[0]}' if done else 'it never did'})"),
                    step, {"loser": lo, "racer": c, "race_end": end_step}))
        elif done is None and not f.halted:
            out.append(Violation("race_drain", (
                f"race loser {ix.t(lo)} cancelled with race_lost by {ix.t(c)} at step {step} "
                f"never completed"), step, {"loser": lo, "racer": c}))
    return out


def _cancel_protocol(f: Facts, ix: _Index) -> list[Violation]:
    out = []
    requested: dict[int, int] = {}
    delivered: dict[int, Any] = {}
    root_delivered: dict[int, Any] = {}
    for ev in ix.events:
        k = ev.kind
        if k == "cancel.request":
            requested.setdefault(ev.data.get("scope"), ev.seq)
        elif k == "cancel.drain":
            sid = ev.data.get("scope")
            if sid not in requested:
                out.append(Violation("cancel_protocol", (
                    f"{ix.t(ev.task)}: cancellation of scope {sid} delivered (drain) at step "
                    f"{ev.seq} without a request"), ev.seq, {"scope": sid}))
            if sid in delivered:
                out.append(Violation("cancel_protocol", (
                    f"{ix.t(ev.task)}: cancellation of scope {sid} delivered twice (steps "
                    f"{delivered[sid].seq} and {ev.seq})"), ev.seq, {"scope": sid}))
            else:
                delivered[sid] = ev
            if f.sid_task.get(sid) == ev.task:
                root_delivered.setdefault(ev.task, ev)
        elif k == "cancel.finalize":
            sid = ev.data.get("scope")
            if ev.data.get("reason") is not None and sid not in delivered:
                out.append(Violation("cancel_protocol", (
                    f"{ix.t(ev.task)}: cancellation of scope {sid} finalized at step {ev.seq} "
                    f"before it was delivered (drain)"), ev.seq, {"scope": sid}))
        elif k == "cancel.exhausted":
            sid = ev.data.get("scope")
            reason = ev.data.get("reason") or {}
            d = delivered.get(sid)
            budget = ""
            if d is not None:
                budget = (f" ({d.data.get('cleanup_polls')} polls, "
                          f"{d.data.get('cleanup_seconds')} s, delivered at step {d.seq})")
            msg = reason.get("message")
            out.append(Violation("cancel_protocol", (
                f"{ix.t(ev.task)} exceeded its cleanup budget{budget} for cancellation "
                f"{reason.get('kind')}{' (' + msg + ')' if msg else ''} of scope {sid}: "
                f"exhausted at step {ev.seq} (t={ev.time!r})"),
                ev.seq, {"task": ev.task, "scope": sid, "kind": reason.get("kind")}))
        elif k == "task.complete":
            d = root_delivered.get(ev.task)
            if d is not None and ev.data.get("outcome") == "ok":
                reason = d.data.get("reason") or {}
                out.append(Violation("cancel_protocol", (
                    f"{ix.t(ev.task)} received Cancelled ({reason.get('kind')}) at step {d.seq} "
                    f"and completed ok at step {ev.seq}: the cancellation was swallowed "
                    f"instead of re-raised"), ev.seq, {"task": ev.task}))
    return out


def format_deadlock(g: dict) -> str:
    parts = []
    cyc = g.get("cycle") or []
    names = {b["task"]: b["name"] for b in g.get("blocked", ())}
    if cyc:
        parts.append("wait-for cycle: " + " -> ".join(
            f"task {t} ({names.get(t, '?')})" for t in cyc))
    lines = []
    for b in g.get("blocked", ()):
        s = f"task {b['task']} ({b['name']}) {b['state']}"
        if b.get("waits"):
            s += f" in {b['waits']}"
        if b.get("site"):
            s += f" at {b['site']}"
        if b.get("on"):
            s += " -> waits for " + ", ".join(f"task {t}" for t in b["on"])
        lines.append(s)
    parts.append("blocked: " + "; ".join(lines) if lines else "no live task")
    return "; ".join(parts)


def _deadlock(f: Facts, ix: _Index) -> list[Violation]:
    out = []
    for g in f.deadlocks:
        out.append(Violation("deadlock", (
            f"deadlock at step {g.get('step')} (t={g.get('time')!r}): every task is blocked, "
            f"no timer and no I/O pending; " + format_deadlock(g)), g.get("step"), dict(g)))
    return out


def _orphan(f: Facts, ix: _Index) -> list[Violation]:
    if f.halted:
        return []
    out = []
    for b in f.alive_at_exit:
        rid = ix.task_region.get(b["task"])
        s = f"task {b['task']} ({b['name']}) in {ix.r(rid)} is still alive at run exit ({b['state']}"
        if b.get("waits"):
            s += f" in {b['waits']}"
        if b.get("site"):
            s += f" at {b['site']}"
        out.append(Violation("orphan", s + ")", None, dict(b)))
    return out


_CHECKS = {
    "quiescence": _quiescence, "leak": _leak, "obligation": _obligation,
    "race_drain": _race_drain, "cancel_protocol": _cancel_protocol, "deadlock": _deadlock,
    "orphan": _orphan,
}


def check(facts: Facts, disable=()) -> list[Violation]:
    """Run every oracle not in ``disable``; return the violations in oracle order."""
    off = set(validate_names(disable))
    ix = _Index(facts.events)
    out: list[Violation] = []
    for name in ORACLES:
        if name not in off:
            out.extend(_CHECKS[name](facts, ix))
    return out
