"""The request/response model shared by every HTTP version greenrt serves.

A *handler* is a plain blocking function ``handler(request) -> Response | None``. It
runs in its own task, under the request's budget, and may block anywhere (every
blocking call is a checkpoint). Nothing here assumes HTTP/1.1: the HTTP/1.1 server
builds these objects from h11 events, an HTTP/2 server builds them from streams.

* :class:`Request` — method, request target, headers, a streaming :class:`Body`
  reader, and connection facts (scheme, client and server addresses,
  ``http_version``). ``request.writer`` is a :class:`ResponseWriter` for handlers
  that want to stream a response as they produce it (WSGI ``write()``, server-sent
  events).
* :class:`Response` — status, headers and a ``bytes`` body; :class:`StreamingResponse`
  takes an iterable of ``bytes`` chunks instead. The server sends each chunk as it is
  produced and blocks while the peer does not read (backpressure), so a generator that
  yields a huge body never holds more than one chunk in memory.
* :class:`Headers` — an ordered multi-map with case-insensitive names, stored as
  ``(lowercase-name, value)`` byte pairs (HTTP/2 requires lowercase names anyway).

Hazards: ``Body.read`` is a checkpoint and may raise ``HTTPError`` subclasses
(``RequestTimeout``, ``PayloadTooLarge``, ``ClientDisconnected``, ``BadRequest``); a
handler that lets them propagate gets the matching error answer. A response header
value containing CR, LF or NUL is refused (``LocalProtocolError``) rather than
allowing response splitting.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterable, Iterator
from typing import Any

from .errors import LocalProtocolError

__all__ = [
    "Body", "EmptyBody", "FORBIDDEN_TRAILERS", "Headers", "Request", "Response",
    "ResponseWriter", "StreamingResponse", "HeaderLike", "split_trailers",
]

HeaderLike = "Headers | Iterable[tuple[str | bytes, str | bytes]] | dict[str, str] | None"

_BAD_NAME_RE = re.compile(rb"[\x00-\x20:\x7f]")
_BAD_VALUE_RE = re.compile(rb"[\r\n\x00]")


def _b(s: str | bytes, what: str) -> bytes:
    if isinstance(s, bytes):
        return s
    if isinstance(s, (bytearray, memoryview)):
        return bytes(s)
    if isinstance(s, str):
        try:
            return s.encode("latin-1")
        except UnicodeEncodeError:
            raise LocalProtocolError(f"header {what} {s!r} is not latin-1") from None
    if isinstance(s, int) and not isinstance(s, bool):
        return str(s).encode("ascii")
    raise TypeError(f"header {what} must be str or bytes, not {type(s).__name__}")


def _checked(name: Any, value: Any) -> tuple[bytes, bytes]:
    """``(lowercase name, value)`` bytes of a field from application code, or
    ``LocalProtocolError`` (a bad name, CR/LF/NUL in the value)."""
    n = _b(name, "name").lower()
    v = _b(value, "value")
    if not n or _BAD_NAME_RE.search(n) is not None:
        raise LocalProtocolError(f"invalid header name {n!r}")
    if _BAD_VALUE_RE.search(v) is not None:
        raise LocalProtocolError(f"header {n!r} value contains CR, LF or NUL")
    return (n, v)


# validated fields by (name, value) as given (str or bytes only: no 1 == True aliasing)
_ADDED: dict[tuple[Any, Any], tuple[bytes, bytes]] = {}


class Headers:
    """Ordered, case-insensitive multi-map of header fields.

    Stored as a list of ``(lowercase name bytes, value bytes)``. Lookups accept ``str``
    or ``bytes`` names; ``get``/``get_all`` return ``str`` (latin-1), ``raw()`` the byte
    pairs. Values are validated against CR/LF/NUL when added from application code.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Any = None):
        self._items: list[tuple[bytes, bytes]] = []
        if items is None:
            return
        if isinstance(items, Headers):
            self._items = list(items._items)
            return
        if isinstance(items, dict):
            items = items.items()
        out = self._items
        get = _ADDED.get
        for name, value in items:
            # add()'s cached case, inlined: a handler sends the same fields again and again
            tn = type(name)
            tv = type(value)
            pair = get((name, value)) if (tn is str or tn is bytes) and (
                tv is str or tv is bytes) else None
            if pair is None:
                self.add(name, value)
            else:
                out.append(pair)

    @classmethod
    def _trusted(cls, items: list[tuple[bytes, bytes]]) -> Headers:
        """Wrap already-validated ``(lowercase name, value)`` pairs (from a parser)."""
        h = cls.__new__(cls)
        h._items = items
        return h

    def add(self, name: str | bytes, value: str | bytes) -> None:
        """Append a field (does not replace existing ones)."""
        tn = type(name)
        tv = type(value)
        if (tn is str or tn is bytes) and (tv is str or tv is bytes):
            # the common case, cached: a handler sends the same fields again and again
            key = (name, value)
            pair = _ADDED.get(key)
            if pair is None:
                pair = _checked(name, value)
                if len(_ADDED) >= 512:
                    _ADDED.clear()
                _ADDED[key] = pair
            self._items.append(pair)
            return
        self._items.append(_checked(name, value))

    def set(self, name: str | bytes, value: str | bytes) -> None:
        """Replace every field named ``name`` with one field."""
        self.remove(name)
        self.add(name, value)

    def remove(self, name: str | bytes) -> None:
        n = _b(name, "name").lower()
        self._items = [(k, v) for k, v in self._items if k != n]

    def get(self, name: str | bytes, default: str | None = None) -> str | None:
        """The first value of ``name`` as ``str``, or ``default``."""
        n = name.lower() if isinstance(name, bytes) else name.lower().encode("latin-1")
        for k, v in self._items:
            if k == n:
                return v.decode("latin-1")
        return default

    def get_all(self, name: str | bytes) -> list[str]:
        n = name.lower() if isinstance(name, bytes) else name.lower().encode("latin-1")
        return [v.decode("latin-1") for k, v in self._items if k == n]

    def raw(self) -> list[tuple[bytes, bytes]]:
        """The fields as ``(lowercase name, value)`` byte pairs (a copy)."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, (str, bytes)):
            return False
        n = name.lower() if isinstance(name, bytes) else name.lower().encode("latin-1")
        return any(k == n for k, _ in self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for k, v in self._items:
            yield k.decode("latin-1"), v.decode("latin-1")

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({[(k.decode('latin-1'), v.decode('latin-1')) for k, v in self._items]!r})"


#: Field names a request's trailer section may not carry (RFC 9110 §6.5.1: fields
#: about framing, routing, request modifiers, authentication, response controls and
#: content format, plus the connection-specific ones). Both HTTP/1.1 and HTTP/2 drop
#: them from ``request.trailers`` (RFC 9112 §7.1.2 allows a recipient to discard
#: trailer fields); they are never merged into the header section.
FORBIDDEN_TRAILERS = frozenset((
    b"content-length", b"transfer-encoding", b"trailer", b"host",
    b"cache-control", b"expect", b"max-forwards", b"pragma", b"range", b"te",
    b"if-match", b"if-none-match", b"if-modified-since", b"if-unmodified-since", b"if-range",
    b"authorization", b"proxy-authorization", b"www-authenticate", b"proxy-authenticate",
    b"authentication-info", b"proxy-authentication-info", b"cookie", b"set-cookie",
    b"age", b"expires", b"date", b"location", b"retry-after", b"vary", b"warning",
    b"content-type", b"content-encoding", b"content-range",
    b"connection", b"keep-alive", b"proxy-connection", b"upgrade", b"http2-settings",
))


def split_trailers(fields: Iterable[tuple[bytes, bytes]]) -> tuple[Headers, list[bytes]]:
    """``(kept, dropped_names)`` for a parsed trailer section: ``fields`` are
    ``(lowercase name, value)`` byte pairs a parser already validated; the ones named
    in :data:`FORBIDDEN_TRAILERS` are dropped (their names returned, for a trace
    event). Not a checkpoint."""
    kept: list[tuple[bytes, bytes]] = []
    dropped: list[bytes] = []
    for k, v in fields:
        k = bytes(k).lower()
        if k in FORBIDDEN_TRAILERS:
            dropped.append(k)
        else:
            kept.append((k, bytes(v)))
    return Headers._trusted(kept), dropped


class Body(abc.ABC):
    """A streaming message body (request body on the server, response body on the
    client). Read it once, in order."""

    @abc.abstractmethod
    def read(self, max_bytes: int = 65536) -> bytes:
        """Return the next up to ``max_bytes`` bytes, ``b""`` at the end of the body.

        A checkpoint. A cancelled ``read`` loses no data (unread bytes stay buffered).
        Raises ``HTTPError`` subclasses on timeouts, limits, malformed framing or a
        peer that went away.
        """

    @property
    @abc.abstractmethod
    def complete(self) -> bool:
        """True once the whole body has been read (``read`` returned ``b""``)."""

    @property
    def content_length(self) -> int | None:
        """The declared length, or ``None`` (chunked / until close)."""
        return None

    @property
    def trailers(self) -> Headers | None:
        """The trailer fields that ended the body (HTTP/1.1 chunked trailer section,
        HTTP/2 trailing HEADERS): ``None`` until the body has been read to its end
        (``complete``), then a :class:`Headers`, empty if the message had none. Not a
        checkpoint, never blocks. Fields listed in :data:`FORBIDDEN_TRAILERS` are
        dropped by the servers."""
        return Headers() if self.complete else None

    def read_all(self, limit: int | None = None) -> bytes:
        """Read the rest of the body into memory. A checkpoint. ``limit`` bounds the
        result (``PayloadTooLarge`` beyond it) on top of the connection's limits."""
        from .errors import PayloadTooLarge

        parts: list[bytes] = []
        n = 0
        while True:
            chunk = self.read(65536)
            if not chunk:
                return b"".join(parts)
            n += len(chunk)
            if limit is not None and n > limit:
                raise PayloadTooLarge(limit="read_all", value=n, maximum=limit)
            parts.append(chunk)

    def __iter__(self) -> Iterator[bytes]:
        while True:
            chunk = self.read(65536)
            if not chunk:
                return
            yield chunk


class EmptyBody(Body):
    """A body with no bytes."""

    def read(self, max_bytes: int = 65536) -> bytes:
        from greenrt import checkpoint

        checkpoint()
        return b""

    @property
    def complete(self) -> bool:
        return True

    @property
    def content_length(self) -> int | None:
        return 0


class ResponseWriter(abc.ABC):
    """Incremental response sending, for handlers that stream as they go.

    ``start`` sends the head, ``write`` body bytes (blocking while the peer does not
    read: backpressure), ``finish`` ends the message. A handler that used the writer
    returns ``None``; the server finishes the message if the handler did not.
    """

    @abc.abstractmethod
    def start(self, status: int, headers: Any = None, *, reason: str | bytes | None = None,
              content_length: int | None = None) -> None:
        """Send the response head. A checkpoint. ``content_length`` (or a
        ``Content-Length`` header) selects fixed-length framing; otherwise chunked
        (or close-delimited for HTTP/1.0 peers)."""

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Send body bytes. A checkpoint; if cancelled after part of the data left, the
        connection is closed after this exchange (it cannot be reused)."""

    @abc.abstractmethod
    def finish(self, trailers: Any = None) -> None:
        """End the response. A checkpoint. Idempotent. ``trailers`` (header fields)
        follow the body: HTTP/2 sends them as a trailing HEADERS frame; HTTP/1.1
        as the chunked trailer section when the response is chunked and the request
        said ``TE: trailers``, else they are dropped (with a trace event)."""

    @property
    @abc.abstractmethod
    def headers_sent(self) -> bool:
        """True once the head has been handed to the transport."""

    @property
    @abc.abstractmethod
    def finished(self) -> bool:
        """True once ``finish`` has completed."""


class Request:
    """One request as the handler sees it.

    ``target`` is the raw request target as sent (``/path?query``, ``*``, an absolute
    URI or an authority), decoded as latin-1; ``path`` and ``query`` split it.
    ``extensions`` carries version-specific extras (``"http1.raw_target"``...).
    ``trailers`` is the body's trailer section once the body has been read (see
    :attr:`Body.trailers`).
    """

    __slots__ = ("method", "target", "headers", "body", "http_version", "scheme", "client",
                 "server", "writer", "extensions", "_upgrade")

    def __init__(self, method: str, target: str, headers: Headers, body: Body, *,
                 http_version: str = "1.1", scheme: str = "http", client: Any = None,
                 server: Any = None, writer: ResponseWriter | None = None,
                 extensions: dict | None = None, upgrade: Any = None):
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.http_version = http_version
        self.scheme = scheme
        self.client = client
        self.server = server
        self.writer = writer
        self.extensions = extensions if extensions is not None else {}
        self._upgrade = upgrade

    @property
    def can_upgrade(self) -> bool:
        """True if :meth:`upgrade` may be called: an HTTP/1.1 request carrying an
        ``Upgrade`` header, no response started."""
        return self._upgrade is not None and "upgrade" in self.headers

    def upgrade(self, headers: Any = ()) -> tuple[Any, bytes]:
        """Take the connection over (RFC 9110 §7.8): answer ``101 Switching
        Protocols`` with ``headers`` and return ``(stream, leftover)`` — the raw
        stream and the bytes the server had already read past the request head, which
        are the first bytes of the new protocol.

        A checkpoint (it writes the 101, and waits for the server's reader to stop).
        From then on the connection is the handler's: the HTTP machine is done with
        it (no request budget, no keep-alive), the handler returns ``None`` when the
        new protocol ends, and the server closes the stream after that. Raises
        ``LocalProtocolError`` if the request cannot be upgraded (HTTP/2, no
        ``Upgrade`` header, a request body, a response already started). If
        cancelled before the 101 is written nothing changed; after, the connection
        is closed.
        """
        if self._upgrade is None:
            raise LocalProtocolError("this connection cannot be upgraded "
                                     f"(HTTP/{self.http_version}: only HTTP/1.1 has Upgrade)")
        if "upgrade" not in self.headers:
            raise LocalProtocolError("the request has no Upgrade header")
        taken = self._upgrade(headers)
        self.extensions["upgraded"] = True
        return taken

    @property
    def trailers(self) -> Headers | None:
        """The request's trailer fields: ``None`` while the body is not read to its end
        (``body.complete`` false), then a :class:`Headers` (empty if the request had
        no trailers). Not a checkpoint: read the body first (``body.read`` until
        ``b""``, ``read_all``). Forbidden fields (:data:`FORBIDDEN_TRAILERS`) are
        dropped."""
        return self.body.trailers

    @property
    def path(self) -> str:
        t = self.target
        i = t.find("?")
        return t if i < 0 else t[:i]

    @property
    def query(self) -> str:
        t = self.target
        i = t.find("?")
        return "" if i < 0 else t[i + 1:]

    @property
    def host(self) -> str | None:
        """The authority the request is addressed to: the authority of an absolute-form
        target (``GET http://a.example/x``), which wins over the Host field (RFC 9112
        §3.2.2), else the Host field; ``None`` without either."""
        t = self.target
        if not t.startswith("/") and "://" in t:
            rest = t.split("://", 1)[1]
            return rest.split("/", 1)[0].split("?", 1)[0]
        return self.headers.get("host")

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target} HTTP/{self.http_version}>"


class Response:
    """A complete response: ``status``, ``headers`` and a ``bytes`` body.

    ``Content-Length`` is added by the server when absent. ``reason`` overrides the
    reason phrase (HTTP/1 only).
    """

    __slots__ = ("status", "headers", "body", "reason")

    def __init__(self, status: int = 200, headers: Any = None, body: bytes | str = b"", *,
                 reason: str | bytes | None = None):
        if type(status) is not int and not isinstance(status, int) or not 100 <= status <= 999:
            raise LocalProtocolError(f"invalid status {status!r}")
        self.status = status
        self.headers = headers if type(headers) is Headers else Headers(headers)
        if type(body) is not bytes:
            if isinstance(body, str):
                body = body.encode("utf-8")
            elif not isinstance(body, bytes):
                body = bytes(body)
        self.body = body
        self.reason = reason

    @property
    def streaming(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)} bytes>"


class StreamingResponse(Response):
    """A response whose body is produced by an iterable of ``bytes`` chunks.

    Without a ``Content-Length`` header the body is sent chunked (HTTP/1.1) or
    close-delimited (HTTP/1.0). The iterable is consumed in the handler's task, one
    chunk at a time, each sent before the next is requested (backpressure); if it has
    a ``close()`` method, that is called when sending ends, also on error or
    cancellation.
    """

    __slots__ = ("chunks",)

    def __init__(self, status: int = 200, headers: Any = None,
                 chunks: Iterable[bytes] = (), *, reason: str | bytes | None = None):
        super().__init__(status, headers, b"", reason=reason)
        self.chunks = chunks

    @property
    def streaming(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"<StreamingResponse {self.status}>"
