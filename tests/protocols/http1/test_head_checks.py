"""Request-target, Host and control-character rules (issue 13; RFC 9112 §3.2–3.3,
RFC 9110 §5.5, §7.2), checked in the sans-IO layer for any segmentation and over a
real socket, plus the chunk-size whitespace rule and the absolute-form Host rule in
the WSGI environ."""

from __future__ import annotations

import pytest

from greenrt.protocols.http import Limits, Response, WSGIAdapter
from greenrt.protocols.http1 import CLIENT

REFUSED = {
    "host_list": b"GET / HTTP/1.1\r\nHost: a.example, b.example\r\n\r\n",
    "host_space": b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
    "host_at": b"GET / HTTP/1.1\r\nHost: user@a.example\r\n\r\n",
    "asterisk_get": b"GET * HTTP/1.1\r\nHost: x\r\n\r\n",
    "relative_target": b"GET abc HTTP/1.1\r\nHost: x\r\n\r\n",
    "ctl_01_in_value": b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n",
    "del_in_value": b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x7fb\r\n\r\n",
    "vt_in_value": b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x0bb\r\n\r\n",
    "chunk_size_trailing_space": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  b"5 \r\nhello\r\n0\r\n\r\n"),
}

ACCEPTED = {
    "options_asterisk": b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    "absolute_form": b"GET http://a.example/p?q HTTP/1.1\r\nHost: other\r\n\r\n",
    "host_port": b"GET / HTTP/1.1\r\nHost: a.example:8080\r\n\r\n",
    "host_ipv6": b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
    "empty_host": b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
    "htab_in_value": b"GET / HTTP/1.1\r\nHost: x\r\nX: a\tb\r\n\r\n",
    "chunk_ext": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"5;ext=1\r\nhello\r\n0\r\n\r\n"),
}


@pytest.mark.parametrize("mode", ["one", "bytes"])
@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused(h1, name, mode):
    tr = h1.transcript(h1.segments(REFUSED[name], mode), eof=False)
    assert tr[-1][0] == "error" and tr[-1][1] == "BadRequest" and tr[-1][3] == 400, tr


@pytest.mark.parametrize("mode", ["one", "bytes"])
@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_accepted(h1, name, mode):
    tr = h1.transcript(h1.segments(ACCEPTED[name], mode), eof=False)
    assert not any(e[0] == "error" for e in tr), tr
    assert any(e[0] == "request" for e in tr)


@pytest.mark.parametrize("mode", ["one", "bytes"])
@pytest.mark.parametrize("value", [b"a\x01b", b"a\x7fb", b"a\x1fb"])
def test_client_refuses_control_characters_in_response_headers(h1, value, mode):
    raw = b"HTTP/1.1 200 OK\r\nX: " + value + b"\r\nContent-Length: 0\r\n\r\n"
    tr = h1.transcript(h1.segments(raw, mode), role=CLIENT, eof=False)
    assert tr[-1][:3] == ("error", "BadRequest", "ctl_in_head"), tr


def test_control_characters_refused_over_a_socket(http_server, net_helpers):
    srv = http_server(lambda req: Response(200, body=b"ok"), Limits())
    for raw in (REFUSED["ctl_01_in_value"], REFUSED["host_list"], REFUSED["asterisk_get"]):
        s = net_helpers.connect(srv.port)
        s.sendall(raw)
        status, _, _ = net_helpers.read_response(s)
        s.close()
        assert status == 400


def test_absolute_form_authority_wins_over_host_in_wsgi(http_server, net_helpers):
    seen = {}

    def app(environ, start_response):
        seen.update(host=environ["HTTP_HOST"], name=environ["SERVER_NAME"],
                    path=environ["PATH_INFO"], query=environ["QUERY_STRING"])
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    srv = http_server(WSGIAdapter(app), Limits())
    s = net_helpers.connect(srv.port)
    s.sendall(b"GET http://a.example:8080/p?q=1 HTTP/1.1\r\nHost: evil.example\r\n\r\n")
    status, _, body = net_helpers.read_response(s)
    s.close()
    assert status == 200 and body == b"ok"
    assert seen == {"host": "a.example:8080", "name": "a.example", "path": "/p", "query": "q=1"}
