"""The HTTP server: one port for HTTP/1.1 and HTTP/2, whatever carries the request.

``serve(handler, host, port)`` / :class:`HTTPServer` accept connections through the
floor's accept path (``protocols.base.serve``: per-IP cap, TLS under a handshake
budget, graceful drain) and hand each to the serving function of the HTTP version it
speaks. Handlers are written against ``protocols.http.model`` (``Request`` →
``Response``) and do not see the version.

Dispatch
--------

* **TLS**: by the protocol ALPN selected — ``"h2"`` → HTTP/2, ``"http/1.1"`` or none →
  HTTP/1.1. Offer both with ``tls.server_context(..., alpn=["h2", "http/1.1"])``.
* **Cleartext**: by sniffing the first bytes (within ``limits.header_timeout``): the
  HTTP/2 connection preface ``PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n`` ("prior knowledge",
  RFC 9113 §3.3) → HTTP/2; anything else → HTTP/1.1, which gets the sniffed bytes as
  ``initial``. The first byte that differs from the preface decides, so an HTTP/1.1
  client costs no extra wait.
* **Upgrade: h2c** (RFC 7540 §3.2, what ``curl --http2`` and ``nghttp -u`` do on
  ``http://``): on a cleartext HTTP/1.1 connection, a request without a body carrying
  ``Upgrade: h2c``, ``Connection: Upgrade, HTTP2-Settings`` and exactly one valid
  ``HTTP2-Settings`` is answered ``101 Switching Protocols``; the connection is then
  HTTP/2, the request stream 1, its response sent over HTTP/2. Anything else that
  asks for h2c is served as plain HTTP/1.1, the header ignored (a request with a
  body, bad, missing or repeated ``HTTP2-Settings``, HTTP/1.0; never over TLS, nor
  with ``http2=False``). See ``protocols.http2._h2c``. RFC 9113 deprecated the
  mechanism; it is served for the clients that still use it.

The registry
------------

``PROTOCOLS`` maps a protocol name (an ALPN id) to a callable with this contract::

    serve_connection(stream, handler, *, limits, initial=b"", scheme="http",
                     client=None, accepted=None) -> None

It serves one connection until it ends (a checkpoint; blocks), with ``initial`` the
bytes already read while sniffing, ``limits`` the version's own limits object,
``accepted`` the accept path's :class:`~protocols.base.serve.Accepted` (call
``accepted.on_drain(fn)`` to take part in graceful shutdown). It does not close
``stream``; the accept path does. The ``"http/1.1"`` entry is also given
``upgrade_handler=`` on cleartext connections when HTTP/2 is on: the handler for
requests with an ``Upgrade`` field (the h2c path).
``protocols.http1.server.serve_connection`` and
``protocols.http2.server.serve_connection`` are the two registered today; a third
version plugs in by adding an entry (and, over TLS, its ALPN id to the context).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import greenrt
from greenrt import net

from ..base.events import emit_protocol_error
from ..base.serve import Accepted, StreamServer, peer_str
from .limits import DEFAULT_LIMITS, Limits

__all__ = ["H2_PREFACE", "HTTPServer", "PROTOCOLS", "serve"]

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _serve_http1(stream, handler, **kw: Any) -> None:
    from ..http1.server import serve_connection

    serve_connection(stream, handler, **kw)


def _serve_http2(stream, handler, **kw: Any) -> None:
    from ..http2.server import serve_connection

    # with accepted=, the connection registers its GOAWAY drain with the accept path
    serve_connection(stream, handler, **kw)


#: protocol name (ALPN id) -> ``serve_connection`` (see the module docstring)
PROTOCOLS: dict[str, Callable[..., None]] = {"http/1.1": _serve_http1, "h2": _serve_http2}


def _http2_available() -> bool:
    try:
        import h2  # noqa: F401
    except ImportError:
        return False
    return True


class HTTPServer:
    """An HTTP/1.1 + HTTP/2 server around ``handler(request) -> Response``.

    ``limits`` (``protocols.http.Limits``) bounds HTTP/1.1 and the connections;
    ``h2_limits`` (``protocols.http2.H2Limits``, default its defaults) bounds HTTP/2.
    ``tls``: a ``protocols.tls.server_context(...)`` (offer ``alpn=["h2", "http/1.1"]``
    for HTTP/2 over TLS) or ``None``. ``http2=False`` serves HTTP/1.1 only (the
    preface is then just a bad HTTP/1.1 request). Use :func:`serve`, or
    ``serve_listeners``; ``on_ready`` receives this object (``addresses``,
    ``shutdown()``, ``statistics()``).
    """

    def __init__(self, handler: Callable, *, limits: Limits = DEFAULT_LIMITS, tls: Any = None,
                 h2_limits: Any = None, http2: bool | None = None):
        self.handler = handler
        self.limits = limits
        self.tls = tls
        self.h2_limits = h2_limits
        self.http2 = _http2_available() if http2 is None else http2
        # "h2c": HTTP/1.1 connections upgraded to HTTP/2 (also counted as http/1.1)
        self._versions = {"http/1.1": 0, "h2": 0, "h2c": 0}
        self._acceptor = StreamServer(
            self._handle, name="http", tls=tls, handshake_timeout=limits.header_timeout or 30.0,
            max_connections=limits.max_connections, max_per_ip=limits.max_connections_per_ip,
            drain_timeout=limits.drain_timeout, refuse=self._refuse)

    @property
    def addresses(self) -> list:
        return self._acceptor.addresses

    def statistics(self) -> dict:
        """The accept path's counters (``connections``, ``open``, ``refused_per_ip``,
        ``tls_failures``, ``net``) and ``versions`` (connections served per version)."""
        s = self._acceptor.statistics()
        s["versions"] = dict(self._versions)
        return s

    def shutdown(self) -> None:
        """Graceful shutdown: stop accepting, close idle connections, drain requests in
        flight (``limits.drain_timeout``), then cancel them with reason ``shutdown``.
        Not a checkpoint; ``serve`` returns when done."""
        self._acceptor.shutdown()

    def serve_listeners(self, listeners: list, *, on_ready: Callable | None = None) -> None:
        """Serve on already-bound listeners until shutdown. A checkpoint (blocks)."""
        self._acceptor.serve_listeners(
            listeners, on_ready=(lambda _: on_ready(self)) if on_ready is not None else None)

    def handle_stream(self, stream) -> None:
        """Serve one already-accepted connection (the accept path's per-connection
        work, for callers with their own accept loop). Blocks until it closes."""
        self._acceptor._handle_stream(stream)

    # -- per connection -----------------------------------------------------------

    def _refuse(self, stream) -> None:
        from ..http1.server import error_response

        stream.send_all(error_response(503, "too many connections"))

    def _handle(self, stream, acc: Accepted) -> None:
        initial = b""
        if acc.tls:
            version = "h2" if acc.alpn == "h2" and self.http2 else "http/1.1"
        elif self.http2:
            initial, version = self._sniff(stream, acc)
            if version is None:
                return
        else:
            version = "http/1.1"
        self._versions[version] += 1
        kw: dict[str, Any] = {"initial": initial, "scheme": acc.scheme, "accepted": acc}
        if version == "h2":
            if self.h2_limits is not None:
                kw["limits"] = self.h2_limits
            kw["client"] = acc.peer
        else:
            kw["limits"] = self.limits
            if self.http2 and not acc.tls:
                kw["upgrade_handler"] = self._h2c_handler(acc)
        PROTOCOLS[version](stream, self.handler, **kw)

    def _h2c_handler(self, acc: Accepted) -> Callable:
        """The ``upgrade_handler`` of a cleartext HTTP/1.1 connection (called for the
        requests with an ``Upgrade`` field): ``Upgrade: h2c`` requests that qualify
        turn the connection into HTTP/2 (see the module docstring), the others go to
        the handler."""
        from ..http2._h2c import upgrade_or_serve

        handler = self.handler
        h2_kw: dict[str, Any] = {"accepted": acc}
        if self.h2_limits is not None:
            h2_kw["limits"] = self.h2_limits

        def upgraded() -> None:
            self._versions["h2c"] += 1

        def h2c(req):
            return upgrade_or_serve(req, handler, on_upgrade=upgraded, **h2_kw)

        return h2c

    def _sniff(self, stream, acc: Accepted) -> tuple[bytes, str | None]:
        """Read until the bytes either are the HTTP/2 preface or differ from it."""
        buf = b""
        t = self.limits.header_timeout
        with greenrt.move_on_after(t) if t is not None else contextlib.nullcontext() as sc:
            while len(buf) < len(H2_PREFACE):
                try:
                    data = stream.recv(65536)
                except (net.StreamError, OSError):
                    return buf, None
                if not data:
                    return buf, ("http/1.1" if buf else None)
                buf += data
                if not H2_PREFACE.startswith(buf[:len(H2_PREFACE)]):
                    return buf, "http/1.1"
            return buf, "h2"
        if sc is not None and sc.cancelled_caught:
            emit_protocol_error("http", "header_timeout", status=None, peer=peer_str(acc.peer))
        return buf, None


def serve(handler: Callable, host: str | None = "127.0.0.1", port: int = 8080, *,
          tls: Any = None, limits: Limits = DEFAULT_LIMITS, h2_limits: Any = None,
          http2: bool | None = None, on_ready: Callable | None = None, backlog: int = 1024) -> None:
    """Serve HTTP/1.1 and HTTP/2 on ``host``:``port`` with ``handler(request) -> Response``.

    Blocks until shutdown (a checkpoint): ``on_ready(server)`` receives the
    :class:`HTTPServer`, whose ``shutdown()`` stops it gracefully; cancelling the
    calling task does the same. ``tls``: a ``protocols.tls.server_context(...)``
    (HTTPS; the handshake must finish within ``limits.header_timeout``).
    """
    listener = net.listen_tcp(host, port, backlog=backlog)
    HTTPServer(handler, limits=limits, tls=tls, h2_limits=h2_limits, http2=http2) \
        .serve_listeners([listener], on_ready=on_ready)
