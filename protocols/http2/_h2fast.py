"""h2's per-frame receive step without its trace line.

``H2Connection._receive_frame`` starts with ``logger.trace("...", repr(frame))``:
the ``repr`` of every received frame is built even though nothing logs it (h2's
logger is a dummy), a few microseconds per frame, several frames per RPC.
:func:`receive_frame` is the same step (the frame's handler from h2's dispatch
table, then h2's own handling of a frame for a closed stream) minus that line.
Written against h2 4.x; ``tests/protocols/http2`` and the grpc interop tests run
every frame type through it.
"""

from __future__ import annotations

from typing import Any

from h2.errors import ErrorCodes
from h2.exceptions import StreamClosedError, StreamIDTooLowError
from hyperframe.frame import RstStreamFrame

__all__ = ["receive_frame"]


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
