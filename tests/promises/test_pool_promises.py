"""Pool promises, tried with a peer that lies about a length.

docs/architecture.md, "The unread-bytes rule": a connection goes back to the idle list
only if it is between exchanges and nothing is unread; "a reply too many ... never
reaches the next caller". tests/protocols/{base,redis,http1} try a whole extra reply
(in the same write, or arriving while idle). These try the length fields instead: a
reply whose declared length is *longer* than what the peer sends before hanging up
(a typed error, no hang, nothing reused), and one whose body runs *past* its declared
length (the surplus must not become the start of the next caller's reply).

Scripted peers over real sockets (tests/scripted_peer.py): a real redis-server or HTTP
server does not lie about lengths. Each connection the peer accepts gets the script
for its index, so a reused connection would show as a wrong answer.
"""

from __future__ import annotations

import pytest

import greenrt
from greenrt.protocols.base import errors as base_errors
from greenrt.protocols.http1.client import Client
from greenrt.protocols.redis import Redis
from greenrt.protocols.redis.resp import NEED_DATA, Decoder

from ..scripted_peer import ScriptedPeer


class _SendThenClose(bytes):
    """A reply after which the scripted peer hangs up."""


class PerConnection(ScriptedPeer):
    """Connection ``i`` answers its requests with ``replies(i, n, request)`` (bytes, or
    ``None``: hang up). ``split`` tells a request's end in the bytes received."""

    def __init__(self, replies, split):
        self.replies, self.split = replies, split
        self._index = 0
        super().__init__(self._serve)

    def _serve(self, c):
        i = self._index
        self._index += 1
        n = 0
        buf = b""
        while True:
            d = c.recv(65536)
            if not d:
                return
            buf += d
            while (got := self.split(buf)) is not None:
                req, buf = got
                out = self.replies(i, n, req)
                n += 1
                if out is None:
                    return
                c.sendall(out)
                if isinstance(out, _SendThenClose):
                    return


def _resp_split(buf):
    dec = Decoder()
    dec.receive_data(buf)
    cmd = dec.next_event()
    if cmd is NEED_DATA:
        return None
    return [bytes(x) for x in cmd], buf[len(buf) - dec.buffered:]


def _http_split(buf):
    if b"\r\n\r\n" not in buf:
        return None
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head.split(b" ")[1], rest


def _redis_gets(port, keys, retries):
    out = []

    def main():
        with Redis(port=port, protocol=2, max_connections=1, health_check_interval=None,
                   retries=retries) as r:
            for k in keys:
                try:
                    out.append(r.get(k))
                except base_errors.Error as e:     # typed: the floor's errors only
                    out.append(e)
            return r.pool.statistics()

    return out, greenrt.run(main)


def _redis_answer(lie):
    def replies(i, n, cmd):
        if cmd[0].upper() != b"GET":
            return b"+OK\r\n"
        key = cmd[1]
        if i == 0 and n == 0:
            return lie(key)
        return b"$%d\r\n%s\r\n" % (len(key), key)
    return replies


@pytest.mark.parametrize("lie, error", [
    # declares 100 bytes, sends 3, hangs up
    (lambda key: _SendThenClose(b"$100\r\nabc"), base_errors.ConnectionLost),
    # declares 3 elements, sends 1, hangs up
    (lambda key: _SendThenClose(b"*3\r\n$1\r\na\r\n"), base_errors.ConnectionLost),
    # declares 1 byte, sends 9 then the CRLF
    (lambda key: b"$1\r\n" + key + b"INJECTED\r\n", base_errors.ProtocolError),
    # declares 1 byte; what follows the CRLF is a well-formed reply too many
    (lambda key: b"$1\r\nX\r\n$8\r\nINJECTED\r\n", None),
])
@pytest.mark.parametrize("retries", [0, 1])
def test_redis_a_length_that_lies_never_reaches_the_next_caller(lie, error, retries):
    """With ``retries=1`` (the default) a read-only GET whose connection died inside
    the reply is retried once on a fresh connection and gets the honest answer."""
    srv = PerConnection(_redis_answer(lie), _resp_split)
    try:
        out, st = _redis_gets(srv.port, [b"a", b"b", b"c"], retries)
    finally:
        srv.close()
    if error is None:
        assert out[0] == b"X"
    elif error is base_errors.ConnectionLost and retries:
        assert out[0] == b"a"
    else:
        assert isinstance(out[0], error), repr(out[0])
    assert out[1:] == [b"b", b"c"]       # on a fresh connection, not the lying one
    assert srv.connections == 2
    assert st["discarded"] == 1




def _http_gets(port, paths):
    def main():
        out = []
        with Client(max_connections_per_host=1) as c:
            for p in paths:
                try:
                    out.append(c.request("GET", f"http://127.0.0.1:{port}{p}").read())
                except base_errors.Error as e:
                    out.append(e)
            return out, c.statistics()

    return greenrt.run(main)


def _ok(body):
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


@pytest.mark.parametrize("lie, error", [
    # Content-Length 100, 3 bytes, hang up (the client's verdict is a ProtocolError,
    # code incomplete_body; the server side says ClientDisconnected)
    (lambda p: _SendThenClose(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc"),
     base_errors.ProtocolError),
    # a chunk that declares 0x10 bytes and carries 3 before the hang-up
    (lambda p: _SendThenClose(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc"),
     base_errors.ProtocolError),
    # Content-Length 2, then a forged response head: the surplus is the "next reply"
    (lambda p: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK" + _ok(b"INJECTED"), None),
    # Content-Length 2, then garbage
    (lambda p: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOKxxxxxxxxxxxxxxxx", None),
])
def test_http1_a_length_that_lies_never_reaches_the_next_request(lie, error):
    def replies(i, n, path):
        if i == 0 and n == 0:
            return lie(path)
        return _ok(path)

    srv = PerConnection(replies, _http_split)
    try:
        out, st = _http_gets(srv.port, ["/a", "/b", "/c"])
    finally:
        srv.close()
    if error is None:
        assert out[0] == b"OK"
    else:
        assert isinstance(out[0], error), repr(out[0])
    assert out[1:] == [b"/b", b"/c"]
    assert srv.connections == 2
    assert sum(st["discard_reasons"].values()) >= (1 if error is None else 0), st
