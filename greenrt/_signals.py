"""``greenrt.open_signal_receiver(*signals)``: receive POSIX signals as a stream.

While a receiver is open, the signals it names are *caught* (their previous
handlers are replaced) and queued on it; ``for signum in receiver:`` (or
``receiver.receive()``) parks until one arrives. Closing the receiver restores the
handlers it replaced. That is also how it works with ``greenrt.run``'s own
SIGINT/SIGTERM -> ``shutdown`` handling: while a receiver for SIGINT is open, SIGINT
is delivered to the receiver and does *not* shut the program down; once it is
closed, SIGINT shuts down again.

How a signal travels: the C-level handler only appends the number to the hub's
pending list (the same list ``run``'s handlers use) and the hub's wake-up fd is
written by ``signal.set_wakeup_fd`` (set by ``run``, or by the first receiver when
``run`` did not handle signals). The hub, between two tasks, hands each pending
signal to the innermost open receiver that wants it, and what nobody wants to the
hub's previous signal handling. Nothing runs inside a task at signal time.

An open receiver counts in ``hub.signal_receivers``, so a task waiting on it is not
reported as a deadlock (a signal can always come from outside).

Limits: Python delivers signals to the main thread only, so receivers can be opened
only in a hub running in the main thread (``RuntimeError`` elsewhere). A receiver
holds at most ``max_pending`` (default 1024) signals; beyond that the oldest are
dropped and counted in ``dropped`` (signals are not a reliable queue in POSIX either:
two identical signals may merge).
"""

from __future__ import annotations

import signal as _signal
import threading
from collections import deque
from collections.abc import Iterable
from types import FrameType
from typing import TYPE_CHECKING, Any

from ._checkpoint import _enter, current_task, park, reschedule
from ._hub import current_hub

if TYPE_CHECKING:  # pragma: no cover
    from ._hub import Hub
    from ._task import Task

#: what ``signal.signal`` returns and takes back: a previous handler
_Handler = Any


class SignalReceiver:
    """What ``open_signal_receiver`` yields: an iterator of signal numbers.

    ``receive()`` and iteration are checkpoints; a cancelled ``receive`` loses no
    signal (it stays queued). Not shared between tasks: one task receives."""

    def __init__(self, hub: Hub, signals: Iterable[int], max_pending: int) -> None:
        self._hub = hub
        self.signals = frozenset(int(s) for s in signals)
        self._pending: deque[int] = deque()
        self._max = max_pending
        self.dropped = 0
        self._waiter: Task[Any] | None = None
        self._closed = False

    def _deliver(self, signum: int) -> None:
        """On the hub: queue ``signum`` and wake the reader."""
        if len(self._pending) >= self._max:
            self._pending.popleft()
            self.dropped += 1
        self._pending.append(signum)
        w, self._waiter = self._waiter, None
        if w is not None:
            reschedule(w)

    def pending(self) -> int:
        """How many received signals are queued. Not a checkpoint."""
        return len(self._pending)

    def receive(self) -> int:
        """The next received signal number (as ``signal.Signals``); parks until one
        arrives. A checkpoint. Raises ``RuntimeError`` once closed."""
        task = _enter(current_hub())
        while not self._pending:
            if self._closed:
                raise RuntimeError("signal receiver is closed")
            if self._waiter is not None:
                raise RuntimeError("another task is already receiving on this signal receiver")
            self._waiter = task

            def abort() -> bool:
                if self._waiter is task:
                    self._waiter = None
                return True

            park(abort, "signal receiver")
        return _signal.Signals(self._pending.popleft())

    def __iter__(self) -> SignalReceiver:
        return self

    def __next__(self) -> int:
        return self.receive()


class _Dispatch:
    """Per hub: the stack of open receivers and the hub's previous signal handling."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.receivers: list[SignalReceiver] = []
        self.previous = hub._handle_signals
        hub._handle_signals = self.handle  # type: ignore[method-assign]

    def handle(self) -> None:
        hub = self.hub
        pending = list(hub._signal_pending)
        hub._signal_pending.clear()
        rest = []
        for s in pending:
            for r in reversed(self.receivers):
                if s in r.signals:
                    r._deliver(s)
                    break
            else:
                rest.append(s)
        if rest:
            hub._signal_pending.extend(rest)
            self.previous()


class open_signal_receiver:
    """``with greenrt.open_signal_receiver(signal.SIGUSR1, signal.SIGHUP) as sigs:``
    ``for signum in sigs: ...``.

    Entering installs handlers for ``signals`` (not a checkpoint); leaving restores
    the previous handlers and drops signals still queued. Must be used in a task of
    a hub running in the main thread. See ``greenrt._signals`` for how it coexists
    with ``run``'s SIGINT/SIGTERM handling.
    """

    def __init__(self, *signals: int, max_pending: int = 1024) -> None:
        if not signals:
            raise TypeError("open_signal_receiver needs at least one signal")
        self._signals = signals
        self._max = max_pending
        self._saved: dict[int, _Handler] = {}
        self._receiver: SignalReceiver | None = None
        self._wake_set = False
        self._old_wake = -1

    def __enter__(self) -> SignalReceiver:
        current_task()
        hub = current_hub()
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("signals can only be received in the main thread")
        disp = getattr(hub, "_grt_signal_dispatch", None)
        if disp is None:
            disp = hub._grt_signal_dispatch = _Dispatch(hub)  # type: ignore[attr-defined]
        rec = SignalReceiver(hub, self._signals, self._max)

        def handler(signum: int, frame: FrameType | None) -> None:
            hub._signal_pending.append(signum)

        saved: dict[int, _Handler] = {}
        try:
            for s in rec.signals:
                saved[s] = _signal.signal(s, handler)
        except BaseException:
            for s, h in saved.items():
                _signal.signal(s, h)
            raise
        self._saved = saved
        wake_fd = getattr(hub.driver, "wakeup_fd", None)
        if wake_fd is not None:
            old = _signal.set_wakeup_fd(wake_fd, warn_on_full_buffer=False)
            if old != wake_fd:
                self._wake_set = True
                self._old_wake = old
        disp.receivers.append(rec)
        hub.signal_receivers += 1
        self._receiver = rec
        return rec

    def __exit__(self, *exc: object) -> None:
        rec = self._receiver
        if rec is None:
            return
        self._receiver = None
        hub = rec._hub
        disp = hub._grt_signal_dispatch  # type: ignore[attr-defined]  # set by __enter__
        for s, h in self._saved.items():
            _signal.signal(s, h)
        if self._wake_set:
            _signal.set_wakeup_fd(self._old_wake)
        disp.receivers.remove(rec)
        hub.signal_receivers -= 1
        rec._closed = True
        rec._pending.clear()
        w, rec._waiter = rec._waiter, None
        if w is not None:
            reschedule(w)  # its receive() sees the receiver closed
