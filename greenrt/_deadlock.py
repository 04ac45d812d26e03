"""Deadlock detection on the real hub (the lab has its own oracle).

When the hub finds nothing runnable it would block in the I/O driver. If nothing can
ever wake a task — no timer is pending (deadlines and sleeps are timers), no task
waits on a file descriptor, no worker thread started by ``to_thread`` is still
running (it could call ``from_thread`` or finish), no other Python thread of the
program is alive (it could call ``call_soon_threadsafe``), no cross-thread callback
is queued and no signal is pending — blocking would hang the process forever. Instead the hub
builds the wait-for graph (each blocked task, what it waits on, who holds it when the
object has an owner, and a cycle if there is one), cancels the root region with
reason kind ``resource_unavailable`` so every task unwinds through its cleanup, and
``greenrt.run()`` raises :class:`~greenrt.Deadlock` carrying the graph. If even the
cancellation cannot make progress (a wait that cannot be interrupted), the hub raises
``Deadlock`` out of its loop at once rather than hang.

The SIGINT/SIGTERM handlers that ``run()`` installs do not count as a way out: they
end the program, they do not satisfy a waiter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ._region import Region
    from ._task import Task


def _label(obj: Any) -> str:
    if obj is None:
        return "?"
    if isinstance(obj, str):
        return str(obj)
    if hasattr(obj, "_tstate") and hasattr(obj, "id"):  # a Task: a join() waits on it
        return f"task {obj.id} ({obj.name}) to complete"
    name = type(obj).__name__
    label = getattr(obj, "_lab_label", None)
    if callable(label):
        try:
            return label()  # type: ignore[no-any-return]  # a label is a str
        except Exception:  # noqa: BLE001 - a label is best effort
            pass
    return f"{name} 0x{id(obj):x}"


def _holder(obj: Any) -> Task[Any] | None:
    obj = getattr(obj, "obj", None)  # a sync.WaitLabel carries an object with an owner
    owner = getattr(obj, "_owner", None)
    if owner is not None and hasattr(owner, "id") and hasattr(owner, "_tstate"):
        return owner  # type: ignore[no-any-return]  # a Task
    return None


def live_tasks(root_region: Region) -> list[Task[Any]]:
    """Every live task under ``root_region``, parents before children."""
    out = []
    stack = [root_region]
    seen = set()
    while stack:
        region = stack.pop()
        for task in list(region._live):
            if id(task) in seen:
                continue
            seen.add(id(task))
            out.append(task)
            s = task._scope
            inner = []
            while s is not None and s._owner is task:
                r = getattr(s, "_region", None)
                if r is not None:
                    inner.append(r)
                if s is task:
                    break
                s = s._parent
            stack.extend(reversed(inner))
    return out


def wait_for_graph(root_region: Region) -> dict[str, Any]:
    """``{"blocked": [...], "cycle": [task ids]}`` for the live tasks."""
    tasks = live_tasks(root_region)
    blocked = []
    edges = {}
    for t in tasks:
        w = t.waiting_for
        holder = _holder(w)
        blocked.append({"task": t.id, "name": t.name, "waits_for": _label(w),
                        "held_by": holder.id if holder is not None else None})
        if holder is not None:
            edges[t.id] = holder.id
    cycle: list[int] = []
    for start in edges:
        path, node = [], start
        while node in edges and node not in path:
            path.append(node)
            node = edges[node]
        if node in path:
            cycle = path[path.index(node):] + [node]
            break
    return {"blocked": blocked, "cycle": cycle}
