"""The HTTP/2 server side: ``serve_connection(stream, handler, ...)`` on h2.

Task structure of one connection::

    caller                              # waits; its cancellation starts the drain
      region "http2.conn"
        task reader (masked)            # recv -> gate -> h2 frame by frame -> events
          region "http2.streams"
            one task per stream         # handler(request) -> response, flow-controlled

* The gate (``_wire.FrameGate``) checks every 9-byte frame header before h2 sees the
  frame: a frame announcing more than ``max_frame_size`` is rejected (GOAWAY
  FRAME_SIZE_ERROR) after 9 bytes and never buffered; flood counters over a sliding
  window (PING, SETTINGS, RST_STREAM / Rapid Reset, empty DATA/HEADERS/CONTINUATION,
  PRIORITY, WINDOW_UPDATE, refused streams) end the connection with
  GOAWAY(ENHANCE_YOUR_CALM); a header block's fragments are capped at 4× the header
  list size and must be complete within ``continuation_timeout``.
* Streams over ``max_concurrent_streams`` are refused with RST_STREAM(REFUSED_STREAM)
  (a stream error: the client may retry) and no handler starts. h2 would make it a
  connection error, so h2 is configured with a larger internal limit while the
  SETTINGS frame we send advertises the real one.
* Malformed requests (illegal header characters, connection-specific headers,
  duplicate or missing pseudo-headers, a content-length that disagrees with the
  DATA) are stream errors: RST_STREAM(PROTOCOL_ERROR), the connection carries on.
  Frames are handed to h2 one at a time so that one stream's error does not lose the
  frames behind it.
* Flow control never leaks window: DATA is acknowledged exactly when the handler
  reads it; DATA for a stream that is reset, refused, finished or cancelled is
  acknowledged in the connection window at once. The WINDOW_UPDATE frames for what
  handlers read go out in batches: once a quarter of a window is due (the
  connection's or a stream's), and ahead of every control frame we answer with
  (PING and SETTINGS ACKs), so a PING round trip always finds the windows whole; a
  client never waits on a batch (it still has three quarters of each window).
* Graceful shutdown (``shutdown`` event set, or the caller cancelled with reason
  SHUTDOWN): GOAWAY(NO_ERROR, last-stream-id = the highest stream seen); newer
  streams are refused; in-flight streams may finish within ``drain_timeout``; then
  they are cancelled (each reset). Any other cancellation of the caller cancels every
  stream at once (each reset with CANCEL) after a GOAWAY.
* A handler task that is cancelled (peer RST_STREAM, drain deadline) leaves its
  stream reset; a handler that fails gets 500 if no head was sent, else
  RST_STREAM(INTERNAL_ERROR).
* Backpressure both ways: a response waits for the peer's window (and is reset after
  ``window_stall_timeout``); when more than ``send_high_water`` bytes are queued
  towards a peer that does not read, the reader stops reading from it until the
  queue drains.
"""

from __future__ import annotations

import collections
import logging
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import h2.stream
import hpack.exceptions
import hyperframe.exceptions
import hyperframe.frame

import greenrt
from greenrt import CancelKind, Cancelled, net
from greenrt import lowlevel as ll

from ..http._date import date_value
from ..http.model import Body, Headers, Request, Response, ResponseWriter, split_trailers
from . import _connect, _h2c, _h2fast, _wire
from ._wire import PREFACE
from .limits import DEFAULT_H2_LIMITS, H2Limits

__all__ = ["serve_connection", "PREFACE", "ServerConnection"]

_log = logging.getLogger("greenrt.http")
# after a connection-error GOAWAY: how long / how much input is read and discarded
_LINGER_SECONDS = 1.0
_LINGER_BYTES = 1024 * 1024
_E = h2.errors.ErrorCodes
# h2 enforces MAX_CONCURRENT_STREAMS as a connection error; we want a stream error,
# so h2 gets this as its internal limit and we count (and refuse) ourselves
_H2_INTERNAL_STREAM_LIMIT = 2**31 - 1
_CONNECTION_HEADERS = frozenset((b"connection", b"keep-alive", b"transfer-encoding",
                                 b"upgrade", b"proxy-connection"))
_C_SEND_HEADERS = h2.connection.ConnectionInputs.SEND_HEADERS
_C_SEND_DATA = h2.connection.ConnectionInputs.SEND_DATA
_S_SEND_HEADERS = h2.stream.StreamInputs.SEND_HEADERS
_S_SEND_DATA = h2.stream.StreamInputs.SEND_DATA
_S_SEND_END_STREAM = h2.stream.StreamInputs.SEND_END_STREAM


def _emit(code: str, **data: Any) -> None:
    ll.current_hub().emit("protocol.error", protocol="http2", code=code, **data)




def _classify(e: h2.exceptions.ProtocolError) -> tuple[int, str]:
    """The GOAWAY code and trace code for an error h2 raised: h2 reports HPACK
    decoding failures as PROTOCOL_ERROR, but RFC 9113 4.3 wants COMPRESSION_ERROR."""
    if isinstance(e, h2.exceptions.DenialOfServiceError):
        return _E.ENHANCE_YOUR_CALM, "hpack_bomb"
    if isinstance(e.__cause__, hpack.exceptions.HPACKError):
        return _E.COMPRESSION_ERROR, "hpack_error"
    return int(getattr(e, "error_code", None) or _E.PROTOCOL_ERROR), "protocol_error"


def _is_stream_error(e: Exception, frame: Any) -> bool:
    """Is ``e`` (raised by h2 for ``frame``) confined to the frame's stream? Header
    validation failures (plain ``ProtocolError`` from a header block, not HPACK) and
    content-length mismatches are (RFC 9113 8.1.1); everything else ends the
    connection."""
    if not getattr(frame, "stream_id", 0):
        return False
    if isinstance(e, h2.exceptions.InvalidBodyLengthError):
        return True
    return (type(e) is h2.exceptions.ProtocolError
            and isinstance(frame, (hyperframe.frame.HeadersFrame,
                                   hyperframe.frame.ContinuationFrame))
            and not isinstance(e.__cause__, hpack.exceptions.HPACKError))


def feed_frames(h: h2.connection.H2Connection, data: bytes, on_stream_error) -> list:
    """h2's ``receive_data`` one frame at a time (the frames from ``_h2fast.frames``),
    so that a stream error (see ``_is_stream_error``) becomes
    ``on_stream_error(frame, exc)`` (the caller resets that stream) without losing
    the frames behind it in ``data``. Other h2 errors propagate (connection
    errors). No I/O, no greenrt: the fuzz targets call it."""
    it = _h2fast.frames(h, data)
    receive = _h2fast.receive_frame
    events: list = []
    while True:
        try:
            frame = next(it)
        except StopIteration:
            return events
        except hyperframe.exceptions.InvalidPaddingError as e:
            raise h2.exceptions.ProtocolError("invalid padding") from e
        try:
            events.extend(receive(h, frame))
        except h2.exceptions.ProtocolError as e:
            if not _is_stream_error(e, frame):
                raise
            on_stream_error(frame, e)


class _ConnectionEnd(Exception):
    def __init__(self, code: int, why: str, debug: bytes = b""):
        super().__init__(why)
        self.code = code
        self.why = why
        self.debug = debug  # the GOAWAY's debug data


class _Stream:
    __slots__ = ("id", "chunks", "ended", "reset", "task", "waiter", "window_waiter",
                 "received", "length", "writer", "tunnel", "trailers", "ack_pending")

    def __init__(self, sid: int):
        self.id = sid
        self.chunks: collections.deque = collections.deque()  # (bytes, flow-controlled length)
        self.ended = False
        self.reset = False
        self.task = None
        self.waiter: greenrt.Event | None = None
        self.window_waiter: greenrt.Event | None = None
        self.received = 0
        self.length: int | None = None
        self.writer: Any = None
        self.tunnel: Any = None  # an RFC 8441 tunnel (_connect.Tunnel)
        self.trailers: Headers | None = None  # the request's trailing HEADERS
        self.ack_pending = 0  # stream window read and not yet sent back (batched)

    def wake(self) -> None:
        for ev in (self.waiter, self.window_waiter):
            if ev is not None:
                ev.set()


class _Body(Body):
    """A request body fed by the connection's DATA frames."""

    def __init__(self, conn: ServerConnection, st: _Stream, length: int | None):
        self._c = conn
        self._s = st
        self._length = length
        self._pending = b""

    def read(self, max_bytes: int = 65536) -> bytes:
        """Next body bytes (``b""`` at the end). A checkpoint; cancellation loses no
        data. Acknowledges what it returns in both flow-control windows."""
        ll.enter_checkpoint()
        if max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        st = self._s
        while not self._pending:
            if st.chunks:
                data, flow = st.chunks.popleft()
                self._c.ack(st.id, flow)
                self._pending = data
                break
            if st.ended or st.reset:
                return b""
            st.waiter = greenrt.Event()
            try:
                st.waiter.wait()
            finally:
                st.waiter = None
        out, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        return out

    def take_complete(self) -> bytes | None:
        """The whole rest of the body at once if the request has ended (END_STREAM
        seen), acknowledged like ``read``; ``None`` (nothing taken) while more may
        come. Not a checkpoint (it never waits); a body read this way is
        ``complete``. For handlers that want the whole of a small request (a unary
        gRPC call) without a read per chunk."""
        st = self._s
        if not st.ended or st.reset:
            return None
        chunks = st.chunks
        if not chunks:
            out, self._pending = self._pending, b""
            return out
        if len(chunks) == 1 and not self._pending:
            data, flow = chunks.popleft()
            self._c.ack(st.id, flow)
            return data
        parts = [self._pending]
        flow = 0
        while chunks:
            data, f = chunks.popleft()
            parts.append(data)
            flow += f
        self._pending = b""
        self._c.ack(st.id, flow)
        return b"".join(parts)

    @property
    def complete(self) -> bool:
        return self._s.ended and not self._s.chunks and not self._pending

    @property
    def content_length(self) -> int | None:
        return self._length

    @property
    def trailers(self) -> Headers | None:
        """``None`` until the body is read to its end, then the fields of the request's
        trailing HEADERS (empty ``Headers`` if none). Not a checkpoint."""
        if not self.complete:
            return None
        t = self._s.trailers
        return t if t is not None else Headers()


class ServerConnection:
    """The state of one served connection (what ``serve_connection`` returns once the
    connection has ended: ``statistics()`` tells how it went)."""

    def __init__(self, stream, handler, limits: H2Limits, scheme: str, client: Any,
                 shutdown: greenrt.Event | None = None, upgrade: Any = None,
                 ping_hook: Any = None):
        self.stream = stream
        #: ``ping_hook(conn)``, called for every PING the client sends (not ACKs):
        #: a ``bytes`` result ends the connection with GOAWAY(ENHANCE_YOUR_CALM)
        #: carrying it as debug data (gRPC's keepalive policy, ``too_many_pings``)
        self.ping_hook = ping_hook
        #: HEADERS and DATA sends so far (what a ping policy asks: did the server
        #: send anything since the last PING)
        self.sends = 0
        #: an ``_h2c.Upgrade`` (the HTTP/1.1 request that asked for ``Upgrade: h2c``)
        self.upgrade = upgrade
        self.handler = handler
        self.limits = limits
        self.scheme = scheme
        self.client = client
        self.shutdown_event = shutdown
        self.hub = ll.current_hub()
        cfg = h2.config.H2Configuration(client_side=False, header_encoding=None,
                                        validate_inbound_headers=True)
        self.h2 = h2.connection.H2Connection(cfg)
        # RFC 8441: advertised when the handler accepts extended CONNECT (_connect.py)
        self.connect_protocol = _connect.enabled(handler)
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: int(self.connect_protocol),
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: _H2_INTERNAL_STREAM_LIMIT,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_list_size,
            h2.settings.SettingCodes.MAX_FRAME_SIZE: limits.max_frame_size,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: limits.initial_window_size,
        })
        self.h2.max_inbound_frame_size = limits.max_frame_size
        # the HPACK decoder enforces the header list size (32 bytes/entry, RFC 7541)
        self.h2.decoder.max_header_list_size = limits.max_header_list_size
        self.gate = _wire.FrameGate(limits, self.hub.now, preface=True)
        self.writer = _wire.Writer(stream, limits.send_timeout)
        self.streams: dict[int, _Stream] = {}
        self.region = None
        self.closed = False
        self.handler_starts = 0
        self.draining = False
        self.drain_deadline: float | None = None
        self.last_stream_id: int | None = None  # of the GOAWAY we sent
        self.goaway_received: tuple[int, int] | None = None
        self.stats: collections.Counter = collections.Counter()
        self._recv_scope: greenrt.CancelScope | None = None
        self._done = greenrt.Event()
        self._flush_wait = ll.WaitQueue()
        self._flusher_idle = False
        self._errored: set[int] = set()  # streams reset by a stream error, this batch
        # window read by handlers and not yet sent back (see ack)
        self._ack_conn = 0
        self._ack_streams: list[_Stream] = []
        self._ack_batch = max(1, min(65535, limits.initial_window_size) // 4)

    # -- sending ------------------------------------------------------------------------

    def flush(self, acks: bool | None = False) -> None:
        """Queue what h2 has to send and wake the flusher. Not a checkpoint: every
        task's frames of one scheduling round leave in one write. ``acks``: the
        window updates due go too, ahead of the rest; ``None``: only if h2 has
        something to send (its answers to the peer's frames: a control write)."""
        data = self.h2.data_to_send()
        if (acks or (acks is None and data)) and (self._ack_conn or self._ack_streams):
            self._emit_acks()
            data = self.h2.data_to_send() + data
        if data and not self.closed:
            self.writer.queue(data)
            if self._flusher_idle:
                self._flusher_idle = False
                self._flush_wait.wake_one()

    def _flusher(self) -> None:
        """The task that writes to the transport (see ``_wire.Writer``; a lone
        stream's task writes its own frames, see ``_kick``): waits for queued bytes,
        lets the other ready tasks add theirs (one ``yield_now``), then writes them
        all at once."""
        w = self.writer
        while not self.closed:
            if not w.buf:
                self._flusher_idle = True
                self._flush_wait.park(what="http2.flusher")
                continue
            if w.sending:  # another task is sending (and sends what is queued)
                w.drained.park(what="http2.flusher")
                continue
            ll.yield_now()
            w.write(b"")
            if w.broken is not None:
                self.closed = True
                self._wake_all()
                if self._recv_scope is not None:
                    self._recv_scope.cancel()

    def _kick(self) -> None:
        """Bytes were queued by a stream's task and the flusher is idle: while this is
        the connection's only stream (nothing to batch with) and nothing is being
        sent, the calling task writes them itself (a checkpoint only if the send
        blocks; masked, see ``_wire.Writer.write``), saving the hand-off to the
        flusher and back; otherwise the flusher is woken, so the frames of every
        task of a scheduling round leave in one write."""
        w = self.writer
        if w.sending:
            return  # the sending task sends what is queued before it stops
        if len(self.streams) > 1:
            self._flusher_idle = False
            self._flush_wait.wake_one()
            return
        w.write(b"")
        if w.broken is not None and not self.closed:
            self.closed = True
            self._wake_all()
            if self._recv_scope is not None:
                self._recv_scope.cancel()

    def ack(self, sid: int, flow: int, *, connection: bool = True,
            stream: bool = True) -> None:
        """Return ``flow`` consumed bytes to the peer, in the connection window and (if
        the stream is still open) the stream's. Exact accounting rather than h2's
        half-window heuristic, so no byte is ever left unacknowledged; the frames are
        batched (see the module docstring): sent now once a quarter window is due,
        else ahead of the next control frame. ``connection=False`` or ``stream=False``
        credits one window only (RFC 8441 tunnels credit the connection on arrival,
        the stream when read). Not a checkpoint."""
        if not flow or self.closed:
            return
        due = False
        if connection:
            self.stats["acked"] += flow
            self._ack_conn += flow
            due = self._ack_conn >= self._ack_batch
        st = self.streams.get(sid) if stream else None
        if st is not None and not st.reset and not st.ended:
            if not st.ack_pending:
                self._ack_streams.append(st)
            st.ack_pending += flow
            due = due or st.ack_pending >= self._ack_batch
        if due:
            self.flush(acks=True)

    def _emit_acks(self) -> None:
        """Hand the window updates due to h2 (queued in its outbound buffer)."""
        if self._ack_conn:
            self.h2.increment_flow_control_window(self._ack_conn)
            self._ack_conn = 0
        for st in self._ack_streams:
            n, st.ack_pending = st.ack_pending, 0
            if not st.reset and not st.ended and st.id in self.streams:
                try:
                    self.h2.increment_flow_control_window(n, stream_id=st.id)
                except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError,
                        KeyError):
                    pass  # (h2 forgets closed streams: KeyError)
        self._ack_streams.clear()

    def _wake_all(self) -> None:
        for st in list(self.streams.values()):
            st.wake()

    # -- the connection's life ------------------------------------------------------------

    def run(self, initial: bytes) -> None:
        with greenrt.region(name="http2.conn") as outer:
            outer.spawn(self._reader, initial, name="http2.reader")
            watcher = None
            if self.shutdown_event is not None:
                watcher = outer.spawn(self._watch_shutdown, name="http2.shutdown_watch")
            try:
                self._done.wait()
            except Cancelled as e:
                reason = getattr(e, "reason", None)
                # SHUTDOWN (greenrt.net.Server's and protocols.base.serve's graceful
                # shutdown): drain within drain_timeout; the server's cleanup budget,
                # if shorter, still cuts it (it pierces the mask). Any other
                # cancellation: the streams are cancelled now.
                graceful = getattr(reason, "kind", None) is CancelKind.SHUTDOWN
                self.begin_drain(graceful=graceful)
                raise
            finally:
                if watcher is not None:
                    watcher.cancel()

    def _watch_shutdown(self) -> None:
        self.shutdown_event.wait()
        self.begin_drain(graceful=True)

    def begin_drain(self, *, graceful: bool = True) -> None:
        """Start the shutdown: GOAWAY(NO_ERROR) with the highest stream id seen; with
        ``graceful`` the in-flight streams get ``drain_timeout`` seconds to finish,
        else they are cancelled (and reset) now. Streams the client opens after the
        GOAWAY are refused. Not a checkpoint, never blocks: the GOAWAY is queued and
        the reader task writes it; callable from any task of the hub (it is the drain
        hook ``protocols.base.serve`` calls). Idempotent."""
        if self.closed:
            return
        if not self.draining:
            self.draining = True
            self.last_stream_id = self.h2.highest_inbound_stream_id
            self.hub.emit("http2.goaway", side="server", last_stream_id=self.last_stream_id,
                          error_code=0, graceful=graceful)
            self.writer.queue(self.h2.data_to_send()
                              + _wire.goaway_frame(self.last_stream_id, _wire.NO_ERROR))
            if self._flusher_idle:
                self._flusher_idle = False
                self._flush_wait.wake_one()
            self.drain_deadline = self.hub.now() + self.limits.drain_timeout
        if not graceful:
            self.drain_deadline = self.hub.now()
        if self._recv_scope is not None:  # the reader re-evaluates its deadline
            self._recv_scope.cancel()

    def _reader(self, initial: bytes) -> None:
        try:
            with greenrt.masked(name="http2.conn"):
                with greenrt.region(name="http2.streams") as r:
                    self.region = r
                    r.spawn(self._flusher, name="http2.flusher")
                    try:
                        self._read_loop(initial)
                    finally:
                        if self.writer.broken is None:
                            # what the last streams and the GOAWAY left queued
                            self.writer.queue(self.h2.data_to_send())
                            self.writer.write(b"")
                        self.closed = True
                        for st in list(self.streams.values()):
                            st.reset = True
                            st.wake()
                        r.cancel()
        finally:
            self._done.set()

    def _read_loop(self, initial: bytes) -> None:
        if self.upgrade is not None:  # Upgrade: h2c, the 101 is sent (see _h2c)
            _h2c.initiate(self.h2, self.upgrade.settings)
        else:
            self.h2.initiate_connection()
        # h2 serialized its SETTINGS with the internal stream limit: advertise ours
        self.h2.clear_outbound_data_buffer()
        lim = self.limits
        settings = {
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: lim.max_concurrent_streams,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: lim.max_header_list_size,
            h2.settings.SettingCodes.MAX_FRAME_SIZE: lim.max_frame_size,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: lim.initial_window_size,
        }
        if self.connect_protocol:
            settings[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL] = 1
        self.writer.write(hyperframe.frame.SettingsFrame(0, settings=settings).serialize())
        try:
            if self.upgrade is not None:
                self._spawn_upgraded()
            if initial:
                self._receive(initial)
            while not self.closed:
                if self.draining and not self.streams:
                    break
                if self.writer.pending >= lim.send_high_water:
                    self.stats["high_water_pauses"] += 1
                    self.hub.emit("http2.send_high_water", queued=self.writer.pending)
                    self.writer.wait_drained(lim.send_high_water // 2)
                    continue
                data = self._recv()
                if data is None:
                    continue  # a deadline to look at
                if not data:
                    break
                self._receive(data)
        except _ConnectionEnd as e:
            self._goaway_error(e.code, e.why, debug=e.debug)
        except _wire.GateError as e:
            self._goaway_error(e.code, e.why)
        except h2.exceptions.ProtocolError as e:
            code, why = _classify(e)
            # h2 queued its own GOAWAY (with PROTOCOL_ERROR for HPACK failures):
            # replace it by ours, carrying the code RFC 9113 asks for
            self.h2.clear_outbound_data_buffer()
            self._goaway_error(code, why, error=str(e)[:200])

    def _goaway_error(self, code: int, why: str, *, debug: bytes = b"", **extra: Any) -> None:
        _emit(why, error_code=int(code), **extra)
        self.stats["goaway_" + why] += 1
        self.writer.write(_wire.goaway_frame(self.h2.highest_inbound_stream_id, int(code),
                                             debug))
        self._linger()

    def _linger(self) -> None:
        """After a connection-error GOAWAY: half-close, then read and discard what the
        peer is still sending for a moment (at most ``_LINGER_SECONDS`` and
        ``_LINGER_BYTES``). Closing a socket with unread input sends a reset, and a
        reset can make the peer's kernel drop the GOAWAY before the peer reads it (a
        flooding client is exactly one that is still sending). A checkpoint."""
        stream = self.stream
        try:
            stream.send_eof()
        except Exception:  # noqa: BLE001 - the transport is already gone: nothing to save
            return
        seen = 0
        with greenrt.move_on_after(_LINGER_SECONDS):
            while seen < _LINGER_BYTES:
                try:
                    data = stream.recv(65536)
                except Exception:  # noqa: BLE001 - a reset or a closed stream ends it
                    return
                if not data:
                    return
                seen += len(data)

    def _recv(self) -> bytes | None:
        """One read, bounded by whichever deadline applies (CONTINUATION, drain).
        ``None`` when a deadline needs looking at, ``b""`` at EOF."""
        now = self.hub.now()
        deadline = None
        started = self.gate.block_started
        if started is not None:
            deadline = started + self.limits.continuation_timeout
            if now >= deadline:
                raise _ConnectionEnd(_E.ENHANCE_YOUR_CALM, "continuation_timeout")
        if self.drain_deadline is not None:
            if now >= self.drain_deadline:
                self.region.cancel()  # in-flight streams had their chance
                self.stats["drain_cancelled"] += len(self.streams)
                for st in list(self.streams.values()):
                    self._reset(st, _E.CANCEL)
                return b""
            deadline = self.drain_deadline if deadline is None else min(deadline,
                                                                        self.drain_deadline)
        scope = greenrt.CancelScope(name="http2.recv")
        if deadline is not None:
            scope = greenrt.move_on_at(deadline, name="http2.recv")
        self._recv_scope = scope
        try:
            with scope:
                try:
                    return self.stream.recv(65536)
                except (net.StreamError, greenrt.ClosedResourceError, OSError):
                    return b""
        finally:
            self._recv_scope = None
        return None  # the scope was cancelled: a deadline passed or the drain began

    def _receive(self, data: bytes) -> None:
        self.stats["bytes_received"] += len(data)
        for piece in self.gate.feed(data):
            if type(piece) is tuple:
                self._on_goaway(*piece)
                continue
            for ev in self._h2_receive(piece):
                self._event(ev)
            self._errored.clear()
        self.flush(acks=None)

    def _h2_receive(self, data: bytes) -> list:
        return feed_frames(self.h2, data, self._stream_error)

    def _stream_error(self, frame: Any, e: Exception) -> None:
        sid = frame.stream_id
        why = ("content_length_mismatch" if isinstance(e, h2.exceptions.InvalidBodyLengthError)
               else "malformed_headers")
        _emit(why, stream_id=sid, error=str(e)[:200])
        self.stats["stream_errors"] += 1
        if isinstance(frame, hyperframe.frame.DataFrame):
            # h2 consumed the frame's connection window before objecting
            flow = frame.flow_controlled_length
            self.h2.increment_flow_control_window(flow)
        st = self.streams.get(sid)
        if st is not None:
            self._reset(st, _E.PROTOCOL_ERROR)
        else:
            # its RequestReceived may be among this batch's events, not yet handled:
            # it must not start a handler for a stream that is reset already
            self._errored.add(sid)
            try:
                self.h2.reset_stream(sid, error_code=_E.PROTOCOL_ERROR)
            except h2.exceptions.ProtocolError:
                pass
            self.gate.count("server_reset", self.limits.refused_per_window)

    def _on_goaway(self, last_id: int, code: int) -> None:
        # the client is going away: finish what it sent, accept nothing newer
        self.goaway_received = (last_id, code)
        self.hub.emit("http2.goaway", side="client", last_stream_id=last_id, error_code=code)
        if code != _wire.NO_ERROR:
            raise _ConnectionEnd(_wire.NO_ERROR, "client_goaway_error")
        if not self.draining:
            self.draining = True
            self.last_stream_id = self.h2.highest_inbound_stream_id
            self.drain_deadline = self.hub.now() + self.limits.drain_timeout

    def _event(self, ev) -> None:
        t = type(ev)
        if t is h2.events.RequestReceived:
            self._request(ev)
        elif t is h2.events.DataReceived:
            st = self.streams.get(ev.stream_id)
            if st is None or st.reset or st.task is None:
                self.ack(ev.stream_id, ev.flow_controlled_length)
                return
            if st.tunnel is not None:  # RFC 8441: no body limit, window back at once
                st.tunnel.on_data(ev.data, ev.flow_controlled_length)
                return
            st.received += len(ev.data)
            if st.received > self.limits.max_body_bytes:
                self.ack(ev.stream_id, ev.flow_controlled_length)
                _emit("body_too_large", stream_id=st.id)
                self._reset(st, _E.REFUSED_STREAM)
                return
            st.chunks.append((ev.data, ev.flow_controlled_length))
            st.wake()
        elif t is h2.events.StreamEnded:
            st = self.streams.get(ev.stream_id)
            if st is not None:
                st.ended = True
                st.wake()
        elif t is h2.events.StreamReset:
            self.stats["resets_received"] += 1
            st = self.streams.get(ev.stream_id)
            if st is not None:
                self._drop(st)
                if st.task is not None:
                    st.task.cancel()
        elif t is h2.events.WindowUpdated or t is h2.events.RemoteSettingsChanged:
            for st in self.streams.values():
                if st.window_waiter is not None:
                    st.window_waiter.set()
        elif t is h2.events.TrailersReceived:
            # h2 has checked them: END_STREAM set, no pseudo-header (else a stream
            # error), one header block within max_header_list_size (the HPACK decoder)
            st = self.streams.get(ev.stream_id)
            if st is not None:
                st.trailers, dropped = split_trailers(ev.headers)
                if dropped:
                    self.hub.emit("http2.trailer_dropped", stream_id=st.id,
                                  fields=[n.decode("latin-1") for n in dropped[:16]])
                st.ended = True  # StreamEnded follows
                st.wake()
        elif t is h2.events.PingReceived:
            if self.ping_hook is not None:
                debug = self.ping_hook(self)
                if debug is not None:
                    raise _ConnectionEnd(_E.ENHANCE_YOUR_CALM, "ping_policy", debug)
        elif t is h2.events.ConnectionTerminated:
            self.closed = True

    def _drop(self, st: _Stream) -> None:
        """Forget a stream; return the window of its unread DATA."""
        st.reset = True
        unread = sum(f for _, f in st.chunks)
        st.chunks.clear()
        if unread and not self.closed:
            self.stats["acked"] += unread
            self.h2.increment_flow_control_window(unread)
        st.wake()
        self.streams.pop(st.id, None)

    def _reset(self, st: _Stream, code) -> None:
        self._drop(st)
        self.stats["resets_sent"] += 1
        if code != _E.NO_ERROR and code != _E.CANCEL and not self.closed:
            # resets the peer provoked (MadeYouReset, CVE-2025-8671) count like its own
            self.gate.count("server_reset", self.limits.refused_per_window)
        if not self.closed:
            try:
                self.h2.reset_stream(st.id, error_code=code)
            except h2.exceptions.StreamClosedError:
                pass
            self.flush()
        if st.task is not None:
            st.task.cancel()

    def _refuse(self, sid: int, why: str) -> None:
        """A stream we will not serve: RST_STREAM(REFUSED_STREAM), no handler. Counted:
        a peer that makes us refuse (or reset) streams in bulk is a flood too."""
        self.stats["refused"] += 1
        self.hub.emit("http2.refused", stream_id=sid, why=why)
        try:
            self.h2.reset_stream(sid, error_code=_E.REFUSED_STREAM)
        except h2.exceptions.ProtocolError:
            pass
        self.gate.count("refused", self.limits.refused_per_window)

    def _request(self, ev) -> None:
        sid = ev.stream_id
        if sid in self._errored:
            return  # reset by a stream error of the same batch (see _stream_error)
        if self.draining and self.last_stream_id is not None and sid > self.last_stream_id:
            self._refuse(sid, "draining")
            return
        if len(self.streams) >= self.limits.max_concurrent_streams:
            self._refuse(sid, "max_concurrent_streams")
            return
        pseudo: dict[bytes, bytes] = {}
        headers = []
        for k, v in ev.headers:
            if k.startswith(b":"):
                pseudo[k] = v
            else:
                headers.append((k, v))
        protocol = pseudo.get(b":protocol")
        if protocol is not None and not _connect.admit(self, sid, pseudo.get(b":method", b""),
                                                       protocol):
            return
        st = _Stream(sid)
        self.streams[sid] = st
        if ev.stream_ended is not None:
            st.ended = True
        hdrs = Headers._trusted(headers)
        cl = hdrs.get("content-length")
        length = int(cl) if cl is not None and cl.isdigit() else None
        method = pseudo.get(b":method", b"GET").decode("latin-1")
        st.writer = _Writer(self, st)
        req = Request(method, pseudo.get(b":path", b"/").decode("latin-1"), hdrs,
                      _Body(self, st, length), http_version="2", writer=st.writer,
                      scheme=pseudo.get(b":scheme", self.scheme.encode()).decode("latin-1"),
                      client=self.client,
                      extensions={"http2.stream_id": sid,
                                  "http2.authority": pseudo.get(b":authority", b"").decode(
                                      "latin-1")})
        if protocol is not None:
            _connect.attach(self, st, req.extensions, protocol)
        self._spawn(st, req)

    def _spawn(self, st: _Stream, req: Request) -> None:
        self.handler_starts += 1
        self.hub.emit("http2.stream", stream_id=st.id)
        st.task = self.region.spawn(self._serve_stream, st, req, name=f"http2.stream.{st.id}")

    def _spawn_upgraded(self) -> None:
        """Stream 1 of an upgraded connection: the HTTP/1.1 request, already complete."""
        st = _Stream(1)
        st.ended = True
        self.streams[1] = st
        st.writer = _Writer(self, st)
        self._spawn(st, _h2c.stream_request(self.upgrade, st.writer, _Body(self, st, 0)))

    # -- one stream -----------------------------------------------------------------------

    def _serve_stream(self, st: _Stream, req: Request) -> None:
        headers_sent = False
        writer = st.writer
        try:
            resp = self.handler(req)
            if resp is None and writer.headers_sent:
                writer.finish()  # the handler streamed through request.writer
                return
            headers_sent = writer.headers_sent
            if resp is None:
                resp = Response(204)
            head_only = req.method == "HEAD" or resp.status in (204, 304)
            hdrs = resp.headers
            if (not resp.streaming and resp.status not in (204, 304)
                    and hdrs.get("content-length") is None):
                # a whole body's length is known: say it, as HTTP/1.1 does (and a
                # HEAD answer tells the length the GET would have had, RFC 9110 9.3.2)
                hdrs = Headers(list(hdrs.raw())
                               + [(b"content-length", str(len(resp.body)).encode())])
            self._send_head(st, resp.status, hdrs,
                            end=head_only or (not resp.streaming and not resp.body))
            headers_sent = True
            if head_only:
                # no content in an answer to HEAD, nor in a 204/304 (RFC 9110 6.4.1):
                # a streaming body is closed unread
                close = getattr(resp.chunks, "close", None) if resp.streaming else None
                if close is not None:
                    close()
            elif resp.streaming:
                chunks = resp.chunks
                try:
                    for c in chunks:
                        if c:
                            self._send_data(st, bytes(c))
                finally:
                    close = getattr(chunks, "close", None)
                    if close is not None:
                        close()
                self._end(st)
            elif resp.body:
                self._send_data(st, resp.body)
                self._end(st)
        except Cancelled:
            if not self.closed and st.id in self.streams:
                self._reset(st, _E.CANCEL)
            raise
        except _StreamGone:
            pass
        except Exception:
            _log.exception("handler failed on stream %d", st.id)
            if self.closed or st.id not in self.streams:
                return
            if not headers_sent and not writer.headers_sent:  # else streaming began: reset
                try:
                    self._send_head(st, 500, Headers([("content-type", "text/plain")]), end=False)
                    self._send_data(st, b"Internal Server Error\n")
                    self._end(st)
                except _StreamGone:
                    pass
            elif not writer.finished:  # a finished response (a closed tunnel) stands
                self._reset(st, _E.INTERNAL_ERROR)
        finally:
            if st.id in self.streams and not st.reset:
                if not st.ended:
                    # the response is complete but the request body is not: we do not
                    # want the rest (RFC 9113 8.1), and its window must not leak
                    self._reset(st, _E.NO_ERROR)
                else:
                    self._drop(st)
                    self.flush()
            if self.draining and not self.streams and self._recv_scope is not None:
                self._recv_scope.cancel()  # the last in-flight stream: the drain is done

    def _send_head(self, st: _Stream, status: int, headers: Headers, *, end: bool) -> None:
        if self.closed or st.reset:
            raise _StreamGone()
        out = [(b":status", str(status).encode())]
        has_date = False
        for k, v in headers.raw():
            if k in _CONNECTION_HEADERS:
                continue
            if k == b"date":
                has_date = True
            out.append((k, v))
        if not has_date:  # RFC 9110 6.6.1; the hub's clock (virtual under the lab)
            out.append((b"date", date_value(self.hub.wall_time())))
        self.sends += 1
        self.h2.send_headers(st.id, out, end_stream=end)
        self.flush()

    def _send_whole(self, st: _Stream, head: _wire.HeaderBlock, data: bytes,
                    trailers: _wire.HeaderBlock) -> None:
        """A whole response: HEADERS (``head``, which starts with ``:status``), one
        DATA, trailing HEADERS with END_STREAM, queued as one write. The blocks are
        pre-encoded (``_wire.HeaderBlock``) and h2's stream and connection state
        machines and windows are advanced as its ``send_headers``/``send_data``
        would. When that is not possible at once (a window or the frame size too
        small for ``data``, the send queue over its high-water mark, an HPACK table
        size update due first) it takes the general path, which waits."""
        if self.closed or st.reset:
            raise _StreamGone()
        h = self.h2
        n = len(data)
        stream = h.streams.get(st.id)
        mfs = h.max_outbound_frame_size
        if (stream is None or h.encoder.table_size_changes or n > mfs
                or n > h.outbound_flow_control_window
                or n > stream.outbound_flow_control_window
                or len(head.block) > mfs or len(trailers.block) > mfs
                or self.writer.pending >= self.limits.send_high_water):
            f = head.fields
            self._send_head(st, int(f[0][1]), Headers._trusted(f[1:]), end=False)
            if n:
                self._send_data(st, data)
            self._send_trailers(st, Headers._trusted(trailers.fields))
            return
        self.sends += 1
        sm, ssm = h.state_machine, stream.state_machine
        sm.process_input(_C_SEND_HEADERS)
        ssm.process_input(_S_SEND_HEADERS)
        sid = st.id
        out = [h.data_to_send(), _wire.frame_header(len(head.block), _wire.HEADERS,
                                                    _wire.END_HEADERS, sid), head.block]
        if n:
            sm.process_input(_C_SEND_DATA)
            ssm.process_input(_S_SEND_DATA)
            stream.outbound_flow_control_window -= n
            h.outbound_flow_control_window -= n
            out += (_wire.frame_header(n, _wire.DATA, 0, sid), data)
        sm.process_input(_C_SEND_HEADERS)
        ssm.process_input(_S_SEND_HEADERS)  # the trailers
        ssm.process_input(_S_SEND_END_STREAM)
        out += (_wire.frame_header(len(trailers.block), _wire.HEADERS,
                                   _wire.END_HEADERS | _wire.END_STREAM, sid), trailers.block)
        self.writer.queue(b"".join(out))
        if self._flusher_idle:
            self._kick()

    def _send_data(self, st: _Stream, data: bytes) -> None:
        view = memoryview(data)
        lim = self.limits
        self.sends += 1
        while view:
            if self.closed or st.reset:
                raise _StreamGone()
            if self.writer.pending >= lim.send_high_water:
                self.writer.wait_drained(lim.send_high_water // 2)
                continue
            if len(view) == len(data) and (out := _h2fast.send_data(self.h2, st.id,
                                                                   data)) is not None:
                # the whole of it fits one frame and the windows: no DataFrame
                self.writer.queue(out)
                if self._flusher_idle:
                    self._kick()
                return
            window = min(self.h2.local_flow_control_window(st.id),
                         self.h2.max_outbound_frame_size)
            if window <= 0:
                self._wait_window(st)
                continue
            chunk, view = view[:window], view[window:]
            self.h2.send_data(st.id, bytes(chunk))
            self.flush()

    def _wait_window(self, st: _Stream) -> None:
        st.window_waiter = greenrt.Event()
        try:
            with greenrt.move_on_after(self.limits.window_stall_timeout) as sc:
                st.window_waiter.wait()
        finally:
            st.window_waiter = None
        if sc.cancelled_caught:
            _emit("window_stall", stream_id=st.id)
            self.stats["window_stalls"] += 1
            self._reset(st, _E.CANCEL)
            raise _StreamGone()

    def _end(self, st: _Stream) -> None:
        if self.closed or st.reset:
            raise _StreamGone()
        self.sends += 1
        self.h2.end_stream(st.id)
        self.flush()

    def _send_trailers(self, st: _Stream, trailers: Headers) -> None:
        if self.closed or st.reset:
            raise _StreamGone()
        self.sends += 1
        self.h2.send_headers(st.id, trailers.raw(), end_stream=True)
        self.flush()

    def statistics(self) -> dict:
        """Counters: ``handler_starts``, ``refused``, ``resets_sent``,
        ``resets_received``, ``stream_errors``, ``window_stalls``, ``high_water_pauses``,
        ``drain_cancelled``, ``bytes_received``, ``acked`` (window returned),
        ``goaway_<why>`` per connection error, and ``streams_open``."""
        out = dict(self.stats)
        out["handler_starts"] = self.handler_starts
        out["streams_open"] = len(self.streams)
        out["send_queued"] = self.writer.bytes_queued
        return out


# the pre-drain name, kept for callers that imported it
_Conn = ServerConnection


class _Writer(ResponseWriter):
    """``request.writer`` for an HTTP/2 stream: HEADERS, then DATA within the flow
    control windows (a write blocks while they are closed: backpressure), then
    END_STREAM. ``content_length`` becomes a ``content-length`` header (HTTP/2 has no
    chunked framing: without one the body simply ends with the stream). Each call is
    a checkpoint; a cancelled handler's stream is reset (RST_STREAM(CANCEL))."""

    __slots__ = ("conn", "st", "_sent", "_finished")

    def __init__(self, conn: ServerConnection, st: _Stream):
        self.conn = conn
        self.st = st
        self._sent = False
        self._finished = False

    def start(self, status: int, headers: Any = None, *, reason: str | bytes | None = None,
              content_length: int | None = None) -> None:
        if self._sent:
            raise RuntimeError("response head already sent")
        ll.enter_checkpoint()
        hdrs = headers if isinstance(headers, Headers) else Headers(headers or [])
        if content_length is not None and hdrs.get("content-length") is None:
            hdrs = Headers(list(hdrs.raw()) + [(b"content-length", str(content_length).encode())])
        self._sent = True
        self.conn._send_head(self.st, status, hdrs, end=False)

    def write(self, data: bytes) -> None:
        if not self._sent:
            raise RuntimeError("write() before start()")
        ll.enter_checkpoint()
        if data:
            self.conn._send_data(self.st, bytes(data))

    def send_whole(self, head: _wire.HeaderBlock, data: bytes,
                   trailers: _wire.HeaderBlock) -> None:
        """The whole response at once: ``head`` (a pre-encoded ``_wire.HeaderBlock``
        starting with ``:status``), ``data`` as the body, ``trailers`` (another
        block) with END_STREAM; one write when the windows allow (else it waits
        for them, as ``write`` does). A checkpoint; the response is then finished.
        Cancelled: as ``write``."""
        if self._sent:
            raise RuntimeError("response head already sent")
        ll.enter_checkpoint()
        self._sent = True
        self._finished = True
        self.conn._send_whole(self.st, head, data, trailers)

    def finish(self, trailers: Any = None) -> None:
        """End the response; ``trailers`` (header fields) are sent as a trailing
        HEADERS frame carrying END_STREAM (gRPC's status goes there)."""
        if self._finished:
            return
        if not self._sent:
            self.start(200, [], content_length=0)
        self._finished = True
        if trailers:
            hdrs = trailers if isinstance(trailers, Headers) else Headers(trailers)
            self.conn._send_trailers(self.st, hdrs)
        else:
            self.conn._end(self.st)

    @property
    def headers_sent(self) -> bool:
        return self._sent

    @property
    def finished(self) -> bool:
        return self._finished


class _StreamGone(Exception):
    """The stream was reset or the connection closed while sending."""


def serve_connection(stream, handler, *, limits: H2Limits = DEFAULT_H2_LIMITS,
                     initial: bytes = b"", scheme: str = "http", client: Any = None,
                     shutdown: greenrt.Event | None = None,
                     accepted: Any = None, upgrade: Any = None,
                     ping_hook: Any = None) -> ServerConnection:
    """Serve one HTTP/2 connection on ``stream`` until it ends. A checkpoint (blocks).

    ``initial`` holds bytes already read from the stream (e.g. the client preface,
    read while sniffing). Each stream runs ``handler(request)`` in its own task inside
    the connection's region. Graceful shutdown: set ``shutdown`` (a ``greenrt.Event``),
    or cancel the caller with reason SHUTDOWN (what ``greenrt.net.Server.shutdown``
    does): GOAWAY, then in-flight streams may finish within ``limits.drain_timeout``,
    then they are cancelled. ``accepted`` (a ``protocols.base.serve.Accepted``) gets
    ``begin_drain`` as its drain hook, so the shared accept path's shutdown sends
    GOAWAY. Any other cancellation of the caller sends GOAWAY and
    cancels every stream at once (each is reset). Either way the transport is left
    open for the caller to close. Returns the :class:`ServerConnection` (its
    ``statistics()``).

    ``upgrade`` (a ``protocols.http2._h2c.Upgrade``): the connection was upgraded from
    HTTP/1.1 (``Upgrade: h2c``, RFC 7540 §3.2; the unified server's
    ``protocols.http.server`` sends the 101): its settings are the client's initial
    SETTINGS and its request is served as stream 1, half-closed (remote); ``initial``
    then holds what followed the upgrade request (the client's preface).

    ``ping_hook`` (``ping_hook(conn) -> bytes | None``): called for each PING the
    client sends (not ACKs); a ``bytes`` result ends the connection with
    GOAWAY(ENHANCE_YOUR_CALM) with that debug data (``conn.sends`` counts the HEADERS
    and DATA sent so far; gRPC's keepalive policy uses both).
    """
    conn = ServerConnection(stream, handler, limits, scheme, client, shutdown, upgrade,
                            ping_hook)
    if accepted is not None and hasattr(accepted, "on_drain"):
        accepted.on_drain(conn.begin_drain)
    conn.run(initial)
    return conn
