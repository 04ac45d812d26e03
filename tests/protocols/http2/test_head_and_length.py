"""A complete ``Response`` over HTTP/2 gets a ``content-length`` when the handler
gave none (the model promises "Content-Length is added by the server when
absent"), and an answer to HEAD, 204 or 304 carries no content (RFC 9110 6.4.1,
9.3.2): HEADERS with END_STREAM and no DATA frame, the HEAD answer announcing the
length the GET would have had. Our server on a real socket, read by an independent
h2 client so every frame is seen."""

from __future__ import annotations

import socket

import h2.config
import h2.connection
import h2.events
import pytest

import greenrt
from greenrt.protocols import http
from greenrt.protocols.http.model import Response, StreamingResponse

pytestmark = pytest.mark.timeout(60)

_closed: list[str] = []


class _Chunks:
    def __iter__(self):
        yield b"never sent to HEAD"

    def close(self):
        _closed.append("closed")


def _app(req):
    if req.path == "/stream":
        return StreamingResponse(200, [("content-type", "text/plain")], _Chunks())
    if req.path == "/204":
        return Response(204)
    if req.path == "/own":
        return Response(200, [("content-length", "5")], b"hello")
    return Response(200, [("content-type", "text/plain")], b"hello")


def _exchange(port: int, requests: list[tuple[str, str]]) -> dict[str, dict]:
    """Each request on its own stream; per path: headers, DATA bytes, DATA frames."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(10)
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    by_id: dict[int, dict] = {}
    for method, path in requests:
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, [(":method", method), (":path", path), (":scheme", "http"),
                             (":authority", "localhost")], end_stream=True)
        by_id[sid] = {"key": f"{method} {path}", "headers": None, "data": b"",
                      "frames": 0, "ended": False}
    sock.sendall(c.data_to_send())
    while not all(v["ended"] for v in by_id.values()):
        data = sock.recv(65536)
        assert data, "server closed the connection"
        for ev in c.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                by_id[ev.stream_id]["headers"] = dict(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                by_id[ev.stream_id]["data"] += ev.data
                by_id[ev.stream_id]["frames"] += 1
                c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                by_id[ev.stream_id]["ended"] = True
        sock.sendall(c.data_to_send())
    sock.close()
    return {v["key"]: v for v in by_id.values()}


def _serve_and(requests):
    def main():
        with greenrt.region() as r:
            servers = []
            r.spawn(lambda: http.serve(_app, "127.0.0.1", 0, on_ready=servers.append))
            while not servers:
                greenrt.sleep(0)
            port = servers[0].addresses[0][1]
            try:
                return greenrt.to_thread(_exchange, port, requests)
            finally:
                servers[0].shutdown()
    return greenrt.run(main)


def test_a_whole_response_announces_its_length_and_head_sends_no_content():
    _closed.clear()
    got = _serve_and([("GET", "/"), ("HEAD", "/"), ("HEAD", "/stream"), ("GET", "/204"),
                      ("GET", "/own"), ("HEAD", "/own")])
    get = got["GET /"]
    assert get["headers"][b"content-length"] == b"5" and get["data"] == b"hello"
    head = got["HEAD /"]
    assert head["headers"][b":status"] == b"200"
    assert head["headers"][b"content-length"] == b"5"  # what the GET would have had
    assert head["frames"] == 0 and head["data"] == b""
    stream = got["HEAD /stream"]
    assert stream["frames"] == 0 and b"content-length" not in stream["headers"]
    assert _closed == ["closed"]  # the streaming body was closed, not iterated
    nc = got["GET /204"]
    assert nc["frames"] == 0 and b"content-length" not in nc["headers"]
    # the handler's own content-length is kept, not doubled
    assert got["GET /own"]["data"] == b"hello"
    assert got["HEAD /own"]["frames"] == 0
