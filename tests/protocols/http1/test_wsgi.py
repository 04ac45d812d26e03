"""WSGI on greenrt: Flask through WSGIAdapter (environ, streaming wsgi.input,
start_response semantics incl. exc_info, write()), and real gunicorn with our worker
class serving a Flask app."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import textwrap

import flask  # installed by the test extra: a missing flask must fail, not skip
import h11
import pytest

import greenrt
from greenrt.protocols.http import WSGIAdapter
from greenrt.protocols.http1.client import Client

from .conftest import wait_for_port

ROOT = pathlib.Path(__file__).resolve().parents[3]


def make_flask_app():
    app = flask.Flask("greenrt_test")

    @app.route("/env/<path:rest>", methods=["GET", "POST"])
    def env(rest):
        e = flask.request.environ
        keys = ["REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE",
                "CONTENT_LENGTH", "SERVER_PROTOCOL", "SERVER_NAME", "SERVER_PORT",
                "REMOTE_ADDR", "HTTP_X_CUSTOM", "HTTP_X_MULTI", "HTTP_X_SPOOF", "wsgi.url_scheme",
                "wsgi.input_terminated", "wsgi.multiprocess"]
        out = {k: e.get(k) for k in keys}
        out["rest"] = rest
        out["args"] = flask.request.args.to_dict()
        out["version"] = list(e["wsgi.version"])
        return flask.jsonify(out)

    @app.route("/lines", methods=["POST"])
    def lines():
        n = 0
        total = 0
        for line in flask.request.environ["wsgi.input"]:
            n += 1
            total += len(line)
        return flask.jsonify({"lines": n, "bytes": total})

    @app.route("/form", methods=["POST"])
    def form():
        return flask.jsonify(flask.request.form.to_dict())

    @app.route("/stream")
    def stream():
        def gen():
            for i in range(5):
                yield f"row{i}\n"
        return flask.Response(gen(), mimetype="text/plain")

    @app.route("/boom")
    def boom():
        raise RuntimeError("handler failed")

    return app


def test_flask_through_the_adapter(http_server):
    srv = http_server(WSGIAdapter(make_flask_app()))
    base = f"http://127.0.0.1:{srv.port}"

    def main():
        with Client() as c:
            r = c.request("POST", f"{base}/env/a%20b/c?x=1&y=%C3%A9",
                          headers=[("x-custom", "v1"), ("x-multi", "a"), ("x-multi", "b"),
                                   ("x_spoof", "evil"), ("content-type", "text/plain")],
                          body=b"12345")
            assert r.status == 200
            e = json.loads(r.content)
            assert e["REQUEST_METHOD"] == "POST" and e["SCRIPT_NAME"] == ""
            assert e["PATH_INFO"] == "/env/a b/c" and e["rest"] == "a b/c"
            assert e["QUERY_STRING"] == "x=1&y=%C3%A9" and e["args"] == {"x": "1", "y": "é"}
            assert e["CONTENT_TYPE"] == "text/plain" and e["CONTENT_LENGTH"] == "5"
            assert e["SERVER_PROTOCOL"] == "HTTP/1.1" and e["SERVER_PORT"] == str(srv.port)
            assert e["SERVER_NAME"] == "127.0.0.1" and e["REMOTE_ADDR"] == "127.0.0.1"
            assert e["HTTP_X_CUSTOM"] == "v1" and e["HTTP_X_MULTI"] == "a,b"
            assert e["HTTP_X_SPOOF"] is None  # underscore header names are dropped
            assert e["wsgi.url_scheme"] == "http" and e["version"] == [1, 0]
            assert e["wsgi.input_terminated"] is True
            # wsgi.input streams a chunked body line by line
            body = (b"line %d\n" % i for i in range(1000))
            r = c.request("POST", f"{base}/lines", body=body)
            assert json.loads(r.content) == {"lines": 1000,
                                             "bytes": sum(len(b"line %d\n" % i) for i in range(1000))}
            r = c.request("POST", f"{base}/form", body=b"a=1&b=two",
                          headers={"content-type": "application/x-www-form-urlencoded"})
            assert json.loads(r.content) == {"a": "1", "b": "two"}
            r = c.get(f"{base}/stream")
            assert r.content == b"".join(b"row%d\n" % i for i in range(5))
            assert r.headers.get("transfer-encoding") == "chunked"
            r = c.get(f"{base}/boom")
            assert r.status == 500
            r = c.get(f"{base}/env/after-error")
            assert r.status == 200

    greenrt.run(main)


def raw_app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/write":
        write = start_response("201 Created", [("X-Api", "write")])
        write(b"imperative-")
        write(b"")
        return [b"iterable"]
    if path == "/exc-before":
        start_response("200 OK", [("X-First", "1")])
        try:
            raise ValueError("late failure")
        except ValueError:
            import sys as _sys
            start_response("500 Oops", [("Content-Type", "text/plain")], _sys.exc_info())
        return [b"replaced"]
    if path == "/exc-after":
        start_response("200 OK", [])

        def gen():
            yield b"partial"
            try:
                raise KeyError("too late")
            except KeyError:
                import sys as _sys
                start_response("500 Oops", [], _sys.exc_info())
            yield b"never"
        return gen()
    if path == "/twice":
        start_response("200 OK", [])
        start_response("200 OK", [])
        return [b"x"]
    if path == "/closing":
        class It:
            def __iter__(self):
                yield b"a"
                yield b"b"

            def close(self):
                CLOSED.append(True)
        start_response("200 OK", [])
        return It()
    if path == "/read":
        inp = environ["wsgi.input"]
        first = inp.read(3)
        rest = inp.read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [first + b"|" + rest]
    start_response("404 Not Found", [])
    return [b""]


CLOSED: list = []


def test_start_response_and_write_semantics(http_server, net_helpers):
    srv = http_server(WSGIAdapter(raw_app))
    base = f"http://127.0.0.1:{srv.port}"
    CLOSED.clear()

    def main():
        with Client() as c:
            r = c.get(f"{base}/write")
            assert (r.status, r.reason, r.content) == (201, "Created", b"imperative-iterable")
            assert r.headers.get("x-api") == "write"
            r = c.get(f"{base}/exc-before")
            assert (r.status, r.reason, r.content) == (500, "Oops", b"replaced")
            assert "x-first" not in r.headers
            r = c.get(f"{base}/twice")
            assert r.status == 500
            r = c.get(f"{base}/closing")
            assert r.content == b"ab" and CLOSED == [True]
            r = c.request("POST", f"{base}/read", body=b"0123456789")
            assert r.content == b"012|3456789"
            r = c.get(f"{base}/missing")
            assert (r.status, r.content) == (404, b"")

    greenrt.run(main)
    # exc_info after the head went out: the error propagates and the connection is cut
    s = net_helpers.connect(srv.port)
    s.sendall(b"GET /exc-after HTTP/1.1\r\nHost: x\r\n\r\n")
    raw = net_helpers.read_until_close(s)
    assert raw.startswith(b"HTTP/1.1 200") and b"partial" in raw and b"never" not in raw
    assert not raw.endswith(b"0\r\n\r\n")


# -- gunicorn with our worker -------------------------------------------------------------------

APP_MODULE = textwrap.dedent('''
    import os
    import flask

    app = flask.Flask("gunicorn_greenrt")

    @app.route("/")
    def index():
        return "hello from pid %d" % os.getpid()

    @app.route("/echo", methods=["POST"])
    def echo():
        return flask.request.get_data()
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _gunicorn_with_our_worker(tmp_path, *args: str):
    """gunicorn serving APP_MODULE with our worker; yields the port. On leaving: SIGTERM,
    and the arbiter must exit 0 with no traceback in its output."""
    import gunicorn  # noqa: F401 - installed by the test extra: missing must fail, not skip
    (tmp_path / "gapp.py").write_text(APP_MODULE)
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{tmp_path}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-k", "greenrt.protocols.http.gunicorn_worker.Worker",
         "-b", f"127.0.0.1:{port}", *args, "gapp:app"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out = proc.communicate(timeout=30)[0].decode()
        except subprocess.TimeoutExpired:
            proc.kill()
            out = proc.communicate()[0].decode()
    assert proc.returncode == 0, out
    assert "Traceback" not in out, out


@pytest.mark.interop
def test_gunicorn_with_our_worker_serves_flask(tmp_path):
    with _gunicorn_with_our_worker(tmp_path, "-w", "2", "--graceful-timeout", "5") as port:

        def main():
            pids = set()
            for _ in range(20):
                with Client() as c:  # a new connection each time: spread over workers
                    r = c.get(f"http://127.0.0.1:{port}/")
                    assert r.status == 200 and r.content.startswith(b"hello from pid ")
                    pids.add(r.content)
            with Client() as c:
                r = c.request("POST", f"http://127.0.0.1:{port}/echo",
                              body=(b"%d," % i for i in range(500)))
                assert r.content == b"".join(b"%d," % i for i in range(500))
            return pids

        pids = greenrt.run(main)
        assert len(pids) >= 1


# -- the environ and the body framing, over raw keep-alive connections --------------------------

class _H11Client:
    """Requests over one socket, read with h11 (a parser independent of ours); each
    ``request`` returns ``(status, reason, headers, body)``."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn = h11.Connection(h11.CLIENT)

    def request(self, method: str, target: str, headers=(), body: bytes = b""):
        c = self.conn
        if c.our_state is h11.DONE:
            c.start_next_cycle()
        hdrs = list(headers)
        if not any(k.lower() == "host" for k, _ in hdrs):
            hdrs.insert(0, ("host", "x"))
        if body:
            hdrs.append(("content-length", str(len(body))))
        out = c.send(h11.Request(method=method, target=target, headers=hdrs))
        out += c.send(h11.Data(data=body)) if body else b""
        self.sock.sendall(out + c.send(h11.EndOfMessage()))
        return self.response()

    def response(self):
        c = self.conn
        status = reason = None
        headers: dict[str, str] = {}
        data = bytearray()
        while True:
            ev = c.next_event()
            if ev is h11.NEED_DATA:
                c.receive_data(self.sock.recv(65536))
            elif type(ev) is h11.Response:
                status, reason = ev.status_code, ev.reason.decode()
                headers = {k.decode(): v.decode() for k, v in ev.headers}
            elif type(ev) is h11.Data:
                data += ev.data
            elif type(ev) is h11.EndOfMessage:
                return status, reason, headers, bytes(data)
            else:
                raise AssertionError(f"unexpected {ev!r}")

    def close(self) -> None:
        self.sock.close()


ENV_KEYS = ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME",
            "SERVER_PORT", "REMOTE_ADDR", "REMOTE_PORT", "SERVER_PROTOCOL", "HTTP_HOST",
            "HTTP_X_DUP", "HTTP_X_LEAK", "CONTENT_TYPE", "CONTENT_LENGTH", "wsgi.url_scheme")


def env_app(environ, start_response):
    """``/mutate`` changes its environ; anything else answers the environ's keys."""
    if environ["PATH_INFO"] == "/mutate":
        environ["SCRIPT_NAME"] = "/mutated"
        environ["HTTP_X_LEAK"] = "leaked"
        environ["wsgi.errors"] = None
        del environ["wsgi.version"]
        start_response("200 OK", [])
        return [b"mutated"]
    out = {k: environ.get(k) for k in ENV_KEYS}
    out["errors"] = callable(getattr(environ.get("wsgi.errors"), "write", None))
    out["version"] = list(environ.get("wsgi.version", ()))
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(out).encode()]


def test_each_request_gets_its_own_environ_and_its_connections_addresses(http_server):
    # the environ is built from per-connection parts: they must follow the connection,
    # and what an application changes in one environ must not reach the next one
    srv = http_server(WSGIAdapter(env_app))
    a, b = _H11Client(srv.port), _H11Client(srv.port)
    try:
        for _ in range(2):
            for c, host in ((a, "a.example:8080"), (b, "[::1]:99")):
                assert c.request("GET", "/mutate", [("x-leak", "no")])[3] == b"mutated"
                st, _, _, body = c.request("GET", "/p%2Fq/%C3%A9/plain?x=%41", [
                    ("Host", host), ("X-Dup", "1"), ("x-dup", "2"),
                    ("Content-Type", "a/b"), ("content-type", "c/d")])
                e = json.loads(body)
                assert st == 200
                assert e["REMOTE_PORT"] == str(c.sock.getsockname()[1])
                assert e["REMOTE_ADDR"] == "127.0.0.1" and e["SERVER_PORT"] == str(srv.port)
                assert e["SCRIPT_NAME"] == "" and e["HTTP_X_LEAK"] is None
                assert e["errors"] is True and e["version"] == [1, 0]
                assert e["PATH_INFO"] == "/p/q/\u00c3\u00a9/plain"  # latin-1 text of the bytes
                assert e["QUERY_STRING"] == "x=%41" and e["REQUEST_METHOD"] == "GET"
                assert e["HTTP_HOST"] == host
                assert e["SERVER_NAME"] == {"a.example:8080": "a.example",
                                            "[::1]:99": "[::1]"}[host]
                assert e["HTTP_X_DUP"] == "1,2"  # repeated fields joined
                assert e["CONTENT_TYPE"] == "c/d" and e["CONTENT_LENGTH"] is None
                assert e["SERVER_PROTOCOL"] == "HTTP/1.1" and e["wsgi.url_scheme"] == "http"
        st, _, _, body = a.request("POST", "/x", body=b"12345")
        assert json.loads(body)["CONTENT_LENGTH"] == "5"
    finally:
        a.close()
        b.close()


class _ClosingList(list):
    closed = 0

    def close(self):
        type(self).closed += 1


def framing_app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/many":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _ClosingList([b"a", b"", bytearray(b"b"), b"c"])
    if path == "/big":  # more than the adapter joins: streamed, chunked
        start_response("200 OK", [])
        return _ClosingList([b"x" * 40000, b"y" * 40000])
    if path == "/empty":
        start_response("204 No Content", [])
        return []
    if path == "/own-length":
        start_response("200 OK", [("Content-Length", "3")])
        return (b"o", b"wn")
    if path == "/not-bytes":
        start_response("200 OK", [])
        return _ClosingList([b"ok", "text"])
    if path == "/no-start":
        return [b"x"]
    if path == "/bare-status":
        start_response("200", [])
        return [b"x"]
    if path == "/custom-reason":
        start_response("299 Fine Indeed", [])
        return [b"x"]
    if path == "/bad-status":
        start_response("OK 200", [])
        return [b"x"]
    if path in ("/int-value", "/bool-value"):  # equal keys in a cache: 1 == True
        start_response("200 OK", [("X-N", 1 if path == "/int-value" else True)])
        return [b"x"]
    if path.startswith("/inject"):
        hdr = {"/inject-value": ("X-A", "v\r\nInjected: 1"),
               "/inject-name": ("X-A\r\nInjected", "1"),
               "/inject-nul": ("X-A", "v\x00")}[path]
        start_response("200 OK", [hdr])
        return [b"x"]
    if path == "/gen":
        def gen():
            try:
                yield b"g1"
                yield b"g2"
            finally:
                GEN_CLOSED.append(True)
        start_response("200 OK", [])
        return gen()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


GEN_CLOSED: list = []


def test_list_bodies_get_a_length_and_close_is_called_once(http_server):
    srv = http_server(WSGIAdapter(framing_app))
    c = _H11Client(srv.port)
    _ClosingList.closed = 0
    GEN_CLOSED.clear()
    try:
        st, _, h, body = c.request("GET", "/many")
        assert (st, body, h.get("content-length"), h.get("transfer-encoding")) == (
            200, b"abc", "3", None)
        assert _ClosingList.closed == 1
        st, _, h, body = c.request("GET", "/big")
        assert body == b"x" * 40000 + b"y" * 40000
        assert h.get("transfer-encoding") == "chunked" and "content-length" not in h
        assert _ClosingList.closed == 2
        st, _, h, body = c.request("GET", "/empty")
        assert (st, body) == (204, b"")
        st, _, h, body = c.request("GET", "/own-length")
        assert (st, body, h["content-length"]) == (200, b"own", "3")
        st, _, h, body = c.request("HEAD", "/many")
        assert (st, body, h["content-length"]) == (200, b"", "3")
        assert _ClosingList.closed == 3
        st, _, h, body = c.request("GET", "/gen")
        assert body == b"g1g2" and h.get("transfer-encoding") == "chunked"
        assert GEN_CLOSED == [True]
        st, reason, _, body = c.request("GET", "/bare-status")
        assert (st, reason, body) == (200, "OK", b"x")
        st, reason, _, body = c.request("GET", "/custom-reason")
        assert (st, reason, body) == (299, "Fine Indeed", b"x")
        st, _, _, body = c.request("GET", "/")
        assert (st, body) == (200, b"hello")
    finally:
        c.close()
    c = _H11Client(srv.port)
    try:
        for _ in range(2):  # the validated header fields are cached: still right
            st, _, h, _ = c.request("GET", "/int-value")
            assert (st, h["x-n"]) == (200, "1")
    finally:
        c.close()
    for path in ("/not-bytes", "/no-start", "/bad-status", "/bool-value"):
        c = _H11Client(srv.port)
        try:
            assert c.request("GET", path)[0] == 500, path
        finally:
            c.close()
    assert _ClosingList.closed == 4  # /not-bytes: closed, once, though it failed


def test_response_header_injection_is_refused(http_server, net_helpers):
    srv = http_server(WSGIAdapter(framing_app))
    for path in ("/inject-value", "/inject-name", "/inject-nul") * 2:  # refused again
        s = net_helpers.connect(srv.port)
        s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
        raw = net_helpers.read_until_close(s)
        s.close()
        assert raw.startswith(b"HTTP/1.1 500"), (path, raw)
        assert b"Injected" not in raw and b"X-A" not in raw.split(b"\r\n\r\n")[0], raw


def test_pipelined_requests_are_answered_in_order(http_server, net_helpers):
    srv = http_server(WSGIAdapter(framing_app))
    s = net_helpers.connect(srv.port)
    paths = ["/", "/many", "/gen", "/", "/own-length"] * 4
    s.sendall(b"".join(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % p.encode() for p in paths))
    c = _H11Client.__new__(_H11Client)
    c.sock, c.conn = s, h11.Connection(h11.CLIENT)
    want = {"/": b"hello", "/many": b"abc", "/gen": b"g1g2", "/own-length": b"own"}
    try:
        for p in paths:
            # the requests already left: make h11 expect each response in turn
            c.conn.send(h11.Request(method="GET", target=p, headers=[("host", "x")]))
            c.conn.send(h11.EndOfMessage())
            st, _, _, body = c.response()
            assert (st, body) == (200, want[p]), p
            c.conn.start_next_cycle()
    finally:
        s.close()


def reading_app(environ, start_response):
    data = environ["wsgi.input"].read()
    start_response("200 OK", [])
    return [b"%d" % len(data)]


def test_wsgi_input_is_bounded_by_the_body_limit(http_server, net_helpers):
    from greenrt.protocols.http import Limits

    srv = http_server(WSGIAdapter(reading_app), limits=Limits(max_body_bytes=100))
    c = _H11Client(srv.port)
    try:
        assert c.request("POST", "/", body=b"x" * 100)[3] == b"100"
    finally:
        c.close()
    for head in (b"Content-Length: 101\r\n\r\n" + b"x" * 101,
                 b"Transfer-Encoding: chunked\r\n\r\n" + b"40\r\n" + b"x" * 64 + b"\r\n"
                 + b"40\r\n" + b"x" * 64 + b"\r\n0\r\n\r\n"):
        s = net_helpers.connect(srv.port)
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n" + head)
        raw = net_helpers.read_until_close(s)
        s.close()
        assert raw.startswith(b"HTTP/1.1 413"), raw


def test_environ_caches_stay_bounded_whatever_clients_send():
    # the environ builder caches by field name, Host value and connection addresses,
    # all chosen by clients: each cache must stay bounded, and stay right
    from greenrt.protocols.http import EmptyBody, Headers, Request, build_environ, wsgi

    builder = wsgi._BUILDERS[False, False]
    for i in range(3 * wsgi._CACHE_MAX):
        req = Request("GET", f"/{i}", Headers([(f"x-h{i}", "v"), ("host", f"h{i}:1")]),
                      EmptyBody(), client=("10.0.0.1", i), server=("s", 80))
        env = build_environ(req)
        assert env[f"HTTP_X_H{i}"] == "v" and env["REMOTE_PORT"] == str(i)
        assert env["SERVER_NAME"] == f"h{i}" and env["PATH_INFO"] == f"/{i}"
    for cache in (wsgi._KEYS, wsgi._SERVER_NAMES, builder._bases):
        assert 0 < len(cache) <= wsgi._CACHE_MAX


@pytest.mark.interop
def test_gunicorn_max_requests_retires_our_worker(tmp_path):
    # --max-requests: the worker stops after that many requests and gunicorn starts a
    # new one (without it the worker passes the adapter itself to the server)
    import time

    with _gunicorn_with_our_worker(tmp_path, "-w", "1", "--max-requests", "3") as port:

        def main():
            pids = []
            deadline = time.monotonic() + 30
            while len(set(pids)) < 2 and time.monotonic() < deadline:
                with Client() as c:
                    r = c.get(f"http://127.0.0.1:{port}/")
                    assert r.status == 200
                    pids.append(r.content)
                greenrt.sleep(0.05)
            return pids

        pids = greenrt.run(main)
    assert len(set(pids)) == 2, pids
    assert pids.count(pids[0]) == 3, pids  # the first worker served exactly three


def test_wsgi_file_wrapper_sends_the_file_and_closes_it(http_server, tmp_path):
    import io

    data = bytes(range(256)) * 1000  # 256,000 bytes: several blocks
    (tmp_path / "blob").write_bytes(data)
    opened: list = []

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/disk":
            f = open(tmp_path / "blob", "rb")  # noqa: SIM115 - the wrapper closes it
            length = [("Content-Length", str(len(data)))]
        else:
            f = io.BytesIO(data[:5000])
            length = []
        opened.append(f)
        start_response("200 OK", length)
        return environ["wsgi.file_wrapper"](f, 4096)

    srv = http_server(WSGIAdapter(app))
    c = _H11Client(srv.port)
    try:
        st, _, h, body = c.request("GET", "/disk")
        assert (st, h["content-length"], body) == (200, str(len(data)), data)
        st, _, h, body = c.request("GET", "/memory")
        assert (st, h.get("transfer-encoding"), body) == (200, "chunked", data[:5000])
    finally:
        c.close()
    assert len(opened) == 2 and all(f.closed for f in opened)
