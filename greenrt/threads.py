"""Running blocking code in worker threads, and calling back into the hub from them.

``to_thread(fn, *args)`` runs ``fn(*args)`` in a worker thread and parks the calling
task (the *host*) until it finishes; the hub keeps running other tasks meanwhile. It
is how greenrt does DNS resolution, file I/O and any other call that would block the
whole hub.

Pool and bound. Worker threads come from one process-wide cache (an idle worker
waits ``IDLE_TIMEOUT`` seconds for new work, then exits; workers are daemon threads).
How many run *for one hub* at once is bounded by that hub's default limiter, a
``greenrt.CapacityLimiter`` with ``DEFAULT_THREAD_LIMIT`` (40) tokens
(``default_thread_limiter()``; change its ``total_tokens`` to reconfigure), or by the
limiter passed as ``limiter=``. A call that finds no free token waits for one in
FIFO order; that wait is an ordinary cancel-safe wait. The token is held by the job
until the thread has really finished, even when the host abandoned it, so the bound
counts real threads.

Wake-up. The worker hands its outcome to the hub with ``hub.call_soon_threadsafe``,
which writes one byte to the driver's wake-up socket; the hub never polls for
thread completion.

Cancellation (the host task is cancelled while the thread runs):

* ``abandon_on_cancel=False`` (default): a thread cannot be interrupted, so the host
  keeps waiting (its ``abort_fn`` returns ``False``). When the thread finishes,
  ``to_thread`` delivers the ``Cancelled`` itself, as the checkpoint it is: the
  thread's *return value is dropped*; if the thread *raised*, that exception is
  chained to the ``Cancelled`` as its ``__context__`` (visible in the traceback) and
  also dropped. Side effects the thread made have happened. Inside ``masked()`` no
  cancellation is deliverable, so the result is returned normally.
* ``complete_on_cancel=True``: like the default, but the result is *returned* (or
  the thread's exception raised) and the cancellation is delivered at the caller's
  next checkpoint, so nothing the thread produced is lost. ``greenrt.fs`` uses this
  so that a cancelled read never loses data. Waiting for a pool token is still an
  ordinary cancellable wait.
* ``abandon_on_cancel=True``: the host leaves at once with ``Cancelled``; the thread
  keeps running to completion in the background and its result (or exception) is
  discarded on the hub (a ``thread.abandoned`` trace event records it). Use this
  only for calls whose effects do not matter once abandoned (a DNS lookup), never
  for writes.

Either way no *task* outlives its region; an abandoned thread is not a task.

Calling back: ``from_thread(fn, *args)`` from inside a worker started by
``to_thread`` runs ``fn(*args)`` *in the host task* (the host is woken, runs ``fn``,
and parks again), so ``fn`` may block: checkpoints, sleeps, channel operations,
everything a task can do, under the host's cancel scopes and budgets. Its return
value (or exception, including ``Cancelled`` if the host is cancelled while ``fn``
blocks) is passed back to the thread. ``from_thread(fn, *args, in_task=False)`` runs
``fn`` as a plain call on the hub instead (no task: ``fn`` must not block; calling a
checkpoint there raises ``NoHubError``). Both require the host to be waiting for this
thread; once the host has abandoned it (or from a thread greenrt did not start)
``from_thread`` raises ``ThreadCallbackError``.

Determinism: ``to_thread`` calls ``hub.check_nondeterminism("to_thread")`` first, so
the lab refuses real threads in strict mode.

Hazards: never call ``from_thread`` from the hub thread itself (it would deadlock;
it raises ``ThreadCallbackError`` instead). ``fn`` runs in a copy of the host task's
``contextvars`` context.
"""

from __future__ import annotations

import contextvars
import threading
import weakref
from collections.abc import Callable
from types import FunctionType
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple

from ._checkpoint import _enter, park
from ._exceptions import Cancelled, GreenrtError, WouldBlock
from ._hub import current_hub
from ._usage import CO_ASYNC, check_task_fn
from .sync import CapacityLimiter

__all__ = [
    "DEFAULT_THREAD_LIMIT", "ThreadCallbackError", "default_thread_limiter", "from_thread",
    "thread_pool_statistics", "to_thread",
]

if TYPE_CHECKING:  # pragma: no cover
    from ._hub import Hub
    from ._task import Task

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

DEFAULT_THREAD_LIMIT = 40
IDLE_TIMEOUT = 10.0


class ThreadCallbackError(GreenrtError):
    """``from_thread`` cannot reach a task: the caller is not a worker started by
    ``to_thread``, or its host task has abandoned it."""


# -- the process-wide cache of worker threads -----------------------------------------


class _Worker:
    __slots__ = ("_job", "_wake", "_thread", "__weakref__")

    def __init__(self) -> None:
        self._job: Callable[[], None] | None = None
        self._wake = threading.Lock()
        self._wake.acquire()
        self._thread = threading.Thread(target=self._run, name="greenrt-worker", daemon=True)

    def _run(self) -> None:
        cache = _cache
        while True:
            job, self._job = self._job, None
            job()  # type: ignore[misc]  # woken only with a job set
            job = None
            with cache.lock:
                cache.idle.append(self)
            if not self._wake.acquire(timeout=IDLE_TIMEOUT):
                with cache.lock:
                    try:
                        cache.idle.remove(self)
                    except ValueError:
                        pass  # handed a job just as the timeout expired: take it
                    else:
                        cache.threads -= 1
                        return
                self._wake.acquire()


class _ThreadCache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: list[_Worker] = []
        self.threads = 0

    def submit(self, job: Callable[[], None]) -> None:
        with self.lock:
            w = self.idle.pop() if self.idle else None
            if w is None:
                self.threads += 1
        if w is not None:
            w._job = job
            w._wake.release()
            return
        w = _Worker()
        w._job = job
        try:
            w._thread.start()
        except BaseException:
            with self.lock:
                self.threads -= 1
            raise


_cache = _ThreadCache()


def thread_pool_statistics() -> dict[str, int]:
    """Process-wide worker threads: ``threads`` alive, ``idle`` among them."""
    with _cache.lock:
        return {"threads": _cache.threads, "idle": len(_cache.idle)}


# -- per-hub limiter ------------------------------------------------------------------

_limiters: weakref.WeakKeyDictionary[Hub, CapacityLimiter] = weakref.WeakKeyDictionary()


def default_thread_limiter() -> CapacityLimiter:
    """The current hub's limiter for ``to_thread`` (``DEFAULT_THREAD_LIMIT`` tokens).
    Set its ``total_tokens`` to change the bound for this hub."""
    hub = current_hub()
    lim = _limiters.get(hub)
    if lim is None:
        lim = _limiters[hub] = CapacityLimiter(DEFAULT_THREAD_LIMIT)
    return lim


# -- jobs -----------------------------------------------------------------------------

_tls = threading.local()


class _Done:
    __slots__ = ("ok", "value")

    def __init__(self, ok: bool, value: Any):
        self.ok = ok
        self.value = value


class _Request:
    """A ``from_thread`` call waiting for the hub."""

    __slots__ = ("fn", "args", "in_task", "done", "result")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], in_task: bool) -> None:
        self.fn = fn
        self.args = args
        self.in_task = in_task
        self.done = threading.Event()
        self.result: _Done | None = None

    def resolve(self, result: _Done) -> None:
        if self.result is None:
            self.result = result
            self.done.set()


class _Job:
    """One ``to_thread`` call. ``lock`` guards ``abandoned`` and ``request``, the only
    state both threads touch."""

    __slots__ = ("hub", "host", "lock", "abandoned", "request", "name", "__weakref__")

    def __init__(self, hub: Hub, host: Task[Any], name: str) -> None:
        self.hub = hub
        self.host = host
        self.lock = threading.Lock()
        self.abandoned = False
        self.request: _Request | None = None
        self.name = name

    def __repr__(self) -> str:
        return f"<thread job {self.name!r} of task {self.host.id}>"


def _run_in_worker(job: _Job, ctx: contextvars.Context, fn: Callable[..., Any],
                   args: tuple[Any, ...], limiter: CapacityLimiter) -> None:
    _tls.job = job
    try:
        try:
            result = _Done(True, ctx.run(fn, *args))
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the host
            result = _Done(False, exc)
    finally:
        _tls.job = None
    job.hub.call_soon_threadsafe(_finish_on_hub, job, result, limiter)


def _finish_on_hub(job: _Job, result: _Done, limiter: CapacityLimiter) -> None:
    job.hub.threads_outstanding -= 1
    limiter.release_on_behalf_of(job)
    with job.lock:
        abandoned = job.abandoned
    host = job.host
    if abandoned:
        hub = job.hub
        if hub._tracing:
            hub._emit("thread.abandoned", host.id, None, job=job.name, ok=result.ok,
                      error=None if result.ok else type(result.value).__name__)
        return
    host._hub.reschedule(host, result)


def _serve_request(job: _Job, req: _Request) -> None:
    """On the hub: run a ``from_thread(in_task=False)`` call, or wake the host for an
    ``in_task`` one."""
    with job.lock:
        if job.abandoned:
            req.resolve(_Done(False, ThreadCallbackError("the host task abandoned this thread")))
            return
    if req.in_task:
        job.host._hub.reschedule(job.host, req)
        return
    try:
        req.resolve(_Done(True, req.fn(*req.args)))
    except BaseException as exc:  # noqa: BLE001
        req.resolve(_Done(False, exc))


def to_thread(fn: Callable[[*Ts], T], *args: *Ts, abandon_on_cancel: bool = False,
              complete_on_cancel: bool = False, limiter: CapacityLimiter | None = None,
              name: str | None = None) -> T:
    """Run ``fn(*args)`` in a worker thread; return its result or raise its exception.

    A checkpoint. Waits (FIFO, cancel-safe) for a token of ``limiter`` (default: the
    hub's ``default_thread_limiter()``). Cancellation while the thread runs: with
    ``abandon_on_cancel=False`` the task waits for the thread, then raises
    ``Cancelled`` and drops the result (a thread exception becomes the
    ``Cancelled``'s ``__context__``); with ``complete_on_cancel=True`` it returns the
    result and the cancellation comes at the next checkpoint; with
    ``abandon_on_cancel=True`` it raises ``Cancelled`` at once and the thread's
    result is discarded when it arrives. See the module docstring. ``fn`` must be a
    plain callable (``TypeError`` before the checkpoint for a coroutine or an
    ``async def``).
    """
    if abandon_on_cancel and complete_on_cancel:
        raise ValueError("abandon_on_cancel and complete_on_cancel exclude each other")
    if type(fn) is not FunctionType or fn.__code__.co_flags & CO_ASYNC:
        check_task_fn(fn, "to_thread")
    hub = current_hub()
    task = _enter(hub)
    hub.check_nondeterminism("to_thread")
    if limiter is None:
        limiter = default_thread_limiter()
    job = _Job(hub, task, name or getattr(fn, "__qualname__", None) or repr(fn))
    try:
        limiter.acquire_on_behalf_of_nowait(job)
    except WouldBlock:
        limiter.acquire_on_behalf_of(job)  # FIFO wait for a token; cancel-safe
    ctx = contextvars.copy_context()
    try:
        _cache.submit(lambda: _run_in_worker(job, ctx, fn, args, limiter))
    except BaseException:
        limiter.release_on_behalf_of(job)
        raise
    hub.threads_outstanding += 1  # a running thread can wake someone: no deadlock

    if abandon_on_cancel:
        def abort() -> bool:
            with job.lock:
                job.abandoned = True
                req = job.request
            if req is not None:
                req.resolve(_Done(False, ThreadCallbackError(
                    "the host task abandoned this thread")))
            return True
    else:
        def abort() -> bool:
            return False

    while True:
        msg = park(abort, f"to_thread {job.name}")
        if type(msg) is _Done:
            break
        _run_request_in_host(job, msg)

    if not abandon_on_cancel and not complete_on_cancel and task._pending:
        # The checkpoint half after the wait: deliver a cancellation that arrived while
        # the thread ran. The result is dropped; a thread exception is chained.
        try:
            _enter(hub)
        except Cancelled as c:
            if not msg.ok:
                c.__context__ = msg.value
            raise
    if msg.ok:
        return msg.value  # type: ignore[no-any-return]  # fn's result
    exc = msg.value
    try:
        raise exc
    finally:
        del exc, msg


def _run_request_in_host(job: _Job, req: _Request) -> None:
    try:
        result = _Done(True, req.fn(*req.args))
    except BaseException as exc:  # noqa: BLE001 - handed to the thread, which re-raises
        result = _Done(False, exc)
    with job.lock:
        job.request = None
    req.resolve(result)


def from_thread(fn: Callable[[*Ts], T], *args: *Ts, in_task: bool = True) -> T:
    """From a worker thread started by ``to_thread``: run ``fn(*args)`` on the hub and
    return its result (or raise its exception) in the thread.

    ``in_task=True`` (default) runs ``fn`` in the host task, so it may block; a
    cancellation of the host surfaces as ``Cancelled`` raised here (let it
    propagate). ``in_task=False`` runs it as a plain hub call that must not block.
    Raises ``ThreadCallbackError`` when there is no waiting host task.
    """
    if type(fn) is not FunctionType or fn.__code__.co_flags & CO_ASYNC:
        check_task_fn(fn, "from_thread")
    job: _Job | None = getattr(_tls, "job", None)
    if job is None:
        if getattr(_current_hub_or_none(), "_running", False):
            raise ThreadCallbackError("from_thread() called on the hub thread; just call fn")
        raise ThreadCallbackError("from_thread() called from a thread not started by to_thread()")
    req = _Request(fn, args, in_task)
    with job.lock:
        if job.abandoned:
            raise ThreadCallbackError("the host task abandoned this thread")
        job.request = req
    job.hub.call_soon_threadsafe(_serve_request, job, req)
    req.done.wait()
    with job.lock:
        if job.request is req:
            job.request = None
    result: _Done = req.result  # type: ignore[assignment]  # done: resolved
    if result.ok:
        return result.value  # type: ignore[no-any-return]  # fn's result
    exc = result.value
    try:
        raise exc
    finally:
        del exc, result


def _current_hub_or_none() -> Hub | None:
    try:
        return current_hub()
    except Exception:
        return None
