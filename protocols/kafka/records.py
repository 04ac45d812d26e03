"""Record batches (message format v2, "magic 2"), sans-IO.

Layout of one batch (61 bytes of header, then the records)::

    base_offset int64 | batch_length int32 | partition_leader_epoch int32 | magic int8 (=2)
    crc uint32 (CRC-32C of everything after it) | attributes int16 | last_offset_delta int32
    base_timestamp int64 | max_timestamp int64 | producer_id int64 | producer_epoch int16
    base_sequence int32 | record_count int32 | records...

and of one record: ``length varint | attributes int8 | timestamp_delta varlong |
offset_delta varint | key (varint length, -1 = null) | value (same) | header count
varint | headers (key: varint length + UTF-8, value: varint length + bytes, -1 = null)``.
Attributes bits 0-2 name the compression of the records section (0 none, 1 gzip,
2 snappy, 3 lz4, 4 zstd), bit 3 the timestamp type, bit 4 transactional, bit 5 control
batch. gzip is in the standard library; snappy (``python-snappy``), lz4 (``lz4``) and
zstd (``zstandard``) need their package (the ``kafka`` extra) — without it a batch in
that codec is refused with a typed error (code ``unsupported_compression``), never
mis-read. Snappy sections are written in the xerial framing the Java client uses
(``\x82SNAPPY\x00`` header, length-prefixed blocks) and read in that framing or as one
raw block (librdkafka's); lz4 is the LZ4 frame format; zstd a zstd frame.

Decoding (:func:`decode_batches`) is what a fetch response's ``records`` field goes
through, and it must survive a broker that lies:

* a batch whose CRC does not match is refused (``KafkaProtocolError``, code
  ``crc_mismatch``): the bytes are corrupt, and the client never hands them out;
* a *partial trailing batch* — brokers cut a fetch response at ``max_bytes``, so the
  last batch may be incomplete — is ignored, not an error;
* batch lengths, record counts and record lengths are checked against the bytes
  present before anything is allocated for them; a compressed section is inflated
  with ``max_decompressed_bytes`` as a hard cap (gzip, lz4 and zstd incrementally,
  snappy by each block's declared length, checked before the block is inflated), so a
  decompression bomb raises ``KafkaLimitError`` before the memory is used;
* skipping batches or records below the fetch offset is the consumer's job (a broker
  may return a batch that starts before the offset asked for): every record carries
  its absolute offset.
"""

from __future__ import annotations

import importlib
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import repeat
from operator import getitem, itemgetter
from typing import NamedTuple

from .errors import KafkaLimitError, KafkaProtocolError

__all__ = ["Batch", "Record", "compress", "crc32c", "decode_batches", "decompress", "encode_batch"]

try:  # the C implementation (the `crc32c` package, hardware-accelerated where it can be)
    from crc32c import crc32c as _crc32c_c
except ImportError:  # pragma: no cover - exercised where the package is missing
    _crc32c_c = None


def _make_table() -> list[int]:
    poly = 0x82F63B78
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _make_table()


def _crc32c_py(data: bytes | memoryview, crc: int = 0) -> int:
    c = crc ^ 0xFFFFFFFF
    t = _TABLE
    for b in bytes(data):
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def crc32c(data: bytes | memoryview) -> int:
    """CRC-32C (Castagnoli), as record batches use: the ``crc32c`` package's C
    implementation (on the buffer as it is, no copy) when installed, else a table loop
    in Python (``tests/protocols/kafka/test_codec.py`` checks that both agree)."""
    if _crc32c_c is not None:
        return _crc32c_c(data)
    return _crc32c_py(data)


_HEAD = struct.Struct(">qiibIhiqqqhii")  # 61 bytes
HEADER_BYTES = _HEAD.size
_CRC_FROM = 8 + 4 + 4 + 1 + 4  # the CRC covers attributes..end

COMPRESSION_NONE = 0
COMPRESSION_GZIP = 1
COMPRESSION_SNAPPY = 2
COMPRESSION_LZ4 = 3
COMPRESSION_ZSTD = 4
_COMPRESSION_NAMES = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


class Record(NamedTuple):
    """One record: the ``topic`` and ``partition`` it was fetched from (what the caller
    of :func:`decode_batches` passed: ``None`` by default), its absolute ``offset`` and
    ``timestamp`` (ms), ``key``/``value`` (bytes or None), ``headers`` as a tuple of
    ``(str, bytes | None)`` pairs (immutable: a record without headers, the common
    case, shares the empty tuple instead of owning an empty list, which would be one
    more object per record for the allocator and the garbage collector to track). A
    tuple (built positionally, one object per record): the consumer's
    ``ConsumerRecord`` is this class."""

    topic: str | None
    partition: int | None
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


@dataclass
class Batch:
    base_offset: int
    last_offset: int
    partition_leader_epoch: int
    attributes: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records: list[Record]
    #: the sum of the lengths of the records' keys and values (what the consumer's
    #: ``max_buffer_bytes`` counts)
    data_bytes: int = 0

    @property
    def compression(self) -> str:
        return _COMPRESSION_NAMES.get(self.attributes & 7, "unknown")

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & 0x10)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & 0x20)


def encode_batch(records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]], *,
                 base_offset: int = 0, base_timestamp: int = 0, timestamps: list[int] | None = None,
                 compression: int = COMPRESSION_NONE, producer_id: int = -1,
                 producer_epoch: int = -1, base_sequence: int = -1,
                 transactional: bool = False, partition_leader_epoch: int = -1) -> bytes:
    """One batch of ``(key, value, headers)`` records, with its CRC. ``timestamps`` (ms,
    one per record) default to ``base_timestamp``."""
    if not records:
        raise ValueError("a record batch needs at least one record")
    if timestamps:
        base_ts, max_ts = min(timestamps), max(timestamps)
    else:
        base_ts = max_ts = base_timestamp
    zz = _zigzag
    parts = []
    append = parts.append
    i = 0
    for key, value, headers in records:
        if key is None and not headers and not timestamps and value is not None:
            # the common shape (no key, no headers, the batch's timestamp): length,
            # attributes 0, timestamp delta 0, offset delta, null key, value, 0 headers
            # in one formatting
            zi = _ZZ[i] if i < _ZZ_N else zz(i)
            n = len(value)
            zv = _ZZ[n] if n < _ZZ_N else zz(n)
            n += 4 + len(zi) + len(zv)
            append(b"%b\x00\x00%b\x01%b%b\x00" % (_ZZ[n] if n < _ZZ_N else zz(n), zi, zv, value))
            i += 1
            continue
        # attributes (0), timestamp delta, offset delta, key, value, header count; one
        # formatting per record (no chain of concatenations copying the value again)
        if timestamps:
            d = timestamps[i] - base_ts
            zd = _ZZ[d] if d < _ZZ_N else zz(d)
        else:
            zd = b"\x00"
        zi = _ZZ[i] if i < _ZZ_N else zz(i)
        if key is None:
            zk, key = b"\x01", b""
        else:
            n = len(key)
            zk = _ZZ[n] if n < _ZZ_N else zz(n)
        if value is None:
            zv, value = b"\x01", b""
        else:
            n = len(value)
            zv = _ZZ[n] if n < _ZZ_N else zz(n)
        if headers:
            hs = zz(len(headers)) + b"".join(_header(hk, hv) for hk, hv in headers)
        else:
            hs = b"\x00"
        rec = b"\x00%b%b%b%b%b%b%b" % (zd, zi, zk, key, zv, value, hs)
        n = len(rec)
        append(_ZZ[n] if n < _ZZ_N else zz(n))
        append(rec)
        i += 1
    payload = b"".join(parts)
    if compression != COMPRESSION_NONE:
        payload = compress(compression, payload)
    attributes = compression | (0x10 if transactional else 0)
    after_crc = struct.pack(">hiqqqhii", attributes, len(records) - 1, base_ts, max_ts,
                            producer_id, producer_epoch, base_sequence, len(records)) + payload
    crc = crc32c(after_crc)
    batch_length = 4 + 1 + 4 + len(after_crc)
    return struct.pack(">qiibI", base_offset, batch_length, partition_leader_epoch, 2, crc) + after_crc


def _zigzag(v: int) -> bytes:
    """The zigzag varint of ``v`` (Kafka's record-level signed varint)."""
    u = (v << 1) ^ (v >> 63)
    out = bytearray()
    while u >= 0x80:
        out.append((u & 0x7F) | 0x80)
        u >>= 7
    out.append(u)
    return bytes(out)


#: zigzag varints of 0.._ZZ_N-1, precomputed: record deltas and lengths are small
_ZZ_N = 4096
_ZZ = [_zigzag(i) for i in range(_ZZ_N)]


def _header(hk: str, hv: bytes | None) -> bytes:
    hkb = hk.encode("utf-8")
    return _zigzag(len(hkb)) + hkb + (b"\x01" if hv is None else _zigzag(len(hv)) + hv)


def decode_batches(data: bytes | memoryview | None, *, max_decompressed_bytes: int = 64 << 20,
                   verify_crc: bool = True, topic: str | None = None,
                   partition: int | None = None) -> Iterator[Batch]:
    """The complete batches in ``data`` (a fetch response's ``records``); a partial
    trailing batch is ignored. See the module docstring for what is refused. Every
    :class:`Record` carries ``topic`` and ``partition`` as given."""
    if not data:
        return
    if not isinstance(data, bytes):
        data = bytes(data)
    mv = memoryview(data)
    pos = 0
    n = len(mv)
    while n - pos >= 12:
        base_offset, batch_length = struct.unpack_from(">qi", mv, pos)
        if batch_length < HEADER_BYTES - 12:
            raise KafkaProtocolError(f"batch length {batch_length} is below the batch header size",
                                     code="bad_length")
        end = pos + 12 + batch_length
        if end > n:
            return  # a partial trailing batch: the broker cut the response at max_bytes
        if n - pos < HEADER_BYTES:
            return
        (_, _, leader_epoch, magic, crc, attributes, last_delta, base_ts, max_ts,
         producer_id, producer_epoch, base_seq, count) = _HEAD.unpack_from(mv, pos)
        if magic != 2:
            raise KafkaProtocolError(f"record batch magic {magic} is not supported (only 2)",
                                     code="bad_magic")
        if verify_crc and crc32c(mv[pos + _CRC_FROM:end]) != crc:
            raise KafkaProtocolError(f"record batch at offset {base_offset}: CRC-32C mismatch",
                                     code="crc_mismatch")
        comp = attributes & 7
        if comp != COMPRESSION_NONE:
            section = decompress(comp, mv[pos + HEADER_BYTES:end], max_decompressed_bytes)
            start, stop = 0, len(section)
        else:  # read in place: no copy of the section
            section, start, stop = data, pos + HEADER_BYTES, end
        if count < 0 or count > stop - start:  # every record takes at least one byte
            raise KafkaProtocolError(f"record count {count} does not fit the batch", code="bad_length")
        got = _decode_records_fast(section, count, base_offset, base_ts, topic, partition, start, stop)
        if got is None:  # malformed, or an unusual shape: the careful decoder decides
            got = _decode_records(memoryview(section)[start:stop], count, base_offset, base_ts, topic, partition)
        records, data_bytes = got
        yield Batch(base_offset, base_offset + last_delta, leader_epoch, attributes, base_ts,
                    max_ts, producer_id, producer_epoch, base_seq, records, data_bytes)
        pos = end


def _module(comp: int):
    """The compression package for codec ``comp``, or a typed error naming it."""
    pkg = {2: ("snappy", "python-snappy"), 3: ("lz4.frame", "lz4"), 4: ("zstandard", "zstandard")}.get(comp)
    if pkg is None:
        raise KafkaProtocolError(f"compression codec {comp} is not defined", code="unsupported_compression")
    try:
        return importlib.import_module(pkg[0])
    except ImportError:
        raise KafkaProtocolError(f"compression {_COMPRESSION_NAMES[comp]} needs the {pkg[1]!r} package, "
                                 "which is not installed: pip install 'greenrt[kafka]'",
                                 code="unsupported_compression") from None


def compress(comp: int, data: bytes) -> bytes:
    """A records section in codec ``comp`` (see the module docstring)."""
    if comp == COMPRESSION_GZIP:
        co = zlib.compressobj(6, zlib.DEFLATED, 31)
        return co.compress(data) + co.flush()
    if comp == COMPRESSION_SNAPPY:
        snappy = _module(comp)
        out = [_XERIAL_HEADER]
        for i in range(0, len(data), _XERIAL_BLOCK):
            block = snappy.compress(data[i:i + _XERIAL_BLOCK])
            out.append(struct.pack(">i", len(block)))
            out.append(block)
        return b"".join(out)
    if comp == COMPRESSION_LZ4:
        return _module(comp).compress(data)
    if comp == COMPRESSION_ZSTD:
        return _module(comp).ZstdCompressor().compress(data)
    raise ValueError(f"compression {_COMPRESSION_NAMES.get(comp, comp)} is not supported")


def decompress(comp: int, data: memoryview, limit: int) -> bytes:
    """Inflate a records section, never beyond ``limit`` bytes (``KafkaLimitError``)."""
    if comp == COMPRESSION_GZIP:
        return _gunzip(data, limit)
    if comp == COMPRESSION_SNAPPY:
        return _unsnappy(_module(comp), data, limit)
    if comp == COMPRESSION_LZ4:
        d = _module(comp).LZ4FrameDecompressor()
        try:
            out = d.decompress(bytes(data), max_length=limit + 1)
        except RuntimeError as e:
            raise KafkaProtocolError(f"lz4 section does not inflate: {e}", code="bad_compression") from None
        if len(out) > limit:
            raise KafkaLimitError(limit="max_decompressed_bytes", maximum=limit)
        if not d.eof:
            raise KafkaProtocolError("lz4 section is truncated", code="bad_compression")
        return out
    if comp == COMPRESSION_ZSTD:
        zstd = _module(comp)
        try:
            with zstd.ZstdDecompressor().stream_reader(bytes(data), read_across_frames=True) as r:
                out = r.read(limit + 1)
        except zstd.ZstdError as e:
            raise KafkaProtocolError(f"zstd section does not inflate: {e}", code="bad_compression") from None
        if len(out) > limit:
            raise KafkaLimitError(limit="max_decompressed_bytes", maximum=limit)
        return out
    raise KafkaProtocolError(f"compression codec {comp} is not defined", code="unsupported_compression")


_XERIAL_HEADER = b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1)  # magic, version, compatible version
_XERIAL_BLOCK = 32 * 1024


def _snappy_length(block: bytes) -> int:
    """The uncompressed length a raw snappy block declares (its leading uvarint)."""
    v = shift = 0
    for b in block[:5]:
        v |= (b & 0x7F) << shift
        if not b & 0x80:
            return v
        shift += 7
    raise KafkaProtocolError("snappy block length is malformed", code="bad_compression")


def _unsnappy(snappy, data: memoryview, limit: int) -> bytes:
    raw = bytes(data)
    if raw[:8] == _XERIAL_HEADER[:8]:
        blocks = []
        pos = 16
        while pos < len(raw):
            if len(raw) - pos < 4:
                raise KafkaProtocolError("xerial snappy block length truncated", code="bad_compression")
            (n,) = struct.unpack_from(">i", raw, pos)
            pos += 4
            if n < 0 or n > len(raw) - pos:
                raise KafkaProtocolError(f"xerial snappy block of {n} bytes does not fit", code="bad_compression")
            blocks.append(raw[pos:pos + n])
            pos += n
    else:
        blocks = [raw]
    out = bytearray()
    for block in blocks:
        if _snappy_length(block) > limit - len(out):
            raise KafkaLimitError(limit="max_decompressed_bytes", maximum=limit)
        try:
            out += snappy.uncompress(block)
        except Exception as e:  # snappy.UncompressError and friends: corrupt input
            raise KafkaProtocolError(f"snappy section does not inflate: {e}", code="bad_compression") from None
    return bytes(out)


def _gunzip(data: memoryview, limit: int) -> bytes:
    d = zlib.decompressobj(47)  # gzip or zlib header
    try:
        out = d.decompress(bytes(data), limit + 1)
    except zlib.error as e:
        raise KafkaProtocolError(f"gzip section does not inflate: {e}", code="bad_compression") from None
    if len(out) > limit or d.unconsumed_tail:
        raise KafkaLimitError(limit="max_decompressed_bytes", maximum=limit)
    return out


def _uvarint_at(buf: bytes, p: int, end: int, max_bits: int) -> tuple[int, int]:
    """The unsigned varint at ``buf[p:end]`` (at most ``max_bits`` bits) and the
    position after it; the slow path of the record decoder (multi-byte varints)."""
    v = 0
    shift = 0
    while True:
        if p >= end:
            raise KafkaProtocolError("truncated varint", code="truncated")
        b = buf[p]
        p += 1
        v |= (b & 0x7F) << shift
        if not b & 0x80:
            if v >= 1 << (32 if max_bits == 35 else 64):
                raise KafkaProtocolError("varint out of range", code="bad_varint")
            return v, p
        shift += 7
        if shift >= max_bits:
            raise KafkaProtocolError("varint too long", code="bad_varint")


def _varbytes_at(buf: bytes, p: int, end: int) -> tuple[bytes | None, int]:
    """A varint-length-prefixed byte string (-1: null) inside ``buf[p:end]``."""
    b = buf[p] if p < end else 0x100
    if b < 0x80:
        u = b
        p += 1
    elif p + 1 < end and buf[p + 1] < 0x80:  # two bytes: below 2**14, in range
        u = (b & 0x7F) | (buf[p + 1] << 7)
        p += 2
    else:
        u, p = _uvarint_at(buf, p, end, 35)
    n = (u >> 1) ^ -(u & 1)
    if n == -1:
        return None, p
    if n < -1 or n > end - p:
        raise KafkaProtocolError(f"length {n} does not fit the record", code="bad_length")
    return buf[p:p + n], p + n


def _decode_records(section: bytes | memoryview, count: int, base_offset: int, base_ts: int,
                    topic: str | None = None, partition: int | None = None) -> tuple[list[Record], int]:
    """The ``count`` records of a batch's (uncompressed) records section, and the sum
    of their key and value lengths: the careful decoder. Every length and count is
    checked against the bytes left (of the section, or of the record) before it is
    used; varints are bounded (``bad_varint``). One- and two-byte varints — the common
    case — are read inline; ``tests/protocols/kafka/test_codec.py`` checks this decoder
    against a ``Reader``-based reference on mutated batches."""
    buf = bytes(section)
    end_all = len(buf)
    p = 0
    out = []
    append = out.append
    uv = _uvarint_at
    vb = _varbytes_at
    data_bytes = 0
    for _ in range(count):
        b = buf[p] if p < end_all else 0x100
        if b < 0x80:
            u = b
            p += 1
        elif p + 1 < end_all and buf[p + 1] < 0x80:  # two bytes: below 2**14, in range
            u = (b & 0x7F) | (buf[p + 1] << 7)
            p += 2
        else:
            u, p = uv(buf, p, end_all, 35)
        length = (u >> 1) ^ -(u & 1)
        if length < 0 or length > end_all - p:
            raise KafkaProtocolError(f"record length {length} does not fit the batch", code="bad_length")
        end = p + length
        if p >= end:
            raise KafkaProtocolError("truncated primitive", code="truncated")
        p += 1  # attributes: unused in v2
        b = buf[p] if p < end else 0x100
        if b < 0x80:
            u = b
            p += 1
        elif p + 1 < end and buf[p + 1] < 0x80:  # two bytes: below 2**14, in range
            u = (b & 0x7F) | (buf[p + 1] << 7)
            p += 2
        else:
            u, p = uv(buf, p, end, 70)
        ts_delta = (u >> 1) ^ -(u & 1)
        b = buf[p] if p < end else 0x100
        if b < 0x80:
            u = b
            p += 1
        elif p + 1 < end and buf[p + 1] < 0x80:  # two bytes: below 2**14, in range
            u = (b & 0x7F) | (buf[p + 1] << 7)
            p += 2
        else:
            u, p = uv(buf, p, end, 35)
        off_delta = (u >> 1) ^ -(u & 1)
        key, p = vb(buf, p, end)
        value, p = vb(buf, p, end)
        b = buf[p] if p < end else 0x100
        if b < 0x80:
            u = b
            p += 1
        elif p + 1 < end and buf[p + 1] < 0x80:  # two bytes: below 2**14, in range
            u = (b & 0x7F) | (buf[p + 1] << 7)
            p += 2
        else:
            u, p = uv(buf, p, end, 35)
        nh = (u >> 1) ^ -(u & 1)
        headers = ()
        if nh:
            headers, p = _headers_at(buf, p, end, nh)
        if p != end:
            raise KafkaProtocolError("trailing bytes inside a record", code="trailing_bytes")
        if key is not None:
            data_bytes += len(key)
        if value is not None:
            data_bytes += len(value)
        append(Record(topic, partition, base_offset + off_delta, base_ts + ts_delta, key, value, headers))
    if p != end_all:
        raise KafkaProtocolError("trailing bytes after the batch's records", code="trailing_bytes")
    return out, data_bytes


def _headers_at(buf: bytes, p: int, end: int, nh: int) -> tuple[tuple[tuple[str, bytes | None], ...], int]:
    """``nh`` headers inside ``buf[p:end]`` and the position after them."""
    if nh < 0 or nh > end - p:
        raise KafkaProtocolError(f"header count {nh} does not fit the record", code="bad_length")
    vb = _varbytes_at
    headers = []
    for _ in range(nh):
        hk, p = vb(buf, p, end)
        if hk is None:
            raise KafkaProtocolError("null header key", code="unexpected_null")
        try:
            hks = hk.decode("utf-8")
        except UnicodeDecodeError:
            raise KafkaProtocolError("header key is not UTF-8", code="bad_string") from None
        hv, p = vb(buf, p, end)
        headers.append((hks, hv))
    return tuple(headers), p


#: the zigzag decoding of every one-byte varint, and (``_UNZZ2[b][c]``) of every
#: two-byte one, ``b`` its first byte (0x80-0xFF), ``c`` its second (0x00-0x7F)
_UNZZ = [(u >> 1) ^ -(u & 1) for u in range(0x80)]
_UNZZ2 = [None] * 0x80 + [[(u >> 1) ^ -(u & 1) for u in ((b & 0x7F) | (c << 7) for c in range(0x80))]
                          for b in range(0x80, 0x100)]
#: the same for key and value lengths, a negative one (null has its own test) mapped
#: to _FAR: a slice there is cut at the record's end and the position lands past it,
#: so the record can never be accepted (the next read raises ``IndexError``)
_FAR = 1 << 40
_LEN1 = [n if n >= 0 else _FAR for n in _UNZZ]
_LEN2 = [None] * 0x80 + [[n if n >= 0 else _FAR for n in row] for row in _UNZZ2[0x80:]]


#: a uniform run is taken from this many records (fewer: its set-up, some 10 us, costs
#: more than reading them one by one) up to that many per call (which bounds the
#: tables below and the work of one call)
_RUN_MIN = 32
_RUN_MAX = 8192
_first = itemgetter(0)
#: the bytes of the minimal zigzag varint of an offset delta d >= 0, by position: the
#: one byte of d < 64 (_OFF1[d]); the first byte of a wider one, period 64 in d
#: (_T0[d % 64], repeated to cover a run from any phase); the second of a three-byte
#: one, period 8192 (_T1[d % 8192]); the last of a two-byte one (_LAST2[d], d < 8192)
_OFF1 = bytes(range(0, 128, 2))
_T0 = bytes(range(0x80, 0x100, 2)) * (_RUN_MAX // 64 + 1)
_T1 = b"".join(bytes((0x80 | k,)) * 64 for k in range(128)) * 2
_LAST2 = b"".join(bytes((k,)) * 64 for k in range(128))


def _offset_bytes(d0: int, m: int, o: int) -> tuple[bytes, ...] | None:
    """Per varint byte, the strided bytes the offset deltas d0..d0+m-1 have in their
    minimal zigzag encoding of ``o`` bytes; None when some delta is not of that width."""
    d1 = d0 + m
    if o == 1:
        return (_OFF1[d0:d1],) if d1 <= 64 else None
    if o == 2:
        return (_T0[d0 % 64:d0 % 64 + m], _LAST2[d0:d1]) if 64 <= d0 and d1 <= 8192 else None
    if 8192 <= d0 and d1 <= 1 << 20:
        k = d0 >> 13
        split = 8192 - (d0 & 8191)
        last = bytes((k,)) * min(m, split) + bytes((k + 1,)) * max(0, m - split)
        return (_T0[d0 % 64:d0 % 64 + m], _T1[d0 & 8191:(d0 & 8191) + m], last)
    return None


def _uniform_run(buf: bytes, mv: memoryview, p: int, left: int, n_all: int, base_offset: int, base_ts: int,
                 topic: str | None, partition: int | None) -> tuple[list[Record], int, int] | None:
    """``(records, data bytes, end)`` of the run of records from ``buf[p]`` that have
    the first one's length bytes (``_RUN_MIN`` to ``_RUN_MAX`` of them, at most
    ``left``, none past ``n_all``), or ``None`` unless there are that many and every
    one of them also has the first one's layout: the bulk path of
    :func:`_decode_records_fast`.

    Why: a producer writing records of one size (a fixed-size payload, no key or a
    fixed-size one, no headers) writes them in one layout, and then every field is at
    the same distance from its record's start, one stride ``S`` apart. The checks and
    the decoding are then done by column, in C (strided slices, ``bytes.count``,
    ``struct.iter_unpack``, ``map``/``zip`` building the records), instead of a loop of
    bytecodes per record.

    Why a result is exactly the careful decoder's: the first record proposes a layout
    (length, timestamp, offset, key and value widths; no headers); then for every
    record of the run, by column: its length bytes equal the first's (so each record
    is ``S`` bytes and the next starts right after it), its offset delta is the
    minimal encoding of the first's plus its index (compared with tables of those
    encodings), its timestamp delta is a one- or two-byte varint as in the first (the
    continuation bits checked), its key and value length bytes equal the first's, and
    its header count is 0 ending the record; the attributes byte is not read (nor is
    it by the careful decoder). Anything else (a shorter run, headers, a negative
    length other than -1, wider varints) is ``None``, and the per-record path reads
    those records. The work is bounded by the bytes present: at most ``_RUN_MAX``
    records per call, each column one slice of them."""
    unzz = _UNZZ
    try:
        # the first record proposes the layout
        b = buf[p]
        if b < 0x80:
            lb, L = 1, unzz[b]
        else:
            c = buf[p + 1]
            if c >= 0x80:
                return None
            lb, L = 2, _UNZZ2[b][c]
        S = lb + L
        cap = min(left, _RUN_MAX, (n_all - p) // S) if L > 0 else 0
        if cap < _RUN_MIN:
            return None
        # cheap refusal: the next records' lengths first
        lens0 = buf[p:p + S * _RUN_MIN:S]
        if lens0.count(b) != _RUN_MIN:
            return None
        a = lb + 1  # timestamp delta
        q = p + a
        b = buf[q]
        if b < 0x80:
            t = 1
        elif buf[q + 1] < 0x80:
            t = 2
        else:
            return None
        oc = a + t  # offset delta
        q = p + oc
        b = buf[q]
        if b < 0x80:
            o, d0 = 1, unzz[b]
        else:
            c = buf[q + 1]
            if c < 0x80:
                o, d0 = 2, _UNZZ2[b][c]
            else:
                e = buf[q + 2]
                if e >= 0x80:
                    return None
                u = (b & 0x7F) | ((c & 0x7F) << 7) | (e << 14)
                o, d0 = 3, (u >> 1) ^ -(u & 1)
        if d0 < 0:
            return None
        kc = oc + o  # key length
        b = buf[p + kc]
        if b == 1:
            kb, nk = 1, -1
        elif b < 0x80:
            kb, nk = 1, _LEN1[b]
        else:
            c = buf[p + kc + 1]
            if c >= 0x80:
                return None
            kb, nk = 2, _LEN2[b][c]
        ks = kc + kb
        vc = ks + max(nk, 0)  # value length
        if vc >= S:
            return None
        b = buf[p + vc]
        if b == 1:
            vb, nv = 1, -1
        elif b < 0x80:
            vb, nv = 1, _LEN1[b]
        else:
            c = buf[p + vc + 1]
            if c >= 0x80:
                return None
            vb, nv = 2, _LEN2[b][c]
        vs = vc + vb
        if vs + max(nv, 0) != S - 1 or buf[p + S - 1]:
            return None  # headers, or lengths that do not add up
        # how many records from p share the length prefix: each of them starts S after
        # the last. Looked for among 64 first, then 8 times more each time all of them
        # do, so that a short run does not pay for a long look (its cost stays per record)
        w = min(cap, 64)
        while True:
            m = w
            for k in range(lb):
                col = buf[p + k:p + k + S * w:S]
                m = min(m, w - len(col.lstrip(col[:1])))
            if m < w or w == cap:
                break
            w = min(cap, 8 * w)
        if m < _RUN_MIN:
            return None
        offs = _offset_bytes(d0, m, o)
        if offs is None:
            return None
        stop = p + S * m
        for k, want in enumerate(offs):
            if buf[p + oc + k:stop:S] != want:
                return None
        for c0, nb in ((kc, kb), (vc, vb)):
            for k in range(c0, c0 + nb):
                if buf[p + k:stop:S].count(buf[p + k]) != m:
                    return None
        if buf[p + S - 1:stop:S].count(0) != m:
            return None
        if t == 1:
            col = buf[p + a:stop:S]
            if max(col) >= 0x80:
                return None
            if m >= 512:  # a table of the 128 timestamps: one addition each, not one per record
                tss = map(list(map(base_ts.__add__, unzz)).__getitem__, col)
            else:
                tss = map(base_ts.__add__, map(unzz.__getitem__, col))
        else:
            hi = buf[p + a:stop:S]
            lo = buf[p + a + 1:stop:S]
            if min(hi) < 0x80 or max(lo) >= 0x80:
                return None
            tss = map(base_ts.__add__, map(getitem, map(_UNZZ2.__getitem__, hi), lo))
        view = mv[p:stop]
        if nk < 0:
            keys = repeat(None, m)
        else:
            keys = map(_first, struct.iter_unpack(f"={ks}x{nk}s{S - ks - nk}x", view))
        if nv < 0:
            vals = repeat(None, m)
        else:
            vals = map(_first, struct.iter_unpack(f"={vs}x{nv}s{S - vs - nv}x", view))
        bo = base_offset + d0
        out = list(map(tuple.__new__, repeat(Record, m),
                       zip(repeat(topic, m), repeat(partition, m), range(bo, bo + m), tss, keys, vals,
                           repeat((), m), strict=True)))
        return out, m * (max(nk, 0) + max(nv, 0)), stop
    except (IndexError, ValueError, struct.error):  # a read past the buffer; never otherwise
        return None


def _decode_records_fast(buf: bytes, count: int, base_offset: int, base_ts: int,
                         topic: str | None, partition: int | None, start: int = 0,
                         stop: int | None = None) -> tuple[list[Record], int] | None:
    """The fast path of :func:`_decode_records` for the section ``buf[start:stop]``
    (read in place): the same result for a well-formed section, or ``None`` for
    anything malformed — and then the careful decoder decides, raising its exact error.

    Each record's body (after its length) is sliced out and read at small positions.
    Why a success is always right: inside a body every field is read at a position
    that only moves forward, and the record is accepted only when the position lands
    exactly on the body's announced length; a body cut short by the buffer's end is
    shorter than announced, so it cannot land there (a read past it raises
    ``IndexError``: a bail-out); record starts only move forward (a negative length
    leaves an empty body: a bail-out), and the section is accepted only when the last
    record ends exactly at ``stop``, so no record reaches past it. One- and two-byte varints (below 2**14: always in range) are
    decoded through tables, longer ones by the careful helper; a negative length
    other than -1 (``_FAR`` in the length tables) bails out. Runs of records of one
    layout (one size, no headers: what a producer of fixed-size records writes) are
    read by :func:`_uniform_run` instead, by column; it is tried at the first record,
    after each run, and after records read one by one (1, 2, 4... of them: a
    section of varying records pays a few refused tries, not one per record).
    ``tests/protocols/kafka/test_codec.py`` checks both paths against each other and
    against a reference decoder."""
    unzz = _UNZZ
    unzz2 = _UNZZ2
    len1 = _LEN1
    len2 = _LEN2
    uv = _uvarint_at
    new = tuple.__new__
    rt = Record
    out: list[Record] = []
    append = out.append
    n_all = len(buf) if stop is None else stop
    p = start
    data_bytes = 0
    i = 0  # records decoded
    next_try = 0  # the record at which a uniform run is tried next
    backoff = 1
    mv = memoryview(buf)
    try:
        while i < count:
            if i >= next_try:
                run = _uniform_run(buf, mv, p, count - i, n_all, base_offset, base_ts, topic, partition)
                if run is not None:
                    recs, nbytes, p = run
                    out += recs
                    data_bytes += nbytes
                    i += len(recs)
                    next_try = i
                    backoff = 1
                    continue
                # not here: the next records one by one, and the next try further on
                # each time: 1, 2, 4... records later (an odd record between runs costs
                # one refused try; a section of varying records a few, not one each)
                next_try = i + backoff
                backoff *= 2
            k = min(count, next_try) - i
            i += k
            for _ in range(k):
                b = buf[p]  # record length
                if b < 0x80:
                    length = unzz[b]
                    p += 1
                else:
                    c = buf[p + 1]
                    if c < 0x80:
                        length = unzz2[b][c]
                        p += 2
                    else:
                        u, p = uv(buf, p, n_all, 35)
                        length = (u >> 1) ^ -(u & 1)
                end = p + length
                r = buf[p:end]
                p = end
                # r[0]: attributes (unused in v2)
                b = r[1]  # timestamp delta
                if b < 0x80:
                    ts = unzz[b]
                    q = 2
                else:
                    c = r[2]
                    if c < 0x80:
                        ts = unzz2[b][c]
                        q = 3
                    else:
                        u, q = uv(r, 1, length, 70)
                        ts = (u >> 1) ^ -(u & 1)
                b = r[q]  # offset delta
                if b < 0x80:
                    off = unzz[b]
                    q += 1
                else:
                    c = r[q + 1]
                    if c < 0x80:
                        off = unzz2[b][c]
                        q += 2
                    else:
                        u, q = uv(r, q, length, 35)
                        off = (u >> 1) ^ -(u & 1)
                b = r[q]  # key length
                if b >= 0x80:
                    c = r[q + 1]
                    if c < 0x80:
                        n = len2[b][c]
                        q += 2
                    else:
                        u, q = uv(r, q, length, 35)
                        n = (u >> 1) ^ -(u & 1)
                        if n < 0:
                            return None
                    key = r[q:q + n]
                    q += n
                    data_bytes += n
                elif b == 1:
                    key = None
                    q += 1
                else:
                    n = len1[b]
                    key = r[q + 1:q + 1 + n]
                    q += 1 + n
                    data_bytes += n
                b = r[q]  # value length
                if b >= 0x80:
                    c = r[q + 1]
                    if c < 0x80:
                        n = len2[b][c]
                        q += 2
                    else:
                        u, q = uv(r, q, length, 35)
                        n = (u >> 1) ^ -(u & 1)
                        if n < 0:
                            return None
                    value = r[q:q + n]
                    q += n
                    data_bytes += n
                elif b == 1:
                    value = None
                    q += 1
                else:
                    n = len1[b]
                    value = r[q + 1:q + 1 + n]
                    q += 1 + n
                    data_bytes += n
                if r[q]:  # header count
                    u, q = uv(r, q, length, 35)
                    headers, q = _headers_at(r, q, length, (u >> 1) ^ -(u & 1))
                else:
                    headers = ()
                    q += 1
                if q != length:
                    return None
                append(new(rt, (topic, partition, base_offset + off, base_ts + ts, key, value, headers)))
    except (IndexError, KafkaProtocolError):
        return None
    if p != n_all:
        return None
    return out, data_bytes
