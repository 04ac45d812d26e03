"""The HTTP/1.1 client against hostile or broken servers (issue 13), with scripted
servers over real sockets: a response too many (in the same write, or later while
the connection sits idle in the pool) never reaches the next request; silent servers,
endless interim responses and stalled bodies time out; URLs and methods that would
change the request line are refused with typed errors."""

from __future__ import annotations

import time

import pytest

import greenrt
from greenrt.protocols.http1.client import Client

from ...scripted_peer import ScriptedPeer


def _resp(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


class ScriptedHTTP(ScriptedPeer):
    """Answers each request with its path as the body; ``extra(n)`` bytes follow the
    n-th response in the same write, ``late(n)`` bytes 100 ms later."""

    def __init__(self, extra=lambda n: b"", late=lambda n: b""):
        self.extra, self.late, self.n = extra, late, 0
        super().__init__(self._serve)

    def _serve(self, c):
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            head, buf = buf.split(b"\r\n\r\n", 1)
            path = head.split(b" ")[1]
            n = self.n
            self.n += 1
            c.sendall(_resp(path) + self.extra(n))
            if self.late(n):
                time.sleep(0.1)
                c.sendall(self.late(n))


def _get_all(port, paths, pause=0.0):
    def main():
        with Client(max_connections_per_host=1) as c:
            out = []
            for p in paths:
                out.append(c.request("GET", f"http://127.0.0.1:{port}{p}").read())
                if pause:
                    greenrt.sleep(pause)
            return out, c.statistics()

    return greenrt.run(main)


def test_a_second_response_in_the_same_write_is_never_delivered():
    srv = ScriptedHTTP(extra=lambda n: _resp(b"INJECTED") if n == 0 else b"")
    try:
        out, st = _get_all(srv.port, ["/a", "/b", "/c"])
    finally:
        srv.close()
    assert out == [b"/a", b"/b", b"/c"]
    assert st["discard_reasons"].get("decoder_buffered", 0) + st["discard_reasons"].get("socket_readable", 0) == 1
    assert srv.connections == 2


def test_a_response_arriving_while_idle_is_never_delivered():
    srv = ScriptedHTTP(late=lambda n: _resp(b"LATE") if n == 0 else b"")
    try:
        out, st = _get_all(srv.port, ["/a", "/b", "/c"], pause=0.3)
    finally:
        srv.close()
    assert out == [b"/a", b"/b", b"/c"]
    assert st["discard_reasons"] == {"idle_unread": 1}


# -- client timeouts and interim responses (issue 13) -----------------------------------

class _RawServer(ScriptedPeer):
    """Reads one request head per connection and then runs ``script(conn)``."""

    def __init__(self, script):
        self.script = script
        super().__init__(self._serve)

    def _serve(self, c):
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = c.recv(65536)
            if not d:
                return
            buf += d
        self.script(c)


def _client_call(port, limits, read_body=True):
    def main():
        with Client(**({"limits": limits} if limits is not None else {})) as c:
            r = c.request("GET", f"http://127.0.0.1:{port}/")
            return r.read() if read_body else r.status

    return greenrt.run(main)


def test_a_silent_server_ends_the_request_after_header_timeout():
    from greenrt.protocols.http import Limits
    from greenrt.protocols.http.errors import RequestTimeout

    srv = _RawServer(lambda c: time.sleep(3))
    try:
        with pytest.raises(RequestTimeout, match="response head"):
            _client_call(srv.port, Limits(header_timeout=0.2))
    finally:
        srv.close()


def test_an_endless_102_stream_is_cut_off():
    from greenrt.protocols.http import Limits
    from greenrt.protocols.http.errors import ProtocolError

    def script(c):
        for _ in range(1000):
            c.sendall(b"HTTP/1.1 102 Processing\r\n\r\n")
            time.sleep(0.001)

    srv = _RawServer(script)
    try:
        with pytest.raises(ProtocolError) as ei:
            _client_call(srv.port, Limits(header_timeout=None, max_informational_responses=5))
        assert ei.value.code == "too_many_informational"
    finally:
        srv.close()


def test_a_stalled_body_ends_after_body_idle_timeout():
    from greenrt.protocols.http import Limits
    from greenrt.protocols.http.errors import RequestTimeout

    def script(c):
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
        time.sleep(3)

    srv = _RawServer(script)
    try:
        with pytest.raises(RequestTimeout, match="response body"):
            _client_call(srv.port, Limits(body_idle_timeout=0.2))
    finally:
        srv.close()


# -- typed client errors for URLs and methods (issue 13) -------------------------------

@pytest.mark.parametrize("url", ["http://127.0.0.1:1/a\r\nEvil: 1", "http://127.0.0.1:1/a\nb",
                                 "http://127.0.0.1:1/a b", "http://127.0.0.1:1/a\tb",
                                 "http://127.0.0.1:1/?q=\r\n", "http://127.0.0.1:1/\x00"])
def test_urls_that_would_change_the_request_line_are_refused(url):
    from greenrt.protocols.http import InvalidURL

    def main():
        with Client() as c:
            c.request("GET", url)

    with pytest.raises(InvalidURL):
        greenrt.run(main)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/", "gopher://x/"])
def test_unsupported_schemes_are_typed(url):
    from greenrt.protocols.http import UnsupportedScheme

    def main():
        with Client() as c:
            c.request("GET", url)

    with pytest.raises(UnsupportedScheme):
        greenrt.run(main)


def test_a_redirect_to_an_unsupported_scheme_is_typed():
    from greenrt.protocols.http import UnsupportedScheme

    srv = _RawServer(lambda c: c.sendall(b"HTTP/1.1 302 Found\r\nLocation: file:///etc/passwd\r\n"
                                         b"Content-Length: 0\r\n\r\n"))
    try:
        with pytest.raises(UnsupportedScheme):
            _client_call(srv.port, None)
    finally:
        srv.close()


def test_non_ascii_paths_are_percent_encoded():
    seen = []

    def script(c):
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    class _Capture(_RawServer):
        def _serve(self, c):
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += c.recv(65536)
            seen.append(buf.split(b"\r\n", 1)[0])
            script(c)

    srv = _Capture(script)
    try:
        def main():
            with Client() as c:
                return c.request("GET", f"http://127.0.0.1:{srv.port}/caf\u00e9/\u6771?q=\u00fc&r=%41").status

        assert greenrt.run(main) == 200
    finally:
        srv.close()
    assert seen == [b"GET /caf%C3%A9/%E6%9D%B1?q=%C3%BC&r=%41 HTTP/1.1"]


@pytest.mark.parametrize("method", ["GE T", "GET\r\n", "", "G\x00T"])
def test_bad_methods_raise_the_projects_own_error(method):
    from greenrt.protocols.http import LocalProtocolError

    def main():
        with Client() as c:
            c.request(method, "http://127.0.0.1:1/")

    with pytest.raises(LocalProtocolError, match="invalid HTTP method"):
        greenrt.run(main)
