"""The lab's exceptions.

Every error the lab raises is typed and says exactly what went wrong and where:
``NondeterminismError`` names the refused call and how to model it instead,
``ReplayDivergence`` names the step and both events, ``TraceError`` names the first
bad record of a trace file.
"""

from __future__ import annotations

from typing import Any


class LabError(Exception):
    """Base class of the lab's own errors."""


class NondeterminismError(LabError):
    """A program under the lab (strict mode) did something whose result the lab
    cannot control: ``what`` names the call, ``hint`` says how to model it."""

    def __init__(self, what: str, hint: str = ""):
        self.what = what
        self.hint = hint
        msg = f"{what} is nondeterministic and refused under the lab hub (strict mode)"
        if hint:
            msg += f"; {hint}"
        super().__init__(msg)


class ReplayDivergence(LabError):
    """A replay produced a different event than the trace at ``step``.

    ``expected`` and ``got`` are the canonical records (or ``None`` for the end of
    the trace / the end of the run)."""

    def __init__(self, step: int, expected: Any, got: Any, detail: str = ""):
        self.step = step
        self.expected = expected
        self.got = got
        exp = "end of trace" if expected is None else _short(expected)
        g = "end of run" if got is None else _short(got)
        msg = f"diverged at step {step}: expected {exp}, got {g}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class TraceError(LabError):
    """A trace file is malformed or was tampered with. ``line`` is the 1-based line
    number of the first bad record (``None`` if the file as a whole is bad)."""

    def __init__(self, message: str, line: int | None = None):
        self.line = line
        super().__init__(message if line is None else f"line {line}: {message}")


class LabFailure(AssertionError):
    """Raised by ``LabResult.check()``: the run failed or an oracle was violated.
    The message lists every verdict, the seed and, when recorded, the trace path."""


def _short(rec: Any, limit: int = 400) -> str:
    from .trace import canonical_json

    try:
        s = canonical_json(rec)
    except Exception:  # noqa: BLE001 - this is for a message only
        s = repr(rec)
    return s if len(s) <= limit else s[: limit - 3] + "..."
