"""Our gRPC server against requests no well-behaved client sends, from a raw h2
client (the ``h2`` library over a loopback socket): bad prefixes, a gzip bomb, the
compressed flag without ``grpc-encoding``, malformed ``grpc-timeout``, oversized
metadata, not-gRPC requests; and the outcome -> status mapping of handlers, and
interceptors, through grpcio's client."""

from __future__ import annotations

import socket
import zlib

import grpc
import h2.config
import h2.connection
import h2.events
import pytest

import greenrt
from greenrt.protocols.grpc import GrpcLimits, RpcError, StatusCode
from greenrt.protocols.grpc.framing import encode_message
from greenrt.protocols.grpc.server import Server

from .conftest import GrpcServerThread
from .interop_service import OurTestService
from .pb import SERVICE, pb2, pb2_grpc

PATH = "/grpc.testing.TestService/UnaryCall"


class RawCall:
    """One request on a fresh connection; collects the response headers, data and
    trailers (or the reset)."""

    def __init__(self, port, path=PATH, headers=(), body=b"", method="POST",
                 content_type="application/grpc", end=True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                       header_encoding=None))
        self.h2.initiate_connection()
        hdrs = [(b":method", method.encode()), (b":scheme", b"http"), (b":path", path.encode()),
                (b":authority", b"localhost")]
        if content_type:
            hdrs.append((b"content-type", content_type.encode()))
        hdrs += [(b"te", b"trailers")] + [(k.encode() if isinstance(k, str) else k,
                                           v.encode() if isinstance(v, str) else v)
                                          for k, v in headers]
        self.h2.send_headers(1, hdrs, end_stream=not body and end)
        for i in range(0, len(body), 16384):  # within the default window (65535)
            self.h2.send_data(1, body[i:i + 16384], end_stream=end and i + 16384 >= len(body))
        self.sock.sendall(self.h2.data_to_send())
        self.headers = None
        self.trailers = None
        self.data = b""
        self.reset = None
        self._run()
        self.sock.close()

    def _run(self):
        done = False
        while not done:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            for ev in self.h2.receive_data(chunk):
                if isinstance(ev, h2.events.ResponseReceived):
                    self.headers = dict(ev.headers)
                elif isinstance(ev, h2.events.TrailersReceived):
                    self.trailers = dict(ev.headers)
                elif isinstance(ev, h2.events.DataReceived):
                    self.data += ev.data
                    self.h2.acknowledge_received_data(ev.flow_controlled_length, 1)
                elif isinstance(ev, h2.events.StreamReset):
                    self.reset = ev.error_code
                    done = True
                elif isinstance(ev, h2.events.StreamEnded):
                    done = True
            self.sock.sendall(self.h2.data_to_send())

    @property
    def status(self):
        src = self.trailers if self.trailers is not None else self.headers
        v = (src or {}).get(b"grpc-status")
        return None if v is None else int(v)

    @property
    def message(self):
        src = self.trailers if self.trailers is not None else self.headers
        return (src or {}).get(b"grpc-message", b"").decode()


def _req(size=10):
    return encode_message(pb2.SimpleRequest(response_size=size).SerializeToString())


def test_raw_call_well_formed(our_server):
    c = RawCall(our_server.port, body=_req(10))
    assert c.headers[b":status"] == b"200"
    assert c.status == 0
    assert len(c.data) == 5 + len(pb2.SimpleResponse(payload=pb2.Payload(body=b"\0" * 10))
                                  .SerializeToString())


def test_oversized_prefix_is_resource_exhausted_before_buffering(our_server):
    c = RawCall(our_server.port, body=b"\x00\xff\xff\xff\xff", end=False)
    assert c.status == StatusCode.RESOURCE_EXHAUSTED
    assert "max_receive_message_bytes" in c.message
    assert "message_too_large" in our_server.codes()


def test_gzip_bomb_limited_after_decompression(our_server):
    co = zlib.compressobj(wbits=31)
    bomb = co.compress(b"\x00" * (64 << 20)) + co.flush()
    assert len(bomb) < 4 << 20
    c = RawCall(our_server.port, headers=[("grpc-encoding", "gzip")],
                body=b"\x01" + len(bomb).to_bytes(4, "big") + bomb)
    assert c.status == StatusCode.RESOURCE_EXHAUSTED
    assert "decompressed_too_large" in our_server.codes()


def test_compressed_flag_without_grpc_encoding_is_internal(our_server):
    c = RawCall(our_server.port, body=encode_message(b"\x10\x05", compress=b"gzip"))
    assert c.status == StatusCode.INTERNAL
    assert "compressed_without_encoding" in our_server.codes()


def test_unknown_grpc_encoding_is_unimplemented(our_server):
    c = RawCall(our_server.port, headers=[("grpc-encoding", "snappy")], body=_req())
    assert c.status == StatusCode.UNIMPLEMENTED
    assert b"gzip" in c.headers[b"grpc-accept-encoding"]


@pytest.mark.parametrize("value", ["123456789S", "0n", "1x", "-1S", "1.5S", "S", ""])
def test_bad_grpc_timeout_is_refused(our_server, value):
    c = RawCall(our_server.port, headers=[("grpc-timeout", value)], body=_req())
    assert c.status == StatusCode.INTERNAL
    assert "grpc-timeout" in c.message
    assert not any(x["method"] == PATH and x["status"] == 0 for x in our_server.calls())


def test_largest_grpc_timeout_does_not_overflow(our_server):
    c = RawCall(our_server.port, headers=[("grpc-timeout", "99999999H")], body=_req())
    assert c.status == StatusCode.OK


def test_metadata_over_the_limit_is_resource_exhausted(our_server):
    c = RawCall(our_server.port, headers=[(f"x-k{i}", "v" * 200) for i in range(40)], body=_req())
    assert c.status == StatusCode.RESOURCE_EXHAUSTED
    assert "metadata_too_large" in our_server.codes()


def test_bad_binary_metadata_is_internal(our_server):
    c = RawCall(our_server.port, headers=[("x-bin", "A")], body=_req())
    assert c.status == StatusCode.INTERNAL


def test_truncated_message_is_internal(our_server):
    c = RawCall(our_server.port, body=_req()[:-2])
    assert c.status == StatusCode.INTERNAL
    assert "truncated_message" in our_server.codes()


def test_two_messages_on_a_unary_call_is_internal(our_server):
    c = RawCall(our_server.port, body=_req() + _req())
    assert c.status == StatusCode.INTERNAL


def test_unparsable_message_is_internal(our_server):
    c = RawCall(our_server.port, body=encode_message(b"\xff\xff\xff"))
    assert c.status == StatusCode.INTERNAL


def test_not_grpc_requests_get_http_errors(our_server):
    assert RawCall(our_server.port, method="GET").headers[b":status"] == b"405"
    assert RawCall(our_server.port, content_type="text/plain",
                   body=b"x").headers[b":status"] == b"415"


def test_trailers_only_for_unknown_method(our_server):
    c = RawCall(our_server.port, path="/grpc.testing.TestService/Nope", body=_req())
    assert c.trailers is None and c.data == b""
    assert c.status == StatusCode.UNIMPLEMENTED
    assert c.headers[b"content-type"] == b"application/grpc"


# -- outcome -> status, interceptors -----------------------------------------------------

class _Outcomes(OurTestService):
    def UnaryCall(self, req, ctx):
        kind = dict(ctx.metadata).get("x-outcome")
        if kind == "value-error":
            raise ValueError("boom")
        if kind == "rpc-error":
            raise RpcError(StatusCode.NOT_FOUND, "no such thing", details=b"\x08\x05",
                           trailers=[("x-why", "because")])
        if kind == "abort":
            ctx.abort(StatusCode.PERMISSION_DENIED, "nope")
        if kind == "panic":
            raise greenrt.InvariantViolation("broken")
        if kind == "none":
            return None
        return super().UnaryCall(req, ctx)


@pytest.fixture
def outcome_stub():
    seen = []

    def auth(ctx, call):
        seen.append(ctx.method)
        if dict(ctx.metadata).get("x-auth") == "deny":
            raise RpcError(StatusCode.UNAUTHENTICATED, "denied by interceptor")
        return call()

    srv = Server(interceptors=[auth])
    srv.add_servicer(SERVICE, _Outcomes())
    t = GrpcServerThread(srv).start()
    ch = grpc.insecure_channel(t.target)
    yield pb2_grpc.TestServiceStub(ch), seen
    ch.close()
    t.stop()


@pytest.mark.parametrize("kind,code,details", [
    ("value-error", grpc.StatusCode.UNKNOWN, "Exception calling application: ValueError"),
    ("rpc-error", grpc.StatusCode.NOT_FOUND, "no such thing"),
    ("abort", grpc.StatusCode.PERMISSION_DENIED, "nope"),
    ("panic", grpc.StatusCode.INTERNAL, "handler panicked: InvariantViolation"),
    ("none", grpc.StatusCode.INTERNAL, "handler returned no response"),
])
def test_outcome_mapping(outcome_stub, kind, code, details):
    stub, _ = outcome_stub
    with pytest.raises(grpc.RpcError) as ei:
        stub.UnaryCall(pb2.SimpleRequest(), metadata=[("x-outcome", kind)])
    assert ei.value.code() == code
    assert ei.value.details() == details


def test_status_details_and_trailers(outcome_stub):
    stub, _ = outcome_stub
    with pytest.raises(grpc.RpcError) as ei:
        stub.UnaryCall(pb2.SimpleRequest(), metadata=[("x-outcome", "rpc-error")])
    tr = dict(ei.value.trailing_metadata())
    assert tr["grpc-status-details-bin"] == b"\x08\x05"
    assert tr["x-why"] == "because"


def test_interceptor_sees_and_refuses(outcome_stub):
    stub, seen = outcome_stub
    assert stub.EmptyCall(pb2.Empty()) == pb2.Empty()
    with pytest.raises(grpc.RpcError) as ei:
        stub.EmptyCall(pb2.Empty(), metadata=[("x-auth", "deny")])
    assert ei.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert seen == ["/grpc.testing.TestService/EmptyCall"] * 2


def test_send_limit_is_enforced():
    srv = Server(limits=GrpcLimits(max_send_message_bytes=100))
    srv.add_servicer(SERVICE, OurTestService())
    t = GrpcServerThread(srv).start()
    try:
        with grpc.insecure_channel(t.target) as ch:
            stub = pb2_grpc.TestServiceStub(ch)
            assert len(stub.UnaryCall(pb2.SimpleRequest(response_size=50)).payload.body) == 50
            with pytest.raises(grpc.RpcError) as ei:
                stub.UnaryCall(pb2.SimpleRequest(response_size=500))
            assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        t.stop()
