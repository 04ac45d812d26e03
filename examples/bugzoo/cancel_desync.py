"""Bug zoo: a cancellation between send and receive desynchronizes a protocol.

A client keeps one connection to a key-value server (over ``lab.net``'s simulated
TCP) and sends ``GET key`` / reads one reply line per request. Request ``a`` runs in
its own task; a watchdog cancels it if it has not finished after a few steps. If the
cancellation lands after the request was sent but before its reply was read, the
reply stays in the stream — and the next request on the same connection reads it:
``GET b`` returns ``a``'s value. (The fix: a connection with a reply in flight must
be closed, never reused — the Redis CVE-2023-28858 class.) Caught by the program's
assertion. ``main_unsupervised`` has no watchdog: there the lab's cancellation
injection (``inject="all"``, ``inject_tasks="request-*"``) provides the cancellation.
"""

from __future__ import annotations

import greenrt
import greenrt.lab.net as lnet
from greenrt import net

SERVER = "10.0.0.2"
PORT = 6400


def _serve_one(stream) -> None:
    buf = b""
    with stream:
        while True:
            data = stream.recv(1024)
            if not data:
                return
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                key = line.decode().split()[1]
                stream.send_all(f"value-of-{key}\n".encode())


def _server(listener) -> None:
    with lnet.host(SERVER):
        with greenrt.region(name="conns") as r:
            while True:
                s = listener.accept()
                r.spawn(_serve_one, s, name="conn")


class Client:
    def __init__(self, stream):
        self.stream = stream
        self.buf = b""

    def get(self, key: str) -> str:
        self.stream.send_all(f"GET {key}\n".encode())
        while b"\n" not in self.buf:  # BUG: cancelled here, the reply stays unread
            data = self.stream.recv(1024)
            if not data:
                raise ConnectionError("server closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()


def _run(watchdog: bool) -> dict:
    results: dict = {}
    with greenrt.region(name="main") as top:
        with lnet.host(SERVER):
            listener = net.listen_tcp(SERVER, PORT)
        srv = top.spawn(_server, listener, name="server")
        client = Client(net.open_tcp(SERVER, PORT))

        def request(key: str) -> None:
            results[key] = client.get(key)

        with greenrt.region(name="request-a") as r:
            t = r.spawn(request, "a", name="request-a")
            if watchdog:
                def watch() -> None:
                    for _ in range(3):
                        greenrt.checkpoint()
                    if not t.done:
                        t.cancel("watchdog: request-a too slow")
                r.spawn(watch, name="watchdog")
        with greenrt.region(name="request-b") as r:
            r.spawn(request, "b", name="request-b")
        client.stream.close()
        srv.cancel()
    assert results.get("b") == "value-of-b", f"desynchronized: GET b returned {results.get('b')!r}"
    return results


def main() -> dict:
    return _run(watchdog=True)


def main_unsupervised() -> dict:
    return _run(watchdog=False)
