"""Fuzz target: what a server sends, into our HTTP/2 client connection's receive
path — ``protocols.http2._wire.FrameGate`` (no preface on this side; frame size,
floods, CONTINUATION cap, GOAWAY taken out) in front of h2's client state machine
with the client's header-list limit, as ``ClientConnection`` feeds it. The client
has one request open (stream 1) so that responses, DATA, trailers and resets for it
reach h2's stream logic.

Checks: only the gate's verdict and h2's ``ProtocolError`` escape (the client
answers both with GOAWAY and fails the connection); the gate's output does not
depend on segmentation.
"""

from __future__ import annotations

import sys

CORPUS = "corpus/http2_client_frames"

try:  # pragma: no cover - only when running under atheris
    import atheris

    with atheris.instrument_imports():
        import h2.config
        import h2.connection
        import h2.exceptions

        from greenrt.protocols.http2._wire import FrameGate, GateError
        from greenrt.protocols.http2.limits import H2Limits
except ImportError:
    atheris = None
    import h2.config
    import h2.connection
    import h2.exceptions

    from greenrt.protocols.http2._wire import FrameGate, GateError
    from greenrt.protocols.http2.limits import H2Limits

LIMITS = H2Limits(pings_per_window=4, settings_per_window=4, resets_per_window=4,
                  empty_frames_per_window=4, priority_per_window=4,
                  max_header_list_size=1024)
EXPECTED_ERRORS = (GateError, h2.exceptions.ProtocolError)
REQUEST = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "x")]


class Finding(AssertionError):
    """An invariant broke."""


def _now() -> float:
    return 0.0


def gate_output(chunks) -> tuple:
    """(verdict, bytes passed through, GOAWAYs taken out) for ``chunks``."""
    g = FrameGate(LIMITS, _now, preface=False)
    passed, goaways = [], []
    try:
        for c in chunks:
            for piece in g.feed(c):
                (goaways if type(piece) is tuple else passed).append(piece)
    except GateError as e:
        return e.why, None, None
    return None, b"".join(passed), goaways


def TestOneInput(data: bytes) -> None:
    cut = 1 + (data[0] if data else 0)
    whole = gate_output([data])
    pieces = gate_output([data[i:i + cut] for i in range(0, len(data), cut)])
    if whole != pieces:
        raise Finding(f"gate output depends on segmentation: {whole[0]} vs {pieces[0]}")
    conn = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=True, header_encoding=None))
    conn.initiate_connection()
    conn.decoder.max_header_list_size = LIMITS.max_header_list_size
    conn.send_headers(1, REQUEST, end_stream=True)
    conn.data_to_send()
    gate = FrameGate(LIMITS, _now, preface=False)
    try:
        for i in range(0, len(data), cut):
            for piece in gate.feed(data[i:i + cut]):
                if type(piece) is not tuple:
                    conn.receive_data(piece)
            conn.data_to_send()
    except EXPECTED_ERRORS:
        return


if __name__ == "__main__":  # pragma: no cover
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
