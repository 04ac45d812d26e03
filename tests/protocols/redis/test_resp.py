"""The sans-IO RESP codec: round trips, split invariance, malformed input, limits."""

from __future__ import annotations

import math
import random
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greenrt.protocols.redis.errors import (
    DataError,
    FrameTooLarge,
    MalformedFrame,
    MovedError,
    ProtocolError,
    ReplyError,
    WrongTypeError,
)
from greenrt.protocols.redis.resp import (
    NEED_DATA,
    Attributed,
    BigNumber,
    Decoder,
    Limits,
    Push,
    SimpleString,
    VerbatimString,
    encode,
    encode_command,
    encode_streamed,
)

# -- helpers ------------------------------------------------------------------------------


def canon(v):
    """A comparable, type-tagged form (SimpleString vs bytes, Push vs list, nan...)."""
    if isinstance(v, SimpleString):
        return ("simple", bytes(v))
    if isinstance(v, VerbatimString):
        return ("verbatim", bytes(v), v.format)
    if isinstance(v, (bytes, bytearray)):
        return ("bulk", bytes(v))
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, BigNumber):
        return ("big", int(v))
    if isinstance(v, int):
        return ("int", v)
    if isinstance(v, float):
        return ("double", "nan" if math.isnan(v) else v)
    if v is None:
        return ("null",)
    if isinstance(v, ReplyError):
        return ("error", type(v).__name__, v.message)
    if isinstance(v, Push):
        return ("push", tuple(canon(x) for x in v))
    if isinstance(v, (list, tuple)):
        return ("array", tuple(canon(x) for x in v))
    if isinstance(v, dict):
        return ("map", tuple(sorted((repr(canon(k)), canon(x)) for k, x in v.items())))
    if isinstance(v, (set, frozenset)):
        return ("set", tuple(sorted(repr(canon(x)) for x in v)))
    raise AssertionError(f"unexpected {type(v)}")


def decode_all(chunks, limits=None):
    d = Decoder(limits)
    out = []
    for c in chunks:
        d.receive_data(c)
        while (v := d.next_event()) is not NEED_DATA:
            out.append((canon(v), canon(d.attributes) if d.attributes else None))
    assert d.next_event() is NEED_DATA
    return out


def split_at(data: bytes, cuts):
    cuts = sorted(set(c for c in cuts if 0 < c < len(data)))
    parts, prev = [], 0
    for c in cuts:
        parts.append(data[prev:c])
        prev = c
    parts.append(data[prev:])
    return parts


# -- strategies ---------------------------------------------------------------------------

text = st.binary(max_size=40)
line_text = st.binary(max_size=20).filter(lambda b: b"\r" not in b and b"\n" not in b)
scalars = st.one_of(
    text,
    line_text.map(SimpleString),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**40), 10**40).map(BigNumber),
    st.tuples(text, st.sampled_from([b"txt", b"mkd"])).map(lambda t: VerbatimString(*t)),
    st.text(max_size=20).filter(lambda s: "\r" not in s and "\n" not in s and s.strip() == s)
      .map(lambda s: ReplyError("ERR " + s)),
    st.just(WrongTypeError("WRONGTYPE Operation against a key holding the wrong kind of value")),
    st.just(ReplyError("ERR multi\r\nline")),  # encoded as a bulk error
)
keys = st.one_of(text, st.integers(-1000, 1000))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(keys, inner, max_size=4),
        st.sets(keys, max_size=4),
    ),
    max_leaves=20,
)
top_values = st.one_of(values, st.lists(values, max_size=4).map(Push))

SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


# -- round trips and splits -----------------------------------------------------------------


@SETTINGS
@given(st.lists(top_values, min_size=1, max_size=5))
def test_round_trip(vals):
    stream = b"".join(encode(v) for v in vals)
    got = decode_all([stream])
    assert [g[0] for g in got] == [canon(v) for v in vals]


@SETTINGS
@given(st.lists(top_values, min_size=1, max_size=4), st.lists(st.integers(0, 4000), max_size=12))
def test_any_split_decodes_identically(vals, cuts):
    stream = b"".join(encode(v) for v in vals)
    whole = decode_all([stream])
    assert decode_all(split_at(stream, cuts)) == whole


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(top_values)
def test_every_two_way_split_and_bytewise(v):
    stream = encode(v) + encode(v)
    whole = decode_all([stream])
    assert len(whole) == 2
    for i in range(1, len(stream)):
        assert decode_all([stream[:i], stream[i:]]) == whole
    assert decode_all([stream[i:i + 1] for i in range(len(stream))]) == whole


@SETTINGS
@given(values, st.integers(1, 7), st.lists(st.integers(0, 2000), max_size=8))
def test_streamed_forms_decode_like_plain(v, chunk, cuts):
    streamed = encode_streamed(v, chunk)
    assert decode_all(split_at(streamed, cuts)) == decode_all([encode(v)])


@SETTINGS
@given(values, st.dictionaries(text, values, min_size=1, max_size=3))
def test_attributes_are_out_of_band(v, attrs):
    stream = encode(Attributed(v, attrs)) + encode(b"next")
    got = decode_all([stream])
    assert got[0] == (canon(v), canon(attrs))
    assert got[1] == (canon(b"next"), None)


@SETTINGS
@given(values)
def test_resp2_encoding_decodes(v):
    # RESP2 has no doubles/maps/sets; the RESP2 form must still be valid RESP.
    out = decode_all([encode(v, protocol=2)])
    assert len(out) == 1


def test_resp2_specifics():
    assert decode_all([b"$-1\r\n*-1\r\n*0\r\n$0\r\n\r\n"]) == [
        (("null",), None), (("null",), None), (("array", ()), None), (("bulk", b""), None)]
    d = Decoder()
    d.receive_data(b"-MOVED 3999 127.0.0.1:6381\r\n")
    e = d.next_event()
    assert isinstance(e, MovedError) and (e.slot, e.host, e.port) == (3999, "127.0.0.1", 6381)


def test_every_resp3_type_literal():
    stream = (b"_\r\n#t\r\n#f\r\n,3.25\r\n,-inf\r\n,1e3\r\n(-123456789012345678901234567890\r\n"
              b"!21\r\nSYNTAX invalid syntax\r\n=15\r\ntxt:Some string\r\n"
              b"%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n~2\r\n+a\r\n+b\r\n"
              b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"
              b"$?\r\n;4\r\nHell\r\n;5\r\no wor\r\n;1\r\nd\r\n;0\r\n"
              b"*?\r\n:1\r\n:2\r\n.\r\n%?\r\n+a\r\n:1\r\n.\r\n~?\r\n.\r\n"
              b"|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n"
              b"*2\r\n:2039123\r\n:9543892\r\n")
    d = Decoder()
    d.receive_data(stream)
    got = []
    while (v := d.next_event()) is not NEED_DATA:
        got.append((v, d.attributes))
    vals = [g[0] for g in got]
    assert vals[:6] == [None, True, False, 3.25, -math.inf, 1000.0]
    assert isinstance(vals[6], BigNumber) and vals[6] == -123456789012345678901234567890
    assert vals[7] == ReplyError("SYNTAX invalid syntax")
    assert vals[8] == b"Some string" and vals[8].format == b"txt"
    assert vals[9] == {b"first": 1, b"second": 2}
    assert vals[10] == {b"a", b"b"}
    assert isinstance(vals[11], Push) and vals[11] == [b"message", b"ch", b"hi"]
    assert vals[12] == b"Hello word"
    assert vals[13:16] == [[1, 2], {b"a": 1}, set()]
    assert vals[16] == [2039123, 9543892]
    assert got[16][1] == {b"key-popularity": {b"a": 0.1923, b"b": 0.0012}}
    assert all(a is None for _, a in got[:16])


def test_unhashable_map_keys_and_set_members_are_made_hashable():
    d = Decoder()
    d.receive_data(b"%1\r\n*2\r\n:1\r\n:2\r\n$1\r\nv\r\n~1\r\n*1\r\n:3\r\n")
    assert d.next_event() == {(1, 2): b"v"}
    assert d.next_event() == {(3,)}


def test_encode_command():
    assert encode_command(["SET", b"k", 12, 1.5]) == (
        b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n$3\r\n1.5\r\n")
    assert encode_command([bytearray(b"a"), memoryview(b"bc")]) == b"*2\r\n$1\r\na\r\n$2\r\nbc\r\n"
    for bad in (None, True, [1], object()):
        with pytest.raises(DataError):
            encode_command(["SET", "k", bad])


# -- malformed input ----------------------------------------------------------------------

MALFORMED = [
    b"?\r\n", b"\r\n", b"+OK\n", b"+O\rK\r\n", b"$3\r\nabcd\r\n", b"$-2\r\n", b"$x\r\n",
    b"$ 3\r\nabc\r\n", b"$+3\r\nabc\r\n", b"$3 \r\nabc\r\n", b"$1_0\r\n", b":12a\r\n", b":\r\n",
    b":99999999999999999999\r\n", b":9223372036854775808\r\n", b"*-2\r\n", b"%-1\r\n",
    b"~-1\r\n", b"*1x\r\n", b"#x\r\n", b"#\r\n", b",abc\r\n", b",1.2.3\r\n", b",\r\n",
    b",1_0\r\n", b"(12a\r\n", b"(\r\n", b"_x\r\n", b".\r\n", b"*1\r\n.\r\n", b"=3\r\ntxt\r\n",
    b"=5\r\ntxtxx\r\n", b"$?\r\n:1\r\n", b";3\r\nabc\r\n", b"%?\r\n:1\r\n.\r\n", b"%1\r\n:1\r\n.\r\n",
    b"$\xd9\xa1\r\n", b"*\xd9\xa1\r\n", b"$?\r\n;x\r\n", b"$?\r\n;-1\r\n", b"\x00\r\n",
]


@pytest.mark.parametrize("frame", MALFORMED)
def test_malformed_frames_raise_typed_errors(frame):
    for chunks in ([frame], [frame[i:i + 1] for i in range(len(frame))]):
        d = Decoder()
        with pytest.raises(MalformedFrame):
            for c in chunks:
                d.receive_data(c)
                while d.next_event() is not NEED_DATA:
                    pass
        # the decoder is dead afterwards
        with pytest.raises(MalformedFrame):
            d.next_event()
        with pytest.raises(MalformedFrame):
            d.receive_data(b"+OK\r\n")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.lists(st.integers(0, 200), max_size=6))
def test_garbage_raises_only_protocol_errors(data, cuts):
    d = Decoder(Limits(max_bulk_length=1000, max_aggregate_length=100, max_depth=8,
                       max_frame_size=4000, max_line_length=100))
    try:
        for c in split_at(data, cuts):
            d.receive_data(c)
            while d.next_event() is not NEED_DATA:
                pass
    except ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(top_values, st.integers(0, 10_000), st.integers(0, 255))
def test_single_byte_mutations_raise_only_protocol_errors(v, where, byte):
    data = bytearray(encode(v))
    data[where % len(data)] = byte
    try:
        decode_all([bytes(data)])
    except ProtocolError:
        pass


# -- limits ----------------------------------------------------------------------------------


@pytest.mark.parametrize("frame,limit", [
    (b"$1000000000\r\n", "max_bulk_length"),
    (b"=1000000000\r\n", "max_bulk_length"),
    (b"!1000000000\r\n", "max_bulk_length"),
    (b"*100000000\r\n", "max_aggregate_length"),
    (b"%600000\r\n", "max_aggregate_length"),
    (b"~10000000\r\n", "max_aggregate_length"),
    (b"(" + b"9" * 5000 + b"\r\n", "max_bignum_digits"),
])
def test_declared_sizes_rejected_at_the_header(frame, limit):
    d = Decoder()
    d.receive_data(frame)  # no payload at all: the header alone must be rejected
    with pytest.raises(FrameTooLarge) as ei:
        d.next_event()
    assert ei.value.limit == limit


def test_nesting_depth_limit():
    d = Decoder(Limits(max_depth=5))
    d.receive_data(b"*1\r\n" * 5 + b":1\r\n")
    assert d.next_event() == [[[[[1]]]]]
    d = Decoder(Limits(max_depth=5))
    d.receive_data(b"*1\r\n" * 6)
    with pytest.raises(FrameTooLarge) as ei:
        d.next_event()
    assert ei.value.limit == "max_depth"
    # the default depth protects the interpreter stack: no RecursionError, no C recursion
    d = Decoder()
    d.receive_data(b"*1\r\n" * 100_000)
    with pytest.raises(FrameTooLarge):
        d.next_event()


def test_frame_size_limit_counts_every_element():
    lim = Limits(max_frame_size=1000)
    d = Decoder(lim)
    d.receive_data(b"*100\r\n" + b"$10\r\n0123456789\r\n" * 100)
    with pytest.raises(FrameTooLarge) as ei:
        while d.next_event() is not NEED_DATA:
            pass
    assert ei.value.limit == "max_frame_size"
    # the limit is per top-level frame: many small frames in a row are fine
    d = Decoder(lim)
    d.receive_data(b"$10\r\n0123456789\r\n" * 500)
    n = 0
    while d.next_event() is not NEED_DATA:
        n += 1
    assert n == 500
    # declared aggregate that cannot fit (each element needs >= 3 bytes)
    d = Decoder(lim)
    d.receive_data(b"*400\r\n")
    with pytest.raises(FrameTooLarge):
        d.next_event()
    # a bulk header that cannot fit in what is left of the frame
    d = Decoder(lim)
    d.receive_data(b"*2\r\n$990\r\n")
    with pytest.raises(FrameTooLarge):
        d.next_event()


def test_frame_elements_limit():
    d = Decoder(Limits(max_frame_elements=10))
    d.receive_data(b"*3\r\n*4\r\n" + b":1\r\n" * 4 + b"*4\r\n")
    with pytest.raises(FrameTooLarge) as ei:
        while d.next_event() is not NEED_DATA:
            pass
    assert ei.value.limit == "max_frame_elements"
    d = Decoder(Limits(max_aggregate_length=5))
    d.receive_data(b"*?\r\n" + b":1\r\n" * 6)
    with pytest.raises(FrameTooLarge):
        while d.next_event() is not NEED_DATA:
            pass


def test_streamed_string_total_is_limited():
    d = Decoder(Limits(max_bulk_length=10))
    d.receive_data(b"$?\r\n;6\r\nabcdef\r\n;6\r\n")
    with pytest.raises(FrameTooLarge) as ei:
        while d.next_event() is not NEED_DATA:
            pass
    assert ei.value.limit == "max_bulk_length"


def test_long_line_rejected_without_waiting_for_newline():
    d = Decoder(Limits(max_line_length=100))
    d.receive_data(b"+" + b"a" * 50)
    assert d.next_event() is NEED_DATA
    d.receive_data(b"a" * 60)
    with pytest.raises(FrameTooLarge) as ei:
        d.next_event()
    assert ei.value.limit == "max_line_length"


def _peak_while(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_oversized_frames_use_bounded_memory():
    chunk = b"x" * 65536
    lim = Limits(max_frame_size=1 << 18, max_bulk_length=1 << 17, max_line_length=4096)

    def endless_line():
        d = Decoder(lim)
        d.receive_data(b"+")
        with pytest.raises(FrameTooLarge):
            for _ in range(1000):  # 64 MiB offered
                d.receive_data(chunk)
                d.next_event()

    def endless_array():
        d = Decoder(lim)
        d.receive_data(b"*80000\r\n")
        with pytest.raises(FrameTooLarge):
            for _ in range(1000):
                d.receive_data(b"$3\r\nabc\r\n" * 4096)
                while d.next_event() is not NEED_DATA:
                    pass

    def big_declared_bulk():
        d = Decoder(lim)
        d.receive_data(b"$1000000000000\r\n")
        with pytest.raises(FrameTooLarge):
            d.next_event()

    for fn in (endless_line, endless_array, big_declared_bulk):
        assert _peak_while(fn) < 4 * (1 << 20), fn.__name__


def test_large_bulk_in_small_chunks_is_linear():
    # 8 MiB bulk fed in 4 KiB pieces: chunks are joined once, not per feed.
    payload = bytes(random.Random(1).getrandbits(8) for _ in range(4096)) * 2048
    frame = b"$%d\r\n%s\r\n" % (len(payload), payload)
    d = Decoder()
    calls = 0
    for i in range(0, len(frame), 4096):
        d.receive_data(frame[i:i + 4096])
        v = d.next_event()
        calls += 1
        if v is not NEED_DATA:
            break
    assert v == payload and calls == len(frame) // 4096 + 1


def test_limits_validate():
    with pytest.raises(ValueError):
        Limits(max_depth=0)
    with pytest.raises(ValueError):
        Limits(max_bulk_length=True)


def test_in_frame_and_buffered():
    d = Decoder()
    assert not d.in_frame
    d.receive_data(b"*2\r\n:1\r\n")
    assert d.next_event() is NEED_DATA and d.in_frame
    d.receive_data(b":2\r\n+OK")
    assert d.next_event() == [1, 2]
    assert d.next_event() is NEED_DATA and d.buffered == 3
    d.receive_data(b"\r\n")
    assert d.next_event() == b"OK" and not d.in_frame


def test_streamed_string_memory_is_proportional_to_its_payload():
    """Issue 13: a streamed string (``$?`` + ``;N`` chunks) of 126 MB on the wire once
    peaked at 1.55 GiB RSS (a list of chunk objects, then a join). Assembled in one
    accumulator, the peak stays a small multiple of the payload, however small the
    chunks."""
    import tracemalloc

    payload = 256 * 1024
    chunk = 8
    piece = b";%d\r\n%s\r\n" % (chunk, b"x" * chunk)
    wire = b"$?\r\n" + piece * (payload // chunk) + b";0\r\n"
    dec = Decoder(Limits(max_frame_size=len(wire) + 10))
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        step = 1 << 16
        got = None
        for i in range(0, len(wire), step):
            dec.receive_data(wire[i:i + step])
            v = dec.next_event()
            if v is not NEED_DATA:
                got = v
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert got == b"x" * payload
    assert peak < 4 * payload, f"peak {peak} bytes for a {payload}-byte streamed string"


def test_streamed_string_assembled_size_is_limited():
    dec = Decoder(Limits(max_bulk_length=100))
    dec.receive_data(b"$?\r\n" + b";60\r\n" + b"a" * 60 + b"\r\n" + b";60\r\n" + b"a" * 60 + b"\r\n")
    with pytest.raises(FrameTooLarge, match="max_bulk_length"):
        dec.next_event()
