"""``_h2fast``'s HEADERS path (memoized HPACK decoding and header validation) against
h2's own ``receive_data``, differentially: two server connections get the same bytes,
one through h2, one frame by frame through ``_h2fast.receive_frame``; the events (or
the error) must be the same, block after block, including blocks that repeat while
the dynamic table changes under them."""

from __future__ import annotations

import re

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import hpack
import hyperframe.frame
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greenrt.protocols.http2 import _h2fast

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _server(**cfg) -> h2.connection.H2Connection:
    h = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, **cfg))
    h.initiate_connection()
    h.data_to_send()
    return h


def _fast_receive(h, data: bytes) -> list:
    """What ``server.feed_frames``/``client._receive`` do: h2's frame buffer, then
    ``_h2fast.receive_frame`` per frame."""
    buf = h.incoming_buffer
    buf.add_data(data)
    buf.max_frame_size = h.max_inbound_frame_size
    events: list = []
    for frame in buf:
        events.extend(_h2fast.receive_frame(h, frame))
    return events


def _view(events) -> list:
    out = []
    for e in events:
        row = [type(e).__name__, getattr(e, "stream_id", None)]
        if hasattr(e, "headers"):
            row.append([(type(hv).__name__, tuple(hv)) for hv in e.headers])
        if getattr(e, "stream_ended", None) is not None:
            row.append(("ended", e.stream_ended.stream_id))
        out.append(row)
    return out


def _both(blocks: list[bytes], *, end_stream=True, cfg=None, setup=None) -> tuple[list, list]:
    """Feed HEADERS frames carrying ``blocks`` (stream 1, 3, 5...) to a reference and a
    fast server connection; each side's per-block outcome (events, or the error)."""
    cfg = cfg or {}
    ref, fast = _server(**cfg), _server(**cfg)
    if setup is not None:
        setup(ref)
        setup(fast)
    first = PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # preface, empty SETTINGS
    ref.receive_data(first)
    _fast_receive(fast, first)
    got: tuple[list, list] = ([], [])
    for n, block in enumerate(blocks):
        sid = 2 * n + 1
        frame = (len(block).to_bytes(3, "big") + b"\x01" + bytes((0x4 | (0x1 if end_stream else 0),))
                 + sid.to_bytes(4, "big") + block)
        for side, recv in enumerate((ref.receive_data, lambda d: _fast_receive(fast, d))):
            try:
                got[side].append(_view(recv(frame)))
            except Exception as e:  # noqa: BLE001 - h2 lets UnicodeDecodeError out too
                why = re.sub(r"<memory at 0x[0-9a-f]+>", "<memory>", str(e))
                got[side].append(("error", type(e).__name__, why, type(e.__cause__).__name__))
        if isinstance(got[0][-1], tuple):
            break  # the connection is over: h2's state is not defined further
    return got


REQUEST = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/x.Y/Z"),
           (b":authority", b"example.com"), (b"content-type", b"application/grpc"),
           (b"te", b"trailers")]


def test_a_repeated_block_is_decoded_once_and_reads_the_same():
    """grpcio's shape: the first request indexes its fields, later ones are indexes
    only; the later ones are served from the memo (one decode for all of them) and
    give what h2 gives."""
    enc = hpack.Encoder()
    blocks = [enc.encode(REQUEST) for _ in range(6)]
    assert blocks[1] == blocks[2] and len(blocks[1]) < 10  # indexes only
    decodes = []
    real = _h2fast._decode_headers
    _h2fast._decode_headers = lambda d, data: (decodes.append(data), real(d, data))[1]
    try:
        ref, fast = _both(blocks)
    finally:
        _h2fast._decode_headers = real
    assert ref == fast
    assert len(ref) == 6 and all(e[0][0] == "RequestReceived" for e in ref)
    assert decodes == blocks[:2]  # the mutating first block, then the indexes once


def test_a_block_reading_a_replaced_entry_is_decoded_again():
    """The same bytes (index 62, the newest dynamic entry) after the table changed:
    a different header, so the memo must not answer."""
    # :method POST, :scheme http, :path / (static), :authority without indexing
    base = b"\x83\x86\x84\x01\x0bexample.com"

    def lit_indexed(name: bytes, value: bytes) -> bytes:  # RFC 7541 6.2.1, new name
        return b"\x40" + bytes((len(name),)) + name + bytes((len(value),)) + value

    newest = b"\xbe"
    blocks = [base + lit_indexed(b"x-a", b"1"), base + newest, base + newest,
              base + lit_indexed(b"x-b", b"2"), base + newest, base + newest]
    ref, fast = _both(blocks)
    assert ref == fast
    assert ref[2][0][2][-1] == ("HeaderTuple", (b"x-a", b"1"))
    assert ref[4][0][2][-1] == ("HeaderTuple", (b"x-b", b"2"))


def test_a_memoized_block_fails_once_the_table_size_is_over_the_allowed_size():
    """hpack rejects every block while the peer has not shrunk its table below our
    (lowered) HEADER_TABLE_SIZE; a remembered block too."""
    enc = hpack.Encoder()
    blocks = [enc.encode(REQUEST) for _ in range(3)]
    ref, fast = _server(), _server()
    outcomes: list = [[], []]
    for side, h in enumerate((ref, fast)):
        recv = h.receive_data if side == 0 else (lambda d, h=h: _fast_receive(h, d))
        recv(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        for n, block in enumerate(blocks):
            if n == 2:
                h.decoder.max_allowed_table_size = 0  # what h2 does on its SETTINGS ACK
            frame = (len(block).to_bytes(3, "big") + b"\x01\x05"
                     + (2 * n + 1).to_bytes(4, "big") + block)
            try:
                outcomes[side].append(_view(recv(frame)))
            except h2.exceptions.ProtocolError as e:
                outcomes[side].append(("error", str(e)))
    assert outcomes[0] == outcomes[1]
    assert outcomes[1][2][0] == "error"


def test_a_memoized_block_is_checked_against_the_current_list_size_limit():
    enc = hpack.Encoder()
    blocks = [enc.encode(REQUEST) for _ in range(3)]

    def shrink_after_two(h):
        real = h.decoder

        class Limit:  # lowers max_header_list_size before the third block
            n = 0
        orig = h.incoming_buffer.add_data

        def add(data):
            Limit.n += 1
            if Limit.n == 4:  # preface, then blocks 1, 2: the third block
                real.max_header_list_size = 64
            orig(data)
        h.incoming_buffer.add_data = add

    ref, fast = _both(blocks, setup=shrink_after_two)
    assert ref == fast
    assert ref[2][0] == "error" and ref[2][1] == "DenialOfServiceError"


def test_validation_is_remembered_per_kind_of_block():
    """The same pure (static/literal) block as a request and then as trailers: h2
    validates each against its own rules (trailers with pseudo-headers fail)."""
    block = hpack.Encoder().encode(REQUEST, huffman=False)
    ref, fast = _server(), _server()
    out: list = [[], []]
    for side, h in enumerate((ref, fast)):
        recv = h.receive_data if side == 0 else (lambda d, h=h: _fast_receive(h, d))
        recv(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        for flags in (0x4, 0x5):  # request head (stream open), then as trailers
            frame = len(block).to_bytes(3, "big") + b"\x01" + bytes((flags,)) \
                + (1).to_bytes(4, "big") + block
            try:
                out[side].append(_view(recv(frame)))
            except h2.exceptions.ProtocolError as e:
                out[side].append(("error", str(e)))
    assert out[0] == out[1]
    assert out[1][0][0][0] == "RequestReceived" and out[1][1][0] == "error"


# -- differential, with hypothesis ----------------------------------------------------

_names = st.sampled_from([b":method", b":scheme", b":path", b":authority", b":status",
                          b":protocol", b":bogus", b"host", b"te", b"connection",
                          b"content-length", b"cookie", b"x-a", b"X-Up", b"x:colon",
                          b"", b"grpc-timeout", b"user-agent"])
_values = st.sampled_from([b"POST", b"GET", b"CONNECT", b"http", b"/", b"", b"example.com",
                           b"trailers", b"gzip", b"12", b"1x", b" pad", b"a\r\nb",
                           b"a\x00", b"caf\xc3\xa9", b"200", b"v"]) | st.binary(max_size=8)
_field = st.tuples(_names, _values, st.sampled_from(["index", "never", "plain"]))
_request = st.lists(_field, min_size=0, max_size=8)


def _encode(enc: hpack.Encoder, fields, huffman: bool) -> bytes:
    out = []
    for name, value, how in fields:
        if how == "never":
            out.append(hpack.NeverIndexedHeaderTuple(name, value))
        elif how == "plain":
            out.append(hpack.HeaderTuple(name, value))
        else:
            out.append((name, value))
    return enc.encode(out, huffman=huffman)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(pool=st.lists(_request, min_size=1, max_size=4),
       picks=st.lists(st.tuples(st.integers(0, 3), st.booleans(),
                                st.sampled_from([None, 0, 64, 256, 4096])), min_size=1,
                      max_size=12),
       end_stream=st.booleans(),
       header_encoding=st.sampled_from([None, "utf-8"]))
def test_fast_headers_match_h2(pool, picks, end_stream, header_encoding):
    """Blocks drawn from a small pool of header lists (so they repeat), encoded with
    indexing, never-indexed and plain fields, Huffman or not, and table size updates
    between them: the fast path's events and errors are h2's."""
    # a plausible request first in the pool, so some blocks get past validation
    pool = [[(k, v, "index") for k, v in REQUEST]] + pool
    enc = hpack.Encoder()
    blocks = []
    for i, huffman, resize in picks:
        if resize is not None:
            enc.header_table_size = resize
        blocks.append(_encode(enc, pool[i % len(pool)], huffman))
        blocks.append(_encode(enc, pool[0], huffman))
    cfg = {"header_encoding": header_encoding}
    ref, fast = _both(blocks, end_stream=end_stream, cfg=cfg)
    assert ref == fast


@pytest.mark.parametrize("block", [b"\x80", b"\xff\xff\xff\xff\xff\xff\x7f", b"\x3f\xe1\x1f",
                                   b"\x00\x7f", b"\x82\x86\x84\x41\x0fexample.com\xbe\xbe",
                                   b"\x10\x01a\x81\xff"])
def test_broken_blocks_fail_as_h2_fails(block):
    ref, fast = _both([block, block])
    assert ref == fast and ref[0][0] == "error"


# -- the one DATA-frame writer ----------------------------------------------------------

def _pair(peer_ended: bool):
    """A client and a server h2 connection with stream 1 open (or, ``peer_ended``,
    half-closed by the client: the server's side is HALF_CLOSED_REMOTE)."""
    cl = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    sv = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    cl.initiate_connection()
    sv.initiate_connection()
    for _ in range(2):
        sv.receive_data(cl.data_to_send())
        cl.receive_data(sv.data_to_send())
    cl.send_headers(1, [(b":method", b"POST"), (b":path", b"/"), (b":scheme", b"http"),
                        (b":authority", b"x")], end_stream=peer_ended)
    sv.receive_data(cl.data_to_send())
    sv.send_headers(1, [(b":status", b"200")])
    cl.receive_data(sv.data_to_send())
    return cl, sv


@pytest.mark.parametrize("how", ["put_data", "send_data"])
@pytest.mark.parametrize("side, peer_ended", [("client", False), ("server", False),
                                              ("server", True)])
def test_the_data_writer_writes_what_h2_writes_with_and_without_end_stream(side, how,
                                                                           peer_ended):
    """``_h2fast.put_data``/``send_data`` (one set of checks) against
    ``h2.send_data``: the same bytes, windows and stream states, END_STREAM
    included (half-closing the stream, or closing it when the peer had ended); then
    both decline (nothing changed) on the stream they ended."""
    ref, fast = _pair(peer_ended), _pair(peer_ended)
    i = 0 if side == "client" else 1
    hr, hf = ref[i], fast[i]
    hr.data_to_send()
    hf.data_to_send()

    def write(data, end):
        if how == "put_data":
            assert _h2fast.put_data(hf, 1, data, end)
            return hf.data_to_send()
        out = _h2fast.send_data(hf, 1, data, end)
        assert out is not None
        return out

    for data, end in ((b"a", False), (bytes(range(256)) * 8, False), (b"", False),
                      (b"last", True)):
        if not data and not end:
            # an empty DATA frame without END_STREAM: declined, h2 would send one
            assert not _h2fast.put_data(hf, 1, data) and _h2fast.send_data(hf, 1, data) is None
            continue
        hr.send_data(1, data, end_stream=end)
        assert write(data, end) == hr.data_to_send()
        assert hf.outbound_flow_control_window == hr.outbound_flow_control_window
        assert hf.streams[1].outbound_flow_control_window == hr.streams[1].outbound_flow_control_window
        assert hf.streams[1].state_machine.state == hr.streams[1].state_machine.state
    state = hf.streams[1].state_machine.state
    assert not _h2fast.put_data(hf, 1, b"x") and _h2fast.send_data(hf, 1, b"x") is None
    assert not _h2fast.put_data(hf, 1, b"", True)
    assert hf.streams[1].state_machine.state == state and hf.data_to_send() == b""


def test_the_data_writer_declines_beyond_the_windows_and_the_frame_size():
    cl, sv = _pair(False)
    sv.data_to_send()
    assert not _h2fast.put_data(sv, 1, b"x" * (sv.max_outbound_frame_size + 1))
    assert not _h2fast.put_data(sv, 3, b"x")  # no such stream
    big = b"x" * 16384
    while _h2fast.put_data(sv, 1, big):  # down to less than a frame of window
        pass
    left = sv.local_flow_control_window(1)
    assert 0 <= left < len(big)
    assert _h2fast.send_data(sv, 1, b"x" * (left + 1)) is None
    assert sv.local_flow_control_window(1) == left
    wire = sv.data_to_send()
    got = b"".join(e.data for e in cl.receive_data(wire) if isinstance(e, h2.events.DataReceived))
    assert got == big * (len(got) // len(big)) and len(got) == 65535 - left


# -- the frame reader (_h2fast.frames) against h2's frame buffer ------------------------

def _raw(ftype: int, flags: int, sid: int, body: bytes, length: int | None = None) -> bytes:
    n = len(body) if length is None else length
    return n.to_bytes(3, "big") + bytes((ftype, flags)) + sid.to_bytes(4, "big") + body


_sid = st.sampled_from([0, 1, 3, 5, 0x7FFFFFFF, 0x80000001])
_frame = st.one_of(
    # DATA: any flags (PADDED with any pad length), any stream
    st.builds(lambda f, s, b: _raw(0, f, s, b), st.integers(0, 255), _sid, st.binary(max_size=40)),
    st.builds(lambda f, s, b: _raw(0, f, s, b), st.sampled_from([0, 1]), st.sampled_from([1, 3]),
              st.binary(max_size=40)),
    # WINDOW_UPDATE: the right length or not, increments in range and out
    st.builds(lambda s, inc, n: _raw(8, 0, s, inc.to_bytes(4, "big")[:n]), _sid,
              st.sampled_from([0, 1, 65535, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]),
              st.sampled_from([4, 4, 4, 3, 0])),
    st.builds(lambda s, x: _raw(8, 0xFF, s, x), _sid, st.binary(min_size=5, max_size=6)),
    # HEADERS with and without END_HEADERS, CONTINUATION, PING, SETTINGS, unknown
    st.builds(lambda f, s, b: _raw(1, f, s, b), st.sampled_from([0, 4, 5, 0x24, 0x0C]), _sid,
              st.binary(max_size=12)),
    st.builds(lambda f, s, b: _raw(9, f, s, b), st.sampled_from([0, 4]), _sid, st.binary(max_size=8)),
    st.builds(lambda b: _raw(6, 0, 0, b), st.binary(min_size=7, max_size=9)),
    st.just(_raw(4, 0, 0, b"")),
    st.builds(lambda b: _raw(0x20, 0, 1, b), st.binary(max_size=8)),
    # over the frame size (whole: refused), and a header that announces more than comes
    st.builds(lambda t: _raw(t, 0, 1, b"z" * 65), st.sampled_from([0, 8, 1])),
    st.builds(lambda t: _raw(t, 0, 1, b"", length=70000), st.sampled_from([0, 8])),
)


def _frame_view(f) -> tuple:
    d = {k: (sorted(v) if k == "flags" else bytes(v) if isinstance(v, memoryview) else v)
         for k, v in vars(f).items()}
    return type(f).__name__, sorted(d.items())


def _frames_of(read, side: str, chunks: list[bytes]) -> list:
    h = h2.connection.H2Connection(h2.config.H2Configuration(client_side=side == "client"))
    h.max_inbound_frame_size = 64  # (frames over it stay small)
    out: list = []
    try:
        for c in chunks:
            for f in read(h, c):
                out.append(_frame_view(f))
    except Exception as e:  # noqa: BLE001 - the verdict is part of what is compared
        out.append(("raised", type(e).__name__, str(e)))
        return out  # (what stays buffered after a connection error is never read)
    out.append(("held", bytes(h.incoming_buffer._data), len(h.incoming_buffer._headers_buffer)))
    return out


def _buffer_frames(h, data):
    buf = h.incoming_buffer
    buf.add_data(data)
    buf.max_frame_size = h.max_inbound_frame_size
    return buf


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(_frame, max_size=12), cuts=st.lists(st.integers(0, 400), max_size=6),
       side=st.sampled_from(["server", "client"]))
def test_the_frame_reader_gives_what_the_frame_buffer_gives(frames, cuts, side):
    """Frame for frame (class and every attribute), the same error at the same frame
    and, without an error, the same bytes left held, for any frame sequence cut
    anywhere."""
    data = (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" if side == "server" else b"") + b"".join(frames)
    points = sorted({min(c, len(data)) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert _frames_of(_h2fast.frames, side, chunks) == _frames_of(_buffer_frames, side, chunks)


def test_the_frame_reader_reads_data_window_updates_and_headers_in_place():
    """The common frames do not go through the frame buffer (else the fast path is
    dead and the differential test above compares the buffer with itself)."""
    h = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    seen = []
    real = type(h.incoming_buffer).__next__
    type(h.incoming_buffer).__next__ = lambda self: (seen.append(1), real(self))[1]
    try:
        got = list(_h2fast.frames(h, _raw(0, 1, 1, b"abc") + _raw(8, 0, 0, (5).to_bytes(4, "big"))
                                  + _raw(6, 0, 0, b"p" * 8) + _raw(0, 0, 3, b"d")
                                  + _raw(1, 5, 3, b"\x88")))
    finally:
        type(h.incoming_buffer).__next__ = real
    assert [type(f).__name__ for f in got] == ["DataFrame", "WindowUpdateFrame", "PingFrame",
                                                "DataFrame", "HeadersFrame"]
    assert got[4].data == b"\x88" and set(got[4].flags) == {"END_STREAM", "END_HEADERS"}
    assert len(seen) == 2  # the PING and the buffer's StopIteration after it; no other call
    assert got[0].data == b"abc" and "END_STREAM" in got[0].flags and got[0].flow_controlled_length == 3
    assert got[1].window_increment == 5 and got[3].stream_id == 3


def _wu_view(result) -> tuple:
    frames, events = result
    return ([(type(f).__name__, f.stream_id, getattr(f, "error_code", None)) for f in frames],
            [(type(e).__name__, e.stream_id, getattr(e, "delta", None), getattr(e, "error_code", None))
             for e in events])


def _wu_setup(h) -> None:
    """Streams in every state a WINDOW_UPDATE can meet: open (1), half-closed by the
    peer (3), closed by our END_STREAM answer (5), reset (7), never opened (9+)."""
    enc = hpack.Encoder()
    head = enc.encode([(":method", "GET"), (":path", "/"), (":scheme", "https"),
                       (":authority", "x")])
    h.receive_data(PREFACE + _raw(4, 0, 0, b"") + _raw(1, 4, 1, head)
                   + _raw(1, 5, 3, enc.encode([(":method", "GET"), (":path", "/"), (":scheme", "https"),
                                               (":authority", "x")]))
                   + _raw(1, 5, 5, enc.encode([(":method", "GET"), (":path", "/"), (":scheme", "https"),
                                               (":authority", "x")]))
                   + _raw(1, 4, 7, enc.encode([(":method", "GET"), (":path", "/"), (":scheme", "https"),
                                               (":authority", "x")])))
    h.send_headers(5, [(":status", "200")], end_stream=True)
    h.reset_stream(7)
    h.data_to_send()


@settings(max_examples=300, deadline=None)
@given(updates=st.lists(st.tuples(st.sampled_from([0, 1, 3, 5, 7, 9, 11]),
                                  st.sampled_from([1, 100, 65535, 0x7FFFFFFF])), max_size=8))
def test_window_updates_are_received_as_h2_receives_them(updates):
    """``_receive_window_update`` against h2's ``_receive_window_update_frame``: the
    same frames and events (or error) and the same windows, frame after frame, on
    streams in every state, up to overflow."""
    ref = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    fast = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    for h in (ref, fast):
        h.initiate_connection()
        _wu_setup(h)
    for sid, inc in updates:
        f = hyperframe.frame.WindowUpdateFrame(sid, window_increment=inc)
        got = []
        for h, step in ((ref, ref._receive_window_update_frame),
                        (fast, lambda fr: _h2fast._receive_window_update(fast, fr))):
            try:
                got.append(_wu_view(step(f)))
            except Exception as e:  # noqa: BLE001 - the verdict is compared
                got.append(("raised", type(e).__name__))
            got.append((h.outbound_flow_control_window, h.state_machine.state,
                        sorted((k, s.outbound_flow_control_window, s.state_machine.state)
                               for k, s in h.streams.items())))
        assert got[0] == got[2] and got[1] == got[3]
        if got[0][0] == "raised":
            return
