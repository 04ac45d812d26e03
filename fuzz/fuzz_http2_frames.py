"""Fuzz target: frame sequences into an HTTP/2 server connection — greenrt's frame
gate (``protocols.http2._wire.FrameGate``: frame-size pre-check, flood counters,
CONTINUATION cap, GOAWAY taken out of the stream) in front of h2's server state
machine fed frame by frame (``protocols.http2.server.feed_frames``, stream errors
answered with RST_STREAM), exactly as ``serve_connection`` feeds them.

Run with atheris::

    .venv/bin/python fuzz/fuzz_http2_frames.py /tmp/h2f-scratch fuzz/corpus/http2_frames

Checks: the only exceptions are the gate's verdict and h2's ``ProtocolError`` (the
server answers both with GOAWAY); a stream error resets its stream and the
connection goes on; the gate's output (verdict, the bytes handed to h2 and the
GOAWAYs taken out) does not depend on segmentation.
"""

from __future__ import annotations

import sys

CORPUS = "corpus/http2_frames"

try:  # pragma: no cover - only when running under atheris
    import atheris

    with atheris.instrument_imports():
        import h2.config
        import h2.connection
        import h2.exceptions

        from greenrt.protocols.http2._wire import PREFACE, FrameGate, GateError
        from greenrt.protocols.http2.limits import H2Limits
        from greenrt.protocols.http2.server import feed_frames
except ImportError:
    atheris = None
    import h2.config
    import h2.connection
    import h2.exceptions

    from greenrt.protocols.http2._wire import PREFACE, FrameGate, GateError
    from greenrt.protocols.http2.limits import H2Limits
    from greenrt.protocols.http2.server import feed_frames

LIMITS = H2Limits(pings_per_window=4, settings_per_window=4, resets_per_window=4,
                  empty_frames_per_window=4, priority_per_window=4, refused_per_window=4,
                  max_header_list_size=1024)
EXPECTED_ERRORS = (GateError, h2.exceptions.ProtocolError)


class Finding(AssertionError):
    """An invariant broke."""


def _now() -> float:
    return 0.0


def gate_output(chunks, *, preface: bool) -> tuple:
    """(verdict, bytes passed through, GOAWAYs taken out) for ``chunks``."""
    g = FrameGate(LIMITS, _now, preface=preface)
    passed, goaways = [], []
    try:
        for c in chunks:
            for piece in g.feed(c):
                (goaways if type(piece) is tuple else passed).append(piece)
    except GateError as e:
        return e.why, None, None  # what was passed before the verdict may differ
    return None, b"".join(passed), goaways


def check_segmentation(stream: bytes, cut: int, *, preface: bool) -> None:
    whole = gate_output([stream], preface=preface)
    pieces = gate_output([stream[i:i + cut] for i in range(0, len(stream), cut)],
                         preface=preface)
    if whole != pieces:
        raise Finding(f"gate output depends on segmentation: {whole[0]} vs {pieces[0]}")


def TestOneInput(data: bytes) -> None:
    stream = PREFACE + data
    cut = 1 + (data[0] if data else 0)
    check_segmentation(stream, cut, preface=True)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    conn.decoder.max_header_list_size = LIMITS.max_header_list_size
    gate = FrameGate(LIMITS, _now, preface=True)

    def stream_error(frame, exc) -> None:
        try:
            conn.reset_stream(frame.stream_id, error_code=1)
        except h2.exceptions.ProtocolError:
            pass

    try:
        for i in range(0, len(stream), cut):
            for piece in gate.feed(stream[i:i + cut]):
                if type(piece) is not tuple:
                    feed_frames(conn, piece, stream_error)
            conn.data_to_send()
    except EXPECTED_ERRORS:
        return


if __name__ == "__main__":  # pragma: no cover
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
