"""Judging a run: its failure signature and the picklable ``RunOutcome``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from greenrt import Cancelled, TaskCancelledError

from ..runner import LabResult
from .strategies import RunSpec


@dataclass
class RunOutcome:
    """The picklable summary of one run."""

    index: int
    failed: bool
    signature: list[str]
    message: str
    choices: list[int]
    run_hash: str
    steps: int
    tasks: int
    cls: str | None
    checkpoints: list[tuple[int, int]] = field(default_factory=list)
    fail_step: int | None = None
    spec: RunSpec | None = None
    redundant: bool = False


def _is_cancellation(e: BaseException | None) -> bool:
    if e is None:
        return True
    if isinstance(e, (TaskCancelledError, Cancelled)):
        return True
    if isinstance(e, BaseExceptionGroup):
        return all(_is_cancellation(x) for x in e.exceptions)
    return False


def leaf_error(e: BaseException) -> BaseException:
    """The exception a failure is about: inside (nested) exception groups, the first
    leaf that is not a cancellation (a region's ``ExceptionGroup`` wraps the
    ``AssertionError`` of the task that failed), else the first leaf."""
    if not isinstance(e, BaseExceptionGroup):
        return e
    leaves = []
    stack = [e]
    while stack:
        x = stack.pop(0)
        if isinstance(x, BaseExceptionGroup):
            stack[:0] = list(x.exceptions)
        else:
            leaves.append(x)
    for x in leaves:
        if not _is_cancellation(x):
            return x
    return leaves[0] if leaves else e


def failure_signature(res: LabResult, injected: bool = False,
                      goal: Callable[[Any], bool] | None = None) -> list[str]:
    """What failed, most specific first: violated oracles, then ``error:Type`` (of the
    leaf exception, see ``leaf_error``: the same bug keeps the same signature
    whether or not a region wrapped it),
    ``halted:reason``, ``divergence``, ``goal``. Empty when the run is fine."""
    sig: list[str] = []
    for v in res.violations:
        if v.oracle not in sig:
            sig.append(v.oracle)
    if res.error is not None and res.halted is None:
        if not (injected and _is_cancellation(res.error)):
            sig.append(f"error:{type(leaf_error(res.error)).__name__}")
    if res.halted is not None and res.halted != "sleep_blocked":
        sig.append(f"halted:{res.halted}")
    if res.divergence is not None:
        sig.append("divergence")
    if goal is not None and not sig and res.error is None:
        try:
            ok = goal(res.value)
        except Exception:  # noqa: BLE001 - a broken goal predicate is a failed goal
            ok = False
        if not ok:
            sig.append("goal")
    return sig


def _fail_step(res: LabResult) -> int | None:
    steps = [v.step for v in res.violations if v.step is not None]
    return min(steps) if steps else None
