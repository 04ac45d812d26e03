"""protocols.tls against real TLS peers: ``openssl s_server`` / ``s_client`` (system
OpenSSL) and CPython's ``ssl`` module, with trustme certificates."""

import os
import socket
import ssl
import subprocess
import threading

import pytest
import trustme

import greenrt
from greenrt import net
from greenrt.protocols import tls

# The openssl binary is installed by `make test` (scripts/apt-packages.txt): a missing
# one fails these tests rather than skipping them.
pytestmark = [pytest.mark.timeout(60)]

LEGACY = "DEFAULT@SECLEVEL=0"  # lets a modern OpenSSL speak TLS 1.1 at all


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("client@example.org", common_name="interop-client")
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    leaf.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    leaf.private_key_pem.write_to_path(str(d / "key.pem"))
    client.cert_chain_pems[0].write_to_path(str(d / "client.pem"))
    client.private_key_pem.write_to_path(str(d / "client.key"))
    return {k: str(d / f) for k, f in [("ca", "ca.pem"), ("cert", "cert.pem"),
                                        ("key", "key.pem"), ("client_cert", "client.pem"),
                                        ("client_key", "client.key")]}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class SServer:
    """``openssl s_server -rev`` (echoes each line reversed) on a free port."""

    def __init__(self, pki, *args):
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["openssl", "s_server", "-accept", f"127.0.0.1:{self.port}", "-cert", pki["cert"],
             "-key", pki["key"], "-naccept", "1", "-rev", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True)
        self.lines = []
        line = self.proc.stdout.readline()
        while line and "ACCEPT" not in line:
            self.lines.append(line)
            line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("s_server did not start: " + "".join(self.lines))

    def output(self):
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return "".join(self.lines) + out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def client_ctx(pki, **kw):
    return tls.client_context(cafile=pki["ca"], **kw)


def server_ctx(pki, **kw):
    return tls.server_context(certfile=pki["cert"], keyfile=pki["key"], **kw)


def recv_line(s):
    buf = bytearray()
    while not buf.endswith(b"\n"):
        d = s.recv(1000)
        if not d:
            break
        buf += d
    return bytes(buf)


# -- greenrt client against openssl s_server ------------------------------------------


def test_client_against_openssl_s_server_with_alpn(pki):
    srv = SServer(pki, "-alpn", "h2,http/1.1")
    try:
        def main():
            s = tls.open_tls("localhost", srv.port, client_ctx(pki, alpn=["h2", "http/1.1"]),
                             timeout=10)
            s.send_all(b"hello greenrt\n")
            line = recv_line(s)
            info = (s.selected_alpn, s.tls_version)
            s.close()
            return line, info

        line, (alpn, version) = greenrt.run(main)
    finally:
        out = srv.output()
        srv.stop()
    assert line == b"trneerg olleh\n"
    assert alpn == "h2" and version == "TLSv1.3"
    assert "ALPN protocols selected: h2" in out


def test_client_verifies_openssl_s_server_host_name(pki):
    srv = SServer(pki)
    try:
        def main():
            with pytest.raises(tls.TLSCertificateError, match="not valid for"):
                tls.open_tls("127.0.0.1", srv.port, client_ctx(pki),
                             server_hostname="www.example.com")
            return True

        assert greenrt.run(main)
    finally:
        srv.stop()


def test_client_refuses_tls11_only_openssl_server(pki):
    # Control: the TLS 1.1-only server works for a TLS 1.1 client.
    srv = SServer(pki, "-tls1_1", "-cipher", LEGACY)
    try:
        ctl = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{srv.port}",
                              "-tls1_1", "-cipher", LEGACY, "-brief"],
                             input="abc\n", capture_output=True, text=True, timeout=20)
        assert "Protocol version: TLSv1.1" in ctl.stdout + ctl.stderr
    finally:
        srv.stop()
    srv = SServer(pki, "-tls1_1", "-cipher", LEGACY)
    try:
        def main():
            with pytest.raises(tls.TLSHandshakeError) as ei:
                tls.open_tls("localhost", srv.port, client_ctx(pki), timeout=10)
            return ei.value

        err = greenrt.run(main)
    finally:
        srv.stop()
    assert err.alert == 70  # protocol_version
    assert not isinstance(err, tls.TLSCertificateError)


# -- openssl s_client against a greenrt server ----------------------------------------


def run_greenrt_server(ctx, client_fn, handler=None):
    """Serve TLS with ``ctx`` and run ``client_fn(port)`` in a thread; return
    (client result, list of handler outcomes)."""
    outcomes = []

    def default_handler(stream):
        s = tls.TLSStream(stream, ctx)
        try:
            s.handshake(10)
        except tls.TLSError as e:
            outcomes.append(e)
            return
        outcomes.append(s)
        s.send_all(b"hello from greenrt\n")
        while True:
            try:
                d = s.recv(1000)
            except tls.TLSError:
                break
            if not d:
                break
            s.send_all(d.upper())
        s.close()

    def main():
        with greenrt.region() as r:
            servers = []
            r.spawn(lambda: net.serve_tcp(handler or default_handler, "127.0.0.1", 0,
                                          on_ready=servers.append))
            while not servers:
                greenrt.sleep(0)
            result = greenrt.to_thread(client_fn, servers[0].addresses[0][1])
            while servers[0].statistics()["active"]:
                greenrt.sleep(0.005)
            servers[0].shutdown()
        return result

    return greenrt.run(main), outcomes


def s_client(port, *args, send=b"ping\n", expect=b"PING", steps=None):
    """Run ``openssl s_client``; for each ``(send, expect)`` step write ``send`` and
    keep stdin open until ``expect`` came back (or the client exits)."""
    steps = steps or [(send, expect)]
    p = subprocess.Popen(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = bytearray()
    cond = threading.Condition()

    def reader():
        for chunk in iter(lambda: p.stdout.read1(4096), b""):
            with cond:
                out.extend(chunk)
                cond.notify_all()
        with cond:
            out.extend(b"\n<exited>")
            cond.notify_all()

    t = threading.Thread(target=reader)
    t.start()
    for data, want in steps:
        try:
            p.stdin.write(data)
            p.stdin.flush()
        except BrokenPipeError:
            break
        with cond:
            cond.wait_for(lambda w=want: w in out or b"<exited>" in out, timeout=20)
    try:
        p.stdin.close()
    except BrokenPipeError:
        pass
    try:
        p.wait(20)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    t.join()
    return out.decode(errors="replace"), p.returncode


def test_openssl_s_client_against_greenrt_server(pki):
    ctx = server_ctx(pki, alpn=["h2", "http/1.1"])
    (out, rc), outcomes = run_greenrt_server(ctx, lambda port: s_client(
        port, "-CAfile", pki["ca"], "-verify_return_error", "-servername", "localhost",
        "-verify_hostname", "localhost", "-alpn", "http/1.1"))
    assert "hello from greenrt" in out and "PING" in out
    assert "Verify return code: 0 (ok)" in out
    assert "ALPN protocol: http/1.1" in out
    s = outcomes[0]
    assert isinstance(s, tls.TLSStream) and s.selected_alpn == "http/1.1"
    assert s.requested_server_name == "localhost"


def test_openssl_s_client_mtls_with_and_without_certificate(pki):
    ctx = server_ctx(pki, require_client_cert=True, client_cafile=pki["ca"])
    (out, rc), outcomes = run_greenrt_server(ctx, lambda port: s_client(
        port, "-CAfile", pki["ca"], "-cert", pki["client_cert"], "-key", pki["client_key"]))
    assert "PING" in out
    assert outcomes[0].peer_identity["common_name"] == "interop-client"

    (out, rc), outcomes = run_greenrt_server(ctx, lambda port: s_client(
        port, "-CAfile", pki["ca"]))
    assert "PING" not in out
    assert isinstance(outcomes[0], tls.TLSCertificateError)
    assert "alert" in out.lower()


def test_greenrt_server_refuses_tls11_only_client(pki):
    ctx = server_ctx(pki)
    (out, rc), outcomes = run_greenrt_server(ctx, lambda port: s_client(
        port, "-tls1_1", "-cipher", LEGACY))
    assert "PING" not in out and rc != 0
    err = outcomes[0]
    assert isinstance(err, tls.TLSHandshakeError) and err.alert == 70 and err.sent is True


# -- CPython's ssl module as the peer --------------------------------------------------


def test_python_ssl_server_with_greenrt_client(pki):
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(pki["cert"], pki["key"])
    sctx.set_alpn_protocols(["http/1.1"])
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    port = lsock.getsockname()[1]
    seen = {}

    def server():
        c, _ = lsock.accept()
        with sctx.wrap_socket(c, server_side=True) as s:
            seen["alpn"] = s.selected_alpn_protocol()
            data = b""
            while not data.endswith(b"\n"):
                data += s.recv(1000)
            s.sendall(data[::-1] + b"!")
            seen["unwrap"] = s.unwrap() is not None  # close_notify exchange

    t = threading.Thread(target=server)
    t.start()
    try:
        def main():
            s = tls.open_tls("localhost", port, client_ctx(pki, alpn=["h2", "http/1.1"]))
            s.send_all(b"abc\n")
            buf = bytearray()
            while True:
                d = s.recv(100)
                if not d:
                    break
                buf += d
            alpn = s.selected_alpn
            s.close()
            return bytes(buf), alpn

        data, alpn = greenrt.run(main)
    finally:
        t.join(20)
        lsock.close()
    assert data == b"\ncba!" and alpn == "http/1.1"
    assert seen == {"alpn": "http/1.1", "unwrap": True}


def python_ssl_client(pki, port, *, cert=False, maximum=None, alpn=("h2",), payload=None):
    ctx = ssl.create_default_context(cafile=pki["ca"])
    ctx.set_alpn_protocols(list(alpn))
    if cert:
        ctx.load_cert_chain(pki["client_cert"], pki["client_key"])
    if maximum is not None:
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        ctx.maximum_version = maximum
        ctx.set_ciphers(LEGACY)
    payload = payload or os.urandom(300_000)
    try:
        with socket.create_connection(("127.0.0.1", port)) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                hello = b""
                while not hello.endswith(b"\n"):
                    hello += s.recv(100)
                s.sendall(payload)
                back = b""
                while len(back) < len(payload):
                    d = s.recv(65536)
                    if not d:
                        break
                    back += d
                return {"ok": back == payload.upper(), "alpn": s.selected_alpn_protocol(),
                        "version": s.version()}
    except (ssl.SSLError, OSError) as e:
        return {"error": e}


def test_python_ssl_client_against_greenrt_server(pki):
    ctx = server_ctx(pki, alpn=["h2", "http/1.1"])
    res, outcomes = run_greenrt_server(ctx, lambda port: python_ssl_client(pki, port))
    assert res == {"ok": True, "alpn": "h2", "version": "TLSv1.3"}
    assert isinstance(outcomes[0], tls.TLSStream)


def test_python_ssl_client_mtls(pki):
    ctx = server_ctx(pki, require_client_cert=True, client_cafile=pki["ca"])
    res, outcomes = run_greenrt_server(ctx, lambda port: python_ssl_client(pki, port, cert=True))
    assert res["ok"] and outcomes[0].peer_identity["common_name"] == "interop-client"
    res, outcomes = run_greenrt_server(ctx, lambda port: python_ssl_client(pki, port))
    assert "error" in res and isinstance(outcomes[0], tls.TLSCertificateError)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_python_ssl_tls11_client_refused(pki):
    ctx = server_ctx(pki)
    res, outcomes = run_greenrt_server(ctx, lambda port: python_ssl_client(
        pki, port, maximum=ssl.TLSVersion.TLSv1_1))
    assert isinstance(res.get("error"), ssl.SSLError)
    assert isinstance(outcomes[0], tls.TLSHandshakeError) and outcomes[0].alert == 70


def test_python_ssl_alpn_without_overlap_gets_alert_120(pki):
    ctx = server_ctx(pki, alpn=["h2"])
    res, outcomes = run_greenrt_server(ctx, lambda port: python_ssl_client(
        pki, port, alpn=("http/1.1",)))
    assert "no application protocol" in str(res.get("error")).lower()
    assert outcomes[0].alert == 120


def test_many_python_ssl_clients_concurrently(pki):
    ctx = server_ctx(pki)

    def clients(port):
        results = []
        threads = [threading.Thread(target=lambda: results.append(
            python_ssl_client(pki, port, payload=os.urandom(20_000)))) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        return results

    res, outcomes = run_greenrt_server(ctx, clients)
    assert len(res) == 20 and all(r.get("ok") for r in res), res
    assert len(outcomes) == 20


def test_client_initiated_renegotiation_is_refused(pki):
    # s_client's interactive "R" command asks for a TLS 1.2 renegotiation.
    ctx = server_ctx(pki)
    (out, rc), outcomes = run_greenrt_server(ctx, lambda port: s_client(
        port, "-tls1_2", "-CAfile", pki["ca"],
        steps=[(b"ping\n", b"PING"), (b"R\n", b"renegotiation"), (b"pong\n", b"PONG")]))
    assert "PING" in out and "RENEGOTIATING" in out
    assert "no renegotiation" in out  # our no_renegotiation alert
    assert "PONG" not in out
    assert isinstance(outcomes[0], tls.TLSStream) and outcomes[0].tls_version == "TLSv1.2"
