"""Structured trace events and the instrument API.

The hub emits one :class:`TraceEvent` per interesting thing that happens: a task is
spawned, started, switched to, completed; a checkpoint is passed; a cancellation is
requested, delivered (drain), finalized or its cleanup budget exhausted; an
obligation is reserved, committed, aborted or leaked; a region changes state; a
protocol reports an error. Events go to *instruments*: any callable taking one
event, or an object with an ``on_event(event)`` method. :class:`TraceRing` is the
bounded ring-buffer instrument.

Cost: every emission site is guarded by the hub's ``_tracing`` flag, a single
attribute test, so with no instrument attached tracing costs nearly nothing.
Core code never prints; diagnostics leave the runtime only through these events.

Determinism: an event holds ids (sequential per hub), hub time and plain data, never
object identities, so the lab can hash and replay a trace.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

# Event kinds. Strings, because they go into trace files as they are.
TASK_SPAWN = "task.spawn"
TASK_START = "task.start"
TASK_SWITCH = "task.switch"
TASK_COMPLETE = "task.complete"
CHECKPOINT = "checkpoint"
CANCEL_REQUEST = "cancel.request"
CANCEL_DRAIN = "cancel.drain"
CANCEL_FINALIZE = "cancel.finalize"
CANCEL_EXHAUSTED = "cancel.exhausted"
CANCEL_ABANDONED = "cancel.abandoned"
DEADLOCK = "deadlock"
OBLIGATION_RESERVE = "obligation.reserve"
OBLIGATION_COMMIT = "obligation.commit"
OBLIGATION_ABORT = "obligation.abort"
OBLIGATION_LEAK = "obligation.leak"
REGION_OPEN = "region.open"
REGION_STATE = "region.state"
REGION_CLOSE = "region.close"
FINALIZER_ERROR = "region.finalizer_error"
TIMER_FIRE = "timer.fire"
IO_READY = "io.ready"
SIGNAL = "signal"
PROTOCOL_ERROR = "protocol.error"
USER = "user"


class TraceEvent:
    """One event. ``seq`` counts events per hub from 0; ``time`` is hub time;
    ``task``/``region`` are ids or ``None``; ``data`` is a small dict of plain values."""

    __slots__ = ("seq", "kind", "time", "task", "region", "data")

    def __init__(self, seq: int, kind: str, time: float, task: int | None, region: int | None,
                 data: dict[str, Any]):
        self.seq = seq
        self.kind = kind
        self.time = time
        self.task = task
        self.region = region
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "time": self.time, "task": self.task,
                "region": self.region, "data": self.data}

    def __repr__(self) -> str:
        return (f"TraceEvent({self.seq}, {self.kind!r}, t={self.time:.6f}, task={self.task}, "
                f"region={self.region}, {self.data!r})")


Instrument = Callable[[TraceEvent], None]


def as_callback(instrument: Any) -> Instrument:
    """An instrument is a callable or an object with ``on_event``."""
    on_event = getattr(instrument, "on_event", None)
    if on_event is not None:
        return on_event  # type: ignore[no-any-return]  # the instrument's contract
    if callable(instrument):
        return instrument  # type: ignore[no-any-return]
    raise TypeError(f"an instrument must be callable or have on_event(): {instrument!r}")


class TraceRing:
    """A bounded ring buffer of the most recent ``capacity`` events.

    Attach it with ``greenrt.run(fn, instruments=[ring])`` or
    ``greenrt.lowlevel.current_hub().add_instrument(ring)``.
    """

    def __init__(self, capacity: int = 4096):
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._events: deque[TraceEvent] = deque(maxlen=capacity)
        self.dropped = 0

    def on_event(self, event: TraceEvent) -> None:
        if len(self._events) == self.capacity:
            self.dropped += 1
        self._events.append(event)

    __call__ = on_event

    def __iter__(self) -> Iterator[TraceEvent]:
        return iter(list(self._events))

    def __len__(self) -> int:
        return len(self._events)

    def events(self, kind: str | None = None, task: int | None = None) -> list[TraceEvent]:
        """Events in order, optionally only of one kind and/or one task."""
        return [e for e in self._events
                if (kind is None or e.kind == kind) and (task is None or e.task == task)]

    def kinds(self) -> list[str]:
        return [e.kind for e in self._events]

    def clear(self) -> None:
        self._events.clear()
