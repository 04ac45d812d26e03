"""``greenrt-lab timeline FILE --html OUT``: a run drawn as one lane per task.

A static HTML page (inline CSS and SVG; no script, no external asset, nothing
fetched): the horizontal axis is the event step, each task has a lane (in spawn
order) showing

* when it ran (a bar from the scheduler's switch to it until the next switch),
* checkpoints (thin ticks), spawn and completion (with the outcome),
* cancellation request / drain (delivery) / finalize / cleanup budget exhausted,
* obligations reserved / committed / aborted / leaked,
* regions opened and closed (on the lane of the task that owns them),

plus hub-level marks (deadlocks, injected faults) on a top lane. Every mark has a
tooltip (SVG ``<title>``) with the step, virtual time and details. All text from the
trace is HTML-escaped. At most ``MAX_EVENTS`` events are drawn (the page says so when
it truncates).
"""

from __future__ import annotations

import html
from typing import Any

MAX_EVENTS = 20000
COL = 6
ROW = 26
LEFT = 180

_MARKS = {
    "checkpoint": ("tick", "#888", "checkpoint"),
    "task.spawn": ("dot", "#2a7", "spawn"),
    "task.complete": ("end", "#333", "complete"),
    "cancel.request": ("tri", "#f90", "cancel request"),
    "cancel.drain": ("tri", "#e22", "cancel delivered (drain)"),
    "cancel.finalize": ("tri", "#811", "cancel finalized"),
    "cancel.exhausted": ("x", "#e22", "cleanup budget exhausted"),
    "obligation.reserve": ("dot", "#27c", "obligation reserved"),
    "obligation.commit": ("dot", "#2a2", "obligation committed"),
    "obligation.abort": ("dot", "#a3c", "obligation aborted"),
    "obligation.leak": ("x", "#000", "obligation LEAKED"),
    "region.open": ("bar", "#07a", "region open"),
    "region.close": ("bar", "#555", "region close"),
}


def _esc(s: Any) -> str:
    return html.escape(str(s), quote=True)


def _detail(rec: dict) -> str:
    from .show import _summary

    return f"step {rec['seq']} t={rec['t']} — {_summary(rec)}"


def render_html(header: dict, records: list[dict], footer: dict | None = None) -> str:
    """The page for a trace (header, event records, footer)."""
    truncated = len(records) > MAX_EVENTS
    recs = records[:MAX_EVENTS]
    lanes: dict[int, int] = {}
    names: dict[int, str] = {}
    for r in recs:
        if r["kind"] == "task.spawn" and r.get("task") is not None:
            lanes.setdefault(r["task"], len(lanes))
            names[r["task"]] = str((r.get("data") or {}).get("name", "?"))
    n = len(recs)
    width = LEFT + max(1, n) * COL + 40
    height = (len(lanes) + 1) * ROW + 40
    out: list[str] = []

    def y(tid: int | None) -> int:
        return 30 + (0 if tid is None or tid not in lanes else (lanes[tid] + 1) * ROW)

    for tid, i in lanes.items():
        yy = 30 + (i + 1) * ROW
        out.append(f'<line x1="{LEFT}" y1="{yy + ROW // 2}" x2="{width - 20}" '
                   f'y2="{yy + ROW // 2}" class="lane"/>')
        out.append(f'<text x="6" y="{yy + ROW // 2 + 4}" class="name">T{tid} '
                   f'{_esc(names[tid][:22])}</text>')
    out.append(f'<text x="6" y="{30 + ROW // 2 + 4}" class="name">hub</text>')
    running: tuple[int, int] | None = None  # (task, column where it started)

    def close_run(col: int) -> None:
        nonlocal running
        if running is not None and running[0] in lanes:
            tid, c0 = running
            x0 = LEFT + c0 * COL
            out.append(f'<rect x="{x0}" y="{y(tid) + 7}" width="{max(COL, (col - c0) * COL)}" '
                       f'height="{ROW - 14}" class="run"><title>T{tid} runs from step '
                       f'{recs[c0]["seq"]}</title></rect>')
        running = None

    for col, r in enumerate(recs):
        k = r["kind"]
        tid = r.get("task")
        x = LEFT + col * COL + COL // 2
        if k == "task.switch":
            close_run(col)
            running = (tid, col)
            continue
        if k == "lab.choice" and (r.get("data") or {}).get("what") == "task":
            close_run(col)
            continue
        if k in ("lab.deadlock", "lab.fault"):
            color = "#e22" if k == "lab.deadlock" else "#c6c"
            out.append(f'<line x1="{x}" y1="30" x2="{x}" y2="{height - 10}" stroke="{color}" '
                       f'stroke-width="2"><title>{_esc(_detail(r))}</title></line>')
            continue
        m = _MARKS.get(k)
        if m is None or tid not in lanes:
            continue
        shape, color, label = m
        yy = y(tid) + ROW // 2
        t = f"<title>{_esc(label)}: {_esc(_detail(r))}</title>"
        if shape == "tick":
            out.append(f'<line x1="{x}" y1="{yy - 5}" x2="{x}" y2="{yy + 5}" stroke="{color}">{t}</line>')
        elif shape == "dot":
            out.append(f'<circle cx="{x}" cy="{yy}" r="4" fill="{color}">{t}</circle>')
        elif shape == "tri":
            out.append(f'<path d="M{x - 5},{yy + 6} L{x + 5},{yy + 6} L{x},{yy - 6} Z" '
                       f'fill="{color}">{t}</path>')
        elif shape == "x":
            out.append(f'<path d="M{x - 5},{yy - 5} L{x + 5},{yy + 5} M{x - 5},{yy + 5} '
                       f'L{x + 5},{yy - 5}" stroke="{color}" stroke-width="2">{t}</path>')
        elif shape == "bar":
            out.append(f'<rect x="{x - 1}" y="{yy - 11}" width="3" height="22" fill="{color}">{t}</rect>')
        elif shape == "end":
            out.append(f'<rect x="{x - 4}" y="{yy - 4}" width="8" height="8" fill="{color}">{t}</rect>')
    close_run(n)
    legend = " ".join(f'<span style="color:{c}">&#9632;</span> {_esc(label)}'
                      for _, c, label in _MARKS.values())
    head = (f"{_esc(header.get('entry'))} — seed {_esc(header.get('seed'))}, strategy "
            f"{_esc(header.get('strategy'))}, {len(records)} events, outcome "
            f"{_esc((footer or {}).get('outcome'))}")
    note = (f"<p><b>truncated:</b> the first {MAX_EVENTS} of {len(records)} events are drawn.</p>"
            if truncated else "")
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>greenrt-lab timeline</title>"
        "<style>body{font:13px sans-serif;margin:12px}.lane{stroke:#ddd}"
        ".name{font:12px monospace}.run{fill:#bde;stroke:#79b}"
        "svg{border:1px solid #ccc}.legend{margin:8px 0}</style></head><body>"
        f"<h3>greenrt-lab timeline</h3><p>{head}</p>{note}"
        f"<div class=\"legend\">running: <span style=\"color:#bde\">&#9632;</span> {legend}</div>"
        f"<div style=\"overflow-x:auto\"><svg xmlns=\"http://www.w3.org/2000/svg\" "
        f"width=\"{width}\" height=\"{height}\">" + "".join(out) + "</svg></div></body></html>\n")


def write_html(trace, path: str) -> str:
    """Render a ``lab.trace.Trace`` to ``path``; return the path."""
    page = render_html(trace.header, trace.records, trace.footer)
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    return path
