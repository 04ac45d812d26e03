"""The server's own request-head parser (sans-IO, no greenrt).

For a request without a body (most of them), ``H1Connection`` does not hand the head
to h11: it parses it here, with h11's own grammar (the regexes below are h11 0.16's
``_abnf.py`` verbatim; a test compares the strings) and its Host rule, into a
:class:`RequestHead`. Every sans-IO transcript test runs through both paths and must
agree. The checks here come on top of h11's: RFC 9112 §3.2 request targets (origin
form starts with ``/``, ``*`` only with OPTIONS) and exactly one valid Host.
"""

from __future__ import annotations

import re

from ..http.errors import BadRequest

__all__ = ["HEADER_FIELD", "REQUEST_LINE", "RequestHead", "fast_request", "parse_request"]

# h11 0.16's request grammar (h11/_abnf.py), verbatim, so a request head we parse
# ourselves is accepted or refused exactly as h11 would (a test compares the strings)
_OWS = r"[ \t]*"
_TOKEN = r"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_VCHAR = r"[\x21-\x7e]"
_FIELD_VCHAR = r"[^\x00\s]"
_FIELD_CONTENT = rf"{_FIELD_VCHAR}+(?:[ \t]+{_FIELD_VCHAR}+)*"
_FIELD_VALUE = rf"({_FIELD_CONTENT})?"
HEADER_FIELD = rf"(?P<field_name>{_TOKEN})" + r":" + _OWS + \
    rf"(?P<field_value>{_FIELD_VALUE})" + _OWS
REQUEST_LINE = (rf"(?P<method>{_TOKEN})" + r" " + rf"(?P<target>{_VCHAR}+)"
                + r" " + r"HTTP/(?P<http_version>[0-9]\.[0-9])")
_HEADER_FIELD_RE = re.compile(HEADER_FIELD.encode("ascii"))
_REQUEST_LINE_RE = re.compile(REQUEST_LINE.encode("ascii"))
# the same grammar over a whole head at once (fast_request), with one narrowing: a
# field value byte is also no control (those _CTL_RE refuses) and no DEL. No class
# matches CR or LF, and a field line cannot start with SP/HTAB, so a head matches
# this iff its request line matches REQUEST_LINE, every field line HEADER_FIELD with
# the same groups, every line ends in CRLF, no line is an obs-fold, and no byte is
# one _CTL_RE refuses
_FAST_VCHAR = r"[^\x00-\x1f\x7f ]"
_FAST_FIELD = (rf"(?P<field_name>{_TOKEN}):{_OWS}(?P<field_value>"
               rf"({_FAST_VCHAR}+(?:[ \t]+{_FAST_VCHAR}+)*)?){_OWS}")
_HEAD_RE = re.compile((REQUEST_LINE + r"\r\n(?:" + _FAST_FIELD + r"\r\n)*\r\n").encode("ascii"))
_FIELD_LINE_RE = re.compile((_FAST_FIELD + r"\r\n").encode("ascii"))


def _excerpt(b: bytes | bytearray, n: int = 40) -> str:
    return repr(bytes(b[:n])) + ("..." if len(b) > n else "")


class RequestHead:
    """A parsed request head (what ``next_event`` returns for a request on an
    ``own_send`` connection, in place of ``h11.Request``): ``method``, ``target``,
    ``http_version`` (bytes) and ``headers``, a list of ``(lowercase name, value)``
    byte pairs with surrounding whitespace stripped; ``upgrade``: the head has an
    ``Upgrade`` field (noted while parsing, so the server's h2c hook costs the other
    requests nothing)."""

    __slots__ = ("method", "target", "headers", "http_version", "upgrade")

    def __init__(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
                 http_version: bytes, upgrade: bool = False):
        self.method = method
        self.target = target
        self.headers = headers
        self.http_version = http_version
        self.upgrade = upgrade

    def __repr__(self) -> str:
        return f"RequestHead({self.method!r}, {self.target!r}, {self.headers!r})"


#: bytes no head may contain: controls other than HTAB, CR, LF (those frame lines);
#: NUL is left to the h11 grammar check (code ``malformed``)
_CTL_RE = re.compile(rb"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]")
_HOST_RE = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+;=]*)(:[0-9]{0,5})?")


def _check_target(start: bytes) -> None:
    """The request-target forms of RFC 9112 §3.2: origin-form (``/path``) for every
    method, absolute-form (``http://host/path``), authority-form only for CONNECT and
    asterisk-form only for OPTIONS."""
    method, _, rest = start.partition(b" ")
    target = rest.rpartition(b" ")[0]
    if target.startswith(b"/"):
        return
    if target == b"*":
        if method != b"OPTIONS":
            raise BadRequest("asterisk-form target is only valid for OPTIONS", code="bad_target")
        return
    if method == b"CONNECT":
        return  # authority-form (host:port), checked by h11's grammar and the handler
    low = target[:8].lower()
    if low.startswith(b"http://") or low.startswith(b"https://"):
        return
    raise BadRequest(f"request target {_excerpt(target)} is not in origin or absolute form",
                     code="bad_target")


def _check_host(head: bytes, lower: bytes) -> None:
    """One Host value that is a ``uri-host [":" port]`` (RFC 9110 §7.2): a list
    (``Host: a, b``) or anything else a proxy might read differently is refused."""
    i = lower.find(b"\nhost:")
    if i == -1:
        return
    j = head.find(b"\r\n", i + 1)
    value = head[i + 6:j if j != -1 else len(head)].strip(b" \t")
    if _HOST_RE.fullmatch(value) is None:
        raise BadRequest(f"invalid Host field {_excerpt(value)}", code="bad_host")


def _parse_request(head: bytes) -> RequestHead:
    """Parse a complete, CRLF-normalized request head as h11 would (same grammar, same
    Host rule); raises ``BadRequest`` (``malformed``) where h11 raises."""
    lines = head[:-4].split(b"\r\n")
    m = _REQUEST_LINE_RE.fullmatch(lines[0])
    if m is None:
        raise BadRequest(f"h11: illegal request line: {_excerpt(lines[0])}", code="malformed")
    headers = []
    host = upgrade = False
    match = _HEADER_FIELD_RE.fullmatch
    for line in lines[1:]:
        f = match(line)
        if f is None:
            raise BadRequest(f"h11: illegal header line: {_excerpt(line)}", code="malformed")
        name = f.group(1).lower()
        value = f.group(2)
        if name == b"host":
            host = True
        elif name == b"transfer-encoding":
            value = value.lower()
        elif name == b"upgrade":
            upgrade = True
        headers.append((name, value))
    version = m.group(3)
    if not host and version == b"1.1":
        raise BadRequest("h11: Missing mandatory Host: header", code="malformed")
    return RequestHead(m.group(1), m.group(2), headers, version, upgrade)



def fast_request(buf: bytearray, limits) -> tuple[RequestHead, int, bytes, bytes] | None:
    """The common request in one pass: a complete head at the start of ``buf`` with
    no body framing, that the gate (``H1Connection._next_head``, strict mode) would
    accept. Returns ``(head event, end offset, head bytes, lowercased head)``, or
    ``None`` whenever *anything* is unusual (an incomplete head, a limit reached, a
    bare LF, obs-fold, a control byte, a grammar mismatch, Content-Length or
    Transfer-Encoding, an HTTP version other than 1.0/1.1, a target not in origin
    form, a missing, duplicate or bad Host), so the caller runs the byte-by-byte gate,
    which finds the exact verdict. It only accepts: it raises nothing, changes
    nothing, and what it accepts the gate accepts with the same event (the
    differential tests check both on every corpus). Pure function, no I/O.

    The conditions, each the gate's check for the whole head at once: the head ends
    at the first CRLF CRLF, within ``max_head_bytes``; the start line within
    ``max_request_line``; every LF preceded by CR; no line starting with SP/HTAB;
    at most ``max_headers`` field lines; no control byte; ``_HEAD_RE`` (h11's
    grammar narrowed to no control byte, above: one regex pass also proves the CRLF,
    obs-fold and control-byte conditions) matches."""
    e = buf.find(b"\r\n\r\n")
    if e <= 0:
        return None
    end = e + 4
    if end > limits.max_head_bytes:
        return None
    head = bytes(buf[:end])
    if head.find(b"\n") - 1 > limits.max_request_line:
        return None
    m = _HEAD_RE.fullmatch(head)  # also: CRLF only, no obs-fold, no control byte
    if m is None or head.count(b"\n") - 2 > limits.max_headers:
        return None
    method, target, version = m.group(1, 2, 3)
    if (version != b"1.1" and version != b"1.0") or target[:1] != b"/":
        return None
    lower = head.lower()
    # find() != -1 rather than ``in``: bytes.__contains__ first tries its argument as
    # an int and formats a TypeError (~1.5k instructions) before it searches
    if lower.find(b"\ncontent-length:") != -1 or lower.find(b"\ntransfer-encoding:") != -1:
        return None
    n_host = lower.count(b"\nhost:")
    if n_host == 1:
        i = lower.find(b"\nhost:")
        value = head[i + 6:head.find(b"\r\n", i + 1)].strip(b" \t")
        if _HOST_RE.fullmatch(value) is None:
            return None
    elif n_host or version == b"1.1":
        return None
    headers = [(n.lower(), v) for n, v, _ in _FIELD_LINE_RE.findall(head, m.end(3) + 2)]
    # the gate's parser notes an Upgrade field while parsing (the h2c hook); here
    # one find() on the lowercased head does it
    return (RequestHead(method, target, headers, version, lower.find(b"\nupgrade:") != -1),
            end, head, lower)


parse_request = _parse_request
