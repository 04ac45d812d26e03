"""WSGI on greenrt: Flask through WSGIAdapter (environ, streaming wsgi.input,
start_response semantics incl. exc_info, write()), and real gunicorn with our worker
class serving a Flask app."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import textwrap

import flask  # installed by the test extra: a missing flask must fail, not skip
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


@pytest.mark.interop
def test_gunicorn_with_our_worker_serves_flask(tmp_path):
    import gunicorn  # noqa: F401 - installed by the test extra
    (tmp_path / "gapp.py").write_text(APP_MODULE)
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{tmp_path}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-k", "greenrt.protocols.http.gunicorn_worker.Worker",
         "-w", "2", "-b", f"127.0.0.1:{port}", "--graceful-timeout", "5", "gapp:app"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc)

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
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out = proc.communicate(timeout=30)[0].decode()
        except subprocess.TimeoutExpired:
            proc.kill()
            out = proc.communicate()[0].decode()
    assert proc.returncode == 0, out
    assert "Traceback" not in out, out
