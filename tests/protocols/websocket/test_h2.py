"""RFC 8441: WebSockets over HTTP/2 (extended CONNECT), on real sockets.

Our client against our server (``protocols.http.serve``: one port for HTTP/1.1 and
HTTP/2; h2c prior knowledge and h2 over TLS by ALPN), with and without
permessage-deflate; hypercorn (its RFC 8441 support is wsproto behind h2) as the
server for our client; an independent client made of ``h2`` and ``wsproto`` over a
plain socket against our server; limits over HTTP/2; malformed extended CONNECTs;
the WSGI path (a Flask view); the flow-control window of a tunnel.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import sys

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import hyperframe.frame
import pytest
import wsproto.connection
import wsproto.events

import greenrt
from greenrt.protocols import http, http2, tls, websocket
from greenrt.protocols.http.model import Response
from greenrt.protocols.http2._connect import CONNECTION_WINDOW

from .conftest import ThreadPeer, ping_under_quota, recv_under_growing_quotas, serve

pytestmark = pytest.mark.timeout(60)
HERE = os.path.dirname(os.path.abspath(__file__))


def _echo(ws):
    for m in ws:
        ws.send(m)


def _fallback(req):
    return Response(200, [("content-type", "text/plain")], b"plain http\n")


def _serve(r, handler, *, tls_ctx=None, h2_limits=None):
    servers = []
    r.spawn(lambda: http.serve(handler, "127.0.0.1", 0, tls=tls_ctx, h2_limits=h2_limits,
                               on_ready=servers.append))
    while not servers:
        greenrt.sleep(0)
    return servers[0], servers[0].addresses[0][1]


def _server_tls(pki):
    return tls.server_context(cert_pem=pki["chain"], key_pem=pki["key"],
                              alpn=["h2", "http/1.1"])


def _client_tls(pki):
    return tls.client_context(cadata=pki["ca_pem"], alpn=["h2"])


# -- our client <-> our server ------------------------------------------------------------


@pytest.mark.parametrize("compression", [False, True], ids=["plain", "deflate"])
@pytest.mark.parametrize("secure", [False, True], ids=["h2c", "tls"])
def test_our_client_our_server_over_h2(pki, secure, compression):
    seen = {}

    def handler(ws):
        seen["path"] = ws.path
        seen["compression"] = ws.compression
        seen["subprotocol"] = ws.subprotocol
        _echo(ws)

    def main():
        with greenrt.region() as r:
            srv, port = _serve(r, websocket.http_handler(handler, fallback=_fallback,
                                                         subprotocols=["chat"]),
                               tls_ctx=_server_tls(pki) if secure else None)
            scheme = "wss" if secure else "ws"
            ws = websocket.connect(f"{scheme}://localhost:{port}/chat?x=1", http2=True,
                                   compression=compression, subprotocols=["chat"],
                                   tls_context=_client_tls(pki) if secure else None)
            assert isinstance(ws._stream, http2.ClientTunnel)
            assert ws.subprotocol == "chat" and ws.compression is compression
            msgs = ["hello", b"\x00\x01binary", "x" * 200_000, b"y" * 70_000]
            # sent from a task of its own while this one reads: each direction holds
            # at most a stream window (64 KiB) in flight, so an echo of messages
            # larger than that needs both ends moving
            r.spawn(lambda: [ws.send(m) for m in msgs])
            got = [ws.recv() for _ in msgs]
            assert got == msgs
            assert ws.ping() >= 0
            ws.close()
            assert ws.close_code == 1000
            # the owned HTTP/2 connection is closed with the WebSocket
            assert ws._stream.owns.statistics()["usable"] is False
            srv.shutdown()
        assert seen == {"path": "/chat?x=1", "compression": compression, "subprotocol": "chat"}

    greenrt.run(main)


def test_server_initiated_close_ends_the_stream_and_returns_the_window():
    """The server closes (code 4001): Close frame, then END_STREAM; the client's
    answer and END_STREAM follow; afterwards the shared connection has no stream
    open, no byte unacknowledged on either side, and serves the next WebSocket."""
    conns = []

    def handler(ws):
        ws.send(ws.recv())
        ws.close(4001, "enough")

    def main():
        with greenrt.region() as r:
            srv, port = _serve(r, websocket.http_handler(handler))
            conn = http2.connect("127.0.0.1", port)
            conns.append(conn)
            for _ in range(3):  # three WebSockets, one after the other, on one connection
                ws = websocket.connect(f"ws://127.0.0.1:{port}/", http2=conn)
                ws.send_bytes(b"z" * 100_000)
                assert ws.recv() == b"z" * 100_000
                with pytest.raises(websocket.ConnectionClosed) as ei:
                    ws.recv()
                assert ei.value.close_code == 4001
                ws.close()
            conn.ping()  # a round trip: the server's last frames are in
            st = conn.statistics()
            assert st["streams_open"] == 0 and st["unacked_bytes"] == 0, st
            assert st["streams_opened"] == 3 and st["usable"]
            # the server got 3 x 100 kB on one connection: without window returned
            # at the connection level the third could not have been sent
            assert st["outbound_window"] == 65535, st
            conn.close()
            srv.shutdown()

    greenrt.run(main)


def test_connection_lost_under_a_websocket_is_close_code_1006():
    """The HTTP/2 connection ends under an open WebSocket (here: closed locally):
    the WebSocket reports ConnectionClosed(1006), as over TCP, not an HTTP/2 error;
    the server's handler sees the same."""
    seen = []

    def handler(ws):
        try:
            ws.recv()
        except websocket.ConnectionClosed as e:
            seen.append(e.close_code)

    def main():
        with greenrt.region() as r:
            srv, port = _serve(r, websocket.http_handler(handler))
            conn = http2.connect("127.0.0.1", port)
            ws = websocket.connect(f"ws://127.0.0.1:{port}/", http2=conn)
            conn.close()
            with pytest.raises(websocket.ConnectionClosed) as ei:
                ws.recv()
            assert ei.value.close_code == 1006
            ws.close()
            with greenrt.fail_after(10):
                while not seen:
                    greenrt.sleep(0.01)
            srv.shutdown()
        assert seen == [1006]

    greenrt.run(main)


# -- hypercorn (wsproto behind h2) as the server ----------------------------------------


@pytest.fixture
def hypercorn_ws(pki, tmp_path):
    import hypercorn as _required  # noqa: F401 - required (the test extra): fail, not skip

    from ..http1.conftest import wait_for_port
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(pki["chain"])
    key.write_bytes(pki["key"])
    procs = []
    logs = []

    def run(secure: bool) -> int:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        cmd = [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}",
               "--log-level", "warning", "_asgi_ws_app:app"]
        if secure:
            cmd += ["--certfile", str(cert), "--keyfile", str(key)]
        log = open(tmp_path / f"hypercorn-{port}.log", "wb")  # noqa: SIM115 - closed below
        logs.append((log, tmp_path / f"hypercorn-{port}.log"))
        proc = subprocess.Popen(cmd, cwd=HERE, stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        wait_for_port(port, proc)
        return port

    yield run
    for p in procs:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    for f, path in logs:
        f.close()
        _check_hypercorn_log(path.read_text())


# hypercorn 0.18's known bug (protocol/h2.py, _handle_events): a DATA frame for a
# stream it has already closed — our Close reply or END_STREAM after its app ended
# the WebSocket, both required by RFC 6455/8441 — is looked up with
# ``self.streams[event.stream_id]`` and the KeyError ends hypercorn's whole
# connection ("Unhandled exception in client_connected_cb"). It happens after the
# WebSocket's close handshake, on a connection used by that WebSocket alone, so the
# tests still see every message and close code. Only that error is tolerated in its
# log; any other exception there fails the test.
_HYPERCORN_KNOWN = ("KeyError: ", "ExceptionGroup: unhandled errors in a TaskGroup")


def _check_hypercorn_log(text: str) -> None:
    import re

    finals = re.findall(r"^[\s|+-]*([A-Za-z_][\w.]*(?:Error|Exception|Group): .*)$", text,
                        re.M)
    unknown = [f for f in finals if not f.startswith(_HYPERCORN_KNOWN)]
    assert not unknown, text
    if "KeyError" in text:
        assert "self.streams[event.stream_id].handle(" in text, text


@pytest.mark.parametrize("compression", [False, True], ids=["plain", "deflate"])
@pytest.mark.parametrize("secure", [False, True], ids=["h2c", "tls"])
def test_our_client_against_hypercorn(hypercorn_ws, pki, secure, compression):
    port = hypercorn_ws(secure)
    scheme = "wss" if secure else "ws"
    ctx = _client_tls(pki) if secure else None

    def main():
        ws = websocket.connect(f"{scheme}://localhost:{port}/", http2=True,
                               subprotocols=["chat"], compression=compression,
                               tls_context=ctx)
        assert ws.subprotocol == "chat" and ws.compression is compression
        msgs = ["hi", b"\x00" * 10, "\u00e9t\u00e9 " * 5000, b"b" * 50_000]
        with greenrt.region() as r:
            r.spawn(lambda: [ws.send(m) for m in msgs])
            got = [ws.recv() for _ in msgs]
        assert got == msgs
        assert ws.ping() >= 0
        ws.close()
        assert ws.close_code == 1000
        # the server closes first: its message, then its Close (4000)
        ws = websocket.connect(f"{scheme}://localhost:{port}/bye", http2=True, tls_context=ctx)
        assert ws.recv() == "http/2 bye"
        with pytest.raises(websocket.ConnectionClosed) as ei:
            ws.recv()
        assert ei.value.close_code == 4000
        ws.close()

    greenrt.run(main)


def test_hypercorn_refuses_a_plain_request_on_a_websocket_app(hypercorn_ws):
    """A 404 answer to the extended CONNECT is a HandshakeError carrying the status;
    nothing is left open."""
    port = hypercorn_ws(False)

    def main():
        conn = http2.connect("127.0.0.1", port)
        assert conn.server_settings()["enable_connect_protocol"] == 1
        s = conn.open_stream("GET", "/", end_stream=True)
        assert s.response_headers()[0] == 404
        s.read_all()
        conn.close()

    greenrt.run(main)


# -- an independent client (h2 + wsproto on a plain socket) against our server ---------


def _h2c_upgrade(sock, c) -> tuple[bytes, bytes]:
    """``Upgrade: h2c`` by hand (RFC 7540 3.2): a GET carrying our SETTINGS, then the
    101's status line and what followed its head (HTTP/2 already)."""
    settings = c.initiate_upgrade_connection()
    sock.sendall(b"GET /before-upgrade HTTP/1.1\r\nHost: localhost\r\n"
                 b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                 b"HTTP2-Settings: " + settings + b"\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise EOFError("server closed during the upgrade")
        buf += data
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head.split(b"\r\n", 1)[0], rest


def _independent_client(port: int, messages: list, *, path: bytes = b"/",
                        upgrade: bool = False) -> dict:
    """RFC 8441 by hand: h2 for HTTP/2, wsproto's frame layer for the WebSocket. With
    ``upgrade``, the connection starts as HTTP/1.1 and is upgraded to h2c first (its
    request, answered on stream 1, is recorded under ``stream1``)."""
    out: dict = {"received": [], "stream1": {"data": b""}}
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                             header_encoding=None))
    pending: list = []
    if upgrade:
        out["upgrade_status"], rest = _h2c_upgrade(sock, c)
        sock.sendall(c.data_to_send())  # the preface and our SETTINGS
        pending.extend(c.receive_data(rest))
    else:
        c.initiate_connection()
    sock.sendall(c.data_to_send())

    def next_event():
        while True:
            while not pending:
                data = sock.recv(65536)
                if not data:
                    raise EOFError("server closed")
                pending.extend(c.receive_data(data))
                sock.sendall(c.data_to_send())
            ev = pending.pop(0)
            if not upgrade or getattr(ev, "stream_id", None) != 1:
                return ev
            one = out["stream1"]  # the upgraded request's response
            if isinstance(ev, h2.events.ResponseReceived):
                one["status"] = dict(ev.headers)[b":status"]
            elif isinstance(ev, h2.events.DataReceived):
                one["data"] += ev.data
                c.acknowledge_received_data(ev.flow_controlled_length, 1)
            elif isinstance(ev, h2.events.StreamEnded):
                one["ended"] = True

    while not isinstance(next_event(), h2.events.RemoteSettingsChanged):
        pass
    out["enable_connect_protocol"] = c.remote_settings.enable_connect_protocol
    sid = c.get_next_available_stream_id()
    c.send_headers(sid, [(b":method", b"CONNECT"), (b":protocol", b"websocket"),
                         (b":scheme", b"http"), (b":path", path),
                         (b":authority", b"localhost"), (b"sec-websocket-version", b"13")])
    sock.sendall(c.data_to_send())
    ws = wsproto.connection.Connection(wsproto.connection.ConnectionType.CLIENT)
    queue = list(messages)
    ended = False
    while True:
        ev = next_event()
        if isinstance(ev, h2.events.ResponseReceived):
            out["status"] = dict(ev.headers)[b":status"]
            for m in queue:  # small messages: they fit the window
                c.send_data(sid, ws.send(wsproto.events.Message(data=m)))
            queue = []
            sock.sendall(c.data_to_send())
        elif isinstance(ev, h2.events.DataReceived):
            c.acknowledge_received_data(ev.flow_controlled_length, sid)
            if not ev.data:  # the empty DATA frame that carries END_STREAM
                continue
            ws.receive_data(ev.data)
            for wev in ws.events():
                if isinstance(wev, wsproto.events.Message):
                    out["received"].append(wev.data)
                    if len(out["received"]) == len(messages):
                        c.send_data(sid, ws.send(wsproto.events.CloseConnection(code=1000)))
                elif isinstance(wev, wsproto.events.CloseConnection):
                    out["close_code"] = wev.code
                    try:
                        c.end_stream(sid)
                    except h2.exceptions.StreamClosedError:
                        # the server ended its side and then reset ours with
                        # NO_ERROR (RFC 9113 8.1), in the same read as its Close
                        pass
            sock.sendall(c.data_to_send())
        elif isinstance(ev, h2.events.StreamEnded):
            ended = True
            out["server_end_stream"] = True
        elif isinstance(ev, h2.events.StreamReset):
            out["reset"] = int(ev.error_code)
            break
        if ended and "close_code" in out:
            break
    sock.close()
    return out


def test_independent_h2_wsproto_client_against_our_server():
    def main():
        with greenrt.region() as r:
            srv, port = _serve(r, websocket.http_handler(_echo, compression=False))
            msgs = ["one", b"two", "three" * 100]
            peer = ThreadPeer(lambda: _independent_client(port, msgs, path=b"/echo"))
            out = peer.join_green()
            srv.shutdown()
        assert out["enable_connect_protocol"] == 1
        assert out["status"] == b"200"
        assert out["received"] == msgs
        assert out["close_code"] == 1000
        # our Close frame is followed by END_STREAM (the WebSocket's end is the stream's)
        assert out.get("server_end_stream") is True

    greenrt.run(main)


def test_websocket_over_an_h2c_upgraded_connection():
    """A cleartext HTTP/1.1 request upgraded to h2c (101, its answer on stream 1),
    then an RFC 8441 extended CONNECT on the same, now HTTP/2, connection: the
    setting is advertised there too and the WebSocket echoes (h2 + wsproto client)."""
    paths = []
    msgs = ["one", b"two", "three" * 100, b"\xff" * 10_000]  # each within a frame

    def handler(ws):
        paths.append(ws.path)
        _echo(ws)

    def main():
        with greenrt.region() as r:
            srv, port = _serve(r, websocket.http_handler(handler, fallback=_fallback,
                                                         compression=False))
            out = ThreadPeer(lambda: _independent_client(port, msgs, path=b"/after",
                                                         upgrade=True)).join_green()
            versions = srv.statistics()["versions"]
            srv.shutdown()
        return out, versions

    out, versions = greenrt.run(main)
    assert out["upgrade_status"] == b"HTTP/1.1 101 Switching Protocols"
    assert out["stream1"] == {"status": b"200", "data": b"plain http\n", "ended": True}
    assert versions["h2c"] == 1
    assert out["enable_connect_protocol"] == 1
    assert out["status"] == b"200"
    assert out["received"] == msgs
    assert out["close_code"] == 1000 and out.get("server_end_stream") is True
    assert paths == ["/after"]


# -- limits still apply over HTTP/2 ----------------------------------------------------


def test_message_limit_applies_over_h2():
    lim = websocket.WebSocketLimits(max_message_bytes=10_000)
    errors = []

    def handler(ws):
        try:
            ws.recv()
        except websocket.WebSocketLimitError as e:
            errors.append(e.close_code)
            raise

    def main():
        with greenrt.region() as r:
            srv, port = _serve(r, websocket.http_handler(handler, limits=lim))
            ws = websocket.connect(f"ws://127.0.0.1:{port}/", http2=True, compression=False)
            ws.send_bytes(b"q" * 20_000)
            with pytest.raises(websocket.ConnectionClosed) as ei:
                ws.recv()
            assert ei.value.close_code == 1009
            ws.close()
            srv.shutdown()
        assert errors == [1009]

    greenrt.run(main)


def test_inflated_size_limit_applies_over_h2():
    """A compressed message that inflates past max_message_bytes: 1009 over h2 too."""
    lim = websocket.WebSocketLimits(max_message_bytes=50_000)

    def main():
        with greenrt.region() as r:
            srv, port = _serve(r, websocket.http_handler(_echo, limits=lim))
            ws = websocket.connect(f"ws://127.0.0.1:{port}/", http2=True, compression=True)
            assert ws.compression
            ws.send_bytes(b"\x00" * 1_000_000)  # a few kB on the wire
            with pytest.raises(websocket.ConnectionClosed) as ei:
                ws.recv()
            assert ei.value.close_code == 1009
            ws.close()
            srv.shutdown()

    greenrt.run(main)


# -- malformed extended CONNECT: RST_STREAM(PROTOCOL_ERROR), the connection goes on --------


def _raw_requests(port: int, header_blocks: list) -> dict:
    """Send each header block on its own stream (no h2 validation of ours), then a
    GET; return the reset codes / statuses per stream and the server's settings."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    c = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=True, header_encoding=None, validate_outbound_headers=False,
        normalize_outbound_headers=False))
    c.initiate_connection()
    sock.sendall(c.data_to_send())
    out: dict = {"streams": {}}
    sids = []
    for block in header_blocks + [[(b":method", b"GET"), (b":scheme", b"http"),
                                   (b":path", b"/"), (b":authority", b"localhost")]]:
        sid = c.get_next_available_stream_id()
        sids.append(sid)
        c.send_headers(sid, block, end_stream=False)
        c.send_data(sid, b"data after the headers", end_stream=True)
    sock.sendall(c.data_to_send())
    done = set()
    while len(done) < len(sids):
        data = sock.recv(65536)
        if not data:
            break
        for ev in c.receive_data(data):
            if isinstance(ev, h2.events.RemoteSettingsChanged):
                out["enable_connect_protocol"] = c.remote_settings.enable_connect_protocol
            elif isinstance(ev, h2.events.StreamReset):
                out["streams"][ev.stream_id] = ("reset", int(ev.error_code))
                done.add(ev.stream_id)
            elif isinstance(ev, h2.events.ResponseReceived):
                out["streams"][ev.stream_id] = ("status", dict(ev.headers)[b":status"])
            elif isinstance(ev, h2.events.StreamEnded):
                done.add(ev.stream_id)
        sock.sendall(c.data_to_send())
    sock.close()
    out["order"] = sids
    return out


_GOOD = [(b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"http"),
         (b":path", b"/"), (b":authority", b"localhost"), (b"sec-websocket-version", b"13")]


def _without(name):
    return [h for h in _GOOD if h[0] != name]


def _replace(name, value):
    return [(k, value if k == name else v) for k, v in _GOOD]


def test_malformed_extended_connect_is_reset_with_protocol_error():
    starts = []

    def ws_handler(ws):
        starts.append(ws.path)
        _echo(ws)

    blocks = [_without(b":path"), _without(b":scheme"), _without(b":authority"),
              _replace(b":method", b"GET"), _replace(b":protocol", b"web socket")]

    def main():
        with greenrt.region() as r:
            srv, port = _serve(r, websocket.http_handler(ws_handler, fallback=_fallback))
            out = ThreadPeer(lambda: _raw_requests(port, blocks)).join_green()
            srv.shutdown()
        assert out["enable_connect_protocol"] == 1
        codes = [out["streams"].get(sid) for sid in out["order"]]
        assert codes[:-1] == [("reset", 1)] * len(blocks), codes  # PROTOCOL_ERROR
        assert codes[-1] == ("status", b"200")  # the connection carries on
        assert starts == []

    greenrt.run(main)


def test_protocol_without_the_setting_is_reset():
    """A handler not marked for extended CONNECT: the setting is not advertised, and
    a CONNECT with :protocol is malformed (RFC 8441 4): reset, no handler."""
    calls = []

    def plain(req):
        calls.append(req.method)
        return _fallback(req)

    def main():
        with greenrt.region() as r:
            srv, port = _serve(r, plain)
            out = ThreadPeer(lambda: _raw_requests(port, [_GOOD])).join_green()
            srv.shutdown()
        assert out["enable_connect_protocol"] == 0
        codes = [out["streams"].get(sid) for sid in out["order"]]
        assert codes == [("reset", 1), ("status", b"200")], codes
        assert calls == ["GET"]

    greenrt.run(main)


def test_client_refuses_a_server_without_extended_connect():
    def main():
        with greenrt.region() as r:
            srv, port = _serve(r, _fallback)
            with pytest.raises(websocket.HandshakeError) as ei:
                websocket.connect(f"ws://127.0.0.1:{port}/", http2=True)
            assert ei.value.code == "no_extended_connect"
            conn = http2.connect("127.0.0.1", port)
            with pytest.raises(http2.UsageError):
                conn.open_stream("CONNECT", "/", protocol="websocket")
            conn.close()
            srv.shutdown()

    greenrt.run(main)


def test_refused_handshake_over_h2_is_an_http_answer():
    """A refused WebSocket handshake (Origin hook) is an ordinary response on the
    stream (403), and the client's HandshakeError carries it."""

    def main():
        with greenrt.region() as r:
            srv, port = _serve(r, websocket.http_handler(_echo, origin_check=lambda o: False))
            with pytest.raises(websocket.HandshakeError) as ei:
                websocket.connect(f"ws://127.0.0.1:{port}/", http2=True,
                                  origin="http://evil.example")
            assert ei.value.status == 403
            srv.shutdown()

    greenrt.run(main)


# -- WSGI: a Flask view accepts a WebSocket over HTTP/2 too -------------------------------


def test_a_flask_view_accepts_a_websocket_over_h2():
    import flask  # installed by the test extra: missing must fail, not skip

    from greenrt.protocols.http.wsgi import WSGIAdapter

    app = flask.Flask("wsh2")

    @app.route("/ws", websocket=True)  # the same route as over HTTP/1.1
    def ws_view():
        with websocket.accept_wsgi(flask.request.environ) as ws:
            for m in ws:
                ws.send(m[::-1])
        return ""

    @app.route("/")
    def index():
        return "index"

    def main():
        with greenrt.region() as r:
            srv, port = _serve(r, WSGIAdapter(app))
            ws = websocket.connect(f"ws://127.0.0.1:{port}/ws", http2=True)
            ws.send_text("abc")
            assert ws.recv() == "cba"
            ws.close()
            assert ws.close_code == 1000
            # and over HTTP/1.1 on the same port
            ws = websocket.connect(f"ws://127.0.0.1:{port}/ws")
            ws.send_text("xyz")
            assert ws.recv() == "zyx"
            ws.close()
            # and plain HTTP/2 requests to the app's other views
            resp = http2.request("GET", f"http://127.0.0.1:{port}/", prior_knowledge=True)
            assert (resp.status, resp.http_version, resp.content) == (200, "2", b"index")
            srv.shutdown()

    greenrt.run(main)


_GUNICORN_WS_APP = """
from greenrt.protocols import websocket


def app(environ, start_response):
    if environ.get("HTTP_UPGRADE", "").lower() == "websocket":
        with websocket.accept_wsgi(environ) as ws:
            for m in ws:
                ws.send(environ["SERVER_PROTOCOL"] + " " + m)
        return []
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ["SERVER_PROTOCOL"].encode()]
"""


def test_the_gunicorn_worker_accepts_a_websocket_over_h2(tmp_path):
    import signal

    import gunicorn  # noqa: F401 - installed by the test extra: missing must fail, not skip

    from ..http1.conftest import wait_for_port
    root = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
    (tmp_path / "wsapp.py").write_text(_GUNICORN_WS_APP)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    env = dict(os.environ, PYTHONPATH=f"{root}{os.pathsep}{tmp_path}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-k", "greenrt.protocols.http.gunicorn_worker.Worker",
         "-w", "1", "-b", f"127.0.0.1:{port}", "wsapp:app"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc)

        def main():
            for http2_ in (True, False):
                ws = websocket.connect(f"ws://127.0.0.1:{port}/ws", http2=http2_)
                ws.send_text("hi")
                assert ws.recv() == ("HTTP/2 hi" if http2_ else "HTTP/1.1 hi")
                ws.close()
                assert ws.close_code == 1000

        greenrt.run(main)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.communicate()


# -- flow control on a tunnel ------------------------------------------------------------


def test_an_unread_tunnel_holds_no_connection_window():
    """A server handler that accepts and then does not read: the client can send a
    whole stream window (64 KiB) into the tunnel, the tunnel's DATA is returned to
    the connection window on arrival, in batches (the client's outbound connection
    window is more than half open again: it would be 527 bytes if the window were
    returned only when read), and another stream's upload larger than what is left
    of a stream window goes through."""
    gate = greenrt.Event()

    def handler(req):
        if req.path == "/upload":
            return Response(200, [], b"%d" % len(req.body.read_all()))
        ws = websocket.accept_request(req, compression=False)
        gate.wait()   # not reading
        ws.close()
        return None

    def main():
        with greenrt.region() as r:
            srv, port = _serve(r, http2.extended_connect(handler))
            conn = http2.connect("127.0.0.1", port)
            ws = websocket.connect(f"ws://127.0.0.1:{port}/", http2=conn, compression=False)
            with greenrt.move_on_after(2) as sc:
                ws.send_bytes(b"w" * 65_000)  # a frame of 65,008 bytes: within 65,535
            assert not sc.cancelled_caught
            conn.ping()  # a round trip: the server has seen the DATA
            # the connection window is open again though nobody read the tunnel: the
            # tunnels hold back less than half of it (one WINDOW_UPDATE per half)
            assert conn.statistics()["outbound_window"] > 65535 - CONNECTION_WINDOW // 2
            s = conn.open_stream("POST", "/upload")
            s.send_data(b"u" * 60_000, end_stream=True)  # 65,008 + 60,000 > 65,535
            assert s.response_headers()[0] == 200 and s.read_all() == b"60000"
            gate.set()
            with pytest.raises(websocket.ConnectionClosed):
                ws.recv()
            ws.close()
            conn.ping()
            st = conn.statistics()
            assert st["streams_open"] == 0 and st["unacked_bytes"] == 0, st
            conn.close()
            srv.shutdown()

    greenrt.run(main)


def _observed(handler, conns: list):
    """A TCP connection handler serving HTTP/2 (prior knowledge) with ``handler``,
    each ServerConnection appended to ``conns`` for the test to look into (its
    streams and tunnels)."""
    from greenrt.protocols.http2.server import ServerConnection

    def handle(stream):
        with contextlib.closing(stream):
            conns.append(ServerConnection(stream, handler, http2.DEFAULT_H2_LIMITS, "http",
                                          None))
            conns[-1].run(b"")

    return handle


def _serve_observed(r, handler):
    conns: list = []
    srv, port = serve(r, _observed(handler, conns))
    return srv, port, conns


def _tunnel_buffered(conns) -> int:
    return sum(st.tunnel.buffered for c in conns for st in list(c.streams.values())
               if st.tunnel is not None)


def test_data_before_accept_is_buffered_up_to_one_stream_window():
    """The client streams 100 KiB into an extended CONNECT whose handler has not
    called ``accept()`` yet: exactly one stream window (65,535 bytes) is buffered in
    the tunnel, the client is flow-controlled for the rest (its stream window is 0,
    its upload blocked) while the connection window stays open; once accepted,
    every byte arrives in order, and nothing is left unacknowledged."""
    gate = greenrt.Event()
    payload = bytes(range(256)) * 400  # 102,400 bytes: more than a stream window

    def handler(req):
        ec = req.extensions["http2.connect"]
        gate.wait()  # not accepted yet
        tunnel = ec.accept()
        n, h = 0, hashlib.sha256()
        while b := tunnel.recv():
            n += len(b)
            h.update(b)
        tunnel.send_all(b"%d %s" % (n, h.hexdigest().encode()))
        tunnel.close()

    def main():
        with greenrt.region() as r:
            srv, port, sconns = _serve_observed(r, http2.extended_connect(handler))
            conn = http2.connect("127.0.0.1", port)
            s = conn.open_stream("CONNECT", "/", [("sec-websocket-version", "13")],
                                 protocol="websocket")
            sent = greenrt.Event()

            def upload():
                s.send_data(payload, end_stream=True)  # waits for window after 65,535
                sent.set()

            r.spawn(upload)
            while _tunnel_buffered(sconns) < 65535:
                greenrt.sleep(0.001)
            conn.ping()  # round trips: whatever the server would let in is in
            conn.ping()
            assert _tunnel_buffered(sconns) == 65535  # one stream window, no more
            assert not sent.is_set()
            assert conn.h2.local_flow_control_window(s.stream_id) == 0
            # the connection is not held: the tunnels owe less than half of it
            assert conn.statistics()["outbound_window"] > 65535 - CONNECTION_WINDOW // 2
            gate.set()
            assert s.response_headers()[0] == 200
            body = s.read_all()
            sent.wait()
            assert body == b"%d %s" % (len(payload), hashlib.sha256(payload).hexdigest().encode())
            conn.ping()
            st = conn.statistics()
            assert st["streams_open"] == 0 and st["unacked_bytes"] == 0, st
            assert st["outbound_window"] == 65535, st  # all of it back once the tunnel closed
            assert not any(c.streams for c in sconns)
            conn.close()
            srv.shutdown()

    greenrt.run(main)


def _overrun_the_stream_window(port: int) -> dict:
    """A peer that ignores flow control: a whole stream window of DATA into an
    extended CONNECT nobody has accepted, then 100 bytes more (a raw frame, past
    h2's checks). Returns the GOAWAY's error code."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                             header_encoding=None))
    c.initiate_connection()
    sock.sendall(c.data_to_send())
    out: dict = {}
    events: list = []
    while not any(isinstance(e, h2.events.RemoteSettingsChanged) for e in events):
        events += c.receive_data(sock.recv(65536))
    sock.sendall(c.data_to_send())
    sid = c.get_next_available_stream_id()
    c.send_headers(sid, [(b":method", b"CONNECT"), (b":protocol", b"websocket"),
                         (b":scheme", b"http"), (b":path", b"/"),
                         (b":authority", b"localhost"), (b"sec-websocket-version", b"13")])
    left = c.local_flow_control_window(sid)
    out["window"] = left
    while left:
        n = min(left, c.max_outbound_frame_size)
        c.send_data(sid, b"e" * n)
        left -= n
    c.ping(b"windowed")  # its ACK: the server has taken in the whole window
    sock.sendall(c.data_to_send())
    while not any(isinstance(e, h2.events.PingAckReceived) for e in events):
        events += c.receive_data(sock.recv(65536))
    extra = hyperframe.frame.DataFrame(sid, data=b"z" * 100)
    sock.sendall(c.data_to_send() + extra.serialize())
    while "goaway" not in out:
        data = sock.recv(65536)
        if not data:
            break
        try:
            evs = c.receive_data(data)
        except h2.exceptions.ProtocolError:
            break
        for e in evs:
            if isinstance(e, h2.events.ConnectionTerminated):
                out["goaway"] = int(e.error_code)
    sock.close()
    return out


def test_data_beyond_the_stream_window_before_accept_is_refused_not_buffered():
    """A peer that sends past the stream window of a tunnel nobody has accepted (or
    read) gets GOAWAY(FLOW_CONTROL_ERROR); the tunnel holds exactly the window, never
    the overrun."""
    accepted = []

    def handler(req):
        greenrt.sleep_forever()  # never accepts
        accepted.append(req.extensions["http2.connect"].accept())

    def main():
        with greenrt.region() as r:
            srv, port, sconns = _serve_observed(r, http2.extended_connect(handler))
            out = ThreadPeer(lambda: _overrun_the_stream_window(port)).join_green()
            held = _tunnel_buffered(sconns)
            srv.shutdown()
        return out, held

    out, held = greenrt.run(main)
    assert out == {"window": 65535, "goaway": 3}  # FLOW_CONTROL_ERROR
    assert held == 65535
    assert accepted == []


def _h2_pair():
    """An h2 client and server that have exchanged their prefaces and stream 1's
    request HEADERS (without END_STREAM: the stream is open both ways)."""
    cl = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                              header_encoding=None))
    sv = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False,
                                                              header_encoding=None))
    cl.initiate_connection()
    sv.initiate_connection()
    for _ in range(2):
        sv.receive_data(cl.data_to_send())
        cl.receive_data(sv.data_to_send())
    cl.send_headers(1, [(b":method", b"POST"), (b":path", b"/"), (b":scheme", b"http"),
                        (b":authority", b"x")])
    sv.receive_data(cl.data_to_send())
    sv.send_headers(1, [(b":status", b"200")])
    cl.receive_data(sv.data_to_send())
    return cl, sv


@pytest.mark.parametrize("side", ["client", "server"])
def test_the_tunnel_data_fast_path_writes_what_h2_writes(side):
    """``_connect.put_data`` (the tunnels' one-frame send) against ``h2.send_data``:
    the same bytes, the same windows after, on both sides; and it declines (nothing
    done) where h2 would do more or refuse: empty data, beyond a window or the frame
    size, a stream we ended. Fails if an h2 release changes what it relies on."""
    from greenrt.protocols.http2._connect import put_data

    ref, fast = _h2_pair(), _h2_pair()
    i = 0 if side == "client" else 1
    hr, hf, peer = ref[i], fast[i], fast[1 - i]
    for data in (b"a", b"\x82\x05hello" * 100, bytes(range(256)) * 64):  # up to 16 KiB
        hr.send_data(1, data)
        assert put_data(hf, 1, data)
        wire = hf.data_to_send()
        assert wire == hr.data_to_send()
        assert hf.local_flow_control_window(1) == hr.local_flow_control_window(1)
        assert hf.outbound_flow_control_window == hr.outbound_flow_control_window
        (ev,) = peer.receive_data(wire)  # and the peer's h2 reads it as DATA
        assert isinstance(ev, h2.events.DataReceived) and ev.data == data
    assert not put_data(hf, 1, b"")
    assert not put_data(hf, 1, b"x" * (hf.max_outbound_frame_size + 1))
    left = hf.local_flow_control_window(1)
    assert not put_data(hf, 1, b"x" * (left + 1))
    assert not put_data(hf, 3, b"x")  # no such stream
    hf.end_stream(1)
    assert not put_data(hf, 1, b"x")  # half-closed (local): h2 would refuse
    assert hf.local_flow_control_window(1) == left


def test_a_send_cut_short_resets_the_stream_instead_of_ending_it():
    """The server's send is cancelled mid-message (the client does not read, so it
    waits for window): the WebSocket is broken and its stream is reset (CANCEL),
    never ended cleanly after half a frame; the client sees 1006, the connection
    carries on with nothing left unacknowledged."""
    cut = greenrt.Event()
    outcome = []

    def handler(ws):
        with greenrt.move_on_after(0.2) as sc:  # the send blocks: the client reads nothing
            ws.send_bytes(b"x" * 300_000)
        outcome.append((sc.cancelled_caught, ws.closed, ws.close_code))
        cut.set()

    def main():
        with greenrt.region() as r:
            srv, port = _serve(r, websocket.http_handler(handler, compression=False))
            conn = http2.connect("127.0.0.1", port)
            ws = websocket.connect(f"ws://127.0.0.1:{port}/", http2=conn, compression=False)
            cut.wait()
            raw = ws._stream.stream  # the ClientStream under the tunnel
            with pytest.raises(http2.StreamReset) as ei:
                while raw.read():  # part of a frame, then the reset (not END_STREAM)
                    pass
            assert ei.value.error_code == http2.CANCEL
            with pytest.raises(websocket.ConnectionClosed) as ei:
                ws.recv()
            assert ei.value.close_code == 1006
            ws.close()
            conn.ping()
            st = conn.statistics()
            assert st["resets_received"] == 1, st
            assert st["streams_open"] == 0 and st["unacked_bytes"] == 0 and st["usable"], st
            conn.close()
            srv.shutdown()
        assert outcome == [(True, True, 1006)]

    greenrt.run(main)


def test_handler_failing_after_accepting_resets_instead_of_500():
    """A handler that raises after the 200 went out (the tunnel is streaming) gets
    RST_STREAM(INTERNAL_ERROR), not a second head."""

    def handler(req):
        req.extensions["http2.connect"].accept()
        raise RuntimeError("boom")

    def main():
        with greenrt.region() as r:
            srv, port = _serve(r, http2.extended_connect(handler))
            conn = http2.connect("127.0.0.1", port)
            s = conn.open_stream("CONNECT", "/", [("sec-websocket-version", "13")],
                                 protocol="websocket")
            assert s.response_headers()[0] == 200
            with pytest.raises(http2.StreamReset) as ei:
                s.read()
            assert ei.value.error_code == 2  # INTERNAL_ERROR
            assert conn.is_usable
            conn.close()
            srv.shutdown()

    greenrt.run(main)


# -- under the lab: cancellation over the HTTP/2 path -------------------------------------

_LAB_PORT = 8441


def _lab_server(r, server_conns):
    import greenrt.lab as lab
    from greenrt import net

    rng = lab.rng()

    def echo(ws):
        for m in ws:
            greenrt.sleep(rng.choice([0, 0, 0.0001, 0.0005]))  # replies straddle the cuts
            ws.send(m)

    handle = _observed(websocket.http_handler(echo), server_conns)
    servers = []
    r.spawn(lambda: net.serve_tcp(handle, "127.0.0.1", _LAB_PORT, on_ready=servers.append))
    while not servers:
        greenrt.sleep(0.0001)
    return servers[0]


def _settled(conn, server_conns) -> dict:
    """After a PING round trip and a moment: what is left open or unacknowledged."""
    conn.ping()
    greenrt.sleep(0.05)
    st = conn.statistics()
    return {"client_streams": st["streams_open"], "unacked": st["unacked_bytes"],
            "buffered": st["buffered_bytes"],
            "server_streams": sum(len(c.streams) for c in server_conns),
            "server_tunnels_buffered": sum(s.tunnel.buffered for c in server_conns
                                           for s in c.streams.values() if s.tunnel)}


_CLEAN = {"client_streams": 0, "unacked": 0, "buffered": 0, "server_streams": 0,
          "server_tunnels_buffered": 0}


def _lab_echo_program(messages: int, k_max: int) -> dict:
    tally = {"cancelled": 0, "received": []}
    server_conns: list = []
    with greenrt.region() as r:
        srv = _lab_server(r, server_conns)
        conn = http2.connect("127.0.0.1", _LAB_PORT)
        ws = websocket.connect(f"ws://127.0.0.1:{_LAB_PORT}/", http2=conn, compression=False)

        def sender():
            for i in range(messages):
                ws.send_text(f"message {i} " + "x" * (i * 9973 % 200_000))

        r.spawn(sender)
        recv_under_growing_quotas(ws, messages, k_max, tally)
        ws.close()
        tally["close_code"] = ws.close_code
        tally["left"] = _settled(conn, server_conns)
        conn.close()
        srv.shutdown()
    return tally


@pytest.mark.parametrize("seed", [1, 2])
def test_lab_cancelled_recv_over_h2_loses_no_message(seed):
    import greenrt.lab as lab

    res = lab.run(_lab_echo_program, 30, 6, seed=seed, strict=False)
    res.check()
    out = res.value
    assert out["received"] == [str(i) for i in range(30)]
    assert out["cancelled"] > 0
    assert out["close_code"] == 1000
    assert out["left"] == _CLEAN


def _lab_exchange_program(k_max: int) -> dict:
    outcomes = {"completed": 0, "cut": 0, "open_after": 0, "left": []}
    server_conns: list = []
    with greenrt.region() as r:
        srv = _lab_server(r, server_conns)
        conn = http2.connect("127.0.0.1", _LAB_PORT)
        for k in range(1, k_max + 1):
            ping_under_quota(
                lambda: websocket.connect(f"ws://127.0.0.1:{_LAB_PORT}/", http2=conn), k, outcomes)
            left = _settled(conn, server_conns)
            if left != _CLEAN:
                outcomes["left"].append((k, left))
        # the connection still carries a WebSocket after every cut
        ws = websocket.connect(f"ws://127.0.0.1:{_LAB_PORT}/", http2=conn)
        ws.send_text("after")
        outcomes["after"] = ws.recv()
        ws.close()
        conn.close()
        srv.shutdown()
    return outcomes


@pytest.mark.parametrize("seed", [1, 2])
def test_lab_cancellation_at_every_checkpoint_over_h2_leaks_nothing(seed):
    import greenrt.lab as lab

    res = lab.run(_lab_exchange_program, 40, seed=seed, strict=False)
    res.check()
    out = res.value
    assert out["cut"] > 0 and out["completed"] > 0
    assert out["open_after"] == 0
    assert out["left"] == []
    assert out["after"] == "after"


def test_lab_run_over_h2_is_deterministic():
    import greenrt.lab as lab

    assert lab.check_determinism(_lab_echo_program, 8, 4, seed=5, strict=False) is None
