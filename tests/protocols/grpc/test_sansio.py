"""The sans-IO pieces of gRPC: message framing, grpc-timeout, status mapping,
grpc-message encoding, metadata. Each documented fault is a test with its status."""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greenrt.protocols import base
from greenrt.protocols.base.sansio import NEED_DATA
from greenrt.protocols.grpc import (
    GrpcLimitError,
    GrpcProtocolError,
    GrpcUsageError,
    StatusCode,
    framing,
    metadata,
    status,
    timeout,
)
from greenrt.protocols.grpc.framing import END, MessageDecoder, encode_message


def _drain(dec: MessageDecoder) -> list:
    out = []
    while True:
        ev = dec.next_event()
        if ev is NEED_DATA:
            return out
        out.append(ev)
        if ev is END:
            return out


# -- framing ------------------------------------------------------------------------------

def test_messages_round_trip_and_end():
    dec = MessageDecoder()
    dec.receive_data(encode_message(b"") + encode_message(b"abc"))
    assert _drain(dec) == [b"", b"abc"]
    assert dec.buffered == 0
    dec.receive_data(b"")
    assert _drain(dec) == [END]
    assert dec.next_event() is NEED_DATA


def test_oversized_prefix_refused_before_buffering():
    dec = MessageDecoder(max_message_bytes=4 * 1024 * 1024)
    dec.receive_data(b"\x00\xff\xff\xff\xff")
    with pytest.raises(GrpcLimitError) as ei:
        dec.next_event()
    e = ei.value
    assert e.status == StatusCode.RESOURCE_EXHAUSTED
    assert (e.limit, e.value, e.maximum) == ("max_receive_message_bytes", 0xFFFFFFFF, 4 << 20)
    assert isinstance(e, base.LimitError)
    assert dec.buffered == 0
    # sticky: the same error again, even with more data
    dec.receive_data(b"\x00" * 10)
    with pytest.raises(GrpcLimitError) as again:
        dec.next_event()
    assert again.value is e


def test_one_over_the_limit_and_at_the_limit():
    dec = MessageDecoder(max_message_bytes=10)
    dec.receive_data(encode_message(b"x" * 10))
    assert _drain(dec) == [b"x" * 10]
    dec.receive_data(encode_message(b"x" * 11)[:5])
    with pytest.raises(GrpcLimitError):
        dec.next_event()


def test_compressed_flag_without_encoding_is_internal():
    for enc in (None, b"identity"):
        dec = MessageDecoder(encoding=enc)
        dec.receive_data(encode_message(b"hello", compress=b"gzip"))
        with pytest.raises(GrpcProtocolError) as ei:
            dec.next_event()
        assert ei.value.status == StatusCode.INTERNAL
        assert ei.value.code == "compressed_without_encoding"


def test_bad_flag_byte():
    dec = MessageDecoder()
    dec.receive_data(b"\x02\x00\x00\x00\x00")
    with pytest.raises(GrpcProtocolError) as ei:
        dec.next_event()
    assert ei.value.code == "bad_flag" and ei.value.status == StatusCode.INTERNAL


def test_gzip_and_deflate_round_trip():
    for enc in (b"gzip", b"deflate"):
        dec = MessageDecoder(encoding=enc)
        payload = bytes(range(256)) * 100
        dec.receive_data(encode_message(payload, compress=enc) + encode_message(b"plain"))
        assert _drain(dec) == [payload, b"plain"]


def test_gzip_from_the_stdlib_is_accepted():
    dec = MessageDecoder(encoding=b"gzip")
    body = gzip.compress(b"stdlib" * 10)
    dec.receive_data(b"\x01" + len(body).to_bytes(4, "big") + body)
    assert _drain(dec) == [b"stdlib" * 10]


def test_gzip_bomb_limited_on_the_decompressed_size_incrementally():
    limit = 1 << 20
    bomb = zlib.compressobj(wbits=31)
    body = bomb.compress(b"\x00" * (64 << 20)) + bomb.flush()  # 64 MiB -> ~64 KiB
    assert len(body) < limit
    dec = MessageDecoder(max_message_bytes=limit, encoding=b"gzip")
    frame = b"\x01" + len(body).to_bytes(4, "big") + body
    # only part of the compressed bytes: the limit trips before the message is complete
    dec.receive_data(frame[:5 + len(body) // 2])
    with pytest.raises(GrpcLimitError) as ei:
        dec.next_event()
    assert ei.value.status == StatusCode.RESOURCE_EXHAUSTED
    assert ei.value.code == "decompressed_too_large"
    assert dec.buffered == 0


def test_decompressed_exactly_at_limit_is_fine():
    dec = MessageDecoder(max_message_bytes=1000, encoding=b"gzip")
    dec.receive_data(encode_message(b"a" * 1000, compress=b"gzip"))
    assert _drain(dec) == [b"a" * 1000]
    dec = MessageDecoder(max_message_bytes=999, encoding=b"gzip")
    dec.receive_data(encode_message(b"a" * 1000, compress=b"gzip"))
    with pytest.raises(GrpcLimitError):
        dec.next_event()


def test_corrupt_and_trailing_compressed_data():
    dec = MessageDecoder(encoding=b"gzip")
    dec.receive_data(b"\x01\x00\x00\x00\x04abcd")
    with pytest.raises(GrpcProtocolError) as ei:
        dec.next_event()
    assert ei.value.code == "bad_compression"
    good = zlib.compressobj(wbits=31)
    body = good.compress(b"x") + good.flush() + b"junk"
    dec = MessageDecoder(encoding=b"gzip")
    dec.receive_data(b"\x01" + len(body).to_bytes(4, "big") + body)
    with pytest.raises(GrpcProtocolError):
        dec.next_event()


def test_unsupported_encoding():
    dec = MessageDecoder(encoding=b"snappy")
    dec.receive_data(b"\x01\x00\x00\x00\x01x")
    with pytest.raises(GrpcProtocolError) as ei:
        dec.next_event()
    assert ei.value.code == "unsupported_encoding"


@pytest.mark.parametrize("cut", [1, 4, 5, 7])
def test_stream_ending_inside_a_message_is_internal(cut):
    dec = MessageDecoder()
    dec.receive_data(encode_message(b"abc")[:cut])
    assert dec.next_event() is NEED_DATA
    dec.receive_data(b"")
    with pytest.raises(GrpcProtocolError) as ei:
        dec.next_event()
    assert ei.value.code == "truncated_message"


def test_data_after_end():
    dec = MessageDecoder()
    dec.receive_data(b"")
    dec.receive_data(b"x")
    with pytest.raises(GrpcProtocolError):
        dec.next_event()


def _decode_split(data: bytes, cuts: list[int], **kw):
    dec = MessageDecoder(**kw)
    out, err = [], None
    pieces, prev = [], 0
    for c in sorted(set(min(c, len(data)) for c in cuts)) + [len(data)]:
        pieces.append(data[prev:c])
        prev = c
    try:
        for p in pieces:
            if p:
                dec.receive_data(p)
                out += _drain(dec)
        dec.receive_data(b"")
        out += _drain(dec)
    except GrpcProtocolError as e:
        err = (type(e), e.code)
    return out, err


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=300), st.booleans()), max_size=6),
       st.lists(st.integers(0, 2000), max_size=8))
def test_segmentation_independence_and_round_trip(msgs, cuts):
    data = b"".join(encode_message(m, compress=b"gzip" if z else None) for m, z in msgs)
    whole = _decode_split(data, [], encoding=b"gzip")
    assert whole == ([m for m, _ in msgs] + [END], None)
    assert _decode_split(data, cuts, encoding=b"gzip") == whole


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.lists(st.integers(0, 200), max_size=5))
def test_total_on_arbitrary_bytes(data, cuts):
    a = _decode_split(data, [], encoding=b"gzip", max_message_bytes=64)
    b = _decode_split(data, cuts, encoding=b"gzip", max_message_bytes=64)
    assert a == b


# -- grpc-timeout ---------------------------------------------------------------------------

@pytest.mark.parametrize("value,ns", [
    ("1n", 1), ("1u", 1000), ("100m", 100_000_000), ("5S", 5 * 10**9), ("2M", 120 * 10**9),
    ("1H", 3600 * 10**9), ("99999999H", 99_999_999 * 3600 * 10**9), (b"12345678n", 12345678),
])
def test_timeout_valid(value, ns):
    assert timeout.parse_timeout(value) == ns


@pytest.mark.parametrize("value", [
    "123456789n", "0n", "00S", "", "S", "1", "1x", "1s", "1h", "-1S", "+1S", " 1S", "1S ",
    "1.5S", "١S", "1\x00S", "0x1S", "1SS",
])
def test_timeout_malformed(value):
    with pytest.raises(timeout.BadTimeout):
        timeout.parse_timeout(value)


def test_timeout_format():
    assert timeout.format_timeout(0.1) == b"100000u"
    assert timeout.format_timeout(0.099) == b"99000000n"
    assert timeout.format_timeout(1.0) == b"1000000u"
    assert timeout.format_timeout(0) == b"1n"
    assert timeout.format_timeout(-5) == b"1n"
    assert timeout.format_timeout(float("inf")) == b"99999999H"
    assert timeout.format_timeout(1e30) == b"99999999H"
    with pytest.raises(ValueError):
        timeout.format_timeout(float("nan"))


@settings(max_examples=500, deadline=None)
@given(st.floats(min_value=1e-9, max_value=3.5e11, allow_nan=False))
def test_timeout_format_parses_back_never_shorter(seconds):
    v = timeout.format_timeout(seconds)
    assert len(v) <= 9
    ns = timeout.parse_timeout(v)
    assert ns >= seconds * 10**9 * (1 - 1e-12)
    # at most one unit of the chosen size longer, and the finest unit fitting 8 digits
    assert ns - seconds * 10**9 <= {"n": 1, "u": 1e3, "m": 1e6, "S": 1e9, "M": 6e10,
                                    "H": 3.6e12}[chr(v[-1])] + 1


@given(st.binary(max_size=12))
def test_timeout_parse_total(value):
    try:
        ns = timeout.parse_timeout(value)
    except timeout.BadTimeout:
        return
    assert 0 < ns <= timeout.MAX_TIMEOUT_NS


# -- status ---------------------------------------------------------------------------------

def test_http_status_mapping_table():
    table = {400: StatusCode.INTERNAL, 401: StatusCode.UNAUTHENTICATED,
             403: StatusCode.PERMISSION_DENIED, 404: StatusCode.UNIMPLEMENTED,
             429: StatusCode.UNAVAILABLE, 502: StatusCode.UNAVAILABLE,
             503: StatusCode.UNAVAILABLE, 504: StatusCode.UNAVAILABLE}
    for http, grpc in table.items():
        assert status.status_from_http(http) == grpc
    for other in (200, 301, 405, 418, 500, 501, 505):
        assert status.status_from_http(other) == StatusCode.UNKNOWN


def test_rst_mapping():
    assert status.status_from_rst(0x8) == StatusCode.CANCELLED
    assert status.status_from_rst(0x7) == StatusCode.UNAVAILABLE
    assert status.status_from_rst(0xB) == StatusCode.RESOURCE_EXHAUSTED
    assert status.status_from_rst(0xC) == StatusCode.PERMISSION_DENIED
    assert status.status_from_rst(0x2) == StatusCode.INTERNAL
    assert status.status_from_rst(0x99) == StatusCode.INTERNAL


@pytest.mark.parametrize("value,expected", [
    (b"0", StatusCode.OK), (b"16", StatusCode.UNAUTHENTICATED), ("12", StatusCode.UNIMPLEMENTED),
    (None, None), (b"", None), (b"17", None), (b"-1", None), (b"1 ", None), (b"abc", None),
    (b"007", None), (b"99", None),
])
def test_parse_status(value, expected):
    assert status.parse_status(value) == expected


def test_grpc_message_encoding():
    special = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n"
    enc = status.encode_message(special)
    assert all(0x20 <= b <= 0x7E for b in enc)
    assert status.decode_message(enc) == special
    assert status.encode_message("100%") == b"100%25"


@pytest.mark.parametrize("raw,text", [
    (b"%", "%"), (b"%4", "%4"), (b"%zz", "%zz"), (b"a%4gb", "a%4gb"), (b"%41%", "A%"),
    (b"%FF", "\ufffd"), (b"plain", "plain"),
])
def test_bad_percent_encoding_passes_through(raw, text):
    assert status.decode_message(raw) == text


@given(st.text(max_size=50))
def test_grpc_message_round_trip(s):
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return
    assert status.decode_message(status.encode_message(s)) == s


@given(st.binary(max_size=40))
def test_grpc_message_decode_total(b):
    assert isinstance(status.decode_message(b), str)


# -- metadata -------------------------------------------------------------------------------

def test_metadata_ascii_and_bin():
    fields = metadata.encode_metadata([("X-Grpc-Test-Echo-Initial", "test_initial_metadata_value"),
                                       ("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab"),
                                       ("k-bin", b"\x00")])
    assert fields == [(b"x-grpc-test-echo-initial", b"test_initial_metadata_value"),
                      (b"x-grpc-test-echo-trailing-bin", b"q6ur"), (b"k-bin", b"AA")]
    assert metadata.decode_metadata(fields) == [
        ("x-grpc-test-echo-initial", "test_initial_metadata_value"),
        ("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab"), ("k-bin", b"\x00")]


def test_metadata_bin_padded_unpadded_and_lists():
    for v in (b"AA", b"AA==", b"AAE", b"AAE="):
        assert metadata.decode_metadata([(b"k-bin", v)])[0][1] in (b"\x00", b"\x00\x01")
    assert metadata.decode_metadata([(b"k-bin", b"AA==,AQ")]) == [("k-bin", b"\x00\x01")]
    for bad in (b"A", b"!!!!", b"AA=A", b"AAA==="):
        with pytest.raises(GrpcProtocolError) as ei:
            metadata.decode_metadata([(b"k-bin", bad)])
        assert ei.value.status == StatusCode.INTERNAL


@pytest.mark.parametrize("key", [":path", "grpc-status", "grpc-timeout", "content-type", "te",
                                 "user-agent", "host", "connection", "Grpc-Message"])
def test_reserved_keys_refused_when_sending(key):
    with pytest.raises(GrpcUsageError) as ei:
        metadata.encode_metadata([(key, "v")])
    assert ei.value.code == "reserved_metadata"


@pytest.mark.parametrize("key,value", [("bad key", "v"), ("k", "caf\u00e9"), ("k", "a\nb"),
                                       ("k", b"\x00"), ("", "v"), ("k", 5)])
def test_malformed_metadata_refused_when_sending(key, value):
    with pytest.raises(GrpcUsageError):
        metadata.encode_metadata([(key, value)])


def test_reserved_headers_are_not_metadata():
    got = metadata.decode_metadata([(b"content-type", b"application/grpc"), (b"te", b"trailers"),
                                    (b"grpc-encoding", b"gzip"), (b"a", b"b")])
    assert got == [("a", "b")]


def test_metadata_over_the_limit():
    fields = [(b"k%d" % i, b"v" * 100) for i in range(80)]
    with pytest.raises(GrpcLimitError) as ei:
        metadata.decode_metadata(fields, max_bytes=8192)
    assert ei.value.status == StatusCode.RESOURCE_EXHAUSTED
    assert ei.value.limit == "max_metadata_bytes"
    assert metadata.decode_metadata(fields[:50], max_bytes=8192)


@given(st.lists(st.tuples(st.from_regex(r"[a-z][a-z0-9_.\-]{0,10}", fullmatch=True),
                          st.binary(max_size=30)), max_size=5))
def test_bin_metadata_round_trip(items):
    items = [(k + "-bin", v) for k, v in items if not metadata.is_reserved((k + "-bin").encode())]
    fields = metadata.encode_metadata(items)
    assert all(b"=" not in v for _, v in fields)
    assert metadata.decode_metadata(fields, max_bytes=1 << 20) == items


def test_framing_module_exports():
    assert framing.SUPPORTED_ENCODINGS == (b"identity", b"gzip", b"deflate")
