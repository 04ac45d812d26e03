"""Request trailers reach handlers (``request.trailers``, WSGI's
``environ["greenrt.trailers"]``): HTTP/1.1 chunked trailer sections sent by h11 as a
client over a real socket, HTTP/2 trailing HEADERS sent by our HTTP/2 client and by
raw h2 frames; limits (too many / too large → 431 or a connection error), a
pseudo-header or a missing END_STREAM in trailers → RST_STREAM(PROTOCOL_ERROR), and
forbidden trailer fields dropped."""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import subprocess
import threading
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h11
import hyperframe.frame as hf
import pytest

import greenrt
from greenrt.protocols import http2
from greenrt.protocols.http import Limits, Response, WSGIAdapter
from greenrt.protocols.http1.client import Client
from greenrt.protocols.http2 import H2Limits

from ..http1.conftest import read_until_close


def trailers_handler(req):
    before = req.trailers
    body = req.body.read_all()
    after = req.trailers
    return Response(200, [("content-type", "application/json")], json.dumps({
        "before": None if before is None else list(before),
        "body": body.decode(),
        "trailers": None if after is None else list(after),
        "version": req.http_version,
    }).encode())


def _h11_post(port: int, body_parts, trailers, *, extra_headers=()) -> tuple[int, bytes]:
    """POST a chunked body with a trailer section, h11 as the client, over a socket."""
    c = h11.Connection(h11.CLIENT)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        out = c.send(h11.Request(method="POST", target="/t", headers=[
            ("Host", "x"), ("Transfer-Encoding", "chunked"), *extra_headers]))
        for p in body_parts:
            out += c.send(h11.Data(data=p))
        out += c.send(h11.EndOfMessage(headers=trailers))
        s.sendall(out)
        status, body = None, b""
        while True:
            ev = c.next_event()
            if ev is h11.NEED_DATA:
                c.receive_data(s.recv(65536))
                continue
            if type(ev) is h11.Response:
                status = ev.status_code
            elif type(ev) is h11.Data:
                body += ev.data
            elif type(ev) in (h11.EndOfMessage, h11.ConnectionClosed):
                return status, body


def test_http1_chunked_trailers_reach_the_handler_after_the_body(http_server):
    srv = http_server(trailers_handler)
    status, body = _h11_post(srv.port, [b"hello ", b"world"],
                             [("X-Checksum", "abc123"), ("X-Count", "2"), ("X-Count", "3")])
    assert status == 200
    got = json.loads(body)
    assert got == {"before": None, "body": "hello world", "version": "1.1",
                   "trailers": [["x-checksum", "abc123"], ["x-count", "2"], ["x-count", "3"]]}


def test_http1_without_trailers_gives_empty_headers_and_fixed_length_too(http_server):
    srv = http_server(trailers_handler)
    status, body = _h11_post(srv.port, [b"abc"], [])
    assert status == 200 and json.loads(body)["trailers"] == []
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    got = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert got["before"] is None and got["trailers"] == [] and got["body"] == "abc"


def test_http1_forbidden_trailer_fields_are_dropped(http_server):
    srv = http_server(trailers_handler)
    status, body = _h11_post(srv.port, [b"x"], [
        ("Content-Length", "999"), ("Host", "evil.example"), ("Transfer-Encoding", "chunked"),
        ("Authorization", "Bearer nope"), ("X-Kept", "yes"), ("Content-Type", "text/evil")])
    assert status == 200
    assert json.loads(body)["trailers"] == [["x-kept", "yes"]]
    assert any(k == "http1.trailer_dropped" and "host" in d["fields"] for k, d in srv.events)


@pytest.mark.parametrize("case", ["too_many", "too_large"])
def test_http1_trailer_limits_answer_431(http_server, case):
    srv = http_server(trailers_handler, Limits(max_headers=4, max_chunk_line=256))
    if case == "too_many":
        trailers = [(f"X-T{i}", "1") for i in range(5)]
        code = "too_many_trailers"
    else:
        trailers = [("X-Big", "v" * 400)]
        code = "trailers_too_large"
    status, body = _h11_post(srv.port, [b"x"], trailers)
    assert status == 431
    assert srv.wait_for_code(code)


def test_http1_limits_allow_exactly_the_maximum(http_server):
    srv = http_server(trailers_handler, Limits(max_headers=4, max_chunk_line=256))
    status, body = _h11_post(srv.port, [b"x"], [(f"X-T{i}", "1") for i in range(4)])
    assert status == 200 and len(json.loads(body)["trailers"]) == 4


# -- HTTP/2 -----------------------------------------------------------------------------

def _h2_client_post(port: int, trailers) -> tuple[int, dict]:
    out = {}

    def main():
        conn = http2.connect("127.0.0.1", port)
        try:
            s = conn.open_stream("POST", "/t", [("content-type", "text/plain")])
            s.send_data(b"part 1, ")
            s.send_data(b"part 2")
            s.send_trailers(trailers)
            status, _ = s.response_headers()
            out["status"] = status
            out["body"] = json.loads(s.read_all())
        finally:
            conn.close()

    greenrt.run(main)
    return out["status"], out["body"]


def test_http2_trailing_headers_reach_the_handler(http_server):
    srv = http_server(trailers_handler)
    status, got = _h2_client_post(srv.port, [("x-sum", "42"), ("grpc-thing", "v")])
    assert status == 200
    assert got == {"before": None, "body": "part 1, part 2", "version": "2",
                   "trailers": [["x-sum", "42"], ["grpc-thing", "v"]]}


def test_http2_forbidden_trailer_fields_are_dropped(http_server):
    srv = http_server(trailers_handler)
    status, got = _h2_client_post(srv.port, [("content-length", "7"), ("x-ok", "1"),
                                             ("authorization", "x")])
    assert status == 200 and got["trailers"] == [["x-ok", "1"]]


def _raw_h2(port: int, build, *, until=lambda evs: False):
    """Drive ``build(conn)`` (h2 client connection, frames queued) at the server;
    return the h2 events received until ``until(events)`` or the connection ends."""
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                            header_encoding=None))
    c.initiate_connection()
    events: list = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        build(c)
        s.sendall(c.data_to_send())
        while not until(events):
            try:
                data = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            events.extend(c.receive_data(data))
            s.sendall(c.data_to_send())
    return events


_REQ = [(b":method", b"POST"), (b":path", b"/t"), (b":scheme", b"http"),
        (b":authority", b"x")]


def _ended(sid):
    return lambda evs: any(type(e) in (h2.events.StreamEnded, h2.events.StreamReset)
                           and e.stream_id == sid for e in evs)


def _body_of(evs, sid):
    return b"".join(e.data for e in evs if type(e) is h2.events.DataReceived and e.stream_id == sid)


def _raw_trailers(port: int, block: bytes, *, end_stream: bool = True) -> list:
    """Stream 1: a POST with a body, then a trailing HEADERS frame carrying the raw
    HPACK ``block``; stream 3: a healthy request next to it. The h2 events until
    both streams are done (or the connection ends)."""
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                            header_encoding=None))
    c.initiate_connection()
    c.send_headers(1, _REQ)
    c.send_data(1, b"abc")
    wire = c.data_to_send()
    tf = hf.HeadersFrame(1)
    tf.flags.add("END_HEADERS")
    if end_stream:
        tf.flags.add("END_STREAM")
    tf.data = block  # h2 would refuse to send these: built by hand
    wire += tf.serialize()
    c.send_headers(3, _REQ, end_stream=True)
    wire += c.data_to_send()
    events: list = []

    def done() -> bool:
        return _ended(3)(events) and any(type(e) is h2.events.StreamReset and e.stream_id == 1
                                         for e in events)

    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(wire)
        while not done():
            data = s.recv(65536)
            if not data:
                break
            events.extend(c.receive_data(data))
            s.sendall(c.data_to_send())
    return events


@pytest.mark.parametrize("case", ["pseudo_header", "no_end_stream"])
def test_http2_malformed_trailers_are_a_stream_error(http_server, case):
    calls = []

    def handler(req):
        calls.append(req.target)
        return trailers_handler(req)

    srv = http_server(handler)
    # literal fields without indexing: the HPACK dynamic table does not change
    if case == "pseudo_header":
        events = _raw_trailers(srv.port, _literal(b":path", b"/x") + _literal(b"x-a", b"1"))
    else:
        events = _raw_trailers(srv.port, _literal(b"x-a", b"1"), end_stream=False)
    resets = [(e.stream_id, e.error_code) for e in events if type(e) is h2.events.StreamReset]
    assert resets == [(1, h2.errors.ErrorCodes.PROTOCOL_ERROR)]
    assert json.loads(_body_of(events, 3))["trailers"] == []  # the other stream is served
    assert not any(type(e) is h2.events.ConnectionTerminated for e in events)


def test_http2_trailers_count_against_the_header_list_limit(http_server):
    """A trailer block is one field block, bounded like the head by
    ``max_header_list_size`` (32 bytes per entry, the HPACK decoder): over it, the
    connection ends with GOAWAY(ENHANCE_YOUR_CALM), as for an oversized head (the
    HPACK state cannot be kept in step after an abandoned block); just under it, the
    trailers are served."""
    starts = []

    def handler(req):
        starts.append(req.target)
        return trailers_handler(req)

    srv = http_server(handler, h2_limits=H2Limits(max_header_list_size=1024))
    fields = [(b"x-t%02d" % i, b"v" * 40) for i in range(12)]  # 12 * (5 + 40 + 32) = 924
    ok = _raw_h2(srv.port, lambda c: (c.send_headers(1, _REQ), c.send_data(1, b"abc"),
                                      c.send_headers(1, fields, end_stream=True)),
                 until=_ended(1))
    got = json.loads(_body_of(ok, 1))
    assert len(got["trailers"]) == 12
    big = fields + [(b"x-more", b"v" * 100)]
    events = _raw_trailers(srv.port, b"".join(_literal(k, v) for k, v in big))
    ends = [e for e in events if type(e) is h2.events.ConnectionTerminated]
    assert [e.error_code for e in ends] == [h2.errors.ErrorCodes.ENHANCE_YOUR_CALM]
    assert not any(type(e) is h2.events.DataReceived and e.stream_id == 1 for e in events)


def _literal(name: bytes, value: bytes) -> bytes:
    """An HPACK literal header field without indexing, new name (RFC 7541 §6.2.2),
    short strings only (no Huffman)."""
    assert len(name) < 127 and len(value) < 127
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


# -- WSGI ---------------------------------------------------------------------------------

def _wsgi_app(environ, start_response):
    before = environ["greenrt.trailers"]
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"before": before, "body": body.decode(),
                        "trailers": environ["greenrt.trailers"],
                        "protocol": environ["SERVER_PROTOCOL"]}).encode()]


def _wsgi_lines_app(environ, start_response):
    lines = list(environ["wsgi.input"])  # iteration reaches the end too
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"lines": len(lines), "trailers": environ["greenrt.trailers"]}).encode()]


def test_wsgi_sees_http1_trailers(http_server):
    srv = http_server(WSGIAdapter(_wsgi_app))
    status, body = _h11_post(srv.port, [b"a", b"b"], [("X-Digest", "sha-256=abc")])
    assert status == 200
    assert json.loads(body) == {"before": None, "body": "ab", "protocol": "HTTP/1.1",
                                "trailers": [["x-digest", "sha-256=abc"]]}
    srv2 = http_server(WSGIAdapter(_wsgi_lines_app))
    status, body = _h11_post(srv2.port, [b"1\n2\n", b"3"], [("X-N", "3")])
    assert json.loads(body) == {"lines": 3, "trailers": [["x-n", "3"]]}


def test_wsgi_sees_http2_trailers(http_server):
    srv = http_server(WSGIAdapter(_wsgi_app))
    status, got = _h2_client_post(srv.port, [("x-sum", "7")])
    assert status == 200
    assert got == {"before": None, "body": "part 1, part 2", "protocol": "HTTP/2",
                   "trailers": [["x-sum", "7"]]}


# -- the HTTP/1.1 client's response trailers (same vocabulary) ---------------------------------

class _ChunkedTrailers(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Trailer", "X-Sum")
        self.end_headers()
        self.wfile.write(b"3\r\nabc\r\n0\r\nX-Sum: 6\r\n\r\n")

    def log_message(self, *args):
        pass


def test_http1_client_response_trailers():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ChunkedTrailers)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    got = {}

    def main():
        with Client() as c:
            with c.request("GET", f"http://127.0.0.1:{httpd.server_address[1]}/",
                           stream=True) as r:
                got["before"] = r.body.trailers
                got["body"] = r.body.read_all()
                got["after"] = list(r.body.trailers)

    try:
        greenrt.run(main)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert got == {"before": None, "body": b"abc", "after": [("x-sum", "6")]}


def test_nghttp_sends_http2_trailers(http_server, tmp_path):
    """nghttp (a real HTTP/2 client) posting a file with ``--trailer``."""
    srv = http_server(trailers_handler)
    f = tmp_path / "body"
    f.write_bytes(b"from nghttp")
    exe = shutil.which("nghttp")
    assert exe, "nghttp is installed by scripts/setup.sh"
    out = subprocess.run([exe, "-d", str(f), "--trailer", "x-sum: 9", "--trailer", "x-two: 2",
                          f"http://127.0.0.1:{srv.port}/t"], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr.decode()
    got = json.loads(out.stdout)
    assert got == {"before": None, "body": "from nghttp", "version": "2",
                   "trailers": [["x-sum", "9"], ["x-two", "2"]]}


# -- response trailers over HTTP/1.1 (finish(trailers=)) -------------------------------------

def streamed_with_trailers(req):
    w = req.writer
    w.start(200, [("content-type", "text/plain")])
    w.write(b"abc")
    w.write(b"def")
    w.finish(trailers=[("x-checksum", "sha256-1"), ("content-length", "99"),
                       ("x-count", "2")])


def _raw_exchange(port: int, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head)
        out = b""
        while not out.endswith(b"\r\n\r\n") or b"\r\n0\r\n" not in out:
            data = s.recv(65536)
            if not data:
                break
            out += data
        return out


def test_http1_response_trailers_sent_when_the_client_accepts_them(http_server):
    srv = http_server(streamed_with_trailers)
    raw = _raw_exchange(srv.port, b"GET / HTTP/1.1\r\nHost: x\r\nTE: gzip, trailers\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"\r\nTransfer-Encoding: chunked" in head
    # the trailer section after the last chunk; content-length may not be a trailer
    assert body == b"3\r\nabc\r\n3\r\ndef\r\n0\r\nx-checksum: sha256-1\r\nx-count: 2\r\n\r\n"
    dropped = [d for k, d in srv.events if k == "http1.trailers_dropped"]
    assert dropped == [{"reason": "forbidden trailer field", "fields": ["content-length"]}]


def test_http1_response_trailers_read_by_h11_and_our_client(http_server):
    srv = http_server(streamed_with_trailers)
    c = h11.Connection(h11.CLIENT)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(c.send(h11.Request(method="GET", target="/", headers=[
            ("Host", "x"), ("TE", "trailers")])) + c.send(h11.EndOfMessage()))
        body, trailers = b"", None
        while trailers is None:
            ev = c.next_event()
            if ev is h11.NEED_DATA:
                c.receive_data(s.recv(65536))
            elif type(ev) is h11.Data:
                body += ev.data
            elif type(ev) is h11.EndOfMessage:
                trailers = list(ev.headers)
    assert body == b"abcdef"
    assert trailers == [(b"x-checksum", b"sha256-1"), (b"x-count", b"2")]
    got = {}

    def main():
        with Client() as cl:
            with cl.request("GET", f"http://127.0.0.1:{srv.port}/", headers=[("TE", "trailers")],
                            stream=True) as r:
                got["body"] = r.body.read_all()
                got["trailers"] = list(r.body.trailers)

    greenrt.run(main)
    assert got == {"body": b"abcdef", "trailers": [("x-checksum", "sha256-1"), ("x-count", "2")]}


def test_http1_response_trailers_with_curl(http_server):
    srv = http_server(streamed_with_trailers)
    exe = shutil.which("curl")
    assert exe, "curl is installed by scripts/setup.sh"
    out = subprocess.run([exe, "-s", "--raw", "-H", "TE: trailers",
                          f"http://127.0.0.1:{srv.port}/"], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout == b"3\r\nabc\r\n3\r\ndef\r\n0\r\nx-checksum: sha256-1\r\nx-count: 2\r\n\r\n"


@pytest.mark.parametrize("case", ["no_te", "te_other", "length", "http10", "head"])
def test_http1_response_trailers_dropped_when_they_cannot_be_sent(http_server, case):
    def handler(req):
        w = req.writer
        w.start(200, [("content-type", "text/plain")],
                content_length=6 if case == "length" else None)
        w.write(b"abcdef")
        w.finish(trailers=[("x-checksum", "sha256-1")])

    srv = http_server(handler)
    head = {"no_te": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            "te_other": b"GET / HTTP/1.1\r\nHost: x\r\nTE: gzip;q=0.5\r\n\r\n",
            "length": b"GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n",
            "http10": b"GET / HTTP/1.0\r\nTE: trailers\r\n\r\n",
            "head": b"HEAD / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n"}[case]
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(head)
        if case != "http10":
            s.shutdown(socket.SHUT_WR)
        raw = read_until_close(s)
    assert raw.startswith(b"HTTP/1.1 200") and b"x-checksum" not in raw
    body = raw.partition(b"\r\n\r\n")[2]
    assert body == {"no_te": b"6\r\nabcdef\r\n0\r\n\r\n", "te_other": b"6\r\nabcdef\r\n0\r\n\r\n",
                    "length": b"abcdef", "http10": b"abcdef", "head": b""}[case]
    why = {"no_te": "request has no TE: trailers", "te_other": "request has no TE: trailers",
           "length": "response not chunked", "http10": "response not chunked",
           "head": "no body (HEAD)"}[case]
    end = time.monotonic() + 10
    while not any(k == "http1.trailers_dropped" for k, _ in srv.events) and time.monotonic() < end:
        time.sleep(0.01)
    assert [d for k, d in srv.events if k == "http1.trailers_dropped"] == [
        {"reason": why, "fields": ["x-checksum"]}]
