"""``greenrt-lab show``: a readable per-task timeline of a trace, for a terminal.

One line per event, in order::

     step        time  lanes   who                 event
       12    0.100000  |*|     T2 worker           checkpoint

The *lanes* column has one character per task (in order of spawn): ``|`` while the
task is alive, ``*`` on the line of one of its events, ``>`` when the scheduler picks
it, blank before it is spawned or after it completes — so concurrency and
interleaving are visible at a glance. ``task`` filters one task, ``kinds`` chooses
event kinds, ``checkpoints=False`` hides the (many) checkpoint events. Lanes beyond
``MAX_LANES`` are summarised as ``+``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MAX_LANES = 24


def _summary(rec: dict[str, Any]) -> str:
    k = rec["kind"]
    d = rec.get("data") or {}
    if k == "lab.choice":
        if d.get("what") == "task":
            return f"pick T{d.get('pick')} ({d.get('i')} of {d.get('n')})"
        return f"choose {d.get('what')}: {d.get('i')} of {d.get('n')}"
    if k == "lab.timer":
        return f"timer #{d.get('timer')} {d.get('fn')} (due {d.get('when')})"
    if k in ("task.spawn",):
        return f"spawn T{rec.get('task')} {d.get('name')} in region {rec.get('region')}"
    if k == "task.complete":
        return f"complete: {d.get('outcome')}"
    if k.startswith("cancel."):
        r = d.get("reason") or {}
        extra = f" {r.get('kind')}" if r else ""
        if r.get("message"):
            extra += f" ({r['message']})"
        return f"{k} scope {d.get('scope')}{extra}"
    if k.startswith("obligation."):
        site = f" at {d['site']}" if d.get("site") else ""
        return f"{k} #{d.get('obligation')} {d.get('kind')}{site}"
    if k in ("region.open", "region.state", "region.close"):
        extra = d.get("state") or d.get("name") or ""
        return f"{k} R{rec.get('region')} {extra}".rstrip()
    if k == "lab.deadlock":
        from .oracles import format_deadlock

        return "DEADLOCK " + format_deadlock(d)
    if d:
        parts = ", ".join(f"{a}={b}" for a, b in sorted(d.items()) if b is not None)
        return f"{k} {parts}"
    return k


def render(records: Iterable[dict[str, Any]], *, task: int | None = None,
           kinds: set[str] | None = None, checkpoints: bool = True) -> list[str]:
    """The timeline lines for ``records`` (event records of a trace)."""
    records = list(records)
    width = min(sum(1 for r in records if r["kind"] == "task.spawn"), MAX_LANES + 1)
    lanes: dict[int, int] = {}
    alive: dict[int, bool] = {}
    names: dict[int, str] = {}
    out = []
    for rec in records:
        k = rec["kind"]
        tid = rec.get("task")
        d = rec.get("data") or {}
        if k == "task.spawn" and tid is not None:
            lanes.setdefault(tid, len(lanes))
            alive[tid] = True
            names[tid] = str(d.get("name"))
        mark = {}
        if tid is not None and tid in lanes:
            mark[lanes[tid]] = "*"
        if k == "lab.choice" and d.get("what") == "task" and d.get("pick") in lanes:
            mark[lanes[d["pick"]]] = ">"
        show = True
        if task is not None and tid != task and not (k == "lab.choice" and d.get("pick") == task):
            show = False
        if kinds is not None and k not in kinds:
            show = False
        if not checkpoints and k in ("checkpoint", "task.switch"):
            show = False
        if show:
            gutter = []
            for t, i in lanes.items():
                if i >= MAX_LANES:
                    if i == MAX_LANES:
                        gutter.append("+")
                    continue
                gutter.append(mark.get(i) or ("|" if alive.get(t) else " "))
            who = f"T{tid} {names.get(tid, '')}" if tid is not None else "hub"
            out.append(f"{rec['seq']:>7} {rec['t']:>12.6f}  {''.join(gutter):<{width}}  "
                       f"{who[:24]:<24} {_summary(rec)}")
        if k == "task.complete" and tid is not None:
            alive[tid] = False
    return out
