"""The C-accelerated request-head parser: llhttp (the parser Node.js ships, through
``httptools``) behind the same gate as ``fast_request`` (sans-IO, no greenrt).

:class:`LLHead` is a second one-pass acceptor with ``fast_request``'s contract
(``_request_parser.py``): given the receive buffer, it returns ``(RequestHead, end
offset, head bytes, lowercased head)`` for a common request the byte-by-byte gate
(``H1Connection._next_head``, strict mode) would accept, *with the same event*, and
``None`` for anything else, after which the connection tries ``fast_request`` and
then the gate, which gives the exact verdict and error code it always gave. It
raises nothing and changes nothing in the buffer. So whatever llhttp refuses gets
today's typed error (the gate's), and whatever llhttp accepts that the gate refuses
is declined here by our own checks on what llhttp hands back.

What llhttp (strict: no ``set_dangerous_leniencies``) proves, and what we check
ourselves, for a head that ends at the first CRLF CRLF:

* llhttp: CRLF line endings only (a bare LF or bare CR is an error); no obs-fold
  (a field line starting with SP/HTAB is an error); field names are tokens and no
  whitespace precedes the colon; field values contain no control byte but HTAB
  (and no DEL); the request target contains only VCHAR (``\\x21``-``\\x7e``); the
  method is one llhttp knows (all tokens); it does not check the field count, the
  sizes, Host, the target form, or that the request line has single spaces.
  Exactly these byte sets are h11's grammar narrowed as ``fast_request`` narrows it
  (``tests/protocols/http1/test_llhttp_parser.py`` sweeps all 256 bytes per
  position), and :func:`_llhttp_is_strict` re-proves the leniencies we rely on at
  import, against the installed build; if any differs the path stays off.
* ours, before llhttp sees a byte: the head ends within ``max_head_bytes``, the
  request line within ``max_request_line``, at most ``max_headers`` field lines,
  and the head starts with the request line (no leading empty line).
* ours, on what llhttp returns: a request line of exactly three parts separated by
  single spaces (llhttp accepts runs of spaces and an HTTP/0.9 line without a
  version); version ``HTTP/1.1`` or ``HTTP/1.0`` (llhttp accepts 0.9 and 2.0); an
  origin-form target (``/...``); no Content-Length or Transfer-Encoding (declined:
  bodies go through the gate and h11); Host: at most one, a valid ``uri-host
  [":" port]`` (``_HOST_RE``), mandatory for HTTP/1.1; every field line delivered
  as its own field (a repeated name, which the collecting dict would merge, is
  declined); trailing OWS stripped from values (llhttp keeps it, h11 strips it).
  ``Upgrade`` plus ``Connection: upgrade`` (llhttp pauses) is declined too.

The fields reach us through one C-level callback (``dict.__setitem__``), not a
Python call per field: that is what makes this path cheaper than the regex one
(figures in ``docs/http.md``). A parser is kept per connection and reused across
keep-alive requests; after any llhttp error (or pause) it is replaced.

Hazards: none beyond ``fast_request``'s; no allocation is sized by the peer (llhttp
sees only a head already bounded by the limits).
"""

from __future__ import annotations

try:
    import httptools
    from httptools import HttpParserError, HttpParserUpgrade
except ImportError:  # pragma: no cover - the http-fast extra is not installed
    httptools = None

from ._request_parser import _HOST_RE, RequestHead

__all__ = ["AVAILABLE", "LLHead", "MIN_HTTPTOOLS"]

#: the oldest httptools whose llhttp build was checked against the gate (older ones
#: bundle llhttp 8, which accepts bare LF line endings outside strict builds)
MIN_HTTPTOOLS = (0, 9)


class LLHead:
    """One connection's llhttp request parser, used as an accept-only head parser
    (see the module docstring). ``request(buf, limits)`` has ``fast_request``'s
    contract. Not thread-safe (one per connection); no I/O."""

    __slots__ = ("_fields", "_parser", "on_header")
    # the other callbacks httptools looks up: None (unused), found without the
    # AttributeError a missing attribute costs
    on_message_begin = on_url = on_headers_complete = on_body = None
    on_message_complete = on_chunk_header = on_chunk_complete = None

    def __init__(self):
        self._fields: dict[bytes, bytes] = {}
        #: read by httptools once, at parser creation: every field goes straight
        #: into the dict, without a Python frame
        self.on_header = self._fields.__setitem__
        self._parser = httptools.HttpRequestParser(self)

    def _renew(self) -> None:
        self._fields.clear()
        self._parser = httptools.HttpRequestParser(self)

    def request(self, buf: bytearray, limits) -> tuple[RequestHead, int, bytes, bytes] | None:
        """The common request head at the start of ``buf``, or ``None`` (see the
        module docstring). Pure with respect to ``buf`` (not modified); raises
        nothing for any input."""
        e = buf.find(b"\r\n\r\n")
        if e <= 0:
            return None
        end = e + 4
        if end > limits.max_head_bytes:
            return None
        head = bytes(buf[:end])
        nl = head.find(b"\r\n")
        if nl > limits.max_request_line:
            return None
        n_fields = head.count(b"\n") - 2
        if n_fields > limits.max_headers:
            return None
        fields = self._fields
        try:
            self._parser.feed_data(head)
        except (HttpParserError, HttpParserUpgrade):
            self._renew()
            return None
        # exactly three single-space-separated parts: llhttp accepts runs of spaces
        # and a version-less (0.9) line; no method or target byte is a space
        parts = head[:nl].split(b" ")
        if len(parts) != 3:
            fields.clear()
            return None
        method, target, version = parts
        if (version != b"HTTP/1.1" and version != b"HTTP/1.0") or target[:1] != b"/":
            fields.clear()
            return None
        version = version[5:]
        headers = [(k.lower(), v.rstrip(b" \t")) for k, v in fields.items()]
        fields.clear()
        # one entry per field line, or a name came twice (the dict merged it, or
        # it differs only in case): declined, the other paths handle repeats
        names = dict(headers)
        if len(names) != n_fields or b"content-length" in names \
                or b"transfer-encoding" in names:
            return None
        host = names.get(b"host")
        if host is None:
            if version == b"1.1":
                return None
        elif host not in _HOSTS_OK and not _host_ok(host):
            return None
        return (RequestHead(method, target, headers, version, b"upgrade" in names),
                end, head, head.lower())


#: Host values that passed ``_HOST_RE`` (a bounded memo: cleared when full)
_HOSTS_OK: set[bytes] = set()
_HOSTS_MAX = 256


def _host_ok(value: bytes) -> bool:
    if _HOST_RE.fullmatch(value) is None:
        return False
    if len(_HOSTS_OK) >= _HOSTS_MAX:
        _HOSTS_OK.clear()
    _HOSTS_OK.add(value)
    return True


def _version_ok() -> bool:
    try:
        parts = tuple(int(x) for x in httptools.__version__.split(".")[:2])
    except (AttributeError, ValueError):  # pragma: no cover - an odd build
        return False
    return parts >= MIN_HTTPTOOLS


#: heads the gate refuses that llhttp must refuse too (the leniencies this path
#: relies on llhttp not having), and heads it must accept; checked once at import
_MUST_REFUSE = (
    b"GET / HTTP/1.1\nHost: x\r\n\r\n",              # bare LF after the request line
    b"GET / HTTP/1.1\r\nHost: x\n\r\n",              # bare LF after a field
    b"GET / HTTP/1.1\r\nHost: x\r\nA: b\rc\r\n\r\n",  # bare CR in a value
    b"GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n c\r\n\r\n",  # obs-fold
    b"GET / HTTP/1.1\r\n A: b\r\nHost: x\r\n\r\n",   # a first field line starting with SP
    b"GET / HTTP/1.1\r\nHost: x\r\nA : b\r\n\r\n",   # whitespace before the colon
    b"GET / HTTP/1.1\r\nHost: x\r\nA\x01: b\r\n\r\n",  # control byte in a name
    b"GET / HTTP/1.1\r\nHost: x\r\nA: b\x01\r\n\r\n",  # control byte in a value
    b"GET / HTTP/1.1\r\nHost: x\r\nA: b\x7f\r\n\r\n",  # DEL in a value
    b"GET / HTTP/1.1\r\nHost: x\r\nA: b\x00\r\n\r\n",  # NUL in a value
    b"GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n",        # DEL in the target
    b"GET /\x80 HTTP/1.1\r\nHost: x\r\n\r\n",        # non-ASCII in the target
    b"GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n",        # HTAB in the target
    b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n",            # a method byte that is no token
)
_MUST_ACCEPT = (
    b"GET / HTTP/1.1\r\nHost: x\r\nA: b\x80\xff c\t\r\n\r\n",
    b"GET /a?b#c!$&'()*+,;=:@[]{}|\\^`\"<>~ HTTP/1.1\r\nHost: x\r\n\r\n",
)


def _llhttp_is_strict() -> bool:
    """The installed llhttp refuses everything in ``_MUST_REFUSE`` and accepts
    ``_MUST_ACCEPT`` (with one field callback per line)."""
    for data in _MUST_REFUSE:
        ll = LLHead()
        try:
            ll._parser.feed_data(data)
        except (HttpParserError, HttpParserUpgrade):
            continue
        return False
    for data in _MUST_ACCEPT:
        ll = LLHead()
        try:
            ll._parser.feed_data(data)
        except (HttpParserError, HttpParserUpgrade):
            return False
        if len(ll._fields) != data.count(b"\n") - 2:
            return False
    return True


#: the llhttp path can be used: httptools is installed, new enough, and strict
AVAILABLE = httptools is not None and _version_ok() and _llhttp_is_strict()
