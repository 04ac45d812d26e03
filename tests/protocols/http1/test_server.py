"""The HTTP/1.1 server over real loopback sockets: features, limits, smuggling and
timeouts with raw bytes (sent in one write and byte by byte), cancellation on client
disconnect, budgets, graceful shutdown, and curl/wrk as real clients."""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time

import pytest

import greenrt
from greenrt.protocols.http import Limits, Response, StreamingResponse

MODES = ["one", "bytes"]


def hello(req):
    return Response(200, [("content-type", "text/plain")], b"hello " + req.target.encode())


def echo(req):
    data = req.body.read_all()
    return Response(200, [("x-method", req.method), ("x-len", str(len(data)))], data)


# -- basics -----------------------------------------------------------------------------

def test_keepalive_and_pipelining_in_order(http_server, net_helpers):
    srv = http_server(hello)
    s = net_helpers.connect(srv.port)
    for i in range(3):
        s.sendall(b"GET /k%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
        st, _, body = net_helpers.read_response(s)
        assert (st, body) == (200, b"hello /k%d" % i)
    s.sendall(b"".join(b"GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5))
              + b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    raw = net_helpers.read_until_close(s)
    assert re.findall(rb"hello (/[a-z0-9]+?)(?=HTTP|$)", raw) == [b"/p0", b"/p1", b"/p2", b"/p3", b"/p4", b"/last"]


def test_a_batched_pipelined_response_does_not_wait_for_a_blocked_handler(http_server,
                                                                          net_helpers):
    # /a's response is deferred (the next request is already buffered) to go out with
    # /wait's; /wait's handler blocks until the client has /a's response, so if the
    # deferred bytes were not flushed when the runner parks, this would only end when
    # the handler gives up (and the second body says so)
    got_first = threading.Event()

    def handler(req):
        if req.path == "/wait":
            for _ in range(1000):
                if got_first.is_set():
                    return Response(200, [], b"released")
                greenrt.sleep(0.01)
            return Response(200, [], b"gave up")
        return hello(req)

    srv = http_server(handler)
    s = net_helpers.connect(srv.port)
    s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
    st, _, body = net_helpers.read_response(s)
    assert (st, body) == (200, b"hello /a")
    got_first.set()
    st, _, body = net_helpers.read_response(s)
    assert (st, body) == (200, b"released")


def test_bodies_chunked_both_ways_and_head(http_server, net_helpers):
    def handler(req):
        if req.path == "/stream":
            return StreamingResponse(200, [], (b"part%d;" % i for i in range(4)))
        if req.method == "HEAD":
            return hello(req)
        return echo(req)

    srv = http_server(handler)
    s = net_helpers.connect(srv.port)
    s.sendall(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    st, h, body = net_helpers.read_response(s)
    assert (st, body, h["x-len"]) == (200, b"hello", "5")
    s.sendall(b"POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nX-T: 1\r\n\r\n")
    st, h, body = net_helpers.read_response(s)
    assert (st, body) == (200, b"abcdefg")
    s.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    st, h, body = net_helpers.read_response(s)
    assert h["transfer-encoding"] == "chunked" and body == b"part0;part1;part2;part3;"
    s.sendall(b"HEAD /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    raw = net_helpers.read_until_close(s)
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"content-length: 8" in head and rest == b""


def test_expect_100_continue(http_server, net_helpers):
    seen = []

    def handler(req):
        if req.path == "/ignore":
            seen.append("ignored")
            return Response(403, [], b"no")
        return echo(req)

    srv = http_server(handler)
    s = net_helpers.connect(srv.port)
    s.sendall(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    s.settimeout(10)
    interim = s.recv(1000)
    assert interim.startswith(b"HTTP/1.1 100 ")
    s.sendall(b"data")
    st, _, body = net_helpers.read_response(s)
    assert (st, body) == (200, b"data")
    # a handler that answers without reading: no 100, and the connection is not reused
    s.sendall(b"POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
              b"Expect: 100-continue\r\n\r\n")
    raw = net_helpers.read_until_close(s)
    assert raw.startswith(b"HTTP/1.1 403") and b"connection: close" in raw.lower()
    assert b" 100 " not in raw


def test_streaming_response_has_backpressure(http_server, net_helpers):
    produced = []
    total = 400

    def handler(req):
        def gen():
            for i in range(total):
                produced.append(i)
                yield b"x" * 65536
        return StreamingResponse(200, [], gen())

    srv = http_server(handler)
    s = net_helpers.connect(srv.port)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    # wait until the producer stalls (the socket buffers are full)
    last, stable = -1, 0
    while stable < 20:
        time.sleep(0.02)
        n = len(produced)
        stable = stable + 1 if n == last else 0
        last = n
    assert len(produced) < total  # blocked by the peer not reading, not buffered in memory
    raw = net_helpers.read_until_close(s)
    assert len(produced) == total and raw.count(b"x") == total * 65536


# -- limits over a real socket ----------------------------------------------------------------

SMALL = Limits(max_head_bytes=2048, max_headers=8, max_request_line=256, max_body_bytes=1000)


def _head(n_fields: int, value_len: int = 10) -> bytes:
    return (b"GET / HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-%d: %s\r\n" % (i, b"v" * value_len) for i in range(n_fields - 1))
            + b"\r\n")


LIMIT_CASES = {
    "head_ok": (SMALL, _head(8, 200), 200, None),
    "head_too_large": (SMALL, _head(8, 300), 431, "head_too_large"),
    "too_many_headers": (SMALL, _head(9), 431, "too_many_headers"),
    "request_line_ok": (SMALL, b"GET /" + b"a" * 242 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 200, None),
    "request_line_too_long": (SMALL, b"GET /" + b"a" * 243 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                              414, "request_line_too_long"),
    "declared_body_too_large": (SMALL, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n"
                                + b"b" * 1001, 413, "body_too_large"),
    "chunked_body_too_large": (SMALL, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                               b"\r\n\r\n" + b"c8\r\n" + b"z" * 200 + b"\r\n" + b"" .join(
                                   [b"c8\r\n" + b"z" * 200 + b"\r\n"] * 5) + b"0\r\n\r\n",
                               413, "body_too_large"),
    "default_head_too_large": (Limits(), _head(100, 700), 431, "head_too_large"),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(LIMIT_CASES))
def test_limits_over_socket(http_server, net_helpers, name, mode):
    limits, data, status, code = LIMIT_CASES[name]
    srv = http_server(echo, limits)
    s = net_helpers.connect(srv.port)
    net_helpers.send(s, data + (b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n" if code else b""),
                     mode)
    if code is None:
        st, _, _ = net_helpers.read_response(s)
        assert st == status
        return
    raw = net_helpers.read_until_close(s)
    assert net_helpers.status_of(raw) == status
    assert raw.count(b"HTTP/1.1") == 1 and b"connection: close" in raw.lower()  # closed after
    assert srv.wait_for_code(code)


# -- request smuggling over a real socket ---------------------------------------------------

SMUGGLE = {
    "cl_te": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked"
              b"\r\n\r\n0\r\n\r\nG", 400, "cl_te_conflict"),
    "te_cl": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3"
              b"\r\n\r\n0\r\n\r\n", 400, "cl_te_conflict"),
    "duplicate_cl": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3"
                     b"\r\n\r\nabc", 400, "duplicate_cl"),
    "malformed_cl": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3 3\r\n\r\nabc", 400,
                     "bad_cl"),
    "obs_fold": (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 400, "obs_fold"),
    "bare_lf": (b"GET / HTTP/1.1\nHost: x\n\n", 400, "bare_lf"),
    "te_gzip": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501,
                "unsupported_transfer_coding"),
    "te_identity": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n", 501,
                    "unsupported_transfer_coding"),
    "http2_version": (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, "version_not_supported"),
    "duplicate_host": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "duplicate_host"),
    "bad_chunk": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"3\r\nabcdef\r\n0\r\n\r\n", 400, "bad_chunk"),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(SMUGGLE))
def test_smuggling_over_socket(http_server, net_helpers, name, mode):
    data, status, code = SMUGGLE[name]
    seen = []

    def handler(req):
        seen.append(req.target)
        return echo(req)

    srv = http_server(handler)
    s = net_helpers.connect(srv.port)
    net_helpers.send(s, data + b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", mode)
    raw = net_helpers.read_until_close(s)
    assert net_helpers.status_of(raw) == status, raw[:200]
    assert raw.count(b"HTTP/1.1 ") == 1  # exactly one answer, then close
    assert "/smuggled" not in seen
    assert srv.wait_for_code(code)


# -- timeouts -------------------------------------------------------------------------------

def test_slowloris_header_timeout(http_server, net_helpers):
    srv = http_server(hello, Limits(header_timeout=0.3))
    s = net_helpers.connect(srv.port)
    # trickle a never-ending head one byte at a time: the deadline counts from the
    # first byte, more bytes do not extend it
    sent = 0
    for i in range(2000):
        if not net_helpers.send(s, (b"GET / HTTP/1.1\r\nX-%d: y\r\n" % i)[:1]):
            break
        sent += 1
        s.settimeout(0.02)
        try:
            chunk = s.recv(1000)
        except TimeoutError:
            continue
        assert net_helpers.status_of(chunk) == 408
        break
    else:
        pytest.fail("no 408 after 2000 trickled bytes")
    assert srv.wait_for_code("header_timeout")


@pytest.mark.parametrize("mode", MODES)
def test_partial_head_then_silence_is_408(http_server, net_helpers, mode):
    srv = http_server(hello, Limits(header_timeout=0.3))
    s = net_helpers.connect(srv.port)
    net_helpers.send(s, b"GET / HTTP/1.1\r\nHost: x\r\n", mode)
    raw = net_helpers.read_until_close(s)
    assert net_helpers.status_of(raw) == 408
    assert srv.wait_for_code("header_timeout")


def test_keepalive_idle_timeout_closes_silently(http_server, net_helpers):
    srv = http_server(hello, Limits(keepalive_timeout=0.2))
    s = net_helpers.connect(srv.port)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert net_helpers.read_response(s)[0] == 200
    assert net_helpers.read_until_close(s) == b""
    assert srv.wait_for_code("keepalive_timeout")


@pytest.mark.parametrize("mode", MODES)
def test_body_idle_timeout_is_408(http_server, net_helpers, mode):
    srv = http_server(echo, Limits(body_idle_timeout=0.2))
    s = net_helpers.connect(srv.port)
    net_helpers.send(s, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc", mode)
    raw = net_helpers.read_until_close(s)
    assert net_helpers.status_of(raw) == 408
    assert srv.wait_for_code("body_idle_timeout")


def test_request_budget_cancels_handler_and_answers_503(http_server, net_helpers):
    reasons = []

    def handler(req):
        try:
            greenrt.sleep_forever()
        except greenrt.Cancelled as c:
            reasons.append(c.reason.kind.value)
            raise

    srv = http_server(handler, Limits(request_timeout=0.2))
    s = net_helpers.connect(srv.port)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    raw = net_helpers.read_until_close(s)
    assert net_helpers.status_of(raw) == 503
    assert reasons == ["deadline"] and srv.wait_for_code("request_timeout")


def test_request_budget_after_headers_closes_connection(http_server, net_helpers):
    def handler(req):
        def gen():
            yield b"first"
            greenrt.sleep_forever()
        return StreamingResponse(200, [], gen())

    srv = http_server(handler, Limits(request_timeout=0.2))
    s = net_helpers.connect(srv.port)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    raw = net_helpers.read_until_close(s)
    assert raw.startswith(b"HTTP/1.1 200") and b"first" in raw
    assert not raw.endswith(b"0\r\n\r\n")  # no terminating chunk: the client sees truncation
    assert srv.wait_for_code("request_timeout")


# -- cancellation on disconnect ---------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_client_disconnect_mid_body_cancels_handler(http_server, net_helpers, mode):
    reasons = []
    started = threading.Event()

    def handler(req):
        started.set()
        try:
            req.body.read_all()
        except greenrt.Cancelled as c:
            reasons.append((c.reason.kind.value, c.reason.message))
            raise
        return Response(200)

    srv = http_server(handler)
    s = net_helpers.connect(srv.port)
    net_helpers.send(s, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
                     + b"q" * 500, mode)
    assert started.wait(10)
    s.close()
    assert srv.wait_for_code("client_disconnected")
    end = time.monotonic() + 10
    while not reasons and time.monotonic() < end:
        time.sleep(0.01)
    assert reasons and reasons[0][0] == "resource_unavailable"
    assert "client disconnected" in reasons[0][1]


def test_client_disconnect_while_handler_works_cancels_it(http_server, net_helpers):
    reasons = []
    started = threading.Event()

    def handler(req):
        started.set()
        try:
            greenrt.sleep(30)
        except greenrt.Cancelled as c:
            reasons.append(c.reason.kind.value)
            raise
        return Response(200)

    srv = http_server(handler)
    s = net_helpers.connect(srv.port)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert started.wait(10)
    s.close()
    assert srv.wait_for_code("client_disconnected")
    end = time.monotonic() + 10
    while not reasons and time.monotonic() < end:
        time.sleep(0.01)
    assert reasons == ["resource_unavailable"]


@pytest.mark.parametrize("work", [0.0, 0.3])
def test_half_closed_client_still_gets_its_response(http_server, net_helpers, work):
    # the client sends a complete request and shutdown(SHUT_WR): the handler is not
    # cancelled (work=0.3: EOF arrives while it runs; 0.0: with the request) and the
    # response arrives, after an interim 100 (the probe for a fully closed peer)
    done = []

    def handler(req):
        if work:
            greenrt.sleep(work)
        done.append(req.target)
        return Response(200, [("content-type", "text/plain")], b"late answer")

    srv = http_server(handler)
    s = net_helpers.connect(srv.port)
    s.sendall(b"GET /hc HTTP/1.1\r\nHost: x\r\n\r\n")
    s.shutdown(socket.SHUT_WR)
    raw = net_helpers.read_until_close(s)
    assert done == ["/hc"]
    final = raw[raw.index(b"HTTP/1.1 200"):]
    assert raw[:raw.index(b"HTTP/1.1 200")] in (b"", b"HTTP/1.1 100 \r\n\r\n")
    assert final.endswith(b"\r\n\r\nlate answer") and b"content-length: 11\r\n" in final
    assert re.search(rb"\r\ndate: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT\r\n", final)
    assert "client_disconnected" not in srv.codes()


def test_half_closed_http10_client_is_treated_as_gone(http_server, net_helpers):
    # HTTP/1.0 has no 1xx to probe with: an EOF during the handler cancels it
    reasons = []
    started = threading.Event()

    def handler(req):
        started.set()
        try:
            greenrt.sleep(30)
        except greenrt.Cancelled as c:
            reasons.append(c.reason.kind.value)
            raise
        return Response(200)

    srv = http_server(handler)
    s = net_helpers.connect(srv.port)
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    assert started.wait(10)
    s.shutdown(socket.SHUT_WR)
    assert srv.wait_for_code("client_disconnected")
    assert net_helpers.read_until_close(s) == b""
    end = time.monotonic() + 10
    while not reasons and time.monotonic() < end:
        time.sleep(0.01)
    assert reasons == ["resource_unavailable"]


def _waits(srv) -> dict[str, str]:
    """What each task of the server waits for now (task name -> waiting_for)."""
    from greenrt import lowlevel

    got = []
    done = threading.Event()

    def snap():
        got.append(lowlevel.task_snapshot(srv.hub))
        done.set()

    srv.call(snap)
    assert done.wait(10)
    out = {}

    def walk(region):
        for t in region["tasks"]:
            out[t["name"]] = str(t["waiting_for"])
            for r in t.get("regions", ()):
                walk(r)

    for r in got[0]["regions"]:
        walk(r)
    return out


def test_keep_alive_requests_are_received_by_the_runner_itself(http_server, net_helpers):
    # between keep-alive requests the runner waits in its own recv and the reader task
    # stays dormant (no hand-off between two tasks per request); a handler that parks
    # activates the reader (it watches for a disconnect meanwhile), which goes dormant
    # again once a request arrives outside a handler
    def handler(req):
        if req.path == "/slow":
            greenrt.sleep(0.2)
        return Response(200, [], b"ok")

    srv = http_server(handler)
    s = net_helpers.connect(srv.port)

    def get(path):
        s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path)
        out = b""
        while not out.endswith(b"ok"):
            out += s.recv(65536)
        assert out.startswith(b"HTTP/1.1 200")

    def settled(runner_waits):
        end = time.monotonic() + 10
        while time.monotonic() < end:
            w = _waits(srv)
            if w.get("http1.runner", "").startswith(runner_waits):
                return w
            time.sleep(0.01)
        return _waits(srv)

    for _ in range(3):
        get(b"/")
    w = settled("_Slot")  # the runner parked in the socket's recv
    assert w["http.conn"] == "http1: reader dormant (the runner receives)"
    get(b"/slow")  # the reader takes over while the handler sleeps...
    w = settled("http1: bytes from the peer")
    assert w["http.conn"].startswith("_Slot")
    get(b"/")  # ...and goes dormant after delivering the next request
    get(b"/")
    w = settled("_Slot")
    assert w["http.conn"] == "http1: reader dormant (the runner receives)"
    s.close()


# -- connection management ------------------------------------------------------------------------

def test_per_ip_connection_cap(http_server, net_helpers):
    srv = http_server(hello, Limits(max_connections_per_ip=2))
    a, b = net_helpers.connect(srv.port), net_helpers.connect(srv.port)
    for s in (a, b):
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert net_helpers.read_response(s)[0] == 200
    c = net_helpers.connect(srv.port)
    assert net_helpers.status_of(net_helpers.read_until_close(c)) == 503
    assert srv.wait_for_code("per_ip_cap")
    a.close()
    # a slot frees up once a connection closes
    end = time.monotonic() + 10
    while time.monotonic() < end:
        d = net_helpers.connect(srv.port)
        d.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        if net_helpers.status_of(net_helpers.read_until_close(d)) == 200:
            break
        time.sleep(0.02)
    else:
        pytest.fail("slot never freed")


def test_requests_per_connection_limit(http_server, net_helpers):
    srv = http_server(hello, Limits(max_requests_per_connection=2))
    s = net_helpers.connect(srv.port)
    s.sendall(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
    raw = net_helpers.read_until_close(s)
    assert raw.count(b"HTTP/1.1 200") == 2 and raw.lower().count(b"connection: close") == 1


def test_graceful_shutdown_drains_in_flight_and_closes_idle(http_server, net_helpers):
    started = threading.Event()
    release = threading.Event()

    def handler(req):
        if req.path == "/slow":
            started.set()
            while not release.is_set():
                greenrt.sleep(0.01)
        return hello(req)

    srv = http_server(handler, Limits(drain_timeout=30))
    idle = net_helpers.connect(srv.port)
    idle.sendall(b"GET /idle HTTP/1.1\r\nHost: x\r\n\r\n")
    assert net_helpers.read_response(idle)[0] == 200
    busy = net_helpers.connect(srv.port)
    busy.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    assert started.wait(10)
    srv.shutdown()
    assert net_helpers.read_until_close(idle) == b""  # idle keep-alive closed at once
    release.set()
    raw = net_helpers.read_until_close(busy)
    assert raw.startswith(b"HTTP/1.1 200") and b"connection: close" in raw.lower()
    srv.thread.join(10)
    assert not srv.thread.is_alive()
    with pytest.raises(OSError):
        net_helpers.connect(srv.port).sendall(b"GET / HTTP/1.1\r\n\r\n") or \
            net_helpers.connect(srv.port).recv(1)


def test_shutdown_drain_expiry_cancels_with_reason_shutdown(http_server, net_helpers):
    reasons = []
    started = threading.Event()

    def handler(req):
        started.set()
        try:
            greenrt.sleep_forever()
        except greenrt.Cancelled as c:
            reasons.append(c.reason.kind.value)
            raise

    srv = http_server(handler, Limits(drain_timeout=0.2))
    s = net_helpers.connect(srv.port)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert started.wait(10)
    srv.shutdown()
    raw = net_helpers.read_until_close(s)
    assert net_helpers.status_of(raw) == 503
    assert reasons == ["shutdown"] and srv.wait_for_code("shutdown")


# -- real clients ---------------------------------------------------------------------------------

@pytest.mark.interop
def test_curl_as_client(http_server, tmp_path):
    srv = http_server(lambda req: hello(req) if req.method in ("GET", "HEAD") else echo(req))
    url = f"http://127.0.0.1:{srv.port}"

    def curl(*args):
        return subprocess.run(["curl", "-sS", "--max-time", "20", *args], capture_output=True,
                              check=True, timeout=30).stdout

    assert curl(f"{url}/a", f"{url}/b") == b"hello /ahello /b"  # two requests, reused conn
    assert curl("--data-binary", "payload", f"{url}/p") == b"payload"
    big = tmp_path / "big"
    big.write_bytes(bytes(range(256)) * 4096)
    assert curl("-H", "Transfer-Encoding: chunked", "--data-binary", f"@{big}", url) \
        == big.read_bytes()
    assert curl("-H", "Expect: 100-continue", "--data-binary", f"@{big}", url) == big.read_bytes()
    head = curl("-I", f"{url}/h")
    assert head.startswith(b"HTTP/1.1 200") and b"content-length: 8" in head
    verbose = subprocess.run(["curl", "-sv", f"{url}/a", f"{url}/b"], capture_output=True,
                             timeout=30).stderr
    assert b"Re-using existing connection" in verbose or b"Reusing existing" in verbose


@pytest.mark.interop
def test_wrk_as_client(http_server):
    srv = http_server(hello)
    out = subprocess.run(["wrk", "-t1", "-c8", "-d1s", f"http://127.0.0.1:{srv.port}/"],
                         capture_output=True, text=True, timeout=60).stdout
    m = re.search(r"(\d+) requests in", out)
    assert m and int(m.group(1)) > 0, out
    assert "Non-2xx" not in out and "Socket errors" not in out, out


def test_limit_errors_say_which_limit_and_by_how_much(http_server, net_helpers):
    """Issue 13: the message (and the 413/431 body) named the message as the limit and
    ``None > None``; it now says the limit's name, the size seen and the maximum."""
    from greenrt.protocols.http import HeaderFieldsTooLarge, PayloadTooLarge

    e = HeaderFieldsTooLarge("head exceeds 65536 bytes", limit="max_head_bytes", value=70000,
                             maximum=65536)
    assert str(e) == "head exceeds 65536 bytes"
    assert (e.limit, e.value, e.maximum) == ("max_head_bytes", 70000, 65536)
    assert isinstance(e, greenrt.LimitExceeded)
    assert str(PayloadTooLarge(limit="max_body_bytes", value=20, maximum=10)) == \
        "http1: max_body_bytes exceeded: 20 > 10"
    srv = http_server(lambda req: Response(200, body=b"ok"), Limits(max_head_bytes=1024))
    s = net_helpers.connect(srv.port)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 2000 + b"\r\n\r\n")
    status, _, body = net_helpers.read_response(s)
    s.close()
    assert status == 431
    assert b"None" not in body and b"1024" in body


def test_http_errors_are_protocol_floor_errors():
    """HTTP's errors sit in greenrt.protocols.base's hierarchy (issue 13): generic code
    catches an HTTP peer fault as base.ProtocolError, a limit as base.LimitError with
    the floor's message, a lost peer as ConnectionLost and API misuse as UsageError."""
    from greenrt.protocols import base
    from greenrt.protocols.http import errors as he

    e = he.HeaderFieldsTooLarge(limit="max_head_bytes", value=70000, maximum=65536)
    assert isinstance(e, base.LimitError) and isinstance(e, base.ProtocolError)
    assert isinstance(e, greenrt.LimitExceeded)
    assert str(e) == "http1: max_head_bytes exceeded: 70000 > 65536"
    assert e.status == 431 and e.protocol == "http1"
    assert isinstance(he.BadRequest("x"), base.ProtocolError)
    assert isinstance(he.ClientDisconnected("x"), base.ConnectionLost)
    assert isinstance(he.LocalProtocolError("x"), base.UsageError)
    assert isinstance(he.LocalProtocolError("x"), RuntimeError)
    assert not isinstance(he.LocalProtocolError("x"), base.ProtocolError)
