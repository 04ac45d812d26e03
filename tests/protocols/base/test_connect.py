"""``greenrt.protocols.base.connect``: TCP + TLS + SNI + ALPN under one budget, against
a real TLS server (``greenrt.protocols.tls`` with trustme certificates) on loopback."""

from __future__ import annotations

import os

import pytest
import trustme

import greenrt
from greenrt import net
from greenrt.protocols import tls
from greenrt.protocols.base.connect import connect, default_client_context


@pytest.fixture(scope="module")
def pki():
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    return {"ca_pem": ca.cert_pem.bytes(),
            "chain": b"".join(b.bytes() for b in leaf.cert_chain_pems),
            "key": leaf.private_key_pem.bytes()}


def tls_echo_server(r, pki, seen, *, alpn=None):
    ctx = tls.server_context(cert_pem=pki["chain"], key_pem=pki["key"], alpn=alpn)

    def handler(stream):
        s = tls.TLSStream(stream, ctx)
        try:
            s.handshake(5)
            seen.append((s.requested_server_name, s.selected_alpn))
            s.send_all(s.recv(100))
        finally:
            s.close()

    servers = []
    r.spawn(lambda: net.serve_tcp(handler, "127.0.0.1", 0, on_ready=servers.append))
    while not servers:
        greenrt.sleep(0)
    return servers[0].addresses[0][1]


def test_cleartext_returns_the_stream_and_no_alpn():
    def main():
        with greenrt.region() as r:
            lst = net.listen_tcp("127.0.0.1", 0)
            r.spawn(lambda: lst.accept().send_all(b"hi"))
            c = connect("127.0.0.1", lst.address[1], timeout=5)
            assert c.alpn is None and c.stream.recv(10) == b"hi"
            c.stream.close()
            lst.close()

    greenrt.run(main)


@pytest.mark.parametrize("offer, chosen", [(["h2", "http/1.1"], "h2"), (["http/1.1"], "http/1.1")])
def test_tls_with_sni_and_alpn(pki, offer, chosen):
    seen = []

    def main():
        with greenrt.region() as r:
            port = tls_echo_server(r, pki, seen, alpn=["h2", "http/1.1"])
            ctx = tls.client_context(cadata=pki["ca_pem"], alpn=offer)
            c = connect("127.0.0.1", port, tls=ctx, server_hostname="localhost", timeout=5)
            assert c.alpn == chosen and c.stream.selected_alpn == chosen
            c.stream.send_all(b"ping")
            assert c.stream.recv(100) == b"ping"
            c.stream.close()
            r.cancel()

    greenrt.run(main)
    assert seen == [("localhost", chosen)]  # SNI sent, ALPN agreed


def test_the_certificate_is_checked_against_server_hostname(pki):
    def main():
        with greenrt.region() as r:
            port = tls_echo_server(r, pki, [])
            ctx = tls.client_context(cadata=pki["ca_pem"])
            with pytest.raises(tls.TLSCertificateError):
                connect("127.0.0.1", port, tls=ctx, server_hostname="example.com", timeout=5)
            r.cancel()

    greenrt.run(main)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_one_budget_covers_connect_and_handshake_and_nothing_leaks(pki):
    """A server that accepts and never speaks TLS: the handshake is cut off by the
    connect ``timeout`` (one budget), and the socket is closed."""
    def main():
        lst = net.listen_tcp("127.0.0.1", 0)
        before = _open_fds()
        accepted = []
        with greenrt.region() as r:
            r.spawn(lambda: accepted.append(lst.accept()))
            ctx = tls.client_context(cadata=pki["ca_pem"])
            t0 = greenrt.now()
            with pytest.raises(greenrt.TooSlowError):
                connect("127.0.0.1", lst.address[1], tls=ctx, server_hostname="localhost",
                        timeout=0.2)
            assert greenrt.now() - t0 < 5  # bounded, not the handshake's own 10 s default
        assert _open_fds() == before + 1  # only the server's accepted socket is left
        accepted[0].close()
        lst.close()

    greenrt.run(main)


def test_a_cancelled_connect_leaves_no_socket(pki):
    def main():
        lst = net.listen_tcp("127.0.0.1", 0)
        before = _open_fds()
        with greenrt.region() as r:
            r.spawn(lambda: lst.accept())
            ctx = tls.client_context(cadata=pki["ca_pem"])
            with greenrt.move_on_after(0.05) as s:
                connect("127.0.0.1", lst.address[1], tls=ctx, server_hostname="localhost")
            assert s.cancelled_caught
            r.cancel()
        lst.close()
        assert _open_fds() <= before

    greenrt.run(main)


def test_configuration_errors_are_refused_before_connecting(pki):
    def main():
        with pytest.raises(ValueError, match="alpn needs tls"):
            connect("127.0.0.1", 1, alpn=["h2"])
        ctx = tls.client_context(cadata=pki["ca_pem"], alpn=["http/1.1"])
        with pytest.raises(ValueError, match="differs from the context's ALPN list"):
            connect("127.0.0.1", 1, tls=ctx, alpn=["h2"])
        sctx = tls.server_context(cert_pem=pki["chain"], key_pem=pki["key"])
        with pytest.raises(ValueError, match="client TLS context"):
            connect("127.0.0.1", 1, tls=sctx)
        with pytest.raises(ValueError, match="timeout"):
            connect("127.0.0.1", 1, timeout=-1)

    greenrt.run(main)


def test_default_contexts_are_built_once_per_alpn_list():
    a = default_client_context(["h2"])
    assert default_client_context(["h2"]) is a
    assert default_client_context(None) is not a
    assert a.alpn == [b"h2"] and a.verify
