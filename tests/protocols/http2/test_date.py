"""The ``Date`` field on HTTP/2 responses (RFC 9110 6.6.1: an origin server with a
clock sends it), as the HTTP/1.1 server does: taken from the hub's ``wall_time`` (the
virtual clock under the lab), formatted once per second, never added twice when the
handler sets its own. Real sockets (our server, our client and curl) and the lab."""

from __future__ import annotations

import email.utils
import re
import shutil
import subprocess
import time

import pytest

import greenrt
from greenrt.protocols import http, http2
from greenrt.protocols.http.model import Response
from greenrt.protocols.http2.server import date_value

pytestmark = pytest.mark.timeout(60)
# IMF-fixdate, RFC 9110 5.6.7
_IMF = re.compile(rb"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep"
                  rb"|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT\Z")


def _app(req):
    if req.path == "/own":
        return Response(200, [("date", "Sun, 06 Nov 1994 08:49:37 GMT")], b"own")
    if req.path == "/stream":
        req.writer.start(200, [("content-type", "text/plain")])
        req.writer.write(b"streamed")
        req.writer.finish()
        return None
    return Response(200, [("content-type", "text/plain")], b"ok")


def _serve(r):
    servers = []
    r.spawn(lambda: http.serve(_app, "127.0.0.1", 0, on_ready=servers.append))
    while not servers:
        greenrt.sleep(0)
    return servers[0], servers[0].addresses[0][1]


def _dates(headers) -> list[bytes]:
    return [v for k, v in headers.raw() if k == b"date"]


def test_h2_responses_carry_one_date_from_the_clock():
    def main():
        with greenrt.region() as r:
            srv, port = _serve(r)
            conn = http2.connect("127.0.0.1", port)
            got = {}
            for path in ("/", "/stream", "/own"):
                before = time.time()
                s = conn.open_stream("GET", path, end_stream=True)
                status, headers = s.response_headers()
                s.read_all()
                after = time.time()
                assert status == 200
                got[path] = (_dates(headers), before, after)
            conn.close()
            srv.shutdown()
        return got

    got = greenrt.run(main)
    for path in ("/", "/stream"):
        dates, before, after = got[path]
        assert len(dates) == 1, (path, dates)
        assert _IMF.match(dates[0]), dates
        stamp = email.utils.parsedate_to_datetime(dates[0].decode()).timestamp()
        # formatted from the clock at the response: whole seconds, so >= int(before)
        assert int(before) <= stamp <= after, (path, dates, before, after)
    # the handler's own Date stands, and is not doubled
    assert got["/own"][0] == [b"Sun, 06 Nov 1994 08:49:37 GMT"]


def test_date_is_formatted_once_per_second():
    a = date_value(784111777.2)
    assert a == b"Sun, 06 Nov 1994 08:49:37 GMT"
    assert date_value(784111777.9) is a  # the same second: the cached value
    assert date_value(784111778.0) == b"Sun, 06 Nov 1994 08:49:38 GMT"


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_curl_sees_a_date_over_h2c_prior_knowledge():
    def main():
        with greenrt.region() as r:
            srv, port = _serve(r)
            cmd = ["curl", "-sS", "-D", "-", "-o", "/dev/null", "--http2-prior-knowledge",
                   f"http://127.0.0.1:{port}/"]
            out = greenrt.to_thread(lambda: subprocess.run(cmd, capture_output=True, timeout=30))
            srv.shutdown()
        return out

    out = greenrt.run(main)
    assert out.returncode == 0, out.stderr
    head = out.stdout.splitlines()
    assert head[0].startswith(b"HTTP/2 200"), head
    dates = [ln.split(b":", 1)[1].strip() for ln in head if ln.lower().startswith(b"date:")]
    assert len(dates) == 1 and _IMF.match(dates[0]), head


def _lab_program() -> list[bytes]:
    from greenrt import net
    from greenrt.protocols.http2.server import ServerConnection

    def handle(stream):
        try:
            ServerConnection(stream, _app, http2.DEFAULT_H2_LIMITS, "http", None).run(b"")
        finally:
            stream.close()

    srv = net.Server([net.listen_tcp("127.0.0.1", 8080)], handle, name="h2date")
    dates = []
    with greenrt.region() as r:
        r.spawn(srv.serve)
        greenrt.sleep(2.5)  # virtual time: the Date follows the lab's clock
        conn = http2.connect("127.0.0.1", 8080)
        for _ in range(2):
            s = conn.open_stream("GET", "/", end_stream=True)
            dates += _dates(s.response_headers()[1])
            s.read_all()
            greenrt.sleep(1.0)
        conn.close()
        srv.shutdown()
    return dates


def test_under_the_lab_the_date_is_the_virtual_clock():
    import greenrt.lab as lab

    res = lab.run(_lab_program, seed=3)
    res.check()
    d0, d1 = res.value
    s0 = email.utils.parsedate_to_datetime(d0.decode()).timestamp()
    s1 = email.utils.parsedate_to_datetime(d1.decode()).timestamp()
    assert 2 <= s0 < 4 and s1 == s0 + 1, res.value  # virtual seconds since the epoch
