"""``greenrt.run()``: the entry point that owns a hub from start to quiescence.

``run(fn, *args)`` creates a hub (the real one unless told otherwise), opens the
*root region*, spawns ``fn(*args)`` as the main task in it, and runs the scheduler
until the root region has no live task. It returns the main task's value or raises
its exception (``TaskCancelledError`` if it was cancelled for a reason other than a
signal).

Signals: when called in the main thread, SIGINT and SIGTERM (if their handlers are
the defaults) are turned into a ``shutdown`` cancellation of the root region: every
task drains within the ``shutdown`` cleanup budget, and then ``run`` raises
``KeyboardInterrupt`` (SIGINT) or ``SystemExit(128 + signum)`` (SIGTERM). The
handlers only set a flag and write to the hub's wake-up socket; the cancellation
itself happens on the hub, between two tasks, never inside one.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple

from . import _trace as tr
from ._exceptions import TaskCancelledError
from ._hub import Hub, RealHub
from ._reason import CancelKind, CancelReason
from ._region import Region
from ._usage import check_task_fn

if TYPE_CHECKING:  # pragma: no cover
    from ._outcome import Outcome

T = TypeVar("T")
Ts = TypeVarTuple("Ts")
#: what ``_install_signals`` saved: the old handlers, the old wake-up fd, and whether
#: the wake-up fd was set
_SignalState = tuple[dict[signal.Signals, Any], int | None, bool]


def _install_signals(hub: Hub) -> _SignalState | None:
    if threading.current_thread() is not threading.main_thread():
        return None
    wake_fd = getattr(hub.driver, "wakeup_fd", None)
    saved: dict[signal.Signals, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        hub._signal_pending.append(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        cur = signal.getsignal(sig)
        if cur in (signal.default_int_handler, signal.SIG_DFL):
            saved[sig] = cur
            signal.signal(sig, handler)
    old_wake = None
    if wake_fd is not None and saved:
        old_wake = signal.set_wakeup_fd(wake_fd, warn_on_full_buffer=False)
    return saved, old_wake, wake_fd is not None and bool(saved)


def _restore_signals(state: _SignalState | None) -> None:
    if state is None:
        return
    saved, old_wake, set_wake = state
    for sig, h in saved.items():
        signal.signal(sig, h)
    if set_wake:
        signal.set_wakeup_fd(old_wake)  # type: ignore[arg-type]  # an int when set_wake


def _install_dump_signal(hub: Hub, signum: int) -> tuple[int, Any]:
    """Log a task dump on ``signum`` (main thread only). The dump is taken inside the
    handler, so it also shows a task that keeps the hub from running (a CPU loop):
    Python runs the handler between two bytecodes of whatever is running."""
    if threading.current_thread() is not threading.main_thread():
        raise ValueError("dump_signal works only when run() is called in the main thread")
    from ._dump import format_snapshot, snapshot
    from ._log import log_detached, logger

    def handler(sig: int, frame: FrameType | None) -> None:
        try:
            text = format_snapshot(snapshot(hub, frame), header=(
                f"greenrt task dump on signal {signal.Signals(sig).name}"))
        except Exception as exc:  # noqa: BLE001 - never break the program for a dump
            log_detached("task dump on signal %s failed", exc, sig)
            return
        logger.warning("%s", text)

    return signum, signal.signal(signum, handler)


def run(fn: Callable[[*Ts], T], *args: *Ts, instruments: Iterable[Any] = (),
        leak_policy: str = "error", hub: Hub | None = None,
        handle_signals: bool = True, watchdog: float | None = None,
        dump_signal: int | None = None) -> T:
    """Run ``fn(*args)`` as the main task of a new hub and return its result.

    ``instruments`` receive trace events; ``leak_policy`` is the default obligation
    leak policy (``"error"``, ``"log"`` or ``"abort"``); ``hub`` substitutes another
    hub implementation (the lab passes its own); ``watchdog`` (seconds, off by
    default) reports a task that keeps the hub from running for longer than that (a
    ``greenrt`` log warning with its stack and a ``hub.blocked`` trace event; see
    ``greenrt._watchdog``); ``dump_signal`` (a signal number such as
    ``signal.SIGUSR1``, off by default; main thread only) logs a task dump
    (``greenrt.lowlevel.dump()``: every task's state, wait, deadline and stack) on the
    ``greenrt`` logger at WARNING whenever that signal arrives — configure logging to
    see it. Returns only when every task has completed (the root region is closed).
    ``fn`` must be a plain callable: a non-callable, a coroutine or an ``async def``
    is a ``TypeError`` raised before any hub exists (greenrt runs blocking-style code).
    """
    check_task_fn(fn, "run")
    if hub is None:
        hub = RealHub(instruments=instruments, leak_policy=leak_policy)
    else:
        for inst in instruments:
            hub.add_instrument(inst)
    hub._enter()
    signals = None
    dog = None
    dumper = None
    received: list[int] = []
    try:
        if dump_signal is not None:
            dumper = _install_dump_signal(hub, dump_signal)
        root = Region(name="root", policy="fail_fast")
        root._open(hub, None, None)
        hub.root_region = root

        def handle_signals_on_hub() -> None:
            sigs = list(hub._signal_pending)
            hub._signal_pending.clear()
            for s in sigs:
                received.append(s)
                if hub._tracing:
                    hub._emit(tr.SIGNAL, None, root.id, signum=int(s))
                root._scope._request(CancelReason(
                    CancelKind.SHUTDOWN, message=f"signal {signal.Signals(s).name}",
                    origin_region=root.id, time=hub.now()))

        hub._handle_signals = handle_signals_on_hub  # type: ignore[method-assign]
        if handle_signals:
            signals = _install_signals(hub)
            hub.signals_handled = signals is not None
        if watchdog is not None:
            from ._watchdog import Watchdog

            dog = hub.watchdog = Watchdog(hub, watchdog)
        main = root.spawn(fn, *args, name=getattr(fn, "__qualname__", "main"))
        hub._run_until(lambda: not root._live)
        root._state = "closed"
        if hub._tracing:
            hub._emit(tr.REGION_CLOSE, None, root.id, failures=len(root._failures), errors=0)
    finally:
        if dog is not None:
            dog.stop()
        _restore_signals(signals)
        if dumper is not None:
            signal.signal(*dumper)
        hub._exit()
        hub.close()
    outcome: Outcome[T] = main.outcome  # type: ignore[assignment]  # completed: set
    if hub.deadlock is not None:
        from ._exceptions import Deadlock

        err = Deadlock(hub.deadlock, hub.deadlock_snapshot)
        if not outcome.is_ok and not outcome.is_cancelled and isinstance(outcome.value, BaseException):
            raise err from outcome.value
        raise err
    if received:
        first = received[0]
        if first == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + int(first))
    if outcome.is_ok:
        return outcome.value  # type: ignore[no-any-return]  # the value of ok is a T
    if outcome.is_cancelled:
        raise TaskCancelledError(outcome.value)
    raise outcome.value
