"""Fixtures for the HTTP/2 tests: a real server on loopback (``h2_server``) served by
``serve_connection`` through greenrt's accept loop, and raw-socket helpers."""

from __future__ import annotations

import collections
import socket
import threading
import time

import pytest

import greenrt
from greenrt import net
from greenrt.protocols.http2 import DEFAULT_H2_LIMITS, serve_connection


class H2ServerThread:
    def __init__(self, handler, limits=DEFAULT_H2_LIMITS):
        self.handler = handler
        self.limits = limits
        self.errors: list[dict] = []
        self.stream_starts = 0
        self.conns: list = []
        self.events: collections.Counter = collections.Counter()
        self.event_log: list = []
        self._ready = threading.Event()
        self._exc = None
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _instrument(self, ev) -> None:
        if ev.kind.startswith("http2."):
            self.events[ev.kind] += 1
            if len(self.event_log) < 10000:
                self.event_log.append((ev.kind, dict(ev.data)))
        if ev.kind == "protocol.error" and ev.data.get("protocol") == "http2":
            self.errors.append(dict(ev.data))
        elif ev.kind == "http2.stream":
            self.stream_starts += 1

    def _main(self) -> None:
        from greenrt import lowlevel

        def handle(stream):
            try:
                self.conns.append(serve_connection(stream, self.handler, limits=self.limits))
            finally:
                stream.close()

        def main():
            self.hub = lowlevel.current_hub()
            lst = net.listen_tcp("127.0.0.1", 0)
            self.srv = net.Server([lst], handle, name="http2-test")
            self.port = self.srv.addresses[0][1]
            self._ready.set()
            self.srv.serve()

        try:
            greenrt.run(main, instruments=[self._instrument])
        except BaseException as e:
            self._exc = e
            self._ready.set()

    def start(self):
        self.thread.start()
        assert self._ready.wait(10), "server did not start"
        if self._exc is not None:
            raise self._exc
        return self

    def begin_shutdown(self) -> None:
        """Start the server's graceful shutdown (net.Server.shutdown: each connection
        is cancelled with reason SHUTDOWN) without waiting for it."""
        self.hub.call_soon_threadsafe(self.srv.shutdown)

    def stop(self) -> None:
        if self.thread.is_alive():
            self.hub.call_soon_threadsafe(self.srv.shutdown)
            self.thread.join(15)
        assert not self.thread.is_alive(), "server did not shut down"

    def codes(self) -> list:
        return [e.get("code") for e in list(self.errors)]

    def wait_for_event(self, kind: str, count: int = 1, timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.events[kind] >= count:
                return True
            time.sleep(0.01)
        return False

    def wait_for_code(self, code: str, timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if code in self.codes():
                return True
            time.sleep(0.01)
        return False


@pytest.fixture
def h2_server():
    started: list[H2ServerThread] = []

    def start(handler, limits=DEFAULT_H2_LIMITS) -> H2ServerThread:
        st = H2ServerThread(handler, limits).start()
        started.append(st)
        return st

    yield start
    for st in started:
        st.stop()


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s
