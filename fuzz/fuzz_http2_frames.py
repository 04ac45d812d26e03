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
GOAWAYs taken out) does not depend on segmentation; the frame reader
(``_h2fast.frames``: DATA and WINDOW_UPDATE read in place) gives what h2's frame
buffer gives, frame for frame, and fails where it fails.
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

        from greenrt.protocols.http2._h2fast import frames as fast_frames
        from greenrt.protocols.http2._wire import PREFACE, FrameGate, GateError
        from greenrt.protocols.http2.limits import H2Limits
        from greenrt.protocols.http2.server import feed_frames
except ImportError:
    atheris = None
    import h2.config
    import h2.connection
    import h2.exceptions

    from greenrt.protocols.http2._h2fast import frames as fast_frames
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


def _frame_list(read, chunks) -> list:
    h = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    out: list = []
    try:
        for c in chunks:
            for f in read(h, c):
                out.append((type(f).__name__, sorted(
                    (k, sorted(v) if k == "flags" else v) for k, v in vars(f).items())))
    except Exception as e:  # noqa: BLE001 - the verdict is compared
        return [*out, ("raised", type(e).__name__)]
    return [*out, ("held", bytes(h.incoming_buffer._data))]


def _buffer(h, c):
    h.incoming_buffer.add_data(c)
    h.incoming_buffer.max_frame_size = h.max_inbound_frame_size
    return h.incoming_buffer


def check_frame_reader(stream: bytes, cut: int) -> None:
    chunks = [stream[i:i + cut] for i in range(0, len(stream), cut)]
    if _frame_list(fast_frames, chunks) != _frame_list(_buffer, chunks):
        raise Finding("the frame reader and h2's frame buffer disagree")


def TestOneInput(data: bytes) -> None:
    stream = PREFACE + data
    cut = 1 + (data[0] if data else 0)
    check_segmentation(stream, cut, preface=True)
    check_frame_reader(stream, cut)
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
