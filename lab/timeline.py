"""``greenrt-lab timeline FILE --html OUT``: a run drawn as one lane per task.

A static HTML page (inline CSS and SVG; no script, no external asset, nothing
fetched) that fills the window's width (and scrolls sideways, lane names staying put,
when a run has more events than fit at ``MIN_COL`` pixels each):

* a **step axis** on top: the event step (``seq``, the number oracles and ``show``
  print), labelled at round intervals, with light grid lines;
* the **verdict** above the chart: ok, or FAILED with every oracle violation (or the
  error, or why the run halted), and the **failing step** drawn as a red line across
  every lane, labelled, with the verdict in its tooltip;
* one lane per task (in spawn order) showing when it ran (a bar from the scheduler's
  switch to it until the next switch), its **checkpoints** (ticks), spawn and
  completion (with the outcome), **cancellation** request / delivery (drain) /
  finalize / cleanup budget exhausted, **obligations** reserved / committed /
  aborted / leaked, regions opened and closed, and a small dot for any other event;
  a scope-level event without a task goes on the lane of the task that owns its
  region, else on the hub lane, which also carries deadlocks and injected faults.

Every mark has a tooltip (SVG ``<title>``) with the step, virtual time, details and
the **source line** that emitted it. Source lines are not in the trace: they come from
replaying it once (``lab.replay(..., instruments=[SourceLines()])``; the program must
be importable, as for ``greenrt-lab replay``), which also re-checks the oracles for
the verdict. ``replay=False`` (``--no-replay``) skips that: no source lines, and the
verdict comes from the trace's footer (the main task's outcome) and its deadlock
events alone. A replay that fails or diverges is said on the page; what it learnt up
to the divergence is kept. All text from the trace is HTML-escaped. At most
``MAX_EVENTS`` events are drawn (the page says so when it truncates).
"""

from __future__ import annotations

import html
import linecache
import os
import sys
import sysconfig
from dataclasses import dataclass, field
from typing import Any

MAX_EVENTS = 20000
MIN_COL = 5        # px per event at least (the chart scrolls beyond the window's width)
ROW = 28           # px per lane
AXIS = 26          # px of the step axis on top
LEFT = 200         # px of the lane names
MAX_SOURCE = 160   # characters of a source line in a tooltip

_MARKS = {
    "checkpoint": ("tick", "#666", "checkpoint"),
    "task.spawn": ("dot", "#2a7", "spawn"),
    "task.complete": ("end", "#333", "complete"),
    "cancel.request": ("tri", "#f90", "cancel request"),
    "cancel.drain": ("tri", "#e22", "cancel delivered (drain)"),
    "cancel.finalize": ("tri", "#811", "cancel finalized"),
    "cancel.exhausted": ("x", "#e22", "cleanup budget exhausted"),
    "cancel.abandoned": ("x", "#a50", "cancel abandoned"),
    "obligation.reserve": ("dot", "#27c", "obligation reserved"),
    "obligation.commit": ("dot", "#2a2", "obligation committed"),
    "obligation.abort": ("dot", "#a3c", "obligation aborted"),
    "obligation.leak": ("x", "#000", "obligation LEAKED"),
    "region.open": ("bar", "#07a", "region open"),
    "region.close": ("bar", "#555", "region close"),
}
#: events that only delimit what is drawn otherwise (the running bars)
_QUIET = {"task.switch", "task.start", "lab.choice", "region.state"}


def _esc(s: Any) -> str:
    return html.escape(str(s), quote=True)


def _detail(rec: dict) -> str:
    from .show import _summary

    return f"step {rec['seq']} t={rec['t']} — {_summary(rec)}"


def _css_class(kind: str) -> str:
    return kind.replace(".", "-").replace("_", "-")


# -- source lines ---------------------------------------------------------------------


def _internal_dirs() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(runtime folders: greenrt's core, the lab, greenlet, the standard library;
    library folders: greenrt's protocols)."""
    import importlib.util

    import greenlet

    import greenrt

    here = os.path.dirname(os.path.abspath(__file__))
    core = os.path.dirname(os.path.abspath(greenrt.__file__))
    paths = {core, here, os.path.dirname(os.path.abspath(greenlet.__file__))}
    for key in ("stdlib", "platstdlib"):
        p = sysconfig.get_paths().get(key)
        if p:
            paths.add(os.path.abspath(p))
    # greenrt.protocols: a library, not the program (located, not imported)
    spec = importlib.util.find_spec("greenrt.protocols")
    lib = ()
    if spec is not None and spec.origin:
        lib = (os.path.dirname(os.path.abspath(spec.origin)) + os.sep,)
    return (tuple(p + os.sep for p in sorted(paths)), lib)


class SourceLines:
    """An instrument that notes, for each event, the program's source line that led to
    it: the innermost frame outside greenrt's runtime, the lab, greenlet and the
    standard library (and, when that frame is in greenrt's protocols, also the first
    frame outside them). ``lines[seq]`` is ``"path:line in function: code"`` (two such
    parts joined by ``" <- "`` in the protocol case); events the hub emits on its
    own (a timer firing, a scheduling decision) have none. Observes only."""

    def __init__(self) -> None:
        from .runner import _run

        self.lines: dict[int, str] = {}
        self._runtime, self._library = _internal_dirs()
        self._stop = _run.__code__  # frames beyond the run's entry are the lab's caller
        self._kind: dict[str, int] = {}

    def raise_site(self, exc: BaseException) -> str | None:
        """Where ``exc`` was raised in the program: the innermost traceback frame in
        the program's code (or a library's, when none is)."""
        tb = exc.__traceback__
        best = None
        while tb is not None:
            k = self._class(tb.tb_frame.f_code.co_filename)
            if k < 2 and (best is None or k <= best[0]):
                best = (k, tb.tb_frame, tb.tb_lineno)
            tb = tb.tb_next
        if best is None:
            return None
        return self._where(best[1], best[2])

    def _class(self, filename: str) -> int:
        """0: the program, 1: a library (protocols), 2: the runtime."""
        k = self._kind.get(filename)
        if k is None:
            path = os.path.abspath(filename)
            if filename.startswith("<") or path.startswith(self._runtime):
                k = 2
            elif path.startswith(self._library):
                k = 1
            else:
                k = 0
            self._kind[filename] = k
        return k

    def __call__(self, ev) -> None:
        f = sys._getframe(1)
        found: list[Any] = []
        while f is not None:
            code = f.f_code
            if code is self._stop:
                break
            k = self._class(code.co_filename)
            if k == 0:
                found.append(f)
                break
            if k == 1 and not found:
                found.append(f)
            f = f.f_back
        if found:
            self.lines[ev.seq] = " <- ".join(self._where(x) for x in found)

    @staticmethod
    def _where(f, lineno: int | None = None) -> str:
        code = f.f_code
        line = f.f_lineno if lineno is None else lineno
        text = linecache.getline(code.co_filename, line).strip()
        if len(text) > MAX_SOURCE:
            text = text[:MAX_SOURCE] + "…"
        return f"{_short_path(code.co_filename)}:{line} in {code.co_name}: {text}"


def _short_path(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return rel if not rel.startswith(".." + os.sep) else path


# -- the verdict ----------------------------------------------------------------------


@dataclass
class Verdict:
    """What the page says about the run: ``ok``; ``lines`` (each violation, error or
    halt); the failing step (or ``None``); and where the verdict came from."""

    ok: bool
    lines: list[str] = field(default_factory=list)
    failing_step: int | None = None
    source: str = "replay"


def _first_error_step(records: list[dict]) -> int | None:
    for r in records:
        if r["kind"] == "task.complete":
            out = str((r.get("data") or {}).get("outcome", ""))
            if out.startswith("err:") and "Cancelled" not in out:
                return r["seq"]
    return None


def _deadlock_step(records: list[dict]) -> int | None:
    for r in records:
        if r["kind"] == "lab.deadlock":
            return r["seq"]
    return None


def verdict_of_result(res, records: list[dict], where: SourceLines | None = None) -> Verdict:
    """The verdict of a replay's ``LabResult`` (oracles re-checked); ``where`` names
    the line that raised the run's error."""
    from .explorer.judging import leaf_error

    lines = [f"[{v.oracle}] {v.message}" for v in res.violations]
    steps = [v.step for v in res.violations if v.step is not None]
    if res.error is not None and res.halted is None:
        e = leaf_error(res.error)
        site = where.raise_site(e) if where is not None else None
        lines.append(f"error: {type(e).__name__}: {e}" + (f" (raised at {site})" if site else ""))
    if res.halted is not None:
        lines.append(f"halted: {res.halted}")
    if not lines:
        return Verdict(True, ["ok: no error, no oracle violation"], None, "replay")
    step = min(steps) if steps else (_deadlock_step(records) or _first_error_step(records))
    if step is None and res.halted is not None and records:
        step = records[-1]["seq"]
    return Verdict(False, lines, step, "replay")


def verdict_of_trace(records: list[dict], footer: dict | None) -> Verdict:
    """The verdict the trace itself holds: the main task's outcome (footer) and any
    deadlock event. Oracles are not re-checked (that needs a replay)."""
    footer = footer or {}
    outcome = str(footer.get("outcome"))
    lines = []
    dl = _deadlock_step(records)
    if dl is not None:
        lines.append(f"[deadlock] at step {dl}")
    if outcome != "ok":
        lines.append(f"outcome: {outcome}")
    if footer.get("complete") is False and not outcome.startswith("halted:"):
        lines.append("run incomplete")
    if not lines:
        return Verdict(True, ["ok: the main task's outcome is ok (oracles not re-checked)"],
                       None, "trace")
    step = dl if dl is not None else _first_error_step(records)
    if step is None and records:
        step = records[-1]["seq"]
    return Verdict(False, lines, step, "trace")


# -- the page -------------------------------------------------------------------------


def _nice_interval(n: int, target: int = 16) -> int:
    step = 1
    while True:
        for m in (1, 2, 5):
            if n / (step * m) <= target:
                return step * m
        step *= 10


def render_html(header: dict, records: list[dict], footer: dict | None = None, *,
                sources: dict[int, str] | None = None, verdict: Verdict | None = None,
                notes: list[str] | tuple[str, ...] = ()) -> str:
    """The page for a trace (header, event records, footer). ``sources`` maps steps to
    source lines (``SourceLines.lines``); ``verdict`` defaults to ``verdict_of_trace``;
    ``notes`` are shown under the heading."""
    sources = sources or {}
    if verdict is None:
        verdict = verdict_of_trace(records, footer)
    truncated = len(records) > MAX_EVENTS
    recs = records[:MAX_EVENTS]
    n = max(1, len(recs))
    lanes: dict[int, int] = {}
    names: dict[int, str] = {}
    region_owner: dict[int, int | None] = {}
    for r in recs:
        if r["kind"] == "task.spawn" and r.get("task") is not None:
            lanes.setdefault(r["task"], len(lanes))
            names[r["task"]] = str((r.get("data") or {}).get("name", "?"))
        elif r["kind"] == "region.open" and r.get("region") is not None:
            region_owner.setdefault(r["region"], r.get("task"))
    height = AXIS + (len(lanes) + 1) * ROW + 8
    plot: list[str] = []
    left: list[str] = []

    def pct(col: float) -> str:
        return f"{100.0 * col / n:.4f}%"

    def xc(col: int) -> str:
        return pct(col + 0.5)

    def lane_y(tid: int | None) -> int:
        return AXIS + (0 if tid is None or tid not in lanes else (lanes[tid] + 1) * ROW)

    def lane_of(r: dict) -> int | None:
        tid = r.get("task")
        if tid in lanes:
            return tid
        owner = region_owner.get(r.get("region"))  # type: ignore[arg-type]
        return owner if owner in lanes else None

    def title(label: str, r: dict) -> str:
        src = sources.get(r["seq"])
        text = f"{label}: {_detail(r)}" + (f"\nat {src}" if src else "")
        return f"<title>{_esc(text)}</title>"

    # lane names and lane lines
    left.append(f'<text x="6" y="{AXIS - 9}" class="axis-label">step →</text>')
    for tid in [None, *lanes]:
        yy = lane_y(tid) + ROW // 2
        label = "hub" if tid is None else f"T{tid} {names[tid].split('.<locals>.')[-1][:22]}"
        full = "the hub: scheduling, timers, deadlocks, faults" if tid is None else \
            f"task {tid}: {names[tid]}"
        left.append(f'<text x="6" y="{yy + 4}" class="name">{_esc(label)}'
                    f'<title>{_esc(full)}</title></text>')
        plot.append(f'<line x1="0" y1="{yy}" x2="100%" y2="{yy}" class="lane"/>')
    # the step axis
    every = _nice_interval(n)
    plot.append(f'<line x1="0" y1="{AXIS - 4}" x2="100%" y2="{AXIS - 4}" class="axis"/>')
    for col in range(0, n, every):
        x = xc(col)
        seq = recs[col]["seq"] if col < len(recs) else col
        plot.append(f'<line x1="{x}" y1="{AXIS - 8}" x2="{x}" y2="{height}" class="grid"/>')
        plot.append(f'<text x="{x}" y="{AXIS - 11}" class="axis-label" '
                    f'text-anchor="middle">{seq}</text>')
    running: tuple[int, int] | None = None  # (task, column where it started)

    def close_run(col: int) -> None:
        nonlocal running
        if running is not None and running[0] in lanes:
            tid, c0 = running
            last = recs[max(c0, col - 1)]["seq"] if recs else c0
            plot.append(f'<rect x="{pct(c0)}" y="{lane_y(tid) + 8}" '
                        f'width="{pct(max(1, col - c0))}" height="{ROW - 16}" class="run">'
                        f'<title>T{tid} runs, steps {recs[c0]["seq"]}–{last}</title></rect>')
        running = None

    marks: list[str] = []
    for col, r in enumerate(recs):
        k = r["kind"]
        tid = r.get("task")
        x = xc(col)
        if k == "task.switch":
            close_run(col)
            running = (tid, col)
            continue
        if k == "lab.choice" and (r.get("data") or {}).get("what") == "task":
            close_run(col)
            continue
        if k in ("lab.deadlock", "lab.fault"):
            cls = _css_class(k)
            label = "DEADLOCK" if k == "lab.deadlock" else "fault"
            marks.append(f'<line x1="{x}" y1="{AXIS}" x2="{x}" y2="{height}" class="{cls}">'
                         f'{title(label, r)}</line>')
            continue
        if k in _QUIET:
            continue
        lane = lane_of(r)
        yy = lane_y(lane) + ROW // 2
        m = _MARKS.get(k)
        if m is None:
            marks.append(f'<circle cx="{x}" cy="{yy}" r="2.5" class="mark other">'
                         f'{title(k, r)}</circle>')
            continue
        shape, color, label = m
        cls = f"mark {_css_class(k)}"
        t = title(label, r)
        if shape == "tick":
            marks.append(f'<line x1="{x}" y1="{yy - 7}" x2="{x}" y2="{yy + 7}" stroke="{color}" '
                         f'stroke-width="2" class="{cls}">{t}</line>')
        elif shape == "dot":
            marks.append(f'<circle cx="{x}" cy="{yy}" r="4.5" fill="{color}" class="{cls}">'
                         f'{t}</circle>')
        elif shape == "bar":
            marks.append(f'<line x1="{x}" y1="{yy - 12}" x2="{x}" y2="{yy + 12}" '
                         f'stroke="{color}" stroke-width="3" class="{cls}">{t}</line>')
        else:  # a path drawn around (x, yy): nested svg positioned in percent
            if shape == "tri":
                d, paint = "M-5,6 L5,6 L0,-7 Z", f'fill="{color}"'
            elif shape == "x":
                d, paint = "M-5,-5 L5,5 M-5,5 L5,-5", f'stroke="{color}" stroke-width="2.5"'
            else:  # "end"
                d, paint = "M-4,-4 L4,-4 L4,4 L-4,4 Z", f'fill="{color}"'
            marks.append(f'<svg x="{x}" y="{yy}" overflow="visible" class="{cls}">'
                         f'<path d="{d}" {paint}>{t}</path></svg>')
    close_run(len(recs))
    plot.extend(marks)
    fail_note = ""
    if verdict.failing_step is not None:
        col = next((i for i, r in enumerate(recs) if r["seq"] == verdict.failing_step), None)
        if col is None:
            fail_note = (f"<p class=\"note\">the failing step {verdict.failing_step} is past "
                         f"the events drawn</p>")
        else:
            x = xc(col)
            anchor = "end" if col > 0.8 * n else "start"
            dx = -4 if anchor == "end" else 4
            tip = _esc(f"failing step {verdict.failing_step}: " + "; ".join(verdict.lines))
            plot.append(f'<line x1="{x}" y1="{AXIS - 4}" x2="{x}" y2="{height}" '
                        f'class="failing-step" id="failing-step" '
                        f'data-step="{verdict.failing_step}"><title>{tip}</title></line>')
            plot.append(f'<text x="{x}" dx="{dx}" y="{AXIS + 10}" text-anchor="{anchor}" '
                        f'class="failing-step-label">✖ step {verdict.failing_step}'
                        f'<title>{tip}</title></text>')
    legend = " ".join(f'<span class="key"><span style="color:{c}">&#9632;</span> '
                      f'{_esc(label)}</span>' for _, c, label in _MARKS.values())
    footer = footer or {}
    strat = header.get("strategy")
    if isinstance(strat, dict):
        strat = strat.get("name", strat)
    head = (f"{_esc(header.get('entry'))} — seed {_esc(header.get('seed'))}, strategy "
            f"{_esc(strat)}, {len(records)} events, outcome "
            f"{_esc(footer.get('outcome'))}")
    status = "ok" if verdict.ok else "failed"
    vsrc = ("oracles re-checked by a replay" if verdict.source == "replay" else
            "from the trace alone (no replay: oracles not re-checked)")
    vlines = "".join(f"<li>{_esc(x)}</li>" for x in verdict.lines)
    step_txt = (f" — failing step <b>{verdict.failing_step}</b>"
                if verdict.failing_step is not None else "")
    verdict_html = (f'<div class="verdict {status}" id="verdict" data-ok="{str(verdict.ok).lower()}">'
                    f'<b>{"OK" if verdict.ok else "FAILED"}</b>{step_txt} '
                    f'<span class="vsrc">({vsrc})</span><ul>{vlines}</ul></div>')
    all_notes = list(notes)
    if truncated:
        all_notes.append(f"truncated: the first {MAX_EVENTS} of {len(records)} events are drawn")
    notes_html = "".join(f'<p class="note">{_esc(x)}</p>' for x in all_notes) + fail_note
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width\">"
        "<title>greenrt-lab timeline</title><style>"
        "html,body{margin:0;padding:0}body{font:13px sans-serif;padding:10px 12px}"
        "h3{margin:0 0 4px 0}.lane{stroke:#ddd}.grid{stroke:#f0f0f0}.axis{stroke:#999}"
        ".axis-label{font:11px monospace;fill:#555}.name{font:12px monospace}"
        ".run{fill:#bde;stroke:#79b}.other{fill:#bbb}"
        ".lab-deadlock{stroke:#e22;stroke-width:2}.lab-fault{stroke:#c6c;stroke-width:2}"
        ".failing-step{stroke:#d00;stroke-width:2.5;stroke-dasharray:5 3}"
        ".failing-step-label{font:bold 12px sans-serif;fill:#d00}"
        ".verdict{padding:6px 10px;margin:6px 0;border-radius:4px}"
        ".verdict ul{margin:4px 0 0 0;padding-left:20px}.verdict.ok{background:#e6f6e6}"
        ".verdict.failed{background:#fde8e8;border:1px solid #e99}.vsrc{color:#666}"
        ".note{color:#664;margin:2px 0}.legend{margin:6px 0}.key{margin-right:10px}"
        ".chart{display:flex;width:100%;border:1px solid #ccc}"
        ".names{flex:none;background:#fafafa;border-right:1px solid #ddd}"
        ".scroll{flex:1;overflow-x:auto}.plot{display:block}"
        "</style></head><body>"
        f"<h3>greenrt-lab timeline</h3><p>{head}</p>{verdict_html}{notes_html}"
        f"<div class=\"legend\"><span class=\"key\"><span style=\"color:#bde\">&#9632;</span> "
        f"running</span> {legend} <span class=\"key\"><span style=\"color:#bbb\">&#9679;"
        f"</span> other event</span> <span class=\"key\"><span style=\"color:#d00\">┆</span> "
        f"failing step</span></div>"
        f"<div class=\"chart\"><svg class=\"names\" xmlns=\"http://www.w3.org/2000/svg\" "
        f"width=\"{LEFT}\" height=\"{height}\">" + "".join(left) + "</svg>"
        f"<div class=\"scroll\"><svg class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" "
        f"width=\"100%\" height=\"{height}\" style=\"min-width:{n * MIN_COL}px\">"
        + "".join(plot) + "</svg></div></div></body></html>\n")


# -- a trace to a page ----------------------------------------------------------------


@dataclass
class Timeline:
    """A rendered page and what went into it: the verdict, how many events got a
    source line, and the notes shown on the page (why a replay was skipped or failed)."""

    page: str
    verdict: Verdict
    sources: int
    notes: list[str]


def build(trace, *, replay: bool = True, fn=None) -> Timeline:
    """Render a ``lab.trace.Trace``; with ``replay`` (the default) replay it once
    (``fn`` or the header's entry) for source lines and the oracles' verdict. A
    replay that cannot run or diverges is a note on the page, never an error."""
    from .replay import replay as _replay

    notes: list[str] = []
    sources: dict[int, str] = {}
    verdict = None
    if not replay:
        notes.append("not replayed (--no-replay): no source lines; verdict from the trace")
    else:
        inst = SourceLines()
        try:
            res = _replay(trace, fn, instruments=[inst])
        except Exception as e:  # noqa: BLE001 - the page is drawn without the replay
            notes.append(f"replay failed ({type(e).__name__}: {e}): no source lines; "
                         "verdict from the trace")
        else:
            if res.divergence is not None:
                d = res.divergence
                notes.append(f"replay {d}: source lines up to there; verdict from the trace")
                sources = {s: v for s, v in inst.lines.items() if s < d.step}
            else:
                sources = inst.lines
                verdict = verdict_of_result(res, trace.records, inst)
    if verdict is None:
        verdict = verdict_of_trace(trace.records, trace.footer)
    page = render_html(trace.header, trace.records, trace.footer, sources=sources,
                       verdict=verdict, notes=notes)
    return Timeline(page, verdict, len(sources), notes)


def write_html(trace, path: str, *, replay: bool = True, fn=None) -> str:
    """Render a ``lab.trace.Trace`` to ``path`` (see ``build``); return the path."""
    page = build(trace, replay=replay, fn=fn).page
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    return path
