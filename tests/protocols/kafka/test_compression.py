"""Record batches in every compression codec: round trips, the decompression cap
(checked before the memory is used), corrupt and truncated sections as typed errors."""

from __future__ import annotations

import struct

import pytest

from greenrt.protocols.kafka import records
from greenrt.protocols.kafka.errors import KafkaLimitError, KafkaProtocolError

CODECS = {"gzip": records.COMPRESSION_GZIP, "snappy": records.COMPRESSION_SNAPPY,
          "lz4": records.COMPRESSION_LZ4, "zstd": records.COMPRESSION_ZSTD}
RECS = [(f"k{i}".encode(), b"x" * 2000 + bytes([i]), [("h", b"v"), ("n", None)]) for i in range(40)]


def _recrc(batch: bytes) -> bytes:
    """Recompute a batch's CRC, so a test reaches the decompressor with bad contents."""
    b = bytearray(batch)
    struct.pack_into(">I", b, 17, records.crc32c(bytes(b[21:])))
    return bytes(b)


def _with_section(batch: bytes, section: bytes) -> bytes:
    head = bytearray(batch[:61])
    struct.pack_into(">i", head, 8, 49 + len(section))
    return _recrc(bytes(head) + section)


@pytest.mark.parametrize("name", CODECS)
def test_round_trip(name):
    data = records.encode_batch(RECS, compression=CODECS[name], base_offset=10)
    (b,) = records.decode_batches(data)
    assert b.compression == name
    assert [(r.offset, r.key, r.value, r.headers) for r in b.records] == [
        (10 + i, k, v, tuple(h)) for i, (k, v, h) in enumerate(RECS)]


@pytest.mark.parametrize("name", CODECS)
def test_the_cap_stops_a_bomb(name):
    bomb = [(None, b"\0" * (1 << 20), [])]  # 1 MiB of zeros: a few hundred bytes compressed
    data = records.encode_batch(bomb, compression=CODECS[name])
    assert len(data) < 100_000
    with pytest.raises(KafkaLimitError) as ei:
        list(records.decode_batches(data, max_decompressed_bytes=64 * 1024))
    assert ei.value.limit == "max_decompressed_bytes"


@pytest.mark.parametrize("name", CODECS)
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_or_truncated_sections_are_typed_errors(name, damage):
    data = records.encode_batch(RECS, compression=CODECS[name])
    section = data[61:]
    if damage == "garbage":
        section = section[:20] + bytes(b ^ 0x5A for b in section[20:60]) + section[60:]
    else:
        section = section[: len(section) // 2]
    with pytest.raises(KafkaProtocolError):
        list(records.decode_batches(_with_section(data, section)))


def test_raw_snappy_without_xerial_framing_is_read():
    import snappy

    plain = records.encode_batch(RECS)
    head = bytearray(plain[:61])
    struct.pack_into(">h", head, 21, records.COMPRESSION_SNAPPY)
    data = _with_section(bytes(head), snappy.compress(plain[61:]))
    (b,) = records.decode_batches(data)
    assert [r.value for r in b.records] == [v for _, v, _ in RECS]


def test_an_undefined_codec_is_refused():
    plain = bytearray(records.encode_batch(RECS[:1]))
    struct.pack_into(">h", plain, 21, 6)
    with pytest.raises(KafkaProtocolError) as ei:
        list(records.decode_batches(_recrc(bytes(plain))))
    assert ei.value.code == "unsupported_compression"
