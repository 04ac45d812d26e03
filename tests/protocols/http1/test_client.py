"""The HTTP/1.1 client against real servers (ours, and Python's http.server): pooling
and keep-alive, chunked uploads, streaming downloads, redirects, limits, timeouts
from the caller's budget, TLS with host-name verification, and the pool invariant
under cancellation injected at every checkpoint of a request; ``Expect: 100-continue``
(against our server, and raw-socket servers answering 417/401 before the body or
never answering the expectation) and the per-host bound on concurrent connections
(20 concurrent requests, FIFO waiters, cancellation and deadlines of waiters)."""

from __future__ import annotations

import http.server
import socket
import threading

import pytest

import greenrt
from greenrt.protocols.http import (
    Limits,
    PayloadTooLarge,
    Response,
    StreamingResponse,
    TooManyRedirects,
)
from greenrt.protocols.http1.client import Client, request


def app(req):
    path = req.path
    if path == "/echo":
        data = req.body.read_all()
        return Response(200, [("x-method", req.method)], data)
    if path.startswith("/r/"):
        n = int(path[3:])
        if n == 0:
            return Response(200, [], f"landed {req.method} {req.body.read_all()!r}")
        code = int(req.headers.get("x-code", "302"))
        return Response(code, [("location", f"/r/{n - 1}")], b"redirecting")
    if path == "/big":
        n = int(req.query or "100")
        return StreamingResponse(200, [], (bytes([i % 256]) * 65536 for i in range(n)))
    if path == "/slow":
        greenrt.sleep(float(req.query or "5"))
        return Response(200, [], b"slow")
    if path == "/forever":
        greenrt.sleep_forever()
    return Response(200, [("content-type", "text/plain")], b"hello " + req.target.encode())


def test_client_against_our_server(http_server):
    srv = http_server(app)
    base = f"http://127.0.0.1:{srv.port}"

    def main():
        with Client() as c:
            for i in range(3):
                r = c.get(f"{base}/k{i}")
                assert (r.status, r.content) == (200, b"hello /k%d" % i)
            st = c.statistics()
            assert st["connections_opened"] == 1 and st["reused"] == 2
            r = c.request("POST", f"{base}/echo", body=b"payload")
            assert r.content == b"payload" and r.headers.get("x-method") == "POST"
            r = c.request("PUT", f"{base}/echo", body=(b"part%d-" % i for i in range(100)))
            assert r.content == b"".join(b"part%d-" % i for i in range(100))
            with c.request("GET", f"{base}/big?50", stream=True) as r:
                total, first = 0, None
                for chunk in r.body:
                    first = first if first is not None else chunk[:1]
                    total += len(chunk)
                assert total == 50 * 65536 and first == b"\x00"
            assert r.connection_released
            r = c.request("HEAD", f"{base}/h")
            assert r.status == 200 and r.content == b"" and r.headers.get("content-length") == "8"
            assert c.statistics()["connections_opened"] == 1  # all on one kept-alive connection
        r = request("GET", f"{base}/once")
        assert r.content == b"hello /once"

    greenrt.run(main)


class _StdHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        if self.path == "/close-delimited":
            self.protocol_version = "HTTP/1.0"
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"until the connection closes")
            self.close_connection = True
            return
        body = f"std {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        self.send_response(201)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.interop
def test_client_against_python_http_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StdHandler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        def main():
            with Client() as c:
                assert c.get(f"{base}/a").content == b"std /a"
                assert c.get(f"{base}/b").content == b"std /b"
                assert c.statistics()["reused"] == 1
                r = c.request("POST", f"{base}/p", body=b"x" * 100000)
                assert (r.status, len(r.content)) == (201, 100000)
                # http.server answers Expect: 100-continue itself (handle_expect_100)
                r = c.request("POST", f"{base}/e", body=b"e" * 70000, expect_continue=True)
                assert (r.status, r.content) == (201, b"e" * 70000)
                assert c.statistics()["continue_received"] == 1
                r = c.get(f"{base}/close-delimited")
                assert r.content == b"until the connection closes"
                # a close-delimited body consumes its connection: nothing to pool
                assert c.idle_connections("http", "127.0.0.1", httpd.server_address[1]) == 0

        greenrt.run(main)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_redirects_bounded_and_method_rules(http_server):
    srv = http_server(app)
    base = f"http://127.0.0.1:{srv.port}"

    def main():
        with Client(max_redirects=3) as c:
            r = c.get(f"{base}/r/2")
            assert r.status == 200 and r.content.startswith(b"landed GET")
            assert [h.status for h in r.history] == [302, 302]
            with pytest.raises(TooManyRedirects):
                c.get(f"{base}/r/5")
            r = c.request("POST", f"{base}/r/1", body=b"keep", headers={"x-code": "307"})
            assert r.content == b"landed POST b'keep'"
            r = c.request("POST", f"{base}/r/1", body=b"drop", headers={"x-code": "303"})
            assert r.content == b"landed GET b''"
            r = c.get(f"{base}/r/1", follow_redirects=False)
            assert r.status == 302

    greenrt.run(main)


def test_unread_response_is_never_reused(http_server):
    srv = http_server(app)
    base = f"http://127.0.0.1:{srv.port}"

    def main():
        with Client() as c:
            r = c.request("GET", f"{base}/big?20", stream=True)
            assert len(r.body.read(1000)) == 1000
            r.close()
            assert c.idle_connections("http", "127.0.0.1", srv.port) == 0
            assert c.statistics()["discarded"] == 1
            assert c.get(f"{base}/x").content == b"hello /x"
            assert c.statistics()["connections_opened"] == 2

    greenrt.run(main)


def test_response_limits_apply(http_server):
    srv = http_server(app)
    base = f"http://127.0.0.1:{srv.port}"

    def main():
        with Client(limits=Limits(max_body_bytes=100000)) as c:
            with pytest.raises(PayloadTooLarge):
                c.get(f"{base}/big?3")
            assert c.idle_connections("http", "127.0.0.1", srv.port) == 0

    greenrt.run(main)


def test_timeouts_come_from_the_callers_budget(http_server):
    srv = http_server(app)
    base = f"http://127.0.0.1:{srv.port}"

    def main():
        with Client() as c:
            with pytest.raises(greenrt.TooSlowError):
                c.get(f"{base}/slow?5", timeout=0.1)
            with greenrt.move_on_after(0.1) as sc:
                c.get(f"{base}/forever")
            assert sc.cancelled_caught
            assert c.idle_connections("http", "127.0.0.1", srv.port) == 0
            assert c.get(f"{base}/after").content == b"hello /after"

    greenrt.run(main)


def test_stale_pooled_connection_is_retried(http_server):
    srv = http_server(app, Limits(keepalive_timeout=0.05))
    base = f"http://127.0.0.1:{srv.port}"

    def main():
        with Client() as c:
            assert c.get(f"{base}/1").content == b"hello /1"
            while "keepalive_timeout" not in srv.codes():
                greenrt.sleep(0.01)
            assert c.idle_connections("http", "127.0.0.1", srv.port) == 1  # stale, unknown yet
            assert c.get(f"{base}/2").content == b"hello /2"
            st = c.statistics()
            # the server's FIN is seen at checkout (nothing may be unread) and the
            # connection replaced; had it arrived later, the request is retried once
            assert st["retried"] + st["discard_reasons"].get("idle_unread", 0) == 1

    greenrt.run(main)


def test_cancellation_at_every_checkpoint_leaves_no_broken_connection(http_server):
    """Cancel a request at its 1st, 2nd, ... checkpoint (a poll quota of k), until it
    completes; after each, every pooled connection must be clean and the next
    request on the same client must get the right answer (no desync)."""
    srv = http_server(app)
    base = f"http://127.0.0.1:{srv.port}"

    def main():
        c = Client()
        sweeps = {}
        for kind in ("download", "upload", "chunked-upload", "expect-upload"):
            for k in range(1, 2000):
                with greenrt.cancel_scope(budget=greenrt.Budget(poll_quota=k)) as sc:
                    if kind == "download":
                        r = c.get(f"{base}/big?3")
                        assert len(r.content) == 3 * 65536
                    elif kind == "upload":
                        r = c.request("POST", f"{base}/echo", body=b"b" * 300000)
                        assert r.content == b"b" * 300000
                    elif kind == "expect-upload":
                        r = c.request("POST", f"{base}/echo", body=b"e" * 200000,
                                      expect_continue=True)
                        assert r.content == b"e" * 200000
                    else:
                        r = c.request("POST", f"{base}/echo",
                                      body=(b"c" * 1000 for _ in range(50)))
                        assert r.content == b"c" * 50000
                for idle in [c.pool.idle_connections(k) for k in c.pool.key_statistics()]:
                    for conn in idle:
                        assert not conn.stream.broken and conn.p.buffered == 0
                        assert conn.p.error is None
                probe = c.get(f"{base}/probe{k}")
                assert probe.content == b"hello /probe%d" % k
                if not sc.cancelled_caught:
                    sweeps[kind] = k
                    break
        # every sweep was cancelled at each of its first k-1 checkpoints, then completed
        assert all(k > 3 for k in sweeps.values()) and len(sweeps) == 4, sweeps
        st = c.statistics()
        assert st["in_use"] == {} and st["waiting"] == {}  # no pool token leaked
        c.close()

    greenrt.run(main)


def test_tls_with_host_name_verification(http_server, tmp_path):
    import trustme

    from greenrt.protocols import tls

    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    server_ctx = tls.server_context(cert_pem=b"".join(b.bytes() for b in cert.cert_chain_pems),
                                    key_pem=cert.private_key_pem.bytes())
    srv = http_server(app, tls=server_ctx)
    client_ctx = tls.client_context(cadata=ca.cert_pem.bytes())

    def main():
        with Client(tls_context=client_ctx) as c:
            r = c.get(f"https://localhost:{srv.port}/secure")
            assert (r.status, r.content) == (200, b"hello /secure")
            assert c.get(f"https://localhost:{srv.port}/again").content == b"hello /again"
            assert c.statistics()["reused"] == 1
            with pytest.raises(tls.TLSError):
                c.get(f"https://127.0.0.1:{srv.port}/wrong-name")
        with Client(tls_context=tls.client_context()) as c:  # system trust: unknown CA
            with pytest.raises(tls.TLSError):
                c.get(f"https://localhost:{srv.port}/untrusted")

    greenrt.run(main)


# -- Expect: 100-continue ----------------------------------------------------------------


def _expect_app(req):
    data = req.body.read_all()
    return Response(200, [("x-expect", req.headers.get("expect") or "-")], data)


def test_expect_continue_against_our_server(http_server):
    """Our server answers ``100 Continue`` when the handler reads the body; the client
    counts the 100s it waited for. ``expect_timeout`` is a hang guard only: a 100 that
    never came would show as a timeout, not a received continue."""
    srv = http_server(_expect_app)
    base = f"http://127.0.0.1:{srv.port}"

    def main():
        with Client(expect_continue_threshold=1000, expect_timeout=30) as c:
            r = c.request("POST", f"{base}/big", body=b"x" * 300000)
            assert (r.status, r.content) == (200, b"x" * 300000)
            assert r.headers.get("x-expect") == "100-continue"
            r = c.request("POST", f"{base}/small", body=b"small")  # below the threshold
            assert (r.content, r.headers.get("x-expect")) == (b"small", "-")
            r = c.request("PUT", f"{base}/chunked", body=(b"c%d" % i for i in range(500)))
            assert r.content == b"".join(b"c%d" % i for i in range(500))
            assert r.headers.get("x-expect") == "100-continue"  # unknown size counts as large
            r = c.request("POST", f"{base}/forced", body=b"tiny", expect_continue=True)
            assert (r.content, r.headers.get("x-expect")) == (b"tiny", "100-continue")
            r = c.request("POST", f"{base}/off", body=b"y" * 5000, expect_continue=False)
            assert (r.content, r.headers.get("x-expect")) == (b"y" * 5000, "-")
            r = c.get(f"{base}/nobody", expect_continue=True)  # no body: no expectation
            assert r.headers.get("x-expect") == "-"
            r = c.request("POST", f"{base}/own", body=b"o", headers={"expect": "100-continue"})
            assert (r.content, r.headers.get("x-expect")) == (b"o", "100-continue")
            r = c.request("POST", f"{base}/own-off", body=b"o",
                          headers={"expect": "100-continue"}, expect_continue=False)
            assert (r.content, r.headers.get("x-expect")) == (b"o", "-")
            st = c.statistics()
            assert (st["continue_received"], st["continue_timeouts"], st["body_withheld"]) \
                == (4, 0, 0)
            assert st["connections_opened"] == 1  # every exchange kept the connection
        r = request("POST", f"{base}/fn", body=b"z" * 10, expect_continue=True)
        assert (r.content, r.headers.get("x-expect")) == (b"z" * 10, "100-continue")

    greenrt.run(main)


class _RawServer:
    """A one-connection raw-socket peer (for what a correct server never does on its
    own): reads a request head, optionally answers ``reply`` at once (a final
    response before the body), then records every byte the client sends after the
    head until it closes the connection. With ``body_then`` it instead reads
    Content-Length body bytes first and then answers ``body_then(body)``."""

    def __init__(self, reply: bytes | None = None, body_then=None):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.reply = reply
        self.body_then = body_then
        self.head: bytes | None = None
        self.after_head = b""
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.listener.settimeout(10)
            s, _ = self.listener.accept()
            with s:
                s.settimeout(10)  # hang guard
                buf = b""
                while b"\r\n\r\n" not in buf:
                    d = s.recv(65536)
                    assert d, "client closed before the head"
                    buf += d
                self.head, rest = buf.split(b"\r\n\r\n", 1)
                if self.body_then is not None:
                    n = int(self.header(b"content-length"))
                    while len(rest) < n:
                        d = s.recv(65536)
                        assert d, "client closed inside the body"
                        rest += d
                    s.sendall(self.body_then(rest))
                elif self.reply is not None:
                    s.sendall(self.reply)
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    rest += d
                self.after_head = rest
        except BaseException as e:  # reported by join()
            self.error = e
        finally:
            self.listener.close()

    def header(self, name: bytes) -> bytes | None:
        for line in self.head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == name:
                return v.strip()
        return None

    def join(self) -> None:
        self.thread.join(15)
        assert not self.thread.is_alive(), "raw server hung"
        if self.error is not None:
            raise self.error


@pytest.mark.parametrize("reply, status, content", [
    (b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n", 417, b""),
    (b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic\r\nContent-Length: 6\r\n\r\n"
     b"denied", 401, b"denied"),
])
@pytest.mark.parametrize("kind", ["bytes", "iterable"])
def test_final_response_before_continue_withholds_the_body(reply, status, content, kind):
    """A final response instead of 100: it is returned, the body is never sent (the
    peer sees nothing after the head before the client closes), a streamed body is
    not even consumed, and the connection is closed rather than pooled."""
    srv = _RawServer(reply=reply)
    pulled = []

    def gen():
        for i in range(10):
            pulled.append(i)
            yield b"B" * 1000

    def main():
        with Client(expect_timeout=30) as c:  # the timeout is only a hang guard here
            body = b"B" * 10000 if kind == "bytes" else gen()
            r = c.request("PUT", f"http://127.0.0.1:{srv.port}/up", body=body,
                          expect_continue=True)
            assert (r.status, r.content) == (status, content)
            assert c.statistics()["body_withheld"] == 1
            assert c.statistics()["continue_received"] == 0
            assert c.idle_connections("http", "127.0.0.1", srv.port) == 0
            assert c.statistics()["in_use"] == {}

    greenrt.run(main)
    srv.join()
    assert srv.header(b"expect") == b"100-continue"
    assert srv.after_head == b""  # not one body byte reached the server
    assert pulled == []


def test_expect_timeout_sends_the_body_anyway():
    """A server that ignores the expectation (reads the body without a 100, and sends
    a late 100 before its answer): after ``expect_timeout`` the body goes out anyway,
    and the late 100 is skipped."""
    srv = _RawServer(body_then=lambda b: b"HTTP/1.1 100 Continue\r\n\r\n"
                     b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\ngot %d"
                     % (len(b"got %d" % len(b)), len(b)))

    def main():
        with Client(expect_continue_threshold=0, expect_timeout=0.05) as c:
            r = c.request("POST", f"http://127.0.0.1:{srv.port}/up", body=b"q" * 200000)
            assert (r.status, r.content) == (200, b"got 200000")
            st = c.statistics()
            assert (st["continue_timeouts"], st["continue_received"]) == (1, 0)

    greenrt.run(main)
    srv.join()
    assert srv.header(b"expect") == b"100-continue"


# -- the per-host bound on concurrent connections --------------------------------------


def test_pool_bounds_concurrent_connections_per_host(http_server):
    """20 concurrent requests with ``max_connections_per_host=3``: the server sees at
    most 3 distinct client connections and at most 3 requests in flight; all 20
    succeed, the excess having waited for a connection."""
    state = {"inflight": 0, "max": 0, "peers": set()}

    def handler(req):
        state["peers"].add(req.client)
        state["inflight"] += 1
        state["max"] = max(state["max"], state["inflight"])
        try:
            greenrt.sleep(0.01)  # overlap the requests (not asserted on)
        finally:
            state["inflight"] -= 1
        return Response(200, [], req.path.encode())

    srv = http_server(handler)
    base = f"http://127.0.0.1:{srv.port}"
    results = {}

    def main():
        with Client(max_connections_per_host=3) as c:
            def one(i):
                results[i] = c.get(f"{base}/n{i}").content

            with greenrt.region() as r:
                for i in range(20):
                    r.spawn(one, i)
            st = c.statistics()
            assert st["connections_opened"] <= 3
            assert st["pool_waits"] > 0
            assert st["in_use"] == {} and st["waiting"] == {}
            assert all(v["in_use"] == 0 == v["waiting"] for v in c.pool.key_statistics().values())

    greenrt.run(main)
    assert results == {i: b"/n%d" % i for i in range(20)}
    assert None not in state["peers"]
    assert 1 <= len(state["peers"]) <= 3, state["peers"]
    assert state["max"] <= 3


def test_cancelled_pool_waiter_loses_nothing_and_deadlines_apply(http_server):
    """One connection per host, held by a request the server keeps waiting; three
    more requests queue. Cancelling the middle one leaves the other two served in
    FIFO order on the same connection, with no token leaked. A waiter whose
    deadline (``fail_after``) expires gets ``TooSlowError`` and takes no token."""
    gate = {"open": False}
    order: list[str] = []

    def handler(req):
        order.append(req.path)
        if req.path.startswith("/hold"):
            while not gate["open"]:
                greenrt.sleep(0.002)
        return Response(200, [], req.path.encode())

    srv = http_server(handler)
    base = f"http://127.0.0.1:{srv.port}"
    key = f"http://127.0.0.1:{srv.port}"

    def main():
        with Client(max_connections_per_host=1) as c:
            got, scopes = {}, {}

            def hold(path):
                got[path] = c.get(f"{base}{path}").content

            def waiter(name):
                with greenrt.cancel_scope() as sc:
                    scopes[name] = sc
                    got[name] = c.get(f"{base}/{name}").content

            def waiting():
                return c.statistics()["waiting"].get(key, 0)

            with greenrt.region() as r:
                r.spawn(hold, "/hold1")
                while "/hold1" not in order:
                    greenrt.sleep(0.002)
                for n in ("b", "c", "d"):
                    r.spawn(waiter, n)
                while waiting() < 3:
                    greenrt.sleep(0.002)
                scopes["c"].cancel()
                while waiting() != 2:
                    greenrt.sleep(0.002)
                gate["open"] = True
            assert scopes["c"].cancelled_caught and "c" not in got
            assert got == {"/hold1": b"/hold1", "b": b"/b", "d": b"/d"}
            assert order == ["/hold1", "/b", "/d"]  # FIFO; the cancelled one skipped
            st = c.statistics()
            assert st["in_use"] == {} and st["waiting"] == {}
            assert st["connections_opened"] == 1

            gate["open"] = False
            with greenrt.region() as r:
                r.spawn(hold, "/hold2")
                while "/hold2" not in order:
                    greenrt.sleep(0.002)
                with pytest.raises(greenrt.TooSlowError):
                    with greenrt.fail_after(0.05):
                        c.get(f"{base}/late")
                assert c.statistics()["in_use"] == {key: 1}  # only the holder's token
                assert waiting() == 0
                gate["open"] = True
            assert "/late" not in order
            assert c.get(f"{base}/after").content == b"/after"
            assert c.statistics()["connections_opened"] == 1

    greenrt.run(main)
