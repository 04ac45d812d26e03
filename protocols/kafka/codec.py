"""Kafka's wire encoding, sans-IO: primitive types, message bodies by schema, headers
and length-prefixed framing.

Theory of operation
-------------------
Every Kafka request and response is a *message* described by a schema
(``_messages.MESSAGES``, generated from Apache Kafka's JSON definitions): a list of
fields, each present in a range of versions. Versions at or above a message's
``flexible`` version use the compact encoding (unsigned-varint lengths offset by one,
and a *tagged-field* section at the end of every struct, which is how Kafka adds
optional fields without a version bump). :func:`encode_message` and
:func:`decode_message` interpret the schema for one version; values are plain dicts
keyed by the field names in snake_case (``error_code``, ``partition_index``), nested
structs are dicts, arrays are lists.

Decoding is total and bounded: it works on one *frame* whose size was checked
against ``max_frame_bytes`` from its 4-byte prefix before any of it was buffered
(:class:`FrameDecoder`), and every length or count read inside a frame is checked
against the bytes that remain before anything is allocated for it, so a frame of N
bytes can never make the decoder allocate more than a small multiple of N. Any
violation raises :class:`~.errors.KafkaProtocolError` (unknown tagged fields are
skipped, as the protocol requires).

Headers: request header v1 (``api_key``, ``api_version``, ``correlation_id``,
``client_id`` as a classic nullable string) for classic versions and v2 (v1 plus tagged
fields) for flexible ones; response header v0 (``correlation_id``) or v1 (plus tagged
fields) — except that ApiVersions responses always use header v0, so a client can
read the answer of a broker that does not know the version it asked for.

This module imports no greenrt: it is the codec the client drives, the fuzz target
exercises and the lab can feed byte by byte.
"""

from __future__ import annotations

import re
import struct
import uuid
from typing import Any

from ..base.sansio import NEED_DATA, StickyError
from ._messages import MESSAGES
from .errors import KafkaLimitError, KafkaProtocolError

__all__ = [
    "API_KEYS", "FrameDecoder", "Reader", "Writer", "decode_message", "decode_response_header",
    "encode_message", "encode_request", "request_header_version", "response_header_version",
    "snake",
]

_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_U16 = struct.Struct(">H")
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
_F64 = struct.Struct(">d")

_SNAKE_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake(name: str) -> str:
    """``PartitionIndex`` -> ``partition_index``; ``ThrottleTimeMs`` -> ``throttle_time_ms``.
    Memoised: the schema's field names are a fixed set, converted once each (the
    schema interpreter asks for every field of every message it encodes or decodes)."""
    s = _SNAKE.get(name)
    if s is None:
        s = _SNAKE_RE.sub("_", name).lower()
        if len(_SNAKE) < 4096:  # bounded: a caller's names beyond the schema's are not kept
            _SNAKE[name] = s
    return s


_SNAKE: dict[str, str] = {}


#: api name (``"Produce"``) -> api key
API_KEYS = {n[:-len("Request")]: m["api_key"] for n, m in MESSAGES.items() if n.endswith("Request")}


# -- primitives ---------------------------------------------------------------------


class Writer:
    """Appends encoded primitives to a bytearray."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def int8(self, v: int) -> None:
        self.buf += _I8.pack(v)

    def int16(self, v: int) -> None:
        self.buf += _I16.pack(v)

    def uint16(self, v: int) -> None:
        self.buf += _U16.pack(v)

    def int32(self, v: int) -> None:
        self.buf += _I32.pack(v)

    def uint32(self, v: int) -> None:
        self.buf += _U32.pack(v)

    def int64(self, v: int) -> None:
        self.buf += _I64.pack(v)

    def float64(self, v: float) -> None:
        self.buf += _F64.pack(v)

    def uvarint(self, v: int) -> None:
        if v < 0:
            raise ValueError("uvarint of a negative number")
        while v >= 0x80:
            self.buf.append((v & 0x7F) | 0x80)
            v >>= 7
        self.buf.append(v)

    def varint(self, v: int) -> None:
        self.uvarint((v << 1) ^ (v >> 63))  # zigzag

    def raw(self, b: bytes) -> None:
        self.buf += b


class Reader:
    """Reads primitives from one frame; every read is bounds-checked.

    ``KafkaProtocolError("truncated")`` for a read past the end; lengths and counts
    are checked against what remains before anything is allocated for them.
    """

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes | bytearray | memoryview, pos: int = 0, end: int | None = None):
        self.data = memoryview(data) if not isinstance(data, memoryview) else data
        self.pos = pos
        self.end = len(self.data) if end is None else end

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def _take(self, n: int) -> memoryview:
        if n < 0 or n > self.end - self.pos:
            raise KafkaProtocolError(f"truncated: need {n} bytes, {self.end - self.pos} left",
                                     code="truncated")
        p = self.pos
        self.pos = p + n
        return self.data[p:p + n]

    def _unpack(self, s: struct.Struct) -> Any:
        p = self.pos
        if s.size > self.end - p:
            raise KafkaProtocolError("truncated primitive", code="truncated")
        self.pos = p + s.size
        return s.unpack_from(self.data, p)[0]

    def int8(self) -> int:
        return self._unpack(_I8)

    def int16(self) -> int:
        return self._unpack(_I16)

    def uint16(self) -> int:
        return self._unpack(_U16)

    def int32(self) -> int:
        return self._unpack(_I32)

    def uint32(self) -> int:
        return self._unpack(_U32)

    def int64(self) -> int:
        return self._unpack(_I64)

    def float64(self) -> float:
        return self._unpack(_F64)

    def uvarint(self, max_bits: int = 35) -> int:
        """An unsigned varint of at most ``max_bits`` bits (35 for 32-bit values, 70 for
        64-bit): a longer one is malformed, never a long loop."""
        v = 0
        shift = 0
        data, p, end = self.data, self.pos, self.end
        while True:
            if p >= end:
                raise KafkaProtocolError("truncated varint", code="truncated")
            b = data[p]
            p += 1
            v |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
            if shift >= max_bits:
                raise KafkaProtocolError("varint too long", code="bad_varint")
        self.pos = p
        return v

    def varint(self) -> int:
        v = self.uvarint()
        if v >= 1 << 32:
            raise KafkaProtocolError("varint out of range", code="bad_varint")
        return (v >> 1) ^ -(v & 1)

    def varlong(self) -> int:
        v = self.uvarint(70)
        if v >= 1 << 64:
            raise KafkaProtocolError("varlong out of range", code="bad_varint")
        return (v >> 1) ^ -(v & 1)

    def raw(self, n: int) -> bytes:
        return bytes(self._take(n))

    def view(self, n: int) -> memoryview:
        return self._take(n)


# -- schema-driven messages -----------------------------------------------------------

def _in(v: int, rng: tuple[int, int] | None) -> bool:
    return rng is not None and rng[0] <= v <= rng[1]


_INT_DEFAULTS = {"int8", "int16", "int32", "int64", "uint16", "uint32"}


def _default(typ: str, default: str | None) -> Any:
    if typ.startswith("[]"):
        return []
    if default == "null":
        return None
    if typ in _INT_DEFAULTS:
        if default is None:
            return 0
        return int(default, 0) if isinstance(default, str) else int(default)
    if typ == "float64":
        return float(default) if default is not None else 0.0
    if typ == "bool":
        return default == "true"
    if typ == "string":
        return default if default is not None else ""
    if typ in ("bytes", "records"):
        return b""
    if typ == "uuid":
        return uuid.UUID(int=0)
    return None  # a struct: encoded from its own defaults


def _write_value(w: Writer, typ: str, value: Any, nullable: bool, flex: bool, kids, version: int) -> None:
    if typ == "int32":
        w.int32(value)
    elif typ == "int16":
        w.int16(value)
    elif typ == "int64":
        w.int64(value)
    elif typ == "int8":
        w.int8(value)
    elif typ == "bool":
        w.int8(1 if value else 0)
    elif typ == "string":
        if value is None:
            if not nullable:
                raise ValueError("null for a non-nullable string")
            w.uvarint(0) if flex else w.int16(-1)
            return
        b = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        if len(b) > 32767:
            raise ValueError("string longer than 32767 bytes")
        w.uvarint(len(b) + 1) if flex else w.int16(len(b))
        w.raw(b)
    elif typ in ("bytes", "records"):
        if value is None:
            if not nullable:
                raise ValueError("null for non-nullable bytes")
            w.uvarint(0) if flex else w.int32(-1)
            return
        b = bytes(value)
        w.uvarint(len(b) + 1) if flex else w.int32(len(b))
        w.raw(b)
    elif typ == "uuid":
        w.raw((value or uuid.UUID(int=0)).bytes)
    elif typ == "uint16":
        w.uint16(value)
    elif typ == "uint32":
        w.uint32(value)
    elif typ == "float64":
        w.float64(value)
    elif typ.startswith("[]"):
        if value is None:
            if not nullable:
                raise ValueError("null for a non-nullable array")
            w.uvarint(0) if flex else w.int32(-1)
            return
        w.uvarint(len(value) + 1) if flex else w.int32(len(value))
        et = typ[2:]
        for item in value:
            if kids is not None:
                _write_struct(w, kids, item, version, flex)
            else:
                _write_value(w, et, item, False, flex, None, version)
    elif kids is not None:
        _write_struct(w, kids, value or {}, version, flex)
    else:
        raise ValueError(f"unknown type {typ!r}")


def _write_struct(w: Writer, fields, obj: dict, version: int, flex: bool) -> None:
    tagged = []
    for name, typ, vers, nvers, tag, tvers, default, kids in fields:
        if not _in(version, vers):
            continue
        key = snake(name)
        value = obj.get(key, _default(typ, default)) if isinstance(obj, dict) else getattr(obj, key)
        if tag is not None:
            if flex and _in(version, tvers) and value != _default(typ, default) and value is not None:
                sub = Writer()
                _write_value(sub, typ, value, _in(version, nvers), flex, kids, version)
                tagged.append((tag, sub.buf))
            continue
        _write_value(w, typ, value, _in(version, nvers), flex, kids, version)
    if flex:
        w.uvarint(len(tagged))
        for tag, data in sorted(tagged):
            w.uvarint(tag)
            w.uvarint(len(data))
            w.raw(data)


def _read_len(r: Reader, flex: bool, wide: bool) -> int:
    """A length or count: -1 for null. Checked against the bytes left in the frame."""
    if flex:
        n = r.uvarint() - 1
    else:
        n = r.int32() if wide else r.int16()
    if n < -1:
        raise KafkaProtocolError(f"negative length {n}", code="bad_length")
    if n > r.remaining:
        raise KafkaProtocolError(f"length {n} exceeds the {r.remaining} bytes left in the frame",
                                 code="bad_length")
    return n


def _read_value(r: Reader, typ: str, nullable: bool, flex: bool, kids, version: int) -> Any:
    if typ == "int32":
        return r.int32()
    if typ == "int16":
        return r.int16()
    if typ == "int64":
        return r.int64()
    if typ == "int8":
        return r.int8()
    if typ == "bool":
        return r.int8() != 0
    if typ == "string":
        n = _read_len(r, flex, False)
        if n == -1:
            if not nullable:
                raise KafkaProtocolError("null in a non-nullable string", code="unexpected_null")
            return None
        try:
            return bytes(r.view(n)).decode("utf-8")
        except UnicodeDecodeError:
            raise KafkaProtocolError("string is not UTF-8", code="bad_string") from None
    if typ in ("bytes", "records"):
        n = _read_len(r, flex, True)
        if n == -1:
            if not nullable:
                raise KafkaProtocolError("null in non-nullable bytes", code="unexpected_null")
            return None
        return bytes(r.view(n))
    if typ == "uuid":
        return uuid.UUID(bytes=r.raw(16))
    if typ == "uint16":
        return r.uint16()
    if typ == "uint32":
        return r.uint32()
    if typ == "float64":
        return r.float64()
    if typ.startswith("[]"):
        n = _read_len(r, flex, True)
        if n == -1:
            if not nullable:
                raise KafkaProtocolError("null in a non-nullable array", code="unexpected_null")
            return None
        et = typ[2:]
        if kids is not None:
            return [_read_struct(r, kids, version, flex) for _ in range(n)]
        return [_read_value(r, et, False, flex, None, version) for _ in range(n)]
    if kids is not None:
        return _read_struct(r, kids, version, flex)
    raise KafkaProtocolError(f"unknown type {typ!r}", code="schema")


def _read_struct(r: Reader, fields, version: int, flex: bool) -> dict:
    out: dict[str, Any] = {}
    tagged: dict[int, tuple] = {}
    for f in fields:
        name, typ, vers, nvers, tag, tvers, default, kids = f
        if not _in(version, vers):
            continue
        if tag is not None:
            out[snake(name)] = _default(typ, default)
            if flex and _in(version, tvers):
                tagged[tag] = f
            continue
        out[snake(name)] = _read_value(r, typ, _in(version, nvers), flex, kids, version)
    if flex:
        count = r.uvarint()
        if count > r.remaining:
            raise KafkaProtocolError("tagged-field count exceeds the frame", code="bad_length")
        last = -1
        for _ in range(count):
            tag = r.uvarint()
            if tag <= last:
                raise KafkaProtocolError("tagged fields out of order", code="bad_tag")
            last = tag
            size = r.uvarint()
            body = Reader(r.data, r.pos, r.pos + size) if size <= r.remaining else None
            if body is None:
                raise KafkaProtocolError("tagged field exceeds the frame", code="bad_length")
            r.pos += size
            f = tagged.get(tag)
            if f is None:
                continue  # unknown tagged field: skipped, as the protocol requires
            name, typ, vers, nvers, _, _, _, kids = f
            out[snake(name)] = _read_value(body, typ, _in(version, nvers), flex, kids, version)
            if body.remaining:
                raise KafkaProtocolError(f"tagged field {name} has trailing bytes", code="bad_tag")
    return out


def _schema(name: str, version: int) -> tuple[tuple, bool]:
    try:
        m = MESSAGES[name]
    except KeyError:
        raise ValueError(f"unknown Kafka message {name!r}") from None
    lo, hi = m["versions"]
    if not lo <= version <= hi:
        raise ValueError(f"{name} version {version} is not supported (supported: {lo}-{hi})")
    flex = m["flexible"] is not None and version >= m["flexible"]
    return m["fields"], flex


def encode_message(name: str, version: int, obj: dict) -> bytes:
    """The body of message ``name`` (``"ProduceRequest"``) at ``version`` from a dict
    keyed by snake_case field names (missing fields take their schema defaults)."""
    fields, flex = _schema(name, version)
    if name == "ProduceRequest" and isinstance(obj, dict):
        fast = _encode_produce(version, obj)
        if fast is not None:
            return fast
    w = Writer()
    _write_struct(w, fields, obj, version, flex)
    return bytes(w.buf)


def decode_message(name: str, version: int, data: bytes | memoryview, *, exact: bool = True) -> dict:
    """Decode a message body; ``exact`` requires that nothing is left over."""
    fields, flex = _schema(name, version)
    if name == "ProduceResponse":
        try:
            return _decode_produce(version, data, exact)
        except _NotPlain:
            pass
    r = Reader(data)
    try:
        out = _read_struct(r, fields, version, flex)
    except RecursionError:
        raise KafkaProtocolError("message nested too deeply", code="bad_length") from None
    if exact and r.remaining:
        raise KafkaProtocolError(f"{r.remaining} trailing bytes after {name}", code="trailing_bytes")
    return out


def request_header_version(api: str, version: int) -> int:
    f = MESSAGES[f"{api}Request"]["flexible"]
    return 2 if f is not None and version >= f else 1


def response_header_version(api: str, version: int) -> int:
    if api == "ApiVersions":
        return 0  # always: see the module docstring
    f = MESSAGES[f"{api}Response"]["flexible"]
    return 1 if f is not None and version >= f else 0


def encode_request(api: str, version: int, correlation_id: int, client_id: str | None,
                   body: dict) -> bytes:
    """A whole request frame: 4-byte size, header, body."""
    w = Writer()
    w.int16(API_KEYS[api])
    w.int16(version)
    w.int32(correlation_id)
    if client_id is None:
        w.int16(-1)
    else:
        cb = client_id.encode("utf-8")
        w.int16(len(cb))
        w.raw(cb)
    if request_header_version(api, version) == 2:
        w.uvarint(0)  # no tagged fields in the header
    w.raw(encode_message(f"{api}Request", version, body))
    return _I32.pack(len(w.buf)) + bytes(w.buf)


def decode_response_header(frame: bytes | memoryview, api: str, version: int) -> tuple[int, memoryview]:
    """``(correlation_id, body)`` of a response frame (without its size prefix)."""
    r = Reader(frame)
    cid = r.int32()
    if response_header_version(api, version) == 1:
        _read_struct(r, (), version, True)  # the header's tagged fields (skipped)
    return cid, r.data[r.pos:r.end]


# -- framing ---------------------------------------------------------------------------

class FrameDecoder:
    """Splits a byte stream into size-prefixed frames (sans-IO, see
    ``protocols/base/sansio.py``).

    ``receive_data(data)`` appends; ``next_event()`` returns one frame's bytes (without
    the prefix) or ``NEED_DATA``. A prefix announcing more than ``max_frame_bytes`` (or
    a negative size) raises :class:`~.errors.KafkaLimitError` /
    :class:`~.errors.KafkaProtocolError` after those 4 bytes, before anything of the
    frame is buffered; the error is sticky. ``buffered`` is the number of bytes
    received and not yet returned (a connection with any is never reused).
    """

    def __init__(self, max_frame_bytes: int) -> None:
        self._error = StickyError()
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._eof = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def receive_data(self, data: bytes) -> None:
        if not data:
            self._eof = True
        else:
            self._buf += data

    def next_event(self):
        self._error.check()
        buf = self._buf
        if len(buf) < 4:
            if self._eof and buf:
                self._fail(KafkaProtocolError("connection closed inside a frame size", code="truncated"))
            return NEED_DATA
        size = _I32.unpack_from(buf, 0)[0]
        if size < 0:
            self._fail(KafkaProtocolError(f"negative frame size {size}", code="bad_length"))
        if size > self.max_frame_bytes:
            self._fail(KafkaLimitError(limit="max_frame_bytes", value=size, maximum=self.max_frame_bytes))
        if len(buf) < 4 + size:
            if self._eof:
                self._fail(KafkaProtocolError("connection closed inside a frame", code="truncated"))
            return NEED_DATA
        with memoryview(buf) as mv:  # one copy (a bytearray slice would be a second)
            frame = bytes(mv[4:4 + size])
        del buf[:4 + size]
        return frame

    def _fail(self, exc: Exception):
        self._error.set(exc)
        raise exc


# -- Produce, without the schema interpreter -------------------------------------------
#
# A producer sends one Produce request per batch and reads its answer: the schema
# interpreter's cost (a dozen fields looked up, converted and dispatched on their type
# per message) is most of a small batch's CPU. These two are the same encoding written
# out for ProduceRequest/ProduceResponse v0-v9; ``encode_message``/``decode_message``
# use them for those messages and fall back to the interpreter for any shape they do
# not cover (the interpreter then decides, with its typed errors). Tests check both
# agree over every version (tests/protocols/kafka/test_codec.py) and the fuzz target
# compares them on every input it decodes (fuzz/fuzz_kafka.py).

_PRODUCE_KEYS = frozenset(("transactional_id", "acks", "timeout_ms", "topic_data"))
_H_I = struct.Struct(">hi")
_I_Q = struct.Struct(">ihq")
_Q = struct.Struct(">q")


def _uv(n: int) -> bytes:
    """An unsigned varint (a compact length, already offset by one)."""
    if n < 0x80:
        return bytes((n,))
    w = Writer()
    w.uvarint(n)
    return bytes(w.buf)


def _encode_produce(version: int, obj: dict) -> bytes | None:
    """ProduceRequest ``version`` from ``obj``, or ``None`` (the interpreter encodes it)
    when ``obj`` is not the plain shape: every field given, no extra key."""
    if obj.keys() != _PRODUCE_KEYS:
        return None
    flex = version >= 9
    parts = []
    if version >= 3:
        tid = obj["transactional_id"]
        if tid is not None:
            return None
        parts.append(b"\x00" if flex else b"\xff\xff")
    parts.append(_H_I.pack(obj["acks"], obj["timeout_ms"]))
    topics = obj["topic_data"]
    if type(topics) is not list:
        return None
    parts.append(_uv(len(topics) + 1) if flex else _I32.pack(len(topics)))
    for t in topics:
        if type(t) is not dict or t.keys() != {"name", "partition_data"}:
            return None
        name, pds = t["name"], t["partition_data"]
        if type(name) is not str or type(pds) is not list:
            return None
        nb = name.encode("utf-8")
        if len(nb) > 32767:
            return None
        parts.append(_uv(len(nb) + 1) if flex else _I16.pack(len(nb)))
        parts.append(nb)
        parts.append(_uv(len(pds) + 1) if flex else _I32.pack(len(pds)))
        for pd in pds:
            if type(pd) is not dict or pd.keys() != {"index", "records"}:
                return None
            data = pd["records"]
            if data is None or type(data) is not bytes:
                return None
            parts.append(_I32.pack(pd["index"]))
            parts.append(_uv(len(data) + 1) if flex else _I32.pack(len(data)))
            parts.append(data)
            if flex:
                parts.append(b"\x00")
        if flex:
            parts.append(b"\x00")
    if flex:
        parts.append(b"\x00")
    return b"".join(parts)


class _NotPlain(Exception):
    """The answer is not the plain shape ``_decode_produce`` reads: the interpreter decides."""


def _decode_produce(version: int, data: bytes | memoryview, exact: bool) -> dict:
    """ProduceResponse ``version``: the interpreter's dict, for answers without tagged
    fields, record errors or error messages; anything else (or anything malformed)
    raises ``_NotPlain``."""
    flex = version >= 9
    mv = data if isinstance(data, memoryview) else memoryview(data)
    end = len(mv)
    pos = 0
    try:
        if flex:
            n = mv[pos] - 1
            pos += 1
        else:
            n = _I32.unpack_from(mv, pos)[0]
            pos += 4
        if n < 0 or n > end - pos or (flex and n > 126):
            raise _NotPlain
        responses = []
        for _ in range(n):
            if flex:
                ln = mv[pos] - 1
                pos += 1
                if ln < 0 or ln > 126:
                    raise _NotPlain
            else:
                ln = _I16.unpack_from(mv, pos)[0]
                pos += 2
                if ln < 0:
                    raise _NotPlain
            if pos + ln > end:
                raise _NotPlain
            name = bytes(mv[pos:pos + ln]).decode("utf-8")
            pos += ln
            if flex:
                m = mv[pos] - 1
                pos += 1
                if m > 126:
                    raise _NotPlain
            else:
                m = _I32.unpack_from(mv, pos)[0]
                pos += 4
            if m < 0 or m > end - pos:
                raise _NotPlain
            prs = []
            for _ in range(m):
                index, code, base = _I_Q.unpack_from(mv, pos)
                pos += 14
                pr = {"index": index, "error_code": code, "base_offset": base}
                if version >= 2:
                    pr["log_append_time_ms"] = _Q.unpack_from(mv, pos)[0]
                    pos += 8
                if version >= 5:
                    pr["log_start_offset"] = _Q.unpack_from(mv, pos)[0]
                    pos += 8
                if version >= 8:
                    if flex:  # no record errors, a null message, no tagged fields
                        if bytes(mv[pos:pos + 3]) != b"\x01\x00\x00":
                            raise _NotPlain
                        pos += 3
                    else:
                        if bytes(mv[pos:pos + 6]) != b"\x00\x00\x00\x00\xff\xff":
                            raise _NotPlain
                        pos += 6
                    pr["record_errors"] = []
                    pr["error_message"] = None
                prs.append(pr)
            if flex:
                if mv[pos] != 0:
                    raise _NotPlain
                pos += 1
            responses.append({"name": name, "partition_responses": prs})
        out: dict[str, Any] = {"responses": responses}
        if version >= 1:
            out["throttle_time_ms"] = _I32.unpack_from(mv, pos)[0]
            pos += 4
        if flex:
            if mv[pos] != 0:
                raise _NotPlain
            pos += 1
    except (IndexError, struct.error, UnicodeDecodeError):
        raise _NotPlain from None
    if pos > end or (exact and pos != end):
        raise _NotPlain
    return out
