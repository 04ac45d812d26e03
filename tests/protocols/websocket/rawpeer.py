"""A raw-socket WebSocket peer for the Autobahn-style tests: hand-built frames (any
opcode, reserved bits, masking, lengths that lie) over a real loopback connection."""

import base64
import os
import struct
import zlib

from greenrt import net


def frame(opcode, payload=b"", *, fin=True, rsv=0, mask=True, length=None):
    """One frame; ``rsv`` is the 3 reserved bits as an int (4 = RSV1); ``length``
    overrides the declared payload length."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    m = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, m | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, m | 126, n)
    else:
        head = struct.pack("!BBQ", b0, m | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    masked = bytes(c ^ key[i % 4] for i, c in enumerate(payload)) if len(payload) < 4096 else \
        _xor(payload, key)
    return head + key + masked


def _xor(data, key):
    n = len(data)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def close_frame(code=None, reason=b"", **kw):
    payload = b"" if code is None else struct.pack("!H", code) + reason
    return frame(0x8, payload, **kw)


def deflate(data):
    c = zlib.compressobj(wbits=-15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


class RawClient:
    """Client half: handshake by hand, then frames."""

    def __init__(self, port, *, extensions=None, headers=b""):
        self.stream = net.open_tcp("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16))
        req = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n" + headers)
        if extensions:
            req += b"Sec-WebSocket-Extensions: " + extensions + b"\r\n"
        self.stream.send_all(req + b"\r\n")
        self.buf = bytearray()
        while b"\r\n\r\n" not in self.buf:
            d = self.stream.recv(65536)
            assert d, "EOF during handshake"
            self.buf += d
        i = self.buf.index(b"\r\n\r\n") + 4
        self.response_head = bytes(self.buf[:i])
        del self.buf[:i]

    def send(self, data):
        self.stream.send_all(data)

    def read_frame(self):
        """(fin, rsv, opcode, payload) of the next frame, or None at EOF."""
        while True:
            f = self._parse()
            if f is not None:
                return f
            d = self.stream.recv(1 << 20)
            if not d:
                return None
            self.buf += d

    def _parse(self):
        b = self.buf
        if len(b) < 2:
            return None
        assert not b[1] & 0x80, "server frames are never masked"
        n = b[1] & 0x7F
        off = 2
        if n == 126:
            if len(b) < 4:
                return None
            n = struct.unpack("!H", b[2:4])[0]
            off = 4
        elif n == 127:
            if len(b) < 10:
                return None
            n = struct.unpack("!Q", b[2:10])[0]
            off = 10
        if len(b) < off + n:
            return None
        f = (bool(b[0] & 0x80), (b[0] >> 4) & 7, b[0] & 0xF, bytes(b[off:off + n]))
        del b[:off + n]
        return f

    def read_message(self):
        """The next data message (opcode, payload), skipping pongs."""
        parts, op = [], None
        while True:
            f = self.read_frame()
            assert f is not None, "EOF before a message"
            fin, _, opcode, payload = f
            if opcode == 0xA:
                continue
            if opcode == 0x8:
                return 0x8, payload
            if op is None:
                op = opcode
            parts.append(payload)
            if fin:
                return op, b"".join(parts)

    def read_close(self):
        """The close code the server sent (skipping anything before it), then
        asserts the server closes TCP. Returns (code, reason)."""
        while True:
            f = self.read_frame()
            assert f is not None, "EOF without a Close frame"
            if f[2] == 0x8:
                payload = f[3]
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                return code, payload[2:]

    def expect_eof(self):
        """Wait until the server closes TCP. A reset counts: a server that stops
        reading after a limit closes with our unread bytes in its buffer, and the
        kernel answers those with RST."""
        while True:
            try:
                f = self.read_frame()
            except net.BrokenStreamError:
                return
            if f is None:
                return

    def close(self):
        self.stream.close()
