"""The HTTP/2 server side: ``serve_connection(stream, handler, ...)`` on h2.

Task structure of one connection::

    caller (the reader)              # recv -> frame-size pre-check -> h2 -> events
      region "http2.conn"
        one task per stream          # handler(request) -> response, sent with flow control

* The reader checks every 9-byte frame header itself before h2 sees the frame, so a
  frame announcing more than ``max_frame_size`` is rejected (GOAWAY FRAME_SIZE_ERROR)
  after 9 bytes and never buffered (h2 would buffer the whole payload first).
* Flood defences are counters over a sliding window (``H2Limits.flood_window``):
  PING, SETTINGS, RST_STREAM (Rapid Reset), empty DATA/HEADERS and PRIORITY. Past the
  limit the connection ends with GOAWAY(ENHANCE_YOUR_CALM).
* Flow control never leaks window: DATA is acknowledged in the connection window when
  the handler reads it; DATA for a stream that is reset, finished or cancelled is
  acknowledged at once.
* A handler task that is cancelled (peer RST_STREAM, connection end) leaves its stream
  reset; a handler that fails gets 500 if no head was sent, else RST_STREAM
  (INTERNAL_ERROR).

Not yet done (see docs/http2.md): CONTINUATION deadline, GOAWAY drain budget on
shutdown from outside, send-queue high-water reading pause.
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
import hpack.exceptions
import hyperframe.frame

import greenrt
from greenrt import Cancelled, net
from greenrt import lowlevel as ll

from ..http.model import Body, Headers, Request, Response, ResponseWriter
from .limits import DEFAULT_H2_LIMITS, H2Limits

__all__ = ["serve_connection", "PREFACE"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_log = logging.getLogger("greenrt.protocols.http2")
_FRAME_DATA, _FRAME_HEADERS, _FRAME_PRIORITY, _FRAME_RST = 0, 1, 2, 3
_FRAME_SETTINGS, _FRAME_PING = 4, 6


def _emit(code: str, **data: Any) -> None:
    ll.current_hub().emit("protocol.error", protocol="http2", code=code, **data)


def _classify(e: h2.exceptions.ProtocolError) -> tuple[h2.errors.ErrorCodes, str]:
    """The GOAWAY code and trace code for an error h2 raised: h2 reports HPACK
    decoding failures as PROTOCOL_ERROR, but RFC 9113 4.3 wants COMPRESSION_ERROR."""
    if isinstance(e, h2.exceptions.DenialOfServiceError):
        return h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, "hpack_bomb"
    if isinstance(e.__cause__, hpack.exceptions.HPACKError):
        return h2.errors.ErrorCodes.COMPRESSION_ERROR, "hpack_error"
    return getattr(e, "error_code", h2.errors.ErrorCodes.PROTOCOL_ERROR), "protocol_error"


class _ConnectionEnd(Exception):
    def __init__(self, code: h2.errors.ErrorCodes, why: str):
        super().__init__(why)
        self.code = code
        self.why = why


class _FrameGate:
    """Walks the frame headers of the inbound byte stream (after the preface) without
    buffering payloads: rejects an oversized length after 9 bytes and counts flood
    frames. Total over any segmentation."""

    __slots__ = ("limits", "_pre", "_hdr", "_skip", "_counts", "hub")

    def __init__(self, limits: H2Limits, hub):
        self.limits = limits
        self._pre = len(PREFACE)
        self._hdr = b""
        self._skip = 0
        self._counts: dict[str, collections.deque] = {}
        self.hub = hub

    def _count(self, what: str, maximum: int) -> None:
        now = self.hub.now()
        q = self._counts.setdefault(what, collections.deque())
        q.append(now)
        while q and q[0] < now - self.limits.flood_window:
            q.popleft()
        if len(q) > maximum:
            raise _ConnectionEnd(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, f"{what}_flood")

    def feed(self, data: bytes) -> None:
        i, n = 0, len(data)
        if self._pre:
            k = min(self._pre, n)
            start = len(PREFACE) - self._pre
            if data[:k] != PREFACE[start:start + k]:
                raise _ConnectionEnd(h2.errors.ErrorCodes.PROTOCOL_ERROR, "bad_preface")
            self._pre -= k
            i = k
        lim = self.limits
        while i < n:
            if self._skip:
                k = min(self._skip, n - i)
                self._skip -= k
                i += k
                continue
            need = 9 - len(self._hdr)
            self._hdr += data[i:i + need]
            i += need
            if len(self._hdr) < 9:
                return
            h, self._hdr = self._hdr, b""
            length = int.from_bytes(h[:3], "big")
            ftype, flags = h[3], h[4]
            if length > lim.max_frame_size:
                raise _ConnectionEnd(h2.errors.ErrorCodes.FRAME_SIZE_ERROR, "frame_too_large")
            if ftype == _FRAME_PING and not flags & 1:
                self._count("ping", lim.pings_per_window)
            elif ftype == _FRAME_SETTINGS and not flags & 1:
                self._count("settings", lim.settings_per_window)
            elif ftype == _FRAME_RST:
                self._count("rst_stream", lim.resets_per_window)
            elif ftype == _FRAME_PRIORITY:
                self._count("priority", lim.priority_per_window)
            elif ftype in (_FRAME_DATA, _FRAME_HEADERS) and length == 0 and not flags & 1:
                self._count("empty_frame", lim.empty_frames_per_window)
            self._skip = length


class _Stream:
    __slots__ = ("id", "chunks", "ended", "reset", "task", "waiter", "window_waiter", "writer", "unacked",
                 "received")

    def __init__(self, sid: int):
        self.id = sid
        self.chunks: collections.deque = collections.deque()  # (bytes, flow-controlled length)
        self.ended = False
        self.reset = False
        self.task = None
        self.waiter: greenrt.Event | None = None
        self.window_waiter: greenrt.Event | None = None
        self.writer: Any = None
        self.received = 0

    def wake(self) -> None:
        for ev in (self.waiter, self.window_waiter):
            if ev is not None:
                ev.set()


class _Body(Body):
    """A request body fed by the connection's DATA frames."""

    def __init__(self, conn: _Conn, st: _Stream, length: int | None):
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
            st.waiter.wait()
            st.waiter = None
        out, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        return out

    @property
    def complete(self) -> bool:
        return self._s.ended and not self._s.chunks and not self._pending

    @property
    def content_length(self) -> int | None:
        return self._length


class _Conn:
    def __init__(self, stream, handler, limits: H2Limits, scheme: str, client: Any):
        self.stream = stream
        self.handler = handler
        self.limits = limits
        self.scheme = scheme
        self.client = client
        self.hub = ll.current_hub()
        cfg = h2.config.H2Configuration(client_side=False, header_encoding=None,
                                        validate_inbound_headers=True)
        self.h2 = h2.connection.H2Connection(cfg)
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_list_size,
            h2.settings.SettingCodes.MAX_FRAME_SIZE: limits.max_frame_size,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: limits.initial_window_size,
        })
        self.h2.max_inbound_frame_size = limits.max_frame_size
        # the HPACK decoder enforces the header list size (32 bytes/entry, RFC 7541)
        self.h2.decoder.max_header_list_size = limits.max_header_list_size
        self.gate = _FrameGate(limits, self.hub)
        self.streams: dict[int, _Stream] = {}
        self.send_lock = greenrt.Lock()
        self.region = None
        self.closed = False
        self.handler_starts = 0

    # -- sending ------------------------------------------------------------------------

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and not self.closed:
            with self.send_lock:
                try:
                    self.stream.send_all(data)
                except (net.StreamError, OSError):
                    self.closed = True

    def _send_raw(self, data: bytes) -> None:
        with self.send_lock:
            try:
                self.stream.send_all(data)
            except (net.StreamError, OSError):
                self.closed = True

    def ack(self, sid: int, flow: int) -> None:
        """Return ``flow`` consumed bytes to the peer at once, in the connection window
        and (if the stream is still open) the stream's. Exact accounting rather than
        h2's half-window heuristic, so no byte is ever left unacknowledged."""
        if not flow or self.closed:
            return
        self.h2.increment_flow_control_window(flow)
        st = self.streams.get(sid)
        if st is not None and not st.reset:
            try:
                self.h2.increment_flow_control_window(flow, stream_id=sid)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                pass
        self.flush()

    # -- the reader ---------------------------------------------------------------------

    def run(self, initial: bytes) -> None:
        self.h2.initiate_connection()
        self.flush()
        with greenrt.region(name="http2.conn") as r:
            self.region = r
            try:
                if initial:
                    self._receive(initial)
                while not self.closed:
                    try:
                        data = self.stream.recv(65536)
                    except (net.ClosedResourceError, net.BrokenStreamError):
                        data = b""
                    if not data:
                        break
                    self._receive(data)
            except _ConnectionEnd as e:
                _emit(e.why, error_code=int(e.code))
                self.h2.close_connection(error_code=e.code)
                self.flush()
            except h2.exceptions.ProtocolError as e:
                code, why = _classify(e)
                _emit(why, error_code=int(code), error=str(e)[:200])
                # h2 queued its own GOAWAY (with PROTOCOL_ERROR for HPACK failures):
                # replace it by ours, carrying the code RFC 9113 asks for
                self.h2.clear_outbound_data_buffer()
                self._send_raw(hyperframe.frame.GoAwayFrame(
                    0, last_stream_id=self.h2.highest_inbound_stream_id,
                    error_code=int(code)).serialize())
            finally:
                self.closed = True
                for st in list(self.streams.values()):
                    st.reset = True
                    st.wake()
                r.cancel()

    def _receive(self, data: bytes) -> None:
        self.gate.feed(data)
        events = self.h2.receive_data(data)
        for ev in events:
            self._event(ev)
        self.flush()

    def _event(self, ev) -> None:
        t = type(ev)
        if t is h2.events.RequestReceived:
            self._request(ev)
        elif t is h2.events.DataReceived:
            st = self.streams.get(ev.stream_id)
            if st is None or st.reset or st.task is None:
                self.ack(ev.stream_id, ev.flow_controlled_length)
                return
            st.received += len(ev.data)
            if st.received > self.limits.max_body_bytes:
                self.ack(ev.stream_id, ev.flow_controlled_length)
                self._reset(st, h2.errors.ErrorCodes.REFUSED_STREAM)
                return
            st.chunks.append((ev.data, ev.flow_controlled_length))
            st.wake()
        elif t is h2.events.StreamEnded:
            st = self.streams.get(ev.stream_id)
            if st is not None:
                st.ended = True
                st.wake()
        elif t is h2.events.StreamReset:
            st = self.streams.get(ev.stream_id)
            if st is not None:
                self._drop(st)
                if st.task is not None:
                    st.task.cancel()
        elif t is h2.events.WindowUpdated or t is h2.events.RemoteSettingsChanged:
            for st in self.streams.values():
                if st.window_waiter is not None:
                    st.window_waiter.set()
        elif t is h2.events.ConnectionTerminated:
            self.closed = True

    def _drop(self, st: _Stream) -> None:
        """Forget a stream; return the window of its unread DATA."""
        st.reset = True
        unread = sum(f for _, f in st.chunks)
        st.chunks.clear()
        if unread and not self.closed:
            self.h2.increment_flow_control_window(unread)
        st.wake()
        self.streams.pop(st.id, None)

    def _reset(self, st: _Stream, code) -> None:
        self._drop(st)
        if not self.closed:
            try:
                self.h2.reset_stream(st.id, error_code=code)
            except h2.exceptions.StreamClosedError:
                pass
            self.flush()
        if st.task is not None:
            st.task.cancel()

    def _request(self, ev) -> None:
        sid = ev.stream_id
        pseudo: dict[bytes, bytes] = {}
        headers = []
        for k, v in ev.headers:
            if k.startswith(b":"):
                pseudo[k] = v
            else:
                headers.append((k, v))
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
        self.handler_starts += 1
        self.hub.emit("http2.stream", stream_id=sid)
        st.task = self.region.spawn(self._serve_stream, st, req, name=f"http2.stream.{sid}")

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
            self._send_head(st, resp.status, resp.headers,
                            end=(not resp.streaming and not resp.body))
            headers_sent = True
            if resp.streaming:
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
                self._reset(st, h2.errors.ErrorCodes.CANCEL)
            raise
        except _StreamGone:
            pass
        except Exception:
            _log.exception("handler failed on stream %d", st.id)
            if self.closed or st.id not in self.streams:
                return
            if not headers_sent:
                try:
                    self._send_head(st, 500, Headers([("content-type", "text/plain")]), end=False)
                    self._send_data(st, b"Internal Server Error\n")
                    self._end(st)
                except _StreamGone:
                    pass
            else:
                self._reset(st, h2.errors.ErrorCodes.INTERNAL_ERROR)
        finally:
            if st.id in self.streams and not st.reset:
                self._drop(st)
                self.flush()

    def _send_head(self, st: _Stream, status: int, headers: Headers, *, end: bool) -> None:
        if self.closed or st.reset:
            raise _StreamGone()
        out = [(b":status", str(status).encode())]
        for k, v in headers.raw():
            if k in (b"connection", b"keep-alive", b"transfer-encoding", b"upgrade",
                     b"proxy-connection"):
                continue
            out.append((k, v))
        self.h2.send_headers(st.id, out, end_stream=end)
        self.flush()

    def _send_data(self, st: _Stream, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self.closed or st.reset:
                raise _StreamGone()
            window = min(self.h2.local_flow_control_window(st.id),
                         self.h2.max_outbound_frame_size)
            if window <= 0:
                st.window_waiter = greenrt.Event()
                st.window_waiter.wait()
                st.window_waiter = None
                continue
            chunk, view = view[:window], view[window:]
            self.h2.send_data(st.id, bytes(chunk))
            self.flush()

    def _end(self, st: _Stream) -> None:
        if self.closed or st.reset:
            raise _StreamGone()
        self.h2.end_stream(st.id)
        self.flush()

    def _send_trailers(self, st: _Stream, trailers: Headers) -> None:
        if self.closed or st.reset:
            raise _StreamGone()
        self.h2.send_headers(st.id, trailers.raw(), end_stream=True)
        self.flush()


class _Writer(ResponseWriter):
    """``request.writer`` for an HTTP/2 stream: HEADERS, then DATA within the flow
    control windows (a write blocks while they are closed: backpressure), then
    END_STREAM. ``content_length`` becomes a ``content-length`` header (HTTP/2 has no
    chunked framing: without one the body simply ends with the stream)."""

    __slots__ = ("conn", "st", "_sent", "_finished")

    def __init__(self, conn: _Conn, st: _Stream):
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
                     initial: bytes = b"", scheme: str = "http", client: Any = None) -> None:
    """Serve one HTTP/2 connection on ``stream`` until it ends. A checkpoint (blocks).

    ``initial`` holds bytes already read from the stream (e.g. the client preface,
    read while sniffing). Each stream runs ``handler(request)`` in its own task inside
    the connection's region; cancelling the caller cancels every stream (each is
    reset) and returns with the stream left open for the caller to close.
    """
    conn = _Conn(stream, handler, limits, scheme, client)
    conn.run(initial)
    return conn
