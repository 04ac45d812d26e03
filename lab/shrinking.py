"""Shrinking a failing run: a shorter, calmer schedule that fails the same way.

``shrink(token)`` re-runs edited versions of the token's choice sequence and keeps
an edit when the run still fails with the token's *primary* failure (the first entry
of its signature: the same oracle, or the same leaf error type) and is smaller.
Smaller means, in this order: fewer *preemptions* (a pick of another task while the
task that ran last was still runnable: what a reader of the timeline follows), then
fewer scheduling steps, then a shorter choice list, then smaller indices. So a shrunk
token never has more preemptions than the input, and both counts are minimized. Edits, each tried greedily until nothing improves or the
run budget is spent:

1. truncation: keep a prefix (halving), the rest answered *calmly* (the task that
   ran last continues when it can: no preemption);
2. chunk deletion (ddmin-style, chunks of half, quarter... one choice);
3. calming: one decision at a time, latest first, replaced by the calm answer
   (removes preemptions).

Edited sequences are replayed leniently (an index too large is clamped, past the end
is 0); the accepted run's *actual* choice sequence becomes the new token, so the
result replays exactly (``greenrt-lab replay``), with its own run hash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .errors import LabError
from .explorer import Inject, RunSpec, _execute, failure_signature, job_from_token
from .token import Token, decode, run_hash


@dataclass
class ShrinkResult:
    token: str
    original_steps: int
    steps: int
    original_preemptions: int
    preemptions: int
    original_choices: int
    choices: int
    runs: int
    signature: list[str]

    def summary(self) -> str:
        return (f"shrunk in {self.runs} runs: steps {self.original_steps} -> {self.steps}, "
                f"preemptions {self.original_preemptions} -> {self.preemptions}, "
                f"choices {self.original_choices} -> {self.choices}; still fails: "
                f"{', '.join(self.signature)}")


def preemptions(sched: list) -> int:
    """Picks of another task while the task of the previous step was runnable."""
    n = 0
    for k in range(1, len(sched)):
        prev = sched[k - 1].task
        s = sched[k]
        if prev in s.ids and s.task != prev:
            n += 1
    return n


def shrink(token: str | Token, fn=None, *, max_runs: int = 300,
           progress: Callable[[int, int, int], None] | None = None) -> ShrinkResult:
    """Minimize a failing token (see the module docstring). ``progress(done,
    max_runs, 0)`` is called after each run (the command line draws a bar with it)."""
    tok = decode(token) if isinstance(token, str) else token
    job = job_from_token(tok, fn)
    inject = Inject(**tok.inject) if tok.inject else None
    runs = 0

    def attempt(choices: list[int]):
        nonlocal runs
        runs += 1
        spec = RunSpec(0, "indices", tok.seed, {"choices": choices, "strict": False},
                       inject=inject)
        res, _ = _execute(job, spec)
        sig = failure_signature(res, injected=inject is not None)
        if progress is not None:
            progress(runs, max_runs, 0)
        return sig, res

    sig, res = attempt(tok.choices)
    if not sig:
        raise LabError("the token's run does not fail (nothing to shrink)")
    target = tok.signature[0] if tok.signature else sig[0]
    if target not in sig:
        raise LabError(f"the token's run fails with {sig}, not with {target!r}")

    def key(r) -> tuple:
        c = r.choice_indices
        return (preemptions(r.schedule or []), r.stats["steps"], len(c), sum(c))

    best = res
    best_key = key(res)
    orig = best_key

    def consider(choices: list[int]) -> bool:
        nonlocal best, best_key
        if runs >= max_runs:
            return False
        s, r = attempt(choices)
        if target in s and r.halted != "sleep_blocked":
            k = key(r)
            if k < best_key:
                best, best_key = r, k
                return True
        return False

    improved = True
    while improved and runs < max_runs:
        improved = False
        cur = list(best.choice_indices)
        m = len(cur) // 2
        while m >= 1 and runs < max_runs:  # 1. truncation
            if consider(cur[:m]):
                improved = True
                cur = list(best.choice_indices)
                m = len(cur) // 2
            else:
                m //= 2
        size = max(1, len(cur) // 2)
        while size >= 1 and runs < max_runs:  # 2. chunk deletion
            i = 0
            while i < len(cur) and runs < max_runs:
                if consider(cur[:i] + cur[i + size:]):
                    improved = True
                    cur = list(best.choice_indices)
                else:
                    i += size
            size //= 2
        for i in range(len(cur) - 1, -1, -1):  # 3. calming, latest first
            if runs >= max_runs:
                break
            if i < len(cur):
                cand = list(cur)
                cand[i] = -1
                if consider(cand):
                    improved = True
                    cur = list(best.choice_indices)
    new = Token(entry=tok.entry, entry_file=tok.entry_file, args=tok.args,
                choices=list(best.choice_indices), run_hash=run_hash(best.full_trace().records),
                seed=tok.seed, strategy=tok.strategy + "+shrunk", options=tok.options,
                inject=tok.inject, faults=tok.faults,
                signature=failure_signature(best, injected=inject is not None), lab=tok.lab)
    return ShrinkResult(new.encode(), orig[1], best_key[1], orig[0], best_key[0],
                        orig[2], best_key[2], runs, new.signature)
