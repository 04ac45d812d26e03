"""Task dumps: what every task of a hub is doing, as data and as text.

``snapshot(hub)`` walks the region tree from the root region and describes every live
task: its state, whether it is the running one, queued to run or parked, what it
waits for (``Task.waiting_for``, with the task holding it when the object has an
owner), its deadline as a duration from now, its poll/cost budget left, a pending
cancellation and its reason, and its stack (the running task's from the caller's
frame, a parked task's from its greenlet). Regions a task opened hang under it.
``format_snapshot`` turns the data into the indented text that ``dump()`` returns,
that the dump signal logs (``run(..., dump_signal=signal.SIGUSR1)``) and that a real
hub's ``Deadlock`` carries.

A dump only reads the hub; it never switches, so it is safe from a signal handler
(which runs between two bytecodes of whatever task is running) and from the hub
greenlet. It is not a checkpoint.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from types import FrameType

    from ._hub import Hub
    from ._region import Region
    from ._task import Task

from ._deadlock import _holder, _label

_GREENRT_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
#: frames kept per stack (the innermost ones)
STACK_LIMIT = 12


def _site_str(site: Any) -> str | None:
    if site is None:
        return None
    if isinstance(site, tuple):
        return f"{site[0]}:{site[1]}"
    return str(site)


def _stack(frame: FrameType | None) -> list[str]:
    """``file:line in function`` for the frames of a task, outermost first, without
    greenrt's own frames below the task function (the worker loop)."""
    if frame is None:
        return []
    frames: list[traceback.FrameSummary] = traceback.extract_stack(frame)
    i = 0
    while i < len(frames) and frames[i].filename.startswith(_GREENRT_DIR):
        i += 1
    frames = frames[i:]
    # below the last frame of user code, only the greenrt call it made (the wait)
    k = len(frames) - 1
    while k >= 0 and frames[k].filename.startswith(_GREENRT_DIR):
        k -= 1
    frames = frames[:k + 2][-STACK_LIMIT:]
    return [f"{f.filename}:{f.lineno} in {f.name}" for f in frames]


def _duration(seconds: float) -> str:
    """A signed duration for people: ``in 2.5s`` / ``0.3s ago``."""
    if seconds >= 0:
        return f"in {_fmt_seconds(seconds)}"
    return f"{_fmt_seconds(-seconds)} ago"


def _fmt_seconds(s: float) -> str:
    if s >= 100:
        return f"{s:.0f}s"
    if s >= 1:
        return f"{s:.2f}s"
    return f"{s * 1000:.1f}ms"


def _budget_left(task: Task[Any]) -> dict[str, Any]:
    polls = cost = None
    for s in task._scope._quota_chain if task._scope is not None else ():
        if s._polls_left is not None:
            polls = s._polls_left if polls is None else min(polls, s._polls_left)
        if s._cost_left is not None:
            cost = s._cost_left if cost is None else min(cost, s._cost_left)
    return {"polls_left": polls, "cost_left": cost}


def _regions_opened_by(task: Task[Any]) -> list[Region]:
    """The regions ``task`` has open, outermost first."""
    out = []
    s = task._scope
    while s is not None and s is not task and s._owner is task:
        r = s._region
        if r is not None:
            out.append(r)
        s = s._parent
    out.reverse()
    return out


def _task_node(task: Task[Any], hub: Hub, now: float, frame: FrameType | None) -> dict[str, Any]:
    from ._scope import effective_reason

    if task is hub.current:
        sched = "current"
        f = frame
    elif task._queued:
        sched = "ready"
        f = task._glet.gr_frame if task._glet is not None else None
    elif task._abort_fn is not None:
        sched = "parked"
        f = task._glet.gr_frame if task._glet is not None else None
    else:
        sched = "abandoned" if task._glet is None and task._tstate.value != "created" else "other"
        f = task._glet.gr_frame if task._glet is not None else None
    if task._glet is None and task._tstate.value == "created":
        sched = "not started" if not task._queued else "ready, not started"
    scope = task._scope if task._scope is not None else task
    d = scope._deadline_eff
    reason = effective_reason(scope)
    waiting = None
    held_by = None
    if sched == "parked":
        w = task.waiting_for
        waiting = _label(w)
        h = _holder(w)
        held_by = h.id if h is not None else None
    node = {
        "id": task.id, "name": task.name, "state": task._tstate.value, "sched": sched,
        "waiting_for": waiting, "held_by": held_by,
        "deadline": d, "deadline_in": None if d is None else d - now,
        **_budget_left(task),
        "cancel_pending": bool(task._pending),
        "cancel_reason": None if reason is None else reason.to_dict(),
        "cancel_reason_text": None if reason is None else str(reason),
        "stack": _stack(f),
        "regions": [],
    }
    node["regions"] = [_region_node(r, hub, now, frame) for r in _regions_opened_by(task)]
    return node


def _region_node(region: Region, hub: Hub, now: float,
                 frame: FrameType | None) -> dict[str, Any]:
    scope = region._scope
    d = scope._deadline_eff if scope is not None else None
    reason = scope._reason if scope is not None else None
    return {
        "id": region.id, "name": region.name, "state": region._state, "policy": region.policy,
        "opened_at": _site_str(getattr(region, "opened_at", None)),
        "deadline": d, "deadline_in": None if d is None else d - now,
        "cancel_reason_text": None if reason is None else str(reason),
        "tasks": [_task_node(t, hub, now, frame) for t in list(region._live)],
    }


def snapshot(hub: Hub, frame: FrameType | None = None) -> dict[str, Any]:
    """The structured dump of ``hub`` (see the module docstring): ``{"time",
    "current", "runnable", "tasks", "regions": [root region node]}``; a region node
    has ``id, name, state, policy, opened_at, deadline_in, cancel_reason_text,
    tasks``; a task node ``id, name, state, sched, waiting_for, held_by,
    deadline_in, polls_left, cost_left, cancel_pending, cancel_reason(_text), stack,
    regions``. ``frame`` is the running task's innermost frame (default: the
    caller's). Durations are seconds from ``time`` (negative: in the past)."""
    if frame is None:
        frame = sys._getframe(1)
    now = hub.now()
    root = hub.root_region
    regions = [_region_node(root, hub, now, frame)] if root is not None else []
    count = 0
    todo = list(regions)
    while todo:
        r = todo.pop()
        for t in r["tasks"]:
            count += 1
            todo.extend(t["regions"])
    cur = hub.current
    return {"time": now, "current": cur.id if cur is not None else None,
            "runnable": hub.runnable_count(), "tasks": count, "regions": regions}


def _task_line(t: dict[str, Any]) -> str:
    name = f"task {t['id']} ({t['name']})"
    parts = [] if t["state"] == "running" else [t["state"].replace("_", " ")]
    if t["sched"] == "current":
        parts.append("running now")
    elif t["sched"] == "ready":
        parts.append("ready to run")
    elif t["sched"] == "parked":
        w = f"waits for {t['waiting_for']}"
        if t["held_by"] is not None:
            w += f", held by task {t['held_by']}"
        parts.append(w)
    else:
        parts.append(t["sched"])
    if t["deadline_in"] is not None:
        parts.append(f"deadline {_duration(t['deadline_in'])}")
    if t["polls_left"] is not None:
        parts.append(f"{t['polls_left']} polls left")
    if t["cost_left"] is not None:
        parts.append(f"{t['cost_left']} cost left")
    if t["cancel_reason_text"] is not None:
        parts.append(("cancel pending: " if t["cancel_pending"] else "cancelled: ")
                     + t["cancel_reason_text"])
    return f"{name}: " + "; ".join(parts)


def _region_line(r: dict[str, Any]) -> str:
    name = f"region {r['id']}" + (f" ({r['name']})" if r["name"] else "")
    parts = [r["state"], r["policy"]]
    if r["opened_at"]:
        parts.append(f"opened at {r['opened_at']}")
    if r["deadline_in"] is not None:
        parts.append(f"deadline {_duration(r['deadline_in'])}")
    if r["cancel_reason_text"] is not None:
        parts.append(f"cancelled: {r['cancel_reason_text']}")
    return f"{name}: " + ", ".join(parts) + f" [{len(r['tasks'])} live]"


def format_snapshot(snap: dict[str, Any], *, header: str | None = None, stacks: bool = True) -> str:
    """The text form of ``snapshot()``: one line per region and task, indented by
    nesting, each task followed by its stack."""
    lines = [header if header is not None else
             f"greenrt task dump: {snap['tasks']} live tasks, {snap['runnable']} runnable"]

    def region(r: dict[str, Any], depth: int) -> None:
        pad = "  " * depth
        lines.append(pad + _region_line(r))
        for t in r["tasks"]:
            lines.append(pad + "  " + _task_line(t))
            if stacks:
                for fr in t["stack"]:
                    lines.append(pad + "      " + fr)
            for sub in t["regions"]:
                region(sub, depth + 2)

    for r in snap["regions"]:
        region(r, 1)
    return "\n".join(lines)


def dump(hub: Hub | None = None, *, stacks: bool = True) -> str:
    """Describe every live task of ``hub`` (default: this thread's) as text. See
    ``snapshot`` for the structured form. Not a checkpoint; never switches."""
    if hub is None:
        from ._hub import current_hub

        hub = current_hub()
    return format_snapshot(snapshot(hub, sys._getframe(1)), stacks=stacks)
