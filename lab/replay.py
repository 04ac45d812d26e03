"""Replay: reproduce a recorded run exactly, or say where it stops matching.

``replay(trace_or_path, fn=None, *args)`` verifies the trace file, rebuilds the hub
from its header (seed, strictness, options), answers every decision with the
recorded choice sequence (``ReplayStrategy``; the seed alone would do for the
``random`` strategy, the sequence also works for strategies that cannot be re-run,
and for shrunk sequences in Lab II), and compares every event the program emits with
the recorded one at the same step. The first difference halts the run at once (at
the next scheduling decision, never inside a task) with ``ReplayDivergence``:
``diverged at step N: expected <recorded record>, got <new record>``. A run that
ends early or goes on past the recorded end diverges too. A faithful replay produces
the same events and therefore the same final hash.

The program comes from ``fn`` or, when omitted, from the header's entry
(``module:qualname``, falling back to the recorded file) with the recorded
arguments; ``load_entry`` also accepts ``path/to/file.py:function``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from typing import Any

from .choice import ReplayStrategy
from .errors import LabError, ReplayDivergence
from .runner import LabResult, _run
from .trace import Trace, event_record, read


def load_entry(spec: str, entry_file: str | None = None):
    """Resolve ``module:qualname`` or ``path/to/file.py:qualname`` to a callable."""
    if ":" not in spec:
        raise LabError(f"program entry must look like module:function, not {spec!r}")
    mod_part, _, qual = spec.rpartition(":")
    if "<locals>" in qual or "<lambda>" in qual:
        raise LabError(f"{spec} is a local function: it cannot be loaded by name "
                       "(pass fn= to replay)")
    module = None
    if mod_part.endswith(".py") or os.sep in mod_part or "/" in mod_part:
        module = _load_file(mod_part)
    else:
        try:
            module = importlib.import_module(mod_part)
        except ImportError as e:
            if entry_file and os.path.exists(entry_file):
                module = _load_file(entry_file)
            else:
                raise LabError(import_hint(spec, mod_part, qual, e)) from None
        else:
            if entry_file and os.path.exists(entry_file) and not hasattr(module, qual.split(".")[0]):
                module = _load_file(entry_file)
    obj: Any = module
    for part in qual.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise LabError(f"{spec}: {part!r} not found") from None
    if not callable(obj):
        raise LabError(f"{spec} is not callable")
    return obj


def import_hint(spec: str, mod_part: str, qual: str, e: ImportError) -> str:
    """What to say when ``module:function`` cannot be imported: how to fix it."""
    missing = getattr(e, "name", None)
    if isinstance(e, ModuleNotFoundError) and missing and (
            mod_part == missing or mod_part.startswith(missing + ".")):
        msg = (f"cannot import {mod_part!r} for {spec}: no module named {missing!r} on "
               f"sys.path. Run from the folder that holds it with PYTHONPATH=. "
               f"(PYTHONPATH=. greenrt-lab ...), install it, or name the file instead: "
               f"path/to/file.py:{qual}")
        cand = mod_part.replace(".", os.sep) + ".py"
        if os.path.exists(cand):
            msg += f" (here: {cand}:{qual})"
        return msg
    return (f"importing {mod_part!r} for {spec} failed inside the module: "
            f"{type(e).__name__}: {e}")


def _load_file(path: str):
    path = os.path.abspath(path)
    if not os.path.exists(path):
        raise LabError(f"no such program file: {path}")
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    name = f"_lab_entry_{stem}"
    existing = sys.modules.get(name)
    if existing is not None and getattr(existing, "__file__", None) == path:
        return existing
    d = os.path.dirname(path)
    if d not in sys.path:
        sys.path.insert(0, d)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise LabError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class _Comparator:
    """Compares each emitted event with the recorded one; the first mismatch halts."""

    def __init__(self, hub, expected: list[dict[str, Any]]):
        self.hub = hub
        self.expected = expected
        self.divergence: ReplayDivergence | None = None

    def __call__(self, ev) -> None:
        if self.divergence is not None:
            return
        got = event_record(ev)
        exp = self.expected[ev.seq] if ev.seq < len(self.expected) else None
        if got != exp:
            from .hub import LabHalt

            self.divergence = ReplayDivergence(ev.seq, exp, got)
            if self.hub._halt is None:
                self.hub._halt = LabHalt("divergence", self.divergence)


def replay(source: Trace | str | os.PathLike, fn=None, *args: Any,
           key: bytes | None = None, check: bool = False, instruments=()) -> LabResult:
    """Replay a trace (a ``Trace`` or a file, verified first). Returns the
    ``LabResult`` of the replay with ``divergence`` set if it did not reproduce the
    recorded run; ``check=True`` raises the ``ReplayDivergence`` instead.

    ``instruments`` are attached to the replay's hub and see every event as it is
    emitted, after the comparison with the recorded one (``greenrt-lab timeline``
    uses one to learn each step's source line); they only observe."""
    trace = source if isinstance(source, Trace) else read(source, key)
    h = trace.header
    if fn is None:
        fn = load_entry(h["entry"], h.get("entry_file"))
        if not h.get("args_replayable", True):
            raise LabError(f"{h['entry']} was run with arguments that are not plain JSON: "
                           "pass fn and its arguments to replay()")
        args = tuple(h.get("args") or ())
    o = h.get("options", {})
    expected = trace.records
    comparators: list[_Comparator] = []

    def factory(hub):
        c = _Comparator(hub, expected)
        comparators.append(c)
        return c

    net = o.get("net")
    if net is not None:
        from .net import NetConfig

        net = NetConfig.from_dict(net)
    res = _run(fn, tuple(args), seed=h["seed"], record=None, strict=h.get("strict", True),
               strategy=ReplayStrategy(trace.choices()), disable=tuple(o.get("disable", ())),
               net=net, max_steps=o.get("max_steps"), max_time=o.get("max_time"),
               leak_policy=o.get("leak_policy", "error"), instruments=tuple(instruments),
               trace=True,
               entry=None, header=dict(h), checker_factory=factory, key=trace.key)
    if res.divergence is None:
        got = res.trace.records if res.trace is not None else []
        if len(got) < len(expected):
            res.divergence = ReplayDivergence(len(got), expected[len(got)], None)
        elif res.trace is not None and res.trace.final_hash != trace.final_hash:
            res.divergence = ReplayDivergence(len(got), None, None,
                                              "same events but a different final hash")
    if check and res.divergence is not None:
        raise res.divergence
    return res
