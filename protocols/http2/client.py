"""The HTTP/2 client, low level: one connection, many streams.

::

    conn = http2.connect("127.0.0.1", port)                  # or ClientConnection(stream)
    s = conn.open_stream("POST", "/upload", [("content-type", "text/plain")])
    s.send_data(b"part 1"); s.send_data(b"part 2"); s.send_trailers([("x-sum", "1")])
    status, headers = s.response_headers()
    for chunk in s: ...
    trailers = s.trailers()
    conn.close()

No background task: the connection is read by whichever caller is waiting for
something (a response head, body bytes, flow-control window). One waiter at a time
holds the reader role; when what it waited for arrived (or it was cancelled) it
hands the role to the next waiter. So a connection needs no region of its own, and
a cancelled caller never loses bytes another stream needed (``recv`` is
cancel-safe, and a received chunk is filed under its stream before anyone returns).

* Flow control never leaks window: DATA is acknowledged, in the stream and the
  connection window, exactly when the application reads it; DATA for a stream
  that was reset or closed is acknowledged in the connection window at once. The
  WINDOW_UPDATE frames go out in batches: once a quarter of a window is due (the
  connection's or a stream's), and with every control frame we send (a PING, the
  ACKs answering the server's frames), so a PING round trip always finds the
  server's windows whole; a server never waits on a batch (it still has three
  quarters of each window).
* A cancelled call (any blocking method of :class:`ClientStream`) resets its stream
  with RST_STREAM(CANCEL) and re-raises; the connection and the other streams are
  untouched.
* GOAWAY received: streams up to its last-stream-id go on to completion; streams
  above it fail with :class:`StreamRefused` (``goaway=True``, safe to retry on a new
  connection); ``open_stream`` raises it too.
* The server is held to the same :class:`H2Limits` as our server holds clients:
  frame size after 9 bytes, header list size, CONTINUATION cap and deadline, flood
  counters (GOAWAY(ENHANCE_YOUR_CALM) and :class:`LimitError`).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Iterator
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
from greenrt import Cancelled, net
from greenrt import lowlevel as ll
from greenrt.protocols import base

from ..http.model import Headers
from . import _h2fast, _wire
from .errors import (
    ConnectionClosed,
    ConnectionLost,
    HTTP2Error,
    LimitError,
    ProtocolError,
    StreamRefused,
    StreamReset,
    UsageError,
)
from .limits import DEFAULT_H2_LIMITS, H2Limits

__all__ = ["ClientConnection", "ClientStream", "connect", "CANCEL"]

CANCEL = int(h2.errors.ErrorCodes.CANCEL)
_C_SEND_HEADERS = h2.connection.ConnectionInputs.SEND_HEADERS
_C_SEND_DATA = h2.connection.ConnectionInputs.SEND_DATA
_S_SEND_HEADERS = h2.stream.StreamInputs.SEND_HEADERS
_S_SEND_DATA = h2.stream.StreamInputs.SEND_DATA
_S_SEND_END_STREAM = h2.stream.StreamInputs.SEND_END_STREAM
_OUTBOUND_IDS = h2.connection.AllowedStreamIDs.ODD
_HALF_CLOSED_REMOTE = h2.stream.StreamState.HALF_CLOSED_REMOTE
_RstStreamFrame = hyperframe.frame.RstStreamFrame
_BLOCK_CACHE = 64  # pre-encoded request heads kept per connection
_log = logging.getLogger("greenrt.http.client")
_HOP_BY_HOP = frozenset((b"connection", b"keep-alive", b"transfer-encoding", b"upgrade",
                         b"proxy-connection", b"host"))


def connect(host: str, port: int, *, tls: Any = None, server_hostname: str | None = None,
            limits: H2Limits | None = None, timeout: float | None = None) -> ClientConnection:
    """Open an HTTP/2 connection to ``host``:``port``: prior knowledge in cleartext
    (``tls=None``), else TLS with ALPN ``h2`` (``tls=True`` for the default client
    context, or a ``tls.TLSContext`` whose ALPN list offers ``h2``).

    A checkpoint. ``timeout`` bounds TCP connect, handshake and the preface write
    together. A server that does not select ``h2`` is a :class:`ProtocolError`. A
    cancelled or failed connect leaves no socket open."""
    alpn = ["h2"] if tls is True else None
    try:
        conn = base.connect(host, port, tls=tls, server_hostname=server_hostname, alpn=alpn,
                            timeout=timeout)
    except OSError as e:
        raise ConnectionLost(f"http2: connect to {host}:{port} failed: {e}") from e
    stream = conn.stream
    try:
        if tls is not None and conn.alpn != "h2":
            raise ProtocolError(f"http2: the server selected ALPN {conn.alpn!r}, not 'h2'",
                                code="alpn")
        authority = host if port in (80, 443) else f"{host}:{port}"
        return ClientConnection(stream, limits=limits, authority=authority,
                                scheme="https" if tls is not None else "http")
    except BaseException:
        stream.close()
        raise


class _StreamState:
    __slots__ = ("id", "chunks", "head", "trailers", "ended", "error", "local_closed",
                 "buffered", "interim", "discard")

    def __init__(self, sid: int):
        self.id = sid
        self.chunks: collections.deque = collections.deque()  # (bytes, flow length)
        self.head: tuple[int, Headers] | None = None
        self.interim: list = []
        self.trailers: Headers | None = None
        self.ended = False  # END_STREAM received
        self.error: HTTP2Error | None = None  # reset (either side) or connection end
        self.local_closed = False  # we sent END_STREAM or a reset
        self.buffered = 0
        self.discard = False  # discard_response(): DATA is acknowledged on arrival


class ClientConnection:
    """An HTTP/2 client connection over ``stream`` (a byte stream on which HTTP/2 is
    already agreed: prior knowledge, or ALPN ``h2`` negotiated).

    The constructor writes the connection preface (a checkpoint). ``authority`` and
    ``scheme`` are the defaults for ``:authority``/``:scheme``."""

    def __init__(self, stream: Any, *, limits: H2Limits | None = None,
                 authority: str | None = None, scheme: str = "http"):
        self.stream = stream
        self.limits = lim = limits or DEFAULT_H2_LIMITS
        self.authority = authority
        self.scheme = scheme
        self._hub = ll.current_hub()
        cfg = h2.config.H2Configuration(client_side=True, header_encoding=None,
                                        validate_inbound_headers=True)
        self.h2 = h2.connection.H2Connection(cfg)
        self.h2.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: lim.max_concurrent_streams,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: lim.max_header_list_size,
            h2.settings.SettingCodes.MAX_FRAME_SIZE: lim.max_frame_size,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: lim.initial_window_size,
        })
        self.h2.max_inbound_frame_size = lim.max_frame_size
        self.h2.decoder.max_header_list_size = lim.max_header_list_size
        self._gate = _ClientGate(lim, self._hub.now, preface=False)
        self._writer = _wire.Writer(stream, lim.send_timeout)
        self._streams: dict[int, _StreamState] = {}
        self._changed = ll.WaitQueue()
        self._reading = False
        self._error: HTTP2Error | None = None
        self._goaway: tuple[int, int] | None = None  # (last_stream_id, code) received
        self._closed = False
        self._stats = collections.Counter()
        self._unacked = 0  # connection-window bytes received and not yet returned
        # window given back by the application and not yet sent (see _ack)
        self._ack_conn = 0
        self._ack_streams: dict[int, int] = {}
        self._ack_batch = max(1, min(65535, lim.initial_window_size) // 4)
        self._ping_waiters: dict[bytes, list] = {}
        self._settings_seen = False  # the server's first SETTINGS frame arrived
        self._blocks: dict[tuple, _wire.HeaderBlock | None] = {}  # see send_request
        self.h2.initiate_connection()
        self._flush()
        if self._writer.broken:
            self._fail(ConnectionLost(f"http2: {self._writer.broken}"))
            raise self._error

    # -- plumbing -----------------------------------------------------------------------

    def _flush(self, acks: bool | None = False) -> None:
        """Write what h2 has to send. ``acks``: the window updates due (see
        ``_ack``) go too; ``None``: only if h2 has something to send (its answers to
        the server's frames: a control write)."""
        data = self.h2.data_to_send()
        if (acks or (acks is None and data)) and (self._ack_conn or self._ack_streams):
            self._emit_acks()
            data = self.h2.data_to_send() + data  # the window updates first
        if data or self._writer.pending:
            self._writer.write(data)
            if self._writer.broken and self._error is None:
                self._fail(ConnectionLost(f"http2: {self._writer.broken}"))

    def _write(self, out: bytes) -> None:
        """Write bytes taken from h2 (with frames of our own after them)."""
        self._writer.write(out)
        if self._writer.broken and self._error is None:
            self._fail(ConnectionLost(f"http2: {self._writer.broken}"))

    def _fail(self, err: HTTP2Error) -> None:
        """End the connection: every stream still open fails with ``err``."""
        if self._error is None:
            self._error = err
            for st in self._streams.values():
                if st.error is None and not (st.ended and st.local_closed):
                    st.error = err
            self.stream.close()
            self._changed.wake_all()

    def _wait(self, ready, what: str) -> None:
        """Block until ``ready()``; read the connection meanwhile if nobody else is.
        A checkpoint. Raises the connection's error if it ends first."""
        while not ready():
            if self._error is not None:
                raise self._error
            if self._reading:
                self._changed.park(what=what)
                continue
            self._reading = True
            try:
                self._read_once()
            finally:
                self._reading = False
                self._changed.wake_all()

    def _read_once(self) -> None:
        started = self._gate.block_started
        try:
            if started is None:
                data = self.stream.recv(65536)
            else:
                with greenrt.move_on_at(started + self.limits.continuation_timeout) as sc:
                    data = self.stream.recv(65536)
                if sc.cancelled_caught:
                    self._abort(_wire.PROTOCOL_ERROR, "continuation_timeout",
                                LimitError(limit="continuation_timeout",
                                           maximum=self.limits.continuation_timeout))
                    return
        except (net.StreamError, greenrt.ClosedResourceError, OSError) as e:
            self._fail(ConnectionLost(f"http2: connection lost: {e}"))
            return
        if not data:
            self._fail(ConnectionLost("http2: the server closed the connection"))
            return
        self._stats["bytes_received"] += len(data)
        try:
            for piece in self._gate.feed(data):
                if type(piece) is tuple:
                    self._on_goaway(*piece)
                else:
                    for ev in _receive(self.h2, piece, self._gate):
                        self._event(ev)

        except _wire.GateError as e:
            err = (LimitError(_gate_message(e), limit=e.limit or e.why, value=e.value,
                              maximum=e.maximum, code=e.why)
                   if e.code == _wire.ENHANCE_YOUR_CALM or e.why == "frame_too_large"
                   else ProtocolError(f"http2: {e.why}", code=e.why))
            err.error_code = e.code
            self._abort(e.code, e.why, err)
            return
        except h2.exceptions.ProtocolError as e:
            code = getattr(e, "error_code", None) or h2.errors.ErrorCodes.PROTOCOL_ERROR
            why = "protocol_error"
            if isinstance(e, h2.exceptions.DenialOfServiceError):
                code, why = h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, "hpack_bomb"
            elif isinstance(e.__cause__, hpack.exceptions.HPACKError):
                code, why = h2.errors.ErrorCodes.COMPRESSION_ERROR, "hpack_error"
            err = ProtocolError(f"http2: the server broke the protocol: {str(e)[:200]}",
                                code=why)
            err.error_code = int(code)
            self.h2.clear_outbound_data_buffer()
            self._abort(int(code), why, err)
            return
        self._flush(acks=None)

    def _abort(self, code: int, why: str, err: HTTP2Error) -> None:
        """A connection error found by us: GOAWAY(code), then close."""
        self._hub.emit("protocol.error", protocol="http2", code=why, side="client",
                       error_code=int(code))
        self._writer.write(_wire.goaway_frame(self.h2.highest_inbound_stream_id, int(code)))
        self._fail(err)

    def _event(self, ev: Any) -> None:
        t = type(ev)
        st = self._streams.get(getattr(ev, "stream_id", 0) or 0)
        if t is h2.events.DataReceived:
            self._unacked += ev.flow_controlled_length
            if st is None or st.error is not None:
                self._ack(ev.stream_id, ev.flow_controlled_length, stream_open=False)
                return
            if st.discard:  # nobody reads it: let the server finish its side
                self._ack(ev.stream_id, ev.flow_controlled_length, stream_open=not st.ended)
                return
            st.chunks.append((ev.data, ev.flow_controlled_length))
            st.buffered += len(ev.data)
        elif t is h2.events.ResponseReceived:
            if st is not None:
                st.head = _split_head(ev.headers)
        elif t is h2.events.InformationalResponseReceived:
            if st is not None and len(st.interim) < 16:
                st.interim.append(_split_head(ev.headers))
        elif t is h2.events.TrailersReceived:
            if st is not None:
                st.trailers = Headers._trusted(list(ev.headers))
        elif t is h2.events.StreamEnded:
            if st is not None:
                st.ended = True
                if st.local_closed:
                    self._forget(st)
        elif t is h2.events.StreamReset:
            self._stats["resets_received"] += 1
            if st is not None:
                code = int(ev.error_code)
                if code == _wire.NO_ERROR and st.ended:
                    # the server finished its response and does not want the rest of
                    # our upload (RFC 9113 8.1): the response stands
                    st.local_closed = True
                    self._forget(st)
                    return
                cls = StreamRefused if code == _wire.REFUSED_STREAM else StreamReset
                err = cls(f"http2: stream {ev.stream_id} reset by the server "
                          f"({_code_name(code)})", stream_id=ev.stream_id, remote=True)
                err.error_code = code
                st.error = err
                st.local_closed = True
                self._drop_unread(st)
                self._forget(st)
        elif t is h2.events.RemoteSettingsChanged:
            self._settings_seen = True
        elif t is h2.events.PingAckReceived:
            acked = self._ping_waiters.get(ev.ping_data)
            if acked is not None:
                acked.append(True)
        elif t is h2.events.ConnectionTerminated:  # not reached: the gate takes GOAWAY
            self._on_goaway(ev.last_stream_id or 0, int(ev.error_code))

    def _on_goaway(self, last_id: int, code: int) -> None:
        self._goaway = (last_id, code)
        self._stats["goaway_received"] += 1
        self._hub.emit("http2.goaway", side="client", last_stream_id=last_id,
                       error_code=code)
        for st in list(self._streams.values()):
            if st.id > last_id and st.error is None:
                err = StreamRefused(f"http2: stream {st.id} above the GOAWAY last-stream-id "
                                    f"{last_id}: not processed, safe to retry",
                                    stream_id=st.id, remote=True, goaway=True)
                err.error_code = code
                st.error = err
                self._drop_unread(st)
                self._forget(st)
        if code != _wire.NO_ERROR and not any(s.id <= last_id for s in self._streams.values()):
            err = ConnectionLost(f"http2: the server ended the connection "
                                 f"({_code_name(code)})")
            err.error_code = code
            self._fail(err)

    def _ack(self, sid: int, flow: int, *, stream_open: bool = True) -> None:
        """Return ``flow`` bytes of window: the connection's always, the stream's if
        it is still open. Accounted now; the WINDOW_UPDATEs are batched: written at
        once when a quarter window is due (connection or stream), else with the next
        control write (``_flush(acks=True)``: a PING, an ACK). Not a checkpoint
        unless a batch is due (then it writes, masked)."""
        if not flow or self._error is not None:
            return
        self._unacked -= flow
        self._ack_conn += flow
        due = self._ack_conn >= self._ack_batch
        if stream_open:
            n = self._ack_streams[sid] = self._ack_streams.get(sid, 0) + flow
            due = due or n >= self._ack_batch
        if due:
            self._emit_acks()
            with greenrt.masked(name="http2.window_update"):
                self._flush()

    def _emit_acks(self) -> None:
        """Queue the WINDOW_UPDATEs due in h2 (sent by the next flush)."""
        if self._ack_conn:
            self.h2.increment_flow_control_window(self._ack_conn)
            self._ack_conn = 0
        if self._ack_streams:
            for sid, n in self._ack_streams.items():
                if sid in self._streams:  # a finished stream needs no window
                    try:
                        self.h2.increment_flow_control_window(n, stream_id=sid)
                    except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                        pass
            self._ack_streams.clear()

    def _drop_unread(self, st: _StreamState) -> None:
        unread = sum(f for _, f in st.chunks)
        st.chunks.clear()
        st.buffered = 0
        if unread:
            self._ack(st.id, unread, stream_open=False)

    def _forget(self, st: _StreamState) -> None:
        # counted once: a stream can be forgotten on END_STREAM and again on a late
        # RST_STREAM(NO_ERROR) or a local end
        if self._streams.pop(st.id, None) is not None and st.error is None:
            self._stats["streams_completed"] += 1

    # -- the API --------------------------------------------------------------------------

    def server_settings(self) -> dict[str, int]:
        """The settings the server announced, by lower-case name
        (``"enable_connect_protocol"``, ``"max_concurrent_streams"``, ...; unknown
        codes as ``"0x.."``). A checkpoint: waits for the server's first SETTINGS
        frame (reading the connection meanwhile); cancelled, nothing changes."""
        ll.enter_checkpoint()
        self._check_open()
        self._wait(lambda: self._settings_seen, "http2.settings")
        out = {}
        for code, value in self.h2.remote_settings.items():
            try:
                name = h2.settings.SettingCodes(code).name.lower()
            except ValueError:
                name = f"0x{int(code):x}"
            out[name] = value
        return out

    def open_stream(self, method: str, path: str, headers: Any = (), *,
                    authority: str | None = None, scheme: str | None = None,
                    end_stream: bool = False, protocol: str | None = None,
                    flush: bool = True) -> ClientStream:
        """Start a request: send its HEADERS. Returns the :class:`ClientStream`.

        ``flush=False`` leaves the HEADERS queued: they leave with the stream's first
        ``send_data`` (a request and its body in one write). Only for a caller that
        sends at once: a caller that waits for the response first must flush.

        A checkpoint. Waits while the server's MAX_CONCURRENT_STREAMS are all in use.
        Cancelled while waiting: nothing was sent. Cancelled after the HEADERS were
        queued: the stream is reset (CANCEL) before ``Cancelled`` propagates. Raises :class:`StreamRefused` (``goaway=True``) after a GOAWAY,
        the connection's error once it failed, :class:`ConnectionClosed` after
        ``close()``.

        ``protocol`` makes it an RFC 8441 extended CONNECT (``method`` must be
        ``"CONNECT"``; ``:protocol`` is sent with ``:scheme`` and ``:path``): it first
        waits for the server's SETTINGS and raises :class:`UsageError` unless they
        enable the connect protocol. A 2xx answer opens a tunnel over the stream
        (``http2.ClientTunnel``)."""
        ll.enter_checkpoint()
        self._check_open()
        if protocol is not None:
            if method != "CONNECT":
                raise UsageError("http2: an extended CONNECT (protocol=) needs method CONNECT")
            if not self.server_settings().get("enable_connect_protocol"):
                raise UsageError("http2: the server does not enable extended CONNECT "
                                 "(SETTINGS_ENABLE_CONNECT_PROTOCOL)")

        def slot() -> bool:
            return (self._error is not None or self._goaway is not None
                    or self.h2.open_outbound_streams
                    < self.h2.remote_settings.max_concurrent_streams)

        self._wait(slot, "http2.open_stream")
        self._check_open()
        sid = self.h2.get_next_available_stream_id()
        out = [(b":method", _bytes(method))]
        if protocol is not None:
            out.append((b":protocol", _bytes(protocol)))
        out += [(b":scheme", _bytes(scheme or self.scheme)),
               (b":authority", _bytes(authority or self.authority or "localhost")),
               (b":path", _bytes(path))]
        for k, v in (headers.raw() if isinstance(headers, Headers) else headers):
            k = _bytes(k).lower()
            if k in _HOP_BY_HOP or k.startswith(b":"):
                continue
            out.append((k, _bytes(v)))
        st = _StreamState(sid)
        try:
            self.h2.send_headers(sid, out, end_stream=end_stream)
        except h2.exceptions.ProtocolError as e:
            raise UsageError(f"http2: cannot send these headers: {e}") from e
        self._streams[sid] = st
        st.local_closed = end_stream
        self._stats["streams_opened"] += 1
        cs = ClientStream(self, st)
        if not flush:
            return cs
        try:
            self._flush()
        except Cancelled:
            # the HEADERS are on their way but the caller will never see the stream
            cs._cancel()
            raise
        return cs

    def send_request(self, method: str, path: str, headers: tuple, data: bytes) -> ClientStream:
        """Open a stream and send the whole request: HEADERS, then ``data`` with
        END_STREAM, in one write. ``headers``: a tuple of lower-case ``(bytes,
        bytes)`` pairs, the same object call after call (a gRPC client's constant
        request headers): the head is encoded once per connection
        (``_wire.HeaderBlock``, valid in any HPACK state) and h2's state machines
        and windows are advanced as ``send_headers``/``send_data`` would. Where that
        is not possible at once (an HPACK table size update due, a window or the
        frame size short for ``data``, a field a constant block cannot carry) it is
        ``open_stream`` + ``send_data(end_stream=True)``. A checkpoint, as
        ``open_stream``; cancelled after the frames were queued: the stream is
        reset."""
        ll.enter_checkpoint()
        self._check_open()

        def slot() -> bool:
            return (self._error is not None or self._goaway is not None
                    or self.h2.open_outbound_streams
                    < self.h2.remote_settings.max_concurrent_streams)

        if not slot():
            self._wait(slot, "http2.open_stream")
            self._check_open()
        h = self.h2
        key = (method, path, headers)
        block = self._blocks.get(key, False)
        if block is False:
            try:
                block = _wire.HeaderBlock(
                    [(b":method", _bytes(method)), (b":scheme", _bytes(self.scheme)),
                     (b":authority", _bytes(self.authority or "localhost")),
                     (b":path", _bytes(path))]
                    + [(k, v) for k, v in headers if k not in _HOP_BY_HOP])
            except (ValueError, TypeError):
                block = None
            if len(self._blocks) >= _BLOCK_CACHE:
                self._blocks.clear()
            self._blocks[key] = block
        n = len(data)
        mfs = h.max_outbound_frame_size
        if (block is None or h.encoder.table_size_changes or n > mfs or len(block.block) > mfs
                or n > h.outbound_flow_control_window
                or n > h.remote_settings.initial_window_size):
            cs = self.open_stream(method, path, headers, flush=False)
            cs.send_data(data, end_stream=True)
            return cs
        sid = h.get_next_available_stream_id()
        h.state_machine.process_input(_C_SEND_HEADERS)
        stream = h._begin_new_stream(sid, _OUTBOUND_IDS)
        ssm = stream.state_machine
        ssm.process_input(_S_SEND_HEADERS)
        stream.request_method = b"POST" if method == "POST" else _bytes(method)
        h.state_machine.process_input(_C_SEND_DATA)
        ssm.process_input(_S_SEND_DATA)
        ssm.process_input(_S_SEND_END_STREAM)
        stream.outbound_flow_control_window -= n
        h.outbound_flow_control_window -= n
        out = b"".join((h.data_to_send(),
                        _wire.frame_header(len(block.block), _wire.HEADERS, _wire.END_HEADERS,
                                           sid), block.block,
                        _wire.frame_header(n, _wire.DATA, _wire.END_STREAM, sid), data))
        st = _StreamState(sid)
        st.local_closed = True
        self._streams[sid] = st
        self._stats["streams_opened"] += 1
        cs = ClientStream(self, st)
        try:
            self._write(out)
        except Cancelled:
            cs._cancel()
            raise
        return cs

    def _check_open(self) -> None:
        if self._closed:
            raise ConnectionClosed("http2: the connection is closed")
        if self._goaway is not None:
            err = StreamRefused("http2: the server sent GOAWAY; open a new connection",
                                goaway=True, remote=True)
            err.error_code = self._goaway[1]
            raise err
        if self._error is not None:
            raise self._error

    @property
    def is_usable(self) -> bool:
        """True while new streams may be opened (not closed, failed or told GOAWAY)."""
        return not self._closed and self._error is None and self._goaway is None

    @property
    def open_streams(self) -> int:
        """Streams not yet finished on both sides."""
        return len(self._streams)

    def ping(self) -> None:
        """Send a PING and wait for its ACK. A checkpoint (a liveness probe)."""
        self._check_open()
        opaque = (self._stats["pings_sent"] + 1).to_bytes(8, "big")
        self._stats["pings_sent"] += 1
        acked: list = []
        self._ping_waiters[opaque] = acked
        self.h2.ping(opaque)
        self._flush(acks=True)
        try:
            self._wait(lambda: bool(acked), "http2.ping")
        finally:
            self._ping_waiters.pop(opaque, None)

    def close(self) -> None:
        """Close the connection: a best-effort GOAWAY(NO_ERROR), then the transport.
        Not a checkpoint, never blocks. Streams still open fail with
        :class:`ConnectionClosed`. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._error is None and self._writer.broken is None and not self._writer.sending:
            try:
                frame = bytes(self._writer.buf) + _wire.goaway_frame(
                    self.h2.highest_inbound_stream_id, _wire.NO_ERROR)
                self._writer.buf.clear()
                send_nowait = getattr(self.stream, "send_nowait", None)
                if send_nowait is not None:
                    send_nowait(frame)
            except Exception:  # best effort: the peer sees EOF anyway
                pass
        self._fail(ConnectionClosed("http2: the connection was closed"))

    def statistics(self) -> dict:
        """Counters and state: ``streams_open``, ``streams_opened``,
        ``streams_completed``, ``resets_sent``, ``resets_received``,
        ``goaway_received``, ``bytes_received``, ``bytes_sent``, ``unacked_bytes`` (DATA
        received whose connection window was not yet returned: 0 when every buffered
        byte was read or dropped), ``ack_pending`` (window returned and not yet
        written: it goes with the next batch or control frame, e.g. a ``ping()``),
        ``outbound_window`` (what the server lets us send),
        ``reading`` and ``usable``."""
        return {
            "streams_open": len(self._streams),
            "streams_opened": self._stats["streams_opened"],
            "streams_completed": self._stats["streams_completed"],
            "resets_sent": self._stats["resets_sent"],
            "resets_received": self._stats["resets_received"],
            "goaway_received": self._stats["goaway_received"],
            "bytes_received": self._stats["bytes_received"],
            "bytes_sent": self._writer.bytes_queued,
            "unacked_bytes": self._unacked,
            "ack_pending": self._ack_conn,
            "buffered_bytes": sum(s.buffered for s in self._streams.values()),
            "outbound_window": self.h2.outbound_flow_control_window,
            "reading": self._reading,
            "usable": self.is_usable,
        }

    def __enter__(self) -> ClientConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<http2.ClientConnection {self.authority} streams={len(self._streams)}>"


class ClientStream:
    """One request/response exchange on a :class:`ClientConnection`.

    Every blocking method is a checkpoint; if one is cancelled, the stream is reset
    with RST_STREAM(CANCEL) (its unread DATA returned to the connection window) and
    ``Cancelled`` propagates; the connection and its other streams carry on."""

    __slots__ = ("_c", "_s", "_pending", "_done_reading")

    def __init__(self, conn: ClientConnection, st: _StreamState):
        self._c = conn
        self._s = st
        self._pending = b""
        self._done_reading = False

    @property
    def stream_id(self) -> int:
        return self._s.id

    # -- sending --------------------------------------------------------------------------

    def send_data(self, data: bytes, *, end_stream: bool = False) -> None:
        """Send request body bytes, waiting for flow-control window as needed
        (backpressure). A checkpoint. Cancelled midway: the part sent is sent, the
        stream is reset."""
        self._checkpoint()
        c, st = self._c, self._s
        if st.local_closed:
            if st.error is not None:
                raise st.error
            raise UsageError("http2: send_data after the request was ended")
        h = c.h2
        n = len(data)
        if (st.error is None and 0 < n <= h.max_outbound_frame_size
                and n <= h.local_flow_control_window(st.id)):
            # the common case: it fits the windows and one frame
            try:
                out = _h2fast.send_data(h, st.id, data, end_stream)
                if out is None:
                    h.send_data(st.id, bytes(data), end_stream=end_stream)
                if end_stream:
                    st.local_closed = True
                if out is None:
                    c._flush()
                else:
                    c._write(out)
                if end_stream:
                    self._maybe_forget()
                return
            except Cancelled:
                self._cancel()
                raise
        view = memoryview(bytes(data))
        try:
            while True:
                if st.error is not None:
                    raise st.error
                if not view:
                    if end_stream:
                        self._end()
                    return

                def window() -> bool:
                    return (st.error is not None or c._error is not None
                            or min(c.h2.local_flow_control_window(st.id),
                                   c.h2.outbound_flow_control_window) > 0)

                self._wait_window(window)
                if st.error is not None:
                    raise st.error
                n = min(c.h2.local_flow_control_window(st.id), c.h2.max_outbound_frame_size,
                        len(view))
                chunk, view = view[:n], view[n:]
                c.h2.send_data(st.id, bytes(chunk), end_stream=end_stream and not view)
                if end_stream and not view:
                    st.local_closed = True
                c._flush()
                if end_stream and not view:
                    self._maybe_forget()
                    return
        except Cancelled:
            self._cancel()
            raise

    def _wait_window(self, ready) -> None:
        c = self._c
        stall = c.limits.window_stall_timeout
        if ready():
            return
        with greenrt.move_on_after(stall) as sc:
            c._wait(ready, "http2.window")
        if sc.cancelled_caught:
            self.reset(int(h2.errors.ErrorCodes.FLOW_CONTROL_ERROR))
            err = StreamReset(f"http2: the server kept stream {self._s.id}'s window shut "
                              f"for {stall} s", stream_id=self._s.id, remote=False,
                              code="window_stall")
            self._s.error = err
            raise err

    def send_trailers(self, headers: Any) -> None:
        """End the request with trailer fields. A checkpoint."""
        self._checkpoint()
        c, st = self._c, self._s
        if st.error is not None:
            raise st.error
        if st.local_closed:
            raise UsageError("http2: send_trailers after the request was ended")
        out = [(_bytes(k).lower(), _bytes(v)) for k, v in
               (headers.raw() if isinstance(headers, Headers) else headers)]
        try:
            c.h2.send_headers(st.id, out, end_stream=True)
        except h2.exceptions.ProtocolError as e:
            raise UsageError(f"http2: cannot send these trailers: {e}") from e
        st.local_closed = True
        try:
            c._flush()
        except Cancelled:
            self._cancel()
            raise
        self._maybe_forget()

    def end(self) -> None:
        """End the request (an empty DATA frame with END_STREAM). A checkpoint.
        Idempotent."""
        self._checkpoint()
        if self._s.local_closed:
            if self._s.error is not None:
                raise self._s.error
            return
        try:
            self._end()
        except Cancelled:
            self._cancel()
            raise

    def _end(self) -> None:
        c, st = self._c, self._s
        if st.error is not None:
            raise st.error
        c.h2.end_stream(st.id)
        st.local_closed = True
        c._flush()
        self._maybe_forget()

    def _maybe_forget(self) -> None:
        st = self._s
        if st.ended and st.local_closed:
            self._c._forget(st)

    # -- receiving ------------------------------------------------------------------------

    def response_headers(self) -> tuple[int, Headers]:
        """The response's final status and header fields (1xx interim responses are
        skipped). A checkpoint: blocks until they arrive. Raises
        :class:`StreamReset`/:class:`StreamRefused` if the stream was reset first."""
        self._checkpoint()
        st = self._s
        try:
            self._c._wait(lambda: st.head is not None or st.error is not None,
                          "http2.response_headers")
        except Cancelled:
            self._cancel()
            raise
        except HTTP2Error:
            if st.head is None:
                raise
        if st.head is None:
            raise st.error
        return st.head

    def read(self, max_bytes: int | None = None, *, cancel_resets: bool = True) -> bytes:
        """The next response body bytes (at most ``max_bytes``), ``b""`` at the end.
        A checkpoint. Returns the window of what it returns to the server. Cancelled:
        the stream is reset (a cancelled read of a stream that is being abandoned),
        unless ``cancel_resets=False``: then nothing changes and no byte is lost (the
        next ``read`` returns it; a tunnel's reader). Raises the stream's reset or the
        connection's error."""
        if cancel_resets:
            self._checkpoint()
        else:
            ll.enter_checkpoint()
        if max_bytes is not None and max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        c, st = self._c, self._s
        try:
            while not self._pending:
                if st.chunks:
                    data, flow = st.chunks.popleft()
                    st.buffered -= len(data)
                    c._ack(st.id, flow, stream_open=not st.ended)
                    self._pending = data
                    break
                if st.ended:
                    self._done_reading = True
                    return b""
                if st.error is not None:
                    raise st.error
                c._wait(lambda: bool(st.chunks) or st.ended or st.error is not None,
                        "http2.read")
        except Cancelled:
            if cancel_resets:
                self._cancel()
            raise
        except HTTP2Error:
            if not (st.chunks or st.ended):
                raise
            return self.read(max_bytes, cancel_resets=cancel_resets)
        if max_bytes is None or max_bytes >= len(self._pending):
            out, self._pending = self._pending, b""
        else:
            out, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        return out

    def read_complete(self, max_bytes: int) -> tuple[int, Headers, bytes, Headers | None] | None:
        """The whole response at once, if it arrives at once: waits (a checkpoint)
        for the first body bytes or the end of the response; if by then the response
        has ended without error (END_STREAM received: head, body, trailers all in)
        and nothing was read yet, returns ``(status, headers, body, trailers)``,
        the body's window given back (connection and stream), and the stream is
        done (``read()`` gives ``b""``, ``trailers()`` the same trailers). Otherwise
        (the response still coming, a body over ``max_bytes``, a reset, a read
        begun): ``None``, and nothing was consumed (``response_headers``/``read``/
        ``trailers`` go on as usual and raise what there is to raise). The reader's
        one wake-up for a small answer (a unary gRPC call). Cancelled: the stream is
        reset, as ``read``."""
        self._checkpoint()
        c, st = self._c, self._s
        if not (st.chunks or st.ended or st.error is not None):
            try:
                c._wait(lambda: bool(st.chunks) or st.ended or st.error is not None,
                        "http2.read")
            except Cancelled:
                self._cancel()
                raise
            except HTTP2Error:
                return None
        if (not st.ended or st.error is not None or st.head is None or self._pending
                or self._done_reading or st.buffered > max_bytes):
            return None
        chunks = st.chunks
        if not chunks:
            body = b""
        elif len(chunks) == 1:
            body, flow = chunks.popleft()
            c._ack(st.id, flow, stream_open=False)
        else:
            body = b"".join(d for d, _ in chunks)
            flow = sum(f for _, f in chunks)
            chunks.clear()
            c._ack(st.id, flow, stream_open=False)
        st.buffered = 0
        self._done_reading = True
        status, headers = st.head
        return status, headers, body, st.trailers

    def read_all(self, limit: int | None = None) -> bytes:
        """The rest of the body. A checkpoint. More than ``limit`` bytes is a
        :class:`LimitError` (and the stream is reset)."""
        parts = []
        n = 0
        while True:
            b = self.read()
            if not b:
                return b"".join(parts)
            n += len(b)
            if limit is not None and n > limit:
                self.reset()
                raise LimitError(limit="read_all", value=n, maximum=limit)
            parts.append(b)

    def __iter__(self) -> Iterator[bytes]:
        while True:
            b = self.read()
            if not b:
                return
            yield b

    def trailers(self) -> Headers | None:
        """The response's trailer fields (``None`` if it had none). A checkpoint: it
        waits for the end of the response; body bytes still unread are discarded (and
        their window returned)."""
        self._checkpoint()
        c, st = self._c, self._s
        try:
            c._wait(lambda: st.ended or st.error is not None, "http2.trailers")
        except Cancelled:
            self._cancel()
            raise
        except HTTP2Error:
            if not st.ended:
                raise
        if not st.ended and st.error is not None:
            raise st.error
        if st.chunks or self._pending:
            self._pending = b""
            unread = sum(f for _, f in st.chunks)
            st.chunks.clear()
            st.buffered = 0
            c._ack(st.id, unread, stream_open=False)
            c._flush()
        return st.trailers

    def discard_response(self) -> int:
        """Stop reading the response: body bytes buffered are dropped and their window
        returned (connection and stream), and DATA arriving later is acknowledged on
        arrival, so the server can finish its side and no window is held. The
        stream is not reset. Not a checkpoint (the WINDOW_UPDATE is written masked).
        Returns the number of bytes whose window was returned now."""
        c, st = self._c, self._s
        st.discard = True
        self._pending = b""
        self._done_reading = True
        unread = sum(f for _, f in st.chunks)
        st.chunks.clear()
        st.buffered = 0
        if unread:
            c._ack(st.id, unread, stream_open=not st.ended)
            with greenrt.masked(name="http2.discard"):
                c._flush()
        self._maybe_forget()
        return unread

    def end_nowait(self) -> None:
        """``end()`` without its checkpoint: END_STREAM queued and written (masked),
        for close paths. A no-op once the request is ended or the stream reset."""
        st = self._s
        if st.local_closed or st.error is not None or self._c._error is not None:
            return
        try:
            self._end()
        except h2.exceptions.ProtocolError:
            st.local_closed = True  # the server reset or closed it meanwhile
            self._maybe_forget()

    @property
    def interim_responses(self) -> list[tuple[int, Headers]]:
        """1xx responses received before the final head (at most 16 kept)."""
        return list(self._s.interim)

    # -- ending -----------------------------------------------------------------------------

    def reset(self, code: int = CANCEL) -> None:
        """Reset the stream (RST_STREAM ``code``). Not blocking in effect: the frame is
        queued and written masked. Unread DATA goes back to the connection window.
        Idempotent; a no-op on a finished stream."""
        c, st = self._c, self._s
        finished = st.ended and st.local_closed
        if st.error is not None or finished or c._error is not None:
            self._drop()
            return
        try:
            c.h2.reset_stream(st.id, error_code=code)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass
        c._stats["resets_sent"] += 1
        err = StreamReset(f"http2: stream {st.id} was reset locally ({_code_name(code)})",
                          stream_id=st.id, remote=False)
        err.error_code = code
        st.error = err
        st.local_closed = True
        self._drop()
        c._flush()

    def _drop(self) -> None:
        c, st = self._c, self._s
        c._drop_unread(st)
        c._streams.pop(st.id, None)

    def _checkpoint(self) -> None:
        """The checkpoint each blocking method starts with: a cancellation delivered
        here resets the stream too."""
        try:
            ll.enter_checkpoint()
        except Cancelled:
            self._cancel()
            raise

    def _cancel(self) -> None:
        with greenrt.masked(name="http2.cancel"):
            self.reset(CANCEL)

    def close(self) -> None:
        """Give the stream up: if the exchange is not complete, reset it (CANCEL).
        Idempotent. Unread body bytes are discarded with their window returned."""
        st = self._s
        if st.ended and st.local_closed and st.error is None:
            self._drop()
            return
        self.reset(CANCEL)

    def __enter__(self) -> ClientStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<http2.ClientStream {self._s.id}>"


class _ClientGate(_wire.FrameGate):
    """The frame gate, less its RST_STREAM count: the gate sees a frame's header
    only, and whether a reset is a flood depends on its error code and its stream's
    state, so the client counts RST_STREAM itself (``_count_reset``, from
    ``_receive``)."""

    __slots__ = ()

    def count(self, what: str, maximum: int) -> None:
        if what != "rst_stream":
            _wire.FrameGate.count(self, what, maximum)

    def count_reset(self) -> None:
        _wire.FrameGate.count(self, "rst_stream", self.limits.resets_per_window)


def _count_reset(h: h2.connection.H2Connection, gate: _ClientGate, frame: Any) -> None:
    """Count one RST_STREAM toward the flood limit (``resets_per_window``), except a
    RST_STREAM(NO_ERROR) on a stream whose response has ended while our request has
    not: a server that answered before our half-close and does not want the rest
    of the request (RFC 9113 8.1; grpcio does it for an early answer to a
    client-streaming call). That excuse holds once per stream: the reset closes the
    stream, and a second one on it counts. Raises :class:`_wire.GateError` past the
    limit."""
    if frame.error_code == _wire.NO_ERROR:
        s = h.streams.get(frame.stream_id)
        if s is not None and s.state_machine.state is _HALF_CLOSED_REMOTE:
            return
    gate.count_reset()


def _receive(h: h2.connection.H2Connection, data: bytes, gate: _ClientGate) -> list:
    """``h.receive_data(data)`` without h2's per-frame ``repr``, DATA and WINDOW_UPDATE
    frames read in place (``_h2fast``); h2's
    connection errors propagate (the caller sends its own GOAWAY), and so does the
    gate's :class:`_wire.GateError` for a RST_STREAM flood (``_count_reset``)."""
    events: list = []
    try:
        for frame in _h2fast.frames(h, data):
            if type(frame) is _RstStreamFrame:
                _count_reset(h, gate, frame)
            events.extend(_h2fast.receive_frame(h, frame))
    except hyperframe.exceptions.InvalidPaddingError as e:
        h._terminate_connection(h2.errors.ErrorCodes.PROTOCOL_ERROR)
        raise h2.exceptions.ProtocolError("invalid padding") from e
    except h2.exceptions.ProtocolError as e:  # as receive_data: h2's state is closed
        h._terminate_connection(e.error_code)
        raise
    return events


def _bytes(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode("latin-1")
    raise TypeError(f"header names and values must be str or bytes, not {type(v).__name__}")


def _split_head(headers: list) -> tuple[int, Headers]:
    status = 0
    out = []
    for k, v in headers:
        if k == b":status":
            status = int(v)
        elif not k.startswith(b":"):
            out.append((k, v))
    return status, Headers._trusted(out)


def _code_name(code: int) -> str:
    try:
        return h2.errors.ErrorCodes(code).name
    except ValueError:
        return f"code {code}"


def _gate_message(e: _wire.GateError) -> str:
    """``http2: the server sent a ping flood (pings_per_window exceeded: 11 > 10 per
    flood_window)``: what happened, which limit, what was seen and the configured value."""
    msg = f"http2: the server sent a {e.why.replace('_', ' ')}"
    if e.limit is not None and e.maximum is not None:
        seen = f"{e.value} > {e.maximum}" if e.value is not None else f"more than {e.maximum}"
        per = " per flood_window" if e.why.endswith("_flood") and "window" in e.limit else ""
        msg += f" ({e.limit} exceeded: {seen}{per})"
    return msg
