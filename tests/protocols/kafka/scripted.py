"""A scripted Kafka broker for the fault cases a real broker does not produce: a
thread that accepts one connection and answers each request frame with
``respond(api_key, version, correlation_id, n, port) -> bytes`` (raw bytes to write,
size prefixes included; ``n`` counts requests)."""

from __future__ import annotations

import socket
import struct
import threading


class ScriptedBroker:
    def __init__(self, respond):
        self.respond = respond
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.n = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        if True:
            with conn:
                buf = b""
                while True:
                    while len(buf) < 4 or len(buf) < 4 + struct.unpack(">i", buf[:4])[0]:
                        d = conn.recv(65536)
                        if not d:
                            break
                        buf += d
                    else:
                        size = struct.unpack(">i", buf[:4])[0]
                        frame, buf = buf[4:4 + size], buf[4 + size:]
                        api_key, version, cid = struct.unpack(">hhi", frame[:8])
                        out = self.respond(api_key, version, cid, self.n, self.port)
                        self.n += 1
                        if out:
                            conn.sendall(out)
                        continue
                    break

    def close(self):
        self.sock.close()
