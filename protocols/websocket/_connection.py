"""The WebSocket connection: a blocking-style object over a greenrt stream.

wsproto does the framing, masking checks, UTF-8 validation (incremental, across
fragments) and the close state machine; this module adds what wsproto leaves out:
limits checked on frame headers before payload is buffered (:mod:`._framescan`), a
bounded inflater (:mod:`._deflate`), a ping rate cap, a bounded outbound queue, the
close timeout, and the cancellation rules.

Speed: without compression, whole unfragmented text/binary frames are parsed and
built by :mod:`._fastframe` and every other frame is handed, whole and in order, to
wsproto, which judges it as it would have (see that module for why this changes no
verdict). ``WebSocket.fast_path = False`` turns it off (the differential tests do).

Cancellation:

* ``recv()`` is cancelled only while it waits for bytes; every byte read is already
  in the parser and every finished message in the queue, so the next ``recv()``
  returns the message the cancelled one would have (nothing is lost).
* a send cancelled while its frame is being written leaves a partial frame (or a
  deflate context out of step) on the wire: the connection is marked broken and its
  stream closed; later calls raise :class:`ConnectionClosed` (code 1006).
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections import deque

from wsproto.connection import Connection, ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, Pong, TextMessage

import greenrt
from greenrt.protocols.base import emit_event, emit_protocol_error

from ._deflate import BoundedPerMessageDeflate
from ._errors import (
    ConnectionClosed,
    WebSocketLimitError,
    WebSocketProtocolError,
    WebSocketUsageError,
)
from ._fastframe import OP_BINARY, OP_TEXT, build_frame, header_at, is_candidate, unmask
from ._framescan import FrameScanner, ScanLimit
from ._limits import WebSocketLimits

__all__ = ["WebSocket"]

_RECV_CHUNK = 65536
_ping_ids = itertools.count(1)


def _timeout(seconds):
    return greenrt.move_on_after(seconds) if seconds is not None else contextlib.nullcontext()


class WebSocket:
    """An open WebSocket (client or server side), after the opening handshake.

    Made by :func:`connect`, :func:`accept` or :func:`accept_upgrade`, not directly.
    Use from one task for receiving at a time (``recv``/iteration); any number of
    tasks may send. ``subprotocol`` is the negotiated subprotocol (or ``None``),
    ``compression`` whether permessage-deflate is on, ``request_headers`` the
    opening request's headers (server side) / ``response_headers`` (client side).
    """

    #: parse and build the common frame without wsproto (see the module docstring)
    fast_path = True

    def __init__(self, stream, proto: Connection, *, client: bool,
                 limits: WebSocketLimits, subprotocol: str | None = None,
                 deflate: BoundedPerMessageDeflate | None = None, leftover: bytes = b"",
                 path: str | None = None, request_headers=None, response_headers=None) -> None:
        self._stream = stream
        self._proto = proto
        self.client = client
        self.limits = limits
        self.subprotocol = subprotocol
        self._deflate = deflate
        self.path = path
        self.request_headers = request_headers or []
        self.response_headers = response_headers or []
        self._scanner = FrameScanner(max_frame=limits.max_frame_bytes,
                                     max_message=limits.max_message_bytes,
                                     max_fragments=limits.max_fragments,
                                     pings_per_second=limits.max_pings_per_second,
                                     ping_burst=limits.ping_burst, now=greenrt.now())
        self._pending = bytes(leftover)
        self._messages: deque = deque()
        self._parts: list = []
        self._reading = False
        self._pinging = False        # the task reading is a ping() waiting for its pong
        self._writing = False
        self._out = bytearray()
        self._out_drained = greenrt.Event()
        self._progress = greenrt.Event()
        self._pings: dict[bytes, greenrt.Event] = {}
        self._error: BaseException | None = None   # sticky: why the connection is over
        self._close_sent = False
        # Inbound bytes are split into whole frames here (see _receive_frames) until
        # a Close; ``_rbuf`` holds an incomplete one, ``_need`` how many bytes it
        # needs before parsing is worth trying again (no quadratic re-scans of a
        # large frame arriving in pieces).
        self._frames = True
        self._rbuf = bytearray()
        self._need = 0
        self._in_msg = False   # a fragmented data message is open inside wsproto

    # -- properties -------------------------------------------------------------

    @property
    def compression(self) -> bool:
        return self._deflate is not None

    @property
    def closed(self) -> bool:
        """True once the connection is over (closed by either side, or broken)."""
        return self._error is not None

    @property
    def close_code(self) -> int | None:
        """The peer's close code once closed (1006 without a Close frame)."""
        return self._error.close_code if self._error is not None else None

    # -- receiving --------------------------------------------------------------

    def recv(self) -> str | bytes:
        """The next whole message: ``str`` for text, ``bytes`` for binary. A
        checkpoint. Pongs to the peer's pings are sent while receiving.

        Raises :class:`ConnectionClosed` once the connection is closed (after every
        message received before the Close was returned), a
        :class:`WebSocketProtocolError` / :class:`WebSocketLimitError` (with the
        ``close_code`` we sent) when the peer broke the protocol or a limit.
        Cancellation loses no message (see the module docstring).
        """
        while self._pinging and self._reading and not self._messages:
            # a ping() is reading for its pong: wait for it to hand over
            self._progress.wait()
        if self._messages:
            return self._messages.popleft()
        if self._reading:
            raise WebSocketUsageError("another task is already receiving on this WebSocket")
        self._reading = True
        try:
            while not self._messages:
                if self._error is not None:
                    raise self._error
                try:
                    self._pump()
                except WebSocketProtocolError:
                    if not self._messages:
                        raise
                    # messages completed before the fault come first; the error is
                    # sticky and the next recv raises it
            return self._messages.popleft()
        finally:
            self._reading = False
            self._wake_progress()

    def __iter__(self):
        """Iterate over messages until a normal closure (1000/1001/1005) ends the
        iteration; any other end raises like ``recv``."""
        while True:
            try:
                yield self.recv()
            except ConnectionClosed as e:
                if e.ok:
                    return
                raise

    def _pump(self) -> None:
        """Read once from the stream (a checkpoint) and process what arrived."""
        if self._pending:
            data, self._pending = self._pending, b""
        else:
            try:
                data = self._stream.recv(_RECV_CHUNK)
            except greenrt.Cancelled:
                raise
            except (OSError, greenrt.GreenrtError) as e:
                if self._error is None:
                    self._error = ConnectionClosed(f"websocket: transport failed: {e}",
                                                   close_code=1006)
                self._stream.close()
                raise self._error from e
        if not data:
            if self._rbuf:
                # an incomplete frame: wsproto's verdict on it comes before the EOF's
                self._frames = False
                self._proto.receive_data(bytes(self._rbuf))
                self._rbuf.clear()
                self._process_events()
            self._proto.receive_data(None)
        else:
            try:
                data = self._scanner.feed(data, greenrt.now())
            except ScanLimit as e:
                # The frames before the offending header are whole: deliver them
                # first (the same messages whatever the segmentation), then fail.
                if e.passed:
                    if self._frames:
                        self._receive_frames(e.passed)  # after the bytes it holds
                    else:
                        self._proto.receive_data(e.passed)
                    self._process_events()
                if e.limit == "max_pings_per_second":
                    self._fail(WebSocketLimitError(limit=e.limit, maximum=e.maximum,
                                                   close_code=1008, code="ping_flood"))
                self._fail(WebSocketLimitError(limit=e.limit, value=e.value, maximum=e.maximum,
                                               close_code=1009))
            if data:
                if self._frames:
                    self._receive_frames(data)
                else:
                    self._proto.receive_data(data)
        self._process_events()

    def _receive_frames(self, data) -> None:
        """Split the inbound bytes into whole frames (``_rbuf`` holds an incomplete
        one; the scanner has bounded its declared length by max_frame_bytes). Without
        compression a simple message is decoded here; every other frame is handed to
        wsproto whole, in order. Whole frames make wsproto's verdicts independent of
        how the bytes were segmented (the inflater, in particular, sees each frame's
        payload at once); the price is that a frame is judged when it is complete,
        not when its first bad byte arrives."""
        buf = self._rbuf
        buf += data
        n = len(buf)
        if n < self._need:
            return
        fast = self._deflate is None and self.fast_path
        expect_mask = not self.client
        pos = 0
        try:
            while pos < n:
                h = header_at(buf, pos)
                if h is None:
                    self._need = 14  # at most a whole header
                    break
                b0, mask, start, length, minimal = h
                end = start + length
                if end > n:
                    self._need = end - pos
                    break
                opcode = b0 & 0x0F
                if fast and not self._in_msg and not self._close_sent and minimal \
                        and is_candidate(b0, buf[pos + 1], expect_mask):
                    payload = unmask(buf[start:end], mask) if mask is not None else bytes(buf[start:end])
                    if opcode == OP_BINARY:
                        self._messages.append(payload)
                        pos = end
                        continue
                    try:
                        self._messages.append(payload.decode("utf-8"))
                        pos = end
                        continue
                    except UnicodeDecodeError:
                        pass  # wsproto closes 1007, as it would have
                if opcode == 0x8:
                    # A Close: wsproto takes it and everything after it (nothing after
                    # a Close is parsed, so nothing there can change a verdict).
                    self._frames = False
                    self._proto.receive_data(bytes(buf[pos:]))
                    pos = n
                    break
                if opcode <= 0x2:
                    self._in_msg = not b0 & 0x80
                self._proto.receive_data(bytes(buf[pos:end]))
                pos = end
                self._process_events()
                if self._error is not None:
                    pos = n
                    break
            else:
                self._need = 0
        finally:
            del buf[:pos]

    def _process_events(self) -> None:
        for ev in self._proto.events():
            if isinstance(ev, (TextMessage, BytesMessage)):
                if self._close_sent:
                    continue        # we are closing: data after our Close is discarded
                self._parts.append(ev.data)
                if ev.message_finished:
                    parts, self._parts = self._parts, []
                    if len(parts) == 1:
                        msg = parts[0]
                    elif isinstance(ev, TextMessage):
                        msg = "".join(parts)
                    else:
                        msg = b"".join(parts)
                    if isinstance(msg, bytearray):
                        msg = bytes(msg)
                    self._messages.append(msg)
            elif isinstance(ev, Ping):
                self._write(self._proto.send(ev.response()))
            elif isinstance(ev, Pong):
                waiter = self._pings.pop(bytes(ev.payload), None)
                if waiter is not None:
                    waiter.set()
                    self._wake_progress()
            elif isinstance(ev, CloseConnection):
                self._on_close(ev)
                return

    def _on_close(self, ev: CloseConnection) -> None:
        state = self._proto.state
        if state is ConnectionState.OPEN:
            # wsproto reports its own parse failures as a CloseConnection while the
            # connection is still OPEN: a fault of the peer's, not a peer's Close.
            if ev.code == 1006:
                self._error = ConnectionClosed("websocket: the peer closed the TCP connection "
                                               "without a Close frame", close_code=1006)
                self._stream.close()
                return
            if self._deflate is not None and self._deflate.overflowed:
                self._fail(WebSocketLimitError(limit="max_message_bytes", maximum=self.limits.max_message_bytes,
                                               close_code=1009, code="inflated_too_large"))
            self._fail(WebSocketProtocolError(f"websocket: {ev.reason or 'protocol error'}",
                                              close_code=ev.code, code=_reason_code(ev.code)))
        if state is ConnectionState.REMOTE_CLOSING:
            # The peer closes: answer with the same code, then close TCP.
            with contextlib.suppress(Exception):
                self._write(self._proto.send(ev.response()))
                self._close_sent = True
        emit_event("websocket.closed", code=ev.code, initiator="local" if self._close_sent and
                   state is ConnectionState.CLOSED else "peer")
        self._error = ConnectionClosed(f"websocket: closed ({ev.code} {ev.reason})".rstrip(),
                                       close_code=ev.code, reason=ev.reason or "")
        self._stream.close()

    def _fail(self, err: WebSocketProtocolError):
        """Send a Close with ``err.close_code`` (bounded by the close timeout), close
        the stream, make ``err`` sticky and raise it."""
        emit_protocol_error("websocket", err.code, close_code=err.close_code)
        if self._error is None:
            self._error = err
            if not self._close_sent and self._proto.state is ConnectionState.OPEN:
                self._close_sent = True
                try:
                    data = self._proto.send(CloseConnection(code=err.close_code,
                                                            reason=err.message[:120]))
                    with _timeout(self.limits.close_timeout):
                        if self._writing:
                            self._out += data
                        else:
                            self._stream.send_all(data)
                except Exception:  # noqa: BLE001 - best effort: the connection is done anyway
                    pass
            if not self._writing:
                self._stream.close()
        raise err

    # -- sending ----------------------------------------------------------------

    def send_text(self, text: str) -> None:
        """Send ``text`` as one text message. A checkpoint when it writes; see
        :meth:`send_bytes` for queueing and cancellation."""
        if not isinstance(text, str):
            raise TypeError("send_text() takes a str")
        self._send_message(text)

    def send_bytes(self, data) -> None:
        """Send ``data`` as one binary message.

        A checkpoint. Returns once the frame is written, or queued behind another
        task's write in progress (at most ``limits.max_outbound_bytes`` are queued:
        past that a sender waits, or with ``outbound_policy="close"`` the connection
        closes 1013). Cancelled while waiting for queue room: nothing was sent.
        Cancelled while writing: the connection is broken and closed.
        """
        self._send_message(bytes(data))

    def send(self, message: str | bytes) -> None:
        """``send_text`` for a ``str``, ``send_bytes`` otherwise."""
        self._send_message(message if isinstance(message, str) else bytes(message))

    def _send_message(self, payload) -> None:
        self._check_open()
        self._wait_for_room(len(payload))
        self._check_open()
        if self._deflate is None and self.fast_path and self._proto.state is ConnectionState.OPEN:
            if isinstance(payload, str):
                frame = build_frame(OP_TEXT, payload.encode("utf-8"), os.urandom(4) if self.client else None)
            else:
                frame = build_frame(OP_BINARY, payload, os.urandom(4) if self.client else None)
            self._write(frame)
        else:
            self._write(self._proto.send(Message(data=payload)))

    def _check_open(self) -> None:
        if self._error is not None:
            raise self._error
        if self._close_sent:
            raise WebSocketUsageError("send after close()")

    def _wait_for_room(self, n: int) -> None:
        while self._writing and len(self._out) + n > self.limits.max_outbound_bytes:
            if self.limits.outbound_policy == "close":
                self._fail(WebSocketLimitError(limit="max_outbound_bytes", value=len(self._out) + n,
                                               maximum=self.limits.max_outbound_bytes,
                                               close_code=1013, code="slow_consumer"))
            self._out_drained.wait()
            if self._error is not None:
                raise self._error

    def _write(self, data: bytes) -> None:
        """Write ``data`` (one or more whole frames), or queue it behind the write in
        progress, which flushes it. Any failure or cancellation mid-write breaks the
        connection."""
        if self._writing:
            self._out += data
            return
        self._writing = True
        self._out += data
        try:
            while self._out:
                chunk = bytes(self._out)
                self._out.clear()
                self._stream.send_all(chunk)
                self._wake_drained()
        except BaseException as e:
            if self._error is None:
                what = "cancelled" if isinstance(e, greenrt.Cancelled) else f"failed ({e})"
                self._error = ConnectionClosed(f"websocket: a send was {what} mid-frame; "
                                               "the connection is closed", close_code=1006)
            self._out.clear()
            self._stream.close()
            raise
        finally:
            self._writing = False
            self._wake_drained()
        if self._error is not None:
            # _fail queued a Close behind our write; it is flushed, now close TCP.
            self._stream.close()

    def _wake_drained(self) -> None:
        ev, self._out_drained = self._out_drained, greenrt.Event()
        ev.set()

    def _wake_progress(self) -> None:
        ev, self._progress = self._progress, greenrt.Event()
        ev.set()

    # -- ping, close --------------------------------------------------------------

    def ping(self, payload: bytes | None = None) -> float:
        """Send a Ping and wait for its Pong; return the round trip in seconds.

        A checkpoint. If no other task is receiving, ``ping`` reads itself (messages
        that arrive meanwhile are queued for ``recv``). Cancelled: the Pong, when it
        comes, is ignored; nothing else changes.
        """
        if payload is None:
            payload = b"greenrt-%d" % next(_ping_ids)
        payload = bytes(payload)
        if len(payload) > 125:
            raise ValueError("a ping payload is at most 125 bytes")
        self._check_open()
        waiter = greenrt.Event()
        self._pings[payload] = waiter
        t0 = greenrt.now()
        try:
            self._write(self._proto.send(Ping(payload=payload)))
            while not waiter.is_set():
                if self._error is not None:
                    raise self._error
                if self._reading:
                    self._progress.wait()
                    continue
                self._reading = True
                self._pinging = True
                try:
                    self._pump()
                finally:
                    self._reading = False
                    self._pinging = False
                    self._wake_progress()
        finally:
            self._pings.pop(payload, None)
        return greenrt.now() - t0

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection: send a Close with ``code``/``reason``, wait for the
        peer's Close up to ``limits.close_timeout`` (messages still arriving are
        discarded), then close TCP. A checkpoint. Idempotent. Cancelled: the stream is
        closed anyway (the handshake is cut short)."""
        try:
            if self._error is None and not self._close_sent:
                self._close_sent = True
                self._write(self._proto.send(CloseConnection(code=code, reason=reason)))
            with _timeout(self.limits.close_timeout):
                while self._error is None:
                    if self._reading:
                        self._progress.wait()
                        continue
                    self._reading = True
                    try:
                        self._pump()
                    except WebSocketProtocolError:
                        break
                    finally:
                        self._reading = False
                        self._wake_progress()
            if self._error is None:
                emit_event("websocket.close_timeout", code=code)
                self._error = ConnectionClosed("websocket: closed (the peer did not answer the Close "
                                               "in time)", close_code=1006)
        except BaseException:
            if self._error is None:
                self._error = ConnectionClosed("websocket: close() was interrupted; the connection "
                                               "is closed", close_code=1006)
            raise
        finally:
            self._stream.close()

    def __enter__(self) -> WebSocket:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        side = "client" if self.client else "server"
        state = "closed" if self._error is not None else "open"
        return f"<WebSocket {side} {state} subprotocol={self.subprotocol!r}>"


def _reason_code(close_code: int) -> str:
    return {1002: "protocol_error", 1003: "unsupported_data", 1007: "invalid_payload",
            1008: "policy_violation", 1009: "message_too_big"}.get(close_code, "protocol_error")
