"""Interop with the `websockets` library (sync API, in a thread) as client and as
server, with and without permessage-deflate, over ws and wss; and the
`websocket-client` library as a second client."""

import ssl

import pytest
from websockets.sync.client import connect as wsl_connect
from websockets.sync.server import serve as wsl_serve

import greenrt
from greenrt.protocols import tls, websocket

from .conftest import ThreadPeer, serve, tls_client_ctx, tls_server_ctx

pytestmark = pytest.mark.timeout(60)

MESSAGES = ["hello", "ünïcødé ✓", b"\x00\x01binary\xff", "x" * 70000, b"y" * 200000, ""]


def echo(ws):
    for m in ws:
        ws.send(m)


@pytest.mark.parametrize("compression", [True, False])
@pytest.mark.parametrize("secure", [False, True])
def test_websockets_client_against_our_server(pki, compression, secure):
    out = {}

    def peer(port):
        ctx = None
        if secure:
            ctx = ssl.create_default_context(cadata=pki["ca_pem"].decode())
        scheme = "wss" if secure else "ws"
        with wsl_connect(f"{scheme}://localhost:{port}/echo", ssl=ctx,
                         compression="deflate" if compression else None,
                         subprotocols=["chat.v2", "chat.v1"]) as c:
            got = []
            for m in MESSAGES:
                c.send(m)
                got.append(c.recv())
            return got, c.subprotocol

    def handler(ws):
        out["compression"] = ws.compression
        out["path"] = ws.path
        echo(ws)

    def main():
        h = websocket.serve_handler(handler, subprotocols=["chat.v1"])
        if secure:
            h = tls.tls_handler(tls_server_ctx(pki), h)
        with greenrt.region() as r:
            server, port = serve(r, h)
            got, sub = ThreadPeer(lambda: peer(port)).join_green()
            server.shutdown()
        assert got == MESSAGES
        assert sub == "chat.v1"
        assert out["compression"] is compression
        assert out["path"] == "/echo"

    greenrt.run(main)


@pytest.mark.parametrize("compression", [True, False])
@pytest.mark.parametrize("secure", [False, True])
def test_our_client_against_websockets_server(pki, compression, secure):
    import threading

    seen = {}
    ready = threading.Event()
    holder = {}

    def wsl_handler(conn):
        seen["extensions"] = [e.name for e in conn.protocol.extensions]
        seen["subprotocol"] = conn.subprotocol
        for m in conn:
            conn.send(m)

    def run_server():
        ctx = None
        if secure:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            cert = pki["ca"].issue_cert("localhost", "127.0.0.1")
            import tempfile
            with tempfile.NamedTemporaryFile(suffix=".pem", delete=False) as f:
                f.write(b"".join(b.bytes() for b in cert.cert_chain_pems) + cert.private_key_pem.bytes())
            ctx.load_cert_chain(f.name)
        with wsl_serve(wsl_handler, "127.0.0.1", 0, ssl=ctx,
                       compression="deflate" if compression else None,
                       subprotocols=["chat.v1"]) as srv:
            holder["srv"] = srv
            ready.set()
            srv.serve_forever()

    t = threading.Thread(target=run_server, daemon=True)
    t.start()
    assert ready.wait(10)
    port = holder["srv"].socket.getsockname()[1]

    def main():
        scheme = "wss" if secure else "ws"
        ws = websocket.connect(f"{scheme}://localhost:{port}/", subprotocols=["chat.v1"],
                               compression=compression, tls_context=tls_client_ctx(pki))
        got = []
        for m in MESSAGES:
            ws.send(m)
            got.append(ws.recv())
        rtt = ws.ping()
        assert rtt >= 0
        assert ws.subprotocol == "chat.v1"
        assert ws.compression is compression
        ws.close()
        assert ws.close_code == 1000
        return got

    try:
        assert greenrt.run(main) == MESSAGES
        assert seen["extensions"] == (["permessage-deflate"] if compression else [])
    finally:
        holder["srv"].shutdown()
        t.join(10)


def test_context_takeover_options_interop():
    """no_context_takeover both ways, negotiated with websockets' server: many
    similar messages still round-trip (each message inflates on a fresh context)."""
    import threading

    from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

    ready = threading.Event()
    holder = {}

    def run_server():
        factory = ServerPerMessageDeflateFactory(server_no_context_takeover=True,
                                                 client_no_context_takeover=True)
        with wsl_serve(lambda c: [c.send(m) for m in c], "127.0.0.1", 0, compression=None,
                       extensions=[factory]) as srv:
            holder["srv"] = srv
            ready.set()
            srv.serve_forever()

    t = threading.Thread(target=run_server, daemon=True)
    t.start()
    assert ready.wait(10)
    port = holder["srv"].socket.getsockname()[1]

    def main():
        ws = websocket.connect(f"ws://127.0.0.1:{port}/",
                               compression={"client_no_context_takeover": True,
                                            "server_no_context_takeover": True})
        assert ws.compression
        for i in range(50):
            ws.send_text(f"the same words again and again {i}")
            assert ws.recv() == f"the same words again and again {i}"
        ws.close()

    try:
        greenrt.run(main)
    finally:
        holder["srv"].shutdown()
        t.join(10)


def test_websocket_client_library_as_second_peer():
    """A second, independent client: the `websocket-client` library (Debian's curl
    7.88 has no WebSocket support). Text, binary, ping/pong and the close code."""
    import websocket as wsc  # websocket-client

    def peer(port):
        c = wsc.create_connection(f"ws://127.0.0.1:{port}/", timeout=10,
                                  subprotocols=["chat.v1"])
        c.send("hello")
        a = c.recv()
        c.send_binary(b"\x00\xffbin")
        b = c.recv()
        c.ping(b"p1")
        opcode, frame = c.recv_data_frame(True)
        c.close(status=1000)
        return a, b, opcode, frame.data

    closes = []

    def handler(ws):
        try:
            for m in ws:
                ws.send(m)
        finally:
            closes.append(ws.close_code)

    def main():
        with greenrt.region() as r:
            server, port = serve(r, websocket.serve_handler(handler, subprotocols=["chat.v1"]))
            a, b, opcode, data = ThreadPeer(lambda: peer(port)).join_green()
            while not closes:
                greenrt.sleep(0.001)
            server.shutdown()
        assert (a, b) == ("hello", b"\x00\xffbin")
        assert (opcode, data) == (wsc.ABNF.OPCODE_PONG, b"p1")
        assert closes == [1000]

    greenrt.run(main)
