"""A hardened sans-IO HTTP/1.1 connection: h11 behind a byte-exact gatekeeper.

h11 parses and generates HTTP/1.1 correctly, but it was not built as an exposed
edge: it skips its incomplete-event limit when a whole oversized head arrives in one
read, has no header-count or request-line limit, keeps the connection open after a
request with both Content-Length and Transfer-Encoding, unfolds obs-fold lines,
accepts bare LF line endings and merges duplicate Content-Length fields.
:class:`H1Connection` closes those gaps without forking h11: it owns the receive
buffer and decides *exactly* which bytes h11 may see.

Theory of operation
-------------------
Bytes from the network go into ``self._buf``. h11 is fed only whole units:

* **Head.** ``_scan_head`` walks the buffer line by line (incrementally: it keeps its
  position between calls) and enforces, in byte order, the request-line limit (414),
  the head-size limit (431), bare-LF and obs-fold rejection (400, strict mode) and the
  field-count limit (431). Only when a complete, acceptable head is found is it
  checked for framing (duplicate or malformed Content-Length, CL+TE, transfer codings
  other than ``chunked`` → 501, unsupported versions → 505, duplicate Host) and then
  handed to h11, which validates the grammar again and builds the event.
* **Body.** A fixed-length body is fed up to the declared length and no further. A
  chunked body is tracked by a small framer that knows where every chunk-size line,
  chunk and trailer section begins and ends, so a chunk line or trailer section longer
  than ``max_chunk_line`` is rejected at the same byte whatever the segmentation, and
  h11 never holds more than one unit. Body bytes are counted against
  ``max_body_bytes`` (413); a declared Content-Length above it is refused before any
  body byte is read.

Because h11 never receives a byte beyond the current message, the bytes of a
pipelined next request stay in our buffer and go through the same gate.

**Segmentation independence** (the key invariant, tested with one-read and
byte-by-byte feeding and by property tests): every verdict is a function of the byte
stream alone. Each check fires at a fixed byte position (the first byte past a
limit, the line ending of a bad line), and checks are evaluated in byte order, with
size checks before structural checks of the same line, so a byte stream that is
delivered in one piece and one delivered byte by byte raise the same error. (The
number of ``Data`` events a body produces does depend on segmentation; their
concatenation does not.)

Any ``HTTPError`` is sticky: the connection is dead, ``next_event`` raises it again,
and the only correct reaction is to answer ``exc.status`` (if a response can still be
sent) and close.

**The server's own response writer** (``own_send=True``, what the server uses; the
code is ``_response_writer.py``, a mixin of this class): h11's
send path costs more than the rest of a keep-alive exchange (an event object, a state
machine step and a header normalization per event), so a server connection
serializes its responses itself with ``response_head``/``response_data``/
``response_end``, applying exactly h11's rules: every header field is validated by
h11's own grammar (token names; values without CR, LF, NUL, other controls or
surrounding whitespace; a Content-Length of digits; only ``chunked`` as transfer
coding), results cached per distinct field so a repeated header costs one dict
lookup; framing headers are chosen as h11 does (``Transfer-Encoding: chunked`` for a
body of unknown length to an HTTP/1.1 client, close-delimited for HTTP/1.0, nothing
for HEAD/204/304), ``Connection: close`` is added when the connection will not be
reused, and a body longer or shorter than the declared Content-Length is refused.
Such a connection also parses request heads itself (``_request_parser.py``, after
the gate above): h11 0.16's request-line and header-field grammar verbatim (a test
compares the regexes with h11's) and its Host rule, into a :class:`RequestHead`;
every sans-IO transcript test runs through both paths and must agree. h11 sees a head
only when a body follows, to parse that body, in a fresh instance per such cycle.
The server also adds a ``Date`` field (formatted once a second) from ``wall_clock``.

Before the gate, a server connection tries ``fast_request`` (``_request_parser.py``):
one pass over a complete head with no body framing, which only *accepts* what the
gate would accept, with the same event, and otherwise leaves everything to the gate
(so every verdict and error code is the gate's; the tests and the fuzz target compare
the two paths on every input).

Module map: this file is the gate (limits, smuggling checks, the phase machine and
the body framer handing bytes to h11); ``_request_parser.py`` the own head parser;
``_response_writer.py`` the own response writer; ``_body.py`` the pulled request
body.

Hazards: this module never blocks and never allocates more than the limits allow
(no allocation is sized by a number read from the peer: a Content-Length or chunk
size only bounds how many already-received bytes are handed on). ``receive_data``
copies its argument.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import h11

from ..http.errors import (
    BadRequest,
    ClientDisconnected,
    HeaderFieldsTooLarge,
    HTTPError,
    HTTPVersionNotSupported,
    LocalProtocolError,
    PayloadTooLarge,
    ProtocolError,
    UnsupportedTransferCoding,
    URITooLong,
)
from ..http.limits import DEFAULT_LIMITS, Limits
from ._llhttp_parser import AVAILABLE as _LLHTTP_AVAILABLE
from ._llhttp_parser import LLHead
from ._request_parser import (
    _CTL_RE,
    RequestHead,
    _check_host,
    _check_target,
    _excerpt,
    _parse_request,
    fast_request,
)
from ._response_writer import (
    _F_LENGTH,
    _O_DONE,
    _O_IDLE,
    ResponseWriterMixin,
    _comma_values,
)

__all__ = ["H1Connection", "NEED_DATA", "PAUSED", "SERVER", "CLIENT", "RequestHead"]

SERVER = "server"
CLIENT = "client"
NEED_DATA = h11.NEED_DATA
PAUSED = h11.PAUSED

# phases
_HEAD, _BODY, _DONE, _CLOSED, _SWITCHED, _ERROR = range(6)
# chunked framer states
_C_LINE, _C_DATA, _C_CRLF, _C_TRAILER = range(4)

_VERSION_RE = re.compile(rb"HTTP/[0-9](?:\.[0-9])?")
_BARE_LF_RE = re.compile(rb"(?<!\r)\n")
_FOLD_RE = re.compile(rb"\r\n[ \t]+")
_FEED_MAX = 256 * 1024  # largest slice of body handed to h11 at once



_EOM = h11.EndOfMessage()








class H1Connection(ResponseWriterMixin):
    """One HTTP/1.1 connection, either side, without I/O. See the module docstring.

    ``receive_data(b"")`` signals EOF. ``next_event()`` returns h11 events
    (``Request``/``Response``/``InformationalResponse``/``Data``/``EndOfMessage``/
    ``ConnectionClosed``) or ``NEED_DATA``/``PAUSED``; it raises ``HTTPError``
    subclasses for anything the peer got wrong. ``send(event)`` returns the bytes to
    write. After both sides finished a message, ``start_next_cycle()`` resets for the
    next exchange if ``reusable``.
    """

    #: own_send: try ``fast_request`` (one pass over a whole head) before the
    #: byte-by-byte gate; a test turns it off to compare both paths
    _fast_heads = True
    #: own_send: try llhttp (``_llhttp_parser.LLHead``, when httptools is installed
    #: and strict) before ``fast_request``; same contract, a test compares all paths
    _llhttp_heads = _LLHTTP_AVAILABLE

    def __init__(self, role: str = SERVER, limits: Limits = DEFAULT_LIMITS, *,
                 own_send: bool = False, wall_clock: Callable[[], float] | None = None):
        if role not in (SERVER, CLIENT):
            raise ValueError(f"role must be {SERVER!r} or {CLIENT!r}")
        if own_send and role != SERVER:
            raise ValueError("own_send is for the server role")
        self.role = role
        self.limits = limits
        #: server: responses are serialized by ``response_head``/``_data``/``_end``
        self.own_send = own_send
        self._h11_used = False  # own_send: h11 has parsed a message since its creation
        self._ll: LLHead | None = None  # own_send: this connection's llhttp head parser
        #: own_send: seconds since the epoch for the ``Date`` field (``None``: no Date)
        self.wall_clock = wall_clock
        self._reset_own()
        self._h11 = h11.Connection(h11.SERVER if role == SERVER else h11.CLIENT,
                                   max_incomplete_event_size=limits.max_chunk_line + 2)
        self._buf = bytearray()
        self._eof = False
        self._eof_fed = False
        self._error: HTTPError | None = None
        self._phase = _HEAD
        #: number of message heads received (requests on a server, final responses on a client)
        self.messages_received = 0
        #: set by the application to make the next response head carry ``Connection: close``
        self.close_after_cycle = False
        #: own_send: the current request's head has an ``Upgrade`` field
        self.upgrade_requested = False
        self._request_method: bytes | None = None  # client: method of the request in flight
        self._reset_head()
        self._reset_body()

    # -- state -----------------------------------------------------------------------

    def _reset_head(self) -> None:
        self._hpos = 0       # start of the first unscanned line
        self._hstart = 0     # start of the start line (after skipped empty lines)
        self._hseen = False  # start line complete?
        self._hfields = 0    # header lines seen

    def _reset_own(self) -> None:
        self._ostate = _O_IDLE
        self._oframing = _F_LENGTH
        self._oleft = 0
        self._okeep = True        # the response allows keep-alive
        self._rkeep = True        # the request allows keep-alive
        self._rmethod = None      # method of the request being answered
        self._rversion = None     # its HTTP version
        self._r100 = False        # the client waits for 100 Continue

    def _reset_body(self) -> None:
        self._framing = None      # "length" | "chunked" | "none" | "eof"
        self._declared = None     # declared Content-Length
        self._feed_left = 0       # length framing: bytes still to hand to h11
        self._body_seen = 0
        self._cstate = _C_LINE
        self._cleft = 0

    @property
    def their_state(self):
        """h11's state of the peer (``h11.IDLE``, ``h11.SEND_BODY``, ``h11.DONE``...)."""
        if self.own_send:
            ph = self._phase
            if ph == _DONE:
                return h11.DONE if self._rkeep else h11.MUST_CLOSE
            if ph == _ERROR:
                return h11.ERROR
            if ph == _CLOSED:
                return h11.CLOSED
        return self._h11.their_state

    @property
    def our_state(self):
        if self.own_send:
            st = self._ostate
            if st == _O_DONE:
                return h11.DONE if self._okeep and self._rkeep else h11.MUST_CLOSE
            return (h11.SEND_RESPONSE, h11.SEND_BODY, None, h11.ERROR)[st]
        return self._h11.our_state

    @property
    def receiving_body(self) -> bool:
        """True while the current message's body is still arriving."""
        return self._phase == _BODY

    @property
    def their_http_version(self) -> bytes | None:
        if self.own_send:
            return self._rversion
        return self._h11.their_http_version

    @property
    def client_is_waiting_for_100_continue(self) -> bool:
        return self._h11.client_is_waiting_for_100_continue

    @property
    def they_are_waiting_for_100_continue(self) -> bool:
        if self.own_send:
            return self._r100 and self._phase == _BODY and self._ostate == _O_IDLE
        return self._h11.they_are_waiting_for_100_continue

    @property
    def error(self) -> HTTPError | None:
        """The sticky error, once the peer misbehaved."""
        return self._error

    @property
    def reusable(self) -> bool:
        """True when both sides completed their message and the connection may carry
        another exchange (keep-alive)."""
        if self.own_send:
            return (self._error is None and self._phase == _DONE and self._ostate == _O_DONE
                    and self._okeep and self._rkeep)
        h = self._h11
        return (self._error is None and self._phase == _DONE and h.our_state is h11.DONE
                and h.their_state is h11.DONE)

    @property
    def body_framing(self) -> str | None:
        """How the current message's body is delimited: ``"length"``, ``"chunked"``,
        ``"none"``, ``"eof"`` (until close), or ``None`` before a head."""
        return self._framing

    @property
    def body_length(self) -> int | None:
        """The declared Content-Length of the current message body, if any."""
        return self._declared

    @property
    def buffered(self) -> int:
        """Bytes received and not yet consumed (e.g. a pipelined next request)."""
        return len(self._buf)

    @property
    def head_started(self) -> bool:
        """True if the next message's head has begun arriving (a non-empty line)."""
        return self._phase == _HEAD and len(self._buf) > self._hstart

    @property
    def trailing_data(self) -> bytes:
        """Bytes after a protocol switch (101 / CONNECT), for the next protocol."""
        return bytes(self._buf)

    # -- receiving ------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Add bytes from the peer; ``b""`` means EOF. Never raises for bad input (the
        verdict comes from ``next_event``)."""
        if data:
            if self._eof:
                raise LocalProtocolError("receive_data after EOF")
            self._buf += data
        else:
            self._eof = True

    def next_event(self):
        """The next event, ``NEED_DATA`` or ``PAUSED``. Raises ``HTTPError`` (sticky)."""
        if self._error is not None:
            raise self._error
        try:
            ph = self._phase
            if ph == _HEAD:
                return self._next_head()
            if ph == _BODY:
                return self._next_body()
            if ph == _CLOSED:
                return h11.ConnectionClosed()
            return PAUSED
        except HTTPError as e:
            self._fail(e)
            raise
        except h11.ProtocolError as e:
            err = self._from_h11(e)
            self._fail(err)
            raise err from None

    def _fail(self, e: HTTPError) -> None:
        self._error = e
        self._phase = _ERROR

    def _from_h11(self, e: h11.ProtocolError) -> HTTPError:
        hint = getattr(e, "error_status_hint", 400)
        if hint == 501:
            return UnsupportedTransferCoding(str(e), code="h11_" + "unsupported")
        if hint == 431:
            lim = self.limits.max_chunk_line
            return HeaderFieldsTooLarge(f"{e} (max_chunk_line is {lim})", limit="max_chunk_line",
                                        maximum=lim, code="chunk_line_too_long")
        return BadRequest(f"h11: {e}", code="malformed")

    # -- the head -------------------------------------------------------------------

    def _scan_head(self) -> int | None:
        """End offset of a complete head in the buffer, or ``None`` if more bytes are
        needed. Raises the first violation in byte order (see the module docstring)."""
        buf = self._buf
        lim = self.limits
        max_head = lim.max_head_bytes
        max_rl = lim.max_request_line
        strict = lim.strict
        pos = self._hpos
        n = len(buf)
        while True:
            nl = buf.find(b"\n", pos)
            if nl == -1:
                # incomplete line: only size checks (its structure is unknown yet)
                if not self._hseen and pos < n:
                    clen = n - pos - (1 if buf[n - 1] == 13 else 0)
                    if clen > max_rl:
                        self._limit_start_line(pos, clen, n)
                if n > max_head:
                    raise HeaderFieldsTooLarge(
                        limit="max_head_bytes",
                        value=n, maximum=max_head)
                self._hpos = pos
                return None
            end = nl + 1
            cr = nl > pos and buf[nl - 1] == 13
            clen = nl - pos - (1 if cr else 0)
            # size checks first: their violating byte lies inside this line
            if not self._hseen and clen > max_rl:
                self._limit_start_line(pos, clen, end)
            if end > max_head:
                raise HeaderFieldsTooLarge(
                    limit="max_head_bytes",
                    value=end, maximum=max_head)
            if not cr and strict:
                raise BadRequest("bare LF line ending in head", code="bare_lf")
            if clen == 0:
                if not self._hseen:  # empty lines before the start line are skipped
                    pos = self._hstart = end
                    continue
                return end
            if not self._hseen:
                self._hseen = True
            else:
                c = buf[pos]
                if c == 32 or c == 9:
                    if strict:
                        raise BadRequest("obs-fold continuation line in head", code="obs_fold")
                else:
                    self._hfields += 1
                    if self._hfields > lim.max_headers:
                        raise HeaderFieldsTooLarge(
                            limit="max_headers",
                            value=self._hfields, maximum=lim.max_headers, code="too_many_headers")
            pos = end

    def _limit_start_line(self, pos: int, clen: int, end: int) -> None:
        max_rl = self.limits.max_request_line
        max_head = self.limits.max_head_bytes
        # the start-line limit fires at byte pos+max_rl+1, the head limit at max_head+1
        if end > max_head and max_head < pos + max_rl + 1:
            return  # the head-size check in the caller fires first
        if self.role == SERVER:
            raise URITooLong(limit="max_request_line",
                             value=clen, maximum=max_rl)
        raise HeaderFieldsTooLarge(limit="max_request_line", value=clen, maximum=max_rl,
                                   code="status_line_too_long")

    def _next_head(self):
        if not self._buf and not self._eof:
            return NEED_DATA  # nothing to scan (the common idle keep-alive case)
        if self.own_send and self._hpos == 0 and self._fast_heads and self.limits.strict:
            fast = None
            if self._llhttp_heads:
                ll = self._ll
                if ll is None:
                    ll = self._ll = LLHead()
                fast = ll.request(self._buf, self.limits)
            if fast is None:
                fast = fast_request(self._buf, self.limits)
            if fast is not None:
                # the whole head at once, exactly as the gate below would accept it
                ev, end, head, lower = fast
                del self._buf[:end]
                # the head and body state are as _reset_head/_reset_body leave them:
                # _hpos == 0 means nothing was scanned, and __init__/start_next_cycle
                # reset the body
                self.messages_received += 1
                self._request_facts(ev, head, lower)
                self._phase = _BODY
                self._framing = "none"
                return ev
        end = self._scan_head()
        if end is None:
            if self._eof:
                if self._hseen or self._hpos < len(self._buf):
                    self._incomplete("connection closed inside a message head", "incomplete_head")
                self._phase = _CLOSED
                return h11.ConnectionClosed()
            return NEED_DATA
        buf = self._buf
        head = bytes(buf[self._hstart:end])
        del buf[:end]
        self._reset_head()
        if not self.limits.strict:
            head = _FOLD_RE.sub(b" ", _BARE_LF_RE.sub(b"\r\n", head))
        nl = head.find(b"\r\n")
        start = head[:nl]
        lower = head.lower()
        if _CTL_RE.search(head) is not None:
            # h11's field-value grammar lets \x01-\x08, \x0b, \x0c, \x0e-\x1f and \x7f
            # through; RFC 9110 §5.5 forbids them (only HTAB is allowed), and a
            # downstream parser may split on them
            raise BadRequest("control character in the head", code="ctl_in_head")
        if self.role == SERVER:
            self._check_request_line(start)
            if lower.count(b"\nhost:") > 1:
                raise BadRequest("more than one Host field", code="duplicate_host")
            _check_target(start)
            _check_host(head, lower)
        else:
            self._check_status_line(start)
        cl, chunked = self._check_framing(head, lower, start)
        if self.own_send:
            # parse the head ourselves (h11's grammar); h11 sees it only if a body
            # follows, to parse that (a fresh instance per cycle)
            ev = _parse_request(head)
            self.messages_received += 1
            self._request_facts(ev, head, lower)
            self._start_body(cl, chunked, has_body=True)
            if self._framing != "none" and self._declared != 0:
                h = self._h11
                if self._h11_used:
                    h = self._h11 = h11.Connection(
                        h11.SERVER, max_incomplete_event_size=self.limits.max_chunk_line + 2)
                self._h11_used = True
                h.receive_data(head)
                if type(h.next_event()) is not h11.Request:  # pragma: no cover
                    raise BadRequest("h11 did not accept the request head", code="malformed")
            return ev
        h = self._h11
        h.receive_data(head)
        ev = h.next_event()
        t = type(ev)
        if t is h11.Request:
            self.messages_received += 1
            self._start_body(cl, chunked, has_body=True)
        elif t is h11.Response:
            self.messages_received += 1
            st = ev.status_code
            no_body = (self._request_method == b"HEAD" or st in (204, 304)
                       or (self._request_method == b"CONNECT" and 200 <= st < 300))
            self._start_body(cl, chunked, has_body=not no_body)
        elif t is h11.InformationalResponse:
            if ev.status_code == 101:
                self._phase = _SWITCHED
            # else: stay in _HEAD for the final response
        else:  # pragma: no cover - h11 returns one of the above for a complete head
            raise BadRequest(f"unexpected event {t.__name__} for a head", code="malformed")
        return ev

    def _request_facts(self, ev, head: bytes, lower: bytes) -> None:
        """Method, version, keep-alive (h11's ``_keep_alive`` rule) and 100-continue
        (h11's ``has_expect_100_continue``) of a request."""
        self._rmethod = ev.method
        v = self._rversion = ev.http_version
        keep = v == b"1.1"
        # find() != -1, not ``in``: bytes.__contains__ first tries the argument as an
        # int and formats a TypeError (about 1.5k instructions) before searching
        if keep and lower.find(b"\nconnection:") != -1:
            keep = b"close" not in _comma_values(_field_values(head, lower, b"connection"))
        self._rkeep = keep
        self._r100 = v == b"1.1" and lower.find(b"\nexpect:") != -1 and b"100-continue" in \
            _comma_values(_field_values(head, lower, b"expect"))
        self.upgrade_requested = ev.upgrade

    def _incomplete(self, msg: str, code: str):
        if self.role == SERVER:
            raise ClientDisconnected(msg, code=code)
        raise ProtocolError(msg, code=code)

    def _check_request_line(self, line: bytes) -> None:
        parts = line.split(b" ")
        if len(parts) != 3:
            raise BadRequest(f"malformed request line {_excerpt(line)}", code="bad_request_line")
        v = parts[2]
        if v != b"HTTP/1.1" and v != b"HTTP/1.0":
            if _VERSION_RE.fullmatch(v):
                raise HTTPVersionNotSupported(f"HTTP version {_excerpt(v)} not supported")
            raise BadRequest(f"malformed HTTP version {_excerpt(v)}", code="bad_version")

    def _check_status_line(self, line: bytes) -> None:
        if not (line.startswith(b"HTTP/1.1 ") or line.startswith(b"HTTP/1.0 ")):
            raise ProtocolError(f"malformed status line {_excerpt(line)}", code="bad_status_line")

    def _check_framing(self, head: bytes, lower: bytes, start: bytes) -> tuple[int | None, bool]:
        """Content-Length / Transfer-Encoding rules (RFC 9112 §6), on the raw head."""
        n_cl = lower.count(b"\ncontent-length:")
        n_te = lower.count(b"\ntransfer-encoding:")
        if not n_cl and not n_te:
            return None, False
        if n_cl and n_te:
            raise BadRequest("both Content-Length and Transfer-Encoding", code="cl_te_conflict")
        if n_cl:
            if n_cl > 1:
                raise BadRequest("more than one Content-Length field", code="duplicate_cl")
            v = _field_values(head, lower, b"content-length")[0]
            if not v.isdigit() or not v.isascii() or len(v) > 18:
                raise BadRequest(f"malformed Content-Length {_excerpt(v)}", code="bad_cl")
            cl = int(v)
            return cl, False
        values = _field_values(head, lower, b"transfer-encoding")
        if self.role == SERVER and start.endswith(b"HTTP/1.0"):
            raise BadRequest("Transfer-Encoding in an HTTP/1.0 request", code="te_http10")
        tokens = [t.strip(b" \t").lower() for v in values for t in v.split(b",")]
        if any(not t for t in tokens):
            raise BadRequest("malformed Transfer-Encoding", code="bad_te")
        if tokens != [b"chunked"]:
            raise UnsupportedTransferCoding(
                f"transfer coding {_excerpt(b', '.join(tokens))} not supported (only chunked)")
        return None, True

    def _start_body(self, cl: int | None, chunked: bool, has_body: bool) -> None:
        self._reset_body()
        self._phase = _BODY
        if not has_body:
            self._framing = "none"
        elif chunked:
            self._framing = "chunked"
        elif cl is not None:
            if cl > self.limits.max_body_bytes:
                raise PayloadTooLarge(limit="max_body_bytes", value=cl,
                                      maximum=self.limits.max_body_bytes)
            self._framing = "length"
            self._feed_left = cl
            self._declared = cl
        elif self.role == CLIENT:
            self._framing = "eof"
        else:
            self._framing = "none"

    # -- the body -------------------------------------------------------------------

    def _next_body(self):
        if self.own_send and (self._framing == "none" or self._declared == 0):
            # an empty body: nothing for h11 to parse (it is replaced next cycle)
            self._phase = _DONE
            return _EOM
        h = self._h11
        while True:
            ev = h.next_event()
            if ev is NEED_DATA:
                if not self._feed():
                    if self._eof and not self._eof_fed:
                        self._eof_fed = True
                        if self._framing != "eof":
                            self._incomplete("connection closed inside a message body",
                                             "incomplete_body")
                        h.receive_data(b"")
                        continue
                    return NEED_DATA
                continue
            t = type(ev)
            self._r100 = False  # the client sent (some of) the body
            if t is h11.Data:
                n = self._body_seen + len(ev.data)
                self._body_seen = n
                if n > self.limits.max_body_bytes:
                    raise PayloadTooLarge(limit="max_body_bytes", value=n,
                                          maximum=self.limits.max_body_bytes)
                return ev
            if t is h11.EndOfMessage:
                if len(ev.headers) > self.limits.max_headers:
                    raise HeaderFieldsTooLarge("too many trailer fields", limit="max_headers",
                                               value=len(ev.headers),
                                               maximum=self.limits.max_headers,
                                               code="too_many_trailers")
                self._phase = _DONE
                return ev
            if t is h11.ConnectionClosed:
                self._phase = _CLOSED
                return ev
            if ev is PAUSED:
                self._phase = _SWITCHED
                return ev
            return ev  # pragma: no cover

    def _feed(self) -> bool:
        """Hand h11 the next whole unit of the body that is in the buffer. Returns
        False if nothing could be fed (more bytes needed)."""
        buf = self._buf
        if not buf:
            return False
        fr = self._framing
        h = self._h11
        if fr == "length":
            k = min(len(buf), self._feed_left, _FEED_MAX)
            if k == 0:
                return False
            self._feed_left -= k
        elif fr == "eof":
            k = min(len(buf), _FEED_MAX)
        elif fr == "chunked":
            k = self._chunk_unit()
            if not k:
                return False
        else:
            return False
        if k == len(buf):
            h.receive_data(bytes(buf))
            buf.clear()
        else:
            h.receive_data(bytes(buf[:k]))
            del buf[:k]
        return True

    def _chunk_unit(self) -> int:
        """Size of the next complete chunked-framing unit in the buffer (a chunk-size
        line, part of a chunk's data, the CRLF after it, or the trailer section), or 0.
        Enforces ``max_chunk_line`` at a fixed byte position."""
        buf = self._buf
        st = self._cstate
        lim = self.limits.max_chunk_line
        if st == _C_DATA:
            k = min(len(buf), self._cleft, _FEED_MAX)
            self._cleft -= k
            if self._cleft == 0:
                self._cstate = _C_CRLF
            return k
        if st == _C_CRLF:
            if len(buf) < 2:
                if buf[:1] not in (b"", b"\r"):
                    raise BadRequest("missing CRLF after chunk data", code="bad_chunk")
                return 0
            if buf[:2] != b"\r\n":
                raise BadRequest("missing CRLF after chunk data", code="bad_chunk")
            self._cstate = _C_LINE
            return 2
        if st == _C_LINE:
            j = buf.find(b"\n", 0, lim + 2)
            if j == -1:
                if len(buf) > lim + 1:
                    raise BadRequest(f"chunk-size line longer than {lim} bytes",
                                     code="chunk_line_too_long")
                return 0
            if j == 0 or buf[j - 1] != 13:
                raise BadRequest("bare LF in chunk-size line", code="bare_lf")
            i = j - 1
            line = bytes(buf[:i])
            if b";" not in line and line[-1:] in (b" ", b"\t"):
                # BWS is allowed only before a chunk extension (RFC 9112 §7.1.1)
                raise BadRequest(f"whitespace after chunk size {_excerpt(line)}", code="bad_chunk")
            size_txt = line.split(b";", 1)[0].rstrip(b" \t")
            if not size_txt or len(size_txt) > 16 or not all(
                    c in b"0123456789abcdefABCDEF" for c in size_txt):
                raise BadRequest(f"malformed chunk size {_excerpt(line)}", code="bad_chunk")
            size = int(size_txt, 16)
            if self._body_seen + size > self.limits.max_body_bytes:
                raise PayloadTooLarge(
                    limit="max_body_bytes", value=self._body_seen + size,
                    maximum=self.limits.max_body_bytes)
            if size == 0:
                self._cstate = _C_TRAILER
            else:
                self._cstate = _C_DATA
                self._cleft = size
            return i + 2
        # trailer section: empty line, or field lines ending with an empty line
        if buf[:2] == b"\r\n":
            return 2
        i = buf.find(b"\r\n\r\n", 0, lim + 4)
        if i == -1:
            # bare LF at index p, or too long at index lim+3: whichever comes first
            m = _BARE_LF_RE.search(bytes(buf[:lim + 4]))
            if m is not None:
                raise BadRequest("bare LF in trailer section", code="bare_lf")
            if len(buf) > lim + 3:
                raise HeaderFieldsTooLarge(f"trailer section longer than {lim} bytes",
                                           limit="max_chunk_line", value=len(buf), maximum=lim,
                                           code="trailers_too_large")
            return 0
        block = bytes(buf[:i + 4])
        if _BARE_LF_RE.search(block) is not None:
            raise BadRequest("bare LF in trailer section", code="bare_lf")
        if b"\r\n " in block or b"\r\n\t" in block:
            raise BadRequest("obs-fold in trailer section", code="obs_fold")
        return i + 4

    # -- sending --------------------------------------------------------------------

    def send(self, event) -> bytes:
        """Serialize ``event`` (h11 event types). A server's response head gets
        ``Connection: close`` when this is the last request the connection serves
        (``max_requests_per_connection``) or ``close_after_cycle`` is set.
        Raises ``LocalProtocolError`` on misuse."""
        t = type(event)
        if self.own_send:
            if t is h11.Response:
                hdrs = [(n, v) for _, n, v in event.headers._full_items]
                return self.response_head(event.status_code, hdrs, event.reason)
            if t is h11.InformationalResponse and event.status_code == 100:
                return self.response_continue()
            if t is h11.Data:
                return self.response_data(event.data)
            if t is h11.EndOfMessage and not event.headers:
                return self.response_end()
            raise LocalProtocolError(f"cannot send {t.__name__} on this server connection")
        if self.role == SERVER and (t is h11.Response) and (
                self.close_after_cycle
                or self.messages_received >= self.limits.max_requests_per_connection):
            hdrs = list(event.headers)
            if not any(k == b"connection" and b"close" in v.lower() for k, v in hdrs):
                hdrs.append((b"connection", b"close"))
                event = h11.Response(status_code=event.status_code, headers=hdrs,
                                     reason=event.reason, http_version=event.http_version)
        elif self.role == CLIENT and t is h11.Request:
            self._request_method = event.method.upper() if isinstance(event.method, bytes) \
                else str(event.method).upper().encode()
        try:
            data = self._h11.send(event)
        except h11.LocalProtocolError as e:
            raise LocalProtocolError(str(e)) from None
        return data or b""


    def next_cycle(self) -> bool:
        """``start_next_cycle()`` if the connection is ``reusable`` (own_send server
        connections: both checks in one call, the server's per-request path); returns
        whether it did. Not a checkpoint (sans-IO)."""
        if not (self.own_send and self._error is None and self._phase == _DONE
                and self._ostate == _O_DONE and self._okeep and self._rkeep):
            if self.reusable:  # pragma: no cover - an own_send connection answered above
                self.start_next_cycle()
                return True
            return False
        # _reset_own, _reset_body and the head phase, inlined
        self._ostate = _O_IDLE
        self._oframing = _F_LENGTH
        self._oleft = 0
        self._rmethod = self._rversion = None
        self._r100 = False
        self._phase = _HEAD
        self._framing = self._declared = None
        self._feed_left = self._body_seen = self._cleft = 0
        self._cstate = _C_LINE
        return True

    def end_empty_body(self) -> None:
        """Own_send server: the request just received has no body (``body_framing``
        ``"none"`` or a Content-Length of 0): end it without the ``EndOfMessage``
        event ``next_event`` would return. Raises ``LocalProtocolError`` otherwise."""
        if not (self._phase == _BODY and self.own_send
                and (self._framing == "none" or self._declared == 0)):
            raise LocalProtocolError("end_empty_body outside an empty request body")
        self._phase = _DONE

    def start_next_cycle(self) -> None:
        """Reset for the next request/response exchange. Requires ``reusable``."""
        if not self.reusable:
            raise LocalProtocolError("start_next_cycle on a connection that is not reusable")
        if self.own_send:
            # h11 parsed at most one body and never saw our response: it is replaced
            # when the next body needs it
            self._reset_own()
            self._phase = _HEAD
            self._reset_body()
            return
        self._h11.start_next_cycle()
        self._phase = _HEAD
        self._reset_body()
        self._request_method = None


def _field_values(head: bytes, lower: bytes, name: bytes) -> list[bytes]:
    """Raw values (OWS stripped) of every field ``name`` in a CRLF-normalized head."""
    out = []
    key = b"\n" + name + b":"
    i = lower.find(key)
    while i != -1:
        s = i + len(key)
        e = head.find(b"\r\n", s)
        out.append(head[s:e].strip(b" \t"))
        i = lower.find(key, e)
    return out
