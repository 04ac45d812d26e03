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
  more than the limit + 1.
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

    def recv(self, max_bytes=65536):
        if self.closed:
            raise OSError("recv on a closed stream")
        return self.chunks.pop(0) if self.chunks else b""

    def send_all(self, data):
        if self.closed:
            raise OSError("send on a closed stream")

    def close(self):
        self.closed = True


def _receive(chunks):
    def main():
        deflate = websocket.BoundedPerMessageDeflate(max_message_bytes=LIMITS.max_message_bytes)
        deflate._enabled = True
        hs = websocket.ServerHandshake(headers=[], subprotocol=None, deflate=deflate)
        ws = websocket.accept_upgrade(MemoryStream(chunks), hs, limits=LIMITS)
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
            if deflate.inflated > LIMITS.max_message_bytes + 1:
                raise Finding(f"inflated {deflate.inflated} > limit + 1") from None
            return out, type(e), code
    return greenrt.run(main)


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
    whole = _receive([data] if data else [])
    split = _receive(_cuts(data))
    if whole != split:
        raise Finding(f"segmentation changed the result: {whole!r} != {split!r}")


if __name__ == "__main__":  # pragma: no cover
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
