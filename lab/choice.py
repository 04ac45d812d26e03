"""The seeded choice stream: every decision the lab makes comes from here.

The lab hub never consults ``random``, ``id()``, hash order or the wall clock. Each
time it has to decide something — which of several runnable tasks runs next, in which
order timers that are due at the same instant fire, how long a simulated packet takes,
whether a datagram is dropped — it asks its *strategy* ``choose(what, n)`` for an
index in ``range(n)``. A decision with one alternative is not a choice and is never
asked for. The sequence of ``(what, n, index)`` triples is recorded in the trace as
``lab.choice`` events, so a run can be reproduced either from the seed or from the
recorded sequence alone (``ReplayStrategy``), which is what makes shrinking and replay
tokens (Lab II) possible: they edit or truncate this sequence.

Strategies (Lab II adds PCT, bounded DFS and DPOR here) implement ``Strategy``:
``choose(what, n, ids)`` where ``ids`` are the candidate task ids for a scheduling
decision (``what == "task"``) and ``None`` otherwise, and ``describe()`` for the
trace header. ``what`` values used by Lab I: ``"task"``, ``"timer"``, ``"net.delay"``,
``"net.drop"``, ``"net.reset"``.

Invariant: a strategy's answers depend only on its parameters and the sequence of
questions, never on anything outside the run.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any


class Strategy:
    """Base class: answer ``choose(what, n, ids) -> int`` in ``range(n)``."""

    name = "base"

    def choose(self, what: str, n: int, ids: Sequence[int] | None = None) -> int:  # pragma: no cover
        raise NotImplementedError

    def random_float(self, what: str) -> float:
        """A float in [0, 1) for continuous parameters (jitter). Built on ``choose``
        so that replay reproduces it from the recorded index."""
        return self.choose(what, 1 << 20) / float(1 << 20)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


class RandomStrategy(Strategy):
    """Uniform random choices from a ``random.Random`` seeded with ``seed`` (an int;
    ``random.Random(int)`` gives the same stream on every platform and process,
    independent of ``PYTHONHASHSEED``)."""

    name = "random"

    def __init__(self, seed: int):
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError(f"seed must be an int, not {type(seed).__name__}")
        self.seed = seed
        self._rng = random.Random(seed)

    def choose(self, what: str, n: int, ids: Sequence[int] | None = None) -> int:
        # ``random.Random.randrange(n)`` inlined: for ``n > 0`` it is
        # ``_randbelow_with_getrandbits(n)`` (getrandbits(n.bit_length()) until the
        # draw is below ``n``) on every supported Python, so the stream of answers is
        # the same draw for draw (tests/lab/test_choice_perf.py checks it).
        if n <= 0:
            return self._rng.randrange(n)  # raises ValueError as randrange does
        getrandbits = self._rng.getrandbits
        k = n.bit_length()
        r = getrandbits(k)
        while r >= n:
            r = getrandbits(k)
        return r

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed}


class ReplayStrategy(Strategy):
    """Answer with a recorded sequence of ``(what, n, index)`` choices.

    A question that does not match the next recorded one (another ``what`` or another
    ``n``) means the program no longer makes the same decisions: ``ReplayDivergence``
    is raised by the hub at the next scheduling point (``step`` is the event index
    the choice would have been recorded at). Running past the end of the sequence is a
    divergence too, unless ``extend`` is given: then further questions are answered by
    that strategy (Lab II uses this to replay a prefix and explore the rest).
    """

    name = "replay"

    def __init__(self, choices: Sequence[tuple[str, int, int]], extend: Strategy | None = None):
        self.choices = list(choices)
        self.pos = 0
        self.extend = extend
        self.mismatch: str | None = None

    def choose(self, what: str, n: int, ids: Sequence[int] | None = None) -> int:
        if self.pos >= len(self.choices):
            if self.extend is not None:
                return self.extend.choose(what, n, ids)
            self.mismatch = (f"choice #{self.pos} ({what} among {n}) is past the end of the "
                             f"recorded {len(self.choices)} choices")
            return 0
        w, rn, i = self.choices[self.pos]
        self.pos += 1
        if w != what or rn != n or not 0 <= i < n:
            self.mismatch = (f"choice #{self.pos - 1}: recorded {w} among {rn} -> {i}, "
                             f"now asked {what} among {n}")
            return 0 if not 0 <= i < n else i
        return i

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "choices": len(self.choices)}


def make_strategy(spec: Strategy | str | None, seed: int) -> Strategy:
    """``None`` or ``"random"`` -> ``RandomStrategy(seed)``; a Strategy is used as is."""
    if spec is None or spec == "random":
        return RandomStrategy(seed)
    if isinstance(spec, Strategy):
        return spec
    raise ValueError(f"unknown strategy {spec!r} (Lab I knows 'random')")



class IndexReplayStrategy(Strategy):
    """Answer with a list of indices (replay tokens, shrinking).

    ``strict``: an index out of range for the question, or a question past the end,
    is a divergence (``mismatch``; the hub halts the run). Lenient: an index is
    clamped to ``n - 1`` and questions past the end get ``extend``'s answer, else the
    *calm* answer; an index of ``-1`` also means the calm answer: for a task pick,
    the task that ran the previous step if it is a candidate (no preemption), else
    the first candidate; 0 for other decisions. That is how shrinking edits a
    sequence and still gets a complete run.
    """

    name = "replay"

    def __init__(self, indices: Sequence[int], *, strict: bool = True,
                 extend: Strategy | None = None):
        self.indices = list(indices)
        self.pos = 0
        self.strict = strict
        self.extend = extend
        self.mismatch: str | None = None
        self.hub = None

    def bind(self, hub) -> None:
        self.hub = hub

    def _calm(self, what: str, ids: Sequence[int] | None) -> int:
        st = getattr(self.hub, "_step", None)
        if what == "task" and ids is not None and st is not None and st.task in ids:
            return list(ids).index(st.task)
        return 0

    def choose(self, what: str, n: int, ids: Sequence[int] | None = None) -> int:
        pos = self.pos
        self.pos += 1
        if pos >= len(self.indices):
            if self.extend is not None:
                return self.extend.choose(what, n, ids)
            if self.strict and self.mismatch is None:
                self.mismatch = (f"choice #{pos} ({what} among {n}) is past the end of the "
                                 f"{len(self.indices)} recorded choices")
            return self._calm(what, ids)
        i = self.indices[pos]
        if i < 0:
            if self.strict and self.mismatch is None:
                self.mismatch = f"choice #{pos}: negative index {i}"
            return self._calm(what, ids)
        if i >= n:
            if self.strict and self.mismatch is None:
                self.mismatch = f"choice #{pos}: recorded index {i}, but {what} has only {n}"
            return n - 1
        return i

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "choices": len(self.indices), "strict": self.strict}


class PCTStrategy(Strategy):
    """Probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010), depth ``d``.

    Every task gets a random initial priority ``>= d`` when it first becomes
    runnable; ``d - 1`` *change points* are drawn uniformly from ``1..steps``; the
    scheduler always runs the runnable task of highest priority, and when the run
    passes the ``i``-th change point the task that ran the step gets priority ``i``
    (below every initial priority). Guarantee: for a bug of depth ``d`` (``d``
    ordering constraints must hold for it to show) in a program with ``n`` tasks and
    ``k`` steps, one run finds it with probability at least ``1 / (n * k**(d-1))``.
    ``tasks``/``steps`` are estimates (``lab.explore`` measures them with a first
    run). Other decisions (timer ties, network) are uniform from the same seeded
    stream.

    ``fair_after``: from that many scheduling steps on, the runnable task that was
    picked least recently runs (a fair tail, as in Coyote's fair PCT), so a correct
    spin-wait ends and only a real livelock reaches the step limit. The guarantee
    above holds for bugs within the first ``fair_after`` steps.
    """

    name = "pct"

    def __init__(self, seed: int, depth: int = 3, tasks: int = 2, steps: int = 100,
                 fair_after: int | None = None):
        if depth < 1:
            raise ValueError("PCT depth must be >= 1")
        self.seed = seed
        self.depth = depth
        self.tasks = max(1, tasks)
        self.steps = max(1, steps)
        self._rng = random.Random(seed)
        k = min(depth - 1, self.steps)
        self.change = sorted(self._rng.sample(range(1, self.steps + 1), k))
        self._ci = 0
        self.prio: dict[int, float] = {}
        self._last: int | None = None
        self.hub = None
        self.fair = FairTail(fair_after)

    def bind(self, hub) -> None:
        self.hub = hub

    def choose(self, what: str, n: int, ids: Sequence[int] | None = None) -> int:
        rng = self._rng
        if what != "task" or ids is None:
            return rng.randrange(n)
        hub = self.hub
        step = hub.steps if hub is not None else 0
        if self.fair.active(step):
            return self.fair.pick(ids)
        last = self._last
        st = getattr(hub, "_step", None)
        if st is not None:
            last = st.task
        while self._ci < len(self.change) and self.change[self._ci] <= step:
            self._ci += 1
            if last is not None:
                self.prio[last] = float(self._ci)
        prio = self.prio
        best = -1
        bp = -1.0
        for j, t in enumerate(ids):
            p = prio.get(t)
            if p is None:
                p = prio[t] = self.depth + rng.random()
            if p > bp:
                best, bp = j, p
        self._last = ids[best]
        self.fair.ran(ids[best])
        return best

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed, "depth": self.depth,
                "tasks": self.tasks, "steps": self.steps, "fair_after": self.fair.after}


class FairTail:
    """A fair answer to scheduling decisions after ``after`` steps (``None``: never).

    ``pick(ids)`` runs the candidate that was picked least recently (never picked
    first, then by position): every task that stays runnable runs within ``n`` picks,
    which is the fairness a livelock verdict needs (a schedule that starves a runnable
    task is not evidence of a livelock). ``ran(tid)`` records a pick made otherwise.
    """

    __slots__ = ("after", "clock", "last")

    def __init__(self, after: int | None):
        self.after = after
        self.clock = 0
        self.last: dict[int, int] = {}

    def active(self, step: int) -> bool:
        return self.after is not None and step > self.after

    def ran(self, tid: int) -> None:
        self.clock += 1
        self.last[tid] = self.clock

    def pick(self, ids: Sequence[int]) -> int:
        last = self.last
        best = min(range(len(ids)), key=lambda j: (last.get(ids[j], 0), j))
        self.ran(ids[best])
        return best
