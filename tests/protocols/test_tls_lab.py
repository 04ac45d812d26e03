"""TLSStream over the lab's simulated network: the memory-BIO design means the same
TLS code runs on virtual wires (latency, jitter, resets) under the lab hub."""

import pytest
import trustme

import greenrt
import greenrt.lab as lab
import greenrt.lab.net as lnet
from greenrt import net
from greenrt.protocols import tls

SERVER = "10.0.0.2"
PORT = 443

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def contexts():
    ca = trustme.CA()
    leaf = ca.issue_cert("service.test", SERVER)
    sctx = tls.server_context(cert_pem=b"".join(b.bytes() for b in leaf.cert_chain_pems),
                              key_pem=leaf.private_key_pem.bytes(), alpn=["h2", "http/1.1"])
    cctx = tls.client_context(cadata=ca.cert_pem.bytes(), alpn=["h2"])
    return sctx, cctx


def tls_echo_program(sctx, cctx, clients=4, rounds=5):
    def handler(s):
        while True:
            d = s.recv(4096)
            if not d:
                break
            s.send_all(d)
        s.send_eof()

    out = []
    with greenrt.region() as r:
        ready = {}

        def server():
            with lnet.host(SERVER):
                net.serve_tcp(tls.tls_handler(sctx, handler), SERVER, PORT,
                              on_ready=lambda s: ready.setdefault("s", s))

        r.spawn(server)
        while "s" not in ready:
            greenrt.sleep(0.001)

        def client(n):
            s = tls.TLSStream(net.open_tcp(SERVER, PORT), cctx, server_hostname=SERVER)
            s.handshake(timeout=5)
            for i in range(rounds):
                msg = f"client {n} round {i} ".encode() * 50
                s.send_all(msg)
                got = b""
                while len(got) < len(msg):
                    got += s.recv(4096)
                out.append((n, got == msg, s.selected_alpn, s.tls_version))
            s.send_eof()
            assert s.recv(10) == b""
            s.close()

        with greenrt.region() as cr:
            for n in range(clients):
                cr.spawn(client, n)
        ready["s"].shutdown()
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tls_echo_on_the_simulated_network(contexts, seed):
    sctx, cctx = contexts
    r = lab.run(tls_echo_program, sctx, cctx, seed=seed,
                net=lnet.NetConfig(latency=0.005, jitter=0.002))
    assert r.ok, (r.error, r.violations)
    assert len(r.value) == 20
    assert all(ok and alpn == "h2" and v == "TLSv1.3" for _, ok, alpn, v in r.value)


def test_tls_handshake_timeout_in_virtual_time(contexts):
    _, cctx = contexts

    def program():
        with greenrt.region() as r:
            ready = {}

            def silent_server():
                with lnet.host(SERVER):
                    net.serve_tcp(lambda s: greenrt.sleep(3600), SERVER, PORT,
                                  on_ready=lambda s: ready.setdefault("s", s))

            r.spawn(silent_server)
            while "s" not in ready:
                greenrt.sleep(0.001)
            s = tls.TLSStream(net.open_tcp(SERVER, PORT), cctx, server_hostname=SERVER)
            t0 = greenrt.now()
            try:
                s.handshake(timeout=30)
            except greenrt.TooSlowError:
                pass
            waited = greenrt.now() - t0
            broken = s.broken
            s.close()
            ready["s"].shutdown()
        return waited, broken

    r = lab.run(program, seed=0)
    assert r.ok, (r.error, r.violations)
    waited, broken = r.value
    assert broken and 30 <= waited < 31  # virtual time: exactly the timeout, instantly
