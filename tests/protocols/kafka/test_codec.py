"""The Kafka codec: primitives, schema-driven bodies, framing and record batches.

Sans-IO tests; the broker tests in ``test_broker.py`` run the same code against
librdkafka's mock cluster."""

from __future__ import annotations

import struct
import tracemalloc
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import greenrt
from greenrt.protocols import base
from greenrt.protocols.kafka import codec, records
from greenrt.protocols.kafka.errors import KafkaLimitError, KafkaProtocolError


@given(st.integers(-(2**31), 2**31 - 1))
def test_varint_round_trip(v):
    w = codec.Writer()
    w.varint(v)
    r = codec.Reader(bytes(w.buf))
    assert r.varint() == v and r.remaining == 0


def test_overlong_varint_is_an_error_not_a_loop():
    with pytest.raises(KafkaProtocolError, match="varint too long"):
        codec.Reader(b"\xff" * 1000).uvarint()


@pytest.mark.parametrize("version", [0, 1, 3, 7, 9, 12])
def test_metadata_request_round_trip(version):
    body = {"topics": [{"name": "a"}, {"name": "b"}], "allow_auto_topic_creation": True}
    enc = codec.encode_message("MetadataRequest", version, body)
    dec = codec.decode_message("MetadataRequest", version, enc)
    assert [t["name"] for t in dec["topics"]] == ["a", "b"]


def test_flexible_versions_use_compact_encoding():
    classic = codec.encode_message("MetadataRequest", 8, {"topics": [{"name": "abc"}]})
    compact = codec.encode_message("MetadataRequest", 9, {"topics": [{"name": "abc"}]})
    assert classic.startswith(struct.pack(">i", 1) + struct.pack(">h", 3) + b"abc")
    assert compact.startswith(b"\x02\x04abc\x00")  # count+1, len+1, struct's tagged fields


def test_unknown_tagged_fields_are_skipped():
    # ApiVersionsResponse v3 with an unknown tag 9 carrying 3 bytes, then known tag 1
    w = codec.Writer()
    w.int16(0)
    w.uvarint(1)          # zero api keys
    w.int32(0)            # throttle
    w.uvarint(2)          # two tagged fields
    w.uvarint(1)
    w.uvarint(8)
    w.int64(42)  # FinalizedFeaturesEpoch
    w.uvarint(9)
    w.uvarint(3)
    w.raw(b"xyz")  # unknown: skipped
    dec = codec.decode_message("ApiVersionsResponse", 3, bytes(w.buf))
    assert dec["finalized_features_epoch"] == 42


def test_tagged_fields_out_of_order_are_refused():
    w = codec.Writer()
    w.int16(0)
    w.uvarint(1)
    w.int32(0)
    w.uvarint(2)
    w.uvarint(3)
    w.uvarint(1)
    w.raw(b"\x01")
    w.uvarint(1)
    w.uvarint(8)
    w.int64(1)
    with pytest.raises(KafkaProtocolError, match="out of order"):
        codec.decode_message("ApiVersionsResponse", 3, bytes(w.buf))


@pytest.mark.parametrize("count", [2**31 - 1, 1_000_000, 70000])
def test_array_count_larger_than_the_frame_is_refused_before_allocating(count):
    body = struct.pack(">hi", 0, count)  # ApiVersionsResponse v0: error, count, nothing else
    tracemalloc.start()
    try:
        with pytest.raises(KafkaProtocolError, match="exceeds"):
            codec.decode_message("ApiVersionsResponse", 0, body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


def test_string_length_beyond_frame_is_refused():
    body = codec.encode_message("FindCoordinatorRequest", 0, {"key": "g"})
    evil = struct.pack(">h", 30000) + body[2:]
    with pytest.raises(KafkaProtocolError):
        codec.decode_message("FindCoordinatorRequest", 0, evil)


def test_trailing_bytes_are_refused_when_exact():
    body = codec.encode_message("HeartbeatRequest", 0, {"group_id": "g", "generation_id": 1, "member_id": "m"})
    with pytest.raises(KafkaProtocolError, match="trailing"):
        codec.decode_message("HeartbeatRequest", 0, body + b"\x00")


def test_unsupported_version_is_a_value_error():
    with pytest.raises(ValueError, match="not supported"):
        codec.encode_message("ProduceRequest", 99, {})


# -- framing -------------------------------------------------------------------------

def _frames(*payloads):
    return b"".join(struct.pack(">i", len(p)) + p for p in payloads)


@pytest.mark.parametrize("step", [1, 3, 7, 1000])
def test_frame_decoder_is_segmentation_independent(step):
    data = _frames(b"a" * 10, b"", b"bc" * 100)
    d = codec.FrameDecoder(1000)
    out = []
    for i in range(0, len(data), step):
        d.receive_data(data[i:i + step])
        while (ev := d.next_event()) is not base.NEED_DATA:
            out.append(ev)
    assert out == [b"a" * 10, b"", b"bc" * 100] and d.buffered == 0


def test_oversized_frame_is_refused_after_four_bytes_and_sticks():
    d = codec.FrameDecoder(1 << 20)
    d.receive_data(struct.pack(">i", 2**31 - 1))
    with pytest.raises(KafkaLimitError) as ei:
        d.next_event()
    assert isinstance(ei.value, greenrt.LimitExceeded)
    assert str(ei.value) == "kafka: max_frame_bytes exceeded: 2147483647 > 1048576"
    d.receive_data(b"more")
    with pytest.raises(KafkaLimitError):
        d.next_event()


def test_negative_frame_size_and_eof_inside_a_frame():
    d = codec.FrameDecoder(100)
    d.receive_data(struct.pack(">i", -5))
    with pytest.raises(KafkaProtocolError, match="negative"):
        d.next_event()
    d = codec.FrameDecoder(100)
    d.receive_data(struct.pack(">i", 10) + b"abc")
    d.receive_data(b"")
    with pytest.raises(KafkaProtocolError, match="closed inside a frame"):
        d.next_event()


# -- record batches --------------------------------------------------------------------

RECS = [(b"k1", b"v1", [("h1", b"x"), ("h2", None)]), (None, b"v2", []), (b"k3", None, [])]


@pytest.mark.parametrize("compression", [records.COMPRESSION_NONE, records.COMPRESSION_GZIP])
def test_batch_round_trip(compression):
    data = records.encode_batch(RECS, base_offset=100, base_timestamp=5000,
                                compression=compression, producer_id=7, producer_epoch=1,
                                base_sequence=3)
    (b,) = list(records.decode_batches(data))
    assert [(r.offset, r.key, r.value, r.headers) for r in b.records] == [
        (100, b"k1", b"v1", (("h1", b"x"), ("h2", None))), (101, None, b"v2", ()), (102, b"k3", None, ())]
    assert (b.producer_id, b.producer_epoch, b.base_sequence, b.last_offset) == (7, 1, 3, 102)


def test_crc32c_known_answer():
    assert records.crc32c(b"123456789") == 0xE3069283
    assert records._crc32c_py(b"123456789") == 0xE3069283


@pytest.mark.parametrize("at", [21, 30, 61, 70])
def test_corrupted_batch_is_refused(at):
    data = bytearray(records.encode_batch(RECS))
    data[at] ^= 0x01
    with pytest.raises(KafkaProtocolError, match="CRC"):
        list(records.decode_batches(bytes(data)))


def test_partial_trailing_batch_is_ignored():
    one = records.encode_batch(RECS, base_offset=0)
    two = records.encode_batch(RECS, base_offset=3)
    for cut in (1, 12, 40, len(two) - 1):
        got = list(records.decode_batches(one + two[:cut]))
        assert [b.base_offset for b in got] == [0]


def test_gzip_bomb_is_refused_at_the_cap():
    raw = records.encode_batch([(None, b"\x00" * 200_000, [])])
    # rebuild the batch with a gzip section that inflates to ~2 MB
    bomb = zlib.compress(b"\x00" * 2_000_000, 9)
    gz = zlib.compressobj(9, zlib.DEFLATED, 31)
    section = gz.compress(b"\x00" * 2_000_000) + gz.flush()
    assert len(section) < 10_000 and bomb
    after_crc = struct.pack(">hiqqqhii", 1, 0, 0, 0, -1, -1, -1, 1) + section
    batch = struct.pack(">qiibI", 0, 9 + len(after_crc), -1, 2, records.crc32c(after_crc)) + after_crc
    tracemalloc.start()
    try:
        with pytest.raises(KafkaLimitError, match="max_decompressed_bytes"):
            list(records.decode_batches(batch, max_decompressed_bytes=100_000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
    assert raw  # the honest encoder works for the same payload


def test_record_count_beyond_batch_is_refused():
    data = bytearray(records.encode_batch(RECS))
    struct.pack_into(">i", data, 57, 10**9)
    after = bytes(data[21:])
    struct.pack_into(">I", data, 17, records.crc32c(after))
    with pytest.raises(KafkaProtocolError, match="record count"):
        list(records.decode_batches(bytes(data)))


def test_unsupported_compression_is_typed():
    data = bytearray(records.encode_batch(RECS))
    struct.pack_into(">h", data, 21, 4)  # zstd
    struct.pack_into(">I", data, 17, records.crc32c(bytes(data[21:])))
    with pytest.raises(KafkaProtocolError, match="zstd"):
        list(records.decode_batches(bytes(data)))


# -- the record decoder against a Reader-based reference ----------------------------


def _reference_records(section, count, base_offset, base_ts):
    """The record decoder as first written, on ``codec.Reader`` (every field a bounds-
    checked method call): the reference the inlined decoder must agree with."""
    r = codec.Reader(section)

    def varbytes(rd):
        n = rd.varint()
        if n == -1:
            return None
        if n < -1 or n > rd.remaining:
            raise KafkaProtocolError("length", code="bad_length")
        return rd.raw(n)

    out = []
    for _ in range(count):
        length = r.varint()
        if length < 0 or length > r.remaining:
            raise KafkaProtocolError("length", code="bad_length")
        rec = codec.Reader(r.data, r.pos, r.pos + length)
        r.pos += length
        rec.int8()
        ts_delta = rec.varlong()
        off_delta = rec.varint()
        key = varbytes(rec)
        value = varbytes(rec)
        nh = rec.varint()
        if nh < 0 or nh > rec.remaining:
            raise KafkaProtocolError("count", code="bad_length")
        headers = []
        for _ in range(nh):
            hk = varbytes(rec)
            if hk is None:
                raise KafkaProtocolError("null", code="unexpected_null")
            try:
                hks = hk.decode("utf-8")
            except UnicodeDecodeError:
                raise KafkaProtocolError("utf8", code="bad_string") from None
            headers.append((hks, varbytes(rec)))
        if rec.remaining:
            raise KafkaProtocolError("trailing", code="trailing_bytes")
        out.append(records.Record(None, None, base_offset + off_delta, base_ts + ts_delta, key, value,
                                  tuple(headers)))
    if r.remaining:
        raise KafkaProtocolError("trailing", code="trailing_bytes")
    return out, sum(len(x.key or b"") + len(x.value or b"") for x in out)


def _outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except KafkaProtocolError as e:
        return ("error", e.code)


_RECORD = st.tuples(st.one_of(st.none(), st.binary(max_size=300)), st.one_of(st.none(), st.binary(max_size=300)),
                    st.lists(st.tuples(st.text(max_size=5), st.one_of(st.none(), st.binary(max_size=20))),
                             max_size=3))


def _fast(section, count, base_offset, base_ts):
    """The fast decoder, whose bail-out (None) defers to the careful one."""
    got = records._decode_records_fast(bytes(section), count, base_offset, base_ts, None, None)
    return records._decode_records(section, count, base_offset, base_ts) if got is None else got


_DECODERS = (records._decode_records, _fast)


@given(st.lists(_RECORD, min_size=1, max_size=20), st.lists(st.integers(0, 10**7), min_size=20, max_size=20),
       st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=4),
       st.integers(0, 3), st.integers(-2, 2))
def test_inlined_record_decoder_agrees_with_the_reference(recs, stamps, flips, cut, dcount):
    """Valid sections, then the same with flipped bytes, cut short or with a wrong
    count: both decoders (the careful one, and the fast path with its fall-back)
    return the same records or fail with the same error code as the reference."""
    data = records.encode_batch(recs, timestamps=[1_700_000_000_000 + t for t in stamps[:len(recs)]])
    section = bytearray(data[records.HEADER_BYTES:])
    want = _outcome(_reference_records, bytes(section), len(recs), 5, 7)
    assert want[0] == "ok"
    for decode in _DECODERS:
        assert _outcome(decode, memoryview(bytes(section)), len(recs), 5, 7) == want
    for at, b in flips:
        if section:
            section[at % len(section)] = b
    if cut:
        del section[len(section) - min(cut, len(section)):]
    count = max(0, len(recs) + dcount)
    want = _outcome(_reference_records, bytes(section), count, 5, 7)
    for decode in _DECODERS:
        assert _outcome(decode, memoryview(bytes(section)), count, 5, 7) == want


_WIDE = st.one_of(st.none(), st.binary(max_size=40), st.binary(min_size=8150, max_size=8250))


@given(st.lists(st.tuples(_WIDE, _WIDE, st.lists(st.tuples(st.text(max_size=3), st.none()), max_size=1)),
                min_size=1, max_size=4),
       st.lists(st.sampled_from([0, 1, 63, 64, 8191, 8192, 2**20, 2**40]), min_size=4, max_size=4),
       st.integers(0, 200), st.binary(min_size=1, max_size=300))
def test_fast_record_decoder_agrees_with_the_careful_one(recs, deltas, at, junk):
    """The fast path on every varint width (keys and values around 2**13 bytes: two-
    and three-byte lengths, and record lengths to match; timestamp deltas of 1 to 6
    bytes), on headers, and on sections spliced with junk: a result only when the
    careful decoder gives the same one."""
    data = records.encode_batch(recs, timestamps=[1_700_000_000_000 + d for d in deltas[:len(recs)]])
    section = data[records.HEADER_BYTES:]
    got = records._decode_records_fast(section, len(recs), 10, 20, "t", 3)
    want = records._decode_records(section, len(recs), 10, 20, "t", 3)
    assert got == want  # well-formed: no bail-out
    # in place, between other bytes: the same records, and nothing read past ``stop``
    assert records._decode_records_fast(junk + section + junk, len(recs), 10, 20, "t", 3,
                                        len(junk), len(junk) + len(section)) == want
    spliced = section[:at] + junk + section[at:]
    for count in (len(recs), len(recs) + 1):
        fast = records._decode_records_fast(spliced, count, 10, 20, "t", 3)
        if fast is not None:
            assert _outcome(records._decode_records, spliced, count, 10, 20, "t", 3) == ("ok", fast)
        # a section cut short inside a longer buffer: what it accepts is what the
        # careful decoder accepts of the cut section alone
        cut = min(at, len(spliced))
        fast = records._decode_records_fast(spliced + junk, count, 10, 20, "t", 3, 0, cut)
        if fast is not None:
            assert _outcome(records._decode_records, spliced[:cut], count, 10, 20, "t", 3) == ("ok", fast)


def test_fast_record_decoder_reads_the_common_shape_without_bailing_out():
    """Null keys, 100-byte values, no headers, offset deltas of one, two and three
    bytes (a batch of 9000 records, as librdkafka writes them)."""
    recs = [(None, b"v" * 100, [])] * 9000
    section = records.encode_batch(recs, timestamps=list(range(9000)))[records.HEADER_BYTES:]
    got = records._decode_records_fast(section, 9000, 1000, 0, "t", 0)
    assert got is not None and got == records._decode_records(section, 9000, 1000, 0, "t", 0)
    assert [r.offset for r in got[0]] == list(range(1000, 10000)) and got[1] == 9000 * 100
    assert got[0][8500] == records.Record("t", 0, 9500, 8500, None, b"v" * 100, ())


# -- the bulk path: runs of records of one layout ---------------------------------------


def _raw_section(recs):
    """A records section written field by field (any timestamp and offset delta, so
    that three-byte offset deltas are reached without a batch of 8192 records):
    ``recs`` is a list of ``(ts_delta, off_delta, key, value, headers)``."""
    zz = records._zigzag
    out = []
    for ts, off, key, value, headers in recs:
        body = b"\x00" + zz(ts) + (off if isinstance(off, bytes) else zz(off))
        for f in (key, value):
            body += b"\x01" if f is None else zz(len(f)) + f
        body += zz(len(headers)) + b"".join(records._header(k, v) for k, v in headers)
        out.append(zz(len(body)) + body)
    return b"".join(out)


#: first offset deltas at and around the one/two/three-byte varint edges (64, 8192, 2**20)
_D0 = st.sampled_from([0, 1, 40, 63, 64, 65, 8000, 8191, 8192, 9000, 16380, 2**20 - 100, 2**20 - 3, 2**20])
_TS = st.sampled_from([0, 1, -1, 63, -64, 64, -65, 100, 8191, -8192, 8192, 2**20])
_FIELD = st.one_of(st.none(), st.sampled_from([0, 1, 3, 63, 64, 100, 300]))


@settings(max_examples=300)
@given(st.integers(1, 120), _D0,
       st.one_of(_TS, st.lists(st.integers(-64, 63), min_size=120, max_size=120),
                 st.lists(_TS, min_size=120, max_size=120)), _FIELD, _FIELD,
       st.binary(min_size=1, max_size=8),
       st.one_of(st.just("none"), st.sampled_from(["longer", "header", "gap", "null", "wide"])),
       st.integers(0, 119), st.lists(st.tuples(st.integers(0, 40000), st.integers(0, 255)), max_size=3),
       st.integers(0, 3), st.integers(-2, 2))
def test_uniform_runs_agree_with_the_careful_decoder(n, d0, ts, klen, vlen, fill, odd, at, flips, cut, dcount):
    """Sections of records of one layout (what ``_uniform_run`` reads by column): every
    varint width of the offset and timestamp deltas, null, empty and sized keys and
    values; one record made different (longer value, a header, an offset gap, a null
    value, a non-minimal offset varint), then flipped bytes, a cut, a wrong count.
    The bulk path's result, wherever it gives one, is the careful decoder's for the
    same bytes, and the whole fast path agrees with the careful decoder."""
    stamps = ts if isinstance(ts, list) else [ts] * 120
    key = None if klen is None else (fill * 300)[:klen]
    value = None if vlen is None else (fill[::-1] * 300)[:vlen]
    recs = [(stamps[i], d0 + i, key, value, []) for i in range(n)]
    k = at % n
    ts_k, off_k, key_k, value_k, _ = recs[k]
    if odd == "longer":
        recs[k] = (ts_k, off_k, key_k, (value_k or b"") + b"!", [])
    elif odd == "header":
        recs[k] = (ts_k, off_k, key_k, value_k, [("h", None)])
    elif odd == "gap":
        recs[k] = (ts_k, off_k + 1, key_k, value_k, [])
    elif odd == "null":
        recs[k] = (ts_k, off_k, key_k, None if value_k is not None else b"", [])
    if odd == "wide" and d0 < 64:  # the first offset delta in two bytes: valid, not minimal
        recs[0] = recs[0][:1] + (bytes((0x80 | d0 * 2, 0)),) + recs[0][2:]
    section = bytearray(_raw_section(recs))
    clean = bytes(section)
    want = _outcome(records._decode_records, clean, n, 5, 7)
    assert want[0] == "ok" and _outcome(_fast, clean, n, 5, 7) == want

    def check_runs(buf, count):
        mv = memoryview(buf)
        for p in {0, len(_raw_section(recs[:k])) if k < n else 0}:
            run = records._uniform_run(buf, mv, p, count, len(buf), 5, 7, None, None)
            if run is not None:
                got, nbytes, end = run
                assert records._RUN_MIN <= len(got) <= min(count, records._RUN_MAX) and end <= len(buf)
                assert _outcome(records._decode_records, buf[p:end], len(got), 5, 7) == ("ok", (got, nbytes))
        return True

    check_runs(clean, n)
    if odd == "none" and n >= records._RUN_MIN and all(abs(s) < 8192 for s in stamps[:n]):
        width = {d0 < 64, d0 + n <= 64} if d0 < 64 else ({d0 + n <= 8192} if d0 < 8192 else {d0 + n <= 2**20})
        if width == {True}:  # one offset-delta width all along: one run reads it all
            run = records._uniform_run(clean, memoryview(clean), 0, n, len(clean), 5, 7, None, None)
            widths = {len(records._zigzag(s)) for s in stamps[:n]}
            if len(widths) == 1:
                assert run is not None and len(run[0]) == n
    for pos, b in flips:
        if section:
            section[pos % len(section)] = b
    if cut:
        del section[len(section) - min(cut, len(section)):]
    count = max(0, n + dcount)
    mutated = bytes(section)
    want = _outcome(records._decode_records, mutated, count, 5, 7)
    assert _outcome(_fast, mutated, count, 5, 7) == want
    check_runs(mutated, count)


def test_uniform_runs_across_varint_widths_and_odd_records():
    """One section: 9000 records of one size (offset deltas of one, two and three
    bytes: three runs), with a record of another size and one with a header in the
    middle, read by the fast path exactly as by the careful decoder, and mostly by
    the bulk path."""
    recs = [(None, b"v" * 100, [])] * 9000
    recs[5000] = (None, b"w" * 99, [])
    recs[6000] = (None, b"v" * 100, [("h", b"1")])
    section = records.encode_batch(recs, timestamps=[i // 100 for i in range(9000)])[records.HEADER_BYTES:]
    calls = []
    real = records._uniform_run

    def spy(*a):
        got = real(*a)
        calls.append(None if got is None else len(got[0]))
        return got

    records._uniform_run = spy
    try:
        got = records._decode_records_fast(section, 9000, 1000, 0, "t", 0)
    finally:
        records._uniform_run = real
    assert got is not None and got == records._decode_records(section, 9000, 1000, 0, "t", 0)
    assert sum(c for c in calls if c) >= 9000 - 2 * 64  # the odd records cost a few one by one
    assert got[0][6000].headers == (("h", b"1"),) and got[0][5000].value == b"w" * 99


@pytest.mark.parametrize("d0", [0, 1, 31, 63, 64, 65, 127, 128, 4000, 8128, 8191, 8192, 8193, 16383, 16384,
                                100_000, 2**20 - 8192, 2**20 - 33, 2**20 - 1, 2**20])
def test_offset_delta_tables_are_the_minimal_varints(d0):
    """``_offset_bytes`` (the expected offset-delta bytes of a run, by column) against
    the encoder's varints, one by one, for runs of 1 to 8192 records at and across
    the width edges: the same bytes where every delta has the width asked for, and
    ``None`` where one has not."""
    for m in (1, 2, 31, 64, 100, 8191, 8192):
        encs = [records._zigzag(d) for d in range(d0, d0 + m)]
        for width in (1, 2, 3):
            got = records._offset_bytes(d0, m, width)
            if all(len(e) == width for e in encs):
                assert got == tuple(bytes(e[k] for e in encs) for k in range(width))
            else:
                assert got is None


def test_a_run_longer_than_run_max_is_read_in_several():
    """9000 records of one layout, offset deltas from 8192 (all three bytes): two
    runs (``_RUN_MAX`` is 8192), read exactly as the careful decoder reads them."""
    section = _raw_section([(i % 50, 8192 + i, b"k" * 8, b"v" * 100, []) for i in range(9000)])
    got = records._decode_records_fast(section, 9000, 7, 1_700_000_000_000, "t", 1)
    assert got is not None and got == records._decode_records(section, 9000, 7, 1_700_000_000_000, "t", 1)
    mv = memoryview(section)
    first = records._uniform_run(section, mv, 0, 9000, len(section), 7, 0, "t", 1)
    assert first is not None and len(first[0]) == records._RUN_MAX
    second = records._uniform_run(section, mv, first[2], 9000 - records._RUN_MAX, len(section), 7, 0, "t", 1)
    assert second is not None and second[2] == len(section) and second[0][0].offset == 7 + 8192 + 8192
