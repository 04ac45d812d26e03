"""Accept-path promises, tried with a client that trickles.

protocols/base/serve.py: "the handshake must finish within ``handshake_timeout``
seconds, so a client that opens a connection and stalls (a TLS slowloris) holds its
slot only that long". tests/protocols/http/test_server.py sends three bytes and stops.
This client keeps the connection busy instead: a real ClientHello (built by Python's
``ssl``), one byte at a time, 20 ms apart (about 10 s for the whole hello). A budget
that restarted on every byte read would let it through; the promised one is total.
The server is the real ``StreamServer`` with a real TLS context, on loopback.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time

import trustme

import greenrt
from greenrt import net
from greenrt.protocols import tls
from greenrt.protocols.base.serve import StreamServer


def _client_hello() -> bytes:
    ctx = ssl.create_default_context()
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out := ssl.MemoryBIO(), server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def test_a_tls_client_that_trickles_its_hello_is_dropped_after_the_total_budget():
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    ctx = tls.server_context(cert_pem=b"".join(b.bytes() for b in leaf.cert_chain_pems),
                             key_pem=leaf.private_key_pem.bytes())
    box: dict = {}
    ready = threading.Event()

    def main():
        box["hub"] = greenrt.lowlevel.current_hub()
        srv = StreamServer(lambda stream, acc: None, name="promise", tls=ctx,
                           handshake_timeout=0.3)
        box["srv"] = srv

        def on_ready(s):
            box["port"] = s.addresses[0][1]
            ready.set()

        with greenrt.move_on_after(60):    # a hang detector for the server thread
            srv.serve_listeners([net.listen_tcp("127.0.0.1", 0)], on_ready=on_ready)

    t = threading.Thread(target=greenrt.run, args=(main,), daemon=True)
    t.start()
    assert ready.wait(10)
    hello = _client_hello()
    assert len(hello) > 200
    sent = 0
    s = socket.create_connection(("127.0.0.1", box["port"]))
    try:
        s.settimeout(0.02)
        closed = False
        for i in range(len(hello)):
            try:
                s.sendall(hello[i:i + 1])
                sent += 1
                if s.recv(4096) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except OSError:           # reset by the server
                closed = True
                break
        assert closed, "the trickling client kept its connection for the whole hello"
        assert sent < len(hello)
    finally:
        s.close()
        srv = box["srv"]
        deadline = time.monotonic() + 10
        while srv.statistics()["tls_failures"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        stats = srv.statistics()
        box["hub"].call_soon_threadsafe(srv.shutdown)
        t.join(30)
    assert stats["tls_failures"] == 1
    assert not t.is_alive()
