"""grpcio's client (C core) calling our gRPC server: the interop cases of
doc/interop-test-descriptions.md, plus deadlines, cancellation, status details and
compression, each checked on both ends (what the client saw; what our server logged)."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from greenrt.protocols.grpc import StatusCode

from .pb import pb2, pb2_grpc


def _wait_for(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return False


def test_empty_unary(grpcio_stub, our_server):
    assert grpcio_stub.EmptyCall(pb2.Empty()) == pb2.Empty()
    assert _wait_for(lambda: our_server.calls())
    assert our_server.calls()[-1] == {"method": "/grpc.testing.TestService/EmptyCall", "status": 0}


def test_large_unary(grpcio_stub):
    resp = grpcio_stub.UnaryCall(pb2.SimpleRequest(response_size=314159,
                                                   payload=pb2.Payload(body=b"\x00" * 271828)))
    assert resp.payload.body == b"\x00" * 314159


def test_client_streaming(grpcio_stub):
    sizes = [27182, 8, 1828, 45904]
    resp = grpcio_stub.StreamingInputCall(
        iter([pb2.StreamingInputCallRequest(payload=pb2.Payload(body=b"\x00" * n)) for n in sizes]))
    assert resp.aggregated_payload_size == 74922


def test_server_streaming(grpcio_stub):
    sizes = [31415, 9, 2653, 58979]
    req = pb2.StreamingOutputCallRequest(
        response_parameters=[pb2.ResponseParameters(size=n) for n in sizes])
    assert [len(r.payload.body) for r in grpcio_stub.StreamingOutputCall(req)] == sizes


def test_ping_pong(grpcio_stub):
    reqs, resps = [31415, 9, 2653, 58979], [27182, 8, 1828, 45904]
    outbox: list = []
    cv = threading.Condition()

    def gen():
        for rq, rs in zip(reqs, resps, strict=True):
            with cv:
                outbox.append((rq, rs))
                cv.notify_all()
            yield pb2.StreamingOutputCallRequest(
                response_parameters=[pb2.ResponseParameters(size=rq)],
                payload=pb2.Payload(body=b"\x00" * rs))
            with cv:  # one response before the next request: ping-pong
                assert cv.wait_for(lambda: len(got) == len(outbox), 10)

    got: list = []
    for r in grpcio_stub.FullDuplexCall(gen()):
        with cv:
            got.append(len(r.payload.body))
            cv.notify_all()
    assert got == reqs


def test_empty_stream(grpcio_stub):
    assert list(grpcio_stub.FullDuplexCall(iter([]))) == []


def test_custom_metadata_unary_and_bidi(grpcio_stub):
    md = (("x-grpc-test-echo-initial", "test_initial_metadata_value"),
          ("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab"))
    resp, call = grpcio_stub.UnaryCall.with_call(
        pb2.SimpleRequest(response_size=314159, payload=pb2.Payload(body=b"\x00" * 271828)),
        metadata=md)
    assert len(resp.payload.body) == 314159
    assert ("x-grpc-test-echo-initial", "test_initial_metadata_value") in call.initial_metadata()
    assert ("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab") in call.trailing_metadata()
    call = grpcio_stub.FullDuplexCall(iter([pb2.StreamingOutputCallRequest(
        response_parameters=[pb2.ResponseParameters(size=314159)],
        payload=pb2.Payload(body=b"\x00" * 271828))]), metadata=md)
    assert [len(r.payload.body) for r in call] == [314159]
    assert ("x-grpc-test-echo-initial", "test_initial_metadata_value") in call.initial_metadata()
    assert ("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab") in call.trailing_metadata()


def test_status_code_and_message(grpcio_stub):
    st = pb2.EchoStatus(code=2, message="test status message")
    with pytest.raises(grpc.RpcError) as ei:
        grpcio_stub.UnaryCall(pb2.SimpleRequest(response_status=st))
    assert ei.value.code() == grpc.StatusCode.UNKNOWN
    assert ei.value.details() == "test status message"
    with pytest.raises(grpc.RpcError) as ei:
        list(grpcio_stub.FullDuplexCall(iter([pb2.StreamingOutputCallRequest(response_status=st)])))
    assert ei.value.code() == grpc.StatusCode.UNKNOWN
    assert ei.value.details() == "test status message"


def test_special_status_message(grpcio_stub):
    text = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n"
    with pytest.raises(grpc.RpcError) as ei:
        grpcio_stub.UnaryCall(pb2.SimpleRequest(response_status=pb2.EchoStatus(code=2,
                                                                               message=text)))
    assert ei.value.code() == grpc.StatusCode.UNKNOWN
    assert ei.value.details() == text


def test_unimplemented_method(grpcio_stub):
    with pytest.raises(grpc.RpcError) as ei:
        grpcio_stub.UnimplementedCall(pb2.Empty())
    assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_unimplemented_service(grpcio_channel):
    stub = pb2_grpc.UnimplementedServiceStub(grpcio_channel)
    with pytest.raises(grpc.RpcError) as ei:
        stub.UnimplementedCall(pb2.Empty())
    assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_cancel_after_begin(grpcio_stub, our_server):
    gate = threading.Event()

    def never():
        gate.wait(10)
        return
        yield  # pragma: no cover

    fut = grpcio_stub.StreamingInputCall.future(never())
    assert _wait_for(lambda: any(k == "http2.stream" for k, _ in our_server.events))
    fut.cancel()
    gate.set()
    with pytest.raises(grpc.FutureCancelledError):
        fut.result()
    assert fut.cancelled()
    # our handler was cancelled (by the client's RST_STREAM), not completed
    assert _wait_for(lambda: any(c["status"] == StatusCode.CANCELLED for c in our_server.calls()))


def test_cancel_after_first_response(grpcio_stub, our_server, our_service):
    gate = threading.Event()

    def reqs():
        yield pb2.StreamingOutputCallRequest(
            response_parameters=[pb2.ResponseParameters(size=31415)],
            payload=pb2.Payload(body=b"\x00" * 27182))
        gate.wait(10)

    call = grpcio_stub.FullDuplexCall(reqs())
    first = next(call)
    assert len(first.payload.body) == 31415
    call.cancel()
    gate.set()
    with pytest.raises(grpc.RpcError) as ei:
        next(call)
    assert ei.value.code() == grpc.StatusCode.CANCELLED
    assert _wait_for(lambda: "FullDuplexCall" in our_service.cancelled)


def test_timeout_on_sleeping_server(grpcio_stub, our_server):
    gate = threading.Event()

    def reqs():
        yield pb2.StreamingOutputCallRequest(payload=pb2.Payload(body=b"\x00" * 27182))
        gate.wait(10)

    call = grpcio_stub.FullDuplexCall(reqs(), timeout=0.2)
    with pytest.raises(grpc.RpcError) as ei:
        list(call)
    gate.set()
    assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_deadline_reaches_the_handler_as_its_budget(grpcio_stub, our_server):
    # a unary call whose handler sleeps past the client's deadline: our server's scope
    # (from grpc-timeout) ends the handler and answers DEADLINE_EXCEEDED itself
    req = pb2.StreamingOutputCallRequest(
        response_parameters=[pb2.ResponseParameters(size=1, interval_us=5_000_000)])
    with pytest.raises(grpc.RpcError) as ei:
        list(grpcio_stub.StreamingOutputCall(req, timeout=0.3))
    assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert _wait_for(lambda: any(c["status"] in (StatusCode.DEADLINE_EXCEEDED,
                                                 StatusCode.CANCELLED)
                                 for c in our_server.calls()))


def test_compressed_request_and_response(grpcio_channel):
    stub = pb2_grpc.TestServiceStub(grpcio_channel)
    req = pb2.SimpleRequest(response_size=100000, payload=pb2.Payload(body=b"\x00" * 100000),
                            response_compressed=pb2.BoolValue(value=True))
    resp, call = stub.UnaryCall.with_call(req, compression=grpc.Compression.Gzip)
    assert resp.payload.body == b"\x00" * 100000
    resp = stub.UnaryCall(req, compression=grpc.Compression.Deflate)
    assert len(resp.payload.body) == 100000


def test_tls_with_alpn_h2(our_tls_server, pki):
    creds = grpc.ssl_channel_credentials(root_certificates=pki["ca_pem"])
    with grpc.secure_channel(f"localhost:{our_tls_server.port}", creds) as ch:
        stub = pb2_grpc.TestServiceStub(ch)
        resp = stub.UnaryCall(pb2.SimpleRequest(response_size=314159,
                                                payload=pb2.Payload(body=b"\x00" * 271828)))
        assert len(resp.payload.body) == 314159
        sizes = [31415, 9, 2653, 58979]
        req = pb2.StreamingOutputCallRequest(
            response_parameters=[pb2.ResponseParameters(size=n) for n in sizes])
        assert [len(r.payload.body) for r in stub.StreamingOutputCall(req)] == sizes
    assert our_tls_server.alpn == ["h2"]
