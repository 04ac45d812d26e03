"""The HTTP/2 client (low level) against our server over real loopback sockets:
multiplexing, streaming both ways, trailers, cancellation and window accounting."""

from __future__ import annotations

import greenrt
from greenrt.protocols import http2
from greenrt.protocols.http.model import Response, StreamingResponse

CHUNK = 16384


def handler(req):
    if req.path == "/big":
        n = int(req.query or "64")
        return StreamingResponse(200, [("content-type", "application/octet-stream")],
                                 (b"x" * CHUNK for _ in range(n)))
    if req.path == "/stream-echo":
        return StreamingResponse(200, [("x-echo", "1")], iter(req.body))
    body = req.body.read_all()
    return Response(200, [("content-type", "text/plain"), ("x-method", req.method)],
                    b"echo:" + body + b":" + req.path.encode())


def run(fn):
    return greenrt.run(fn)


def test_request_response_roundtrip(h2_server):
    srv = h2_server(handler)

    def main():
        with http2.connect("127.0.0.1", srv.port) as conn:
            s = conn.open_stream("POST", "/p", [("content-type", "text/plain")])
            s.send_data(b"hello ")
            s.send_data(b"world", end_stream=True)
            status, headers = s.response_headers()
            assert status == 200
            assert headers.get("x-method") == "POST"
            assert s.read_all() == b"echo:hello world:/p"
            assert s.trailers() is None
            return conn.statistics()

    stats = run(main)
    assert stats["streams_completed"] == 1 and stats["unacked_bytes"] == 0


def test_many_streams_multiplexed_on_one_connection(h2_server):
    srv = h2_server(handler)

    def main():
        conn = http2.connect("127.0.0.1", srv.port)
        got = {}

        def one(i):
            s = conn.open_stream("GET", f"/big?{8 + i}", end_stream=True)
            assert s.response_headers()[0] == 200
            got[i] = len(s.read_all())

        with greenrt.region() as r:
            for i in range(10):
                r.spawn(one, i)
        st = conn.statistics()
        conn.close()
        return got, st

    got, st = run(main)
    assert got == {i: (8 + i) * CHUNK for i in range(10)}
    assert st["streams_opened"] == 10 and st["streams_completed"] == 10
    assert st["unacked_bytes"] == 0 and st["buffered_bytes"] == 0
    assert len(srv.conns) <= 1  # one connection (the server records it when it ends)


def test_streaming_upload_and_download_interleaved(h2_server):
    """The server echoes the body as it arrives: we read each echo before sending the
    next part, which only works if both directions stream."""
    srv = h2_server(handler)

    def main():
        with http2.connect("127.0.0.1", srv.port) as conn:
            s = conn.open_stream("POST", "/stream-echo")
            assert True
            s.send_data(b"a" * 1000)
            status, headers = s.response_headers()
            assert status == 200 and headers.get("x-echo") == "1"
            got = b""
            while len(got) < 1000:
                got += s.read()
            for part in (b"b" * 100_000, b"c" * 10):
                s.send_data(part)
                want = len(got) + len(part)
                while len(got) < want:
                    got += s.read()
            s.end()
            assert s.read() == b""
            return got

    assert run(main) == b"a" * 1000 + b"b" * 100_000 + b"c" * 10


def test_cancelled_download_leaves_connection_and_window_intact(h2_server):
    """One stream is cancelled mid-download; another on the same connection completes;
    every received byte's connection window was returned; the connection is reused."""
    srv = h2_server(handler)

    def main():
        conn = http2.connect("127.0.0.1", srv.port)
        first = greenrt.Event()

        def victim():
            s = conn.open_stream("GET", "/big?1000", end_stream=True)
            s.response_headers()
            s.read()
            first.set()
            while s.read():
                pass

        def other():
            s = conn.open_stream("GET", "/big?40", end_stream=True)
            s.response_headers()
            return len(s.read_all())

        with greenrt.region() as r:
            v = r.spawn(victim)
            o = r.spawn(other)
            first.wait()
            v.cancel()
        assert o.join() == 40 * CHUNK
        stats = conn.statistics()
        # the connection still works
        s = conn.open_stream("GET", "/after", end_stream=True)
        assert s.read_all() == b"echo::/after"
        conn.close()
        return stats

    stats = run(main)
    assert stats["resets_sent"] == 1
    assert stats["unacked_bytes"] == 0
    assert stats["streams_open"] == 0


def _tunnel_handler(req):
    """RFC 8441 extended CONNECT: upper-cases what the tunnel carries until the
    client ends its side, then ends ours."""
    ext = req.extensions.get("http2.connect")
    if ext is None:
        return handler(req)
    t = ext.accept([("x-protocol", ext.protocol)])
    while True:
        data = t.recv()
        if not data:
            break
        t.send_all(data.upper())
    t.close()
    return None


def test_open_stream_with_protocol_is_an_extended_connect(h2_server):
    srv = h2_server(http2.extended_connect(_tunnel_handler))

    def main():
        with http2.connect("127.0.0.1", srv.port) as conn:
            assert conn.server_settings()["enable_connect_protocol"] == 1
            s = conn.open_stream("CONNECT", "/t", protocol="x-upper")
            status, headers = s.response_headers()
            assert (status, headers.get("x-protocol")) == (200, "x-upper")
            for part in (b"abc", b"def" * 30000):  # the second needs window updates
                s.send_data(part)
                got = b""
                while len(got) < len(part):
                    got += s.read()
                assert got == part.upper()
            s.end()
            assert s.read() == b""  # the server ended its side after ours
            # a plain request still works on the connection
            g = conn.open_stream("GET", "/x", end_stream=True)
            assert g.response_headers()[0] == 200 and g.read_all() == b"echo::/x"
            conn.ping()
            return conn.statistics()

    st = run(main)
    assert st["streams_completed"] == 2 and st["streams_open"] == 0
    assert st["unacked_bytes"] == 0


def test_discard_response_returns_the_window(h2_server):
    """Half a download read, the rest discarded: the buffered bytes' window goes back
    at once, later DATA is acknowledged on arrival, the server finishes (so the
    stream completes, counted once) and nothing is left unacknowledged."""
    srv = h2_server(handler)

    def main():
        with http2.connect("127.0.0.1", srv.port) as conn:
            s = conn.open_stream("GET", "/big?12", end_stream=True)  # 192 KiB > window
            assert s.response_headers()[0] == 200
            assert len(s.read(100)) == 100
            conn.ping()  # let the server fill the stream window
            before = conn.statistics()
            assert before["buffered_bytes"] > 0 and before["unacked_bytes"] > 0
            returned = s.discard_response()
            assert returned >= before["buffered_bytes"]
            assert s.trailers() is None  # waits for the end: the server could finish
            assert s.discard_response() == 0  # again, on the finished stream: a no-op
            s.close()
            conn.ping()
            after = conn.statistics()
            g = conn.open_stream("GET", "/x", end_stream=True)
            assert g.response_headers()[0] == 200 and g.read_all() == b"echo::/x"
            return after

    st = run(main)
    assert st["unacked_bytes"] == 0 and st["buffered_bytes"] == 0 and st["streams_open"] == 0
    assert st["streams_completed"] == 1  # END_STREAM and discard: counted once
    assert st["bytes_received"] > 12 * CHUNK
