"""One connection pool for every client in the stack.

Job: hand each caller a connection it has to itself, keep at most ``max_per_key``
open per key (a key is whatever names a peer: ``None`` for a single-server client, an
origin ``(scheme, host, port)`` for HTTP), make waiting for one cancel-safe and
bounded, and never take back a connection whose state is unknown or that has bytes
nobody asked for.

Theory of operation
-------------------

**Leases.** ``acquire(key)`` returns a :class:`Lease`. It holds an obligation of kind
``lease`` (``greenrt.reserve``) reserved at the caller's line. ``lease.release()``
commits it and gives the connection back; ``lease.discard(reason)`` aborts it and
closes the connection. A task that completes while holding a lease has leaked it:
the runtime aborts the obligation (the connection is closed, its slot freed, the
discard counted under ``leaked``) and reports the leak with the site of ``acquire``.

**The unread-bytes rule.** A connection goes back to the idle list only if

1. ``conn.reusable()`` — its protocol state is between exchanges (no reply owed, not
   broken, not in a mode such as pub/sub), else it is discarded as
   ``state_unknown``; and
2. ``conn.unread()`` is ``None`` — its parser has buffered nothing and its socket has
   nothing readable (``stream.has_unread()``: a non-blocking peek). Else it is
   discarded with the reason returned (``decoder_buffered``, ``socket_readable``).

A connection taken from the idle list is examined again before it is handed out,
because bytes may have arrived while it sat there (``idle_unread``) or the peer may
have closed it (``dead``). So a reply too many — a peer that answers one request twice,
or an attacker that injects a response — can never reach the next caller: the
connection carrying it is closed instead. Each discard is counted in
``statistics()["discard_reasons"]`` and emitted as a ``pool.discard`` trace event
(fields ``protocol``, ``key``, ``reason``).

**Waiting.** When all ``max_per_key`` connections of a key are out, callers wait in
FIFO order on a ``greenrt.lowlevel.WaitQueue`` (so deadlock reports say
``pool checkout for <key>`` and the lab sees the wait). A released connection — or,
if it was discarded, the right to open a new one — is *handed* to the first waiter:
from that moment it is the waiter's, and a cancellation arriving at the same time is
delivered at the waiter's next checkpoint, by which time the lease exists and gives
the connection back while unwinding. A waiter cancelled before the hand-off was simply
removed. Nothing is lost either way. The wait is bounded by ``acquire_timeout``
(``PoolTimeout``) and by the caller's own deadline and cancellation.

**Idle order: LIFO.** The most recently returned connection is handed out first: it
is the one most likely still open on the peer's side (servers close idle connections
after their own timeout), and under light load the surplus connections at the bottom
of the list age past ``max_idle_time`` and are closed instead of being kept warm by
round-robin reuse.

**Health and lifetime.** On checkout, a connection older than ``max_lifetime`` or idle
longer than ``max_idle_time`` is closed and replaced; one idle longer than
``check_interval`` is given to ``check(conn)`` (e.g. a Redis ``PING``) and replaced if
that returns false or raises an ``Exception``. Opening and checking run in the
acquiring task, under its budget; if they fail or are cancelled the slot is freed for
the next waiter.

What a pooled connection implements (:class:`PooledConnection`): ``reusable()``,
``unread()`` and ``close()``. :func:`unread_reason` is the usual ``unread()``.

Not thread-safe: one pool serves the tasks of one hub.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Generic, Protocol, TypeVar

import greenrt
from greenrt.lowlevel import WaitQueue, current_hub_or_none, enter_checkpoint, note_access

from .errors import PoolClosed, PoolTimeout

__all__ = ["Lease", "Pool", "PooledConnection", "unread_reason"]


class PooledConnection(Protocol):
    """What :class:`Pool` needs from a connection."""

    def reusable(self) -> bool:
        """True when the protocol is between exchanges and the transport is open."""

    def unread(self) -> str | None:
        """Why bytes are left over (``"decoder_buffered"``, ``"socket_readable"``), or
        ``None`` when nothing is. Must not block."""

    def close(self) -> None:
        """Close the transport. Must not block for long; not a checkpoint."""


def unread_reason(buffered: int, stream: Any) -> str | None:
    """The usual ``unread()``: ``buffered`` bytes held by the parser, then the stream's
    non-blocking peek (``greenrt.net.Stream.has_unread``)."""
    if buffered:
        return "decoder_buffered"
    if stream.has_unread():
        return "socket_readable"
    return None


C = TypeVar("C", bound=PooledConnection)

_SLOT = object()  # handed to a waiter: "you may open a new connection"


class Lease(Generic[C]):
    """A checked-out connection (``lease.conn``). Give it back exactly once:
    ``release()``, ``discard()`` or ``with lease as conn:`` (which releases)."""

    __slots__ = ("pool", "key", "conn", "ob", "reused")

    def __init__(self, pool: Pool[C], key: Hashable, conn: C, stacklevel: int,
                 reused: bool = False):
        self.pool = pool
        self.key = key
        self.conn = conn
        #: the connection came from the idle list (it may have gone stale on the
        #: peer's side: an idempotent request may be retried on a fresh one)
        self.reused = reused
        self.ob = greenrt.reserve("lease", name=pool.name, on_commit=self._on_commit,
                                  on_abort=self._on_abort, stacklevel=stacklevel + 1)

    def _on_commit(self) -> None:
        self.pool._put(self.key, self.conn)

    def _on_abort(self, reason: Any) -> None:
        self.pool._discard(self.key, self.conn, reason if isinstance(reason, str) else "leaked")

    @property
    def released(self) -> bool:
        return self.ob.state != "reserved"

    def release(self) -> None:
        """Give the connection back: kept if it is reusable with nothing unread, closed
        (and counted) otherwise. Idempotent; not a checkpoint."""
        ob = self.ob
        if ob.state != "reserved":
            return
        conn = self.conn
        if not conn.reusable():
            ob.abort("state_unknown")
            return
        why = conn.unread()
        if why is None:
            ob.commit()
        else:
            ob.abort(why)

    def discard(self, reason: str = "discarded") -> None:
        """Close the connection instead of giving it back. Idempotent; not a checkpoint."""
        if self.ob.state == "reserved":
            self.ob.abort(reason)

    def __enter__(self) -> C:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.release()


class _Key:
    """Per-key state: the count of connections open or being opened, the idle list
    (``(conn, idle_since)``, newest last) and the waiters."""

    __slots__ = ("count", "idle", "waiters")

    def __init__(self) -> None:
        self.count = 0
        self.idle: list = []
        self.waiters = WaitQueue()


class Pool(Generic[C]):
    """A bounded, per-key pool of connections (see the module docstring).

    ``opener(key)`` opens a connection (it runs in the acquiring task, may block, and
    should honour the caller's budget). ``name`` labels leases, trace events and
    deadlock reports (``"redis"``, ``"http1"``). ``timeout_error``/``closed_error``
    let a protocol raise its own subclasses of the floor's ``PoolTimeout``/``PoolClosed``.
    """

    timeout_error: type[Exception] = PoolTimeout
    closed_error: type[Exception] = PoolClosed

    def __init__(self, opener: Callable[[Any], C], *, name: str = "pool",
                 max_per_key: int = 10, max_idle_per_key: int | None = None,
                 acquire_timeout: float | None = None, max_idle_time: float | None = None,
                 max_lifetime: float | None = None,
                 check: Callable[[C], bool] | None = None,
                 check_interval: float | None = None):
        if max_per_key < 1:
            raise ValueError("max_per_key must be >= 1")
        for what, v in (("acquire_timeout", acquire_timeout), ("max_idle_time", max_idle_time),
                        ("max_lifetime", max_lifetime), ("check_interval", check_interval)):
            if v is not None and not v >= 0:
                raise ValueError(f"{what} must be None or >= 0, not {v!r}")
        self.opener = opener
        self.name = name
        self.max_per_key = max_per_key
        self.max_idle_per_key = max_per_key if max_idle_per_key is None else max_idle_per_key
        self.acquire_timeout = acquire_timeout
        self.max_idle_time = max_idle_time
        self.max_lifetime = max_lifetime
        self.check = check
        self.check_interval = check_interval
        self._keys: dict[Hashable, _Key] = {}
        self._born: dict[int, float] = {}  # id(conn) -> when it was opened
        self._closed = False
        self._counters = {"opened": 0, "reused": 0, "discarded": 0, "waits": 0,
                          "timeouts": 0, "checks": 0}
        self._reasons: dict[str, int] = {}

    # -- acquiring ------------------------------------------------------------------------

    def acquire(self, key: Hashable = None, *, _stacklevel: int = 1) -> Lease[C]:
        """Check out a connection for ``key``; return its :class:`Lease`.

        A checkpoint. Waits (FIFO) while ``max_per_key`` connections of ``key`` are
        out, at most ``acquire_timeout`` seconds (``PoolTimeout``) and within the
        caller's deadline. A cancelled acquire takes nothing; a failed or cancelled
        connect frees its slot. Raises ``PoolClosed`` after ``close()``.
        """
        task = enter_checkpoint()
        if self._closed:
            raise self.closed_error(f"{self.name} pool is closed")
        k = self._keys.get(key)
        if k is None:
            k = self._keys[key] = _Key()
        if k.waiters:
            got = self._wait(task, key, k)  # FIFO: no barging past earlier waiters
        elif k.idle:
            got = k.idle.pop()
        elif k.count < self.max_per_key:
            k.count += 1
            got = _SLOT
        else:
            got = self._wait(task, key, k)
        conn, reused = self._prepare(key, k, got)
        return Lease(self, key, conn, _stacklevel + 1, reused)

    def _wait(self, task: Any, key: Hashable, k: _Key) -> Any:
        self._counters["waits"] += 1
        note_access(k.waiters)
        what = f"{self.name} pool checkout" + ("" if key is None else f" for {key!r}")
        t = self.acquire_timeout
        if t is None:
            return k.waiters.wait(task, None, None, what)
        try:
            with greenrt.fail_after(t):
                return k.waiters.wait(task, None, None, what)
        except greenrt.TooSlowError:
            self._counters["timeouts"] += 1
            raise self.timeout_error(
                f"no {self.name} connection available within {t} s "
                f"({self.max_per_key} in use" + ("" if key is None else f" for {key!r}") + ")"
            ) from None

    def _prepare(self, key: Hashable, k: _Key, got: Any) -> tuple[C, bool]:
        """Turn what ``acquire`` got (an idle ``(conn, since)`` or a slot) into an open,
        checked connection and whether it was reused; on failure or cancellation the
        slot is freed."""
        while True:
            if got is _SLOT:
                try:
                    conn = self.opener(key)
                except BaseException:
                    self._free_slot(k)
                    self._forget_if_unused(key)
                    raise
                self._counters["opened"] += 1
                self._born[id(conn)] = greenrt.now()
                return conn, False
            conn, since = got
            now = greenrt.now()
            why = None
            if not conn.reusable():
                why = "dead"
            elif self.max_lifetime is not None and now - self._born.get(id(conn), now) > self.max_lifetime:
                why = "lifetime"
            elif self.max_idle_time is not None and now - since > self.max_idle_time:
                why = "idle_timeout"
            elif conn.unread() is not None:
                why = "idle_unread"  # bytes arrived while it sat in the pool
            elif self.check is not None and self.check_interval is not None \
                    and now - since > self.check_interval:
                self._counters["checks"] += 1
                try:
                    ok = self.check(conn)
                except Exception:
                    ok = False
                except BaseException:  # cancelled mid-check: the state is unknown
                    self._close(conn)
                    self._free_slot(k)
                    raise
                if not ok:
                    why = "health_check"
            if why is None:
                self._counters["reused"] += 1
                return conn, True
            self._close(conn)
            self._count_discard(key, why)
            got = _SLOT  # the slot stays ours: open a fresh one

    # -- returning ------------------------------------------------------------------------

    def _put(self, key: Hashable, conn: C) -> None:
        k = self._keys[key]
        if self._closed:
            self._close(conn)
            k.count -= 1
            return
        if k.waiters:
            k.waiters.wake_first((conn, greenrt.now()))
            return
        if len(k.idle) >= self.max_idle_per_key:
            self._close(conn)
            k.count -= 1
            self._forget_if_unused(key)
            return
        k.idle.append((conn, greenrt.now()))

    def _discard(self, key: Hashable, conn: C, reason: str) -> None:
        self._close(conn)
        self._count_discard(key, reason)
        self._free_slot(self._keys[key])
        self._forget_if_unused(key)

    def _forget_if_unused(self, key: Hashable) -> None:
        # Keys come and go (HTTP origins): drop the state of one with nothing left.
        k = self._keys.get(key)
        if k is not None and k.count == 0 and not k.waiters:
            del self._keys[key]

    def _close(self, conn: C) -> None:
        self._born.pop(id(conn), None)
        conn.close()

    def _count_discard(self, key: Hashable, reason: str) -> None:
        self._counters["discarded"] += 1
        self._reasons[reason] = self._reasons.get(reason, 0) + 1
        hub = current_hub_or_none()
        if hub is not None:
            hub.emit("pool.discard", protocol=self.name, key=key, reason=reason)

    def _free_slot(self, k: _Key) -> None:
        k.count -= 1
        if k.waiters and not self._closed:
            k.count += 1
            k.waiters.wake_first(_SLOT)

    def count(self, counter: str, n: int = 1) -> None:
        """Add ``n`` to a protocol's own counter (shown by ``statistics()``)."""
        self._counters[counter] = self._counters.get(counter, 0) + n

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Close idle connections now and every leased one when it comes back; wake
        waiters with ``PoolClosed``. Idempotent; not a checkpoint."""
        if self._closed:
            return
        self._closed = True
        for k in self._keys.values():
            idle, k.idle = k.idle, []
            for conn, _ in idle:
                self._close(conn)
                k.count -= 1
            k.waiters.wake_all_error(lambda: self.closed_error(f"{self.name} pool closed while waiting"))

    @property
    def closed(self) -> bool:
        return self._closed

    def statistics(self) -> dict:
        """One schema for every pool:

        * gauges: ``max`` (per key), ``keys``, ``open`` (incl. being opened), ``idle``,
          ``in_use``, ``waiting``;
        * counters: ``opened``, ``reused``, ``discarded``, ``waits``, ``timeouts``,
          ``checks``, plus any protocol counter (``count()``);
        * ``discard_reasons``: reason -> count (``decoder_buffered``,
          ``socket_readable``, ``idle_unread``, ``state_unknown``, ``dead``,
          ``lifetime``, ``idle_timeout``, ``health_check``, ``leaked``, or a reason a
          protocol passed to ``Lease.discard``).
        """
        ks = self._keys.values()
        open_ = sum(k.count for k in ks)
        idle = sum(len(k.idle) for k in ks)
        return {"max": self.max_per_key, "keys": len(self._keys), "open": open_, "idle": idle,
                "in_use": open_ - idle, "waiting": sum(len(k.waiters) for k in ks),
                **self._counters, "discard_reasons": dict(self._reasons)}

    def key_statistics(self) -> dict:
        """Per key with anything open or waiting: ``open``, ``idle``, ``in_use``,
        ``waiting``."""
        return {key: {"open": k.count, "idle": len(k.idle), "in_use": k.count - len(k.idle),
                      "waiting": len(k.waiters)} for key, k in self._keys.items()}

    def idle_connections(self, key: Hashable = None) -> list:
        """The idle connections of ``key``, oldest first (for inspection)."""
        k = self._keys.get(key)
        return [] if k is None else [c for c, _ in k.idle]

    def __repr__(self) -> str:
        s = self.statistics()
        return (f"<{type(self).__name__} {self.name} open={s['open']} idle={s['idle']} "
                f"waiting={s['waiting']}>")
