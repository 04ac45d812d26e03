"""Our gRPC client (on our HTTP/2 client) calling grpcio's server (C core, thread
pool) and our own server: the interop cases of doc/interop-test-descriptions.md,
deadlines as budgets, cancellation, metadata, compression, TLS."""

from __future__ import annotations

import threading

import grpc
import pytest

import greenrt
from greenrt.protocols.grpc import RpcError, StatusCode
from greenrt.protocols.grpc.client import Channel, Stub

from .pb import SERVICE, pb2, pb2_grpc

UNIMPL = pb2.DESCRIPTOR.services_by_name["UnimplementedService"]


@pytest.fixture(params=["grpcio", "ours"])
def target(request):
    """(host, port) of a grpcio server or of ours, each serving TestService."""
    if request.param == "grpcio":
        return ("127.0.0.1", request.getfixturevalue("grpcio_server"))
    return ("127.0.0.1", request.getfixturevalue("our_server").port)


def run(target, fn, **kw):
    def main():
        with Channel(*target, **kw) as ch:
            return fn(ch, Stub(ch, SERVICE))
    return greenrt.run(main)


def test_empty_unary(target):
    assert run(target, lambda ch, s: s.EmptyCall(pb2.Empty())) == pb2.Empty()


def test_large_unary(target):
    r = run(target, lambda ch, s: s.UnaryCall(pb2.SimpleRequest(
        response_size=314159, payload=pb2.Payload(body=b"\0" * 271828))))
    assert r.payload.body == b"\0" * 314159


def test_client_streaming(target):
    sizes = [27182, 8, 1828, 45904]
    r = run(target, lambda ch, s: s.StreamingInputCall(
        iter([pb2.StreamingInputCallRequest(payload=pb2.Payload(body=b"\0" * n)) for n in sizes])))
    assert r.aggregated_payload_size == 74922


def test_server_streaming(target):
    sizes = [31415, 9, 2653, 58979]
    req = pb2.StreamingOutputCallRequest(
        response_parameters=[pb2.ResponseParameters(size=n) for n in sizes])
    got = run(target, lambda ch, s: [len(r.payload.body) for r in s.StreamingOutputCall(req)])
    assert got == sizes


def test_ping_pong(target):
    reqs, resps = [31415, 9, 2653, 58979], [27182, 8, 1828, 45904]

    def fn(ch, s):
        call = s.FullDuplexCall()
        got = []
        for rq, rs in zip(reqs, resps, strict=True):
            call.send(pb2.StreamingOutputCallRequest(
                response_parameters=[pb2.ResponseParameters(size=rq)],
                payload=pb2.Payload(body=b"\0" * rs)))
            got.append(len(next(call).payload.body))
        call.done()
        assert list(call) == []
        assert call.status == StatusCode.OK
        return got
    assert run(target, fn) == reqs


def test_empty_stream(target):
    def fn(ch, s):
        call = s.FullDuplexCall()
        call.done()
        return list(call), call.status
    assert run(target, fn) == ([], StatusCode.OK)


def test_custom_metadata(target):
    md = [("x-grpc-test-echo-initial", "test_initial_metadata_value"),
          ("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab")]

    def fn(ch, s):
        call = ch.start_call("/grpc.testing.TestService/UnaryCall", pb2.SimpleResponse,
                             metadata=md)
        call.send(pb2.SimpleRequest(response_size=314159,
                                    payload=pb2.Payload(body=b"\0" * 271828)))
        call.done()
        r = call.result()
        bidi = s.FullDuplexCall(metadata=md)
        bidi.send(pb2.StreamingOutputCallRequest(
            response_parameters=[pb2.ResponseParameters(size=314159)],
            payload=pb2.Payload(body=b"\0" * 271828)))
        bidi.done()
        n = [len(x.payload.body) for x in bidi]
        return (len(r.payload.body), call.initial_metadata(), call.trailing_metadata(), n,
                bidi.initial_metadata(), bidi.trailing_metadata())
    size, init, trail, n, binit, btrail = run(target, fn)
    assert size == 314159 and n == [314159]
    for i, t in ((init, trail), (binit, btrail)):
        assert ("x-grpc-test-echo-initial", "test_initial_metadata_value") in i
        assert ("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab") in t


def test_status_code_and_message(target):
    st = pb2.EchoStatus(code=2, message="test status message")

    def fn(ch, s):
        errs = []
        try:
            s.UnaryCall(pb2.SimpleRequest(response_status=st))
        except RpcError as e:
            errs.append(e)
        call = s.FullDuplexCall()
        call.send(pb2.StreamingOutputCallRequest(response_status=st))
        call.done()
        try:
            list(call)
        except RpcError as e:
            errs.append(e)
        return errs
    errs = run(target, fn)
    assert [(e.status, e.message) for e in errs] == [(StatusCode.UNKNOWN,
                                                      "test status message")] * 2


def test_special_status_message(target):
    text = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n"

    def fn(ch, s):
        with pytest.raises(RpcError) as ei:
            s.UnaryCall(pb2.SimpleRequest(response_status=pb2.EchoStatus(code=2, message=text)))
        return ei.value
    e = run(target, fn)
    assert (e.status, e.message) == (StatusCode.UNKNOWN, text)


def test_unimplemented_method_and_service(target):
    def fn(ch, s):
        out = []
        for stub in (s, Stub(ch, UNIMPL)):
            try:
                stub.UnimplementedCall(pb2.Empty())
            except RpcError as e:
                out.append(e.status)
        return out
    assert run(target, fn) == [StatusCode.UNIMPLEMENTED] * 2


def test_cancel_after_begin(target):
    def fn(ch, s):
        call = ch.start_call("/grpc.testing.TestService/StreamingInputCall",
                             pb2.StreamingInputCallResponse)
        call.cancel()
        with pytest.raises(RpcError) as ei:
            call.result()
        return ei.value.status
    assert run(target, fn) == StatusCode.CANCELLED


def test_cancel_after_first_response(target):
    def fn(ch, s):
        call = s.FullDuplexCall()
        call.send(pb2.StreamingOutputCallRequest(
            response_parameters=[pb2.ResponseParameters(size=31415)],
            payload=pb2.Payload(body=b"\0" * 27182)))
        assert len(next(call).payload.body) == 31415
        call.cancel()
        with pytest.raises(RpcError) as ei:
            next(call)
        return ei.value.status
    assert run(target, fn) == StatusCode.CANCELLED


def test_timeout_on_sleeping_server(target):
    def fn(ch, s):
        try:
            # inside the try: on a loaded machine the 50 ms can pass while the
            # stream opens (the connection is made first)
            call = s.FullDuplexCall(timeout=0.05)
            call.send(pb2.StreamingOutputCallRequest(payload=pb2.Payload(body=b"\0" * 27182)))
            next(call)
        except RpcError as e:
            return e.status
    assert run(target, fn) == StatusCode.DEADLINE_EXCEEDED


def test_caller_budget_becomes_grpc_timeout(target):
    """No timeout on the call: the caller's enclosing deadline is sent as
    grpc-timeout, and the server ends the sleeping call with DEADLINE_EXCEEDED (or
    our caller is cancelled first: both ends agree the deadline passed)."""
    req = pb2.StreamingOutputCallRequest(
        response_parameters=[pb2.ResponseParameters(size=1, interval_us=3_000_000)])

    def fn(ch, s):
        with greenrt.move_on_after(0.3) as scope:
            try:
                list(s.StreamingOutputCall(req))
            except RpcError as e:
                return e.status
        return "cancelled" if scope.cancelled_caught else "completed"
    assert run(target, fn) in (StatusCode.DEADLINE_EXCEEDED, "cancelled")


def test_compression_both_ways(target):
    def fn(ch, s):
        return s.UnaryCall(pb2.SimpleRequest(response_size=100000,
                                             payload=pb2.Payload(body=b"\0" * 100000)))
    r = run(target, fn, compression="gzip")
    assert len(r.payload.body) == 100000


def test_concurrent_calls_share_one_connection(target):
    def fn(ch, s):
        out = []

        def one(i):
            out.append(len(s.UnaryCall(pb2.SimpleRequest(response_size=i)).payload.body))
        with greenrt.region() as r:
            for i in range(20):
                r.spawn(one, i)
        return sorted(out), ch.connects
    sizes, connects = run(target, fn)
    assert sizes == list(range(20)) and connects == 1


def test_grpcio_server_sees_our_cancel(grpcio_server):
    """cancel -> RST_STREAM(CANCEL): grpcio's servicer context reports the call as
    inactive (its callback fires)."""
    seen = threading.Event()

    class Svc(pb2_grpc.TestServiceServicer):
        def FullDuplexCall(self, requests, ctx):
            ctx.add_callback(seen.set)
            for _ in requests:
                yield pb2.StreamingOutputCallResponse(payload=pb2.Payload(body=b"x"))

    from concurrent import futures
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb2_grpc.add_TestServiceServicer_to_server(Svc(), srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    try:
        def fn(ch, s):
            call = s.FullDuplexCall()
            call.send(pb2.StreamingOutputCallRequest())
            next(call)
            call.cancel()
        run(("127.0.0.1", port), fn)
        assert seen.wait(10)
    finally:
        srv.stop(None)


def test_tls_to_our_server(our_tls_server, pki):
    from greenrt.protocols import tls

    ctx = tls.client_context(cadata=pki["ca_pem"], alpn=["h2"])
    r = run(("localhost", our_tls_server.port), lambda ch, s: s.UnaryCall(
        pb2.SimpleRequest(response_size=314159, payload=pb2.Payload(body=b"\0" * 271828))),
        tls=ctx)
    assert len(r.payload.body) == 314159


def test_client_interceptor_adds_metadata_and_can_refuse(our_server):
    seen = []

    def add_header(details, call):
        seen.append(details["method"])
        details["metadata"].append(("x-grpc-test-echo-initial", "from-interceptor"))
        return call()

    def refuse(details, call):
        if details["method"].endswith("EmptyCall"):
            raise RpcError(StatusCode.PERMISSION_DENIED, "local policy")
        return call()

    def fn(ch, s):
        call = ch.start_call("/grpc.testing.TestService/UnaryCall", pb2.SimpleResponse)
        call.send(pb2.SimpleRequest())
        call.done()
        call.result()
        with pytest.raises(RpcError) as ei:
            s.EmptyCall(pb2.Empty())
        return call.initial_metadata(), ei.value.status
    md, st = run(("127.0.0.1", our_server.port), fn, interceptors=[add_header, refuse])
    assert ("x-grpc-test-echo-initial", "from-interceptor") in md
    assert st == StatusCode.PERMISSION_DENIED
    assert seen == ["/grpc.testing.TestService/UnaryCall", "/grpc.testing.TestService/EmptyCall"]


def test_handler_sees_the_client_deadline():
    from greenrt.protocols.grpc.server import Server

    from .conftest import GrpcServerThread

    got = {}

    class Svc:
        def EmptyCall(self, req, ctx):
            got["remaining"] = ctx.time_remaining()
            got["deadline_set"] = ctx.deadline is not None
            return pb2.Empty()

    srv = Server()
    srv.add_servicer(SERVICE, Svc())
    t = GrpcServerThread(srv).start()
    try:
        run(("127.0.0.1", t.port), lambda ch, s: s.EmptyCall(pb2.Empty(), timeout=30))
        assert got["deadline_set"] and 0 < got["remaining"] <= 30
        run(("127.0.0.1", t.port), lambda ch, s: s.EmptyCall(pb2.Empty()))
        assert got["remaining"] is None
    finally:
        t.stop()


def test_early_answers_reset_no_error_are_not_a_reset_flood():
    """grpcio answers a client-streaming call before our half-close, then resets the
    stream with RST_STREAM(NO_ERROR) (RFC 9113 8.1): the answer stands, and those
    resets do not count toward ``resets_per_window`` (here 3, with 10 calls)."""
    from concurrent import futures

    from greenrt.protocols.http2 import H2Limits

    def early(requests, ctx):
        next(requests)  # one message, then the answer; the rest is not wanted
        return pb2.StreamingInputCallResponse(aggregated_payload_size=7)

    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    srv.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "grpc.testing.TestService", {"StreamingInputCall": grpc.stream_unary_rpc_method_handler(
            early, request_deserializer=pb2.StreamingInputCallRequest.FromString,
            response_serializer=pb2.StreamingInputCallResponse.SerializeToString)}),))
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()

    def main():
        with Channel("127.0.0.1", port, h2_limits=H2Limits(resets_per_window=3)) as ch:
            sizes = []
            for _ in range(10):
                call = ch.start_call("/grpc.testing.TestService/StreamingInputCall",
                                     pb2.StreamingInputCallResponse)
                call.send(pb2.StreamingInputCallRequest())
                sizes.append(call.result().aggregated_payload_size)
                call.done()
            ch._conn.ping()  # every reset has arrived before the statistics
            return sizes, ch.connects, ch._conn.statistics()

    try:
        sizes, connects, st = greenrt.run(main)
    finally:
        srv.stop(None)
    assert sizes == [7] * 10 and connects == 1
    assert st["resets_received"] == 10 and st["usable"] and st["streams_open"] == 0
