"""The Autobahn testsuite's categories, reproduced over real loopback sockets
against our server (a raw client sends hand-built frames): framing, pings/pongs,
reserved bits, opcodes, fragmentation, UTF-8, close codes and bodies, limits and
compression, including the deflate bomb, 100k one-byte fragments, a ping flood and
a peer that never answers the close."""

import struct

import pytest

import greenrt
from greenrt.protocols import websocket

from .conftest import serve
from .rawpeer import RawClient, close_frame, deflate, frame

pytestmark = pytest.mark.timeout(120)


def run_against_server(test, *, limits=None, compression=False, handler=None):
    """Run ``test(client_factory, errors)`` against an echo server."""
    errors = []
    limits = limits or websocket.WebSocketLimits(close_timeout=2)

    def echo(ws):
        try:
            for m in ws:
                ws.send(m)
        except websocket.WebSocketError as e:
            errors.append(e)

    def main():
        with greenrt.region() as r:
            server, port = serve(r, websocket.serve_handler(handler or echo, limits=limits,
                                                            compression=compression))
            try:
                test(lambda **kw: RawClient(port, **kw), errors)
            finally:
                server.shutdown()

    greenrt.run(main)
    return errors


def expect_close(payload_frames, code, *, limits=None, compression=False, error=None):
    def test(client, errors):
        c = client(extensions=b"permessage-deflate" if compression else None)
        for f in payload_frames:
            c.send(f)
        got, _ = c.read_close()
        assert got == code
        c.expect_eof()
        c.close()
    errors = run_against_server(test, limits=limits, compression=compression)
    if error is not None:
        assert errors and isinstance(errors[0], error), errors
    return errors


# -- 1. framing ---------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 1 << 20])
@pytest.mark.parametrize("opcode", [0x1, 0x2])
def test_framing_sizes_echo(size, opcode):
    payload = b"*" * size

    def test(client, errors):
        c = client()
        c.send(frame(opcode, payload))
        assert c.read_message() == (opcode, payload)
        c.send(close_frame(1000))
        assert c.read_close() == (1000, b"")
        c.expect_eof()
    assert run_against_server(test) == []


def test_framing_byte_by_byte_segmentation():
    data = frame(0x1, "segmented ✓".encode()) + frame(0x2, b"\x00" * 300)

    def test(client, errors):
        c = client()
        for i in range(len(data)):
            c.send(data[i:i + 1])
        assert c.read_message() == (0x1, "segmented ✓".encode())
        assert c.read_message() == (0x2, b"\x00" * 300)
    assert run_against_server(test) == []


def test_unmasked_client_frame_is_refused():
    expect_close([frame(0x1, b"hi", mask=False)], 1002, error=websocket.WebSocketProtocolError)


# -- 2. pings and pongs ---------------------------------------------------------

def test_ping_answered_with_same_payload_and_unsolicited_pong_ignored():
    def test(client, errors):
        c = client()
        c.send(frame(0xA, b"unsolicited"))
        c.send(frame(0x9, b"x" * 125))
        f = c.read_frame()
        assert f[2:] == (0xA, b"x" * 125)
        c.send(frame(0x1, b"after"))
        assert c.read_message() == (0x1, b"after")
    assert run_against_server(test) == []


def test_ping_payload_over_125_is_a_protocol_error():
    expect_close([frame(0x9, b"x" * 126)], 1002)


def test_ping_flood_closes_1008():
    errors = expect_close([b"".join(frame(0x9, b"p") for _ in range(2000))], 1008)
    assert errors and isinstance(errors[0], websocket.WebSocketLimitError)
    assert errors[0].limit == "max_pings_per_second"


# -- 3. reserved bits, 4. opcodes ------------------------------------------------

@pytest.mark.parametrize("rsv", [1, 2, 4, 7])
def test_reserved_bits_without_extension(rsv):
    expect_close([frame(0x1, b"x", rsv=rsv)], 1002)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcodes(opcode):
    expect_close([frame(opcode, b"")], 1002)


# -- 5. fragmentation ------------------------------------------------------------

def test_fragments_with_interleaved_ping():
    def test(client, errors):
        c = client()
        c.send(frame(0x1, b"frag", fin=False) + frame(0x9, b"mid") + frame(0x0, b"men", fin=False)
               + frame(0x0, b"ted"))
        f = c.read_frame()
        assert f[2:] == (0xA, b"mid")
        assert c.read_message() == (0x1, b"fragmented")
    assert run_against_server(test) == []


def test_continuation_without_start():
    expect_close([frame(0x0, b"x")], 1002)


def test_new_message_inside_fragmented_one():
    expect_close([frame(0x1, b"a", fin=False), frame(0x1, b"b")], 1002)


def test_fragmented_control_frame():
    expect_close([frame(0x9, b"a", fin=False)], 1002)


def test_100k_one_byte_fragments_assembled():
    n = 100_000
    data = frame(0x2, b"a", fin=False) + b"".join(frame(0x0, b"b", fin=False) for _ in range(n - 2)) \
        + frame(0x0, b"c")

    def test(client, errors):
        c = client()
        c.send(data)
        assert c.read_message() == (0x2, b"a" + b"b" * (n - 2) + b"c")
    limits = websocket.WebSocketLimits(max_fragments=n)
    assert run_against_server(test, limits=limits) == []


def test_100k_one_byte_fragments_over_the_default_cap():
    data = frame(0x2, b"a", fin=False) + b"".join(frame(0x0, b"b", fin=False) for _ in range(100_000))
    errors = expect_close([data], 1009, error=websocket.WebSocketLimitError)
    assert errors[0].limit == "max_fragments"


# -- 6. UTF-8 ----------------------------------------------------------------------

@pytest.mark.parametrize("payload", [b"\xff", b"\xc3", b"\xed\xa0\x80", b"ok\xf4\x90\x80\x80",
                                     b"\xc0\xaf"])
def test_invalid_utf8_text(payload):
    expect_close([frame(0x1, payload)], 1007)


def test_valid_utf8_split_across_fragments():
    s = "κόσμε✓".encode()

    def test(client, errors):
        c = client()
        c.send(b"".join(frame(0x1 if i == 0 else 0x0, s[i:i + 1], fin=i == len(s) - 1)
                        for i in range(len(s))))
        assert c.read_message() == (0x1, s)
    assert run_against_server(test) == []


def test_invalid_utf8_detected_in_the_first_fragment():
    """Incremental validation: a bad first fragment closes 1007 before the message
    is finished (the last fragment is never sent)."""
    expect_close([frame(0x1, b"good\xff", fin=False)], 1007)


# -- 7. close codes and bodies -------------------------------------------------------

@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999])
def test_valid_close_codes_echoed(code):
    def test(client, errors):
        c = client()
        c.send(close_frame(code, b"bye"))
        assert c.read_close()[0] == code
        c.expect_eof()
    run_against_server(test)


def test_empty_close_answered_1000():
    def test(client, errors):
        c = client()
        c.send(close_frame())
        assert c.read_close()[0] in (1000, None)
        c.expect_eof()
    run_against_server(test)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
def test_invalid_close_codes(code):
    expect_close([close_frame(code)], 1002)


def test_close_body_of_one_byte():
    expect_close([frame(0x8, b"\x03")], 1002)


def test_close_reason_invalid_utf8():
    expect_close([close_frame(1000, b"\xff\xfe")], 1007)


def test_peer_that_never_answers_the_close():
    """Our close() waits close_timeout for the peer's Close, then closes TCP."""
    done = []

    def handler(ws):
        ws.close(1001, "going away")
        done.append(ws.close_code)

    def test(client, errors):
        c = client()
        assert c.read_close() == (1001, b"going away")
        # never answer: the server must close TCP on its own
        c.expect_eof()
        while not done:
            greenrt.sleep(0.001)
        assert done == [1006]

    run_against_server(test, limits=websocket.WebSocketLimits(close_timeout=0.2), handler=handler)


# -- 9. limits -------------------------------------------------------------------------

def test_frame_over_max_refused_on_its_header():
    """Only the header of a 17 MiB frame is sent: the close comes before any payload,
    so nothing was buffered waiting for it."""
    errors = expect_close([frame(0x2, b"", length=17 * 1024 * 1024)], 1009,
                          error=websocket.WebSocketLimitError)
    assert errors[0].limit == "max_frame_bytes"
    assert errors[0].value == 17 * 1024 * 1024


def test_64bit_length_with_top_bit():
    head = struct.pack("!BBQ", 0x82, 0xFF, 1 << 63) + b"\x00\x00\x00\x00"
    expect_close([head], 1009)


def test_messages_before_a_limit_fault_are_delivered_first():
    """One write holding a message, then an oversized frame header: the server's
    recv still returns the message, then raises the limit (the Close 1009 went out
    when the fault was found). The fuzz target's segmentation invariant."""
    got = []

    def handler(ws):
        got.append(ws.recv())
        with pytest.raises(websocket.WebSocketLimitError):
            ws.recv()
        got.append("limit")

    def test(client, errors):
        c = client()
        c.send(frame(0x1, b"first") + frame(0x2, b"", length=17 * 1024 * 1024))
        assert c.read_close()[0] == 1009
        c.expect_eof()
        while len(got) < 2:
            greenrt.sleep(0.001)
    run_against_server(test, handler=handler)
    assert got == ["first", "limit"]


def test_nothing_after_a_close_frame_is_judged():
    """Pings after the peer's Close are not charged (wsproto discards them)."""
    def test(client, errors):
        c = client()
        c.send(close_frame(1000) + b"".join(frame(0x9, b"") for _ in range(500)))
        assert c.read_close()[0] == 1000
        c.expect_eof()
    assert run_against_server(test) == []


def test_message_over_max_across_fragments():
    limits = websocket.WebSocketLimits(max_message_bytes=1000, max_frame_bytes=1000)
    errors = expect_close([frame(0x2, b"x" * 600, fin=False), frame(0x0, b"x" * 600)], 1009,
                          limits=limits, error=websocket.WebSocketLimitError)
    assert errors[0].limit == "max_message_bytes"


# -- 12. / 13. compression -------------------------------------------------------------

def test_compressed_message_echo():
    text = ("compress me " * 1000).encode()

    def test(client, errors):
        c = client(extensions=b"permessage-deflate")
        assert b"permessage-deflate" in c.response_head
        c.send(frame(0x1, deflate(text), rsv=4))
        f = c.read_frame()
        assert f[1] == 4  # the echo is compressed too
    assert run_against_server(test, compression=True) == []


def test_deflate_bomb_closes_1009_before_inflating_it():
    """200 MB of zeros deflate to ~200 kB; with the default 64 MiB message limit the
    inflater stops at the limit (it never produces more than the room left + 1)."""
    bomb = deflate(bytes(200 * 1024 * 1024))
    assert len(bomb) < 300_000
    errors = expect_close([frame(0x2, bomb, rsv=4)], 1009, compression=True,
                          error=websocket.WebSocketLimitError)
    assert errors[0].code == "inflated_too_large"


def test_small_inflate_limit():
    limits = websocket.WebSocketLimits(max_message_bytes=10_000)
    expect_close([frame(0x2, deflate(bytes(10_001)), rsv=4)], 1009, compression=True,
                 limits=limits)


def test_rsv1_on_continuation_is_an_error():
    expect_close([frame(0x1, deflate(b"ab"), rsv=4, fin=False), frame(0x0, b"x", rsv=4)], 1002,
                 compression=True)


def test_corrupt_deflate_data():
    expect_close([frame(0x2, b"\xff\xff\xff\xff\xff", rsv=4)], 1007, compression=True)


def test_deflate_bomb_memory_is_bounded_by_the_limit():
    """A 100 MB bomb against a 1 MiB message limit: the traced peak while the server
    handles it stays a few MiB (the inflater never yields more than the room left + 1;
    without the bound the peak would be the whole 100 MB)."""
    import tracemalloc

    bomb_frame = frame(0x2, deflate(bytes(100 * 1024 * 1024)), rsv=4)
    limits = websocket.WebSocketLimits(max_message_bytes=1024 * 1024, close_timeout=2)

    def test(client, errors):
        c = client(extensions=b"permessage-deflate")
        tracemalloc.start()
        try:
            c.send(bomb_frame)
            assert c.read_close()[0] == 1009
            c.expect_eof()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 8 * 1024 * 1024, peak
    errors = run_against_server(test, limits=limits, compression=True)
    assert errors and errors[0].code == "inflated_too_large"
