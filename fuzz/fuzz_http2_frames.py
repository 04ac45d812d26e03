"""Fuzz target: frame sequences into an HTTP/2 server connection — greenrt's frame
gate (``protocols.http2.server._FrameGate``: frame-size pre-check, flood counters) in
front of h2's server state machine, exactly as ``serve_connection`` feeds them.

Run with atheris::

    .venv/bin/python fuzz/fuzz_http2_frames.py /tmp/h2f-scratch fuzz/corpus/http2_frames

Checks: the only exceptions are the gate's connection end and h2's ``ProtocolError``
(the server answers both with GOAWAY); once either is raised, the connection stops;
the gate's verdict does not depend on segmentation.
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

        from greenrt.protocols.http2.limits import H2Limits
        from greenrt.protocols.http2.server import PREFACE, _ConnectionEnd, _FrameGate
except ImportError:
    atheris = None
    import h2.config
    import h2.connection
    import h2.exceptions

    from greenrt.protocols.http2.limits import H2Limits
    from greenrt.protocols.http2.server import PREFACE, _ConnectionEnd, _FrameGate

LIMITS = H2Limits(pings_per_window=4, settings_per_window=4, resets_per_window=4,
                  empty_frames_per_window=4, priority_per_window=4)
EXPECTED_ERRORS = (_ConnectionEnd, h2.exceptions.ProtocolError)


class Finding(AssertionError):
    """An invariant broke."""


class _Clock:
    def now(self) -> float:
        return 0.0


def _gate_verdict(chunks) -> str | None:
    g = _FrameGate(LIMITS, _Clock())
    try:
        for c in chunks:
            g.feed(c)
    except _ConnectionEnd as e:
        return e.why
    return None


def TestOneInput(data: bytes) -> None:
    stream = PREFACE + data
    whole = _gate_verdict([stream])
    cut = 1 + (data[0] if data else 0)
    pieces = _gate_verdict([stream[i:i + cut] for i in range(0, len(stream), cut)])
    if whole != pieces:
        raise Finding(f"gate verdict depends on segmentation: {whole} vs {pieces}")
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    gate = _FrameGate(LIMITS, _Clock())
    try:
        for i in range(0, len(stream), cut):
            piece = stream[i:i + cut]
            gate.feed(piece)
            conn.receive_data(piece)
            conn.data_to_send()
    except EXPECTED_ERRORS:
        return


if __name__ == "__main__":  # pragma: no cover
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
