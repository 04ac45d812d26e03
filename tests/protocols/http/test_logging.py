"""What the HTTP server tells a user (issue 21): a handler that raises is logged with
its traceback on ``greenrt.http`` (and still answered 500); an access log in the
combined format on ``greenrt.http.access``, opt-in like any library logging; nothing at
all without a handler configured (checked in a fresh interpreter)."""

from __future__ import annotations

import logging
import re
import socket
import subprocess
import sys

from greenrt.protocols.http import Response, WSGIAdapter


def _get(port: int, target: str = "/", headers: bytes = b"") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET " + target.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  + headers + b"\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return data


def test_a_failing_handler_is_logged_with_its_traceback(http_server, caplog):
    def handler(req):
        raise ZeroDivisionError("boom in the handler")

    srv = http_server(handler)
    with caplog.at_level(logging.ERROR, logger="greenrt.http"):
        assert _get(srv.port, "/fail").startswith(b"HTTP/1.1 500")
    recs = [r for r in caplog.records if r.name == "greenrt.http"]
    assert len(recs) == 1
    assert "handler failed on GET /fail" in recs[0].getMessage()
    assert recs[0].exc_info and recs[0].exc_info[0] is ZeroDivisionError


def test_a_failing_wsgi_app_is_logged(http_server, caplog):
    def app(environ, start_response):
        raise KeyError("missing setting")

    srv = http_server(WSGIAdapter(app))
    with caplog.at_level(logging.ERROR, logger="greenrt.http"):
        assert _get(srv.port, "/wsgi").startswith(b"HTTP/1.1 500")
    assert any(r.exc_info and r.exc_info[0] is KeyError for r in caplog.records
               if r.name == "greenrt.http")


def test_the_access_log_uses_the_combined_format(http_server, caplog):
    srv = http_server(lambda req: Response(201, body=b"hello"))
    with caplog.at_level(logging.INFO, logger="greenrt.http.access"):
        _get(srv.port, "/a?b=1", b"User-Agent: probe/1.0\r\nReferer: http://r/\r\n")
    lines = [r.getMessage() for r in caplog.records if r.name == "greenrt.http.access"]
    assert len(lines) == 1
    assert re.fullmatch(r'127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] '
                        r'"GET /a\?b=1 HTTP/1\.1" 201 5 "http://r/" "probe/1\.0"', lines[0]), lines[0]
    rec = [r for r in caplog.records if r.name == "greenrt.http.access"][0]
    assert (rec.http_status, rec.http_bytes, rec.http_method) == (201, 5, "GET")


def test_nothing_reaches_stderr_unless_logging_is_configured():
    prog = '''
import greenrt
from greenrt.protocols.http import serve, Response
from greenrt.protocols.http1 import Client

def main():
    ready = []
    with greenrt.region() as r:
        r.spawn(lambda: serve(lambda req: 1 / 0, "127.0.0.1", 0, on_ready=ready.append))
        while not ready:
            greenrt.sleep(0.001)
        with Client() as c:
            assert c.get(f"http://127.0.0.1:{ready[0].addresses[0][1]}/").status == 500
        ready[0].shutdown()

greenrt.run(main)
'''
    out = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stderr == "" and out.stdout == ""


GUNICORN_APP = '''
def app(environ, start_response):
    if environ["PATH_INFO"] == "/fail":
        raise RuntimeError("the app failed")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]
'''


def test_the_gunicorn_worker_writes_gunicorns_access_and_error_logs(tmp_path):
    import os
    import signal

    from ..http1.conftest import wait_for_port

    (tmp_path / "logapp.py").write_text(GUNICORN_APP)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    env = dict(os.environ, PYTHONPATH=f"{root}{os.pathsep}{tmp_path}")
    access, errors = tmp_path / "access.log", tmp_path / "error.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-k", "greenrt.protocols.http.gunicorn_worker.Worker",
         "-w", "1", "-b", f"127.0.0.1:{port}", "--access-logfile", str(access),
         "--access-logformat", 'ACCESS %(m)s %(U)s %(s)s %(B)s "%(a)s"',
         "--error-logfile", str(errors), "logapp:app"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc)
        assert _get(port, "/ok", b"User-Agent: probe/2\r\n").startswith(b"HTTP/1.1 200")
        assert _get(port, "/fail").startswith(b"HTTP/1.1 500")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    lines = access.read_text().splitlines()
    assert 'ACCESS GET /ok 200 5 "probe/2"' in lines, lines
    assert any(line.startswith("ACCESS GET /fail 500") for line in lines), lines
    err = errors.read_text()
    assert "handler failed on GET /fail" in err and "RuntimeError: the app failed" in err, err
