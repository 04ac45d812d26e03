"""The HTTP/2 client, high level: ``request(method, url)`` and a :class:`Client` that
keeps one multiplexed connection per origin and speaks HTTP/1.1 where the server
does not speak HTTP/2.

* ``https://``: TLS offering ALPN ``h2`` and ``http/1.1``. A server that selects
  ``h2`` gets an HTTP/2 connection, shared by every concurrent request to that origin
  (a second one is opened only when the first has no stream slot left or has been
  told GOAWAY). A server that selects ``http/1.1`` (or nothing) is remembered, and
  that origin's requests go to an ``http1.Client`` (its pool is the floor's
  ``protocols.base.Pool``). That first probe connection is closed, not reused: it
  costs one extra handshake per HTTP/1.1-only origin and keeps the HTTP/1.1 pool's
  invariants whole.
* ``http://``: HTTP/1.1, unless the client was made with ``prior_knowledge=True``
  (h2c with prior knowledge).

Why not ``protocols.base.Pool`` for the HTTP/2 connections: its leases are
exclusive (one request per connection at a time, the HTTP/1.1 shape) while an HTTP/2
connection is shared by many requests at once. The origin map here is the
multiplexed equivalent: a connection stays open for reuse while usable; one that is not (closed, failed,
told GOAWAY) is dropped from the map, and closed once its streams have ended.

A request above a GOAWAY's last-stream-id, or refused with REFUSED_STREAM, was not
processed by the server: it is retried once on a fresh connection (whatever the
method) when its body can be replayed; else :class:`StreamRefused` reaches the
caller, marked ``retryable``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import greenrt
from greenrt.protocols import base

from ..http.model import Headers
from ..http1 import client as h1client
from .client import ClientConnection, ClientStream
from .errors import ConnectionLost, StreamRefused
from .limits import DEFAULT_H2_LIMITS, H2Limits

__all__ = ["Client", "ClientResponse", "request"]


class _ResponseBody:
    """The response body as a stream of chunks (``read``/iteration), like the
    ``Body`` of the shared model."""

    def __init__(self, s: ClientStream):
        self._s = s
        self.complete = False

    def read(self, max_bytes: int = 65536) -> bytes:
        """Next body bytes, ``b""`` at the end. A checkpoint (a cancelled read resets
        the stream)."""
        b = self._s.read(max_bytes)
        if not b:
            self.complete = True
        return b

    def read_all(self, limit: int | None = None) -> bytes:
        b = self._s.read_all(limit)
        self.complete = True
        return b

    def __iter__(self):
        while True:
            b = self.read()
            if not b:
                return
            yield b


class ClientResponse:
    """An HTTP/2 response, shaped like ``http1.ClientResponse``: ``status``,
    ``reason`` (empty: HTTP/2 has none), ``headers``, ``http_version`` (``"2"``),
    ``url``, ``method``, a streaming ``body``, ``read()``/``content``, ``text``,
    ``trailers`` (after the body; ``None`` if none) and ``close()``."""

    def __init__(self, s: ClientStream, status: int, headers: Headers, url: str, method: str):
        self._s = s
        self.status = status
        self.reason = ""
        self.headers = headers
        self.http_version = "2"
        self.url = url
        self.method = method
        self.content: bytes | None = None
        self.body = _ResponseBody(s)
        self._trailers: Headers | None = None
        self._closed = False

    def read(self) -> bytes:
        """The whole body (cached in ``content``). A checkpoint."""
        if self.content is None:
            self.content = self.body.read_all()
            self._trailers = self._s.trailers()
            self.close()
        return self.content

    @property
    def text(self) -> str:
        return self.read().decode("utf-8", "replace")

    @property
    def trailers(self) -> Headers | None:
        """Trailer fields, once the body has been read (``read()`` or to ``b""``)."""
        if self._trailers is None and self.body.complete:
            self._trailers = self._s.trailers()
        return self._trailers

    def close(self) -> None:
        """Release the stream: a no-op once the body was read, else the stream is
        reset (CANCEL) and its unread window returned. Not a checkpoint; idempotent."""
        if not self._closed:
            self._closed = True
            self._s.close()

    def __enter__(self) -> ClientResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<http2.ClientResponse {self.status} {self.url}>"


class Client:
    """HTTP/2 where the server speaks it, HTTP/1.1 where it does not (see the module
    docstring). ``tls_context``: a ``protocols.tls`` client context (its ALPN list
    must offer ``h2`` and may offer ``http/1.1``; default: the system trust store
    with both); ``limits`` bound HTTP/2 connections (``H2Limits``), ``http1`` is the
    HTTP/1.1 client used for the rest (default ``http1.Client(tls_context=...)``);
    ``prior_knowledge`` speaks h2c on ``http://`` origins; ``connect_timeout``
    bounds TCP + TLS."""

    def __init__(self, *, tls_context: Any = None, limits: H2Limits = DEFAULT_H2_LIMITS,
                 prior_knowledge: bool = False, connect_timeout: float | None = 30.0,
                 http1: h1client.Client | None = None, headers: Any = None):
        self.tls_context = tls_context
        self.limits = limits
        self.prior_knowledge = prior_knowledge
        self.connect_timeout = connect_timeout
        self.http1 = http1 or h1client.Client(tls_context=tls_context)
        self.default_headers = Headers(headers)
        self._conns: dict[tuple, list[ClientConnection]] = {}
        self._h1_origins: set[tuple] = set()
        self._locks: dict[tuple, greenrt.Lock] = {}
        self._closed = False
        self._stats = {"h2_connections": 0, "h1_requests": 0, "h2_requests": 0,
                       "retried_refused": 0, "alpn_http1": 0}

    # -- connections ----------------------------------------------------------------------

    def _connect(self, key: tuple) -> ClientConnection | None:
        """A new HTTP/2 connection for ``key``, or ``None`` if the server chose
        HTTP/1.1 by ALPN (the origin is remembered). A checkpoint."""
        scheme, host, port = key
        if scheme == "https":
            tls_arg: Any = self.tls_context if self.tls_context is not None else True
            alpn = ["h2", "http/1.1"] if tls_arg is True else None
        else:
            tls_arg, alpn = None, None
        try:
            got = base.connect(host, port, tls=tls_arg, server_hostname=host, alpn=alpn,
                               timeout=self.connect_timeout)
        except OSError as e:
            raise ConnectionLost(f"http2: connect to {host}:{port} failed: {e}") from e
        if scheme == "https" and got.alpn != "h2":
            got.stream.close()
            self._h1_origins.add(key)
            self._stats["alpn_http1"] += 1
            return None
        try:
            default = (scheme == "http" and port == 80) or (scheme == "https" and port == 443)
            authority = host if default else f"{host}:{port}"
            conn = ClientConnection(got.stream, limits=self.limits, authority=authority,
                                    scheme=scheme)
        except BaseException:
            got.stream.close()
            raise
        self._stats["h2_connections"] += 1
        return conn

    def _connection(self, key: tuple) -> ClientConnection | None:
        """A usable HTTP/2 connection with a free stream slot for ``key`` (opened if
        needed), or ``None`` for an HTTP/1.1 origin. A checkpoint."""
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = greenrt.Lock()
        with lock:  # one connect per origin at a time: the others then share it
            conns = self._conns.setdefault(key, [])
            for c in list(conns):
                if not c.is_usable:
                    conns.remove(c)
                    if not c.open_streams:
                        c.close()
            for c in conns:
                if c.open_streams < c.h2.remote_settings.max_concurrent_streams:
                    return c
            if key in self._h1_origins:
                return None
            conn = self._connect(key)
            if conn is not None:
                conns.append(conn)
            return conn

    # -- requests -------------------------------------------------------------------------

    def request(self, method: str, url: str, *, headers: Any = None,
                body: bytes | str | Iterable[bytes] | None = None, stream: bool = False,
                timeout: float | None = None) -> ClientResponse | h1client.ClientResponse:
        """Send a request and return its response. A checkpoint.

        ``body``: ``bytes``/``str`` or an iterable of ``bytes`` (streamed, within the
        server's flow-control window). ``stream=False`` reads the body into
        ``content``; ``stream=True`` leaves it to ``response.body`` (close the
        response, a context manager). ``timeout`` bounds the whole call. A cancelled
        request resets its stream; the connection and other requests carry on.
        HTTP/1.1 origins are served by ``self.http1`` (an ``http1.ClientResponse``)."""
        if timeout is not None:
            with greenrt.fail_after(timeout):
                return self._request(method, url, headers, body, stream)
        return self._request(method, url, headers, body, stream)

    def get(self, url: str, **kw: Any) -> ClientResponse | h1client.ClientResponse:
        return self.request("GET", url, **kw)

    def _request(self, method, url, headers, body, stream):
        if self._closed:
            raise base.UsageError("http2: the client is closed")
        scheme, host, port, target, _hh = h1client._split(url)
        key = (scheme, host, port)
        if scheme == "http" and not self.prior_knowledge:
            return self._h1(method, url, headers, body, stream)
        if isinstance(body, str):
            body = body.encode("utf-8")
        replayable = body is None or isinstance(body, (bytes, bytearray, memoryview))
        user = Headers(headers)
        names = {k for k, _ in user._items}
        hdrs = [kv for kv in self.default_headers._items if kv[0] not in names] + user._items
        for attempt in (0, 1):
            conn = self._connection(key)
            if conn is None:
                return self._h1(method, url, headers, body, stream)
            try:
                return self._exchange(conn, method.upper(), target, hdrs, body, url, stream)
            except StreamRefused:
                if attempt or not replayable:
                    raise
                self._stats["retried_refused"] += 1
        raise AssertionError("unreachable")  # pragma: no cover

    def _h1(self, method, url, headers, body, stream):
        self._stats["h1_requests"] += 1
        return self.http1.request(method, url, headers=headers, body=body, stream=stream)

    def _exchange(self, conn: ClientConnection, method: str, target: str, hdrs: list,
                  body: Any, url: str, stream: bool) -> ClientResponse:
        self._stats["h2_requests"] += 1
        no_body = body is None or (isinstance(body, (bytes, bytearray)) and not body)
        if isinstance(body, (bytes, bytearray, memoryview)) and body:
            hdrs = hdrs + [(b"content-length", str(len(body)).encode())]
        s = conn.open_stream(method, target, hdrs, end_stream=no_body)
        try:
            if not no_body:
                if isinstance(body, (bytes, bytearray, memoryview)):
                    s.send_data(bytes(body), end_stream=True)
                else:
                    for chunk in body:
                        if chunk:
                            s.send_data(bytes(chunk))
                    s.end()
            status, headers = s.response_headers()
            resp = ClientResponse(s, status, headers, url, method)
            if not stream:
                resp.read()
            return resp
        except BaseException:
            s.close()
            raise

    def statistics(self) -> dict:
        """``h2_connections`` opened, ``h2_requests``, ``h1_requests``,
        ``retried_refused``, ``alpn_http1`` (origins that chose HTTP/1.1), ``open``
        (HTTP/2 connections per ``scheme://host:port`` with their stream counts) and
        ``http1`` (the HTTP/1.1 client's statistics)."""
        return {**self._stats,
                "open": {f"{k[0]}://{k[1]}:{k[2]}": [c.open_streams for c in v]
                         for k, v in self._conns.items() if v},
                "http1": self.http1.statistics()}

    def close(self) -> None:
        """Close every connection. Not a checkpoint."""
        self._closed = True
        for conns in self._conns.values():
            for c in conns:
                c.close()
        self._conns.clear()
        self.http1.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def request(method: str, url: str, *, headers: Any = None, body: Any = None,
            timeout: float | None = None, tls_context: Any = None,
            prior_knowledge: bool = False,
            limits: H2Limits = DEFAULT_H2_LIMITS) -> ClientResponse | h1client.ClientResponse:
    """One request on a fresh client (HTTP/2 by ALPN over TLS, or prior knowledge),
    the body read into ``content``. A checkpoint. See :meth:`Client.request`."""
    with Client(tls_context=tls_context, limits=limits, prior_knowledge=prior_knowledge) as c:
        return c.request(method, url, headers=headers, body=body, timeout=timeout)
