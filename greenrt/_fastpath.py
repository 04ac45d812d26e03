"""The hub's fast paths, written once.

Every blocking call and every checkpoint goes through the hub, and the general path
(``Hub._schedule``, ``Hub._handoff``, ``park``, ``_enter``) costs several Python
calls. The common case is much simpler, so the runtime's hottest sites carry an
inlined copy of it. This module holds the one source text of each copy; the sites
hold verbatim copies between marker comments::

    # fastpath <name>: copied from greenrt/_fastpath.py (python -m greenrt._fastpath --write)
    ...
    # end fastpath <name>

``python -m greenrt._fastpath`` checks every copy against its template (and
``--write`` rewrites the copies); ``tests/greenrt/test_fastpath.py`` runs the check,
so a copy edited by hand fails the suite. The same test fails if the hub's lane and
countdown fields are written outside a template copy or the general path.

The rule: when a fast path applies
----------------------------------
A fast path is taken only when it provably does what the general path would do.

* **The hub's scheduling is the base class's own, untraced** (``hub._plain``: the
  hub class sets ``_fast_paths`` because it overrides none of ``_schedule``,
  ``_pick``, ``_handoff``, and no instrument is attached, so there is no trace event
  to emit). The lab hub never has ``_plain`` set and always takes the general path.
* **The task concerned is plain**: not already queued (the general path raises
  ``InvariantViolation`` for that), no pending cancellation (``_pending``), no
  cleanup drain (``_drains``). Such a task belongs in the ready lane, or, under an
  effective deadline (``_scope._deadline_eff``), in the timed lane: ``reschedule``
  pushes it there exactly as ``Hub._schedule`` does; ``schedule`` and ``yield``
  leave a task under a deadline to the general path.
* **For a switch, ``_pick``'s choice is known**: the cancel lane is empty; the poll
  countdown would stay above zero (``_poll_countdown - 1 > 0``), so it is not time to
  poll; then ``handoff`` and ``park`` take the head of the timed lane when ``_pick``
  would (its streak is below ``streak_limit`` or the ready lane is empty, with the
  same streak bookkeeping), else the head of the ready lane when the timed lane is
  empty, both streaks then starting again from zero as in ``_pick`` (``yield`` and
  ``run_in_place`` require both other lanes empty); and the task
  switched to already has a greenlet (a brand-new greenlet is started from the hub
  greenlet, the general path).
* **The check half of a checkpoint** (``enter``) has nothing to do when the task has
  nothing to charge (no drain, no quota chain), nothing to deliver (no pending
  cancellation) and nothing to trace. It does not touch the lanes, so it needs no
  ``_plain``.

In effect a fast path equals the general path: the same lanes and ``_queued`` flags,
the same ``hub.current``, and the poll countdown lowered by exactly one for every
hand-off of control (or for every yield that keeps running the only runnable task).
Whenever one condition fails the copy falls back to the general path *without having
changed anything*, so nothing is counted twice.

Writing a template: the body (after the docstring) is what gets copied, with the
same local names at every site; the site binds the parameters as locals first. A
trailing ``return NAME`` is not copied: it names the local the site reads afterwards.
Nothing imports this module at run time.
"""

from __future__ import annotations

import ast
import os
import re
import sys
import textwrap
from heapq import heappop as _heappop
from heapq import heappush as _heappush
from typing import Any

from ._checkpoint import _enter, _park_slow, _raise_resume
from ._exceptions import InvariantViolation
from ._hub import _CANCEL, Hub, _Raise

# -- the templates --------------------------------------------------------------------


def schedule(hub: Any, task: Any) -> None:
    """Put a runnable task in its lane (``Hub._schedule``'s ready-lane case)."""
    if hub._plain and not (task._queued or task._pending or task._drains
                           or task._scope._deadline_eff is not None):
        task._queued = True
        hub._ready.append(task)
    else:
        hub._schedule(task)


def reschedule(hub: Any, task: Any, value: Any) -> None:
    """Wake a parked task with ``value`` (``Hub.reschedule``): into the ready lane, or
    the timed lane (earliest deadline first) for a task under a deadline."""
    if task._abort_fn is None:
        raise InvariantViolation(f"task {task.id} ({task.name}) woken but not parked")
    task._abort_fn = None
    task._resume = value
    if hub._plain and not (task._queued or task._pending or task._drains):
        task._queued = True
        sc = task._scope
        d = sc._deadline_eff
        if d is None:
            hub._ready.append(task)
        else:
            hub._timed_seq = tq = hub._timed_seq + 1
            _heappush(hub._timed, (d, -(sc._priority or 0), tq, task))
    else:
        hub._schedule(task)


def enter(hub: Any) -> Any:
    """The check half of a checkpoint; binds ``task`` to the current task."""
    task = hub.current
    if task is None or task._drains or task._pending or task._scope._quota_chain or hub._tracing:
        task = _enter(hub)
    return task


def yield_(hub: Any, task: Any) -> None:
    """The yield half of a checkpoint for the running ``task`` (``Hub._yield_task``):
    requeue it and switch straight to the next ready task. Does not read
    ``task._resume``; the site does."""
    if hub._plain and not (task._queued or hub._cancel_lane or hub._timed
                           or task._scope._deadline_eff is not None):
        cd = hub._poll_countdown - 1
        ready = hub._ready
        if cd <= 0:
            hub._schedule(task)
            hub._handoff()
        elif not ready:
            hub._cancel_streak = hub._timed_streak = 0
            hub._poll_countdown = cd  # the only runnable task: keep running
        else:
            nxt = ready[0]
            glet = nxt._glet
            if glet is None:
                hub._schedule(task)
                hub._handoff()
            else:
                ready.popleft()
                ready.append(task)
                task._queued = True
                hub._cancel_streak = hub._timed_streak = 0
                nxt._queued = False
                hub._poll_countdown = cd
                hub.current = nxt
                glet.switch()
    else:
        hub._schedule(task)
        hub._handoff()


def park_(hub: Any, task: Any, abort: Any, what: Any) -> Any:
    """``park(abort, what)`` for the running ``task``; binds ``r`` to the value it
    was woken with. The hand-off is ``handoff``'s, inlined (one call less a park)."""
    if task._pending:
        r = _park_slow(abort, what)  # may have to abort at once: the general path
    else:
        task._abort_fn = abort
        task.waiting_for = what
        nxt = None
        if hub._plain and not hub._cancel_lane:
            cd = hub._poll_countdown - 1
            if cd > 0:
                timed = hub._timed
                ready = hub._ready
                if timed:
                    if hub._timed_streak < hub.streak_limit or not ready:
                        nxt = timed[0][3]
                        if nxt._glet is None:
                            nxt = None
                        else:
                            _heappop(timed)
                            hub._cancel_streak = 0
                            hub._timed_streak += 1
                elif ready and ready[0]._glet is not None:
                    nxt = ready.popleft()
                    hub._cancel_streak = hub._timed_streak = 0
                if nxt is not None:
                    hub._poll_countdown = cd
                    nxt._queued = False
                    hub.current = nxt
                    nxt._glet.switch()
        if nxt is None:
            hub._handoff()
        r = task._resume
        if r is not None:
            task._resume = None
            if r is _CANCEL or type(r) is _Raise:
                _raise_resume(task, r)
    return r


def handoff(hub: Any) -> Any:
    """``Hub._handoff``: give up control, switching straight to the next task of the
    timed lane (``_pick``'s choice: the cancel lane is empty, the timed lane's streak
    is not spent) or of the ready lane."""
    if hub._plain and not hub._cancel_lane:
        cd = hub._poll_countdown - 1
        if cd > 0:
            timed = hub._timed
            ready = hub._ready
            if timed:
                if hub._timed_streak < hub.streak_limit or not ready:
                    nxt = timed[0][3]
                    glet = nxt._glet
                    if glet is not None:
                        _heappop(timed)
                        hub._cancel_streak = 0
                        hub._timed_streak += 1
                        hub._poll_countdown = cd
                        nxt._queued = False
                        hub.current = nxt
                        return glet.switch()
            elif ready:
                nxt = ready[0]
                glet = nxt._glet
                if glet is not None:
                    ready.popleft()
                    hub._cancel_streak = hub._timed_streak = 0
                    hub._poll_countdown = cd
                    nxt._queued = False
                    hub.current = nxt
                    return glet.switch()
    return Hub._handoff(hub)


def run_in_place(hub: Any, me: Any) -> Any:
    """On a worker greenlet ``me`` whose task finished: take the next ready task if
    it has not started yet, to run it on this greenlet with no switch at all. Binds
    ``task`` (``None`` when the general path must decide)."""
    task = None
    if hub._plain and not (hub._cancel_lane or hub._timed):
        cd = hub._poll_countdown - 1
        ready = hub._ready
        if cd > 0 and ready and ready[0]._glet is None:
            task = ready.popleft()
            hub._cancel_streak = hub._timed_streak = 0
            hub._poll_countdown = cd
            task._queued = False
            hub.current = task
            task._glet = me
            me.gr_context = task._context
    return task


TEMPLATES = {f.__name__.rstrip("_"): f for f in
             (schedule, reschedule, enter, yield_, park_, handoff, run_in_place)}

#: where the copies are: (file under greenrt/, template) -> number of copies. A copy
#: added or removed must be listed here, so one cannot silently fall out of the check.
SITES: dict[tuple[str, str], int] = {
    ("_hub.py", "reschedule"): 1,      # RealHub.reschedule
    ("_hub.py", "yield"): 1,           # RealHub._yield_task
    ("_hub.py", "handoff"): 1,         # RealHub._handoff
    ("_checkpoint.py", "enter"): 2,    # checkpoint(), checkpoint_if_cancelled()
    ("_checkpoint.py", "yield"): 1,    # checkpoint()
    ("_checkpoint.py", "park"): 1,     # park()
    ("_checkpoint.py", "reschedule"): 1,  # reschedule()
    ("_region.py", "schedule"): 1,     # Region.spawn
    ("_task.py", "run_in_place"): 1,   # _worker_main
    ("_driver.py", "park"): 2,         # wait_readable, wait_writable
    ("_driver.py", "reschedule"): 1,   # EpollDriver.poll, a woken reader
    ("sync.py", "park"): 2,            # _WaitQueue.wait, _WaitMap.wait
    ("sync.py", "reschedule"): 2,      # _WaitQueue.wake_first, _WaitMap.wake
    ("sync.py", "enter"): 2,           # Lock.acquire, Event.wait
    ("lowlevel.py", "enter"): 3,       # WaitQueue.park, WaitMap.park, enter_checkpoint
    ("channel.py", "enter"): 3,        # Sender.reserve, Sender.send, Receiver.recv
}

# -- rendering and checking ----------------------------------------------------------

_PKG = os.path.dirname(os.path.abspath(__file__))
_BEGIN = re.compile(r"^(?P<indent>[ ]*)# fastpath (?P<name>\w+):.*$")
_END = re.compile(r"^[ ]*# end fastpath (?P<name>\w+)\s*$")


def render(name: str) -> list[str]:
    """The lines of template ``name``'s copy, dedented (see the module docstring)."""
    fn = TEMPLATES[name]
    with open(__file__, encoding="utf-8") as f:
        src = f.read()
    lines = src.splitlines()
    node = next(n for n in ast.parse(src).body
                if isinstance(n, ast.FunctionDef) and n.name == fn.__name__)
    body = node.body
    if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    last = body[-1]
    end = last.end_lineno
    if isinstance(last, ast.Return) and isinstance(last.value, ast.Name):
        body = body[:-1]
        end = body[-1].end_lineno
    text = "\n".join(lines[body[0].lineno - 1:end])
    return textwrap.dedent(text).splitlines()


def marker(name: str) -> str:
    return (f"# fastpath {name}: copied from greenrt/_fastpath.py "
            f"(python -m greenrt._fastpath --write)")


def find_copies(path: str) -> list[tuple[str, int, int, str]]:
    """``(name, begin, end, indent)`` for every marked copy in ``path`` (line indexes
    of the two marker lines). Raises ``ValueError`` for unbalanced markers."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    out = []
    open_ = None
    for i, line in enumerate(lines):
        m = _BEGIN.match(line)
        if m:
            if open_ is not None:
                raise ValueError(f"{path}:{i + 1}: fastpath copy opened inside another")
            open_ = (m["name"], i, m["indent"])
            continue
        m = _END.match(line)
        if m:
            if open_ is None or open_[0] != m["name"]:
                raise ValueError(f"{path}:{i + 1}: 'end fastpath {m['name']}' without its start")
            out.append((open_[0], open_[1], i, open_[2]))
            open_ = None
    if open_ is not None:
        raise ValueError(f"{path}:{open_[1] + 1}: fastpath {open_[0]} is never closed")
    return out


def _expected(name: str, indent: str) -> list[str]:
    return [indent + marker(name)] + [(indent + ln) if ln else "" for ln in render(name)]


def check(write: bool = False, pkg: str = _PKG) -> list[str]:
    """Compare every copy in the package directory ``pkg`` with its template; return
    the problems found (an empty list when all copies match and ``SITES`` is right).
    With ``write``, rewrite the copies first (markers stay where they are)."""
    problems = []
    counts: dict[tuple[str, str], int] = {}
    for fname in sorted(os.listdir(pkg)):
        if not fname.endswith(".py") or fname == "_fastpath.py":
            continue
        path = os.path.join(pkg, fname)
        try:
            copies = find_copies(path)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if not copies:
            continue
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        new = list(lines)
        for name, b, e, indent in reversed(copies):
            counts[(fname, name)] = counts.get((fname, name), 0) + 1
            if name not in TEMPLATES:
                problems.append(f"{fname}:{b + 1}: no template named {name!r}")
                continue
            want = _expected(name, indent)
            if lines[b:e] != want:
                if write:
                    new[b:e] = want
                else:
                    got = lines[b + 1:e]
                    diff = next((j for j, (x, y) in enumerate(zip(got, want[1:], strict=False))
                                 if x != y), min(len(got), len(want) - 1))
                    problems.append(f"{fname}:{b + 2 + diff}: fastpath {name} copy differs "
                                    f"from greenrt/_fastpath.py")
        if write and new != lines:
            with open(path, "w", encoding="utf-8") as f:
                f.write("\n".join(new) + "\n")
    for key in sorted(set(SITES) | set(counts)):
        if SITES.get(key, 0) != counts.get(key, 0):
            problems.append(f"{key[0]}: {counts.get(key, 0)} copies of fastpath {key[1]}, "
                            f"SITES says {SITES.get(key, 0)}")
    return problems


def main(argv: list[str]) -> int:
    problems = check(write="--write" in argv)
    for p in problems:
        sys.stderr.write(p + "\n")  # a developer tool, not runtime code
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
