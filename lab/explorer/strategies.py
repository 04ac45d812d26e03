"""Strategy specifications and the runs they make: ``parse_strategy``, per-run seeds
(``derive_seed``) and ``RunSpec`` (what one run does)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from ..choice import IndexReplayStrategy, PCTStrategy, RandomStrategy, Strategy
from ..errors import LabError
from .injection import Inject


def derive_seed(seed: int, i: int) -> int:
    """The seed of run ``i`` of an exploration with ``seed`` (same on every platform)."""
    d = hashlib.sha256(f"greenrt-lab/{seed}/{i}".encode()).digest()
    return int.from_bytes(d[:6], "big")


#: After this many scheduling steps a run's remaining decisions are answered *fairly*
#: (the runnable task that has waited longest runs), so a correct spin-wait
#: (``while not ready: checkpoint()``) terminates under every strategy and a
#: ``halted:step_limit`` verdict comes only from a schedule fair to every task: a real
#: livelock. Musuvathi & Qadeer, "Fair stateless model checking" (PLDI 2008); Coyote's
#: fair PCT switches to a fair tail after a bound the same way.
FAIR_AFTER = 5_000

STRATEGIES = ("random", "pct:d", "dfs[:bound]", "dpor", "dpor:declared", "portfolio")


def parse_strategy(spec: str | None) -> tuple[str, int | str | None]:
    """``"random"``, ``"pct:3"``, ``"dfs"``, ``"dfs:2"``, ``"dpor"``, ``"dpor:declared"``,
    ``"portfolio"`` (also ``None``) -> (name, param)."""
    if spec is None:
        return "portfolio", None
    if not isinstance(spec, str):
        raise ValueError(f"strategy must be a string, not {type(spec).__name__}")
    name, _, p = spec.partition(":")
    if name not in ("random", "pct", "dfs", "dpor", "portfolio"):
        raise ValueError(f"unknown strategy {spec!r} ({', '.join(STRATEGIES)})")
    if p:
        if name == "dpor" and p == "declared":
            return name, "declared"
        if name in ("random", "dpor", "portfolio"):
            raise ValueError(f"strategy {name} takes no parameter"
                             + (" (but 'dpor:declared')" if name == "dpor" else ""))
        try:
            v = int(p)
        except ValueError:
            raise ValueError(f"bad parameter in {spec!r}") from None
        if v < (1 if name == "pct" else 0) or v > 64:
            raise ValueError(f"parameter out of range in {spec!r}")
        return name, v
    return name, (3 if name == "pct" else None)


@dataclass
class RunSpec:
    """What one run does: its index, strategy, and optional injection."""

    index: int
    kind: str  # random | pct | indices | dfs | dpor
    seed: int
    params: dict[str, Any] = field(default_factory=dict)
    inject: Inject | None = None
    origin: str = "explore"  # explore | corpus
    member: str | None = None  # the portfolio member that made this run

    def strategy(self) -> Strategy:
        if self.kind == "random":
            return RandomStrategy(self.seed)
        if self.kind == "pct":
            p = self.params
            return PCTStrategy(self.seed, p["depth"], p["tasks"], p["steps"],
                               fair_after=p.get("fair_after", FAIR_AFTER))
        if self.kind == "indices":
            return IndexReplayStrategy(self.params["choices"], strict=self.params.get("strict", True))
        raise LabError(f"unknown run kind {self.kind!r}")

    def label(self) -> str:
        if self.member is not None:
            return self.member
        if self.kind == "pct":
            return f"pct:{self.params['depth']}"
        return self.kind
