"""A bounded connection pool whose checkouts are leases (greenrt obligations).

Job: hand each caller a connection it has to itself, keep at most
``max_connections`` open, make waiting for one cancel-safe and bounded, and never take
back a connection whose state is unknown.

* **Leases.** ``acquire()`` returns a :class:`Lease`; it holds an obligation of kind
  ``lease`` reserved at the caller's line. ``lease.release()`` commits it and returns
  the connection to the pool *only if* the connection is usable (open, not broken,
  owing no replies, not in pub/sub or WATCH state) *and nothing is unread* (its
  decoder holds no bytes and a non-blocking peek finds the socket empty: a reply too
  many must never reach the next caller); otherwise it aborts it and the connection
  is closed, counted in ``statistics()["discard_reasons"]`` and reported by a
  ``pool.discard`` trace event. A task that completes while holding a lease has leaked it: the
  runtime aborts the obligation, which closes the connection and frees its slot, and
  reports the leak with the site of the ``acquire``.
* **Waiting.** When all ``max_connections`` are out, callers wait in FIFO order. A
  released connection (or, if it was discarded, the right to open a new one) is
  *handed* to the first waiter: from that moment it is the waiter's, and a
  cancellation arriving at the same time is delivered at the waiter's next checkpoint,
  by which time the lease exists and releases the connection while unwinding. A
  waiter cancelled before the hand-off was simply removed from the queue. Nothing is
  lost either way. The wait is bounded by ``acquire_timeout`` (``PoolTimeout``) and,
  like every checkpoint, by the caller's own deadline and cancellation.
* **Health.** A connection taken from the idle list is peeked again (bytes may have
  arrived while it sat idle: discarded, ``idle_unread``). One idle for longer than
  ``health_check_interval`` is PINGed
  before it is handed out; one older than ``max_lifetime`` is replaced; a dead one
  is replaced. Opening and checking happen in the acquiring task, under its budget;
  if they fail or are cancelled, the slot is freed for the next waiter.

The waiting queue is built on ``greenrt.lowlevel`` (``park``/``reschedule``), because
what is handed over is a connection object, not a permit (``greenrt.Semaphore``
cannot express that). It follows the park/abort contract: ``abort`` removes the
waiter and returns True; ``reschedule`` is called once, only for a still-parked task.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import greenrt
from greenrt.lowlevel import (
    current_hub_or_none,
    enter_checkpoint,
    park,
    reschedule,
    reschedule_with_error,
)

from .connection import Connection, ConnectionConfig
from .errors import PoolClosed, PoolTimeout

_SLOT = object()  # handed to a waiter: "you may open a new connection"


class Lease:
    """A checked-out connection. Release it exactly once (``release()`` or ``with``)."""

    __slots__ = ("pool", "conn", "ob")

    def __init__(self, pool: ConnectionPool, conn: Connection, stacklevel: int):
        self.pool = pool
        self.conn = conn
        self.ob = greenrt.reserve("lease", name="redis", on_commit=self._on_commit,
                                  on_abort=self._on_abort, stacklevel=stacklevel + 1)

    def _on_commit(self) -> None:
        self.pool._put(self.conn)

    def _on_abort(self, reason) -> None:
        self.pool._discard(self.conn, reason if isinstance(reason, str) else "aborted")

    @property
    def released(self) -> bool:
        return self.ob.state != "reserved"

    def release(self) -> None:
        """Give the connection back: kept if it is usable, closed otherwise.
        Idempotent, not a checkpoint."""
        ob = self.ob
        if ob.state != "reserved":
            return
        c = self.conn
        if c.pending == 0 and c._dead is None and not c.pubsub_mode and not c.watching \
                and not c.stream.broken:
            why = c.unread()
            if why is None:
                ob.commit()
            else:
                ob.abort(why)
        else:
            ob.abort("state_unknown")

    def discard(self, reason: str = "discarded") -> None:
        """Close the connection instead of returning it. Idempotent."""
        if self.ob.state == "reserved":
            self.ob.abort(reason)

    def __enter__(self) -> Connection:
        return self.conn

    def __exit__(self, *exc) -> None:
        self.release()


class ConnectionPool:
    """Bounded pool of connections to one server (see the module docstring).

    ``config`` is a :class:`ConnectionConfig` (or pass ``opener``, a callable that
    returns a new open :class:`Connection`, to customise connecting).
    """

    def __init__(self, config: ConnectionConfig | None = None, *,
                 opener: Callable[[], Connection] | None = None, max_connections: int = 50,
                 acquire_timeout: float | None = None,
                 health_check_interval: float | None = 30.0,
                 max_lifetime: float | None = None, max_idle: int | None = None,
                 drain_timeout: float = 0.0):
        if max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        self.config = config or ConnectionConfig()
        self._opener = opener or (lambda: Connection.open(self.config))
        self.max_connections = max_connections
        self.acquire_timeout = acquire_timeout
        self.health_check_interval = health_check_interval
        self.max_lifetime = max_lifetime
        self.max_idle = max_connections if max_idle is None else max_idle
        self.drain_timeout = drain_timeout
        self._idle: list[Connection] = []
        self._count = 0  # open or being opened, leased or idle
        self._waiters: OrderedDict = OrderedDict()
        self._closed = False
        self.stats = {"opened": 0, "discarded": 0, "health_checks": 0, "waits": 0,
                      "timeouts": 0, "drained": 0}
        self.discard_reasons: dict[str, int] = {}

    # -- acquiring ------------------------------------------------------------------------

    def acquire(self, *, _stacklevel: int = 1) -> Lease:
        """Check out a connection; return its :class:`Lease`.

        A checkpoint. Waits (FIFO) while ``max_connections`` are out, at most
        ``acquire_timeout`` seconds (``PoolTimeout``) and within the caller's deadline.
        A cancelled acquire takes nothing; a failed connect frees its slot.
        """
        task = enter_checkpoint()
        if self._closed:
            raise PoolClosed("connection pool is closed")
        idle = self._idle
        if self._waiters:
            got = self._wait(task)
        elif idle:
            got = idle.pop()
        elif self._count < self.max_connections:
            self._count += 1
            got = _SLOT
        else:
            got = self._wait(task)
        conn = self._prepare(got)
        return Lease(self, conn, _stacklevel + 1)

    def _wait(self, task):
        self.stats["waits"] += 1
        t = self.acquire_timeout
        if t is None:
            return self._park(task)
        try:
            with greenrt.fail_after(t):
                return self._park(task)
        except greenrt.TooSlowError:
            self.stats["timeouts"] += 1
            raise PoolTimeout(f"no connection available within {t} s "
                              f"({self.max_connections} in use)") from None

    def _park(self, task):
        waiters = self._waiters
        waiters[task] = None

        def abort() -> bool:
            waiters.pop(task, None)
            return True

        return park(abort)

    def _prepare(self, got) -> Connection:
        """Turn what ``acquire`` got (an idle connection or a slot) into a checked,
        open connection; on failure or cancellation the slot is freed."""
        while True:
            if got is _SLOT:
                try:
                    conn = self._opener()
                except BaseException:
                    self._free_slot()
                    raise
                self.stats["opened"] += 1
                return conn
            conn = got
            why = None
            if conn.dead:
                why = "dead"
            elif self.max_lifetime is not None and greenrt.now() - conn.created_at > self.max_lifetime:
                why = "lifetime"
            elif conn.unread() is not None:
                why = "idle_unread"  # bytes arrived while it sat in the pool
            if why is not None:
                conn.close()
                self._count_discard(why)
                got = _SLOT
                continue
            hci = self.health_check_interval
            if hci is not None and greenrt.now() - conn.last_used > hci:
                self.stats["health_checks"] += 1
                try:
                    ok = conn.call(["PING"]) == b"PONG"
                except Exception:
                    ok = False
                except BaseException:
                    conn.close()
                    self._free_slot()
                    raise
                if not ok:
                    conn.close()
                    self._count_discard("health_check")
                    got = _SLOT
                    continue
            return conn

    # -- returning ------------------------------------------------------------------------

    def _put(self, conn: Connection) -> None:
        if self._closed:
            conn.close()
            self._count -= 1
            return
        w = self._waiters
        if w:
            task, _ = w.popitem(last=False)
            reschedule(task, conn)
            return
        if len(self._idle) >= self.max_idle:
            conn.close()
            self._count -= 1
            return
        self._idle.append(conn)

    def _discard(self, conn: Connection, reason: str = "discarded") -> None:
        conn.close()
        self._count_discard(reason)
        self._free_slot()

    def _count_discard(self, reason: str) -> None:
        self.stats["discarded"] += 1
        self.discard_reasons[reason] = self.discard_reasons.get(reason, 0) + 1
        hub = current_hub_or_none()
        if hub is not None:
            hub.emit("pool.discard", protocol="redis", reason=reason)

    def _free_slot(self) -> None:
        self._count -= 1
        w = self._waiters
        if w and not self._closed:
            task, _ = w.popitem(last=False)
            self._count += 1
            reschedule(task, _SLOT)

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Close idle connections now and every leased one when it is released; wake
        waiters with ``PoolClosed``. Idempotent, not a checkpoint."""
        if self._closed:
            return
        self._closed = True
        idle, self._idle = self._idle, []
        for c in idle:
            c.close()
            self._count -= 1
        while self._waiters:
            task, _ = self._waiters.popitem(last=False)
            reschedule_with_error(task, PoolClosed("connection pool closed while waiting"))

    @property
    def closed(self) -> bool:
        return self._closed

    def statistics(self) -> dict:
        """``max``, ``open`` (incl. being opened), ``idle``, ``in_use``, ``waiting``,
        counters ``opened``, ``discarded``, ``health_checks``, ``waits``, ``timeouts``,
        ``drained``, and ``discard_reasons`` (reason -> count: ``decoder_buffered``,
        ``socket_readable``, ``idle_unread``, ``state_unknown``, ``dead``, ``lifetime``,
        ``health_check``, ``leaked``...)."""
        return {"max": self.max_connections, "open": self._count, "idle": len(self._idle),
                "in_use": self._count - len(self._idle), "waiting": len(self._waiters),
                **self.stats, "discard_reasons": dict(self.discard_reasons)}

    def __repr__(self) -> str:
        s = self.statistics()
        return (f"<redis.ConnectionPool {self.config.address()} open={s['open']} "
                f"idle={s['idle']} waiting={s['waiting']}>")
