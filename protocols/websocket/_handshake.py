"""The opening handshake (RFC 6455 §4), client and server, on h11.

The server half is split so the HTTP server's upgrade hook needs a few lines:
:func:`server_handshake` checks request headers and returns the 101 headers (pure,
no I/O); :func:`accept_upgrade` turns a stream plus the bytes already buffered
behind the request into a :class:`WebSocket`. :func:`accept` does the whole thing
on a raw stream (reads the request itself).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import urlsplit

import h11
from wsproto.connection import Connection, ConnectionType
from wsproto.handshake import client_extensions_handshake, server_extensions_handshake
from wsproto.utilities import RemoteProtocolError, generate_accept_token, generate_nonce

import greenrt
from greenrt.protocols.base import emit_event, emit_protocol_error
from greenrt.protocols.base.connect import connect as base_connect

from ._connection import WebSocket
from ._deflate import BoundedPerMessageDeflate
from ._errors import HandshakeError, WebSocketError, WebSocketLimitError
from ._limits import WebSocketLimits

__all__ = ["ServerHandshake", "accept", "accept_upgrade", "connect", "server_handshake",
           "server_handshake_h2"]

_DEFAULT_LIMITS = WebSocketLimits()


def _tokens(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> list[str]:
    out = []
    for k, v in headers:
        if k.lower() == name:
            out += [t.strip() for t in v.decode("latin-1").split(",") if t.strip()]
    return out


def _header(headers, name: bytes) -> bytes | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def _fail_after(seconds):
    return greenrt.fail_after(seconds) if seconds is not None else contextlib.nullcontext()


def _new_deflate(limits: WebSocketLimits, options: dict | None) -> BoundedPerMessageDeflate:
    return BoundedPerMessageDeflate(max_message_bytes=limits.max_message_bytes, **(options or {}))


@dataclasses.dataclass
class ServerHandshake:
    """An accepted handshake: the 101 response ``headers`` to send, the chosen
    ``subprotocol`` and the deflate extension (or None)."""

    headers: list[tuple[bytes, bytes]]
    subprotocol: str | None
    deflate: BoundedPerMessageDeflate | None


def server_handshake(method: bytes | str, headers: Sequence[tuple[bytes, bytes]], *,
                     subprotocols: Iterable[str] = (),
                     origin_check: Callable[[str | None], bool] | None = None,
                     compression: bool | dict = True,
                     limits: WebSocketLimits = _DEFAULT_LIMITS) -> ServerHandshake:
    """Check an HTTP/1.1 WebSocket upgrade request and decide the answer. No I/O.

    ``subprotocols``: the server's, in preference order; the first the client
    offered is chosen (none offered or none matching: no subprotocol).
    ``origin_check(origin)`` returns False to refuse (403). ``compression``: True,
    False, or a dict of ``PerMessageDeflate`` options (``client_no_context_takeover``,
    ``server_no_context_takeover``, ``client_max_window_bits``,
    ``server_max_window_bits``). Raises :class:`HandshakeError` with ``status`` (400,
    403, 426) when the request is refused.
    """
    if isinstance(method, str):
        method = method.encode("ascii")
    if method.upper() != b"GET":
        raise HandshakeError("websocket: the upgrade request must be a GET", status=400,
                             code="bad_method")
    if "websocket" not in [t.lower() for t in _tokens(headers, b"upgrade")]:
        raise HandshakeError("websocket: no 'Upgrade: websocket' header", status=400,
                             code="no_upgrade")
    if "upgrade" not in [t.lower() for t in _tokens(headers, b"connection")]:
        raise HandshakeError("websocket: no 'Connection: upgrade' header", status=400,
                             code="no_upgrade")
    _check_version(headers)
    key = _header(headers, b"sec-websocket-key")
    try:
        if key is None or len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError
    except (ValueError, binascii.Error):
        raise HandshakeError("websocket: missing or malformed Sec-WebSocket-Key", status=400,
                             code="bad_key") from None
    response = [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"),
                (b"Sec-WebSocket-Accept", generate_accept_token(key))]
    return _negotiate(headers, response, subprotocols, origin_check, compression, limits)


def server_handshake_h2(headers: Sequence[tuple[bytes, bytes]], *,
                        subprotocols: Iterable[str] = (),
                        origin_check: Callable[[str | None], bool] | None = None,
                        compression: bool | dict = True,
                        limits: WebSocketLimits = _DEFAULT_LIMITS) -> ServerHandshake:
    """:func:`server_handshake` for an RFC 8441 extended CONNECT (``:protocol
    websocket`` over HTTP/2): no Upgrade/Connection/Sec-WebSocket-Key (RFC 8441 5);
    version, Origin, subprotocol and extension negotiation as over HTTP/1.1. The
    returned ``headers`` go with the 200. No I/O."""
    _check_version(headers)
    return _negotiate(headers, [], subprotocols, origin_check, compression, limits)


def _check_version(headers) -> None:
    if _header(headers, b"sec-websocket-version") != b"13":
        raise HandshakeError("websocket: unsupported Sec-WebSocket-Version (only 13)", status=426,
                             code="bad_version")


def _negotiate(headers, response, subprotocols, origin_check, compression,
               limits) -> ServerHandshake:
    origin = _header(headers, b"origin")
    if origin_check is not None and not origin_check(origin.decode("latin-1") if origin else None):
        raise HandshakeError("websocket: Origin refused", status=403, code="origin_refused")
    offered = _tokens(headers, b"sec-websocket-protocol")
    chosen = next((p for p in subprotocols if p in offered), None)
    if chosen is not None:
        response.append((b"Sec-WebSocket-Protocol", chosen.encode("ascii")))
    deflate = None
    if compression:
        candidate = _new_deflate(limits, compression if isinstance(compression, dict) else None)
        accepted = server_extensions_handshake(_tokens(headers, b"sec-websocket-extensions"),
                                               [candidate])
        if accepted:
            response.append((b"Sec-WebSocket-Extensions", accepted))
            deflate = candidate
    return ServerHandshake(response, chosen, deflate)


def accept_upgrade(stream, handshake: ServerHandshake, leftover: bytes = b"", *,
                   limits: WebSocketLimits = _DEFAULT_LIMITS, path: str | None = None,
                   request_headers=None) -> WebSocket:
    """The server-side :class:`WebSocket` on ``stream`` once the 101 with
    ``handshake.headers`` has been sent; ``leftover`` are bytes the HTTP layer read
    past the request (they are the first WebSocket bytes). Not a checkpoint."""
    extensions = [handshake.deflate] if handshake.deflate is not None else []
    proto = Connection(ConnectionType.SERVER, extensions)
    return WebSocket(stream, proto, client=False, limits=limits, subprotocol=handshake.subprotocol,
                     deflate=handshake.deflate, leftover=leftover, path=path,
                     request_headers=request_headers)


def _read_head(stream, conn: h11.Connection, max_bytes: int) -> object:
    """The next h11 event (the request or response head), reading as needed.

    h11 bounds only an *incomplete* head (``max_incomplete_event_size``); a longer
    head that arrives in one read would pass, so the head's size is checked here
    too, once it is parsed (bytes received minus those still buffered)."""
    received = 0
    while True:
        try:
            ev = conn.next_event()
        except h11.RemoteProtocolError as e:
            if e.error_status_hint == 431 or "exceeded" in str(e):
                raise WebSocketLimitError(limit="max_handshake_bytes", maximum=max_bytes) from None
            raise HandshakeError(f"websocket: bad handshake: {e}", status=400) from None
        if ev is h11.NEED_DATA:
            data = stream.recv(65536)
            received += len(data)
            conn.receive_data(data)   # b"" at EOF: h11 then raises or reports closed
            continue
        if isinstance(ev, h11.ConnectionClosed):
            raise HandshakeError("websocket: the peer closed during the handshake")
        head = received - len(conn.trailing_data[0])
        if head > max_bytes:
            raise WebSocketLimitError(limit="max_handshake_bytes", value=head, maximum=max_bytes)
        return ev


def _reject(stream, status: int, extra=()) -> None:
    body = b""
    head = [b"HTTP/1.1 %d %s" % (status, {400: b"Bad Request", 403: b"Forbidden",
                                          426: b"Upgrade Required"}.get(status, b"Error")),
            b"Content-Length: 0", b"Connection: close"]
    head += [k + b": " + v for k, v in extra]
    try:
        stream.send_all(b"\r\n".join(head) + b"\r\n\r\n" + body)
    except Exception:  # noqa: BLE001 - the connection is being refused anyway
        pass


def accept(stream, *, subprotocols: Iterable[str] = (),
           origin_check: Callable[[str | None], bool] | None = None,
           compression: bool | dict = True,
           limits: WebSocketLimits = _DEFAULT_LIMITS) -> WebSocket:
    """Read a WebSocket upgrade request from a raw ``stream`` (TCP or TLS), answer
    it and return the server-side :class:`WebSocket`.

    A checkpoint, bounded by ``limits.handshake_timeout`` (``TooSlowError``) and
    ``limits.max_handshake_bytes``. A refused request is answered (400/403/426)
    and raises :class:`HandshakeError`; the caller closes the stream (a handler
    under ``net.serve_tcp`` does). Cancelled: nothing is answered.
    """
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_handshake_bytes)
    with _fail_after(limits.handshake_timeout):
        try:
            req = _read_head(stream, conn, limits.max_handshake_bytes)
            if not isinstance(req, h11.Request):
                raise HandshakeError("websocket: expected a request", status=400)
            try:
                hs = server_handshake(req.method, list(req.headers), subprotocols=subprotocols,
                                      origin_check=origin_check, compression=compression,
                                      limits=limits)
            except HandshakeError as e:
                extra = [(b"Sec-WebSocket-Version", b"13")] if e.status == 426 else []
                _reject(stream, e.status or 400, extra)
                raise
        except HandshakeError as e:
            emit_protocol_error("websocket", e.code, status=e.status)
            raise
        head = [b"HTTP/1.1 101 Switching Protocols"] + [k + b": " + v for k, v in hs.headers]
        stream.send_all(b"\r\n".join(head) + b"\r\n\r\n")
    leftover = conn.trailing_data[0]
    return accept_upgrade(stream, hs, leftover, limits=limits,
                          path=req.target.decode("ascii", "replace"),
                          request_headers=list(req.headers))


def _run_then_close(handler, ws: WebSocket) -> None:
    """Run ``handler(ws)``, then close: normally, or 1011 if it raised."""
    try:
        handler(ws)
    except BaseException:
        if not ws.closed:
            ws.close(1011, "handler error")
        raise
    ws.close()


def serve_handler(handler, **accept_options):
    """Wrap ``handler(ws)`` for ``net.serve_tcp`` (or ``tls.tls_handler``): each
    connection does the handshake (:func:`accept`), runs ``handler`` and closes the
    WebSocket afterwards (a normal close if the handler returned, 1011 if it raised)."""

    def wrapped(stream):
        try:
            ws = accept(stream, **accept_options)
        except (WebSocketError, greenrt.TooSlowError) as e:
            # refused, over a limit or too slow: answered where possible, traced
            # (protocol.error), and the stream is closed by the server
            emit_event("websocket.handshake_failed", error=type(e).__name__)
            return
        _run_then_close(handler, ws)

    wrapped.__qualname__ = f"serve_handler({getattr(handler, '__qualname__', handler)})"
    return wrapped


def accept_request(request, *, subprotocols: Iterable[str] = (),
                   origin_check: Callable[[str | None], bool] | None = None,
                   compression: bool | dict = True,
                   limits: WebSocketLimits = _DEFAULT_LIMITS) -> WebSocket:
    """Accept a WebSocket from inside an HTTP handler (``protocols.http.serve``): the
    same port serves HTTP and WebSockets. Checks the upgrade request, answers 101
    through ``request.upgrade`` (the connection leaves the HTTP server) and returns
    the WebSocket, which starts with the bytes the server had already read.

    A checkpoint. A refused handshake raises :class:`HandshakeError` (``status``
    400/403/426) before anything is written: the handler answers it with a normal
    response (``handshake_refused(e)``). The handler returns ``None`` once it is done
    with the WebSocket (close it first: ``with accept_request(req) as ws:``).

    Over HTTP/2 (RFC 8441: the request is an extended CONNECT with ``:protocol
    websocket``, ``request.extensions["http2.connect"]``; the handler must be marked
    with ``http2.extended_connect``, as :func:`http_handler` and the WSGI adapter
    are) the answer is a 200 on the request's stream and the WebSocket runs over that
    stream's DATA; its closing ends the stream (END_STREAM after the Close frame).
    """
    raw = list(request.headers.raw())
    connect = request.extensions.get("http2.connect")
    if connect is not None:
        if connect.protocol != "websocket":
            raise HandshakeError(f"websocket: extended CONNECT for {connect.protocol!r}, not "
                                 "'websocket'", status=400, code="bad_protocol")
        hs = server_handshake_h2(raw, subprotocols=subprotocols, origin_check=origin_check,
                                 compression=compression, limits=limits)
        tunnel = connect.accept(hs.headers)
        request.extensions["upgraded"] = True  # the WSGI adapter sends no response then
        return accept_upgrade(tunnel, hs, b"", limits=limits, path=request.target,
                              request_headers=raw)
    hs = server_handshake(request.method, raw, subprotocols=subprotocols,
                          origin_check=origin_check, compression=compression, limits=limits)
    stream, leftover = request.upgrade(hs.headers)
    return accept_upgrade(stream, hs, leftover, limits=limits, path=request.target,
                          request_headers=raw)


def handshake_refused(err: HandshakeError):
    """The HTTP response for a refused handshake (``status``, plus
    ``Sec-WebSocket-Version: 13`` for 426)."""
    from greenrt.protocols.http.model import Response

    headers = [("content-type", "text/plain")]
    if err.status == 426:
        headers.append(("sec-websocket-version", "13"))
    return Response(err.status or 400, headers, str(err).encode("utf-8", "replace") + b"\n")


def accept_wsgi(environ: dict, **options) -> WebSocket:
    """``accept_request`` for a WSGI application served by greenrt's WSGI adapter
    (``environ["greenrt.request"]``): a Flask-style view accepts a WebSocket and
    returns an empty body when it is done::

        @app.route("/ws", websocket=True)
        def ws_view():
            with websocket.accept_wsgi(request.environ) as ws:
                for m in ws:
                    ws.send(m)
            return ""

    Raises ``HandshakeError`` when refused and ``KeyError`` outside greenrt's adapter.
    """
    return accept_request(environ["greenrt.request"], **options)


def http_handler(ws_handler, fallback=None, **accept_options):
    """An HTTP handler for ``protocols.http.serve`` that runs ``ws_handler(ws)`` for
    WebSocket upgrade requests (closing the WebSocket afterwards: normally, or 1011 if
    it raised) and ``fallback(request)`` for anything else (default: 426 Upgrade
    Required). One port for HTTP and WebSockets."""

    def handle(request):
        if "websocket" not in request.headers.get("upgrade", "").lower() \
                and "http2.connect" not in request.extensions:
            if fallback is not None:
                return fallback(request)
            return handshake_refused(HandshakeError("websocket: this endpoint needs an "
                                                    "upgrade", status=426, code="no_upgrade"))
        try:
            ws = accept_request(request, **accept_options)
        except HandshakeError as e:
            emit_event("websocket.handshake_failed", error=type(e).__name__)
            return handshake_refused(e)
        _run_then_close(ws_handler, ws)
        return None

    handle.__qualname__ = f"http_handler({getattr(ws_handler, '__qualname__', ws_handler)})"
    # RFC 8441: over HTTP/2 the same handler accepts WebSockets as extended CONNECT
    # (the mark ``http2.extended_connect`` sets; not imported: h2 is optional here)
    handle.http2_extended_connect = True
    return handle


def connect(url: str, *, subprotocols: Sequence[str] = (), origin: str | None = None,
            headers: Sequence[tuple[str, str]] = (), compression: bool | dict = True,
            limits: WebSocketLimits = _DEFAULT_LIMITS, tls_context=None,
            timeout: float | None = None, http2=False) -> WebSocket:
    """Open a WebSocket to ``url`` (``ws://`` or ``wss://``).

    A checkpoint. ``timeout`` bounds the connect — TCP and, for ``wss://``, the TLS
    handshake, as one budget (``protocols.base.connect``; default
    ``limits.handshake_timeout``) —, ``limits.handshake_timeout`` the WebSocket
    handshake after it. ``tls_context``: a ``tls.client_context()`` (default: the
    system trust store, host name checked). ``compression`` offers
    permessage-deflate (True, False or a dict of its options). Raises
    :class:`HandshakeError` when the server refuses or answers wrongly. On any
    failure or cancellation the connection is closed before the error leaves.

    ``http2``: RFC 8441, the WebSocket as an extended CONNECT on one HTTP/2 stream.
    ``True`` opens an HTTP/2 connection for it (prior knowledge for ``ws://``, ALPN
    ``h2`` for ``wss://``: a ``tls_context`` given must offer ``h2``), closed with
    the WebSocket; an ``http2.ClientConnection`` carries it as one more stream
    beside others (the connection stays open after the WebSocket closes). A server
    that does not enable extended CONNECT is a :class:`HandshakeError`
    (``code="no_extended_connect"``); an answer other than 2xx too.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a ws:// or wss:// URL: {url!r}")
    secure = parts.scheme == "wss"
    host = parts.hostname
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    budget = limits.handshake_timeout if timeout is None else timeout
    if http2 is not False and http2 is not None:
        return _connect_h2(http2, host, port, secure, target, subprotocols, origin, headers,
                           compression, limits, tls_context, budget)
    stream = base_connect(host, port, tls=(tls_context or True) if secure else None,
                          timeout=budget).stream
    try:
        with _fail_after(limits.handshake_timeout):
            return _client_handshake(stream, host, port, secure, target, subprotocols, origin,
                                     headers, compression, limits)
    except BaseException:
        stream.close()
        raise


def _host_header(host: str, port: int, secure: bool) -> str:
    default_port = 443 if secure else 80
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return host if port == default_port else f"{host}:{port}"


def _client_offer(subprotocols, origin, headers, compression, limits):
    """The negotiation headers a client sends (either HTTP version) and its deflate."""
    out = [("Sec-WebSocket-Version", "13")]
    if subprotocols:
        out.append(("Sec-WebSocket-Protocol", ", ".join(subprotocols)))
    deflate = None
    if compression:
        deflate = _new_deflate(limits, compression if isinstance(compression, dict) else None)
        out.append(("Sec-WebSocket-Extensions", deflate.offer() and
                    f"permessage-deflate; {deflate.offer()}".rstrip("; ")))
    if origin is not None:
        out.append(("Origin", origin))
    return out + list(headers), deflate


def _client_accept(rh, subprotocols, deflate):
    """Check the server's choices (subprotocol, extensions); returns them."""
    proto_hdr = _header(rh, b"sec-websocket-protocol")
    subprotocol = proto_hdr.decode("latin-1").strip() if proto_hdr else None
    if subprotocol is not None and subprotocol not in subprotocols:
        raise HandshakeError(f"websocket: the server chose a subprotocol we did not offer: "
                             f"{subprotocol!r}", code="bad_subprotocol")
    accepted_ext = _tokens(rh, b"sec-websocket-extensions")
    try:
        exts = client_extensions_handshake(accepted_ext, [deflate] if deflate else [])
    except RemoteProtocolError as e:
        raise HandshakeError(f"websocket: {e}", code="bad_extension") from None
    return subprotocol, exts


def _client_handshake(stream, host, port, secure, target, subprotocols, origin, headers,
                      compression, limits) -> WebSocket:
    key = generate_nonce()
    offer, deflate = _client_offer(subprotocols, origin, headers, compression, limits)
    req_headers = [("Host", _host_header(host, port, secure)), ("Upgrade", "websocket"),
                   ("Connection", "Upgrade"), ("Sec-WebSocket-Key", key.decode("ascii"))] + offer
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=limits.max_handshake_bytes)
    stream.send_all(conn.send(h11.Request(method="GET", target=target, headers=req_headers)))
    resp = _read_head(stream, conn, limits.max_handshake_bytes)
    if not isinstance(resp, h11.InformationalResponse) or resp.status_code != 101:
        status = getattr(resp, "status_code", None)
        raise HandshakeError(f"websocket: the server answered {status} instead of 101",
                             status=status, code="rejected")
    rh = list(resp.headers)
    if "websocket" not in [t.lower() for t in _tokens(rh, b"upgrade")] or \
            "upgrade" not in [t.lower() for t in _tokens(rh, b"connection")]:
        raise HandshakeError("websocket: 101 without Upgrade/Connection headers", code="bad_response")
    if _header(rh, b"sec-websocket-accept") != generate_accept_token(key):
        raise HandshakeError("websocket: wrong Sec-WebSocket-Accept", code="bad_accept")
    subprotocol, exts = _client_accept(rh, subprotocols, deflate)
    deflate = exts[0] if exts else None
    # h11 switched protocols after the 101: trailing_data is the first WS bytes.
    leftover = conn.trailing_data[0]
    proto = Connection(ConnectionType.CLIENT, exts)
    return WebSocket(stream, proto, client=True, limits=limits, subprotocol=subprotocol,
                     deflate=deflate, leftover=leftover, path=target, response_headers=rh)


def _connect_h2(http2, host, port, secure, target, subprotocols, origin, headers,
                compression, limits, tls_context, budget) -> WebSocket:
    """RFC 8441: the handshake as an extended CONNECT on an HTTP/2 connection (a new
    one, owned by the WebSocket, for ``http2=True``)."""
    from greenrt.protocols import http2 as h2proto  # h2 is needed only here

    owns = None
    if http2 is True:
        conn = owns = h2proto.connect(host, port, tls=(tls_context or True) if secure else None,
                                      server_hostname=host if secure else None, timeout=budget)
    elif isinstance(http2, h2proto.ClientConnection):
        conn = http2
    else:
        raise TypeError("http2= takes True or an http2.ClientConnection")
    try:
        with _fail_after(limits.handshake_timeout):
            if not conn.server_settings().get("enable_connect_protocol"):
                raise HandshakeError("websocket: the HTTP/2 server does not enable extended "
                                     "CONNECT (RFC 8441)", code="no_extended_connect")
            offer, deflate = _client_offer(subprotocols, origin, headers, compression, limits)
            stream = conn.open_stream("CONNECT", target, offer, protocol="websocket",
                                      authority=_host_header(host, port, secure),
                                      scheme="https" if secure else "http")
            try:
                status, resp_headers = stream.response_headers()
                if not 200 <= status < 300:
                    raise HandshakeError(f"websocket: the server answered {status} to the "
                                         "extended CONNECT", status=status, code="rejected")
                rh = list(resp_headers.raw())
                subprotocol, exts = _client_accept(rh, subprotocols, deflate)
            except BaseException:
                stream.close()
                raise
    except BaseException:
        if owns is not None:
            owns.close()
        raise
    deflate = exts[0] if exts else None
    tunnel = h2proto.ClientTunnel(stream, owns)
    return WebSocket(tunnel, Connection(ConnectionType.CLIENT, exts), client=True, limits=limits,
                     subprotocol=subprotocol, deflate=deflate, path=target,
                     response_headers=rh)
