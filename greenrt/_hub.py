"""The hub: one scheduler per OS thread.

The hub is the greenlet that called ``greenrt.run()``. Tasks run in child greenlets
and switch back to it whenever they block. The hub owns

* three run lanes: the *cancel* lane (tasks woken to receive a cancellation or with
  cleanup to run), the *timed* lane (tasks inside a scope with a deadline, earliest
  deadline first) and the *ready* lane (FIFO);
* the timer heap (``call_at``), with lazy deletion of cancelled timers, and beside it
  the deadline heap of cancel scopes (on hubs with ``_fast_paths``): a scope's
  deadline is one tuple pushed on entry and a cell emptied on exit, no handle object
  and no call; both heaps share one sequence and fire in ``(when, seq)`` order;
* the I/O driver, a separate seam (``greenrt._driver``) that also receives wake-ups
  from other threads and from signal handlers;
* the trace sink: instruments and the ``_tracing`` flag that guards every emission.

Picking the next task: the cancel lane first, the timed lane next, the ready lane
last, with *streak limits* so no lane starves the others: after ``streak_limit``
(default 16) consecutive picks from the cancel lane while another lane has work, one
pick comes from another lane; likewise the timed lane yields to the ready lane. Every
``max(generation, 64)`` picks the hub polls I/O without blocking and fires due
timers, so a busy program cannot starve timers or sockets either.

Direct hand-off: a task that blocks or yields does not bounce through the hub
greenlet; it picks the next task itself and switches straight to it (``_handoff``),
one greenlet switch per yield instead of two. Control returns to the hub greenlet
only when nothing is runnable, when it is time to poll, or to start a task on a
brand-new greenlet (greenlet copies the starter's recursion depth, so new greenlets
are always started from the hub). A worker greenlet whose task finished runs the next
not-yet-started task in place, without switching at all. ``RealHub`` and the hottest
callers (``checkpoint()``, parks, wake-ups, spawn) carry inlined copies of the common
case of these paths; the copies, and the one rule for when they apply, live in
``greenrt._fastpath``. Hubs that override ``_schedule``/``_pick``/``_handoff`` keep
``_fast_paths`` false and get the general path.

Invariants (checked, a violation raises ``InvariantViolation``):
  * a task is in at most one lane, at most once (``Task._queued``);
  * only a parked task is rescheduled (its ``_abort_fn`` is set while parked).

Pluggability: ``Hub`` holds the scheduling logic; subclasses provide ``now()``,
``_wait(timeout)`` (block until I/O, a wake-up or the timeout) and ``_wakeup()``.
``RealHub`` uses ``time.monotonic`` and the epoll driver; the lab hub supplies a
virtual clock, a seeded choice of the next task and a simulated network, by
overriding ``_pick`` and the same three methods.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from heapq import heappop as _heappop
from heapq import heappush as _heappush
from typing import TYPE_CHECKING, Any

from greenlet import getcurrent, greenlet

from . import _trace as tr
from ._exceptions import InvariantViolation, NoHubError

if TYPE_CHECKING:  # pragma: no cover
    from ._driver import EpollDriver
    from ._region import Region
    from ._task import Task
    from .net._abc import Network
    from .net._real import RealNetwork

_tls = threading.local()


class _Raise:
    """A resume value that makes ``park`` raise ``exc`` in the woken task."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException):
        self.exc = exc


_CANCEL = object()  # resume value: deliver the pending cancellation


def current_hub() -> Hub:
    """The hub running in this thread. Raises ``NoHubError`` outside ``run()``."""
    try:
        return _tls.hub  # type: ignore[no-any-return]  # a thread-local: only a Hub is stored
    except AttributeError:
        raise NoHubError() from None


def _other_threads_alive() -> bool:
    """True if a Python thread other than this one and greenrt's idle pool workers is
    alive (busy pool workers are counted by ``Hub.threads_outstanding``)."""
    me = threading.current_thread()
    for t in threading.enumerate():
        if t is me or t.name == "greenrt-worker" or not t.is_alive():
            continue
        if getattr(t, "_greenrt_ignore", False):
            continue
        return True
    return False


class TimerHandle:
    """A scheduled call. ``cancel()`` is idempotent and O(1) (lazy deletion)."""

    __slots__ = ("when", "fn", "args", "cancelled", "_hub")

    fn: Any  # Callable[..., Any]; None once cancelled or fired
    args: Any  # tuple; None once cancelled or fired

    def __init__(self, hub: Hub, when: float, fn: Callable[..., Any] | None,
                 args: tuple[Any, ...] | None) -> None:
        self._hub = hub
        self.when = when
        self.fn = fn
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self.fn = self.args = None
            self._hub._cancelled_timers += 1


class Hub:
    """Scheduler core shared by the real hub and the lab hub. See the module docstring."""

    free_greenlet_limit = 1024
    streak_limit = 16
    #: True on hubs whose scheduling is the plain lanes of this class (no override of
    #: ``_schedule``/``_pick``/``_handoff``); ``_plain`` is that and no instrument
    #: attached: the condition every inlined fast path tests (``greenrt._fastpath``).
    _fast_paths = False
    _plain = False
    #: raise ``Deadlock`` instead of blocking forever (the real hub; see ``_deadlock``)
    detects_deadlock = False
    #: the ``Watchdog`` that ``run(watchdog=...)`` attached (declared only: an
    #: instance attribute set by ``run``)
    watchdog: Any

    def __init__(self, *, instruments: Iterable[Any] = (), leak_policy: str = "error") -> None:
        from ._obligation import LEAK_POLICIES

        if leak_policy not in LEAK_POLICIES:
            raise ValueError(f"leak_policy must be one of {LEAK_POLICIES}")
        self.leak_policy = leak_policy
        #: the running task (a ``Task``), or None on the hub greenlet
        self.current: Any = None
        self._glet: Any = None
        self._ready: deque[Task[Any]] = deque()
        self._cancel_lane: deque[Task[Any]] = deque()
        self._timed: list[tuple[float, int, int, Task[Any]]] = []
        self._timed_seq = 0
        self._cancel_streak = 0
        self._timed_streak = 0
        self._poll_countdown = 64
        self._handoff_task: Task[Any] | None = None
        self._timers: list[tuple[float, int, TimerHandle]] = []
        self._timer_seq = 0
        self._cancelled_timers = 0
        #: the deadlines of cancel scopes (``CancelScope._attach``, on hubs with
        #: ``_fast_paths``): ``(when, seq, [scope])``, the one-slot cell being the
        #: scope's ``_timer`` and emptied (``[None]``) when the scope exits. Lazy
        #: deletion like ``_timers``, and the same sequence numbers, so the two heaps
        #: fire as one: in ``(when, seq)`` order. No handle object, no call per scope.
        self._deadlines: list[tuple[float, int, list[Any]]] = []
        self._dead_deadlines = 0
        self._free_glets: list[greenlet] = []
        self._task_counter = 0
        self._scope_counter = 0
        self._region_counter = 0
        self._obligation_counter = 0
        self._instruments: list[tuple[Any, Callable[[tr.TraceEvent], object]]] = []
        self._tracing = False
        self._event_seq = 0
        self._threadq: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._threadq_lock = threading.Lock()
        self._signal_pending: list[int] = []
        #: set by ``run()`` before any task runs
        self.root_region: Region = None  # type: ignore[assignment]
        #: worker threads started by ``to_thread`` that have not finished yet (each can
        #: still wake a task), and signal receivers (each can wake its reader)
        self.threads_outstanding = 0
        self.signal_receivers = 0
        #: run() installed its SIGINT/SIGTERM -> shutdown handlers
        self.signals_handled = False
        self._in_wait = False
        #: the wait-for graph of a deadlock found on this hub, if any
        self.deadlock: dict[str, Any] | None = None
        self.deadlock_snapshot: dict[str, Any] | None = None
        self._running = False
        self.driver: Any = None  # the I/O driver: set by subclasses
        self.stats = {"polls": 0, "timers_fired": 0}
        for inst in instruments:
            self.add_instrument(inst)

    # -- ids (deterministic, per hub) ------------------------------------------------

    def _next_task_id(self) -> int:
        self._task_counter += 1
        return self._task_counter

    def _next_scope_id(self) -> int:
        self._scope_counter += 1
        return self._scope_counter

    def _next_region_id(self) -> int:
        self._region_counter += 1
        return self._region_counter

    def _next_obligation_id(self) -> int:
        self._obligation_counter += 1
        return self._obligation_counter

    # -- tracing ------------------------------------------------------------------------

    def add_instrument(self, instrument: Any) -> None:
        """Attach an instrument (callable or object with ``on_event``)."""
        self._instruments.append((instrument, tr.as_callback(instrument)))
        self._tracing = True
        self._plain = False

    def remove_instrument(self, instrument: Any) -> None:
        self._instruments = [(i, cb) for i, cb in self._instruments
                             if not (i is instrument or i == instrument)]
        self._tracing = bool(self._instruments)
        self._plain = self._fast_paths and not self._tracing

    def _emit(self, kind: str, task: int | None, region: int | None, /, **data: Any) -> None:
        ev = tr.TraceEvent(self._event_seq, kind, self.now(), task, region, data)
        self._event_seq += 1
        for _, cb in self._instruments:
            cb(ev)

    def emit(self, kind: str, /, **data: Any) -> None:
        """Emit a trace event on behalf of the current task (protocols use this for
        ``protocol.error`` and friends). Cheap when nothing listens."""
        if self._tracing:
            t = self.current
            self._emit(kind, t.id if t is not None else None,
                       t._task_region.id if t is not None else None, **data)

    # -- the clock and waiting: provided by subclasses --------------------------------

    def now(self) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def _wait(self, timeout: float | None) -> None:  # pragma: no cover - abstract
        """Block until I/O is ready, a wake-up arrives, or ``timeout`` passes."""
        raise NotImplementedError

    def _wakeup(self) -> None:  # pragma: no cover - abstract
        """Make a concurrent ``_wait`` return (called from other threads)."""
        raise NotImplementedError

    def _has_io_waiters(self) -> bool:
        return False

    # -- seams for the lab ----------------------------------------------------------

    #: The network implementation used by ``greenrt.net`` (real sockets on the real
    #: hub, the simulated network under the lab). Set by subclasses.
    network: Network = None  # type: ignore[assignment]

    #: Whether this hub wants ``note_access`` reports. A class attribute tested before
    #: every report, so on the real hub a report costs one attribute test.
    wants_access = False

    def note_access(self, obj: Any, write: bool = True) -> None:
        """Called by greenrt's synchronization objects and channels (only when
        ``wants_access`` is true) when the current task reads (``write=False``) or
        changes (``write=True``) ``obj``. The real hub ignores it; the lab hub uses the
        reports as the dependency relation of its schedule exploration (DPOR): two
        steps of different tasks that touch the same object, at least one of them
        writing, do not commute. Not a checkpoint; must not block or switch."""

    def wall_time(self) -> float:
        """Seconds since the epoch, for things that must show calendar time (an HTTP
        ``Date`` field, a log line). Not for measuring durations: use ``now()``. The
        lab hub returns a deterministic value derived from its virtual clock."""
        self.check_nondeterminism("wall clock (Hub.wall_time)")
        return time.time()

    def check_nondeterminism(self, what: str) -> None:
        """Called before anything nondeterministic happens on this hub (a real
        thread, a real socket, a wall-clock read). The real hub allows everything;
        the lab hub in strict mode raises an error naming ``what``."""

    # -- scheduling ---------------------------------------------------------------------

    def _schedule(self, task: Task[Any]) -> None:
        """Put a runnable task in its lane."""
        if task._queued:
            raise InvariantViolation(f"task {task.id} ({task.name}) scheduled twice")
        task._queued = True
        if task._pending or task._drains:
            self._cancel_lane.append(task)
        else:
            d = task._scope._deadline_eff
            if d is None:
                self._ready.append(task)
            else:
                self._timed_seq += 1
                heapq.heappush(self._timed, (d, -(task._scope._priority or 0), self._timed_seq, task))

    def reschedule(self, task: Task[Any], value: Any = None) -> None:
        """Wake a parked task with ``value`` (see ``greenrt.lowlevel.reschedule``)."""
        if task._abort_fn is None:
            raise InvariantViolation(f"task {task.id} ({task.name}) woken but not parked")
        task._abort_fn = None
        task._resume = value
        self._schedule(task)

    def _reschedule_cancel(self, task: Task[Any]) -> None:
        task._resume = _CANCEL
        self._schedule(task)

    def runnable_count(self) -> int:
        return len(self._ready) + len(self._cancel_lane) + len(self._timed)

    def _pick(self) -> Task[Any] | None:
        """Choose the next task to run, or ``None`` if nothing is runnable."""
        cl = self._cancel_lane
        if cl:
            if self._cancel_streak < self.streak_limit or not (self._timed or self._ready):
                self._cancel_streak += 1
                return cl.popleft()
        self._cancel_streak = 0
        timed = self._timed
        if timed:
            if self._timed_streak < self.streak_limit or not self._ready:
                self._timed_streak += 1
                return heapq.heappop(timed)[3]
        self._timed_streak = 0
        if self._ready:
            return self._ready.popleft()
        return None

    # -- timers -------------------------------------------------------------------------

    def call_at(self, when: float, fn: Callable[..., Any], *args: Any) -> TimerHandle:
        """Call ``fn(*args)`` on the hub at hub time ``when``. Not a checkpoint."""
        h = TimerHandle(self, when, fn, args)
        self._timer_seq += 1
        heapq.heappush(self._timers, (when, self._timer_seq, h))
        if self._cancelled_timers > 256 and self._cancelled_timers > len(self._timers) // 2:
            self._compact_timers()
        return h

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> TimerHandle:
        return self.call_at(self.now() + delay, fn, *args)

    def _compact_timers(self) -> None:
        self._timers = [e for e in self._timers if not e[2].cancelled]
        heapq.heapify(self._timers)
        self._cancelled_timers = 0

    def _compact_deadlines(self) -> None:
        self._deadlines = [e for e in self._deadlines if e[2][0] is not None]
        heapq.heapify(self._deadlines)
        self._dead_deadlines = 0

    def _next_timer(self) -> float | None:
        timers = self._timers
        while timers and timers[0][2].cancelled:
            heapq.heappop(timers)
            self._cancelled_timers -= 1
        dl = self._deadlines
        while dl and dl[0][2][0] is None:
            heapq.heappop(dl)
            self._dead_deadlines -= 1
        if dl:
            d = dl[0][0]
            return d if not timers or d < timers[0][0] else timers[0][0]
        return timers[0][0] if timers else None

    def _fire_due_timers(self, now: float) -> None:
        timers = self._timers
        dl = self._deadlines
        while True:
            if dl and dl[0][0] <= now and (not timers or dl[0][:2] < timers[0][:2]):
                cell = heapq.heappop(dl)[2]
                scope = cell[0]
                if scope is None:
                    self._dead_deadlines -= 1
                    continue
                cell[0] = scope._timer = None
                self.stats["timers_fired"] += 1
                scope._on_deadline()
                continue
            if not (timers and timers[0][0] <= now):
                return
            _, _, h = heapq.heappop(timers)
            if h.cancelled:
                self._cancelled_timers -= 1
                continue
            fn, args = h.fn, h.args
            h.cancelled = True
            h.fn = h.args = None
            self.stats["timers_fired"] += 1
            fn(*args)

    # -- other threads ------------------------------------------------------------------

    def call_soon_threadsafe(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the hub soon. Safe from any thread; wakes the hub."""
        with self._threadq_lock:
            self._threadq.append((fn, args))
        self._wakeup()

    def _run_thread_callbacks(self) -> None:
        with self._threadq_lock:
            items = list(self._threadq)
            self._threadq.clear()
        for fn, args in items:
            fn(*args)

    # -- the loop -----------------------------------------------------------------------

    def _poll(self, block: bool) -> None:
        """Serve I/O, other threads, signals and timers; block only if ``block``."""
        self.stats["polls"] += 1
        if self._threadq:
            self._run_thread_callbacks()
        if self._signal_pending:
            self._handle_signals()
        if block and not self.runnable_count():
            nt = self._next_timer()
            timeout = None if nt is None else max(0.0, nt - self.now())
            self._wait(timeout)
            if self._threadq:
                self._run_thread_callbacks()
            if self._signal_pending:
                self._handle_signals()
        elif self._has_io_waiters():
            self._wait(0)
        timers = self._timers
        dl = self._deadlines
        if timers or dl:
            now = self.now()
            # (a head not yet due means nothing is: the call only when one is)
            if (timers and timers[0][0] <= now) or (dl and dl[0][0] <= now):
                self._fire_due_timers(now)

    def _nothing_can_wake(self) -> bool:
        """True when blocking would be forever (see ``greenrt._deadlock``). Only hubs
        with ``detects_deadlock`` check; the lab reports deadlocks through its oracle."""
        if not self.detects_deadlock or self.root_region is None:
            return False
        if not (not self.runnable_count() and not self._threadq and not self._signal_pending
                and self.threads_outstanding == 0 and self.signal_receivers == 0
                and not self._has_io_waiters() and self._next_timer() is None):
            return False
        if _other_threads_alive():
            # a thread of the program may still call call_soon_threadsafe (or set a
            # flag another way); only the absence of every such thread is proof
            return False
        if self.signals_handled:
            # a task in sleep_forever() waits to be cancelled, and SIGINT/SIGTERM do
            # that: "run until Ctrl-C" is not a deadlock
            from ._deadlock import live_tasks

            if any(t.waiting_for == "sleep_forever" for t in live_tasks(self.root_region)):
                return False
        return True

    def _on_deadlock(self) -> None:
        from ._deadlock import wait_for_graph
        from ._exceptions import Deadlock
        from ._reason import CancelKind, CancelReason

        graph = wait_for_graph(self.root_region)
        if self._tracing:
            self._emit(tr.DEADLOCK, None, self.root_region.id, blocked=graph["blocked"],
                       cycle=graph["cycle"])
        if self.deadlock is not None:
            # the cancellation could not unblock anything: give up rather than hang
            raise Deadlock(self.deadlock, self.deadlock_snapshot)
        from ._dump import snapshot

        self.deadlock = graph
        self.deadlock_snapshot = snapshot(self)
        self.root_region._scope._request(CancelReason(
            CancelKind.RESOURCE_UNAVAILABLE, message="deadlock: every task is blocked",
            origin_region=self.root_region.id, time=self.now()))

    def _handle_signals(self) -> None:  # overridden by run() wiring
        self._signal_pending.clear()

    def _switch_to(self, task: Task[Any]) -> None:
        """On the hub greenlet: run ``task`` until control comes back to the hub."""
        task._queued = False
        self.current = task
        if self._tracing:
            self._emit(tr.TASK_SWITCH, task.id, None)
        glet = task._glet
        if glet is None:
            free = self._free_glets
            if free:
                glet = free.pop()
            else:
                from ._task import _worker_main

                glet = greenlet(_worker_main, self._glet)
            task._glet = glet
            glet.gr_context = task._context
            glet.switch(task)
        else:
            glet.switch()
        self.current = None

    def _handoff(self) -> Any:
        """On a task greenlet that is giving up control: switch *directly* to the next
        runnable task instead of bouncing through the hub (one switch instead of two).

        Falls back to the hub greenlet when nothing is runnable or when it is time to
        poll I/O and timers. Returns what the switch back into this greenlet carried:
        nothing for a resumed task, the next task for a worker greenlet being reused.
        The next task may be the caller itself (then the switch returns at once).
        """
        self._poll_countdown -= 1
        # (nothing runnable, the common way here: straight to the hub, whose own
        # _pick does the same streak bookkeeping before anything is chosen; the
        # lanes hold every runnable task, as runnable_count() and _poll assume)
        if self._poll_countdown > 0 and (self._ready or self._timed or self._cancel_lane):
            nxt = self._pick()
            if nxt is not None:
                nxt._queued = False
                self.current = nxt
                if self._tracing:
                    self._emit(tr.TASK_SWITCH, nxt.id, None)
                glet = nxt._glet
                if glet is not None:
                    return glet.switch()
                free = self._free_glets
                if free:
                    glet = free.pop()
                    nxt._glet = glet
                    glet.gr_context = nxt._context
                    return glet.switch(nxt)
                # A brand-new greenlet must be started from the hub: greenlet copies the
                # starter's recursion depth, and chains of starts from task greenlets
                # would grow it without bound.
                self.current = None
                self._handoff_task = nxt
        return self._glet.switch()

    def _yield_task(self, task: Task[Any]) -> None:
        """The yield half of a checkpoint: requeue ``task`` and run something else."""
        self._schedule(task)
        self._handoff()

    def _run_until(self, done: Callable[[], bool]) -> None:
        """On the hub greenlet: run tasks until ``done()`` is true."""
        pick = self._pick
        switch = self._switch_to
        while not done():
            task = self._handoff_task
            if task is not None:
                self._handoff_task = None
                task._queued = True  # _switch_to expects a task taken from a lane
            else:
                task = pick()
            if task is None:
                if self._nothing_can_wake():
                    self._on_deadlock()
                    continue
                self._poll(block=True)
                self._poll_countdown = max(self.runnable_count(), 64)
                continue
            if self._poll_countdown <= 0:
                self._poll(block=False)
                self._poll_countdown = max(self.runnable_count(), 64)
            switch(task)

    # -- entering and leaving ---------------------------------------------------------

    def _enter(self) -> None:
        if getattr(_tls, "hub", None) is not None:
            raise RuntimeError("greenrt.run() is already running in this thread")
        self._glet = getcurrent()
        _tls.hub = self
        self._running = True

    def _exit(self) -> None:
        self._running = False
        _tls.hub = None
        del _tls.hub
        free, self._free_glets = self._free_glets, []
        for g in free:
            g.throw()  # GreenletExit ends the worker loop
        self._free_glets = []

    def close(self) -> None:
        """Release OS resources (the driver). Called by ``run()``."""


class RealHub(Hub):
    """The production hub: ``time.monotonic`` and the epoll/selectors driver."""

    _fast_paths = True
    detects_deadlock = True
    driver: EpollDriver

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._plain = not self._tracing
        from ._driver import SelectorDriver

        self.driver = SelectorDriver(self)
        self._network: RealNetwork | None = None

    @property
    def network(self) -> RealNetwork:  # type: ignore[override]  # an attribute on the base
        """The real network (sockets through the epoll driver), created on first use."""
        if self._network is None:
            from .net._real import RealNetwork

            self._network = RealNetwork(self)
        return self._network

    now = staticmethod(time.monotonic)
    wall_time = staticmethod(time.time)

    # The three methods below are the hot path of every checkpoint, every wake-up and
    # every blocking call: the base class's methods with the common case inlined (the
    # rule and the source of the copies: ``greenrt._fastpath``). Any other situation
    # takes the general path. (The lab hub keeps the general path, since it overrides
    # ``_schedule`` and ``_handoff``.)

    def _yield_task(self, task: Task[Any]) -> None:
        hub = self
        # fastpath yield: copied from greenrt/_fastpath.py (python -m greenrt._fastpath --write)
        if hub._plain and not (task._queued or hub._cancel_lane or hub._timed
                               or task._scope._deadline_eff is not None):
            cd = hub._poll_countdown - 1
            ready = hub._ready
            if cd <= 0:
                hub._schedule(task)
                hub._handoff()
            elif not ready:
                hub._cancel_streak = hub._timed_streak = 0
                hub._poll_countdown = cd  # the only runnable task: keep running
            else:
                nxt = ready[0]
                glet = nxt._glet
                if glet is None:
                    hub._schedule(task)
                    hub._handoff()
                else:
                    ready.popleft()
                    ready.append(task)
                    task._queued = True
                    hub._cancel_streak = hub._timed_streak = 0
                    nxt._queued = False
                    hub._poll_countdown = cd
                    hub.current = nxt
                    glet.switch()
        else:
            hub._schedule(task)
            hub._handoff()
        # end fastpath yield

    def reschedule(self, task: Task[Any], value: Any = None) -> None:
        hub = self
        # fastpath reschedule: copied from greenrt/_fastpath.py (python -m greenrt._fastpath --write)
        if task._abort_fn is None:
            raise InvariantViolation(f"task {task.id} ({task.name}) woken but not parked")
        task._abort_fn = None
        task._resume = value
        if hub._plain and not (task._queued or task._pending or task._drains):
            task._queued = True
            sc = task._scope
            d = sc._deadline_eff
            if d is None:
                hub._ready.append(task)
            else:
                hub._timed_seq = tq = hub._timed_seq + 1
                _heappush(hub._timed, (d, -(sc._priority or 0), tq, task))
        else:
            hub._schedule(task)
        # end fastpath reschedule

    def _handoff(self) -> Any:
        hub = self
        # fastpath handoff: copied from greenrt/_fastpath.py (python -m greenrt._fastpath --write)
        if hub._plain and not hub._cancel_lane:
            cd = hub._poll_countdown - 1
            if cd > 0:
                timed = hub._timed
                ready = hub._ready
                if timed:
                    if hub._timed_streak < hub.streak_limit or not ready:
                        nxt = timed[0][3]
                        glet = nxt._glet
                        if glet is not None:
                            _heappop(timed)
                            hub._cancel_streak = 0
                            hub._timed_streak += 1
                            hub._poll_countdown = cd
                            nxt._queued = False
                            hub.current = nxt
                            return glet.switch()
                elif ready:
                    nxt = ready[0]
                    glet = nxt._glet
                    if glet is not None:
                        ready.popleft()
                        hub._cancel_streak = hub._timed_streak = 0
                        hub._poll_countdown = cd
                        nxt._queued = False
                        hub.current = nxt
                        return glet.switch()
        return Hub._handoff(hub)
        # end fastpath handoff

    def _wait(self, timeout: float | None) -> None:
        self._in_wait = True  # read by the watchdog thread: an idle hub is not blocked
        try:
            self.driver.poll(timeout)
        finally:
            self._in_wait = False

    def _wakeup(self) -> None:
        self.driver.wakeup()

    def _has_io_waiters(self) -> bool:
        return self.driver.waiting > 0

    def _nothing_can_wake(self) -> bool:
        # (the common idle case first: a socket being waited on can always wake us)
        if self.driver.waiting:
            return False
        return Hub._nothing_can_wake(self)

    def close(self) -> None:
        self.driver.close()
