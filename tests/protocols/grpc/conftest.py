"""Fixtures for the gRPC tests: our gRPC server on loopback in a greenrt thread
(``our_server``), a grpcio server (``grpcio_server``), and grpcio channels."""

from __future__ import annotations

import threading
from concurrent import futures

import grpc
import pytest

import greenrt
from greenrt import lowlevel, net
from greenrt.protocols.grpc.server import Server

from .interop_service import GrpcioTestService, OurTestService
from .pb import SERVICE, pb2_grpc


class GrpcServerThread:
    """Our gRPC server in its own thread's greenrt hub. ``events`` records the
    ``grpc.call`` and ``protocol.error`` trace events."""

    def __init__(self, server: Server, tls_context=None):
        self.server = server
        self.tls_context = tls_context
        self.events: list[tuple[str, dict]] = []
        self.alpn: list = []
        self._ready = threading.Event()
        self._exc = None
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _instrument(self, ev) -> None:
        if ev.kind in ("grpc.call", "protocol.error", "http2.stream"):
            self.events.append((ev.kind, dict(ev.data)))

    def _main(self) -> None:
        def handle(stream):
            try:
                if self.tls_context is not None:
                    from greenrt.protocols import tls

                    stream = tls.TLSStream(stream, self.tls_context)
                    stream.handshake(10)
                    self.alpn.append(stream.selected_alpn)
                self.server.serve_connection(stream, scheme="https" if self.tls_context
                                             else "http")
            finally:
                stream.close()

        def main():
            self.hub = lowlevel.current_hub()
            lst = net.listen_tcp("127.0.0.1", 0)
            self.srv = net.Server([lst], handle, name="grpc-test")
            self.port = self.srv.addresses[0][1]
            self._ready.set()
            self.srv.serve()

        try:
            greenrt.run(main, instruments=[self._instrument])
        except BaseException as e:  # noqa: BLE001 - surfaced by start()/stop()
            self._exc = e
            self._ready.set()

    def start(self):
        self.thread.start()
        assert self._ready.wait(10), "server did not start"
        if self._exc is not None:
            raise self._exc
        return self

    def stop(self) -> None:
        if self.thread.is_alive():
            self.hub.call_soon_threadsafe(self.srv.shutdown)
            self.thread.join(15)
        assert not self.thread.is_alive(), "server did not shut down"
        if self._exc is not None:
            raise self._exc

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def calls(self) -> list[dict]:
        return [d for k, d in list(self.events) if k == "grpc.call"]

    def codes(self) -> list[str]:
        return [d.get("code") for k, d in list(self.events) if k == "protocol.error"]


@pytest.fixture
def our_service():
    return OurTestService()


@pytest.fixture
def our_server(our_service):
    srv = Server()
    srv.add_servicer(SERVICE, our_service)
    t = GrpcServerThread(srv).start()
    yield t
    t.stop()


@pytest.fixture
def grpcio_channel(our_server):
    ch = grpc.insecure_channel(our_server.target)
    yield ch
    ch.close()


@pytest.fixture
def grpcio_stub(grpcio_channel):
    return pb2_grpc.TestServiceStub(grpcio_channel)


@pytest.fixture
def grpcio_server():
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb2_grpc.add_TestServiceServicer_to_server(GrpcioTestService(), srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    yield port
    srv.stop(grace=None)


@pytest.fixture(scope="session")
def pki():
    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1", common_name="localhost")
    return {"ca_pem": ca.cert_pem.bytes(),
            "chain": b"".join(b.bytes() for b in leaf.cert_chain_pems),
            "key": leaf.private_key_pem.bytes()}


@pytest.fixture
def our_tls_server(pki):
    from greenrt.protocols import tls

    srv = Server()
    srv.add_servicer(SERVICE, OurTestService())
    t = GrpcServerThread(srv, tls.server_context(cert_pem=pki["chain"], key_pem=pki["key"],
                                                 alpn=["h2"])).start()
    yield t
    t.stop()
