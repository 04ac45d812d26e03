"""h2's per-frame steps, cheaper.

* ``H2Connection._receive_frame`` starts with ``logger.trace("...", repr(frame))``:
  the ``repr`` of every received frame is built even though nothing logs it (h2's
  logger is a dummy), a few microseconds per frame, several frames per RPC.
  :func:`receive_frame` is the same step (the frame's handler from h2's dispatch
  table, then h2's own handling of a frame for a closed stream) minus that line.
* A received HEADERS frame (without the PRIORITY flag) is h2's
  ``_receive_headers_frame`` and ``H2Stream.receive_headers``, step for step, with
  two steps memoized per connection: HPACK decoding and h2's inbound header
  normalization and validation. See :func:`_decode` for why a remembered block is
  exactly what decoding it again would give (or it is decoded again); validation is
  h2's own pipeline, remembered per (decoded headers, validation flags, config):
  a pure function of those, so the verdict is the same. Peers resend the same
  blocks: grpcio indexes its request headers into the dynamic table once, later
  requests are 8 bytes of indexes.
* :func:`frames` is h2's frame buffer (``H2Connection.incoming_buffer``) with the
  frames a call receives most read in place: an unpadded DATA frame, a
  WINDOW_UPDATE, and a HEADERS frame holding a whole block (END_HEADERS, no padding,
  no priority), when they are whole and start where the buffer is empty (no
  partial frame held, no preface or header block in progress). Each becomes the
  very frame object hyperframe's parsing gives (same class, same attributes; its
  ``flags`` a frozenset, where only membership is ever asked), built without the
  buffer's copies, header parse and ``Flags`` set; anything else, or anything the
  frame buffer would refuse, goes through the frame buffer itself (which raises).
* A received WINDOW_UPDATE skips h2's connection state machine step where h2's own
  table says it changes nothing (:func:`_receive_window_update`).
* :func:`put_data` / :func:`send_data` write one DATA frame (no padding) without
  ``H2Connection.send_data``'s per-frame machinery (state machine steps that change
  nothing, a ``DataFrame``, debug logging), where that is all it would do; one set
  of checks (:func:`_take`) for both: the tunnels (``_connect``) queue with
  ``put_data``, the client's streams take the bytes with ``send_data``.

Written against h2 4.x; ``tests/protocols/http2`` and the grpc interop tests run
every frame type through them.
"""

from __future__ import annotations

from typing import Any

from h2.connection import (
    AllowedStreamIDs,
    ConnectionInputs,
    ConnectionState,
    H2ConnectionStateMachine,
    _decode_headers,
)
from h2.errors import ErrorCodes
from h2.events import TrailersReceived, WindowUpdated
from h2.exceptions import ProtocolError, StreamClosedError, StreamIDTooLowError, TooManyStreamsError
from h2.stream import StreamInputs, StreamState
from h2.utilities import guard_increment_window, is_informational_response
from hpack.table import HeaderTable
from hyperframe.frame import DataFrame, HeadersFrame, RstStreamFrame, WindowUpdateFrame

__all__ = ["frames", "put_data", "receive_frame", "send_data"]

# where sending DATA changes no h2 state but the windows (h2's state tables)
_SENDING_STREAM = frozenset((StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE))
_SENDING_CONN = frozenset((ConnectionState.CLIENT_OPEN, ConnectionState.SERVER_OPEN))
_S_SEND_END_STREAM = StreamInputs.SEND_END_STREAM
_C_RECV_HEADERS = ConnectionInputs.RECV_HEADERS
_S_RECV_HEADERS = StreamInputs.RECV_HEADERS
_S_RECV_INFO = StreamInputs.RECV_INFORMATIONAL_HEADERS
_S_RECV_END_STREAM = StreamInputs.RECV_END_STREAM
#: HPACK indexes above this are the dynamic table's (RFC 7541 2.3.3)
_STATIC = HeaderTable.STATIC_TABLE_LENGTH

#: the decoded-block memo, per connection: at most this many blocks, each at most
#: BLOCK_MAX bytes encoded and DECODED_MAX decoded (RFC 7541 4.1 sizes); the whole
#: memo is dropped when full (a peer that never repeats itself costs one lookup)
MEMO_ENTRIES = 8
BLOCK_MAX = 1024
DECODED_MAX = 4096


# -- receiving ------------------------------------------------------------------------

_END_STREAM = frozenset(("END_STREAM",))
_NO_FLAGS: frozenset = frozenset()
_HEADERS_ONLY = frozenset(("END_HEADERS",))
_HEADERS_END_STREAM = frozenset(("END_STREAM", "END_HEADERS"))
_new = object.__new__


def frames(h: Any, data: bytes) -> Any:
    """The frames of ``data`` received on ``h`` (an ``H2Connection``), after the bytes
    its frame buffer holds: what iterating ``h.incoming_buffer`` after
    ``add_data(data)`` gives, frame for frame, raising what it raises, at the same
    frame (``tests/protocols/http2/test_h2fast.py`` compares them on arbitrary frame
    sequences cut anywhere). See the module docstring; a generator, with no I/O."""
    buf = h.incoming_buffer
    if type(data) is not bytes:
        data = bytes(data)
    pos, n = 0, len(data)
    while True:
        buf.max_frame_size = max_size = h.max_inbound_frame_size
        if buf._data or buf._preamble_len or buf._headers_buffer:
            if pos < n:
                buf.add_data(data[pos:] if pos else data)
                pos = n
        else:
            while n - pos >= 9:
                length = (data[pos] << 16) | (data[pos + 1] << 8) | data[pos + 2]
                end = pos + 9 + length
                if end > n or length > max_size:
                    break
                t = data[pos + 3]
                sid = ((data[pos + 5] & 0x7F) << 24) | (data[pos + 6] << 16) | \
                    (data[pos + 7] << 8) | data[pos + 8]
                if t == 0:  # DATA: padded, or on stream 0 (refused), is the buffer's
                    fl = data[pos + 4]
                    if fl & 0x08 or not sid:
                        break
                    f = _new(DataFrame)
                    f.stream_id = sid
                    f.flags = _END_STREAM if fl & 0x01 else _NO_FLAGS
                    f.body_len = length
                    f.pad_length = 0
                    f.data = data[pos + 9:end]
                elif t == 1:  # HEADERS: a whole block (END_HEADERS), no padding, no priority
                    fl = data[pos + 4]
                    if fl & 0x2C != 0x04 or not sid:
                        break
                    f = _new(HeadersFrame)
                    f.stream_id = sid
                    f.flags = _HEADERS_END_STREAM if fl & 0x01 else _HEADERS_ONLY
                    f.body_len = length
                    f.pad_length = 0
                    f.depends_on = 0
                    f.stream_weight = 0
                    f.exclusive = False
                    f.data = data[pos + 9:end]
                elif t == 8 and length == 4:  # WINDOW_UPDATE, if hyperframe takes it
                    inc = (data[pos + 9] << 24) | (data[pos + 10] << 16) | \
                        (data[pos + 11] << 8) | data[pos + 12]
                    if not 1 <= inc <= 0x7FFFFFFF:
                        break
                    f = _new(WindowUpdateFrame)
                    f.stream_id = sid
                    f.flags = _NO_FLAGS
                    f.body_len = 4
                    f.window_increment = inc
                else:
                    break
                pos = end
                yield f
                # (receiving a frame never changes max_inbound_frame_size: only the
                # ACK of our SETTINGS does, and that is the buffer's frame)
            if pos >= n:
                return
            # the frame here is the buffer's: hand it over, whole if it is all here
            end = n
            if n - pos >= 9:
                end = min(n, pos + 9 + ((data[pos] << 16) | (data[pos + 1] << 8) | data[pos + 2]))
            buf.add_data(data[pos:end])
            pos = end
        yield from buf
        if pos >= n:
            return


def receive_frame(h: Any, frame: Any) -> list:
    """Handle one received frame on ``h`` (an ``H2Connection``); its events."""
    try:
        if frame.__class__ is HeadersFrame and "PRIORITY" not in frame.flags:
            frames, events = _receive_headers(h, frame)
        elif frame.__class__ is WindowUpdateFrame:
            frames, events = _receive_window_update(h, frame)
        else:
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


#: the connection states in which receiving a WINDOW_UPDATE changes nothing (no
#: callback, the same state: h2's own table, read here, not assumed)
_WU_QUIET = frozenset(
    st for st in ConnectionState
    if H2ConnectionStateMachine._transitions.get((st, ConnectionInputs.RECV_WINDOW_UPDATE)) == (None, st))


def _receive_window_update(h: Any, frame: Any) -> tuple[list, list]:
    """h2's ``_receive_window_update_frame``, minus its connection state machine step
    where that step changes nothing (``_WU_QUIET``): the connection window raised
    (``guard_increment_window``'s overflow check, a connection error) and its
    ``WindowUpdated``, or the stream's own ``receive_window_update`` for a stream h2
    still has; anything else (a closed or unknown stream, another connection state)
    goes through h2's method itself."""
    if h.state_machine.state not in _WU_QUIET:
        return h._receive_window_update_frame(frame)
    inc = frame.window_increment
    sid = frame.stream_id
    if sid:
        stream = h.streams.get(sid)
        if stream is None:
            return h._receive_window_update_frame(frame)
        try:
            return stream.receive_window_update(inc)
        except StreamClosedError:  # (h2's method, the same: nothing to do)
            return [], []
    h.outbound_flow_control_window = guard_increment_window(h.outbound_flow_control_window, inc)
    return [], [WindowUpdated(stream_id=0, delta=inc)]


def _take(h: Any, sid: int, n: int, end_stream: bool) -> bytes | None:
    """The one set of checks for a DATA frame of ``n`` bytes written without h2's
    ``send_data``, and its accounting: ``None`` (nothing changed) unless the
    stream is open or half-closed by the peer and the connection open (where h2's
    SEND_DATA input changes no state: its tables map those states to themselves),
    the frame fits both windows and the peer's frame size, and it carries bytes or
    END_STREAM (an empty DATA frame without it is what flood counters count). Else
    END_STREAM goes through h2's stream state machine, both windows are debited,
    and the frame's 9-byte header is returned."""
    stream = h.streams.get(sid)
    if (stream is None or n > h.max_outbound_frame_size or not (n or end_stream)
            or n > stream.outbound_flow_control_window or n > h.outbound_flow_control_window
            or stream.state_machine.state not in _SENDING_STREAM
            or h.state_machine.state not in _SENDING_CONN):
        return None
    if end_stream:
        stream.state_machine.process_input(_S_SEND_END_STREAM)
    stream.outbound_flow_control_window -= n
    h.outbound_flow_control_window -= n
    return b"".join((n.to_bytes(3, "big"), b"\x00\x01" if end_stream else b"\x00\x00",
                     (sid & 0x7FFFFFFF).to_bytes(4, "big")))


def put_data(h: Any, sid: int, data: bytes, end_stream: bool = False) -> bool:
    """Queue ``data`` as one DATA frame (no padding) on stream ``sid`` of ``h`` (an
    ``H2Connection``), behind what h2 has queued, exactly as ``h.send_data`` would
    (``tests/protocols/websocket/test_h2.py`` and ``test_h2fast.py`` pin the bytes
    and windows); ``False`` (nothing done) where :func:`_take` declines: use
    ``h.send_data``. Not a checkpoint."""
    head = _take(h, sid, len(data), end_stream)
    if head is None:
        return False
    h._data_to_send += head
    h._data_to_send += data
    return True


def send_data(h: Any, stream_id: int, data: bytes, end_stream: bool = False) -> bytes | None:
    """:func:`put_data`, returning h2's queued bytes followed by the frame (to be
    written in this order) instead of queueing it; ``None`` (nothing changed) where
    it declines: use ``h.send_data``. Not a checkpoint."""
    head = _take(h, stream_id, len(data), end_stream)
    if head is None:
        return None
    return b"".join((h.data_to_send(), head, data))


# -- HEADERS -------------------------------------------------------------------------


class _Block:
    """A decoded header block: ``headers`` (h2's list, never handed out), ``refs``
    (``(position, entry)``: each dynamic-table entry the block reads, the very tuple
    object it read), the decoder's ``limit`` it was decoded under, whether it is an
    informational response, and ``valid``: h2's validated header lists by
    (validation flags, header encoding, normalize, validate)."""

    __slots__ = ("headers", "refs", "limit", "informational", "valid")

    def __init__(self, headers: list, refs: tuple, limit: int):
        self.headers = headers
        self.refs = refs
        self.limit = limit
        self.informational = is_informational_response(headers)
        self.valid: dict = {}


def _hpack_int(data: bytes, i: int, bits: int) -> tuple[int, int]:
    """RFC 7541 5.1: the integer at ``data[i]`` with a ``bits``-bit prefix, and the
    index after it. Raises ``IndexError`` past the end."""
    top = (1 << bits) - 1
    v = data[i] & top
    i += 1
    if v < top:
        return v, i
    shift = 0
    while True:
        b = data[i]
        i += 1
        v += (b & 127) << shift
        if not b & 128:
            return v, i
        shift += 7


def _skip_string(data: bytes, i: int) -> int:
    """RFC 7541 5.2: the index after the string literal at ``data[i]``."""
    n, i = _hpack_int(data, i, 7)
    return i + n


def _table_reads(data: bytes) -> list[int] | None:
    """The dynamic-table indexes (1-based, RFC 7541 2.3.3) a header block reads, or
    ``None`` if it changes the table (a literal with incremental indexing, a size
    update) or does not parse. Called only on blocks hpack has just decoded."""
    reads: list[int] = []
    i, n = 0, len(data)
    try:
        while i < n:
            b = data[i]
            if b & 0x80:                     # indexed field
                x, i = _hpack_int(data, i, 7)
                if x > _STATIC:
                    reads.append(x)
                continue
            if b & 0x60:                     # incremental indexing, size update
                return None
            x, i = _hpack_int(data, i, 4)    # without indexing / never indexed
            if x == 0:
                i = _skip_string(data, i)
            elif x > _STATIC:
                reads.append(x)
            i = _skip_string(data, i)
    except IndexError:
        return None
    return reads if i == n else None


def _decode(h: Any, data: bytes) -> Any:
    """The decoded header block ``data`` on ``h``: a :class:`_Block`, or h2's plain
    list when it is not memoized. Raises what h2's ``_decode_headers`` raises.

    Why a memoized block is what decoding it again would give: only blocks that
    leave the dynamic table untouched are kept (no incremental indexing, no size
    update: :func:`_table_reads`), so decoding one again changes nothing either.
    Its result depends on the bytes, the static table, and the dynamic entries it
    reads; each of those is checked to be *the same object* (entries are immutable
    tuples) at the same position. hpack's verdicts on it depend on the header list
    size limit (the one it was decoded under) and on the table size being within
    the allowed maximum (checked again here, as hpack does after every block)."""
    d = h.decoder
    memo = h.__dict__.get("_greenrt_blocks")
    if memo is not None:
        b = memo.get(data)
        if b is not None:
            if b.limit == d.max_header_list_size \
                    and d.header_table.maxsize <= d.max_allowed_table_size:
                table = d.header_table.dynamic_entries
                n = len(table)
                for pos, entry in b.refs:
                    if pos >= n or table[pos] is not entry:
                        break
                else:
                    return b
            del memo[data]
    headers = _decode_headers(d, data)
    if len(data) > BLOCK_MAX:
        return headers
    reads = _table_reads(data)
    if reads is None or sum(len(k) + len(v) + 32 for k, v in headers) > DECODED_MAX:
        return headers
    table = d.header_table.dynamic_entries
    base = _STATIC + 1
    refs = tuple((x - base, table[x - base]) for x in set(reads))
    b = _Block(headers, refs, d.max_header_list_size)
    if memo is None or len(memo) >= MEMO_ENTRIES:
        memo = h.__dict__["_greenrt_blocks"] = {}
    memo[bytes(data)] = b
    return b


def _receive_headers(h: Any, frame: Any) -> tuple[list, list]:
    """``H2Connection._receive_headers_frame`` for a frame without PRIORITY, with the
    memoized decoding and validation (see the module docstring)."""
    sid = frame.stream_id
    if sid not in h.streams:
        max_open = h.local_settings.max_concurrent_streams
        value = h.open_inbound_streams
        if value + 1 > max_open:
            msg = f"Max inbound streams is {max_open}, {value} open"
            raise TooManyStreamsError(msg)
    got = _decode(h, frame.data)
    events = h.state_machine.process_input(_C_RECV_HEADERS)
    stream = h._get_or_create_stream(sid, AllowedStreamIDs(not h.config.client_side))
    end_stream = "END_STREAM" in frame.flags
    # H2Stream.receive_headers
    if got.__class__ is _Block:
        headers, informational = got.headers, got.informational
    else:
        headers, informational = got, is_informational_response(got)
    if informational:
        if end_stream:
            msg = "Cannot set END_STREAM on informational responses"
            raise ProtocolError(msg)
        input_ = _S_RECV_INFO
    else:
        input_ = _S_RECV_HEADERS
    ssm = stream.state_machine
    s_events = ssm.process_input(input_)
    event = s_events[0]
    if end_stream:
        es = ssm.process_input(_S_RECV_END_STREAM)
        event.stream_ended = es[0]
        s_events += es
    stream._initialize_content_length(headers)
    if isinstance(event, TrailersReceived) and not end_stream:
        msg = "Trailers must have END_STREAM set"
        raise ProtocolError(msg)
    flags = stream._build_hdr_validation_flags(s_events)
    encoding = h.config.header_encoding
    if got.__class__ is _Block:
        cfg = stream.config
        key = (flags, encoding, cfg.normalize_inbound_headers, cfg.validate_inbound_headers)
        valid = got.valid.get(key)
        if valid is None:
            valid = got.valid[key] = stream._process_received_headers(headers, flags, encoding)
        event.headers = list(valid)
    else:
        event.headers = stream._process_received_headers(headers, flags, encoding)
    return [], events + s_events
