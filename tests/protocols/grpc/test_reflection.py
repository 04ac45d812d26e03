"""Server reflection on our server, read by grpcio-reflection's client
(``ProtoReflectionDescriptorDatabase``, v1alpha) and by our client (v1)."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

import greenrt
from greenrt.protocols.grpc import health, reflection
from greenrt.protocols.grpc.client import Channel
from greenrt.protocols.grpc.server import Server

from .conftest import GrpcServerThread
from .interop_service import OurTestService
from .pb import SERVICE


@pytest.fixture
def served():
    srv = Server()
    srv.add_servicer(SERVICE, OurTestService())
    health.Health().add_to(srv)
    reflection.add_to(srv)
    t = GrpcServerThread(srv).start()
    yield t
    t.stop()


def test_grpcio_reflection_client_lists_and_resolves(served):
    with grpc.insecure_channel(served.target) as ch:
        db = ProtoReflectionDescriptorDatabase(ch)
        services = set(db.get_services())
        assert {"grpc.testing.TestService", "grpc.health.v1.Health",
                "grpc.reflection.v1alpha.ServerReflection",
                "grpc.reflection.v1.ServerReflection"} <= services
        pool = descriptor_pool.DescriptorPool(db)
        svc = pool.FindServiceByName("grpc.testing.TestService")
        assert [m.name for m in svc.methods][:3] == ["EmptyCall", "UnaryCall",
                                                     "StreamingOutputCall"]
        msg = pool.FindMessageTypeByName("grpc.testing.SimpleRequest")
        assert msg.fields_by_name["response_size"].number == 2
        with pytest.raises(KeyError):
            db.FindFileContainingSymbol("no.such.Symbol")


def test_our_client_v1_file_by_filename_and_errors(served):
    Req, Resp, desc = reflection.build_messages("grpc.reflection.v1")

    def main():
        with Channel("127.0.0.1", served.port) as ch:
            call = ch.bidi("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", Resp)
            call.send(Req(file_by_filename="interop.proto"))
            r1 = next(call)
            call.send(Req(file_containing_symbol="grpc.testing.Nope"))
            r2 = next(call)
            call.send(Req(file_containing_symbol="grpc.testing.TestService"))
            r3 = next(call)  # the file was sent already on this stream: not again
            call.done()
            assert list(call) == []
            return r1, r2, r3
    r1, r2, r3 = greenrt.run(main)
    fdp = descriptor_pb2.FileDescriptorProto.FromString(
        r1.file_descriptor_response.file_descriptor_proto[0])
    assert fdp.package == "grpc.testing" and fdp.name == "interop.proto"
    assert r1.original_request.file_by_filename == "interop.proto"
    assert r2.error_response.error_code == 5
    assert list(r3.file_descriptor_response.file_descriptor_proto) == []
