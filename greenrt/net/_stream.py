"""Network-independent stream, listener and datagram logic.

Every network implementation (real sockets, the lab's simulated wires) gets the same
semantics by subclassing these classes and supplying *transport primitives*:

``_t_recv(max_bytes) -> bytes``
    Non-blocking receive: return what is available (``b""`` at EOF) or raise
    ``BlockingIOError`` when nothing is; other ``OSError`` = the connection failed.
``_t_send(data) -> int``
    Non-blocking send of a prefix of ``data``; ``BlockingIOError`` when nothing fits.
``_t_wait_readable()`` / ``_t_wait_writable()``
    Park the current task until the primitive above might succeed. Not checkpoints,
    must be abortable (a cancelled wait leaves no registration behind), may return
    spuriously, and raise ``ClosedResourceError`` if the stream is closed meanwhile.
    They are called only after the primitive raised ``BlockingIOError`` (the
    edge-triggered contract the real driver relies on).
``_t_send_eof()``, ``_t_close()``
    Half-close and close (``_t_close`` must wake waiters with ``ClosedResourceError``).

The primitives may be plain attributes (bound methods stored on the instance), which
is what the real network does to keep the hot path short.

Rules implemented here, once:

* Every ``recv``/``send_all``/``send_eof``/``accept``/``sendto``/``recvfrom`` is a
  checkpoint: it starts with ``enter_checkpoint`` (cancellation, budgets). The fast
  path then tries the primitive at once and returns without yielding; to keep a
  stream that is always ready from starving other tasks, every ``FAIR_STREAK``-th
  consecutive call on a stream that did not have to wait yields to the hub first.
* A transport whose driver tracks read readiness sets ``_rslot`` (an object with an
  ``rready`` attribute, see ``greenrt._driver``): ``recv`` then skips the syscall
  and waits at once while ``rready`` is 0, and clears it after a short read.
* ``recv`` loses no data when cancelled: the only place it can be interrupted is the
  wait, before anything was read.
* ``send_all`` cancelled, or failing, after writing part of its data marks the stream
  *broken*: the peer has an unknown prefix, so every later call but ``close()`` raises
  ``BrokenStreamError`` naming what happened. Cancelled before writing anything, the
  stream stays usable. A connection error on ``recv`` or ``send`` also breaks it.
* One receiver and one sender at a time (``BusyResourceError`` otherwise).

Hazards: statistics are plain counters updated on the hot path; they must stay cheap
(attribute increments), so ``statistics()`` builds its dict on demand.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._checkpoint import _enter, yield_task
from .._exceptions import WouldBlock
from ._abc import (
    Address,
    BrokenStreamError,
    BusyResourceError,
    ClosedResourceError,
    Listener,
    Stream,
    StreamError,
    UDPSocket,
)

if TYPE_CHECKING:  # pragma: no cover
    from .._hub import Hub
    from .._task import Task
    from ._abc import BytesLike

FAIR_STREAK = 64

#: The most one ``recv`` asks the transport for, whatever ``max_bytes`` says: the
#: transport allocates its buffer up front, and ``max_bytes`` is often computed from
#: a length the peer declared (``recv(content_length - got)``).
MAX_RECV = 1 << 20
#: Datagrams cannot be larger than this (IPv4/IPv6 UDP payload limit, rounded up).
MAX_DATAGRAM = 65536


def _yield_now(hub: Hub, task: Task[Any]) -> None:
    """The yield half of a checkpoint (the check half already ran)."""
    yield_task(task)


def _as_bytes_view(data: BytesLike) -> memoryview:
    mv = memoryview(data)
    if mv.itemsize != 1 or mv.ndim != 1 or not mv.c_contiguous:
        mv = mv.cast("B") if mv.c_contiguous else memoryview(mv.tobytes())
    return mv


class TransportStream(Stream):
    """:class:`Stream` semantics over transport primitives (see the module docstring).

    Subclasses call ``TransportStream.__init__(self, hub)`` and provide the
    primitives plus ``local_address``/``peer_address``.
    """

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._closed = False
        self._broken_exc: BrokenStreamError | None = None
        self._receiving = False
        self._sending = False
        self._eof_sent = False
        self._eof_received = False
        self._streak = 0
        # The driver's read-readiness handle (see ``greenrt._driver``), set by
        # transports whose driver tracks readiness; ``None``: always try the syscall.
        self._rslot: Any = None
        self.bytes_sent = 0
        self.bytes_received = 0
        self.send_calls = 0
        self.recv_calls = 0
        self.send_waits = 0
        self.recv_waits = 0

    # -- primitives (overridden, often by instance attributes) ---------------------

    def _t_recv(self, max_bytes: int) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def _t_send(self, data: BytesLike) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _t_wait_readable(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _t_wait_writable(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _t_send_eof(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _t_close(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- state ----------------------------------------------------------------------

    @property
    def broken(self) -> bool:
        return self._broken_exc is not None

    @property
    def closed(self) -> bool:
        return self._closed

    def _unusable(self, op: str) -> BaseException:
        if self._closed:
            return ClosedResourceError(f"{op} on a closed stream")
        b = self._broken_exc
        exc = BrokenStreamError(f"{op} on a broken stream: {b}")
        exc.__cause__ = b
        return exc

    def _break(self, why: str, cause: BaseException | None = None) -> BrokenStreamError:
        exc = BrokenStreamError(why)
        if cause is not None:
            exc.__cause__ = cause
        if self._broken_exc is None:
            self._broken_exc = exc
            hub = self._hub
            if hub._tracing:
                hub.emit("net.stream_broken", why=why)
        return exc

    def _fail(self, op: str, err: OSError) -> BrokenStreamError:
        return self._break(f"{op} failed: {err.strerror or err}", err)

    # -- the API ----------------------------------------------------------------------

    def recv(self, max_bytes: int = 65536) -> bytes:
        """Receive up to ``max_bytes`` bytes (at most ``MAX_RECV``); ``b""`` at EOF.

        A checkpoint. Cancellation can only interrupt the wait for data, so a
        cancelled ``recv`` loses no data. Raises ``BrokenStreamError`` on a reset
        connection or a broken stream, ``ClosedResourceError`` once closed (also if
        closed while waiting), ``BusyResourceError`` if another task is receiving.
        """
        hub = self._hub
        task = hub.current  # the check half of the checkpoint: ``_enter`` unless trivial
        if (task is None or task._pending or task._drains or task._scope._quota_chain
                or hub._tracing):
            task = _enter(hub)
        if self._closed or self._broken_exc is not None:
            raise self._unusable("recv")
        if self._receiving:
            raise BusyResourceError("another task is already receiving on this stream")
        if max_bytes > MAX_RECV:
            max_bytes = MAX_RECV
        elif max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        self._streak += 1
        if self._streak > FAIR_STREAK:
            self._streak = 0
            self._receiving = True
            try:
                _yield_now(hub, task)
            finally:
                self._receiving = False
            if self._closed or self._broken_exc is not None:
                raise self._unusable("recv")
        rs = self._rslot
        if rs is not None and not rs.rready:
            data = None  # nothing arrived since the last EAGAIN/short read: just wait
        else:
            try:
                data = self._t_recv(max_bytes)
            except BlockingIOError:
                data = None
            except OSError as e:
                raise self._fail("recv", e) from e
        if data is None:
            self._receiving = True
            try:
                while True:
                    self.recv_waits += 1
                    self._streak = 0
                    self._t_wait_readable()
                    try:
                        data = self._t_recv(max_bytes)
                        break
                    except BlockingIOError:
                        continue
                    except OSError as e:
                        raise self._fail("recv", e) from e
            finally:
                self._receiving = False
        self.recv_calls += 1
        if data:
            n = len(data)
            self.bytes_received += n
            if rs is not None and n < max_bytes and rs.rready == 1:
                rs.rready = 0  # the queue was empty: new data raises a new edge
        else:
            self._eof_received = True
        return data

    def send_all(self, data: BytesLike) -> None:
        """Send every byte of ``data``.

        A checkpoint. Cancelled or failing after writing part of ``data``: the stream
        is broken (``BrokenStreamError`` on every later call but ``close``). Cancelled
        before writing anything: nothing was sent and the stream stays usable.
        """
        hub = self._hub
        task = hub.current  # the check half of the checkpoint: ``_enter`` unless trivial
        if (task is None or task._pending or task._drains or task._scope._quota_chain
                or hub._tracing):
            task = _enter(hub)
        if self._closed or self._broken_exc is not None:
            raise self._unusable("send_all")
        if self._sending:
            raise BusyResourceError("another task is already sending on this stream")
        if self._eof_sent:
            raise StreamError("send_all after send_eof")
        self._streak += 1
        if self._streak > FAIR_STREAK:
            self._streak = 0
            self._sending = True
            try:
                _yield_now(hub, task)
            finally:
                self._sending = False
            if self._closed or self._broken_exc is not None:
                raise self._unusable("send_all")
        n = len(data)
        if n == 0 or type(data) is not bytes:
            view = _as_bytes_view(data)
            n = view.nbytes
            if n == 0:
                self.send_calls += 1
                return
        else:
            view = None
        try:
            sent = self._t_send(data if view is None else view)
        except BlockingIOError:
            sent = 0
        except OSError as e:
            raise self._fail("send", e) from e
        if sent == n:
            self.send_calls += 1
            self.bytes_sent += n
            return
        if view is None:
            view = memoryview(data)
        self._sending = True
        total = sent
        try:
            while total < n:
                try:
                    total += self._t_send(view[total:])
                except BlockingIOError:
                    self.send_waits += 1
                    self._streak = 0
                    self._t_wait_writable()
        except OSError as e:
            raise self._fail("send", e) from e
        except BaseException as e:
            if 0 < total < n and not self._closed:
                self._break(f"send_all interrupted ({type(e).__name__}) after writing "
                            f"{total} of {n} bytes")
            raise
        finally:
            self._sending = False
            self.bytes_sent += total
            self.send_calls += 1

    def send_nowait(self, data: BytesLike) -> int:
        """Write as much of ``data`` as fits *now* and return how many bytes that was.

        Not a checkpoint; never blocks (raises ``WouldBlock`` if nothing fits). Meant
        for best-effort notices from ``close()`` paths (a TLS close_notify); a partial
        write does not break the stream here, the caller decides what it means.
        """
        if self._closed or self._broken_exc is not None:
            raise self._unusable("send_nowait")
        if self._sending or self._eof_sent:
            raise WouldBlock("another send is in progress or EOF was sent")
        try:
            n = self._t_send(data)
        except BlockingIOError:
            raise WouldBlock("the transport is full") from None
        except OSError as e:
            raise self._fail("send", e) from e
        self.bytes_sent += n
        return n

    def send_eof(self) -> None:
        """Half-close the sending direction; receiving still works. A checkpoint;
        idempotent. Not allowed while a ``send_all`` is in progress."""
        _enter(self._hub)
        if self._closed or self._broken_exc is not None:
            raise self._unusable("send_eof")
        if self._sending:
            raise BusyResourceError("send_eof while another task is sending")
        if self._eof_sent:
            return
        try:
            self._t_send_eof()
        except OSError as e:
            raise self._fail("send_eof", e) from e
        self._eof_sent = True

    def close(self) -> None:
        """Close the stream. Idempotent, never blocks, not a checkpoint; blocked
        ``recv``/``send_all`` calls wake with ``ClosedResourceError``."""
        if self._closed:
            return
        self._closed = True
        self._t_close()

    def statistics(self) -> dict[str, Any]:
        return {
            "bytes_sent": self.bytes_sent, "bytes_received": self.bytes_received,
            "send_calls": self.send_calls, "recv_calls": self.recv_calls,
            "send_waits": self.send_waits, "recv_waits": self.recv_waits,
            "broken": self.broken, "closed": self._closed,
            "eof_sent": self._eof_sent, "eof_received": self._eof_received,
        }

    def __repr__(self) -> str:
        state = "closed" if self._closed else "broken" if self.broken else "open"
        try:
            peer = self.peer_address
        except Exception:  # noqa: BLE001 - repr must not fail
            peer = "?"
        return f"<{type(self).__name__} {state} peer={peer!r}>"


class TransportListener(Listener):
    """:class:`Listener` semantics over primitives: ``_t_accept() -> Stream`` (raises
    ``BlockingIOError`` when no connection is queued), ``_t_wait_accept()`` (park,
    abortable, ``ClosedResourceError`` if closed meanwhile) and ``_t_close()``."""

    #: errors that concern only the connection being accepted: retry at once
    _RETRY_ERRNOS = frozenset({103, 71, 110})  # ECONNABORTED, EPROTO, ETIMEDOUT

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._closed = False
        self._accepting = False
        self.accepted = 0

    def _t_accept(self) -> Stream:  # pragma: no cover - abstract
        raise NotImplementedError

    def _t_wait_accept(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _t_close(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        return self._closed

    def accept(self) -> Stream:
        """Wait for a connection and return its stream. A checkpoint; a cancelled
        accept loses no connection. ``ClosedResourceError`` once closed. Resource
        exhaustion (``EMFILE``...) is raised as ``OSError``; the connection stays
        queued."""
        _enter(self._hub)
        if self._closed:
            raise ClosedResourceError("accept on a closed listener")
        if self._accepting:
            raise BusyResourceError("another task is already accepting on this listener")
        self._accepting = True
        try:
            while True:
                try:
                    s = self._t_accept()
                except BlockingIOError:
                    self._t_wait_accept()
                    continue
                except OSError as e:
                    if e.errno in self._RETRY_ERRNOS:
                        continue
                    raise
                self.accepted += 1
                return s
        finally:
            self._accepting = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._t_close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {'closed' if self._closed else 'open'} {self.address!r}>"


class TransportUDPSocket(UDPSocket):
    """:class:`UDPSocket` over primitives ``_t_sendto(data, addr) -> int``,
    ``_t_recvfrom(n) -> (bytes, addr)`` (both raise ``BlockingIOError``), the two
    waits and ``_t_close()``."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._closed = False
        self._receiving = False
        self._sending = False
        self.datagrams_sent = 0
        self.datagrams_received = 0

    def _t_sendto(self, data: BytesLike, address: Address) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _t_recvfrom(self, max_bytes: int) -> tuple[bytes, Address]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _t_wait_readable(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _t_wait_writable(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _t_close(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        return self._closed

    def sendto(self, data: BytesLike, address: Address) -> int:
        """Send one datagram. A checkpoint; sent whole or not at all. Errors the
        kernel reports (``EMSGSIZE``, ``ECONNREFUSED`` from an earlier ICMP...) are
        raised as ``OSError``."""
        _enter(self._hub)
        if self._closed:
            raise ClosedResourceError("sendto on a closed socket")
        if self._sending:
            raise BusyResourceError("another task is already sending on this socket")
        self._sending = True
        try:
            while True:
                try:
                    n = self._t_sendto(data, address)
                    self.datagrams_sent += 1
                    return n
                except BlockingIOError:
                    self._t_wait_writable()
        finally:
            self._sending = False

    def recvfrom(self, max_bytes: int = 65536) -> tuple[bytes, Address]:
        """Receive one datagram and its sender. A checkpoint; a cancelled call loses
        no datagram."""
        _enter(self._hub)
        if self._closed:
            raise ClosedResourceError("recvfrom on a closed socket")
        if self._receiving:
            raise BusyResourceError("another task is already receiving on this socket")
        if max_bytes > MAX_DATAGRAM:
            max_bytes = MAX_DATAGRAM
        elif max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        self._receiving = True
        try:
            while True:
                try:
                    r = self._t_recvfrom(max_bytes)
                    self.datagrams_received += 1
                    return r
                except BlockingIOError:
                    self._t_wait_readable()
        finally:
            self._receiving = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._t_close()

    def statistics(self) -> dict[str, Any]:
        return {"datagrams_sent": self.datagrams_sent,
                "datagrams_received": self.datagrams_received, "closed": self._closed}
