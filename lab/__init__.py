"""greenrt's deterministic lab: virtual time, seeded scheduling, simulated network,
oracles, hash-chained traces and exact replay.

Run a program::

    result = lab.run(main, seed=7, record="run.jsonl")
    result.check()            # raises LabFailure listing every oracle verdict

then ``greenrt-lab replay run.jsonl`` reproduces it exactly, ``greenrt-lab verify``
checks the file's hash chain and ``greenrt-lab show`` prints a per-task timeline.
See ``docs/lab.md``.
"""

from __future__ import annotations

from typing import Any

from .choice import IndexReplayStrategy, PCTStrategy, RandomStrategy, ReplayStrategy, Strategy
from .errors import LabError, LabFailure, NondeterminismError, ReplayDivergence, TraceError
from .hub import LabHub
from .oracles import ORACLES, Violation
from .replay import load_entry, replay
from .runner import LabResult, check_determinism, first_difference, rng, run
from .shared import access, shared
from .trace import Trace, verify

__version__ = "0.1.0"

__all__ = [
    "ExploreResult", "FaultPlan", "IndexReplayStrategy", "PCTStrategy", "access", "explore",
    "replay_token", "shared", "shrink",
    "LabError", "LabFailure", "LabHub", "LabResult", "NondeterminismError", "ORACLES",
    "RandomStrategy", "ReplayDivergence", "ReplayStrategy", "Strategy", "Trace",
    "TraceError", "Violation", "check_determinism", "first_difference", "load_entry",
    "net", "replay", "rng", "run", "verify",
]


def __getattr__(name: str) -> Any:
    """The names imported lazily (``net`` needs ``greenrt.net``; the explorer and
    shrinking pull in more than ``lab.run`` needs). Each is cached in the module's
    namespace, and no lazily provided name is also the name of a submodule (the
    shrinker lives in ``greenrt.lab.shrinking``), so a name is the same object on
    every access, whichever submodules were imported in between."""
    import importlib

    if name == "net":
        value: Any = importlib.import_module(".net", __name__)
    elif name in ("explore", "ExploreResult", "replay_token"):
        value = getattr(importlib.import_module(".explorer", __name__), name)
    elif name == "FaultPlan":
        value = importlib.import_module(".faults", __name__).FaultPlan
    elif name == "shrink":
        value = importlib.import_module(".shrinking", __name__).shrink
    else:
        raise AttributeError(f"module 'greenrt.lab' has no attribute {name!r}")
    globals()[name] = value
    return value
