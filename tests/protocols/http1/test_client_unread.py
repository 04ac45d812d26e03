"""A response too many never reaches the next HTTP/1.1 client request (issue 13):
scripted servers over real sockets that answer with an extra, unsolicited response —
in the same write, or later while the connection sits idle in the pool."""

from __future__ import annotations

import socket
import threading
import time

import greenrt
from greenrt.protocols.http1.client import Client


def _resp(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


class ScriptedHTTP:
    """Answers each request with its path as the body; ``extra(n)`` bytes follow the
    n-th response in the same write, ``late(n)`` bytes 100 ms later."""

    def __init__(self, extra=lambda n: b"", late=lambda n: b""):
        self.extra, self.late, self.n, self.connections = extra, late, 0, 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        buf = b""
        with c:
            while True:
                while b"\r\n\r\n" not in buf:
                    try:
                        d = c.recv(65536)
                    except OSError:
                        return
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                path = head.split(b" ")[1]
                n = self.n
                self.n += 1
                try:
                    c.sendall(_resp(path) + self.extra(n))
                    if self.late(n):
                        time.sleep(0.1)
                        c.sendall(self.late(n))
                except OSError:
                    return

    def close(self):
        self.sock.close()


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
    assert st["discard_reasons"].get("parser_buffered", 0) + st["discard_reasons"].get("socket_readable", 0) == 1
    assert srv.connections == 2


def test_a_response_arriving_while_idle_is_never_delivered():
    srv = ScriptedHTTP(late=lambda n: _resp(b"LATE") if n == 0 else b"")
    try:
        out, st = _get_all(srv.port, ["/a", "/b", "/c"], pause=0.3)
    finally:
        srv.close()
    assert out == [b"/a", b"/b", b"/c"]
    assert st["discard_reasons"] == {"idle_unread": 1}
