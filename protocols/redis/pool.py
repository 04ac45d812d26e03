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

The machinery is the floor's pool (``greenrt.protocols.base.pool``: leases, the
unread-bytes rule, FIFO hand-off on ``greenrt.lowlevel.WaitQueue``, the
``statistics()`` schema); this module adds what is Redis's: one key (the server), the
``PING`` health check, and the conditions under which a connection is reusable
(``Connection.reusable``: no reply owed, not in pub/sub or WATCH state).
"""

from __future__ import annotations

from collections.abc import Callable

from greenrt.protocols.base.pool import Lease, Pool

from .connection import Connection, ConnectionConfig
from .errors import PoolClosed, PoolTimeout

__all__ = ["ConnectionPool", "Lease"]


def _ping(conn: Connection) -> bool:
    return conn.call(["PING"]) == b"PONG"


class ConnectionPool(Pool[Connection]):
    """Bounded pool of connections to one server (see the module docstring).

    ``config`` is a :class:`ConnectionConfig` (or pass ``opener``, a callable that
    returns a new open :class:`Connection`, to customise connecting).
    ``health_check_interval``: a connection idle longer than this is PINGed before it
    is handed out (``None``: never). ``max_idle``: how many idle connections are kept.
    ``drain_timeout``: see ``protocols.redis.client`` (a connection whose caller was
    cancelled with replies owed is drained for up to this long instead of closed).
    """

    timeout_error = PoolTimeout
    closed_error = PoolClosed

    def __init__(self, config: ConnectionConfig | None = None, *,
                 opener: Callable[[], Connection] | None = None, max_connections: int = 50,
                 acquire_timeout: float | None = None,
                 health_check_interval: float | None = 30.0,
                 max_lifetime: float | None = None, max_idle: int | None = None,
                 drain_timeout: float = 0.0):
        if max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        self.config = config or ConnectionConfig()
        open_one = opener or (lambda: Connection.open(self.config))
        super().__init__(lambda key: open_one(), name="redis", max_per_key=max_connections,
                         max_idle_per_key=max_idle, acquire_timeout=acquire_timeout,
                         max_lifetime=max_lifetime, check=_ping,
                         check_interval=health_check_interval)
        self.max_connections = max_connections
        self.health_check_interval = health_check_interval
        self.drain_timeout = drain_timeout
        self.count("drained", 0)

    def acquire(self, *, _stacklevel: int = 1) -> Lease[Connection]:  # type: ignore[override]
        """Check out a connection; return its :class:`Lease`.

        A checkpoint. Waits (FIFO) while ``max_connections`` are out, at most
        ``acquire_timeout`` seconds (``PoolTimeout``) and within the caller's deadline.
        A cancelled acquire takes nothing; a failed connect frees its slot.
        """
        return super().acquire(None, _stacklevel=_stacklevel + 1)

    def __repr__(self) -> str:
        s = self.statistics()
        return (f"<redis.ConnectionPool {self.config.address()} open={s['open']} "
                f"idle={s['idle']} waiting={s['waiting']}>")
