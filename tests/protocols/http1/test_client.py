"""The HTTP/1.1 client against real servers (ours, and Python's http.server): pooling
and keep-alive, chunked uploads, streaming downloads, redirects, limits, timeouts
from the caller's budget, TLS with host-name verification, and the pool invariant
under cancellation injected at every checkpoint of a request."""

from __future__ import annotations

import http.server
import threading

import pytest

import greenrt
from protocols.http import Limits, PayloadTooLarge, Response, StreamingResponse, TooManyRedirects
from protocols.http1.client import Client, request


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
            assert c.statistics()["retried"] == 1

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
        for kind in ("download", "upload", "chunked-upload"):
            for k in range(1, 2000):
                with greenrt.cancel_scope(budget=greenrt.Budget(poll_quota=k)) as sc:
                    if kind == "download":
                        r = c.get(f"{base}/big?3")
                        assert len(r.content) == 3 * 65536
                    elif kind == "upload":
                        r = c.request("POST", f"{base}/echo", body=b"b" * 300000)
                        assert r.content == b"b" * 300000
                    else:
                        r = c.request("POST", f"{base}/echo",
                                      body=(b"c" * 1000 for _ in range(50)))
                        assert r.content == b"c" * 50000
                for idle in c._pool.values():
                    for conn in idle:
                        assert not conn.stream.broken and conn.p.buffered == 0
                        assert conn.p.error is None
                probe = c.get(f"{base}/probe{k}")
                assert probe.content == b"hello /probe%d" % k
                if not sc.cancelled_caught:
                    sweeps[kind] = k
                    break
        # every sweep was cancelled at each of its first k-1 checkpoints, then completed
        assert all(k > 3 for k in sweeps.values()) and len(sweeps) == 3, sweeps
        c.close()

    greenrt.run(main)


def test_tls_with_host_name_verification(http_server, tmp_path):
    import trustme

    from protocols import tls

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
