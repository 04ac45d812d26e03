"""The upgrade hook (``Request.upgrade``): a handler answers 101 and takes the raw
stream over, with the bytes already read past the request head; WebSockets on the
same port as HTTP (``websocket.http_handler`` / ``accept_request``) and from a WSGI
application (``websocket.accept_wsgi``), tested with the ``websockets`` library."""

from __future__ import annotations

import socket
import time

from websockets.sync.client import connect as wsl_connect

import greenrt
from greenrt.protocols import websocket
from greenrt.protocols.http import Limits, LocalProtocolError, Response, WSGIAdapter


def echo_protocol(req):
    """A tiny line protocol after ``Upgrade: echo``: each line comes back upper-cased
    until ``bye``."""
    if req.headers.get("upgrade") != "echo":
        return Response(200, body=b"plain http")
    stream, leftover = req.upgrade([("Upgrade", "echo"), ("Connection", "upgrade")])
    buf = leftover
    while True:
        while b"\n" not in buf:
            data = stream.recv(4096)
            if not data:
                return None
            buf += data
        line, buf = buf.split(b"\n", 1)
        if line == b"bye":
            stream.send_all(b"BYE\n")
            return None
        greenrt.sleep(0.05)  # the session outlives request_timeout below
        stream.send_all(line.upper() + b"\n")


def _read_until(s: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = s.recv(4096)
        assert chunk, f"closed before {marker!r}: {data!r}"
        data += chunk
    return data


def test_upgrade_hands_over_the_stream_and_the_bytes_read_past_the_head(http_server):
    srv = http_server(echo_protocol, Limits(request_timeout=0.1))
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        # the first protocol bytes travel in the same segment as the request head
        s.sendall(b"GET /e HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: upgrade\r\n\r\n"
                  b"one\ntwo\n")
        got = _read_until(s, b"TWO\n")
        head, _, rest = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
        assert b"upgrade: echo" in head.lower()
        assert rest.startswith(b"ONE\n")
        for word in (b"three", b"four", b"five"):  # well past request_timeout (0.1 s)
            s.sendall(word + b"\n")
            assert _read_until(s, b"\n") == word.upper() + b"\n"
        s.sendall(b"bye\n")
        assert _read_until(s, b"BYE\n") == b"BYE\n"
        assert s.recv(10) == b""  # the server closed the stream after the handler
    assert any(k == "http1.upgrade" for k, _ in srv.events)
    # and the same port still answers plain HTTP
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert _read_until(s, b"plain http").startswith(b"HTTP/1.1 200")


def test_upgrade_without_an_upgrade_header_is_refused(http_server):
    errors = []

    def handler(req):
        assert not req.can_upgrade
        try:
            req.upgrade([])
        except LocalProtocolError as e:
            errors.append(str(e))
        return Response(200, body=b"ok")

    srv = http_server(handler)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert _read_until(s, b"ok").startswith(b"HTTP/1.1 200")
    assert errors == ["the request has no Upgrade header"]


def _ws_echo(ws):
    for m in ws:
        ws.send(m)


def test_websockets_on_the_same_port_as_http(http_server):
    handler = websocket.http_handler(_ws_echo, fallback=lambda req: Response(200, body=b"http"))
    srv = http_server(handler)
    for compression in ("deflate", None):
        with wsl_connect(f"ws://127.0.0.1:{srv.port}/chat", compression=compression,
                         open_timeout=10) as ws:
            for m in ("hello", b"\x00\x01binary", "x" * 70000):
                ws.send(m)
                assert ws.recv(timeout=10) == m
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert _read_until(s, b"http").startswith(b"HTTP/1.1 200")


def test_a_refused_websocket_handshake_is_an_http_answer(http_server):
    srv = http_server(websocket.http_handler(_ws_echo))
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n"
                  b"Connection: close\r\n\r\n")
        data = _read_until(s, b"\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 426") and b"sec-websocket-version: 13" in data.lower()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")  # not an upgrade
        assert _read_until(s, b"\r\n\r\n").startswith(b"HTTP/1.1 426")


def test_a_wsgi_application_accepts_a_websocket():
    import flask  # installed by the test extra: missing must fail, not skip
    app = flask.Flask("wsapp")

    @app.route("/ws", websocket=True)  # werkzeug routes upgrade requests only to these
    def ws_view():
        with websocket.accept_wsgi(flask.request.environ) as ws:
            for m in ws:
                ws.send(m[::-1])
        return ""

    @app.route("/")
    def index():
        return "index"

    from ..http1.conftest import ServerThread

    st = ServerThread(WSGIAdapter(app), Limits()).start()
    try:
        with wsl_connect(f"ws://127.0.0.1:{st.port}/ws", open_timeout=10) as ws:
            ws.send("abc")
            assert ws.recv(timeout=10) == "cba"
        with socket.create_connection(("127.0.0.1", st.port), timeout=10) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert _read_until(s, b"index").startswith(b"HTTP/1.1 200")
    finally:
        time.sleep(0.05)
        st.stop()
