"""Helpers shared by the HTTP/1 tests (fixture ``h1``): drive the sans-IO layer over
a segmentation and record a normalized transcript."""

from __future__ import annotations

import types

import h11
import pytest

from greenrt.protocols.http import DEFAULT_LIMITS, HTTPError, Limits
from greenrt.protocols.http1 import CLIENT, NEED_DATA, SERVER, H1Connection
from greenrt.protocols.http1._connection import RequestHead


def segments(data: bytes, mode: str) -> list[bytes]:
    if mode == "one":
        return [data]
    if mode == "bytes":
        return [data[i:i + 1] for i in range(len(data))]
    raise ValueError(mode)


def transcript(data_segments, limits: Limits = DEFAULT_LIMITS, *, eof: bool = True,
               role: str = SERVER, request: h11.Request | None = None) -> list:
    """Feed ``data_segments`` to a fresh connection, answering each request with an
    empty 200, and return the normalized list of what happened (body data joined).
    On the server side this runs twice, through h11's send path and through the
    server's own response writer (``own_send``), and the transcripts must agree; the
    own path runs with its llhttp head parser (``LLHead``, when httptools is there),
    with only its one-pass regex head parser (``fast_request``) and with the gate
    alone, none of which may change a verdict either."""
    segs = list(data_segments)
    out = _transcript(segs, limits, eof, role, request, False)
    if role == SERVER:
        own = _transcript(segs, limits, eof, role, request, True)
        assert own == out, (own, out)
        gate_only = _transcript(segs, limits, eof, role, request, True, fast=False)
        assert gate_only == out, (gate_only, out)
        if H1Connection._llhttp_heads:
            regex_only = _transcript(segs, limits, eof, role, request, True, llhttp=False)
            assert regex_only == out, (regex_only, out)
    return out


def _transcript(data_segments, limits, eof, role, request, own_send, fast=True,
                llhttp=True) -> list:
    c = H1Connection(role, limits, own_send=own_send)
    c._fast_heads = fast
    if not llhttp:
        c._llhttp_heads = False
    out: list = []
    if role == CLIENT:
        c.send(request or h11.Request(method="GET", target="/", headers=[("host", "x")]))
        c.send(h11.EndOfMessage())

    def add_body(b):
        if out and out[-1][0] == "body":
            out[-1] = ("body", out[-1][1] + b)
        else:
            out.append(("body", b))

    def drain() -> bool:
        while True:
            try:
                ev = c.next_event()
            except HTTPError as e:
                out.append(("error", type(e).__name__, e.code, e.status))
                return False
            t = type(ev)
            if ev is NEED_DATA:
                return True
            if t is h11.Request or t is RequestHead:
                out.append(("request", ev.method, ev.target, list(ev.headers)))
            elif t in (h11.Response, h11.InformationalResponse):
                out.append(("response", ev.status_code, list(ev.headers)))
            elif t is h11.Data:
                add_body(bytes(ev.data))
            elif t is h11.EndOfMessage:
                out.append(("end", list(ev.headers)))
                if role == SERVER:
                    c.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
                    c.send(h11.EndOfMessage())
                if not c.reusable:
                    out.append(("not-reusable",))
                    return False
                if role == CLIENT:
                    return False
                c.start_next_cycle()
            elif t is h11.ConnectionClosed:
                out.append(("closed",))
                return False
            else:
                out.append(("other", repr(ev)))
                return False

    for seg in data_segments:
        c.receive_data(seg)
        if not drain():
            return out
    if eof:
        c.receive_data(b"")
        drain()
    return out


def verdict(tr: list):
    """The last entry: an error tuple or the final state."""
    return tr[-1]


@pytest.fixture(scope="session")
def h1():
    return types.SimpleNamespace(segments=segments, transcript=transcript, verdict=verdict)


# -- a real server in a background thread ---------------------------------------------------

import contextlib  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import greenrt  # noqa: E402


class ServerThread:
    """``greenrt.run`` in a thread serving ``handler`` with our HTTP/1.1 server on an
    ephemeral loopback port. ``errors`` collects ``protocol.error`` trace events."""

    def __init__(self, handler, limits: Limits = DEFAULT_LIMITS, **kw):
        self.handler = handler
        self.limits = limits
        self.kw = kw
        self.errors: list[dict] = []
        self.events: list = []
        self.server = None
        self.hub = None
        self.port = None
        self._ready = threading.Event()
        self._exc: BaseException | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _instrument(self, ev) -> None:
        if ev.kind == "protocol.error":
            self.errors.append(dict(ev.data))
        elif ev.kind.startswith(("http1.", "cancel.request", "http2.h2c", "http2.trailer")):
            self.events.append((ev.kind, dict(ev.data)))

    def _main(self) -> None:
        from greenrt import lowlevel
        from greenrt.protocols.http.server import serve

        def main():
            self.hub = lowlevel.current_hub()

            def ready(srv):
                self.server = srv
                self.port = srv.addresses[0][1]
                self._ready.set()

            serve(self.handler, "127.0.0.1", 0, limits=self.limits, on_ready=ready, **self.kw)

        try:
            greenrt.run(main, instruments=[self._instrument])
        except BaseException as e:  # reported by stop()
            self._exc = e
            self._ready.set()

    def start(self) -> ServerThread:
        self.thread.start()
        assert self._ready.wait(10), "server did not start"
        if self._exc is not None:
            raise self._exc
        return self

    def call(self, fn, *args) -> None:
        self.hub.call_soon_threadsafe(fn, *args)

    def shutdown(self) -> None:
        self.call(self.server.shutdown)

    def stop(self) -> None:
        if self.thread.is_alive():
            self.shutdown()
            self.thread.join(15)
        assert not self.thread.is_alive(), "server did not shut down"
        if self._exc is not None:
            raise self._exc

    def codes(self) -> list[str]:
        return [e.get("code") for e in list(self.errors)]

    def wait_for_code(self, code: str, timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if code in self.codes():
                return True
            time.sleep(0.01)
        return False


def wait_for_port(port: int, proc, timeout: float = 30) -> None:
    """Wait until something accepts on 127.0.0.1:``port`` (a server subprocess
    ``proc`` starting up); fail with its output if it exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)


@pytest.fixture
def http_server():
    """``http_server(handler, limits=..., **serve_kw)`` starts a ServerThread; all are
    shut down (gracefully) at the end of the test."""
    started: list[ServerThread] = []

    def start(handler, limits: Limits = DEFAULT_LIMITS, **kw) -> ServerThread:
        st = ServerThread(handler, limits, **kw).start()
        started.append(st)
        return st

    yield start
    for st in started:
        st.stop()


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def send(sock: socket.socket, data: bytes, mode: str = "one") -> bool:
    """Send ``data`` in one write or one byte per write; False if the peer went away."""
    try:
        if mode == "one":
            sock.sendall(data)
        else:
            for i in range(len(data)):
                sock.sendall(data[i:i + 1])
        return True
    except OSError:
        return False


def read_until_close(sock: socket.socket, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    out = bytearray()
    with contextlib.suppress(ConnectionResetError):
        while True:
            b = sock.recv(65536)
            if not b:
                break
            out += b
    return bytes(out)


def read_response(sock: socket.socket, timeout: float = 10.0) -> tuple[int, dict, bytes]:
    """Read one response with a fixed Content-Length or chunked body (test-side
    parser kept deliberately independent of ours: h11)."""
    sock.settimeout(timeout)
    c = h11.Connection(h11.CLIENT)
    c.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    c.send(h11.EndOfMessage())
    status, headers, body = None, {}, bytearray()
    while True:
        ev = c.next_event()
        if ev is h11.NEED_DATA:
            c.receive_data(sock.recv(65536))
            continue
        if type(ev) is h11.Response:
            status = ev.status_code
            headers = {k.decode(): v.decode() for k, v in ev.headers}
        elif type(ev) is h11.Data:
            body += ev.data
        elif type(ev) in (h11.EndOfMessage, h11.ConnectionClosed):
            return status, headers, bytes(body)


def status_of(raw: bytes) -> int | None:
    if not raw.startswith(b"HTTP/1.1 "):
        return None
    return int(raw[9:12])


@pytest.fixture(scope="session")
def net_helpers():
    return types.SimpleNamespace(connect=connect, send=send, read_until_close=read_until_close,
                                 read_response=read_response, status_of=status_of)
