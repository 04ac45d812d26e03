"""The server's own response writer (sans-IO, no greenrt): response heads, body
framing (Content-Length, chunked, or close-delimited for HTTP/1.0) and the ``Date``
field, written without h11's per-event machinery.

A mixin of ``H1Connection`` (``own_send=True``, what the server uses): it shares the
connection's request facts (``_rmethod``, ``_rversion``, ``_rkeep``) and keeps its own
output state (``_ostate``: idle → body → done, or error; ``_oframing``, ``_oleft``,
``_okeep``). Validated header lines and reasons are cached (bounded), and the ``Date``
line is formatted once per second.
"""

from __future__ import annotations

import h11

from ..http._date import _date, date_line
from ..http.errors import LocalProtocolError

__all__ = ["ResponseWriterMixin", "date_line"]

# own response writer: states and framings
_O_IDLE, _O_BODY, _O_DONE, _O_ERROR = range(4)
_F_LENGTH, _F_CHUNKED, _F_CLOSE = range(3)
_CACHE_MAX = 512  # validated header lines / reasons kept (cleared when full)
_line_cache: dict[tuple[bytes, bytes], bytes] = {}
#: the common response's header section by its fields (a tuple of the pairs): the
#: validated lines joined, or ``None`` when a field needs the general path (framing,
#: Connection or Date fields)
_fields_cache: dict[tuple, bytes | None] = {}
_SPECIAL = frozenset((b"content-length", b"transfer-encoding", b"connection", b"date"))
#: take the one-format path for the common response (a test turns it off to compare)
_FAST_HEAD = True
_reason_cache: dict[bytes, bool] = {}


def _header_line(name: bytes, value: bytes) -> bytes:
    """``name: value\r\n`` after h11's own validation of the field (cached)."""
    key = (name, value)
    line = _line_cache.get(key)
    if line is None:
        try:
            h11.Response(status_code=200, headers=[key])  # h11's grammar, exactly
        except h11.LocalProtocolError as e:
            raise LocalProtocolError(str(e)) from None
        line = name + b": " + value + b"\r\n"
        if len(_line_cache) >= _CACHE_MAX:
            _line_cache.clear()
        _line_cache[key] = line
    return line


def _fields_of(key: tuple) -> bytes | None:
    """The header lines of ``key`` (``(name, value)`` pairs) for ``_fields_cache``:
    validated as ``_header_line`` does, or ``None`` if one is a framing, Connection
    or Date field. Raises ``LocalProtocolError`` for an invalid field (not cached)."""
    out = None
    if not any(kv[0] in _SPECIAL for kv in key):
        out = b"".join([_header_line(kv[0], kv[1]) for kv in key])
    if len(_fields_cache) >= _CACHE_MAX:
        _fields_cache.clear()
    _fields_cache[key] = out
    return out


def _check_reason(reason: bytes) -> None:
    if reason not in _reason_cache:
        try:
            h11.Response(status_code=200, headers=[], reason=reason)
        except h11.LocalProtocolError as e:
            raise LocalProtocolError(str(e)) from None
        if len(_reason_cache) >= _CACHE_MAX:
            _reason_cache.clear()
        _reason_cache[reason] = True


def _comma_values(values: list[bytes]) -> list[bytes]:
    """h11's ``get_comma_header`` on raw values: lowercased, split, stripped."""
    return [v for raw in values for v in (x.strip() for x in raw.lower().split(b",")) if v]


class ResponseWriterMixin:
    """The response-writing half of ``H1Connection`` (see the module docstring)."""

    __slots__ = ()


    def response_head(self, status: int, headers: list[tuple[bytes, bytes]],
                      reason: bytes = b"", content_length: int | None = None, *,
                      replace_length: bool = True) -> bytes:
        """The bytes of a final response head (``headers``: ``(name, value)`` byte
        pairs, names lowercase), with h11's validation and framing rules, a ``Date``
        field unless given, and ``Connection: close`` if the connection will not be
        reused. ``content_length`` replaces any Content-Length field in ``headers``
        (or, with ``replace_length=False``, is used only if there is none). Raises
        ``LocalProtocolError`` (our state becomes broken)."""
        if self._ostate != _O_IDLE:
            raise LocalProtocolError("response head already sent" if self._ostate != _O_ERROR
                                     else "connection is broken (a send failed)")
        try:
            return self._response_head(status, headers, reason, content_length, replace_length)
        except LocalProtocolError:
            self._ostate = _O_ERROR
            raise

    def _response_head(self, status: int, headers, reason: bytes, length: int | None,
                       replace_length: bool) -> bytes:
        if (length is not None and _FAST_HEAD and type(status) is int and 200 <= status < 1000
                and status != 204 and status != 304 and self._rversion == b"1.1"
                and self._rkeep and not self.close_after_cycle
                and self.messages_received < self.limits.max_requests_per_connection
                and self._rmethod != b"HEAD" and self._rmethod != b"CONNECT"
                and self.wall_clock is not None):
            # the common response: keep-alive HTTP/1.1, a known length, fields that
            # need no framing decision; the general path below gives the same bytes
            key = tuple(headers)
            try:
                fields = _fields_cache.get(key, False)
            except TypeError:  # unhashable pairs (lists): the general path
                fields = None
            if fields is False:
                fields = _fields_of(key)
            if fields is not None:
                if reason and reason not in _reason_cache:
                    _check_reason(reason)
                wall = int(self.wall_clock())
                self._r100 = False
                self._okeep = True
                self._oframing = _F_LENGTH
                self._oleft = length
                self._ostate = _O_BODY
                return b"HTTP/1.1 %d %s\r\n%s%scontent-length: %d\r\n\r\n" % (
                    status, reason, _date[2] if wall == _date[0] else date_line(wall),
                    fields, length)
        if type(status) is not int or not 200 <= status < 1000:
            raise LocalProtocolError(f"Response status_code should be in range [200, 1000), "
                                     f"not {status!r}")
        if reason and reason not in _reason_cache:
            _check_reason(reason)
        self._r100 = False
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        cls = te = conn = None
        has_date = False
        line_of = _line_cache.get
        for kv in headers:
            name = kv[0]
            if name == b"content-length" or name == b"transfer-encoding" \
                    or name == b"connection":
                if name == b"content-length" and length is not None and replace_length:
                    continue  # replaced by ``length``
                _header_line(name, kv[1])  # validate
                if name == b"content-length":
                    if cls is None:
                        cls = []
                    cls.append(kv[1])
                elif name == b"transfer-encoding":
                    if te is not None:
                        raise LocalProtocolError("multiple Transfer-Encoding headers")
                    te = kv[1]
                else:
                    if conn is None:
                        conn = []
                    conn.append(kv[1])
                continue
            if name == b"date":
                has_date = True
            line = line_of(kv)
            lines.append(line if line is not None else _header_line(name, kv[1]))
        cl = None
        if cls is None:
            if length is not None:
                cl = b"%d" % length
        elif len(cls) == 1 and cls[0].isdigit():
            cl = cls[0]
        else:  # h11: one distinct value, digits
            vals = {x.strip() for v in cls for x in v.split(b",")}
            if len(vals) != 1:
                raise LocalProtocolError("conflicting Content-Length headers")
            cl = vals.pop()
            if not cl.isdigit() or not cl.isascii():
                raise LocalProtocolError("bad Content-Length")
        if not has_date and self.wall_clock is not None:
            wall = int(self.wall_clock())
            lines.insert(1, _date[2] if wall == _date[0] else date_line(wall))
        method = self._rmethod
        version = self._rversion
        # keep-alive: the request's, ours (close_after_cycle / request cap), the head's
        keep = self._rkeep and not self.close_after_cycle and (
            self.messages_received < self.limits.max_requests_per_connection)
        conn_values = _comma_values(conn) if conn is not None else []
        if b"close" in conn_values:
            keep = False
        # framing, as h11 chooses it (HEAD is framed as GET would be)
        no_body = status in (204, 304) or (method == b"CONNECT" and status < 300)
        need_close = False
        if no_body:
            framing, left = _F_LENGTH, 0
            if cl is not None:
                lines.append(b"content-length: " + cl + b"\r\n")
            if te is not None:
                lines.append(b"transfer-encoding: chunked\r\n")
        elif te is None and cl is not None:
            framing, left = _F_LENGTH, int(cl)
            lines.append(b"content-length: " + cl + b"\r\n")
        elif version is None or version < b"1.1":
            framing, left = _F_CLOSE, 0
            if method != b"HEAD":
                need_close = True
        else:
            framing, left = _F_CHUNKED, 0
            lines.append(b"Transfer-Encoding: chunked\r\n")
        if method == b"HEAD" or no_body:
            framing, left = _F_LENGTH, 0
        if need_close:
            keep = False
        switched = method == b"CONNECT" and 200 <= status < 300
        if switched:
            keep = False
        if not keep:
            vals = set(conn_values)
            vals.discard(b"keep-alive")
            vals.add(b"close")
            lines += [b"Connection: " + v + b"\r\n" for v in sorted(vals)]
        elif conn is not None:
            lines += [b"connection: " + v + b"\r\n" for v in conn]
        lines.append(b"\r\n")
        self._okeep = keep
        self._oframing = framing
        self._oleft = left
        # a 2xx to CONNECT hands the connection over (h11: SWITCHED_PROTOCOL): no body,
        # no end of message, never reused
        self._ostate = _O_ERROR if switched else _O_BODY
        return b"".join(lines)

    def response(self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes,
                 body: bytes, send_body: bool = True) -> bytes:
        """A complete response in one call: the head (as ``response_head`` with the
        body's length unless the status has no body, a Content-Length field in
        ``headers`` taking precedence), ``body`` framed (left out if not
        ``send_body``: HEAD) and the end. Raises ``LocalProtocolError`` as those
        calls do (our state becomes broken)."""
        if self._ostate != _O_IDLE:
            raise LocalProtocolError("response head already sent" if self._ostate != _O_ERROR
                                     else "connection is broken (a send failed)")
        n = len(body)
        try:
            head = self._response_head(status, headers, reason,
                                       None if status in (204, 304) or status < 200 else n,
                                       False)
        except LocalProtocolError:
            self._ostate = _O_ERROR
            raise
        if self._oframing == _F_LENGTH and (self._oleft == n or not send_body):
            if send_body and n:
                self._oleft = 0
                self._ostate = _O_DONE
                return head + body
            return head + self.response_end()
        if body and send_body:
            return head + self.response_data(body) + self.response_end()
        return head + self.response_end()

    def response_continue(self) -> bytes:
        """``100 Continue`` (only before the final response head)."""
        if self._ostate != _O_IDLE:
            raise LocalProtocolError("100 Continue after the response head")
        self._r100 = False
        return b"HTTP/1.1 100 \r\n\r\n"

    def response_data(self, data: bytes) -> bytes:
        """Frame body bytes of the response (chunked, counted or close-delimited).
        Raises ``LocalProtocolError`` past the declared Content-Length."""
        if self._ostate != _O_BODY:
            raise LocalProtocolError("response body outside a response")
        fr = self._oframing
        n = len(data)
        if fr == _F_LENGTH:
            if n > self._oleft:
                self._ostate = _O_ERROR
                raise LocalProtocolError("Too much data for declared Content-Length")
            self._oleft -= n
            return data
        if fr == _F_CHUNKED:
            if not n:
                return b""
            return b"%x\r\n" % n + data + b"\r\n"
        return data

    @property
    def response_chunked(self) -> bool:
        """True if the response being sent is chunked (only a chunked response can
        carry a trailer section)."""
        return self._ostate == _O_BODY and self._oframing == _F_CHUNKED

    def response_end(self, trailers: list[tuple[bytes, bytes]] | None = None) -> bytes:
        """End the response body; ``trailers`` (``(lowercase name, value)`` byte
        pairs, chunked responses only, each field validated as a header field is)
        become the trailer section after the last chunk (RFC 9112 §7.1.2). The caller
        decides whether the client accepts trailers (``TE: trailers``) and which
        fields may be sent (``FORBIDDEN_TRAILERS``). Raises ``LocalProtocolError`` if
        a declared Content-Length was not reached, for trailers on a response that
        is not chunked, or for an invalid field (nothing is consumed then)."""
        if self._ostate != _O_BODY:
            raise LocalProtocolError("response end outside a response")
        fr = self._oframing
        if fr == _F_LENGTH and self._oleft:
            self._ostate = _O_ERROR
            raise LocalProtocolError("Too little data for declared Content-Length")
        if trailers:
            if fr != _F_CHUNKED:
                raise LocalProtocolError("trailers need a chunked response")
            section = b"".join([_header_line(n, v) for n, v in trailers])
            self._ostate = _O_DONE
            return b"0\r\n" + section + b"\r\n"
        self._ostate = _O_DONE
        if fr == _F_CHUNKED:
            return b"0\r\n\r\n"
        if fr == _F_CLOSE:
            self._okeep = False
        return b""

    def send_failed(self) -> None:
        """Mark our side broken (a send was interrupted); the connection must close."""
        if self.own_send:
            self._ostate = _O_ERROR
            return
        self._h11.send_failed()
