"""The lab hub: greenrt's scheduler on virtual time with seeded choices.

``LabHub`` subclasses ``greenrt.lowlevel.Hub`` and changes only what the hub
interface lets an implementation change:

* ``now()`` is a virtual clock (``lab.clock.VirtualClock``). It stands still while
  tasks run and jumps to the earliest timer when nothing is runnable (``_wait``).
  Busy-waiting on ``now()`` therefore never ends; ``max_steps`` stops such a run.
* ``_pick()`` chooses the next task among *all* runnable tasks (cancel lane, timed
  lane in deadline order, ready lane in FIFO order, concatenated in that order) with
  the strategy's ``choose("task", n, ids)``. The real hub's lane priorities are one
  of the schedules the lab explores, not a constraint. A decision with a single
  candidate is not a choice.
* ``_fire_due_timers()`` fires timers due at the same instant in an order chosen by
  ``choose("timer", k)``; timers due at different instants fire in time order.
* ``_wait(None)`` — nothing runnable, no timer, and (the network being simulated
  with timers) no I/O — is a *deadlock*. The hub records who waits on what (the
  wait-for graph, from the parked greenlets' frames), emits ``lab.deadlock``, and
  breaks the deadlock by cancelling the root region with reason ``shutdown`` so every
  task can unwind; a second deadlock halts the run.
* ``network`` is the simulated network (``lab.net.SimNetwork``), ``driver`` refuses
  raw file descriptors, and ``check_nondeterminism(what)`` raises
  ``NondeterminismError`` in strict mode.

Every trace event goes through ``_emit`` into ``self.events`` (a list of
``greenrt.TraceEvent``) in emission order; ``seq`` is the index in that list and is
the "step" replay reports. The lab adds its own events: ``lab.choice`` (every
decision: ``what``, ``n``, index ``i``, and the chosen ``task`` for scheduling),
``lab.timer`` (a timer fired: sequence number, due time, callback name, woken task),
``lab.deadlock``, ``lab.nondeterminism`` (non-strict mode only) and ``lab.net.*``.

Halting: replay divergence, the step limit and an unbreakable deadlock set
``_halt``; the next ``_pick`` raises ``LabHalt`` out of the scheduler loop (never
inside a task), ``greenrt.run`` unwinds, and ``lab.run`` tears the remaining task
greenlets down.

Tracking (Lab II, ``track=True``; used by ``lab.explore``): every pick starts a
*step* (``Step``: the task, the candidate ids, the index of the choice that picked it
or ``None`` when it was the only candidate) that lasts until the next pick. The step
collects the task's *footprint* — the objects it read or wrote, reported by greenrt's
sync objects and channels through ``Hub.note_access`` (``wants_access`` is set), by
``lab.shared``/``lab.access``, by the simulated network, and derived from events (a
``checkpoint`` reads the task's cancellation state, a ``cancel.request`` writes it,
spawning writes the spawn counter) — and the tasks it woke. Objects get per-run
numbers in order of first access; the DPOR strategy compares footprints only of
steps taken from the same state, so the numbering is the same up to that state (see
``lab.explore``). Accesses made outside a task step (timer callbacks) are not
recorded: timers are the environment, ordered by virtual time.

Hazards: the hub reads the core's documented scheduler state (lanes, the timer heap,
``Task._abort_fn``/``_glet``/``_state_done``, ``Region._live``) and
never writes anything but the lanes and the heap, exactly as the base class does.
Nothing here may depend on ``id()``, set iteration, hash order or real time.
"""

from __future__ import annotations

import heapq
import operator
import os
import threading
from typing import Any

from greenrt import CancelKind, CancelReason, Region, Task, TraceEvent
from greenrt.lowlevel import Hub

from .choice import RandomStrategy, Strategy
from .clock import VirtualClock
from .errors import NondeterminismError

DEFAULT_MAX_STEPS = 2_000_000

_task_id = operator.attrgetter("id")

#: How to model each refused source of nondeterminism (used in error messages).
HINTS = {
    "to_thread": "model the blocking call as a task (greenrt.sleep for its duration) "
                 "or run the test with strict=False",
    "socket": "use greenrt.net (open_tcp/listen_tcp/...), which runs on lab.net's "
              "simulated network under the lab",
    "fd": "raw file descriptors cannot be simulated; use greenrt.net streams",
    "time": "use greenrt.now() / greenrt.sleep(), which run on the lab's virtual clock",
    "random": "use lab.rng(), a random.Random seeded from the lab's choice stream",
    "urandom": "use lab.rng().randbytes(n)",
}


class LabHalt(BaseException):  # noqa: N818 - a control-flow signal, not an error
    """Raised out of the scheduler loop to stop a lab run at once. ``reason`` is a
    short kind (``divergence``, ``step_limit``, ``time_limit``, ``deadlock``) and
    ``error`` the exception that explains it."""

    def __init__(self, reason: str, error: BaseException):
        super().__init__(reason, error)
        self.reason = reason
        self.error = error


class _RefusingDriver:
    """Stands in for the epoll driver: the lab has no real file descriptors."""

    waiting = 0

    def __init__(self, hub: LabHub):
        self._hub = hub

    def _refuse(self, what: str):
        raise NondeterminismError(what, HINTS["fd"])

    def wait_readable(self, fd) -> None:
        self._refuse(f"wait_readable({fd!r})")

    def wait_writable(self, fd) -> None:
        self._refuse(f"wait_writable({fd!r})")

    def notify_closing(self, fd) -> None:
        pass

    def close(self) -> None:
        pass


class Step:
    """One scheduling step of a tracked run (see the module docstring)."""

    __slots__ = ("task", "ids", "choice", "fp", "woke", "objs")

    def __init__(self, task: int, ids: tuple, choice: int | None, objs: int):
        self.task = task
        self.ids = ids
        self.choice = choice
        self.fp: list = []
        self.woke: list | tuple = ()  # a list from the first wake-up on
        self.objs = objs  # objects numbered before this step

    def __repr__(self) -> str:
        return f"Step(T{self.task}, ids={self.ids}, choice={self.choice}, fp={self.fp})"


class LabHub(Hub):
    """The deterministic hub. Construct it through ``lab.run``; see the module
    docstring for what it changes and why."""

    def __init__(self, *, strategy: Strategy, strict: bool = True,
                 max_steps: int = DEFAULT_MAX_STEPS, max_time: float | None = None,
                 trace: bool = True, net_config: Any = None, instruments=(),
                 leak_policy: str = "error", thread_grace: float = 5.0,
                 track: bool = False):
        super().__init__(instruments=instruments, leak_policy=leak_policy)
        self.track = track
        self.sched: list[Step] = []
        self._step: Step | None = None
        self._objs: dict[int, tuple[int, Any]] = {}
        self._cancel_reads: dict[int | None, tuple] = {}
        if track:
            self.wants_access = True
        self.clock = VirtualClock()
        self.strategy = strategy
        # Bound once: ``_pick`` asks for every scheduling decision. Only a strategy
        # with a ``mismatch`` attribute (the replay strategies) can diverge.
        self._choose = strategy.choose
        self._may_mismatch = hasattr(strategy, "mismatch")
        # the uniform strategy's draw, inlined in _pick (exactly RandomStrategy.choose)
        self._randbits = strategy._rng.getrandbits if type(strategy) is RandomStrategy else None
        self.strict = strict
        self.max_steps = max_steps
        self.max_time = max_time
        self.driver = _RefusingDriver(self)
        self.events: list | None = [] if trace else None
        if trace:
            self._tracing = True
        self.checker = None  # replay: called with every event
        self._halt: LabHalt | None = None
        self.steps = 0
        self.choices = 0
        self.tasks: dict[int, Task] = {}
        self.sid_task: dict[int, int] = {}  # a task's root scope id -> task id
        self.spawned = 0
        self._prune_at = 1024
        self.main_task: Task | None = None
        self._timer_owner: dict[int, tuple] = {}
        self.deadlocks: list[dict] = []
        self.quiescence_findings: list[dict] = []
        self._reported_timers: set[int] = set()
        self.nondeterminism: list[str] = []
        self._net_config = net_config
        self._network = None
        self._rng = None
        self._wake = threading.Event()
        self.thread_grace = thread_grace
        self._thread = threading.get_ident()
        bind = getattr(strategy, "bind", None)
        if bind is not None:
            bind(self)

    # -- the clock ------------------------------------------------------------------

    def now(self) -> float:
        return self.clock.now

    def wall_time(self) -> float:
        """Calendar time under the lab: the virtual clock, deterministic per seed."""
        return self.clock.now

    def _wait(self, timeout: float | None) -> None:
        if timeout is None:
            if not self.strict and self._wait_for_threads():
                return
            self._on_deadlock()
            return
        nt = self._next_timer()
        if nt is None:
            return
        if self.max_time is not None and nt > self.max_time:
            self._stop("time_limit", TimeoutError(
                f"virtual time limit {self.max_time} reached (next timer at {nt})"))
        self.clock.advance_to(nt)

    def _wakeup(self) -> None:
        self._wake.set()

    def _has_io_waiters(self) -> bool:
        return False  # simulated I/O completes through timers

    def _wait_for_threads(self) -> bool:
        """Non-strict mode only: real threads may still call back; wait for them."""
        if self._wake.wait(self.thread_grace):
            self._wake.clear()
            return True
        return False

    # -- nondeterminism -------------------------------------------------------------

    def check_nondeterminism(self, what: str, hint: str | None = None) -> None:
        """Strict mode: raise ``NondeterminismError`` naming ``what``. Otherwise
        note it (``lab.nondeterminism`` event) and let it happen."""
        if self.strict:
            if hint is None:
                hint = HINTS.get(what.split("(")[0].split(".")[0], "")
            raise NondeterminismError(what, hint)
        self.nondeterminism.append(what)
        if self._tracing:
            self.emit("lab.nondeterminism", what=what)

    @property
    def network(self):
        """The simulated network (created on first use)."""
        if self._network is None:
            from .net import SimNetwork

            self._network = SimNetwork(self, self._net_config)
        return self._network

    def rng(self):
        """A ``random.Random`` for the program, seeded from the choice stream."""
        if self._rng is None:
            import random

            self._rng = random.Random(self.choose("rng.seed", 1 << 30))
        return self._rng

    # -- choices --------------------------------------------------------------------

    def choose(self, what: str, n: int, ids=None, **note: Any) -> int:
        """Ask the strategy for an index in ``range(n)`` and record the choice.
        ``n == 1`` is not a choice: 0 is returned and nothing is recorded."""
        if n <= 1:
            return 0
        i = self.strategy.choose(what, n, ids)
        self.choices += 1
        mismatch = getattr(self.strategy, "mismatch", None)
        if mismatch is not None and self._halt is None and self.checker is None:
            from .errors import ReplayDivergence

            self._halt = LabHalt("divergence", ReplayDivergence(
                self._event_seq, None, None, mismatch))
        if self._tracing:
            self._emit("lab.choice", None, None, what=what, n=n, i=i, **note)
        return i

    # -- tracking (Lab II) -------------------------------------------------------------

    def note_access(self, obj: Any, write: bool = True) -> None:
        """Record that the current task step read or wrote ``obj`` (tracked runs).
        A tuple is a stable key already (``("shared", name)``); any other object is
        numbered in order of first access (a reference is kept, so ids are not reused)."""
        st = self._step
        if st is None or self.current is None:
            return
        if type(obj) is tuple:
            key = obj
        else:
            e = self._objs.get(id(obj))
            if e is None:
                e = (len(self._objs), obj)
                self._objs[id(obj)] = e
            key = e[0]
        st.fp.append((key, write))

    def _begin_step(self, task, ids: tuple, choice: int | None) -> None:
        st = Step(task.id, ids, choice, len(self._objs))
        self.sched.append(st)
        self._step = st

    # -- tracing --------------------------------------------------------------------

    def _emit(self, kind: str, task: int | None, region: int | None, /, **data: Any) -> None:
        # Hot path (several events per scheduling step): locals, and the tracking,
        # checker and instrument branches tested once each.
        seq = self._event_seq
        ev = TraceEvent(seq, kind, self.clock.now, task, region, data)
        self._event_seq = seq + 1
        events = self.events
        if events is not None:
            events.append(ev)
        if self.track:
            st = self._step
            if st is not None and self.current is not None:
                if kind == "checkpoint":  # one shared (key, read) pair per task
                    a = self._cancel_reads.get(task)
                    if a is None:
                        a = self._cancel_reads[task] = (("cancel", task), False)
                    st.fp.append(a)
                elif kind == "cancel.request" and task is not None:
                    st.fp.append((("cancel", task), True))
        chk = self.checker
        if chk is not None:
            chk(ev)
        instruments = self._instruments
        if instruments:
            for _, cb in instruments:
                cb(ev)
        if kind == "region.close" and self._timer_owner:
            self._check_region_close(ev)

    def remove_instrument(self, instrument) -> None:
        super().remove_instrument(instrument)
        if self.events is not None:
            self._tracing = True

    # -- scheduling -----------------------------------------------------------------

    def _schedule(self, task) -> None:
        if self.track:
            cur = self.current
            if cur is not None and task is not cur:
                st = self._step
                if st is not None:
                    if st.woke:
                        st.woke.append(task.id)
                    else:
                        st.woke = [task.id]
                    if task._glet is None:
                        st.fp.append((("spawn",), True))
        if task._glet is None:  # not started yet: spawned just now
            tasks = self.tasks
            if self.main_task is None:
                self.main_task = task
            tasks[task.id] = task
            self.sid_task[task._sid] = task.id
            self.spawned += 1
            if len(tasks) > self._prune_at:
                self._prune_tasks()
        Hub._schedule(self, task)

    def _prune_tasks(self) -> None:
        live = {i: t for i, t in self.tasks.items() if not t._state_done or t is self.main_task}
        self.tasks = live
        self._prune_at = max(1024, 2 * len(live))

    def _handoff(self):
        # The real hub may switch from one task straight to the next, calling _pick on
        # a task greenlet. The lab always goes through the hub greenlet, so that
        # _pick (which may halt the run) never runs inside a task.
        self._poll_countdown -= 1
        return self._glet.switch()

    def _stop(self, reason: str, error: BaseException):
        if self._halt is None:
            self._halt = LabHalt(reason, error)
        raise self._halt

    def _pick(self):
        if self._halt is not None:
            raise self._halt
        cl = self._cancel_lane
        timed = self._timed
        ready = self._ready
        n = len(cl) + len(timed) + len(ready)
        if n == 0:
            return None
        self.steps += 1
        if self.steps > self.max_steps:
            self._stop("step_limit", RuntimeError(
                f"step limit {self.max_steps} reached (a livelock, a busy wait on now(), "
                f"or a run that needs a larger max_steps)"))
        if n == 1:
            if cl:
                task = cl.popleft()
            elif timed:
                task = heapq.heappop(timed)[3]
            else:
                task = ready.popleft()
            if self.track:
                self._begin_step(task, (task.id,), None)
            return task
        if timed or cl:
            if timed:
                timed.sort()  # a sorted list is a heap; entries (deadline, -prio, seq, task)
            lst = list(map(_task_id, cl))
            lst += [e[3].id for e in timed]
            lst += map(_task_id, ready)
            ids = tuple(lst)
        else:  # the common case: only the ready lane
            ids = tuple(map(_task_id, ready))
        bits = self._randbits
        if bits is not None:  # RandomStrategy.choose inlined (the same draw)
            k = n.bit_length()
            i = bits(k)
            while i >= n:
                i = bits(k)
        else:
            i = self._choose("task", n, ids)
        self.choices += 1
        if self._may_mismatch:
            mismatch = getattr(self.strategy, "mismatch", None)
            if mismatch is not None and self._halt is None and self.checker is None:
                from .errors import ReplayDivergence

                self._halt = LabHalt("divergence", ReplayDivergence(self._event_seq, None,
                                                                    None, mismatch))
        if not cl and not timed:
            task = ready[i]
            del ready[i]
        elif i < len(cl):
            task = cl[i]
            del cl[i]
        else:
            i2 = i - len(cl)
            if i2 < len(timed):
                task = timed.pop(i2)[3]
            else:
                i2 -= len(timed)
                task = ready[i2]
                del ready[i2]
        if self._tracing:
            # _emit inlined for the one event of every scheduling decision (neither a
            # footprint event nor region.close: only the sinks apply)
            seq = self._event_seq
            ev = TraceEvent(seq, "lab.choice", self.clock.now, None, None,
                            {"what": "task", "n": n, "i": i, "pick": task.id})
            self._event_seq = seq + 1
            if self.events is not None:
                self.events.append(ev)
            if self.checker is not None:
                self.checker(ev)
            for _, cb in self._instruments:
                cb(ev)
        if self.track:
            st = Step(task.id, ids, self.choices - 1, len(self._objs))
            self.sched.append(st)
            self._step = st
        return task

    # -- timers ---------------------------------------------------------------------

    def call_at(self, when: float, fn, *args):
        h = Hub.call_at(self, when, fn, *args)
        cur = self.current
        if cur is not None and self._tracing:
            chain = []
            r = cur._task_region
            while r is not None:
                chain.append(r.id)
                r = r._parent_region
            owner = self._timer_owner
            owner[self._timer_seq] = (cur.id, cur.name, tuple(chain))
            if len(owner) > 2 * len(self._timers) + 1024:
                live = {e[1] for e in self._timers}
                self._timer_owner = {k: v for k, v in owner.items() if k in live}
        return h

    def call_at_unowned(self, when: float, fn, *args):
        """A timer that belongs to the lab (the simulated network), not to a task:
        the quiescence oracle does not count it against the current task's region."""
        return Hub.call_at(self, when, fn, *args)

    def _fire_due_timers(self, now: float) -> None:
        timers = self._timers
        owner = self._timer_owner
        while timers and timers[0][0] <= now:
            when = timers[0][0]
            group = []
            while timers and timers[0][0] == when:
                e = heapq.heappop(timers)
                if e[2].cancelled:
                    self._cancelled_timers -= 1
                    owner.pop(e[1], None)
                    continue
                group.append(e)
            while group:
                j = self.choose("timer", len(group)) if len(group) > 1 else 0
                _, seq, h = group.pop(j)
                owner.pop(seq, None)
                if h.cancelled:  # an earlier timer of the group cancelled it
                    self._cancelled_timers -= 1
                    continue
                fn, args = h.fn, h.args
                h.cancelled = True
                h.fn = h.args = None
                self.stats["timers_fired"] += 1
                if self._tracing:
                    woken = args[0].id if args and isinstance(args[0], Task) else None
                    self._emit("lab.timer", woken, None, timer=seq, when=h.when,
                               fn=_callable_name(fn))
                fn(*args)

    # -- oracles' raw material ------------------------------------------------------

    def _check_region_close(self, ev) -> None:
        region = ev.region
        closer = ev.task
        for when, seq, h in sorted(self._timers, key=lambda e: e[1]):
            if h.cancelled:
                continue
            o = self._timer_owner.get(seq)
            if o is None or region not in o[2] or o[0] == closer or seq in self._reported_timers:
                continue
            self._reported_timers.add(seq)
            self.quiescence_findings.append({
                "region": region, "step": ev.seq, "time": ev.time, "timer": seq,
                "due": when, "fn": _callable_name(h.fn), "task": o[0], "name": o[1]})

    def live_tasks(self) -> list[Task]:
        return [t for _, t in sorted(self.tasks.items()) if not t._state_done]

    def wait_for_graph(self) -> dict:
        """Every live task, what it waits on, and the first wait-for cycle found."""
        blocked = [describe_wait(t) for t in self.live_tasks()]
        edges = {b["task"]: b["on"] for b in blocked}
        return {"blocked": blocked, "cycle": _find_cycle(edges)}

    def _on_deadlock(self) -> None:
        graph = self.wait_for_graph()
        graph["step"] = self._event_seq
        graph["time"] = self.clock.now
        self.deadlocks.append(graph)
        if self._tracing:
            self._emit("lab.deadlock", None, None, blocked=graph["blocked"], cycle=graph["cycle"])
        root = self.root_region
        if len(self.deadlocks) > 1 or root is None:
            from .oracles import format_deadlock

            self._stop("deadlock", RuntimeError(
                "deadlock that cancelling the root region did not resolve: "
                + format_deadlock(graph)))
        root.cancel(CancelReason(CancelKind.SHUTDOWN,
                                 message="lab: deadlock (every task blocked, no timer, no I/O)",
                                 origin_region=root.id, time=self.clock.now))

    # -- leaving --------------------------------------------------------------------

    def teardown(self) -> int:
        """Kill the greenlets of tasks that are still alive after the run stopped
        (orphans, or every task of a halted run). Returns how many were killed."""
        from greenlet import GreenletExit

        killed = 0
        for t in self.live_tasks():
            g = t._glet
            if g is None or g.dead:
                continue
            killed += 1
            for _ in range(3):  # a task that blocks again in its cleanup gets 3 tries
                try:
                    g.throw(GreenletExit)
                except BaseException:  # noqa: BLE001 - whatever the dying task raised
                    pass
                if g.dead or t._state_done:
                    break
        for g in self._free_glets:
            try:
                g.throw()
            except BaseException:  # noqa: BLE001
                pass
        self._free_glets = []
        return killed


def _callable_name(fn) -> str:
    if fn is None:
        return "None"
    name = getattr(fn, "__qualname__", None)
    if name is None:
        inner = getattr(fn, "func", None)  # functools.partial
        name = getattr(inner, "__qualname__", None) or type(fn).__name__
    return name


# -- what a parked task waits on ------------------------------------------------------

_INTERNAL = tuple(os.path.dirname(os.path.abspath(m)) + os.sep for m in (
    __import__("greenrt").__file__, __file__))


def _is_internal(filename: str) -> bool:
    return filename.startswith(_INTERNAL)


def site_name(filename: str) -> str:
    """A file name for reports: relative to the working directory when inside it."""
    try:
        rel = os.path.relpath(filename)
    except ValueError:
        return filename
    return filename if rel.startswith("..") else rel


def describe_wait(task: Task) -> dict:
    """What ``task`` is doing: parked on what (from its greenlet's frames), at which
    site of the program, and which tasks it waits for (the wait-for edges)."""
    if task._queued:
        state = "runnable"
    elif task._abort_fn is not None:
        state = "parked"
    elif task._glet is None:
        state = "not started"
    else:
        state = "running"
    d: dict[str, Any] = {"task": task.id, "name": task.name, "state": state, "waits": None,
                         "site": None, "on": []}
    g = task._glet
    f = g.gr_frame if g is not None and not g.dead else None
    frames = []
    while f is not None:
        frames.append(f)
        f = f.f_back
    api = None
    for idx, fr in enumerate(frames):
        if not _is_internal(fr.f_code.co_filename):
            d["site"] = f"{site_name(fr.f_code.co_filename)}:{fr.f_lineno} in {fr.f_code.co_qualname}"
            if idx > 0:
                api = frames[idx - 1]
            break
        if fr.f_code.co_name == "_run_task" and idx > 0:
            api = frames[idx - 1]  # the task's body is itself a greenrt function
            break
    if api is None:
        if state == "parked":
            d["waits"] = "park"
        return d
    d["waits"] = api.f_code.co_qualname
    obj = api.f_locals.get("self")
    on: list[int] = []
    if isinstance(obj, Task):
        on = [obj.id]
        d["waits"] += f" on task {obj.id} ({obj.name})"
    elif isinstance(obj, Region):
        on = [c.id for c in obj._live]
        d["waits"] += f" on region {obj.id}" + (f" ({obj.name})" if obj.name else "")
    elif obj is not None:
        edges = getattr(obj, "_lab_wait_edges", None)
        if callable(edges):
            on = list(edges())
        else:
            for attr in ("_owner", "owner", "_holder"):
                v = getattr(obj, attr, None)
                if isinstance(v, Task) and not v._state_done:
                    on = [v.id]
                    break
        label = getattr(obj, "_lab_label", None)
        if callable(label):
            d["waits"] += f" on {label()}"
    d["on"] = [i for i in on if i != task.id]
    return d


def _find_cycle(edges: dict[int, list[int]]) -> list[int]:
    """The first cycle of the wait-for graph (DFS in task id order), or []."""
    color: dict[int, int] = {}
    stack: list[int] = []

    def visit(n: int) -> list[int] | None:
        color[n] = 1
        stack.append(n)
        for m in edges.get(n, ()):
            if m not in edges:
                continue
            c = color.get(m, 0)
            if c == 1:
                return stack[stack.index(m):] + [m]
            if c == 0:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        color[n] = 2
        return None

    for n in sorted(edges):
        if color.get(n, 0) == 0:
            found = visit(n)
            if found:
                return found
    return []
