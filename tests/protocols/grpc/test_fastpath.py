"""The server's one-write unary answer: the pre-encoded header blocks
(``http2._wire.HeaderBlock``) and the fallback to h2's encoder when the client
changed its HPACK table size (the size update must open the next header block,
RFC 7541 4.2), seen on the wire by a raw h2 client on a loopback socket."""

from __future__ import annotations

import socket

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
import pytest
from hyperframe.frame import Frame

from greenrt.protocols.grpc.framing import encode_message
from greenrt.protocols.grpc.server import _HEAD, _OK
from greenrt.protocols.http2._wire import HeaderBlock

from .pb import pb2

PATH = "/grpc.testing.TestService/UnaryCall"


def test_header_block_decodes_without_touching_the_dynamic_table():
    fields = [(b":status", b"200"), (b"content-type", b"application/grpc"),
              (b"grpc-accept-encoding", b"identity,deflate,gzip"), (b"x-" + b"n" * 200, b"v" * 300)]
    block = HeaderBlock(fields).block
    dec = hpack.Decoder()
    assert dec.decode(block, raw=True) == fields
    assert len(dec.header_table.dynamic_entries) == 0
    # the same bytes stay valid whatever the table holds (another block indexed first)
    enc = hpack.Encoder()
    dec.decode(enc.encode([(b"content-type", b"text/plain"), (b"x-a", b"b")]), raw=True)
    assert len(dec.header_table.dynamic_entries) == 2
    assert dec.decode(block, raw=True) == fields
    assert dec.decode(HeaderBlock([(b"grpc-status", b"0")]).block, raw=True) == [
        (b"grpc-status", b"0")]


@pytest.mark.parametrize("bad", [(b"Content-Type", b"x"), (b"x", b"a\r\nb"), (b"", b"x"),
                                 (b"a b", b"x"), (b"x", b"\x00")])
def test_header_block_refuses_what_is_not_a_constant_field(bad):
    with pytest.raises(ValueError):
        HeaderBlock([bad])


class Conn:
    """A raw h2 client connection that keeps the HEADERS blocks it received."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding=None))
        self.h2.initiate_connection()
        self.sock.sendall(self.h2.data_to_send())
        self.raw = bytearray()
        self.blocks: dict[int, list[bytes]] = {}

    def _frames(self):
        while len(self.raw) >= 9:
            f, length = Frame.parse_frame_header(memoryview(bytes(self.raw[:9])))
            if len(self.raw) < 9 + length:
                return
            body = bytes(self.raw[9:9 + length])
            del self.raw[:9 + length]
            if f.type == 0x1:  # HEADERS (no padding or priority from our server)
                self.blocks.setdefault(f.stream_id, []).append(body)

    def call(self, body: bytes):
        sid = self.h2.get_next_available_stream_id()
        self.h2.send_headers(sid, [(b":method", b"POST"), (b":scheme", b"http"),
                                   (b":path", PATH.encode()), (b":authority", b"localhost"),
                                   (b"content-type", b"application/grpc"), (b"te", b"trailers")])
        self.h2.send_data(sid, body, end_stream=True)
        self.sock.sendall(self.h2.data_to_send())
        data, trailers = b"", None
        while trailers is None:
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed the connection"
            self.raw += chunk
            self._frames()
            for ev in self.h2.receive_data(chunk):  # h2's decoder checks every block
                if isinstance(ev, h2.events.DataReceived):
                    data += ev.data
                    self.h2.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, h2.events.TrailersReceived):
                    trailers = dict(ev.headers)
                elif isinstance(ev, h2.events.StreamReset):
                    raise AssertionError(f"stream reset: {ev.error_code}")
            self.sock.sendall(self.h2.data_to_send())
        return sid, data, trailers

    def settle(self):
        """Send pending frames (SETTINGS) and read until the server ACKed them."""
        self.h2.ping(b"12345678")
        self.sock.sendall(self.h2.data_to_send())
        acked = False
        while not acked:
            chunk = self.sock.recv(65536)
            assert chunk
            self.raw += chunk
            self._frames()
            for ev in self.h2.receive_data(chunk):
                acked = acked or isinstance(ev, h2.events.PingAckReceived)
            self.sock.sendall(self.h2.data_to_send())


def _req(size):
    return encode_message(pb2.SimpleRequest(response_size=size).SerializeToString())


def test_unary_answers_are_the_pre_encoded_blocks(our_server):
    c = Conn(our_server.port)
    try:
        for size in (0, 10, 1000):
            sid, data, trailers = c.call(_req(size))
            assert trailers == {b"grpc-status": b"0"}
            reply = pb2.SimpleResponse.FromString(data[5:])
            assert len(reply.payload.body) == size
            assert c.blocks[sid] == [_HEAD.block, _OK.block]
    finally:
        c.sock.close()


def test_a_table_size_change_is_announced_before_the_pre_encoded_blocks(our_server):
    """The client shrinks the server's HPACK table: the next response's head opens
    with the dynamic table size update (h2's encoder sends it); after that the
    pre-encoded blocks come back. Without the fallback the update would be
    missing (the block would start with the static index of :status 200)."""
    c = Conn(our_server.port)
    try:
        c.call(_req(1))
        c.h2.update_settings({h2.settings.SettingCodes.HEADER_TABLE_SIZE: 0})
        c.settle()
        sid, _, trailers = c.call(_req(1))
        assert trailers == {b"grpc-status": b"0"}
        head = c.blocks[sid][0]
        assert head[0] & 0xE0 == 0x20 and head[0] & 0x1F == 0  # size update to 0
        sid, _, trailers = c.call(_req(1))
        assert trailers == {b"grpc-status": b"0"}
        assert c.blocks[sid] == [_HEAD.block, _OK.block]
    finally:
        c.sock.close()
