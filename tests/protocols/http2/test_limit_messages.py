"""The HTTP/2 gate's limit verdicts name the H2Limits field, what was seen and the
configured value (issue 21), and the client's LimitError carries them."""

from __future__ import annotations

import pytest

from greenrt.protocols.http2 import H2Limits, LimitError, _wire
from greenrt.protocols.http2.client import _gate_message


def _frame(ftype: int, payload: bytes, length: int | None = None) -> bytes:
    n = len(payload) if length is None else length
    return n.to_bytes(3, "big") + bytes((ftype, 0)) + b"\0\0\0\0" + payload


def test_a_ping_flood_names_the_limit_and_its_value():
    gate = _wire.FrameGate(H2Limits(pings_per_window=2), lambda: 0.0, preface=False)
    with pytest.raises(_wire.GateError) as ei:
        gate.feed(_frame(6, b"\0" * 8) * 3)
    e = ei.value
    assert (e.why, e.limit, e.value, e.maximum) == ("ping_flood", "pings_per_window", 3, 2)
    msg = _gate_message(e)
    assert msg == ("http2: the server sent a ping flood "
                   "(pings_per_window exceeded: 3 > 2 per flood_window)")
    err = LimitError(msg, limit=e.limit, value=e.value, maximum=e.maximum, code=e.why)
    assert (err.limit, err.value, err.maximum) == ("pings_per_window", 3, 2)


def test_an_oversized_frame_names_max_frame_size():
    gate = _wire.FrameGate(H2Limits(), lambda: 0.0, preface=False)
    big = H2Limits().max_frame_size + 1
    with pytest.raises(_wire.GateError) as ei:
        gate.feed(_frame(0, b"", length=big))
    e = ei.value
    assert (e.limit, e.value, e.maximum) == ("max_frame_size", big, H2Limits().max_frame_size)
    assert f"max_frame_size exceeded: {big} > {e.maximum}" in _gate_message(e)
    assert "None" not in _gate_message(e)
