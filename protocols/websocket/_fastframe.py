"""The common frame, parsed and built without wsproto: one complete, unfragmented,
uncompressed text or binary message in one frame.

wsproto's frame layer is general (fragments, control frames, extensions, a
per-byte XOR masker in Python) and costs most of the time of an echo exchange. Almost
all traffic is the simple case, so the connection parses and builds that case here
and hands *every other frame*, whole, to wsproto: control frames, fragments and
continuations, frames with RSV bits, reserved opcodes, a wrong mask bit, non-minimal
length encodings, text that is not valid UTF-8, anything after a Close. wsproto then
applies every rule it applies today (and produces the same close codes), because it
sees exactly the frames it would have judged; the fast path only accepts frames
wsproto would have accepted and turned into one finished message. A differential
test (``tests/protocols/websocket/test_fastframe.py``) checks that claim against
wsproto on generated and hostile frames, and the fuzz target runs both paths.

Imports no greenrt (a codec module, see tests/test_layering.py).
"""

from __future__ import annotations

__all__ = ["build_frame", "header_at", "is_candidate", "unmask"]

OP_TEXT = 0x1
OP_BINARY = 0x2


def header_at(buf, pos: int):
    """The header of the frame starting at ``buf[pos]`` once it is complete:
    ``(b0, mask, start, length, minimal)`` — first byte, the 4-byte mask or ``None``,
    where the payload starts, its length, and whether the length used the shortest
    encoding (RFC 6455 §5.2). ``None`` while the header is incomplete. Allocates only
    the header's few bytes, whatever the length says."""
    n = len(buf)
    if n - pos < 2:
        return None
    b1 = buf[pos + 1]
    length = b1 & 0x7F
    p = pos + 2
    minimal = True
    if length == 126:
        if n - p < 2:
            return None
        length = int.from_bytes(buf[p:p + 2], "big")
        p += 2
        minimal = length >= 126
    elif length == 127:
        if n - p < 8:
            return None
        length = int.from_bytes(buf[p:p + 8], "big")
        p += 8
        minimal = 65536 <= length < (1 << 63)
    if b1 & 0x80:
        if n - p < 4:
            return None
        mask = bytes(buf[p:p + 4])
        p += 4
    else:
        mask = None
    return buf[pos], mask, p, length, minimal


def is_candidate(b0: int, b1: int, expect_mask: bool) -> bool:
    """Judged from a frame's first two bytes: FIN set, RSV clear, text or binary, the
    mask bit as the role requires. Only such a frame is kept for the fast path; any
    other is handed to wsproto at once (so wsproto judges a bad header as soon as it
    would have)."""
    return (b0 == 0x80 | OP_TEXT or b0 == 0x80 | OP_BINARY) and bool(b1 & 0x80) == expect_mask


def unmask(payload, mask: bytes) -> bytes:
    """XOR ``payload`` with the repeating 4-byte ``mask`` (one big-int XOR: linear, and
    about a hundred times faster than a Python byte loop)."""
    n = len(payload)
    if n == 0:
        return b""
    key = (mask * ((n >> 2) + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def build_frame(opcode: int, payload: bytes, mask: bytes | None) -> bytes:
    """One FIN frame carrying ``payload``; masked with ``mask`` (client side) or not."""
    n = len(payload)
    mbit = 0x80 if mask is not None else 0
    if n < 126:
        head = bytes((0x80 | opcode, mbit | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, mbit | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, mbit | 127)) + n.to_bytes(8, "big")
    if mask is None:
        return head + payload
    return head + mask + unmask(payload, mask)
