"""What an exploration reports: ``Failure`` and ``ExploreResult``."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Failure:
    """A failing run: its index, what failed, the replay token and its summary."""

    index: int
    signature: list[str]
    token: str
    summary: str
    origin: str = "explore"
    trace_path: str | None = None

    def __str__(self) -> str:
        return (f"run {self.index} ({self.origin}) failed: {', '.join(self.signature)}\n"
                f"  replay: greenrt-lab replay {self.token}")


@dataclass
class ExploreResult:
    """What an exploration found. ``runs`` counts runs reported (up to and including
    the first failure when ``stop_on_failure``); ``classes`` distinct interleaving
    classes among them; ``complete`` is true when a DFS/DPOR tree was exhausted with
    no environment decision and no run reaching the fair tail (``notes`` says why
    not, otherwise)."""

    entry: str
    strategy: str
    seed: int
    runs: int
    failures: list[Failure]
    classes: int
    complete: bool
    redundant: int
    seconds: float
    corpus_replayed: int = 0
    max_steps_seen: int = 0
    class_ids: list[str] = field(default_factory=list, repr=False)
    injected: int = 0
    #: what the exploration noticed about itself: a DPOR witness that found
    #: undeclared sharing, a tree exhausted for one realization of the environment or
    #: up to the fair tail (then ``complete`` is false), workers not usable
    notes: list[str] = field(default_factory=list)
    #: per failure, the strategy (portfolio member) that found it
    found_by: list[str] = field(default_factory=list)
    workers: int = 1
    steps: int = 0  # scheduling steps over every run reported (throughput: steps/seconds)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def first_failure(self) -> Failure | None:
        return self.failures[0] if self.failures else None

    def summary(self, failures: bool = True) -> str:
        """The heading line, the notes and (unless ``failures=False``: the command
        line's ``--all`` prints them grouped instead) one entry per failure."""
        rate = self.runs / self.seconds if self.seconds > 0 else 0.0
        lines = [f"explored {self.entry} with {self.strategy} (seed {self.seed}): "
                 f"{self.runs} runs, {self.classes} interleaving classes"
                 + (", tree complete" if self.complete else "")
                 + (f", {self.redundant} sleep-set-blocked" if self.redundant else "")
                 + (f", {self.injected} injected cancellations" if self.injected else "")
                 + (f", {self.corpus_replayed} corpus tokens replayed" if self.corpus_replayed else "")
                 + f", {rate:.0f} runs/s: " + ("ok" if self.ok else f"{len(self.failures)} FAILED")]
        for n in self.notes:
            lines.append(f"  note: {n}")
        for f in self.failures if failures else ():
            lines.append(str(f))
        return "\n".join(lines)

    def check(self) -> ExploreResult:
        if not self.ok:
            from ..errors import LabFailure

            raise LabFailure(self.summary() + "\n" + self.failures[0].summary)
        return self
