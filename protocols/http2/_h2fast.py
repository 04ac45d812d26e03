"""Two of h2's per-frame steps, cheaper.

* ``H2Connection._receive_frame`` starts with ``logger.trace("...", repr(frame))``:
  the ``repr`` of every received frame is built even though nothing logs it (h2's
  logger is a dummy), a few microseconds per frame, several frames per RPC.
  :func:`receive_frame` is the same step (the frame's handler from h2's dispatch
  table, then h2's own handling of a frame for a closed stream) minus that line.
* :func:`send_data` is ``H2Connection.send_data`` for one frame that fits the
  windows and the frame size (no padding): the same state machine inputs and window
  arithmetic, the frame's bytes built directly instead of through a ``DataFrame``.

Written against h2 4.x; ``tests/protocols/http2`` and the grpc interop tests run
every frame type through them.
"""

from __future__ import annotations

from typing import Any

from h2.connection import ConnectionInputs
from h2.errors import ErrorCodes
from h2.exceptions import StreamClosedError, StreamIDTooLowError
from h2.stream import StreamInputs
from hyperframe.frame import RstStreamFrame

__all__ = ["receive_frame", "send_data"]

_C_SEND_DATA = ConnectionInputs.SEND_DATA
_S_SEND_DATA = StreamInputs.SEND_DATA
_S_SEND_END_STREAM = StreamInputs.SEND_END_STREAM


def receive_frame(h: Any, frame: Any) -> list:
    """Handle one received frame on ``h`` (an ``H2Connection``); its events."""
    try:
        frames, events = h._frame_dispatch_table[frame.__class__](frame)
    except StreamClosedError as e:
        # closed by RST_STREAM: a stream error (RST_STREAM back); else h2's verdict
        if h._stream_is_closed_by_reset(e.stream_id):
            f = RstStreamFrame(e.stream_id)
            f.error_code = e.error_code
            h._prepare_for_sending([f])
            return e._events
        raise
    except StreamIDTooLowError as e:
        if h._stream_is_closed_by_reset(e.stream_id):
            f = RstStreamFrame(e.stream_id)
            f.error_code = ErrorCodes.STREAM_CLOSED
            h._prepare_for_sending([f])
            return []
        if h._stream_is_closed_by_end(e.stream_id):
            raise StreamClosedError(e.stream_id) from e
        raise
    h._prepare_for_sending(frames)
    return events


def send_data(h: Any, stream_id: int, data: bytes, end_stream: bool = False) -> bytes | None:
    """One DATA frame on ``h``: h2's queued bytes followed by the frame, to be written
    in this order; ``None`` (nothing changed) when the frame does not fit the
    windows or the frame size, or the stream is unknown: use ``h.send_data``."""
    n = len(data)
    stream = h.streams.get(stream_id)
    if (stream is None or n > h.max_outbound_frame_size or n > h.outbound_flow_control_window
            or n > stream.outbound_flow_control_window):
        return None
    h.state_machine.process_input(_C_SEND_DATA)
    ssm = stream.state_machine
    ssm.process_input(_S_SEND_DATA)
    if end_stream:
        ssm.process_input(_S_SEND_END_STREAM)
    stream.outbound_flow_control_window -= n
    h.outbound_flow_control_window -= n
    return b"".join((h.data_to_send(), n.to_bytes(3, "big"), b"\x00\x01" if end_stream
                     else b"\x00\x00", (stream_id & 0x7FFFFFFF).to_bytes(4, "big"), data))
