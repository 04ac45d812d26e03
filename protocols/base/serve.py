"""One accept path for every server in the stack (HTTP, WebSocket, gRPC …).

``StreamServer(handle, ...)`` accepts connections on listeners (``greenrt.net``'s
``Server``: one task per connection inside the server's region, so nothing outlives
it) and, for each, before the protocol sees a byte:

1. **Per-IP cap.** At most ``max_per_ip`` connections from one address at a time; the
   next one is answered by ``refuse(stream)`` (e.g. an HTTP 503; bounded to one second)
   and closed, counted under ``refused_per_ip``.
2. **TLS under a handshake budget.** With ``tls`` (a ``greenrt.protocols.tls`` server
   context, or a callable ``tls(stream) -> stream``), the handshake must finish within
   ``handshake_timeout`` seconds, so a client that opens a connection and stalls (a
   TLS slowloris) holds its slot only that long. A failed or timed-out handshake is a
   ``protocol.error`` event (``tls_error`` / ``tls_handshake_timeout``) and a closed
   socket. This is the one server-side TLS path of the stack.
3. ``handle(stream, accepted)`` runs in the connection's task; ``accepted`` is an
   :class:`Accepted` (peer address, whether TLS is on, the ALPN protocol the
   handshake selected). The stream is closed when ``handle`` returns.

**Graceful drain.** ``shutdown()`` stops accepting, then asks every connection that
registered a drain hook (``accepted.on_drain(fn)``) to finish — an HTTP/1.1 connection
finishes its request in flight, an HTTP/2 connection sends GOAWAY — and cancels what is
left after ``drain_timeout`` seconds with reason ``shutdown``. Cancelling
``serve_listeners`` does the same. ``statistics()`` has one schema: ``connections``
(accepted so far), ``open``, ``refused_per_ip``, ``tls_failures``, and ``net`` (the
listener-level counters of ``greenrt.net.Server``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import greenrt
from greenrt import net

from .events import emit_protocol_error

__all__ = ["Accepted", "StreamServer", "peer_str"]


def peer_str(peer: Any) -> str | None:
    """``"host:port"`` for an address tuple (for events and logs)."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return None if peer is None else str(peer)


class Accepted:
    """What the accept path learnt about a connection before handing it over."""

    __slots__ = ("peer", "tls", "alpn", "_drain")

    def __init__(self, peer: Any, tls: bool, alpn: str | None):
        self.peer = peer
        self.tls = tls
        self.alpn = alpn
        self._drain: Callable[[], None] | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def on_drain(self, fn: Callable[[], None]) -> None:
        """Register ``fn()`` to be called (not a checkpoint, must not block) when the
        server begins a graceful shutdown while this connection is open."""
        self._drain = fn


class StreamServer:
    """The accept path (see the module docstring). ``name`` is the protocol name used
    in trace events (``protocol.error`` with ``protocol=name``)."""

    def __init__(self, handle: Callable[[Any, Accepted], None], *, name: str,
                 tls: Any = None, handshake_timeout: float | None = 10.0,
                 max_connections: int = 1024, max_per_ip: int | None = None,
                 drain_timeout: float = 5.0, refuse: Callable[[Any], None] | None = None):
        self.handle = handle
        self.name = name
        self.tls = tls
        self.handshake_timeout = handshake_timeout
        self.max_connections = max_connections
        self.max_per_ip = max_per_ip
        self.drain_timeout = drain_timeout
        self.refuse = refuse
        self._net: net.Server | None = None
        self._open: dict[Accepted, None] = {}
        self._per_ip: dict[Any, int] = {}
        self._draining = False
        self._stats = {"connections": 0, "refused_per_ip": 0, "tls_failures": 0}

    @property
    def addresses(self) -> list:
        return self._net.addresses if self._net is not None else []

    def statistics(self) -> dict:
        s = dict(self._stats)
        s["open"] = len(self._open)
        if self._net is not None:
            s["net"] = self._net.statistics()
        return s

    def shutdown(self) -> None:
        """Begin a graceful shutdown (see the module docstring). Not a checkpoint;
        ``serve_listeners`` returns when it is done. Idempotent."""
        self._draining = True
        for acc in list(self._open):
            if acc._drain is not None:
                acc._drain()
        if self._net is not None:
            self._net.shutdown()

    def serve_listeners(self, listeners: list, *, on_ready: Callable[[StreamServer], None] | None = None) -> None:
        """Serve on already-bound listeners until shutdown. A checkpoint (blocks)."""
        srv = net.Server(listeners, self._handle_stream, max_connections=self.max_connections,
                         shutdown_budget=self.drain_timeout + 2.0, shutdown_polls=1_000_000,
                         name=self.name)
        self._net = srv
        if on_ready is not None:
            on_ready(self)
        try:
            srv.serve()
        except greenrt.Cancelled:
            self._draining = True
            for acc in list(self._open):
                if acc._drain is not None:
                    acc._drain()
            raise

    def _handle_stream(self, stream: Any) -> None:
        try:
            peer = stream.peer_address
        except Exception:  # pragma: no cover - streams without addresses
            peer = None
        ip = peer[0] if isinstance(peer, tuple) else peer
        n = self._per_ip.get(ip, 0)
        if self.max_per_ip is not None and n >= self.max_per_ip:
            self._stats["refused_per_ip"] += 1
            emit_protocol_error(self.name, "per_ip_cap", status=503, peer=peer_str(peer))
            if self.refuse is not None:
                with greenrt.move_on_after(1.0):
                    try:
                        self.refuse(stream)
                    except (net.StreamError, OSError):
                        pass
            stream.close()
            return
        self._per_ip[ip] = n + 1
        self._stats["connections"] += 1
        try:
            alpn = None
            if self.tls is not None:
                stream = self._handshake(stream, peer)
                if stream is None:
                    return
                alpn = getattr(stream, "selected_alpn", None)
            acc = Accepted(peer, self.tls is not None, alpn)
            self._open[acc] = None
            try:
                self.handle(stream, acc)
            finally:
                self._open.pop(acc, None)
                stream.close()
        finally:
            left = self._per_ip[ip] - 1
            if left:
                self._per_ip[ip] = left
            else:
                del self._per_ip[ip]

    def _handshake(self, stream: Any, peer: Any) -> Any:
        """TLS within ``handshake_timeout``; the wrapped stream, or ``None`` (closed)."""
        from greenrt.protocols import tls as _tls

        t = self.handshake_timeout
        with greenrt.move_on_after(t) if t is not None else contextlib.nullcontext() as sc:
            try:
                if isinstance(self.tls, _tls.TLSContext):
                    s = _tls.TLSStream(stream, self.tls)
                    try:
                        s.handshake()
                    except BaseException:
                        s.close()
                        raise
                else:
                    s = self.tls(stream)
                return s
            except Exception as e:  # noqa: BLE001 - any failure ends this connection only
                self._stats["tls_failures"] += 1
                emit_protocol_error(self.name, "tls_error", status=None, peer=peer_str(peer),
                                    error=type(e).__name__)
                stream.close()
                return None
        if sc is not None and sc.cancelled_caught:
            self._stats["tls_failures"] += 1
            emit_protocol_error(self.name, "tls_handshake_timeout", status=None,
                                peer=peer_str(peer))
        stream.close()
        return None

