"""The HTTP/1.1 client: ``request(method, url)`` and a pooling :class:`Client`.

Every call is blocking-style and a checkpoint; the caller's budget bounds it (a
deadline or cancellation of the calling scope interrupts connect, send and receive),
and ``timeout=`` adds a deadline of its own (``TooSlowError``).

Connections live in a per-(scheme, host, port) pool. The invariant that matters:
**a connection goes back to the pool only after a response was read completely and
both sides agree to keep it alive** (h11 ``DONE``/``DONE``). Anything else (an
error, a cancellation at any checkpoint, a response body the caller did not finish,
a ``send_all`` interrupted half-way, which breaks the stream) closes the connection,
so the next request never inherits a half-read response or a desynchronised stream.
And nothing may be unread: a connection whose parser still holds bytes past the
response, or whose socket has bytes (or EOF) waiting — a response too many from a
faulty or hostile server — is closed instead, at check-in and again at checkout
(bytes may arrive while it sits idle); ``statistics()["discard_reasons"]`` counts why.
A connection taken from the pool that turns out to have been closed by the server
before answering is retried once on a fresh connection if the request is idempotent
and its body can be replayed.

Responses are parsed by the same hardened sans-IO layer as requests on the server
(``H1Connection``, client role): head and body limits, CL/TE conflicts, duplicate
Content-Length and unsupported transfer codings are errors, never guesses.

TLS goes through ``protocols.tls`` with chain and host-name verification (the
default context trusts the system store; pass ``tls_context`` for a private CA).

Redirects (301, 302, 303, 307, 308) are followed up to ``max_redirects``
(``TooManyRedirects`` beyond); 303 (and 301/302 for non-GET/HEAD) become GET without
a body, 307/308 repeat the method and body (only a replayable body); the
``Authorization`` and ``Cookie`` headers are dropped when the origin changes.

``Expect: 100-continue`` (RFC 9110 §10.1.1) is opt-in: per request
(``expect_continue=True``) or as a client default for bodies of at least
``expect_continue_threshold`` bytes (streamed bodies of unknown size count as large;
:data:`EXPECT_CONTINUE_THRESHOLD` is curl's 1 MiB). The head goes out alone; the body
follows a ``100 Continue``, or the expiry of ``expect_timeout`` (a server that ignores
the expectation must not stall the upload). A final response that arrives first is
returned without sending the body, and the connection is then closed (the request
was never completed, so the stream cannot carry another exchange).

Per host, at most ``max_connections_per_host`` connections exist at a time (idle
and in use together). The bound is a ``CapacityLimiter`` per host whose tokens are
held by the requests that use a connection (from checkout until the response is
released); an idle connection holds no token. A connection is opened only by a token
holder that found no idle one, so open connections never exceed the bound. A request
beyond it waits, FIFO, for a token: a checkpoint, bounded by the caller's deadline;
a cancelled waiter takes no token and leaves the queue order of the others intact.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable
from typing import Any

import h11

import greenrt
from greenrt import net
from greenrt.protocols.base.connect import connect
from greenrt.protocols.base.pool import Pool, unread_reason

from ..http.errors import (
    ClientDisconnected,
    InvalidURL,
    LocalProtocolError,
    ProtocolError,
    RequestTimeout,
    TooManyRedirects,
    UnsupportedScheme,
)
from ..http.limits import DEFAULT_LIMITS, Limits
from ..http.model import Headers
from ._body import PulledBody
from ._connection import CLIENT, NEED_DATA, H1Connection

__all__ = ["EXPECT_CONTINUE_THRESHOLD", "Client", "ClientResponse", "request"]

EXPECT_CONTINUE_THRESHOLD = 1 << 20
"""curl's threshold: bodies from 1 MiB on are sent with ``Expect: 100-continue``."""

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_USER_AGENT = b"greenrt-http1/0.1"
_DISCARD_LIMIT = 64 * 1024  # redirect bodies up to this size are drained for reuse


class _Conn:
    """A pooled connection: a stream and its sans-IO state."""

    __slots__ = ("stream", "p", "key", "reused", "lease", "heard", "ready")

    def __init__(self, stream, key, limits: Limits):
        self.stream = stream
        self.key = key
        self.p = H1Connection(CLIENT, limits)
        self.reused = 0
        self.lease: Any = None  # the floor pool's Lease while in use
        self.heard = False  # any byte of the current response received yet
        self.ready = False  # between exchanges, its next cycle started: may go idle

    # -- what protocols.base.pool asks of a pooled connection --

    def reusable(self) -> bool:
        return self.ready and not self.stream.broken and not self.stream.closed

    def unread(self) -> str | None:
        return unread_reason(self.p.buffered, self.stream)

    def close(self) -> None:
        self.stream.close()


class _ResponseBody(PulledBody):
    """The response body, read straight from the connection."""

    __slots__ = ("_resp",)

    def __init__(self, resp: ClientResponse, length: int | None, empty: bool):
        PulledBody.__init__(self, length, empty)
        self._resp = resp

    def read(self, max_bytes: int = 65536) -> bytes:
        """Next body bytes, ``b""`` at the end (the connection then goes back to the
        pool). A checkpoint. A cancelled or failed read closes the connection."""
        if max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        greenrt.checkpoint_if_cancelled()
        if self._pending:
            return self._take_pending(max_bytes)
        if self._done:
            return b""
        resp = self._resp
        conn = resp._conn
        if conn is None:
            raise ClientDisconnected("response was closed before its body was read",
                                     code="closed")
        try:
            while True:
                ev = conn.p.next_event()
                t = type(ev)
                if t is h11.Data:
                    return self._split(bytes(ev.data), max_bytes)
                if t is h11.EndOfMessage:
                    if ev.headers:  # a chunked response's trailer section: body.trailers
                        self._trailers = Headers._trusted(list(ev.headers))
                    self._done = True
                    resp._finished()
                    return b""
                if ev is NEED_DATA:
                    conn.p.receive_data(_recv_within(conn, resp._client.limits.body_idle_timeout,
                                                     "response body"))
                    continue
                raise ProtocolError(f"unexpected {t.__name__} in a response body",
                                    code="bad_body")
        except BaseException:
            resp._abandon()
            raise


class ClientResponse:
    """A response: ``status``, ``reason``, ``headers``, ``http_version``, ``url`` and
    a streaming ``body``. ``read()`` returns the whole body (cached in ``content``);
    ``close()`` releases the connection (back to the pool only if the body was read
    to the end). Use as a context manager with ``stream=True``."""

    def __init__(self, client: Client, conn: _Conn, ev, url: str, method: str):
        self._client = client
        self._conn: _Conn | None = conn
        self.status: int = ev.status_code
        self.reason: str = ev.reason.decode("latin-1")
        self.http_version: str = ev.http_version.decode("ascii")
        self.headers = Headers._trusted(list(ev.headers))
        self.url = url
        self.method = method
        self.history: list[ClientResponse] = []
        self.content: bytes | None = None
        p = conn.p
        empty = p.body_framing == "none" or p.body_length == 0
        self.body = _ResponseBody(self, p.body_length, empty)
        if empty:
            try:
                ev2 = p.next_event()
                if type(ev2) is not h11.EndOfMessage:  # pragma: no cover - h11 guarantees it
                    raise ProtocolError("expected the end of an empty body", code="bad_body")
                self._finished()
            except BaseException:
                self._abandon()
                raise

    def read(self) -> bytes:
        """The whole body (at most the client's ``max_body_bytes``). A checkpoint."""
        if self.content is None:
            self.content = self.body.read_all()
        return self.content

    @property
    def text(self) -> str:
        return self.read().decode("utf-8", "replace")

    def close(self) -> None:
        """Release the connection: to the pool if the body was fully read, else close
        it. Not a checkpoint; idempotent."""
        if self._conn is not None:
            if self.body.complete:
                self._finished()
            else:
                self._abandon()

    def _finished(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._client._release(conn)

    def _abandon(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._client._discard(conn)

    @property
    def connection_released(self) -> bool:
        return self._conn is None

    def __enter__(self) -> ClientResponse:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ClientResponse {self.status} {self.url}>"


_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: characters left as they are when percent-encoding a path or a query (RFC 3986
#: pchar plus "/" and, for the query, "?"); "%" stays so an encoded URL is not re-encoded
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"


def _split(url: str):
    """``(scheme, host, port, target, host_header)`` of ``url``; ``InvalidURL`` /
    ``UnsupportedScheme`` for what cannot be requested. Unlike ``urlsplit``, which
    silently deletes CR, LF and TAB, those (and other controls and spaces) are refused;
    non-ASCII in the path or query is percent-encoded (UTF-8), and a non-ASCII host
    is IDNA-encoded."""
    if not isinstance(url, str):
        raise InvalidURL(f"URL must be a str, not {type(url).__name__}")
    m = _URL_FORBIDDEN.search(url)
    if m is not None:
        raise InvalidURL(f"URL contains {m.group()!r}, which would change the request: {url!r}")
    u = urllib.parse.urlsplit(url)
    scheme = u.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsupportedScheme(f"unsupported URL scheme {u.scheme!r} in {url!r} (http, https)")
    host = u.hostname
    if not host:
        raise InvalidURL(f"no host in URL {url!r}")
    try:
        port = u.port or (443 if scheme == "https" else 80)
    except ValueError as e:
        raise InvalidURL(f"invalid port in URL {url!r}: {e}") from None
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidURL(f"host {u.hostname!r} is not a valid international domain name") from None
    target = urllib.parse.quote(u.path, safe=_PATH_SAFE) or "/"
    if u.query:
        target += "?" + urllib.parse.quote(u.query, safe=_QUERY_SAFE)
    hh = f"[{host}]" if ":" in host else host
    default = (scheme == "http" and port == 80) or (scheme == "https" and port == 443)
    host_header = hh if default else f"{hh}:{port}"
    return scheme, host, port, target, host_header


def _replayable(body) -> bool:
    return body is None or isinstance(body, (bytes, bytearray, memoryview, str))


class Client:
    """An HTTP/1.1 client with a per-host connection pool.

    ``limits`` bounds responses (head, fields, body); ``tls_context`` is a
    ``protocols.tls`` client context (default: system trust, host-name checked);
    ``max_connections_per_host`` bounds the connections (idle and in use) per
    ``(scheme, host, port)``: a request beyond it waits, FIFO, for one to come back
    or close; ``max_idle_per_host`` bounds the idle ones kept; ``pool_idle_timeout``
    drops connections idle longer than that; ``connect_timeout`` bounds connect +
    TLS handshake. ``expect_continue_threshold`` (``None``: off) sends bodies of at
    least that many bytes (and streamed ones) with ``Expect: 100-continue``;
    ``expect_timeout`` is how long to wait for ``100 Continue`` before sending the
    body anyway.

    A streamed response (``stream=True``) holds its host's token until it is closed
    or read to the end: a task that keeps ``max_connections_per_host`` of them open
    and asks for another waits until its deadline.
    """

    def __init__(self, *, limits: Limits = DEFAULT_LIMITS, tls_context: Any = None,
                 max_connections_per_host: int = 10,
                 max_idle_per_host: int = 10, pool_idle_timeout: float = 5.0,
                 connect_timeout: float | None = 30.0, max_redirects: int = 10,
                 headers: Any = None, expect_continue_threshold: int | None = None,
                 expect_timeout: float = 1.0):
        if not isinstance(max_connections_per_host, int) or max_connections_per_host < 1:
            raise ValueError("max_connections_per_host must be an int >= 1, not "
                             f"{max_connections_per_host!r}")
        if expect_continue_threshold is not None and expect_continue_threshold < 0:
            raise ValueError("expect_continue_threshold must be >= 0 or None")
        if not expect_timeout > 0:
            raise ValueError("expect_timeout must be > 0")
        self.max_connections_per_host = max_connections_per_host
        self.expect_continue_threshold = expect_continue_threshold
        self.expect_timeout = expect_timeout
        self.limits = limits
        self.tls_context = tls_context
        self.max_idle_per_host = max_idle_per_host
        self.pool_idle_timeout = pool_idle_timeout
        self.connect_timeout = connect_timeout
        self.max_redirects = max_redirects
        self.default_headers = Headers(headers)
        #: the floor's pool, keyed by origin ``(scheme, host, port)``
        self.pool: Pool[_Conn] = Pool(self._open, name="http1",
                                      max_per_key=max_connections_per_host,
                                      max_idle_per_key=max_idle_per_host,
                                      max_idle_time=pool_idle_timeout)
        self._closed = False
        self._stats = {"released": 0, "retried": 0, "continue_received": 0,
                       "continue_timeouts": 0, "body_withheld": 0}

    # -- pool ---------------------------------------------------------------------------

    def statistics(self) -> dict:
        """The pool's counters under the client's names (``connections_opened``,
        ``reused``, ``discarded``, ``pool_waits``, ``discard_reasons``: why connections
        were not reused — ``decoder_buffered``/``socket_readable`` at check-in,
        ``idle_unread`` at checkout, ``state_unknown``...), the client's own
        (``released``, ``retried``, ``continue_*``, ``body_withheld``), plus per
        ``scheme://host:port``: ``idle`` connections, ``in_use`` (held by a request or
        a response) and ``waiting`` (requests waiting for a connection); the floor's
        schema itself is ``client.pool.statistics()``."""
        ps = self.pool.statistics()
        per = self.pool.key_statistics()

        def name(k):
            return f"{k[0]}://{k[1]}:{k[2]}"
        return {"connections_opened": ps["opened"], "reused": ps["reused"],
                "discarded": ps["discarded"], "pool_waits": ps["waits"], **self._stats,
                "discard_reasons": ps["discard_reasons"],
                "idle": {name(k): v["idle"] for k, v in per.items() if v["idle"]},
                "in_use": {name(k): v["in_use"] for k, v in per.items() if v["in_use"]},
                "waiting": {name(k): v["waiting"] for k, v in per.items() if v["waiting"]}}

    def idle_connections(self, scheme: str, host: str, port: int) -> int:
        return len(self.pool.idle_connections((scheme, host, port)))

    def _release(self, conn: _Conn) -> None:
        """The response is done with ``conn``: back to the pool if its exchange ended
        cleanly and nothing is unread (the pool checks both), else closed."""
        lease, conn.lease = conn.lease, None
        if lease is None:
            return
        if not self._closed and conn.p.reusable:
            conn.p.start_next_cycle()
            conn.ready = True
            self._stats["released"] += 1
        lease.release()

    def _discard(self, conn: _Conn, reason: str = "not_reusable") -> None:
        lease, conn.lease = conn.lease, None
        if lease is not None:
            lease.discard(reason)
        else:
            conn.close()

    def _open(self, key) -> _Conn:
        """The pool's opener: TCP (+ TLS with SNI and host-name check for https)
        through the floor's ``connect``, under ``connect_timeout``. A checkpoint."""
        scheme, host, port = key
        tls_arg = None
        if scheme == "https":
            tls_arg = self.tls_context
            if tls_arg is None:
                tls_arg = True  # the shared default client context
        stream = connect(host, port, tls=tls_arg, server_hostname=host,
                         timeout=self.connect_timeout or None).stream
        return _Conn(stream, key, self.limits)

    def _checkout(self, key) -> _Conn:
        """A connection for ``key`` from the pool (a checkpoint: may wait, FIFO, while
        ``max_connections_per_host`` are in use, and may connect), leased to the
        caller; ``conn.lease.reused`` says whether it came from the idle list."""
        lease = self.pool.acquire(key, _stacklevel=3)
        conn = lease.conn
        conn.lease = lease
        conn.ready = False
        if lease.reused:
            conn.reused += 1
        return conn

    def close(self) -> None:
        """Close every pooled connection. Not a checkpoint."""
        self._closed = True
        self.pool.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- requests -----------------------------------------------------------------------

    def request(self, method: str, url: str, *, headers: Any = None,
                body: bytes | str | Iterable[bytes] | None = None, stream: bool = False,
                follow_redirects: bool = True, timeout: float | None = None,
                expect_continue: bool | None = None) -> ClientResponse:
        """Send a request and return the response. A checkpoint.

        ``body``: ``bytes``/``str`` (sent with Content-Length), an iterable of
        ``bytes`` or a file-like object (sent chunked, a chunk at a time). With
        ``stream=False`` (default) the body is read completely into
        ``response.content`` and the connection released; with ``stream=True`` read
        ``response.body`` and ``close()`` the response (a context manager).
        ``timeout`` bounds the whole call (``TooSlowError``); the caller's own
        deadline and cancellation always apply. A cancelled or failed request never
        leaves its connection in the pool.

        ``expect_continue``: ``True`` sends a body with ``Expect: 100-continue``,
        ``False`` never, ``None`` (default) per the client's
        ``expect_continue_threshold`` or a caller's own ``Expect: 100-continue``
        header (the header is only ever sent by the code that waits for the 100). A final response that arrives before
        ``100 Continue`` is returned and the body is not sent (nor consumed, for an
        iterable). Blocking parts, all checkpoints: waiting for a pool token
        (cancelled: no token taken), connecting, sending, waiting for ``100
        Continue`` (cancelled: the connection is closed), reading the response.
        """
        if timeout is not None:
            with greenrt.fail_after(timeout):
                return self._request(method, url, headers, body, stream, follow_redirects,
                                     expect_continue)
        return self._request(method, url, headers, body, stream, follow_redirects,
                             expect_continue)

    def get(self, url: str, **kw) -> ClientResponse:
        return self.request("GET", url, **kw)

    def _request(self, method, url, headers, body, stream, follow_redirects,
                 expect_continue=None) -> ClientResponse:
        if not isinstance(method, str) or not _TOKEN_RE.fullmatch(method):
            raise LocalProtocolError(f"invalid HTTP method {method!r} (a token: letters, digits, "
                                     "and !#$%&'*+-.^_`|~)")
        method = method.upper()
        user = Headers(headers)
        names = {k for k, _ in user._items}
        hdrs = Headers._trusted([kv for kv in self.default_headers._items if kv[0] not in names]
                                + user._items)
        history: list[ClientResponse] = []
        origin = _split(url)[:3]
        while True:
            resp = self._send_once(method, url, hdrs, body, expect_continue)
            if not (follow_redirects and resp.status in _REDIRECTS
                    and resp.headers.get("location")):
                break
            if len(history) >= self.max_redirects:
                resp.close()
                raise TooManyRedirects(f"more than {self.max_redirects} redirects")
            self._drain_small(resp)
            history.append(resp)
            url = urllib.parse.urljoin(url, resp.headers.get("location"))
            if resp.status == 303 or (resp.status in (301, 302) and method not in ("GET", "HEAD")):
                method = "GET" if method != "HEAD" else "HEAD"
                body = None
                hdrs.remove("content-length")
                hdrs.remove("transfer-encoding")
                hdrs.remove("content-type")
            elif not _replayable(body):
                raise LocalProtocolError(f"cannot repeat a streamed body for a {resp.status} "
                                         "redirect")
            if _split(url)[:3] != origin:
                hdrs.remove("authorization")
                hdrs.remove("cookie")
        resp.history = history
        if not stream:
            try:
                resp.read()
            finally:
                resp.close()
        return resp

    def _drain_small(self, resp: ClientResponse) -> None:
        n = resp.body.content_length
        if n is not None and n <= _DISCARD_LIMIT:
            resp.body.read_all()
        resp.close()

    def _send_once(self, method: str, url: str, hdrs: Headers, body,
                   expect_continue: bool | None = None) -> ClientResponse:
        scheme, host, port, target, host_header = _split(url)
        key = (scheme, host, port)
        items = [(b"host", host_header.encode("idna" if not host_header.isascii() else "ascii"))]
        items += [kv for kv in hdrs._items if kv[0] != b"host"]
        if not any(k == b"user-agent" for k, _ in items):
            items.append((b"user-agent", _USER_AGENT))
        if isinstance(body, str):
            body = body.encode("utf-8")
        if isinstance(body, (bytearray, memoryview)):
            body = bytes(body)
        has_len = any(k == b"content-length" for k, _ in items)
        chunked = False
        if body is None:
            if method in ("POST", "PUT", "PATCH") and not has_len:
                items.append((b"content-length", b"0"))
        elif isinstance(body, bytes):
            if not has_len:
                items.append((b"content-length", b"%d" % len(body)))
        else:
            if not has_len:
                items.append((b"transfer-encoding", b"chunked"))
            chunked = True
        expect = False
        if body is not None:
            if expect_continue is None:
                th = self.expect_continue_threshold
                expect = (th is not None and (chunked or len(body) >= th)) or any(
                    k == b"expect" and v.lower() == b"100-continue" for k, v in items)
            else:
                expect = bool(expect_continue)
        # the header and the waiting go together: a caller's own Expect is honoured
        # (or dropped with expect_continue=False), never sent without waiting
        items = [kv for kv in items if kv[0] != b"expect"]
        if expect:
            items.append((b"expect", b"100-continue"))
        req = h11.Request(method=method, target=target, headers=items)
        retry_ok = method in _IDEMPOTENT and not chunked
        while True:
            conn = self._checkout(key)  # a checkpoint; from here the lease must go back
            reused = conn.lease.reused
            try:
                ev = self._exchange(conn, req, body, chunked, expect)
            except (ClientDisconnected, net.BrokenStreamError, net.ClosedResourceError) as e:
                self._discard(conn, "broken")
                if reused and retry_ok and getattr(e, "_before_response", False):
                    # an idle connection the server had closed: retry (on the next
                    # idle one or a fresh one; each stale one is discarded, so this ends)
                    self._stats["retried"] += 1
                    continue
                raise
            except BaseException:
                self._discard(conn, "state_unknown")
                raise
            break
        return ClientResponse(self, conn, ev, url, method)

    def _exchange(self, conn: _Conn, req, body, chunked: bool, expect: bool = False):
        """Send the request and read the response head. A checkpoint.

        With ``expect`` the head goes out alone and the body only after ``100
        Continue`` or ``expect_timeout``; a final response that comes first is
        returned with the body unsent (the sans-IO state then is not reusable, so
        the connection is closed when the response is released)."""
        p = conn.p
        stream = conn.stream
        send_error: BaseException | None = None
        conn.heard = False
        try:
            head = p.send(req)
            if expect:
                stream.send_all(head)
                head = b""
                early = self._await_continue(conn)
                if early is not None:
                    self._stats["body_withheld"] += 1
                    return early
            if body is None:
                stream.send_all(head + p.send(h11.EndOfMessage()))
            elif not chunked:
                stream.send_all(head + p.send(h11.Data(data=body)) + p.send(h11.EndOfMessage()))
            else:
                stream.send_all(head)
                for chunk in _iter_body(body):
                    if chunk:
                        stream.send_all(p.send(h11.Data(data=chunk)))
                stream.send_all(p.send(h11.EndOfMessage()))
        except (net.BrokenStreamError, OSError) as e:
            if isinstance(e, net.ClosedResourceError) or stream.closed:
                raise
            send_error = e  # the server may have answered early (413...): try to read it
        # the final head must come within header_timeout (interim responses included),
        # and after at most max_informational_responses interim ones
        lim = self.limits
        interim = 0
        with _within(lim.header_timeout, "response head"):
            while True:
                ev = _head_event(conn, send_error)
                if type(ev) is h11.Response:
                    return ev
                interim += 1
                if interim > lim.max_informational_responses:
                    raise ProtocolError(
                        f"more than {lim.max_informational_responses} interim (1xx) responses",
                        code="too_many_informational")

    def _await_continue(self, conn: _Conn):
        """Wait up to ``expect_timeout`` for ``100 Continue``: ``None`` to send the
        body (100 came, or the time ran out), or a final ``h11.Response`` that came
        first. A checkpoint; the timeout interrupts only the wait for bytes, so
        nothing received is lost (the response, if any, is read afterwards)."""
        with greenrt.move_on_after(self.expect_timeout):
            while True:
                ev = _head_event(conn, None)
                if type(ev) is h11.Response:
                    return ev
                if ev.status_code == 100:
                    self._stats["continue_received"] += 1
                    return None
        self._stats["continue_timeouts"] += 1
        return None


def _head_event(conn: _Conn, send_error: BaseException | None):
    """The next ``Response`` or ``InformationalResponse`` on ``conn``, receiving as
    needed. A checkpoint (a cancelled recv loses no data). Errors carry
    ``_before_response`` (nothing at all was received: a stale pooled connection)."""
    p = conn.p
    stream = conn.stream
    while True:
        got_any = conn.heard
        try:
            ev = p.next_event()
        except ClientDisconnected as e:
            e._before_response = not got_any
            raise
        except ProtocolError as e:
            if not got_any and e.code == "incomplete_head":
                err = ClientDisconnected("connection closed before the response",
                                         code="closed_before_response")
                err._before_response = True
                raise err from None
            raise
        t = type(ev)
        if t is h11.Response or t is h11.InformationalResponse:
            conn.heard = True
            return ev
        if t is h11.ConnectionClosed:
            if send_error is not None:
                send_error._before_response = not got_any
                raise send_error
            err = ClientDisconnected("connection closed before the response",
                                     code="closed_before_response")
            err._before_response = not got_any
            raise err
        if ev is NEED_DATA:
            try:
                data = stream.recv(65536)
            except net.BrokenStreamError as e:
                if send_error is not None:
                    send_error._before_response = not got_any
                    raise send_error from e
                e._before_response = not got_any
                raise
            if data:
                conn.heard = True
            p.receive_data(data)
            continue
        raise ProtocolError(f"unexpected {t.__name__} before the response", code="bad_head")


class _within:
    """A deadline for one phase of a response; its expiry raises ``RequestTimeout``
    (the connection is then discarded by the caller's error path)."""

    __slots__ = ("seconds", "what", "_scope")

    def __init__(self, seconds: float | None, what: str):
        self.seconds = seconds
        self.what = what
        self._scope = None

    def __enter__(self):
        if self.seconds is not None:
            self._scope = greenrt.move_on_after(self.seconds)
            self._scope.__enter__()
        return self

    def __exit__(self, et, ev, tb):
        sc = self._scope
        if sc is None:
            return False
        swallowed = sc.__exit__(et, ev, tb)
        if sc.cancelled_caught:
            raise RequestTimeout(f"no {self.what} within {self.seconds} s",
                                 code="response_timeout")
        return swallowed


def _recv_within(conn: _Conn, seconds: float | None, what: str) -> bytes:
    with _within(seconds, what):
        return conn.stream.recv(65536)


def _iter_body(body):
    read = getattr(body, "read", None)
    if read is not None:
        while True:
            chunk = read(65536)
            if not chunk:
                return
            yield chunk if isinstance(chunk, bytes) else bytes(chunk)
    else:
        for chunk in body:
            yield chunk if isinstance(chunk, bytes) else bytes(chunk)


def request(method: str, url: str, *, headers: Any = None, body=None,
            timeout: float | None = None, follow_redirects: bool = True,
            limits: Limits = DEFAULT_LIMITS, tls_context: Any = None,
            expect_continue: bool | None = None) -> ClientResponse:
    """One request on a fresh connection; the body is read into ``content``. A
    checkpoint (a cancellation closes the connection). See :meth:`Client.request`."""
    with Client(limits=limits, tls_context=tls_context) as c:
        return c.request(method, url, headers=headers, body=body, timeout=timeout,
                         follow_redirects=follow_redirects, expect_continue=expect_continue)

