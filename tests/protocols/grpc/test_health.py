"""The grpc.health.v1 service on our server: Check and Watch, called by grpcio's
client (generic calls with our message classes) and by our client."""

from __future__ import annotations

import grpc
import pytest

import greenrt
from greenrt.protocols.grpc import RpcError, StatusCode
from greenrt.protocols.grpc import health as h
from greenrt.protocols.grpc.client import Channel, Stub
from greenrt.protocols.grpc.server import Server

from .conftest import GrpcServerThread
from .interop_service import OurTestService
from .pb import SERVICE


@pytest.fixture
def served():
    health = h.Health()
    health.set("grpc.testing.TestService", h.SERVING)
    srv = Server()
    srv.add_servicer(SERVICE, OurTestService())
    health.add_to(srv)
    t = GrpcServerThread(srv).start()
    yield t, health
    t.stop()


def test_messages_match_the_published_proto():
    assert h.HEALTH_SERVICE.full_name == "grpc.health.v1.Health"
    assert [m.name for m in h.HEALTH_SERVICE.methods] == ["Check", "Watch"]
    assert h.HealthCheckResponse(status=h.NOT_SERVING).SerializeToString() == b"\x08\x02"
    assert h.HealthCheckRequest(service="x").SerializeToString() == b"\n\x01x"


def test_grpcio_client_checks(served):
    t, _ = served
    with grpc.insecure_channel(t.target) as ch:
        check = ch.unary_unary("/grpc.health.v1.Health/Check",
                               request_serializer=h.HealthCheckRequest.SerializeToString,
                               response_deserializer=h.HealthCheckResponse.FromString)
        assert check(h.HealthCheckRequest()).status == h.SERVING
        assert check(h.HealthCheckRequest(service="grpc.testing.TestService")).status == h.SERVING
        with pytest.raises(grpc.RpcError) as ei:
            check(h.HealthCheckRequest(service="nope"))
        assert ei.value.code() == grpc.StatusCode.NOT_FOUND


def test_watch_sees_changes_and_ends_on_cancel(served):
    t, health = served

    def main():
        with Channel("127.0.0.1", t.port) as ch:
            stub = Stub(ch, h.HEALTH_SERVICE)
            call = stub.Watch(h.HealthCheckRequest(service="svc"))
            seen = [next(call).status]
            t.hub.call_soon_threadsafe(health.set, "svc", h.SERVING)
            seen.append(next(call).status)
            t.hub.call_soon_threadsafe(health.set, "svc", h.NOT_SERVING)
            seen.append(next(call).status)
            call.cancel()
            with pytest.raises(RpcError) as ei:
                next(call)
            assert ei.value.status == StatusCode.CANCELLED
            return seen
    assert greenrt.run(main) == [h.SERVICE_UNKNOWN, h.SERVING, h.NOT_SERVING]
