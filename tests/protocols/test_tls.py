"""TLSStream between greenrt peers over real loopback TCP and Unix sockets, with
trustme certificates: echo under concurrency, large transfers, half-close, ALPN,
SNI, mTLS, certificate rejection, cancellation semantics, unwrap and truncation."""

import datetime
import os

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import greenrt
from greenrt import net
from greenrt.protocols import tls

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def pki():
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1", common_name="localhost")
    client = ca.issue_cert("client@example.org", common_name="client-1")
    return {
        "ca": ca,
        "ca_pem": ca.cert_pem.bytes(),
        "chain": b"".join(b.bytes() for b in leaf.cert_chain_pems),
        "key": leaf.private_key_pem.bytes(),
        "client_chain": b"".join(b.bytes() for b in client.cert_chain_pems),
        "client_key": client.private_key_pem.bytes(),
    }


def server_ctx(pki, **kw):
    return tls.server_context(cert_pem=pki["chain"], key_pem=pki["key"], **kw)


def client_ctx(pki, **kw):
    return tls.client_context(cadata=pki["ca_pem"], **kw)


def echo(s):
    while True:
        d = s.recv(65536)
        if not d:
            break
        s.send_all(d)
    s.send_eof()


def serve(r, handler, **kw):
    servers = []
    r.spawn(lambda: net.serve_tcp(handler, "127.0.0.1", 0, on_ready=servers.append, **kw))
    while not servers:
        greenrt.sleep(0)
    return servers[0], servers[0].addresses[0][1]


def recv_all(s):
    buf = bytearray()
    while True:
        d = s.recv(65536)
        if not d:
            return bytes(buf)
        buf += d


def recv_exactly(s, n):
    buf = bytearray()
    while len(buf) < n:
        d = s.recv(n - len(buf))
        assert d, "unexpected EOF"
        buf += d
    return bytes(buf)


def handshake_result(server_context, client_context, server_hostname="localhost"):
    """Run one handshake; return (client outcome, server outcome) as values or errors."""
    out = {}

    def handler(stream):
        s = tls.TLSStream(stream, server_context)
        try:
            s.handshake(10)
            out["server"] = s
            s.send_all(b"hi")
            s.recv(10)
        except Exception as e:  # noqa: BLE001 - recorded for the assertions
            out.setdefault("server", e)

    def main():
        with greenrt.region() as r:
            server, port = serve(r, handler)
            tcp = net.open_tcp("127.0.0.1", port)
            c = tls.TLSStream(tcp, client_context, server_hostname=server_hostname)
            try:
                c.handshake(10)
                out["client"] = c
                out["client_data"] = c.recv(10)
            except Exception as e:  # noqa: BLE001
                out["client"] = e
            c.close()
            while "server" not in out:
                greenrt.sleep(0.001)
            server.shutdown()

    greenrt.run(main)
    return out["client"], out["server"]


# -- data transfer ------------------------------------------------------------------


def test_echo_many_concurrent_tls_connections(pki):
    sctx, cctx = server_ctx(pki), client_ctx(pki)

    def main():
        ok = {}
        with greenrt.region() as r:
            server, port = serve(r, tls.tls_handler(sctx, echo))

            def client(i):
                s = tls.open_tls("localhost", port, cctx, timeout=10)
                for k in range(10):
                    msg = os.urandom(100 * (k + 1))
                    s.send_all(msg)
                    assert recv_exactly(s, len(msg)) == msg
                s.send_eof()
                assert s.recv(10) == b""
                ok[i] = s.tls_version
                s.close()

            with greenrt.region() as cr:
                for i in range(40):
                    cr.spawn(client, i)
            stats = server.statistics()
            server.shutdown()
        return ok, stats

    ok, stats = greenrt.run(main)
    assert len(ok) == 40 and set(ok.values()) == {"TLSv1.3"}
    assert stats["handler_errors"] == 0


def test_large_transfer_and_half_close_over_tls(pki):
    sctx, cctx = server_ctx(pki), client_ctx(pki)
    payload = os.urandom(6 * 1024 * 1024)

    def handler(s):
        data = recv_all(s)  # until the client's close_notify
        s.send_all(len(data).to_bytes(8, "big"))
        s.send_all(data[::-1][:1000])
        s.send_eof()

    def main():
        with greenrt.region() as r:
            server, port = serve(r, tls.tls_handler(sctx, handler))
            s = tls.open_tls("localhost", port, cctx)
            s.send_all(payload)
            s.send_eof()
            with pytest.raises(net.ClosedResourceError):
                s.send_all(b"more")
            out = recv_all(s)
            st = s.statistics()
            s.close()
            server.shutdown()
        return out, st

    out, st = greenrt.run(main)
    assert int.from_bytes(out[:8], "big") == len(payload)
    assert out[8:] == payload[::-1][:1000]
    assert st["bytes_sent"] == len(payload) and st["eof_sent"] and st["eof_received"]


def test_tls_over_unix_socket(pki, tmp_path):
    path = str(tmp_path / "tls.sock")
    sctx, cctx = server_ctx(pki), client_ctx(pki)

    def main():
        with greenrt.region() as r:
            servers = []
            r.spawn(lambda: net.serve_unix(tls.tls_handler(sctx, echo), path,
                                           on_ready=servers.append))
            while not servers:
                greenrt.sleep(0)
            s = tls.TLSStream(net.open_unix(path), cctx, server_hostname="localhost")
            s.send_all(b"over unix")  # implicit handshake
            out = recv_exactly(s, 9)
            s.close()
            servers[0].shutdown()
        return out

    assert greenrt.run(main) == b"over unix"


def test_tls_inside_tls(pki):
    # TLSStream wraps any greenrt stream, including another TLSStream.
    sctx, cctx = server_ctx(pki), client_ctx(pki)

    def outer_handler(s):
        inner = tls.TLSStream(s, sctx)
        inner.handshake(10)
        echo(inner)

    def main():
        with greenrt.region() as r:
            server, port = serve(r, tls.tls_handler(sctx, outer_handler))
            outer = tls.open_tls("127.0.0.1", port, cctx)
            inner = tls.TLSStream(outer, cctx, server_hostname="localhost")
            inner.send_all(b"nested")
            out = recv_exactly(inner, 6)
            inner.close()
            server.shutdown()
        return out

    assert greenrt.run(main) == b"nested"


# -- negotiation ----------------------------------------------------------------------


@pytest.mark.parametrize("client_alpn, expected", [
    (["h2", "http/1.1"], "h2"),
    (["http/1.1"], "http/1.1"),
    (["http/1.1", "h2"], "h2"),  # the server's preference wins
    (None, None),  # no ALPN offered: the handshake proceeds without
])
def test_alpn_negotiation(pki, client_alpn, expected):
    c, s = handshake_result(server_ctx(pki, alpn=["h2", "http/1.1"]),
                            client_ctx(pki, alpn=client_alpn))
    assert isinstance(c, tls.TLSStream) and isinstance(s, tls.TLSStream)
    assert c.selected_alpn == expected == s.selected_alpn


def test_alpn_without_overlap_fails_with_alert_120(pki):
    c, s = handshake_result(server_ctx(pki, alpn=["h2"]), client_ctx(pki, alpn=["spdy/3"]))
    assert isinstance(c, tls.TLSHandshakeError) and c.alert == 120 and c.sent is False
    assert isinstance(s, tls.TLSHandshakeError) and s.alert == 120 and s.sent is True


def test_client_can_require_alpn(pki):
    c, _ = handshake_result(server_ctx(pki), client_ctx(pki, alpn=["h2"], require_alpn=True))
    assert isinstance(c, tls.TLSHandshakeError) and "no ALPN" in str(c)


def test_sni_reaches_the_server(pki):
    c, s = handshake_result(server_ctx(pki), client_ctx(pki), server_hostname="localhost")
    assert s.requested_server_name == "localhost"
    c2, s2 = handshake_result(server_ctx(pki), client_ctx(pki), server_hostname="127.0.0.1")
    assert isinstance(c2, tls.TLSStream) and s2.requested_server_name is None  # no SNI for IPs


def test_tls13_and_tls12_both_work_and_tls12_uses_aead(pki):
    c, s = handshake_result(server_ctx(pki, maximum_version=tls.TLS1_2), client_ctx(pki))
    assert c.tls_version == "TLSv1.2"
    assert "GCM" in c.cipher or "CHACHA20" in c.cipher
    c, s = handshake_result(server_ctx(pki), client_ctx(pki))
    assert c.tls_version == "TLSv1.3"


def test_configs_refuse_old_versions_and_bad_material(pki):
    with pytest.raises(tls.TLSConfigError):
        tls.client_context(minimum_version="1.1")
    with pytest.raises(tls.TLSConfigError):
        tls.server_context(cert_pem=b"not a cert", key_pem=pki["key"])
    with pytest.raises(tls.TLSConfigError):
        tls.server_context(cert_pem=pki["chain"], key_pem=pki["client_key"])  # mismatch
    with pytest.raises(tls.TLSConfigError):
        tls.client_context(alpn=["x" * 300])
    with pytest.raises(tls.TLSConfigError):
        tls.server_context(cert_pem=pki["chain"], key_pem=pki["key"], require_client_cert=True)
    with pytest.raises(tls.TLSConfigError):  # verifying needs a host name
        tls.TLSStream(object(), client_ctx(pki))


# -- certificate rejection -------------------------------------------------------------


def self_signed(host="localhost"):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def test_wrong_host_name_is_rejected(pki):
    c, s = handshake_result(server_ctx(pki), client_ctx(pki), server_hostname="example.org")
    assert isinstance(c, tls.TLSCertificateError)
    assert "example.org" in str(c)
    # The host-name check runs in the verify callback (service_identity), after
    # OpenSSL's chain check passed, so OpenSSL reports it with internal_error (80).
    assert isinstance(s, tls.TLSHandshakeError) and s.sent is False and s.alert == 80


def test_wrong_ip_address_is_rejected(pki):
    c, _ = handshake_result(server_ctx(pki), client_ctx(pki), server_hostname="127.0.0.2")
    assert isinstance(c, tls.TLSCertificateError)


def test_expired_certificate_is_rejected(pki):
    past = datetime.datetime(2020, 1, 1)
    leaf = pki["ca"].issue_cert("localhost", not_before=past - datetime.timedelta(days=30),
                                not_after=past)
    sctx = tls.server_context(cert_pem=b"".join(b.bytes() for b in leaf.cert_chain_pems),
                              key_pem=leaf.private_key_pem.bytes())
    c, _ = handshake_result(sctx, client_ctx(pki))
    assert isinstance(c, tls.TLSCertificateError) and c.verify_code == 10
    assert "expired" in str(c)


def test_self_signed_certificate_is_rejected():
    cert, key = self_signed()
    sctx = tls.server_context(cert_pem=cert, key_pem=key)
    c, _ = handshake_result(sctx, tls.client_context())  # system trust store
    assert isinstance(c, tls.TLSCertificateError) and c.verify_code == 18
    # ... unless explicitly trusted
    c, _ = handshake_result(sctx, tls.client_context(cadata=cert))
    assert isinstance(c, tls.TLSStream)


def test_untrusted_ca_is_rejected(pki):
    other = trustme.CA()
    c, _ = handshake_result(server_ctx(pki), tls.client_context(cadata=other.cert_pem.bytes()))
    assert isinstance(c, tls.TLSCertificateError) and c.verify_code in (19, 20)


def test_cafile_trust(pki, tmp_path):
    path = tmp_path / "ca.pem"
    path.write_bytes(pki["ca_pem"])
    c, _ = handshake_result(server_ctx(pki), tls.client_context(cafile=str(path)))
    assert isinstance(c, tls.TLSStream)


# -- mTLS ---------------------------------------------------------------------------------


def test_mtls_with_client_certificate_exposes_identity(pki):
    sctx = server_ctx(pki, require_client_cert=True, client_cadata=pki["ca_pem"])
    cctx = client_ctx(pki, cert_pem=pki["client_chain"], key_pem=pki["client_key"])
    c, s = handshake_result(sctx, cctx)
    assert isinstance(c, tls.TLSStream) and isinstance(s, tls.TLSStream)
    ident = s.peer_identity
    assert ident["common_name"] == "client-1"
    assert c.peer_identity["dns_names"] == ["localhost"]


def test_mtls_without_client_certificate_is_refused(pki):
    sctx = server_ctx(pki, require_client_cert=True, client_cadata=pki["ca_pem"])
    c, s = handshake_result(sctx, client_ctx(pki))
    assert isinstance(s, tls.TLSCertificateError)
    # TLS 1.3: the client learns of the refusal when it next reads.
    assert isinstance(c, tls.TLSError)


def test_mtls_with_certificate_from_an_untrusted_ca_is_refused(pki):
    other = trustme.CA().issue_cert("client@example.org")
    sctx = server_ctx(pki, require_client_cert=True, client_cadata=pki["ca_pem"])
    cctx = client_ctx(pki, cert_pem=b"".join(b.bytes() for b in other.cert_chain_pems),
                      key_pem=other.private_key_pem.bytes())
    c, s = handshake_result(sctx, cctx)
    assert isinstance(s, tls.TLSCertificateError)
    assert isinstance(c, tls.TLSError)


# -- cancellation, EOF, unwrap ----------------------------------------------------------


def test_cancelled_handshake_breaks_the_stream(pki):
    cctx = client_ctx(pki)

    def main():
        with greenrt.region() as r:
            # A server that accepts TCP but never speaks TLS.
            server, port = serve(r, lambda s: greenrt.sleep(30))
            s = tls.TLSStream(net.open_tcp("127.0.0.1", port), cctx, server_hostname="localhost")
            with pytest.raises(greenrt.TooSlowError):
                s.handshake(timeout=0.05)
            assert s.broken
            with pytest.raises(net.BrokenStreamError, match="handshake interrupted"):
                s.send_all(b"x")
            s.close()
            server.shutdown()
        return True

    assert greenrt.run(main)


def test_cancelled_send_all_breaks_the_tls_stream(pki):
    sctx, cctx = server_ctx(pki), client_ctx(pki)

    def main():
        with greenrt.region() as r:
            stop = []

            def handler(s):  # handshakes, then never reads
                while not stop:
                    greenrt.sleep(0.01)

            server, port = serve(r, tls.tls_handler(sctx, handler))
            s = tls.open_tls("localhost", port, cctx)
            with greenrt.move_on_after(0.2) as sc:
                s.send_all(b"z" * (64 * 1024 * 1024))
            assert sc.cancelled_caught and s.broken
            with pytest.raises(net.BrokenStreamError, match="interrupted"):
                s.recv(10)
            s.close()
            stop.append(1)
            server.shutdown()
        return True

    assert greenrt.run(main)


def test_cancelled_tls_recv_loses_no_data(pki):
    sctx, cctx = server_ctx(pki), client_ctx(pki)
    chunks = [os.urandom(3000) for _ in range(30)]

    def handler(s):
        for i, c in enumerate(chunks):
            s.send_all(c)
            if i % 3 == 0:
                greenrt.sleep(0.005)
        s.send_eof()
        s.recv(10)

    def main():
        with greenrt.region() as r:
            server, port = serve(r, tls.tls_handler(sctx, handler))
            s = tls.open_tls("localhost", port, cctx)
            buf = bytearray()
            cancelled = 0
            while True:
                with greenrt.move_on_after(0.001) as sc:
                    d = s.recv(1000)
                    if not d:
                        break
                    buf += d
                cancelled += sc.cancelled_caught
            s.close()
            server.shutdown()
        return bytes(buf), cancelled

    got, cancelled = greenrt.run(main)
    assert got == b"".join(chunks)
    assert cancelled > 0


def test_eof_without_close_notify_is_truncation(pki):
    sctx, cctx = server_ctx(pki), client_ctx(pki)

    def handler(s):
        s.send_all(b"partial")
        s.transport.close()  # no close_notify

    def main():
        res = []
        with greenrt.region() as r:
            server, port = serve(r, tls.tls_handler(sctx, handler))
            for allow in (False, True):
                s = tls.open_tls("localhost", port, cctx, allow_truncation=allow)
                assert recv_exactly(s, 7) == b"partial"
                try:
                    res.append(s.recv(10))
                except tls.TLSTruncationError as e:
                    res.append(e)
                s.close()
            server.shutdown()
        return res

    strict, lax = greenrt.run(main)
    assert isinstance(strict, tls.TLSTruncationError) and isinstance(strict, net.BrokenStreamError)
    assert lax == b""


def test_unwrap_returns_the_transport_and_trailing_plaintext(pki):
    sctx, cctx = server_ctx(pki), client_ctx(pki)

    def handler(stream):
        s = tls.TLSStream(stream, sctx)
        s.send_all(b"secret")
        assert recv_all(s) == b""  # the client's close_notify
        transport, trailing = s.unwrap()
        transport.send_all(b"plain text after TLS")
        transport.send_eof()

    def main():
        with greenrt.region() as r:
            server, port = serve(r, handler)
            s = tls.open_tls("localhost", port, cctx)
            assert recv_exactly(s, 6) == b"secret"
            transport, trailing = s.unwrap()
            rest = trailing + recv_all(transport)
            assert s.closed and not transport.closed
            transport.close()
            server.shutdown()
        return rest

    assert greenrt.run(main) == b"plain text after TLS"


def test_close_sends_close_notify_without_blocking(pki):
    sctx, cctx = server_ctx(pki), client_ctx(pki)
    seen = []

    def handler(s):
        seen.append(recv_all(s))  # b"" only after a close_notify (else truncation error)

    def main():
        with greenrt.region() as r:
            server, port = serve(r, tls.tls_handler(sctx, handler))
            s = tls.open_tls("localhost", port, cctx)
            s.send_all(b"bye")
            s.close()
            while server.statistics()["active"]:
                greenrt.sleep(0.001)
            stats = server.statistics()
            server.shutdown()
        return stats

    stats = greenrt.run(main)
    assert seen == [b"bye"] and stats["handler_errors"] == 0


def test_peer_reset_mid_transfer_is_a_clear_broken_stream_error(pki):
    sctx, cctx = server_ctx(pki), client_ctx(pki)

    def handler(stream):
        s = tls.TLSStream(stream, sctx)
        s.send_all(os.urandom(100_000))
        stream.abort()  # TCP reset in the middle of the client's reading

    def main():
        with greenrt.region() as r:
            server, port = serve(r, handler)
            s = tls.open_tls("localhost", port, cctx)
            greenrt.sleep(0.05)
            got = 0
            with pytest.raises(net.BrokenStreamError) as ei:
                while True:
                    d = s.recv(1000)
                    assert d, "a reset is not a clean EOF"
                    got += len(d)
            assert s.broken
            with pytest.raises(net.BrokenStreamError):
                s.send_all(b"x")
            s.close()
            server.shutdown()
        return ei.value, got

    err, got = greenrt.run(main)
    assert got <= 100_000  # whatever arrived before the reset, then the error
    assert "reset" in str(err) or "reset" in str(err.__cause__)


def test_tls_recv_caps_huge_max_bytes(pki):
    sctx, cctx = server_ctx(pki), client_ctx(pki)

    def main():
        with greenrt.region() as r:
            server, port = serve(r, tls.tls_handler(sctx, echo))
            s = tls.open_tls("localhost", port, cctx)
            s.send_all(b"abc")
            d = s.recv(1 << 40)  # would be a terabyte buffer in pyOpenSSL
            s.close()
            server.shutdown()
        return d

    assert greenrt.run(main) == b"abc"
