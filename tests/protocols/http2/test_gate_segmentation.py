"""``_wire.FrameGate`` is total over any segmentation of its input: the bytes it hands
on are the input with every GOAWAY frame taken out, the GOAWAYs come out in order,
the flood counters and header-block state end the same, and a verdict (frame too
large, a flood) is the same, wherever the reads split the stream."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from greenrt.protocols.http2 import H2Limits, _wire

PREFACE = _wire.PREFACE
LIMITS = H2Limits(pings_per_window=6, empty_frames_per_window=6, settings_per_window=6,
                  max_frame_size=16384)

_frame = st.tuples(
    st.sampled_from([0, 1, 2, 3, 4, 6, 7, 8, 9, 0x42]),   # DATA ... CONTINUATION, unknown
    st.sampled_from([0, 1, 4, 5]),                         # flags
    st.integers(0, 7),                                      # stream id
    st.one_of(st.integers(0, 40), st.just(8), st.just(16385)))  # payload length


def _encode(frames) -> tuple[bytes, bytes, list]:
    """The wire bytes, what the gate must pass on, and the GOAWAYs it must report."""
    wire, passed, goaways = bytearray(), bytearray(), []
    for ftype, flags, sid, length in frames:
        payload = bytes((sid * 31 + k) & 0xFF for k in range(length))
        f = _wire.frame_header(length, ftype, flags, sid) + payload
        wire += f
        if ftype == _wire.GOAWAY and length >= 8:
            goaways.append((int.from_bytes(payload[:4], "big") & 0x7FFFFFFF,
                            int.from_bytes(payload[4:8], "big")))
        else:
            passed += f
    return bytes(wire), bytes(passed), goaways


def _run(chunks: list[bytes], preface: bool):
    gate = _wire.FrameGate(LIMITS, lambda: 0.0, preface=preface)
    out, goaways, verdict = bytearray(), [], None
    try:
        for c in chunks:
            for piece in gate.feed(c):
                if isinstance(piece, tuple):
                    goaways.append(piece)
                else:
                    assert piece  # never an empty piece
                    out += piece
    except _wire.GateError as e:
        verdict = e.why
    counts = {k: len(v) for k, v in gate._counts.items()}
    return bytes(out), goaways, verdict, counts, gate._in_block


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    parts, last = [], 0
    for p in points + [len(data)]:
        parts.append(data[last:p])
        last = p
    return parts


@settings(max_examples=400, deadline=None)
@given(frames=st.lists(_frame, max_size=14), cuts=st.lists(st.integers(0, 10**6), max_size=12),
       preface=st.booleans())
def test_the_gate_is_the_same_over_any_segmentation(frames, cuts, preface):
    wire, passed, goaways = _encode(frames)
    data = (PREFACE if preface else b"") + wire
    whole = _run([data], preface)
    split = _run(_split(data, cuts), preface)
    bytewise = _run([data[k:k + 1] for k in range(len(data))], preface)
    out, got_goaways, verdict, _counts, _ = whole
    if verdict is not None:  # the connection ends: the same verdict, however split
        assert split[2] == bytewise[2] == verdict
        return
    assert whole == split == bytewise
    assert out == (PREFACE if preface else b"") + passed
    assert got_goaways == goaways
