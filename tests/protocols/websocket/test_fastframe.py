"""The fast frame path (``protocols.websocket._fastframe``) changes no verdict.

Its promise: it takes only frames wsproto would have turned into one finished message
and hands every other frame to wsproto whole, so messages, errors, close codes and
the bytes written back are the same with and without it. Checked three ways: the
codec pieces against wsproto directly, generated frame streams (valid and hostile)
through the adapter both ways, and the fuzz target (which runs the same comparison on
its corpus in ``tests/test_fuzz_corpora.py``)."""

from __future__ import annotations

import importlib.util
import pathlib
import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, TextMessage

from greenrt.protocols.websocket._fastframe import build_frame, header_at, is_candidate, unmask

_FUZZ = pathlib.Path(__file__).resolve().parents[3] / "fuzz" / "fuzz_websocket.py"
_spec = importlib.util.spec_from_file_location("fuzz_websocket_for_tests", _FUZZ)
fuzz_ws = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz_ws)


def _naive_unmask(payload: bytes, mask: bytes) -> bytes:
    return bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@given(st.binary(max_size=3000), st.binary(min_size=4, max_size=4))
def test_unmask_is_the_rfc_xor(payload, mask):
    assert unmask(payload, mask) == _naive_unmask(payload, mask)


@given(st.sampled_from([0, 1, 125, 126, 127, 65535, 65536, 70000]), st.booleans(),
       st.sampled_from([1, 2]))
def test_wsproto_reads_the_frames_we_build(n, masked, opcode):
    payload = b"a" * n if opcode == 1 else (bytes(range(256)) * (n // 256 + 1))[:n]
    frame = build_frame(opcode, payload, b"\x01\x02\x03\x04" if masked else None)
    peer = Connection(ConnectionType.SERVER if masked else ConnectionType.CLIENT)
    peer.receive_data(frame)
    events = list(peer.events())
    assert len(events) == 1
    ev = events[0]
    assert isinstance(ev, TextMessage if opcode == 1 else BytesMessage) and ev.message_finished
    assert (ev.data.encode() if opcode == 1 else bytes(ev.data)) == payload
    h = header_at(frame, 0)
    assert h[0] == 0x80 | opcode and h[3] == n and h[4] is True
    assert frame[h[2]:] == (unmask(payload, h[1]) if masked else payload)


def test_non_minimal_lengths_and_foreign_frames_are_not_taken():
    # 5 bytes announced with the 2-byte form, and with the 8-byte form
    assert header_at(b"\x82\x7e" + struct.pack(">H", 5) + b"x" * 5, 0)[4] is False
    assert header_at(b"\x82\x7f" + struct.pack(">Q", 5) + b"x" * 5, 0)[4] is False
    assert header_at(b"\x82\x7f" + struct.pack(">Q", 1 << 63), 0)[4] is False
    assert not is_candidate(0x01, 0x80, True)   # no FIN: a fragment
    assert not is_candidate(0xC1, 0x80, True)   # RSV1
    assert not is_candidate(0x89, 0x80, True)   # a ping
    assert not is_candidate(0x83, 0x80, True)   # reserved opcode
    assert not is_candidate(0x81, 0x00, True)   # a server requires masked frames
    assert not is_candidate(0x81, 0x80, False)  # a client refuses them
    assert is_candidate(0x81, 0x80, True) and is_candidate(0x82, 0x00, False)
    assert header_at(b"\x82", 0) is None and header_at(b"\x82\xfe\x00", 0) is None


_MASK = b"\x11\x22\x33\x44"


def _frame(b0: int, payload: bytes, *, masked: bool = True, long_form: bool = False) -> bytes:
    n = len(payload)
    mbit = 0x80 if masked else 0
    if long_form:
        head = bytes((b0, mbit | 127)) + struct.pack(">Q", n)
    elif n < 126:
        head = bytes((b0, mbit | n))
    else:
        head = bytes((b0, mbit | 126)) + struct.pack(">H", n)
    return head + (_MASK + unmask(payload, _MASK) if masked else payload)


_texts = st.text(max_size=40).map(lambda t: t.encode())
_frames = st.one_of(
    _texts.map(lambda p: _frame(0x81, p)),                        # simple text
    st.binary(max_size=300).map(lambda p: _frame(0x82, p)),      # simple binary
    st.binary(max_size=8).map(lambda p: _frame(0x81, b"\xff" + p)),  # bad UTF-8
    _texts.map(lambda p: _frame(0x01, p)),                        # a first fragment
    _texts.map(lambda p: _frame(0x00, p)),                        # a continuation
    _texts.map(lambda p: _frame(0x80, p)),                        # a final continuation
    st.binary(max_size=20).map(lambda p: _frame(0x89, p)),       # ping
    st.binary(max_size=20).map(lambda p: _frame(0x8A, p)),       # pong
    st.binary(max_size=20).map(lambda p: _frame(0x82, p, masked=False)),  # unmasked
    st.binary(max_size=20).map(lambda p: _frame(0x82, p, long_form=True)),  # non-minimal
    st.binary(max_size=5).map(lambda p: _frame(0xC2, p)),        # RSV1 without deflate
    st.binary(max_size=5).map(lambda p: _frame(0x83, p)),        # reserved opcode
    st.just(_frame(0x88, b"\x03\xe8bye")),                       # close
    st.binary(min_size=1, max_size=6),                            # garbage
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_frames, max_size=8))
def test_generated_streams_give_the_same_result_with_and_without_the_fast_path(frames):
    fuzz_ws.TestOneInput(b"".join(frames))  # raises Finding on any difference
