"""A scripted TCP peer for fault cases a real server does not produce: a listening
socket on loopback whose accept loop runs ``serve(conn)`` in a thread per
connection. Shared by the protocol tests (Redis, HTTP/1.1 client, Kafka)."""

from __future__ import annotations

import socket
import threading


class ScriptedPeer:
    def __init__(self, serve):
        self.serve = serve
        self.connections = 0
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
            threading.Thread(target=self._run, args=(c,), daemon=True).start()

    def _run(self, c):
        with c:
            try:
                self.serve(c)
            except OSError:
                pass

    def close(self):
        # shutdown() wakes the thread blocked in accept(); close() alone does not, and
        # a leftover thread would keep the hub's deadlock detection from firing in
        # later tests (a live thread could wake a task).
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
