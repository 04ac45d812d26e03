"""Fuzz target: the inbound frame path through our WebSocket adapter
(``protocols.websocket``: the header scanner, wsproto, the bounded inflater, the
ping cap and the message assembly), server role with permessage-deflate on.

Run with atheris::

    .venv/bin/python fuzz/fuzz_websocket.py /tmp/ws-scratch fuzz/corpus/websocket -max_total_time=60

Each input is the byte stream a client sends after the handshake. The adapter reads
it from an in-memory stream (no I/O: each ``recv`` returns the next piece, then EOF;
writes are discarded) inside one ``greenrt.run``. What one input checks:

* totality: ``recv()`` ends only with a message, ``ConnectionClosed`` or a
  ``WebSocketProtocolError``/``WebSocketLimitError`` (small limits, so limit paths run);
* segmentation independence: fed whole and fed in pieces (cut points derived from
  the input) gives the same messages and the same error type and close code;
* bounds: no message exceeds ``max_message_bytes`` and the inflater never holds
  more than the limit + 1;
* the fast path changes nothing: without compression, the same input through the
  fast frame path (``protocols.websocket._fastframe``) and through wsproto alone gives
  the same messages, the same error and close code, and the same bytes written back
  (pongs, the Close), whole and split.
"""

from __future__ import annotations

import sys

CORPUS = "corpus/websocket"

if __name__ == "__main__":  # pragma: no cover - only when run by atheris
    try:
        import atheris
    except ImportError:
        sys.exit("atheris is not installed; use fuzz/run_bounded.py for the fallback fuzzer")
    with atheris.instrument_imports():
        import greenrt
        from greenrt.protocols import websocket
else:
    import greenrt
    from greenrt.protocols import websocket

#: The documented errors of the receive path: nothing else may escape it.
EXPECTED_ERRORS = (websocket.WebSocketProtocolError, websocket.ConnectionClosed)

LIMITS = websocket.WebSocketLimits(max_frame_bytes=4096, max_message_bytes=8192,
                                   max_fragments=16, ping_burst=8, max_pings_per_second=1,
                                   close_timeout=None)


class Finding(AssertionError):
    """An invariant of the adapter broke (not an expected error)."""


class MemoryStream:
    """Just enough of ``net.Stream``: recv hands out ``chunks`` then EOF."""

    def __init__(self, chunks):
        self.chunks = list(chunks)
        self.closed = False
        self.sent = []

    def recv(self, max_bytes=65536):
        if self.closed:
            raise OSError("recv on a closed stream")
        return self.chunks.pop(0) if self.chunks else b""

    def send_all(self, data):
        if self.closed:
            raise OSError("send on a closed stream")
        self.sent.append(bytes(data))

    def close(self):
        self.closed = True


def _receive(chunks, *, compression=True, fast=True):
    def main():
        deflate = None
        if compression:
            deflate = websocket.BoundedPerMessageDeflate(max_message_bytes=LIMITS.max_message_bytes)
            deflate._enabled = True
        hs = websocket.ServerHandshake(headers=[], subprotocol=None, deflate=deflate)
        stream = MemoryStream(chunks)
        ws = websocket.accept_upgrade(stream, hs, limits=LIMITS)
        ws.fast_path = fast
        out = []
        try:
            while True:
                m = ws.recv()
                size = len(m.encode()) if isinstance(m, str) else len(m)
                if size > LIMITS.max_message_bytes:
                    raise Finding(f"a {size}-byte message passed max_message_bytes")
                out.append(m)
        except EXPECTED_ERRORS as e:
            code = getattr(e, "close_code", None)
            if deflate is not None and deflate.inflated > LIMITS.max_message_bytes + 1:
                raise Finding(f"inflated {deflate.inflated} > limit + 1") from None
            if compression:
                return out, type(e), code
            return out, type(e), code, _frames(b"".join(stream.sent))
    return greenrt.run(main)


def _frames(written: bytes) -> list:
    """The frames the server wrote, as ``(first byte, payload)``; a Close's payload cut
    to its code (wsproto's reason text quotes a byte position that depends on how the
    input was segmented, with or without the fast path)."""
    from greenrt.protocols.websocket._fastframe import header_at

    out, pos = [], 0
    while pos < len(written):
        b0, _mask, start, length, _ = header_at(written, pos)
        payload = written[start:start + length]
        out.append((b0, payload[:2] if b0 & 0x0F == 0x8 else payload))
        pos = start + length
    return out


def _cuts(data: bytes) -> list[bytes]:
    if not data:
        return [data]
    pieces, i, step = [], 0, 0
    while i < len(data):
        step = (data[i] % 7) + 1
        pieces.append(data[i:i + step])
        i += step
    return pieces


def TestOneInput(data: bytes) -> None:
    chunks = [data] if data else []
    whole = _receive(chunks)
    split = _receive(_cuts(data))
    if whole != split:
        raise Finding(f"segmentation changed the result: {whole!r} != {split!r}")
    slow = _receive(chunks, compression=False, fast=False)
    for name, fast in (("whole", _receive(chunks, compression=False)),
                       ("split", _receive(_cuts(data), compression=False))):
        if fast != slow:
            raise Finding(f"the fast path changed the result ({name}): {fast!r} != {slow!r}")


if __name__ == "__main__":  # pragma: no cover
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
