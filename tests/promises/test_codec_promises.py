"""Codec promises, tried with a peer that lies about a length.

docs/architecture.md, "The sans-IO rules": every codec is *total* (any input gives
events, ``NEED_DATA`` or the protocol's ``ProtocolError``), *bounded* ("no allocation
sized by a peer's number before a limit check") and its errors are *sticky*. The codec
docstrings repeat it per protocol (grpc/framing.py: "a length over max_message_bytes
is refused from the prefix, before a byte of the message is buffered"; kafka
FrameDecoder: "before anything of the frame is buffered"; nats Parser: max_payload is
"never above the configured cap" whatever INFO says).

Each case announces an absurd length (GiB to EiB) in a header of a few bytes and
checks, under ``tracemalloc``, that the refusal is a typed error of the floor
(``protocols.base.errors``), that the peak of Python allocations stays far below the
announced size (a pre-sized buffer would show it at once), and that the error is
sticky (the next call raises again rather than resynchronising into garbage).
"""

from __future__ import annotations

import tracemalloc

import h11
import pytest

from greenrt.protocols.base import errors as base_errors
from greenrt.protocols.base.sansio import NEED_DATA
from greenrt.protocols.grpc.framing import MessageDecoder
from greenrt.protocols.http1._connection import H1Connection
from greenrt.protocols.kafka.codec import FrameDecoder
from greenrt.protocols.nats.codec import Limits as NatsLimits
from greenrt.protocols.nats.codec import Parser as NatsParser
from greenrt.protocols.redis.resp import Decoder as RespDecoder
from greenrt.protocols.websocket._framescan import FrameScanner, ScanLimit

#: far below every announced size below (>= 1 GiB), far above what parsing a header costs
PEAK_BOUND = 256 * 1024


def _grpc(wire):
    d = MessageDecoder(max_message_bytes=1 << 20)
    d.receive_data(wire)
    return d, d.next_event


def _kafka(wire):
    d = FrameDecoder(1 << 20)
    d.receive_data(wire)
    return d, d.next_event


def _nats(wire):
    p = NatsParser()
    p.receive_data(wire)
    return p, p.next_event


def _redis(wire):
    d = RespDecoder()
    d.receive_data(wire)
    return d, d.next_event


def _h1_server(wire):
    c = H1Connection()
    c.receive_data(wire)

    def step():
        for _ in range(8):   # the head comes out first; the body's verdict follows
            ev = c.next_event()
            if ev is h11.NEED_DATA:   # H1Connection speaks h11's events
                return NEED_DATA
        return ev

    return c, step


def _ws(wire):
    s = FrameScanner(max_frame=1 << 20, max_message=1 << 20, max_fragments=16)
    return s, lambda: s.feed(wire)


CASES = {
    # a 4 GiB gRPC message prefix
    "grpc_message_length": (_grpc, b"\x00\xff\xff\xff\xff" + b"x" * 100, "LimitError"),
    # a 2 GiB Kafka frame size
    "kafka_frame_size": (_kafka, b"\x7f\xff\xff\xff" + b"x" * 100, "LimitError"),
    "kafka_negative_size": (_kafka, b"\xff\xff\xff\xfe" + b"x" * 100, "ProtocolError"),
    # a 9.9 GB NATS payload (10 digits: the fast path's pattern) and a 20-digit one
    "nats_msg_size": (_nats, b"MSG a 1 9999999999\r\n" + b"x" * 100, "LimitError"),
    "nats_msg_size_20_digits": (_nats, b"MSG a 1 99999999999999999999\r\n", "ProtocolError"),
    "nats_hmsg_sizes": (_nats, b"HMSG a 1 9999999999 9999999999\r\n", "ProtocolError"),
    # RESP: a 100 EB bulk string, a 10^11-element array, a 10^11-entry map
    "redis_bulk_length": (_redis, b"$99999999999999999999\r\n", "ProtocolError"),
    "redis_bulk_length_in_range": (_redis, b"$9999999999\r\n" + b"x" * 100, "LimitError"),
    "redis_array_length": (_redis, b"*99999999999\r\n", "LimitError"),
    "redis_map_length": (_redis, b"%99999999999\r\n", "LimitError"),
    # HTTP/1.1 request: a 23-digit Content-Length, a 96-bit chunk size, an in-range 10 GB body
    "http1_content_length": (_h1_server, b"POST / HTTP/1.1\r\nHost: a\r\n"
                             b"Content-Length: 99999999999999999999999\r\n\r\n", "ProtocolError"),
    "http1_content_length_in_range": (_h1_server, b"POST / HTTP/1.1\r\nHost: a\r\n"
                                      b"Content-Length: 9999999999\r\n\r\n" + b"x" * 100, "LimitError"),
    "http1_chunk_size": (_h1_server, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"ffffffffffffffffffffffff\r\n", "ProtocolError"),
    "http1_chunk_size_in_range": (_h1_server, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"
                                  b"\r\n\r\nfffffffff\r\n" + b"x" * 100, "LimitError"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_absurd_length_is_refused_before_allocating_and_the_error_is_sticky(case):
    make, wire, kind = CASES[case]
    make(b"x")   # warm up: lazy imports and caches are not the header's cost
    tracemalloc.start()
    try:
        codec, step = make(wire)
        with pytest.raises(base_errors.ProtocolError) as first:
            step()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < PEAK_BOUND, f"{case}: {peak} bytes allocated for a refused header"
    if kind == "LimitError":
        assert isinstance(first.value, base_errors.LimitError), repr(first.value)
    with pytest.raises(base_errors.ProtocolError) as again:
        step()
    assert type(again.value) is type(first.value)


def test_websocket_scanner_refuses_a_63_bit_frame_length_before_allocating():
    # the scanner's own ScanLimit (the connection maps it to a close 1009); wsproto never
    # sees the header
    wire = b"\x82\xff\x7f" + b"\xff" * 7 + b"mask" + b"x" * 100
    _ws(b"x")
    tracemalloc.start()
    try:
        _, step = _ws(wire)
        with pytest.raises(ScanLimit) as first:
            step()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < PEAK_BOUND
    assert first.value.passed == b""          # nothing of the offending frame passed on
    with pytest.raises(ScanLimit):
        step()


@pytest.mark.parametrize("announced", [b"999999999999", b"67108865", b"18446744073709551616"])
def test_nats_info_cannot_raise_max_payload_above_the_configured_cap(announced):
    """A server's INFO may lower max_payload, never raise it past Limits.max_payload;
    a MSG sized between the cap and the INFO's figure is still refused."""
    p = NatsParser(NatsLimits(max_payload=1 << 16))
    p.receive_data(b'INFO {"max_payload": ' + announced + b'}\r\n')
    p.next_event()
    assert p.max_payload == 1 << 16
    p.receive_data(b"MSG a 1 %d\r\n" % ((1 << 16) + 1))
    with pytest.raises(base_errors.LimitError):
        p.next_event()


def test_nats_info_lowering_max_payload_applies():
    p = NatsParser(NatsLimits(max_payload=1 << 16))
    p.receive_data(b'INFO {"max_payload": 1000}\r\nMSG a 1 1001\r\n')
    p.next_event()
    assert p.max_payload == 1000
    with pytest.raises(base_errors.LimitError):
        p.next_event()


@pytest.mark.parametrize("case", ["grpc", "kafka", "http1"])
def test_a_length_the_peer_does_not_honour_ends_in_a_typed_error_at_eof(case):
    """The peer announces 100 bytes, sends 3 and closes: a typed error, not NEED_DATA
    forever (these codecs are fed EOF as ``b""``; RESP and NATS leave EOF to their
    connection, tried in test_pool_promises.py)."""
    if case == "grpc":
        codec, step = _grpc(b"\x00\x00\x00\x00\x64abc")
    elif case == "kafka":
        codec, step = _kafka(b"\x00\x00\x00\x64abc")
    else:
        codec, step = _h1_server(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc")
    assert step() is NEED_DATA
    assert codec.buffered >= 3 or case == "http1"
    codec.receive_data(b"")
    with pytest.raises((base_errors.ProtocolError, base_errors.ConnectionLost)):
        step()


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        if not n:
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


@pytest.mark.parametrize("declared", [10, 1 << 31])
def test_kafka_snappy_block_that_lies_about_its_length_is_refused_within_the_cap(declared):
    """protocols/kafka/records.py: decompress inflates "never beyond limit bytes". A raw
    snappy block of 1 MB of zeros whose leading uvarint says 10 bytes (lies low) or 2 GiB
    (lies high), against a 100 kB cap: a typed error, and at most about the cap held."""
    import snappy  # a kafka extra, installed by make setup

    from greenrt.protocols.kafka import records
    real = snappy.compress(b"\x00" * 1_000_000)
    block = _uvarint(declared) + real[len(_uvarint(1_000_000)):]
    tracemalloc.start()
    try:
        with pytest.raises(base_errors.ProtocolError) as e:
            records.decompress(records.COMPRESSION_SNAPPY, memoryview(block), 100_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < PEAK_BOUND
    if declared > 100_000:
        assert isinstance(e.value, base_errors.LimitError)
