"""The one-write unary exchange: the server's answer and our client's request from
pre-encoded header blocks (``http2._wire.HeaderBlock``), and the fallback to h2's
encoder when the peer changed its HPACK table size (the size update must open the
next header block, RFC 7541 4.2), seen on the wire by a raw h2 peer on a loopback
socket."""

from __future__ import annotations

import socket
import threading

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
import pytest
from hyperframe.frame import Frame

import greenrt
from greenrt.protocols.grpc.client import Channel
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


class TableSizeZeroServer:
    """One connection: SETTINGS_HEADER_TABLE_SIZE = 0, every request answered OK,
    the request HEADERS blocks recorded as they came on the wire (a scripted peer:
    grpcio never shrinks the table)."""

    def __init__(self):
        self.lst = socket.create_server(("127.0.0.1", 0))
        self.port = self.lst.getsockname()[1]
        self.blocks: dict[int, bytes] = {}
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        sock, _ = self.lst.accept()
        conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding=None))
        conn.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.HEADER_TABLE_SIZE: 0})
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        raw = bytearray()
        preface = 24
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                raw += data
                if preface:
                    k = min(preface, len(raw))
                    del raw[:k]
                    preface -= k
                while len(raw) >= 9:
                    f, length = Frame.parse_frame_header(memoryview(bytes(raw[:9])))
                    if len(raw) < 9 + length:
                        break
                    if f.type == 0x1:
                        self.blocks[f.stream_id] = bytes(raw[9:9 + length])
                    del raw[:9 + length]
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        conn.send_headers(ev.stream_id, [(b":status", b"200"),
                                                         (b"content-type", b"application/grpc")])
                        conn.send_data(ev.stream_id, encode_message(b""))
                        conn.send_headers(ev.stream_id, [(b"grpc-status", b"0")],
                                          end_stream=True)
                    elif isinstance(ev, h2.events.DataReceived):
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                sock.sendall(conn.data_to_send())
        except OSError:
            return
        finally:
            sock.close()
            self.lst.close()


def test_client_request_head_is_cached_and_a_table_size_change_announced():
    """Our client's unary request head is encoded once per connection; after the
    server shrank the HPACK table the next head opens with the size update (h2's
    encoder), then the cached block comes back."""
    srv = TableSizeZeroServer()

    def main():
        with Channel("127.0.0.1", srv.port) as ch:
            for _ in range(3):
                ch.unary(PATH, pb2.SimpleRequest(), pb2.SimpleResponse)
            return ch._conn._blocks
    blocks = greenrt.run(main)
    srv.thread.join(10)
    (cached,) = [b for b in blocks.values() if b is not None]
    # the first request left before the server's SETTINGS were read: the cached block
    assert srv.blocks[1] == cached.block
    assert srv.blocks[3][0] & 0xE0 == 0x20 and srv.blocks[3][0] & 0x1F == 0
    assert srv.blocks[5] == cached.block
    assert hpack.Decoder().decode(cached.block, raw=True)[:4] == [
        (b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"127.0.0.1:%d" % srv.port),
        (b":path", PATH.encode())]
