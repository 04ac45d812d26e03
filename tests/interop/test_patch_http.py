"""Unmodified requests, urllib3 and http.client through greenrt.patch, against the
stdlib's ``http.server`` (in a thread) and greenrt's own HTTP/1.1 server (a task of
the same hub).

Overlap is proven by the servers: a request on the "pair" path is answered only
once a second request is in flight at the same time (a barrier in the stdlib server,
an event in greenrt's), so with blocking clients the first request would wait for
the barrier's timeout and fail. No timing thresholds.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys

import pytest
import requests
import urllib3

import greenrt
import greenrt.patch as gp


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


SERVER_SCRIPT = r"""
import http.server, ssl, sys, threading

barrier = threading.Barrier(2)
release = threading.Event()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        status = 200
        if self.path.startswith("/pair"):
            try:
                barrier.wait(10)
            except threading.BrokenBarrierError:
                status = 500
        elif self.path == "/slow":
            release.wait(30)
        elif self.path == "/release":
            release.set()
        body = f"{self.path} {status}".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
httpd.daemon_threads = True
if len(sys.argv) > 1:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(sys.argv[1])
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
print(httpd.server_address[1], flush=True)
httpd.serve_forever()
"""


class StdlibServer:
    """The stdlib's ThreadingHTTPServer in a child process (so counting this
    process's fds counts the client's alone). ``/pair*`` answers once two such
    requests are in flight; ``/slow`` waits for ``/release``."""

    def __init__(self, cert_file=None):
        args = [sys.executable, "-c", SERVER_SCRIPT] + ([str(cert_file)] if cert_file else [])
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE)
        self.port = int(self.proc.stdout.readline())

    def url(self, path: str, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def close(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()


@pytest.fixture
def server():
    gp.unpatch()
    s = StdlibServer()  # its sockets and locks are created unpatched: a plain peer
    gp.patch_all()
    try:
        yield s
    finally:
        gp.unpatch()
        s.close()


def test_two_requests_gets_overlap(server):
    def main():
        out = []
        with greenrt.region() as r:
            for i in range(2):
                r.spawn(lambda i=i: out.append(requests.get(server.url(f"/pair{i}"), timeout=20).status_code))
        return out

    assert greenrt.run(main) == [200, 200]


def test_deadline_cancels_a_slow_get_and_leaves_no_fd(server):
    def main():
        requests.get(server.url("/warm"), timeout=5)  # imports and lazy init done
        before = fds()
        with pytest.raises(greenrt.TooSlowError):
            with greenrt.fail_after(0.1):
                requests.get(server.url("/slow"))
        assert fds() == before
        # and a session's pooled connection is not reused after the cancellation
        with requests.Session() as s:
            assert s.get(server.url("/a"), timeout=5).status_code == 200
            n = fds()
            with greenrt.move_on_after(0.1) as sc:
                s.get(server.url("/slow"))
            assert sc.cancelled_caught
            assert fds() == n - 1  # the cancelled request's connection was closed
            assert s.get(server.url("/release"), timeout=5).status_code == 200
            assert s.get(server.url("/b"), timeout=5).text == "/b 200"

    greenrt.run(main)


def test_region_cancel_stops_urllib3_requests(server):
    def main():
        pool = urllib3.PoolManager(maxsize=4)
        started = greenrt.Event()
        results = []

        def slow():
            started.set()
            pool.request("GET", server.url("/slow"))
            results.append("finished")  # must not happen

        with greenrt.region() as r:
            r.spawn(slow)
            r.spawn(slow)
            started.wait()
            greenrt.sleep(0.02)
            r.cancel()
        assert results == []
        # two requests in parallel on the same PoolManager
        out = []
        with greenrt.region() as r:
            for i in range(2):
                r.spawn(lambda i=i: out.append(pool.request("GET", server.url(f"/pair{i}")).status))
        assert out == [200, 200]
        pool.clear()

    greenrt.run(main)


def test_http_client_connections_overlap(server):
    def get(path):
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
        try:
            c.request("GET", path)
            resp = c.getresponse()
            return resp.status, resp.read()
        finally:
            c.close()

    def main():
        out = []
        with greenrt.region() as r:
            r.spawn(lambda: out.append(get("/pair-a")))
            r.spawn(lambda: out.append(get("/pair-b")))
        return sorted(out)

    assert greenrt.run(main) == [(200, b"/pair-a 200"), (200, b"/pair-b 200")]


def test_https_through_the_patched_ssl_module(tmp_path):
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert_file = tmp_path / "server.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    gp.unpatch()
    srv = StdlibServer(cert_file)
    gp.patch_all()
    try:
        def main():
            out = []
            with greenrt.region() as r:
                for i in range(2):
                    r.spawn(lambda i=i: out.append(
                        requests.get(srv.url(f"/pair{i}", "https"), verify=str(ca_file), timeout=20).text))
            before = fds()
            with pytest.raises(greenrt.TooSlowError):
                with greenrt.fail_after(0.1):
                    requests.get(srv.url("/slow", "https"), verify=str(ca_file))
            assert fds() == before
            return sorted(out)

        assert greenrt.run(main) == ["/pair0 200", "/pair1 200"]
    finally:
        gp.unpatch()
        srv.close()


def test_requests_against_greenrt_http_server_in_the_same_hub():
    from greenrt.protocols.http import serve
    from greenrt.protocols.http.model import Response

    gp.unpatch()
    gp.patch_all()
    try:
        def main():
            arrived = greenrt.Event()
            count = [0]

            def handler(request):
                count[0] += 1
                if count[0] == 2:
                    arrived.set()
                with greenrt.move_on_after(10):
                    arrived.wait()  # answers only when both requests are in flight
                return Response(200, body=b"pair" if arrived.is_set() else b"alone")

            ready = greenrt.Event()
            box = {}

            def on_ready(srv):
                box["srv"] = srv
                ready.set()

            with greenrt.region() as r:
                r.spawn(lambda: serve(handler, "127.0.0.1", 0, on_ready=on_ready))
                ready.wait()
                port = box["srv"].addresses[0][1]
                out = []
                with greenrt.region() as clients:
                    for _ in range(2):
                        clients.spawn(lambda: out.append(
                            requests.get(f"http://127.0.0.1:{port}/", timeout=20).text))
                box["srv"].shutdown()
            return out

        assert greenrt.run(main) == ["pair", "pair"]
    finally:
        gp.unpatch()
