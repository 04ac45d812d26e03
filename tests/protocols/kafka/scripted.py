"""A scripted Kafka broker for the fault cases a real broker does not produce: each
request frame is answered with ``respond(api_key, version, correlation_id, n, port) ->
bytes`` (raw bytes to write, size prefixes included; ``n`` counts requests over all
connections)."""

from __future__ import annotations

import struct

from ...scripted_peer import ScriptedPeer


class ScriptedBroker(ScriptedPeer):
    def __init__(self, respond):
        self.respond = respond
        self.n = 0
        super().__init__(self._serve)

    def _serve(self, conn):
        buf = b""
        while True:
            while len(buf) < 4 or len(buf) < 4 + struct.unpack(">i", buf[:4])[0]:
                d = conn.recv(65536)
                if not d:
                    return
                buf += d
            size = struct.unpack(">i", buf[:4])[0]
            frame, buf = buf[4:4 + size], buf[4 + size:]
            api_key, version, cid = struct.unpack(">hhi", frame[:8])
            out = self.respond(api_key, version, cid, self.n, self.port)
            self.n += 1
            if out:
                conn.sendall(out)
