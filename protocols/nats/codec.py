"""The NATS client protocol, sans-IO (see ``protocols/base/sansio.py``).

Server to client: ``INFO {json}``, ``MSG <subject> <sid> [reply] <n>`` + payload,
``HMSG <subject> <sid> [reply] <hdr_n> <total_n>`` + headers + payload, ``PING``,
``PONG``, ``+OK``, ``-ERR '<text>'``; every control line ends in CRLF, every payload
is followed by CRLF. Client to server: the ``encode_*`` functions (CONNECT, PUB,
HPUB, SUB, UNSUB, PING, PONG) return bytes.

Totality, bounds, no resynchronisation (the gaps measured in nats-py):

* a control line without CRLF is buffered up to ``max_control_line`` bytes (INFO lines
  up to ``max_info_bytes``, since a cluster's INFO lists its servers), then a
  ``LimitError``: the buffer never grows past the limit plus one read;
* a MSG/HMSG announcing more than the server's ``max_payload`` (from its INFO, capped
  by ``Limits.max_payload``) is a ``LimitError`` before a byte of it is awaited;
* a payload not followed by CRLF is a ``ProtocolError`` (``bad_terminator``), never
  re-read as the next operation;
* an INFO that is not a JSON object is a ``ProtocolError`` (``bad_info``), never a
  ``JSONDecodeError``;
* a bare LF line end, an unknown operation, a malformed number, malformed headers: a
  ``ProtocolError``.

Errors are sticky (every later ``next_event`` raises the same error) and verdicts do
not depend on how the input is split.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..base.limits import Limits as _BaseLimits
from ..base.sansio import NEED_DATA, StickyError
from .errors import LimitError, ProtocolError, UsageError

__all__ = [
    "NEED_DATA", "PING", "PONG", "Err", "Info", "Limits", "Msg", "Ok", "Parser", "Ping", "Pong",
    "encode_connect", "encode_headers", "encode_hpub", "encode_pub", "encode_sub",
    "encode_unsub", "parse_headers",
]

PING = b"PING\r\n"
PONG = b"PONG\r\n"

_MAX_NUMBER_DIGITS = 10  # sizes and sids: more digits than this is not a size we accept

# The parser's fast path: ``MSG <subject> <sid> [<reply>] <n>\r\n`` with single spaces.
# The subject and reply class is the complement of what ``bytes.split()`` splits on,
# and the digit counts are ``_MAX_NUMBER_DIGITS``, so whatever these match the general
# path would parse to the same event (tests/protocols/nats/test_codec.py checks both
# agree).
#: a subject or reply character: anything ``bytes.split()`` does not split on (as a
#: range set, a bitmap lookup per byte in ``re``: the negated set ``[^ \t\n\r\x0b\x0c]``
#: costs ~26 instructions more per byte)
_TOKEN = rb"[\x00-\x08\x0e-\x1f!-\xff]"
# One pattern for both shapes (with and without a reply subject). The quantifiers are
# possessive: a token never contains the space that must follow it, nor a size a
# digit more than ten, so giving characters back could never find another match, and
# not trying saves the backtracking (the optional reply group costs a MSG without a
# reply ~30 ns; two patterns, tried in turn, cost a MSG with one ~120 ns more).
_FAST_MSG = re.compile(rb"MSG (" + _TOKEN + rb"+) ([0-9]{1,10}+) (?:(" + _TOKEN + rb"+) )?"
                       rb"([0-9]{1,10}+)\r\n").match
#: sizes and sids as the fast path meets them most: ``int(b"16")`` costs twice a
#: look-up here (only the canonical spelling is a key: ``b"016"`` still goes to int())
_SMALL_INTS = {b"%d" % i: i for i in range(1024)}
_new = object.__new__
#: byte values for ``in`` tests on bytes (``b" " in b`` first tries its operand as an
#: int and clears the TypeError: ~1.9k instructions per test, a memchr for an int)
_SP, _TAB, _CR, _LF, _COLON = b" \t\r\n:"


@dataclass(frozen=True)
class Limits(_BaseLimits):
    """The codec's limits (safe defaults; ``docs/security.md``).

    ``max_control_line``: longest control line (the server's default, 4096);
    ``max_info_bytes``: longest INFO line; ``max_payload``: the largest payload accepted
    whatever the server's INFO says (the server's own ``max_payload`` applies below it);
    ``max_header_bytes``: the largest header block of an HMSG."""

    positive_ints = ("max_control_line", "max_info_bytes", "max_payload", "max_header_bytes")
    max_control_line: int = 4096
    max_info_bytes: int = 64 * 1024
    max_payload: int = 64 * 1024 * 1024
    max_header_bytes: int = 64 * 1024


class Info(NamedTuple):
    """``INFO``: the server's JSON object."""

    info: dict


class Msg(NamedTuple):
    """``MSG``/``HMSG``. ``headers`` is ``None`` for MSG; for HMSG a dict (last value
    of a repeated name wins; all values in ``Msg.raw_headers`` order via
    :func:`parse_headers`), ``status``/``description`` from the ``NATS/1.0`` line."""

    subject: str
    sid: int
    reply: str | None
    payload: bytes
    headers: dict | None = None
    status: int | None = None
    description: str | None = None


class Ping(NamedTuple):
    pass


class Pong(NamedTuple):
    pass


class Ok(NamedTuple):
    pass


class Err(NamedTuple):
    """``-ERR``: the server's error text (quotes removed)."""

    message: str


_PING_EV = Ping()
_PONG_EV = Pong()
_OK_EV = Ok()


def _num(tok: bytes, what: str) -> int:
    if not tok or len(tok) > _MAX_NUMBER_DIGITS or not tok.isdigit():
        raise ProtocolError(f"nats: malformed {what} {_excerpt(tok)}", code="bad_control_line")
    return int(tok)


def _excerpt(b: bytes, n: int = 40) -> str:
    s = repr(bytes(b[:n]))
    return s + ("..." if len(b) > n else "")


def parse_headers(block: bytes) -> tuple[int | None, str | None, list[tuple[str, str]]]:
    """Parse an HMSG header block (``NATS/1.0[ status[ description]]\\r\\n`` then
    ``Name: value\\r\\n`` lines and an empty line). Returns ``(status, description,
    [(name, value), ...])``; a malformed block is a ``ProtocolError`` (``bad_headers``)."""
    if not block.startswith(b"NATS/1.0") or not block.endswith(b"\r\n\r\n"):
        raise ProtocolError(f"nats: malformed header block {_excerpt(block)}", code="bad_headers")
    lines = block[:-4].split(b"\r\n")
    first = lines[0][8:]
    status = description = None
    if first:
        if first[:1] != b" ":
            raise ProtocolError(f"nats: malformed header version line {_excerpt(lines[0])}",
                                code="bad_headers")
        parts = first[1:].split(b" ", 1)
        code = parts[0]
        if len(code) != 3 or not code.isdigit():
            raise ProtocolError(f"nats: malformed header status {_excerpt(code)}", code="bad_headers")
        status = int(code)
        if len(parts) > 1:
            description = parts[1].decode("utf-8", "replace").strip() or None
    out = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or _LF in line or _CR in line or name.strip() != name:
            raise ProtocolError(f"nats: malformed header line {_excerpt(line)}", code="bad_headers")
        out.append((name.decode("utf-8", "replace"), value.strip().decode("utf-8", "replace")))
    return status, description, out


class Parser:
    """Server-to-client operations from bytes (the sans-IO convention).

    Events: :class:`Info`, :class:`Ping`, :class:`Pong`, :class:`Ok`, :class:`Err`,
    and :class:`Msg` (or what ``msg_factory`` builds).

    ``msg_class`` (optional) is the fast way to build plain MSGs: an instance is made
    with ``object.__new__(msg_class)`` (no ``__init__`` call) and given ``subject``,
    ``sid``, ``reply`` and ``data``; anything else it has must come from its class.
    HMSGs are still built by ``msg_factory``.

    ``max_payload`` starts at ``limits.max_payload`` and drops to the server's
    ``max_payload`` when an INFO announces one (never above the configured cap)."""

    __slots__ = ("limits", "max_payload", "_buf", "_pos", "_error", "_eof", "_msg", "_line_cap",
                 "_parts", "_have", "_need", "_cls")

    def __init__(self, limits: Limits | None = None, msg_factory: Any = None,
                 msg_class: type | None = None) -> None:
        self.limits = limits or Limits()
        #: builds the MSG/HMSG events: ``factory(subject, sid, reply, payload[, headers,
        #: status, description])``; default :class:`Msg` (a client passes its own
        #: message class to save a copy per message)
        self._msg = msg_factory or Msg
        self._cls = msg_class
        self.max_payload = self.limits.max_payload
        self._line_cap = self.limits.max_control_line + 2  # the fast path's line bound
        # The buffer is immutable bytes (a payload is then one slice: one copy, no
        # bytearray in between). Received data is appended by concatenating the
        # unconsumed rest (bounded by a control line, or by one announced payload) ...
        self._buf = b""
        self._pos = 0
        # ... except while a payload announced by a MSG/HMSG line is incomplete: the
        # chunks are collected in ``_parts`` (``_have`` bytes) and joined once
        # ``_need`` bytes (line, payload, CRLF) are there: linear, however small the
        # chunks.
        self._parts: list | None = None
        self._have = 0
        self._need = 0
        self._error = StickyError()
        self._eof = False

    @property
    def buffered(self) -> int:
        """Bytes received and not yet consumed by an event."""
        if self._parts is not None:
            return self._have
        return len(self._buf) - self._pos

    @property
    def eof(self) -> bool:
        return self._eof

    def receive_data(self, data: bytes) -> None:
        """Append bytes from the server; ``b""`` means EOF."""
        if not data:
            self._eof = True
            return
        data = bytes(data)  # (no copy for bytes)
        parts = self._parts
        if parts is not None:
            parts.append(data)
            self._have += len(data)
            if self._have >= self._need:
                self._buf = b"".join(parts)
                self._parts = None
                self._need = 0
            return
        buf = self._buf
        pos = self._pos
        self._pos = 0
        if pos == len(buf):
            self._buf = data
            self._need = 0
            return
        rest = len(buf) - pos
        if self._need > rest + len(data):
            # an announced payload, still incomplete: collect, join once it is whole
            self._parts = [buf[pos:], data]
            self._have = rest + len(data)
            self._buf = b""
            return
        self._buf = buf[pos:] + data
        self._need = 0

    def next_event(self) -> Any:
        """The next operation, or ``NEED_DATA``; a ``ProtocolError`` (sticky) when the
        bytes are not valid NATS."""
        evs = self.next_events(1)
        return evs[0] if evs else NEED_DATA

    def next_events(self, limit: int = 512) -> list:
        """Up to ``limit`` operations at once, in order; ``[]`` when more data is
        needed. The same events and verdicts as calling :meth:`next_event` until
        ``NEED_DATA`` (tests/protocols/nats/test_codec.py checks it), cheaper per
        message. A ``ProtocolError`` met after some events is raised by the next
        call, once those events are returned (and then sticks, as always)."""
        if self._error.error is not None:
            raise self._error.error
        buf = self._buf
        pos = self._pos
        end = len(buf)
        if pos >= end:
            return []  # (the reader's every other call: all consumed, before its recv)
        out: list = []
        append = out.append
        match = _FAST_MSG
        ints = _SMALL_INTS.get
        make = self._msg
        cls = self._cls
        cap = self._line_cap
        max_payload = self.max_payload
        while pos < end:
            m = match(buf, pos)
            if m is not None:
                # the fast path: a whole, single-spaced, upper-case MSG
                p = m.end()
                if p - pos <= cap:
                    subject, sid, reply, n = m.groups()
                    size = ints(n)
                    if size is None:
                        size = int(n)
                    q = p + size
                    if size <= max_payload and end - q >= 2 and buf[q] == 13 and buf[q + 1] == 10:
                        try:  # (strict is cheaper; the same str for valid UTF-8)
                            subject = subject.decode()
                            if reply is not None:
                                reply = reply.decode()
                        except UnicodeDecodeError:
                            subject = m.group(1).decode("utf-8", "replace")
                            if reply is not None:
                                reply = reply.decode("utf-8", "replace")
                        sidn = ints(sid)
                        if sidn is None:
                            sidn = int(sid)
                        if cls is not None:
                            ev = _new(cls)
                            ev.subject = subject
                            ev.sid = sidn
                            ev.reply = reply
                            ev.data = buf[p:q]
                            append(ev)
                        else:
                            append(make(subject, sidn, reply, buf[p:q]))
                        pos = q + 2
                        if len(out) >= limit:
                            break
                        continue
            self._pos = pos
            try:
                ev = self._next()
            except ProtocolError as e:
                self._error.set(e)
                if out:
                    return out
                raise
            except (ValueError, RecursionError, UnicodeDecodeError) as e:  # defence in depth
                err = ProtocolError(f"nats: malformed input ({type(e).__name__})", code="malformed")
                self._error.set(err)
                if out:
                    return out
                raise err from None
            if ev is NEED_DATA:
                return out
            append(ev)
            pos = self._pos
            max_payload = self.max_payload  # an INFO may have lowered it
            if len(out) >= limit:
                return out
        self._pos = pos
        return out

    def _line(self) -> bytes | None:
        buf = self._buf
        pos = self._pos
        lim = self.limits.max_control_line
        end = buf.find(b"\n", pos, pos + lim + 2)
        if end < 0:
            have = len(buf) - pos
            if have <= lim + 1:
                return None
            if buf[pos:pos + 5].upper() == b"INFO ":
                ilim = max(self.limits.max_info_bytes, lim)
                end = buf.find(b"\n", pos, pos + ilim + 2)
                if end < 0:
                    if have <= ilim + 1:
                        return None
                    raise LimitError(limit="max_info_bytes", maximum=ilim)
            else:
                raise LimitError(limit="max_control_line", maximum=lim)
        if end == pos or buf[end - 1] != 13:
            raise ProtocolError(f"nats: control line not ended by CRLF: "
                                f"{_excerpt(buf[pos:end + 1])}", code="bad_control_line")
        line = buf[pos:end - 1]
        self._pos = end + 1
        return line

    def _next(self) -> Any:
        buf = self._buf
        pos = self._pos
        if len(buf) == pos:
            return NEED_DATA
        start = pos
        line = self._line()
        if line is None:
            return NEED_DATA
        op = line[:4].upper()
        if op == b"MSG ":
            parts = line[4:].split()
            if len(parts) == 3:
                subject, sid, n = parts
                reply = None
            elif len(parts) == 4:
                subject, sid, reply, n = parts
            else:
                raise ProtocolError(f"nats: malformed MSG {_excerpt(line)}", code="bad_control_line")
            size = _num(n, "MSG size")
            if size > self.max_payload:
                raise LimitError(limit="max_payload", value=size, maximum=self.max_payload)
            sidn = _num(sid, "sid")
            p = self._pos
            if len(buf) - p < size + 2:
                self._pos = start  # re-parse the line when the payload is here
                self._need = p - start + size + 2
                return NEED_DATA
            if buf[p + size] != 13 or buf[p + size + 1] != 10:
                raise ProtocolError("nats: MSG payload not followed by CRLF", code="bad_terminator")
            payload = buf[p:p + size]
            self._pos = p + size + 2
            subject = subject.decode("utf-8", "replace")
            reply = None if reply is None else reply.decode("utf-8", "replace")
            cls = self._cls
            if cls is None:
                return self._msg(subject, sidn, reply, payload)
            ev = _new(cls)
            ev.subject, ev.sid, ev.reply, ev.data = subject, sidn, reply, payload
            return ev
        if op == b"HMSG":
            if line[4:5] not in (b" ", b"\t"):
                raise ProtocolError(f"nats: unknown operation {_excerpt(line)}", code="unknown_op")
            parts = line[5:].split()
            if len(parts) == 4:
                subject, sid, hn, n = parts
                reply = None
            elif len(parts) == 5:
                subject, sid, reply, hn, n = parts
            else:
                raise ProtocolError(f"nats: malformed HMSG {_excerpt(line)}", code="bad_control_line")
            hsize = _num(hn, "HMSG header size")
            size = _num(n, "HMSG size")
            if size > self.max_payload:
                raise LimitError(limit="max_payload", value=size, maximum=self.max_payload)
            if hsize > size:
                raise ProtocolError(f"nats: HMSG header size {hsize} > total {size}",
                                    code="bad_control_line")
            if hsize > self.limits.max_header_bytes:
                raise LimitError(limit="max_header_bytes", value=hsize,
                                 maximum=self.limits.max_header_bytes)
            sidn = _num(sid, "sid")
            p = self._pos
            if len(buf) - p < size + 2:
                self._pos = start
                self._need = p - start + size + 2
                return NEED_DATA
            if buf[p + size] != 13 or buf[p + size + 1] != 10:
                raise ProtocolError("nats: HMSG payload not followed by CRLF", code="bad_terminator")
            status, desc, pairs = parse_headers(buf[p:p + hsize])
            payload = buf[p + hsize:p + size]
            self._pos = p + size + 2
            return self._msg(subject.decode("utf-8", "replace"), sidn,
                       None if reply is None else reply.decode("utf-8", "replace"), payload,
                       dict(pairs), status, desc)
        u = line.upper()
        if u == b"PING":
            return _PING_EV
        if u == b"PONG":
            return _PONG_EV
        if u == b"+OK":
            return _OK_EV
        if u.startswith(b"-ERR"):
            text = line[4:].strip()
            if len(text) >= 2 and text[:1] == b"'" and text[-1:] == b"'":
                text = text[1:-1]
            return Err(text.decode("utf-8", "replace"))
        if u.startswith(b"INFO") and line[4:5] in (b" ", b"\t"):
            try:
                info = json.loads(line[5:])
            except (ValueError, RecursionError, UnicodeDecodeError):
                raise ProtocolError(f"nats: INFO is not valid JSON: {_excerpt(line)}",
                                    code="bad_info") from None
            if not isinstance(info, dict):
                raise ProtocolError(f"nats: INFO is not a JSON object: {_excerpt(line)}",
                                    code="bad_info")
            mp = info.get("max_payload")
            if mp is not None:
                if isinstance(mp, bool) or not isinstance(mp, int) or mp <= 0:
                    raise ProtocolError(f"nats: INFO max_payload {mp!r} is not a positive int",
                                        code="bad_info")
                self.max_payload = min(mp, self.limits.max_payload)
            return Info(info)
        raise ProtocolError(f"nats: unknown operation {_excerpt(line)}", code="unknown_op")


# -- client to server -----------------------------------------------------------------------


def validate_token(s: str | bytes, what: str) -> bytes:
    """``s`` as bytes if it is a valid subject/reply/queue token (non-empty, no
    whitespace), else a ``UsageError`` (a space or CRLF would inject a second
    operation)."""
    b = s.encode() if isinstance(s, str) else bytes(s)
    if not b or _SP in b or _TAB in b or _CR in b or _LF in b:
        raise UsageError(f"nats: invalid {what} {s!r} (empty, or contains whitespace)")
    return b


def encode_connect(options: dict) -> bytes:
    """``CONNECT {json}``."""
    return b"CONNECT " + json.dumps(options, separators=(",", ":")).encode() + b"\r\n"


def encode_pub(subject: str | bytes, payload: bytes, reply: str | bytes | None = None) -> bytes:
    """``PUB`` with its payload: one contiguous frame (never written in part to a
    connection that stays in use)."""
    s = validate_token(subject, "subject")
    if reply:
        r = validate_token(reply, "reply subject")
        return b"PUB %s %s %d\r\n%s\r\n" % (s, r, len(payload), payload)
    return b"PUB %s %d\r\n%s\r\n" % (s, len(payload), payload)


def encode_headers(headers: dict | None, status: str | None = None) -> bytes:
    """A ``NATS/1.0`` header block; names and values may not contain CR or LF (a
    ``UsageError``: header injection)."""
    out = [b"NATS/1.0" + (b" " + status.encode() if status else b"") + b"\r\n"]
    for k, v in (headers or {}).items():
        values = v if isinstance(v, (list, tuple)) else (v,)
        kb = str(k).encode()
        if not kb or _COLON in kb or any(c in kb for c in b" \t\r\n"):
            raise UsageError(f"nats: invalid header name {k!r}")
        for one in values:
            vb = str(one).encode()
            if _CR in vb or _LF in vb:
                raise UsageError(f"nats: header value for {k!r} contains CR or LF")
            out.append(kb + b": " + vb + b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def encode_hpub(subject: str | bytes, payload: bytes, headers: dict | None,
                reply: str | bytes | None = None) -> bytes:
    """``HPUB`` with headers and payload, one contiguous frame."""
    s = validate_token(subject, "subject")
    h = encode_headers(headers)
    total = len(h) + len(payload)
    if reply:
        r = validate_token(reply, "reply subject")
        return b"HPUB %s %s %d %d\r\n%s%s\r\n" % (s, r, len(h), total, h, payload)
    return b"HPUB %s %d %d\r\n%s%s\r\n" % (s, len(h), total, h, payload)


def encode_sub(subject: str | bytes, sid: int, queue: str | bytes | None = None) -> bytes:
    s = validate_token(subject, "subject")
    if queue:
        return b"SUB %s %s %d\r\n" % (s, validate_token(queue, "queue group"), sid)
    return b"SUB %s %d\r\n" % (s, sid)


def encode_unsub(sid: int, max_msgs: int | None = None) -> bytes:
    if max_msgs:
        return b"UNSUB %d %d\r\n" % (sid, max_msgs)
    return b"UNSUB %d\r\n" % sid
