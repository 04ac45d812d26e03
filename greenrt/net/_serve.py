"""Servers: one task per connection inside a region, with graceful shutdown.

Network-independent: ``Server`` works on any ``Listener`` objects.

Structure (a task tree, so nothing outlives ``serve()``)::

    serve() caller
      region "server"                 # waits for the inner task, forwards cancellation
        task _run  (masked)           # outer cancellation does not reach below here
          region "connections"
            task accept loop (one per listener)
            task per connection: CancelScope(cleanup=shutdown budget) -> handler(stream)

Graceful shutdown, started by ``Server.shutdown()`` or by cancellation of the task
running ``serve()``:

1. stop accepting: the listeners are closed (a blocked ``accept`` wakes with
   ``ClosedResourceError`` and its loop ends);
2. every connection handler is cancelled with reason ``shutdown`` and gets
   ``shutdown_budget`` seconds (and ``shutdown_polls`` checkpoints) of cleanup;
3. when the budget has passed, streams of handlers still running are closed, which
   wakes any I/O they block in; a handler that keeps checkpointing is cancelled again
   by its exhausted cleanup budget (cleanup is bounded even if it swallows
   ``Cancelled``).

``serve()`` returns (or re-raises the caller's ``Cancelled``) once every handler has
finished. The outer cancellation is held back from the connection tasks by a
``masked()`` section so that they see ``shutdown``, not ``parent_cancelled``.

Limits: ``max_connections`` caps concurrent handlers: at the cap, the accept loops
stop accepting and new connections wait in the kernel's backlog (``backlog`` of the
listener) instead of consuming a task and a file descriptor each. Accept errors from
resource exhaustion (``EMFILE``, ``ENFILE``, ``ENOBUFS``, ``ENOMEM``) pause
accepting for ``ACCEPT_BACKOFF`` seconds instead of failing the server.

Handler errors: an exception from a handler closes that connection, is counted in
``statistics()["handler_errors"]`` and emitted as a ``net.handler_error`` trace event;
it does not stop the server (``propagate_errors=True`` makes it fail the server).
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._checkpoint import _enter, park, sleep
from .._exceptions import Cancelled, InvalidStateError
from .._hub import current_hub
from .._reason import CancelKind, CancelReason, CleanupBudget
from .._region import region
from .._scope import CancelScope, masked
from ._abc import ClosedResourceError, Listener
from ._connect import _Flag

if TYPE_CHECKING:  # pragma: no cover
    from .._hub import TimerHandle
    from .._region import Region
    from .._task import Task
    from ._abc import Stream

ACCEPT_BACKOFF = 0.1
_EXHAUSTION = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class _Waiters:
    """Tasks waiting for a connection slot; ``wake_all`` is not a checkpoint."""

    def __init__(self) -> None:
        self._tasks: dict[Task[Any], None] = {}

    def wait(self) -> None:
        task = _enter(current_hub())
        self._tasks[task] = None

        def abort() -> bool:
            self._tasks.pop(task, None)
            return True

        park(abort)

    def wake_all(self) -> None:
        tasks, self._tasks = self._tasks, {}
        for t in tasks:
            t._hub.reschedule(t, None)


class Server:
    """Serve connections from ``listeners`` with ``handler(stream)``. See the module
    docstring for the task structure, limits and shutdown rules."""

    def __init__(self, listeners: list[Listener], handler: Callable[[Stream], object], *,
                 max_connections: int = 1024, shutdown_budget: float = 5.0,
                 shutdown_polls: int = 1000, propagate_errors: bool = False,
                 name: str = "server") -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        if shutdown_budget < 0:
            raise ValueError("shutdown_budget must be >= 0")
        self.listeners = list(listeners)
        self.handler = handler
        self.max_connections = max_connections
        self.shutdown_budget = shutdown_budget
        self.propagate_errors = propagate_errors
        self.name = name
        self._cleanup = CleanupBudget(polls=shutdown_polls, seconds=shutdown_budget)
        self._state = "new"
        self._stop = _Flag()
        self._done = _Flag()
        self._slots = _Waiters()
        self._conns: dict[CancelScope, Stream] = {}
        self._region: Region | None = None
        self._force_timer: TimerHandle | None = None
        self._active = 0
        self._stats = {"accepted": 0, "handler_errors": 0, "force_closed": 0,
                       "accept_backoffs": 0, "at_capacity": 0}

    @property
    def addresses(self) -> list[Any]:
        """The listeners' addresses (with real ports)."""
        return [lst.address for lst in self.listeners]

    @property
    def state(self) -> str:
        """``new``, ``serving``, ``shutting_down`` or ``closed``."""
        return self._state

    def statistics(self) -> dict[str, Any]:
        return {"state": self._state, "active": self._active, **self._stats}

    def shutdown(self) -> None:
        """Start a graceful shutdown (see the module docstring). Not a checkpoint;
        idempotent; call it from any task of the same hub. ``serve()`` returns when
        the shutdown is complete."""
        self._stop.set()

    def serve(self) -> None:
        """Accept and handle connections until ``shutdown()`` or cancellation.

        Blocks (a checkpoint). Cancelling the calling task performs the graceful
        shutdown, then re-raises its ``Cancelled``. The listeners are closed when it
        returns, whatever happens.
        """
        if self._state != "new":
            raise InvalidStateError("Server.serve() can run only once")
        try:
            with region(name=self.name) as outer:
                outer.spawn(self._run, name=f"{self.name}.run")
                try:
                    self._done.wait()
                except Cancelled:
                    self._stop.set()
                    raise
        finally:
            for lst in self.listeners:
                lst.close()
            self._state = "closed"

    # -- internals --------------------------------------------------------------------

    def _run(self) -> None:
        try:
            with masked():
                self._state = "serving"
                with region(name=f"{self.name}.connections") as r:
                    self._region = r
                    for lst in self.listeners:
                        r.spawn(self._accept_loop, lst, name=f"{self.name}.accept")
                    try:
                        self._stop.wait()
                    finally:
                        self._begin_shutdown()
                if self._force_timer is not None:
                    self._force_timer.cancel()
        finally:
            self._done.set()

    def _begin_shutdown(self) -> None:
        if self._state == "shutting_down":
            return
        self._state = "shutting_down"
        hub = current_hub()
        if hub._tracing:
            hub.emit("net.server_shutdown", active=self._active)
        for lst in self.listeners:
            lst.close()
        self._slots.wake_all()
        reason = CancelReason(CancelKind.SHUTDOWN, message=f"{self.name} shutting down")
        for cs in list(self._conns):
            cs.cancel(reason)
        if self._conns:
            self._force_timer = hub.call_later(self.shutdown_budget, self._force_close)

    def _force_close(self) -> None:
        self._force_timer = None
        for stream in list(self._conns.values()):
            if not stream.closed:
                self._stats["force_closed"] += 1
                stream.close()

    def _accept_loop(self, listener: Listener) -> None:
        while self._state == "serving":
            if self._active >= self.max_connections:
                self._stats["at_capacity"] += 1
                self._slots.wait()
                continue
            try:
                stream = listener.accept()
            except ClosedResourceError:
                return
            except OSError as e:
                if e.errno in _EXHAUSTION:
                    self._stats["accept_backoffs"] += 1
                    hub = current_hub()
                    if hub._tracing:
                        hub.emit("net.accept_backoff", errno=e.errno)
                    sleep(ACCEPT_BACKOFF)
                    continue
                raise
            if self._state != "serving":
                stream.close()
                return
            self._active += 1
            self._stats["accepted"] += 1
            self._region.spawn(  # type: ignore[union-attr]  # set while serving
                self._connection, stream, name=f"{self.name}.conn")

    def _connection(self, stream: Stream) -> None:
        cs = CancelScope(cleanup=self._cleanup, name="connection")
        try:
            with cs:
                self._conns[cs] = stream
                if self._state != "serving":
                    cs.cancel(CancelReason(CancelKind.SHUTDOWN, message="server shutting down"))
                try:
                    self.handler(stream)
                except Exception as e:
                    self._stats["handler_errors"] += 1
                    hub = current_hub()
                    if hub._tracing:
                        hub.emit("net.handler_error", error=type(e).__name__,
                                 message=str(e)[:200])
                    if self.propagate_errors:
                        raise
        finally:
            self._conns.pop(cs, None)
            stream.close()
            self._active -= 1
            if self._slots._tasks:
                self._slots.wake_all()


def serve_listeners(handler: Callable[[Stream], object], listeners: list[Listener], *,
                    max_connections: int = 1024, shutdown_budget: float = 5.0,
                    on_ready: Callable[[Server], object] | None = None, **kw: Any) -> None:
    """Run a :class:`Server` over ``listeners`` until shutdown or cancellation.
    ``on_ready(server)`` is called once accepting is about to begin (use it to learn
    the addresses or keep the server to call ``shutdown()``). A checkpoint."""
    server = Server(listeners, handler, max_connections=max_connections,
                    shutdown_budget=shutdown_budget, **kw)
    if on_ready is not None:
        try:
            on_ready(server)
        except BaseException:
            for lst in listeners:
                lst.close()
            raise
    server.serve()
