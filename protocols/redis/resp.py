"""A sans-IO RESP codec: RESP2 and the full RESP3 type set, incremental, with limits.

The decoder knows nothing about sockets. ``Decoder.receive_data(data)`` appends bytes;
``Decoder.next_event()`` returns the next complete top-level frame or ``NEED_DATA``.
Feeding the same byte stream split at any points gives the same sequence of frames
(the property tests check every split of every generated stream).

Value mapping (wire type -> Python)::

    +  simple string   SimpleString (a bytes subclass)
    -  simple error    ReplyError (a value, not raised; subclass picked by its code)
    :  integer         int (signed 64-bit, checked)
    $  bulk string     bytes; $-1 -> None;  $? -> streamed, chunks joined to bytes
    *  array           list;  *-1 -> None;  *? -> streamed, ended by "."
    _  null            None
    #  boolean         bool
    ,  double          float (inf, -inf, nan accepted)
    (  big number      BigNumber (an int subclass)
    !  bulk error      ReplyError
    =  verbatim        VerbatimString (bytes subclass with .format, e.g. b"txt")
    %  map             dict (keys made hashable: lists -> tuples, sets -> frozensets)
    ~  set             set  (elements made hashable the same way)
    |  attribute       not a value: merged into ``Decoder.attributes`` of the frame
    >  push            Push (a list subclass); the client routes it out of band

Theory of operation. The decoder consumes whole *tokens* only: a type line
(``X...\\r\\n``) or a bulk payload (``N`` bytes plus CRLF). Aggregates in progress
live on an explicit stack (no recursion, so nesting cannot blow the C stack), a bulk
whose header was read but whose payload has not fully arrived is remembered as
``(type, length)``. So a partial frame is never re-parsed: work is linear in the input
however it is split. Input arrives as a list of chunks that is joined only when the
token being waited for can complete (a newline arrived, or enough bytes for the
pending payload), so a large bulk arriving in many small reads is copied O(1) times.

Limits (``Limits``; every one configurable, defaults in the dataclass) are checked
when a header is read, *before* anything sized by the declared number is allocated or
waited for:

* ``max_bulk_length``     a bulk/verbatim/bulk-error payload, or a whole streamed string
* ``max_aggregate_length`` elements of one aggregate (a map counts key and value)
* ``max_frame_elements``  elements of all aggregates in one top-level frame
* ``max_depth``           aggregate nesting (attributes count)
* ``max_frame_size``      wire bytes of one top-level frame; a declared aggregate
                          count is also checked against it (each element needs >= 3
                          bytes), and a bulk header against what is left of it
* ``max_line_length``     a type line (simple strings and errors included)
* ``max_bignum_digits``   digits of a big number (converting huge decimal strings to
                          int is quadratic, and CPython caps it anyway)

Memory is bounded by these: the bytes buffered while a frame is incomplete never
exceed ``max_frame_size`` plus one ``receive_data`` chunk as long as the caller feeds only
when ``next_event()`` has returned ``NEED_DATA`` (what the client does).

Errors: invalid input raises ``MalformedFrame``, a broken limit raises
``FrameTooLarge`` (both ``ProtocolError``). The decoder is then dead: every later
``next_event()`` raises the same error, because after a framing error nothing that follows
can be trusted.

The encoder side has ``encode_command(args)`` (the array of bulk strings a client
sends; the hot path) and ``encode(value, protocol=3)`` for every type above (used by
tests and the scripted in-lab server).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from ..base import limits as base_limits
from ..base.sansio import NEED_DATA
from .errors import DataError, FrameTooLarge, MalformedFrame, ProtocolError, ReplyError, reply_error

__all__ = [
    "NEED_DATA", "Attributed", "BigNumber", "Decoder", "Limits", "Push", "SimpleString",
    "VerbatimString", "encode", "encode_command", "encode_streamed",
]

KiB = 1024
MiB = 1024 * KiB


# ``NEED_DATA`` is the floor's (``protocols.base.sansio``): one sentinel for every codec.



@dataclass(frozen=True)
class Limits(base_limits.Limits):
    """Decoder limits (a ``protocols.base.Limits``: validated, ``replace()``). Defaults
    are safe for a client talking to a server it does not fully trust: a hostile peer
    can make one connection hold at most about ``max_frame_size`` bytes of input plus
    ``max_frame_elements`` Python objects."""

    positive_ints: ClassVar[tuple[str, ...]] = (
        "max_bulk_length", "max_aggregate_length", "max_frame_elements", "max_depth",
        "max_frame_size", "max_line_length", "max_bignum_digits")

    max_bulk_length: int = 64 * MiB
    max_aggregate_length: int = 1024 * 1024
    max_frame_elements: int = 2 * 1024 * 1024
    max_depth: int = 32
    max_frame_size: int = 128 * MiB
    max_line_length: int = 64 * KiB
    max_bignum_digits: int = 4096


DEFAULT_LIMITS = Limits()


class SimpleString(bytes):
    """A RESP simple string (``+OK``). Compares equal to the same ``bytes``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"SimpleString({bytes.__repr__(self)})"


class VerbatimString(bytes):
    """A RESP3 verbatim string: the text, plus its three-byte ``format`` (b"txt", b"mkd")."""

    format: bytes

    def __new__(cls, data: bytes, format: bytes = b"txt"):
        self = super().__new__(cls, data)
        self.format = format
        return self

    def __repr__(self) -> str:
        return f"VerbatimString({bytes.__repr__(self)}, format={self.format!r})"


class BigNumber(int):
    """A RESP3 big number (``(`` type)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"BigNumber({int.__repr__(self)})"


class Push(list):
    """A RESP3 push frame (``>`` type): out-of-band data such as pub/sub messages."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Push({list.__repr__(self)})"


@dataclass
class Attributed:
    """For the encoder: ``value`` preceded by an attribute frame holding ``attributes``."""

    value: Any
    attributes: dict


_OK = SimpleString(b"OK")
_COMMON = {b"OK": _OK, b"QUEUED": SimpleString(b"QUEUED"), b"PONG": SimpleString(b"PONG")}

# type bytes
_STAR, _DOLLAR, _PLUS, _MINUS, _COLON = 42, 36, 43, 45, 58
_NULL, _BOOL, _DOUBLE, _BIG, _BANG, _EQ = 95, 35, 44, 40, 33, 61
_MAP, _SET, _ATTR, _PUSH, _SEMI, _DOT = 37, 126, 124, 62, 59, 46
_AGG_TYPES = frozenset((_STAR, _MAP, _SET, _ATTR, _PUSH))
_BULK_TYPES = frozenset((_DOLLAR, _BANG, _EQ))
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_DOUBLE_RE = re.compile(rb"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\Z")
_DOUBLE_SPECIAL = {b"inf": math.inf, b"+inf": math.inf, b"-inf": -math.inf,
                   b"nan": math.nan, b"-nan": math.nan, b"+nan": math.nan}


def _parse_len(line: bytes, what: str) -> int:
    if not line.isdigit() or len(line) > 18:
        raise MalformedFrame(f"invalid {what} length {bytes(line[:32])!r}")
    return int(line)


def _parse_int(line: bytes) -> int:
    body = line[1:] if line[:1] in (b"-", b"+") else line
    if not body.isdigit() or len(body) > 19:
        raise MalformedFrame(f"invalid integer {bytes(line[:32])!r}")
    v = int(line)
    if v < _INT64_MIN or v > _INT64_MAX:
        raise MalformedFrame("integer outside the signed 64-bit range")
    return v


def _hashable(x: Any) -> Any:
    if isinstance(x, list):
        return tuple(_hashable(e) for e in x)
    if isinstance(x, dict):
        return tuple((_hashable(k), _hashable(v)) for k, v in x.items())
    if isinstance(x, set):
        return frozenset(x)
    return x


class _Agg:
    __slots__ = ("kind", "n", "items")

    def __init__(self, kind: int, n: int):
        self.kind = kind
        self.n = n  # declared element count (key and value count separately), -1 if streamed
        self.items: list = []


def _finish(agg: _Agg) -> Any:
    kind, items = agg.kind, agg.items
    if kind == _STAR:
        return items
    if kind == _PUSH:
        return Push(items)
    if kind == _SET:
        try:
            return set(items)
        except TypeError:
            return {_hashable(e) for e in items}
    # map or attribute
    if len(items) % 2:
        raise MalformedFrame("map with an odd number of elements")
    it = iter(items)
    try:
        return dict(zip(it, it, strict=True))
    except TypeError:
        it = iter(items)
        return {_hashable(k): v for k, v in zip(it, it, strict=True)}


class Decoder:
    """Incremental RESP2/RESP3 decoder. See the module docstring.

    ``attributes`` holds the attributes (``|`` frames, merged) that came with the
    frame ``next_event()`` returned last, or ``None``.
    """

    __slots__ = ("limits", "attributes", "_buf", "_pos", "_parts", "_plen", "_need",
                 "_nl_wait", "_stack", "_bulk", "_chunks", "_chunks_len", "_frame",
                 "_elements", "_attrs", "_error")

    def __init__(self, limits: Limits | None = None):
        self.limits = limits or DEFAULT_LIMITS
        self.attributes: dict | None = None
        self._buf = b""
        self._pos = 0
        self._parts: list[bytes] = []
        self._plen = 0
        self._need = 0  # bytes needed from _pos before parsing can progress
        self._nl_wait = False  # an incomplete line waits for a newline
        self._stack: list[_Agg] = []
        self._bulk: tuple[int, int] | None = None  # (type byte, length) of a pending payload
        #: a streamed string in progress, assembled in one bytearray (a list of chunk
        #: objects cost ~12x the payload for small chunks)
        self._chunks: bytearray | None = None
        self._chunks_len = 0
        self._frame = 0  # wire bytes consumed by the current top-level frame
        self._elements = 0  # aggregate elements declared/seen in the current frame
        self._attrs: dict | None = None
        self._error: ProtocolError | None = None

    # -- input --------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Append received bytes. Never parses, never raises for bad input
        (``next_event`` does); raises the stored error if the decoder is already dead.
        ``b""`` appends nothing: end of stream is the connection's business (RESP has
        no framing that EOF could complete)."""
        if self._error is not None:
            raise self._error
        if data:
            self._parts.append(bytes(data))
            self._plen += len(data)
            if self._nl_wait and b"\n" in data:
                self._nl_wait = False

    @property
    def buffered(self) -> int:
        """Bytes received and not yet consumed by a complete token."""
        return len(self._buf) - self._pos + self._plen

    @property
    def in_frame(self) -> bool:
        """True while a frame has been started but not completed."""
        return bool(self._stack or self._bulk or self._chunks is not None or self._attrs
                    or self.buffered)

    # -- output -------------------------------------------------------------------------

    def next_event(self) -> Any:
        """Return the next complete top-level frame, or ``NEED_DATA``.

        Raises ``MalformedFrame`` / ``FrameTooLarge`` on invalid input; the decoder
        is dead afterwards. Not a checkpoint (pure computation, bounded by the
        buffered input).
        """
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except ProtocolError as e:
            self._error = e
            raise
        except (ValueError, OverflowError, MemoryError, RecursionError) as e:  # pragma: no cover
            # Defensive: every path above validates before converting; if a bug lets a
            # conversion fail anyway, it is still reported as a protocol error.
            err = MalformedFrame(f"undecodable frame: {type(e).__name__}: {e}")
            self._error = err
            raise err from e

    def _consolidate(self) -> bool:
        """Join pending chunks into the buffer if that lets parsing progress."""
        if self._nl_wait:
            avail = len(self._buf) - self._pos + self._plen
            if avail > self.limits.max_line_length + 2:
                self._line_too_long(avail)
            return False
        if len(self._buf) - self._pos + self._plen < self._need:
            return False
        parts = self._parts
        pos = self._pos
        if pos < len(self._buf):
            parts.insert(0, self._buf[pos:] if pos else self._buf)
        self._buf = parts[0] if len(parts) == 1 else b"".join(parts)
        self._pos = 0
        self._parts = []
        self._plen = 0
        return True

    def _line_too_long(self, n: int):
        raise FrameTooLarge(limit="max_line_length", value=n, maximum=self.limits.max_line_length)

    def _next(self) -> Any:  # noqa: C901 - one flat state machine reads best
        if self._parts:
            if not self._consolidate():
                return NEED_DATA
        elif self._nl_wait or self._need:
            return NEED_DATA
        buf = self._buf
        pos = self._pos
        end = len(buf)
        lim = self.limits
        stack = self._stack
        while True:
            if pos >= end:
                self._buf = b""
                self._pos = 0
                self._need = 0
                return NEED_DATA
            bulk = self._bulk
            if bulk is not None:
                t, n = bulk
                if end - pos < n + 2:
                    self._pos = pos
                    self._need = n + 2
                    return NEED_DATA
                if buf[pos + n:pos + n + 2] != b"\r\n":
                    raise MalformedFrame("bulk payload not followed by CRLF")
                data = buf[pos:pos + n]
                pos += n + 2
                self._frame += n + 2  # checked against max_frame_size at the header
                self._need = 0
                self._bulk = None
                if t == _DOLLAR:
                    value = data
                elif t == _SEMI:
                    self._chunks += data  # one accumulator: memory ~ the payload
                    continue
                elif t == _BANG:
                    value = reply_error(data.decode("utf-8", "replace"))
                else:  # verbatim
                    if n < 4 or data[3] != 58:
                        raise MalformedFrame("verbatim string without a 3-byte format prefix")
                    value = VerbatimString(data[4:], data[:3])
            else:
                nl = buf.find(b"\n", pos, pos + lim.max_line_length + 3)
                if nl < 0:
                    if end - pos > lim.max_line_length + 2:
                        self._line_too_long(end - pos)
                    self._pos = pos
                    self._nl_wait = True
                    return NEED_DATA
                if nl == pos or buf[nl - 1] != 13:
                    raise MalformedFrame("RESP line not terminated by CRLF")
                t = buf[pos]
                line = buf[pos + 1:nl - 1]
                frame = self._frame + nl + 1 - pos
                if frame > lim.max_frame_size:
                    raise FrameTooLarge(limit="max_frame_size", value=frame, maximum=lim.max_frame_size)
                self._frame = frame
                pos = nl + 1
                if self._chunks is not None:
                    if t != _SEMI:
                        raise MalformedFrame("streamed string: expected a ';' chunk")
                    n = _parse_len(line, "chunk")
                    if n == 0:
                        value = bytes(self._chunks)
                        self._chunks = None
                        self._chunks_len = 0
                    else:
                        total = self._chunks_len + n
                        if total > lim.max_bulk_length:
                            raise FrameTooLarge(limit="max_bulk_length", value=total, maximum=lim.max_bulk_length)
                        self._check_frame_room(n + 2)
                        self._chunks_len = total
                        self._bulk = (_SEMI, n)
                        continue
                elif t in _BULK_TYPES:
                    if line == b"?" and t == _DOLLAR:
                        self._chunks = bytearray()
                        self._chunks_len = 0
                        continue
                    if line == b"-1" and t == _DOLLAR:
                        value = None
                    else:
                        n = _parse_len(line, "bulk")
                        if n > lim.max_bulk_length:
                            raise FrameTooLarge(limit="max_bulk_length", value=n, maximum=lim.max_bulk_length)
                        self._check_frame_room(n + 2)
                        self._bulk = (t, n)
                        continue
                elif t in _AGG_TYPES:
                    if line == b"?":
                        self._push(_Agg(t, -1))
                        continue
                    if line == b"-1" and t == _STAR:
                        value = None
                    else:
                        n = _parse_len(line, "aggregate")
                        if t == _MAP or t == _ATTR:
                            n *= 2
                        if n > lim.max_aggregate_length:
                            raise FrameTooLarge(limit="max_aggregate_length", value=n, maximum=lim.max_aggregate_length)
                        el = self._elements + n
                        if el > lim.max_frame_elements:
                            raise FrameTooLarge(limit="max_frame_elements", value=el, maximum=lim.max_frame_elements)
                        self._check_frame_room(3 * n)
                        self._elements = el
                        if n == 0:
                            value = _finish(_Agg(t, 0))
                            if t == _ATTR:
                                self._merge_attrs(value)
                                continue
                        else:
                            self._push(_Agg(t, n))
                            continue
                elif t == _PLUS:
                    if b"\r" in line:
                        raise MalformedFrame("CR inside a simple string")
                    value = _COMMON.get(line) or SimpleString(line)
                elif t == _COLON:
                    value = _parse_int(line)
                elif t == _MINUS:
                    if b"\r" in line:
                        raise MalformedFrame("CR inside a simple error")
                    value = reply_error(line.decode("utf-8", "replace"))
                elif t == _NULL:
                    if line:
                        raise MalformedFrame("null with a payload")
                    value = None
                elif t == _BOOL:
                    if line == b"t":
                        value = True
                    elif line == b"f":
                        value = False
                    else:
                        raise MalformedFrame(f"invalid boolean {bytes(line[:8])!r}")
                elif t == _DOUBLE:
                    value = self._parse_double(line)
                elif t == _BIG:
                    value = self._parse_big(line)
                elif t == _DOT:
                    if line or not stack or stack[-1].n != -1:
                        raise MalformedFrame("'.' outside a streamed aggregate")
                    agg = stack.pop()
                    value = _finish(agg)
                    if agg.kind == _ATTR:
                        self._merge_attrs(value)
                        continue
                else:
                    raise MalformedFrame(f"unknown RESP type byte {t:#04x}")
            # deliver ``value`` to the innermost open aggregate, closing finished ones
            while True:
                if not stack:
                    self._pos = pos
                    self._frame = 0
                    self._elements = 0
                    self.attributes = self._attrs
                    self._attrs = None
                    return value
                agg = stack[-1]
                items = agg.items
                items.append(value)
                if agg.n < 0:
                    k = len(items)
                    if k > lim.max_aggregate_length:
                        raise FrameTooLarge(limit="max_aggregate_length", value=k, maximum=lim.max_aggregate_length)
                    self._elements += 1
                    if self._elements > lim.max_frame_elements:
                        raise FrameTooLarge(limit="max_frame_elements", value=self._elements, maximum=lim.max_frame_elements)
                    break
                if len(items) < agg.n:
                    break
                stack.pop()
                value = _finish(agg)
                if agg.kind == _ATTR:
                    self._merge_attrs(value)
                    break

    def _push(self, agg: _Agg) -> None:
        if len(self._stack) >= self.limits.max_depth:
            raise FrameTooLarge(limit="max_depth", value=len(self._stack) + 1, maximum=self.limits.max_depth)
        self._stack.append(agg)

    def _check_frame_room(self, n: int) -> None:
        need = self._frame + n
        if need > self.limits.max_frame_size:
            raise FrameTooLarge(limit="max_frame_size", value=need, maximum=self.limits.max_frame_size)

    def _merge_attrs(self, attrs: dict) -> None:
        if self._attrs is None:
            self._attrs = attrs
        else:
            self._attrs.update(attrs)

    @staticmethod
    def _parse_double(line: bytes) -> float:
        special = _DOUBLE_SPECIAL.get(line.lower() if len(line) <= 4 else b"")
        if special is not None:
            return special
        if len(line) > 400 or not _DOUBLE_RE.match(line):
            raise MalformedFrame(f"invalid double {bytes(line[:32])!r}")
        return float(line)

    def _parse_big(self, line: bytes) -> BigNumber:
        body = line[1:] if line[:1] in (b"-", b"+") else line
        if not body.isdigit():
            raise MalformedFrame(f"invalid big number {bytes(line[:32])!r}")
        if len(body) > self.limits.max_bignum_digits:
            raise FrameTooLarge(limit="max_bignum_digits", value=len(body), maximum=self.limits.max_bignum_digits)
        try:
            return BigNumber(int(line))
        except ValueError:  # the interpreter's own int-string limit is lower
            raise FrameTooLarge(limit="max_bignum_digits", value=len(body), maximum=self.limits.max_bignum_digits) from None


# -- encoding ----------------------------------------------------------------------------


def _arg_bytes(a: Any) -> bytes:
    t = type(a)
    if t is bytes:
        return a
    if t is str:
        return a.encode()
    if t is int:
        return b"%d" % a
    if t is float:
        if not math.isfinite(a):
            return b"inf" if a > 0 else b"-inf" if a < 0 else b"nan"
        return repr(a).encode()
    if isinstance(a, (bytes, bytearray, memoryview)):
        return bytes(a)
    if isinstance(a, bool) or a is None:
        raise DataError(f"invalid argument {a!r}: convert bools and None to bytes, str or int")
    if isinstance(a, str):
        return str(a).encode()
    if isinstance(a, int):
        return b"%d" % a
    if isinstance(a, float):
        return repr(float(a)).encode()
    raise DataError(f"invalid argument of type {type(a).__name__}: use bytes, str, int or float")


def encode_command(args) -> bytes:
    """Encode one command (a sequence of bytes/str/int/float) as a RESP array of bulk
    strings. Raises ``DataError`` for anything else (``None``, ``bool``, lists)."""
    out = [b"*%d\r\n" % len(args)]
    app = out.append
    for a in args:
        t = type(a)
        if t is bytes:
            b = a
        elif t is str:
            b = a.encode()
        else:
            b = _arg_bytes(a)
        app(b"$%d\r\n" % len(b))
        app(b)
        app(b"\r\n")
    return b"".join(out)


def encode_many(commands) -> bytes:
    """Encode several commands back to back (a pipeline)."""
    return b"".join([encode_command(c) for c in commands])


def _format_double(v: float) -> bytes:
    if math.isnan(v):
        return b"nan"
    if math.isinf(v):
        return b"inf" if v > 0 else b"-inf"
    return repr(v).encode()


def encode(value: Any, protocol: int = 3) -> bytes:
    """Encode any decodable value (see the module table) as one RESP frame.

    ``protocol=2`` maps RESP3-only types to their RESP2 equivalents (maps and sets to
    flat arrays, doubles and big numbers to bulk strings, booleans to integers, null
    to ``$-1``, push to an array; attributes are dropped). Used by tests and by the
    scripted in-lab server; the client itself only sends ``encode_command``.
    """
    out: list[bytes] = []
    _enc(value, out, protocol)
    return b"".join(out)


def _enc(v: Any, out: list, p: int) -> None:  # noqa: C901
    if v is None:
        out.append(b"_\r\n" if p == 3 else b"$-1\r\n")
    elif isinstance(v, Attributed):
        if p == 3:
            out.append(b"|%d\r\n" % len(v.attributes))
            for k, x in v.attributes.items():
                _enc(k, out, p)
                _enc(x, out, p)
        _enc(v.value, out, p)
    elif isinstance(v, bool):
        out.append((b"#t\r\n" if v else b"#f\r\n") if p == 3 else (b":1\r\n" if v else b":0\r\n"))
    elif isinstance(v, BigNumber):
        s = b"%d" % v
        out.append(b"(%s\r\n" % s if p == 3 else b"$%d\r\n%s\r\n" % (len(s), s))
    elif isinstance(v, int):
        out.append(b":%d\r\n" % v)
    elif isinstance(v, float):
        s = _format_double(v)
        out.append(b",%s\r\n" % s if p == 3 else b"$%d\r\n%s\r\n" % (len(s), s))
    elif isinstance(v, SimpleString):
        if b"\r" in v or b"\n" in v:
            raise DataError("a simple string cannot contain CR or LF")
        out.append(b"+%s\r\n" % v)
    elif isinstance(v, VerbatimString):
        if p == 3:
            out.append(b"=%d\r\n%s:%s\r\n" % (len(v) + 4, v.format, bytes(v)))
        else:
            out.append(b"$%d\r\n%s\r\n" % (len(v), bytes(v)))
    elif isinstance(v, (bytes, bytearray, memoryview)):
        b = bytes(v)
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    elif isinstance(v, str):
        b = v.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    elif isinstance(v, ReplyError):
        m = v.message.encode()
        if b"\r" in m or b"\n" in m:
            out.append(b"!%d\r\n%s\r\n" % (len(m), m) if p == 3 else b"-ERR\r\n")
        else:
            out.append(b"-%s\r\n" % m)
    elif isinstance(v, dict):
        out.append((b"%%%d\r\n" % len(v)) if p == 3 else (b"*%d\r\n" % (2 * len(v))))
        for k, x in v.items():
            _enc(k, out, p)
            _enc(x, out, p)
    elif isinstance(v, (set, frozenset)):
        out.append((b"~%d\r\n" if p == 3 else b"*%d\r\n") % len(v))
        for x in v:
            _enc(x, out, p)
    elif isinstance(v, Push):
        out.append((b">%d\r\n" if p == 3 else b"*%d\r\n") % len(v))
        for x in v:
            _enc(x, out, p)
    elif isinstance(v, (list, tuple)):
        out.append(b"*%d\r\n" % len(v))
        for x in v:
            _enc(x, out, p)
    else:
        raise DataError(f"cannot encode {type(v).__name__} as RESP")


def encode_streamed(value: Any, chunk: int = 3) -> bytes:
    """Encode ``value`` with RESP3 *streamed* forms wherever they exist: bytes as
    ``$?`` with ``chunk``-byte ``;`` parts, lists/dicts/sets/pushes as ``*?``/``%?``/
    ``~?``/``>?`` ended by ``.``. Scalars are encoded as by ``encode``."""
    out: list[bytes] = []
    _enc_streamed(value, out, max(1, chunk))
    return b"".join(out)


def _enc_streamed(v: Any, out: list, chunk: int) -> None:
    if type(v) is bytes:
        out.append(b"$?\r\n")
        for i in range(0, len(v), chunk):
            part = v[i:i + chunk]
            out.append(b";%d\r\n%s\r\n" % (len(part), part))
        out.append(b";0\r\n")
    elif isinstance(v, dict):
        out.append(b"%?\r\n")
        for k, x in v.items():
            _enc_streamed(k, out, chunk)
            _enc_streamed(x, out, chunk)
        out.append(b".\r\n")
    elif isinstance(v, (set, frozenset, Push, list)) and not isinstance(v, tuple):
        out.append({set: b"~?\r\n", frozenset: b"~?\r\n", Push: b">?\r\n"}.get(type(v), b"*?\r\n"))
        for x in v:
            _enc_streamed(x, out, chunk)
        out.append(b".\r\n")
    else:
        _enc(v, out, 3)
