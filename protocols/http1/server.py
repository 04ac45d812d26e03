"""One HTTP/1.1 connection: ``serve_connection(stream, handler, ...)``.

The version-independent server (accepting, TLS, ALPN and prior-knowledge dispatch,
the per-IP cap, graceful drain) is ``greenrt.protocols.http.HTTPServer``; it calls
this module's :func:`serve_connection` for each connection that speaks HTTP/1.1.

Task structure of one connection (inside the accept path's per-connection task, so
nothing outlives the server)::

    connection task = the *reader*
      region "http1.conn"
        task runner (masked)    # parses heads, runs the handler, sends responses
          one CancelScope for every request of the connection -> handler(request)

* The **reader** only receives: every byte goes into the sans-IO
  :class:`~protocols.http1.H1Connection`, and whoever waits for data is woken. It
  keeps reading while a handler runs, so pipelined requests are buffered (bounded:
  it pauses above ``_HIGH_WATER`` bytes, which is TCP backpressure) and a peer that
  disconnects or resets is noticed at once: the running handler is cancelled with
  reason ``resource_unavailable`` ("client disconnected"). An EOF after a complete
  request may be a half-close (the client still reads): for HTTP/1.1 the reader
  probes with an interim ``100 Continue`` and cancels only if the peer answers with a
  reset (``_after_eof``); a half-closed client gets its response, then the connection
  closes.
* The **runner** takes requests in order (pipelining is answered in order), calls
  the handler *in the runner task itself* (no task per request: a spawn per request
  costs more than the rest of a small request), sends the response and decides
  keep-alive. It runs inside ``masked()`` so a server shutdown does not cut a request
  short: shutdown *drains* (see below). Every way a handler can be cancelled
  (request budget, client gone, drain expiry) ends the connection, so one cancel
  scope serves all its requests and a lazily re-armed timer gives each request its
  budget.
* The runner's position in the request cycle is a small state machine with a
  transition table (``_RUNNER_TRANSITIONS``); every change is checked against it
  (``_Conn._to``; the per-request IDLE -> BUSY -> IDLE steps inline the same check)
  and an illegal one raises ``InvariantViolation``.

Timeouts (``Limits``), each answered or closed, and named in a ``protocol.error``
trace event (``code``): ``header_timeout`` (slowloris: the head must be complete
within ``header_timeout`` of its first byte, or of the accept for the first request;
408 if any byte came), ``keepalive_timeout`` (idle between requests: close),
``body_idle_timeout`` (``Body.read`` raises ``RequestTimeout``; 408 if the handler
lets it propagate), ``request_timeout`` (the handler is cancelled, kind ``deadline``;
503 if no response head was sent, else the connection is closed), ``send_timeout``
(a peer that stops reading: close). Parse errors answer their ``status`` (400, 413,
414, 431, 501, 505) with ``Connection: close``.

Graceful drain (``begin_drain``, registered with the accept path): an idle
keep-alive connection closes at once; a request in flight finishes within
``drain_timeout`` (its response carries ``Connection: close``), after which its
handler is cancelled with reason ``shutdown``.

Closing: after the last response the server half-closes (``send_eof``) and discards
input for a short linger period before closing, so a client that is still sending
(e.g. a body we refused with 413) receives the response instead of a reset.

Hazards: handlers run in the runner task, so a handler that never reaches a
checkpoint blocks its connection (and the hub). A handler must not keep the request
object past its return.
"""

from __future__ import annotations

import http
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import h11

import greenrt
from greenrt import CancelKind, Cancelled, CancelReason, CancelScope, net
from greenrt import lowlevel as ll

from ..base.serve import peer_str as _peer_str
from ..http.errors import (
    ClientDisconnected,
    HTTPError,
    LocalProtocolError,
    RequestTimeout,
)
from ..http.limits import DEFAULT_LIMITS, Limits
from ..http.model import (
    FORBIDDEN_TRAILERS,
    Headers,
    Request,
    Response,
    ResponseWriter,
    split_trailers,
)
from ._body import PulledBody
from ._connection import NEED_DATA, SERVER, H1Connection, RequestHead
from ._response_writer import date_line

__all__ = ["Handler", "error_response", "serve_connection"]

Handler = Callable[[Request], "Response | None"]

#: handler errors (with traceback); ``greenrt.http.access``: one INFO record per
#: response in the combined log format, only when a handler is configured for it
_log = logging.getLogger("greenrt.http")
_access = logging.getLogger("greenrt.http.access")

_HIGH_WATER = 256 * 1024
# after an EOF during a handler: waits for a reset provoked by the probe (~1.5 s total)
_PROBE_DELAYS = (0.001, 0.004, 0.015, 0.06, 0.25, 1.0)
_LINGER_SECONDS = 1.0
_LINGER_BYTES = 1024 * 1024
# how soon after a handler parks the reader takes over receiving (at most; the timer
# is armed once per period per busy connection, not per request)
_WATCH_PERIOD = 0.005
_REASONS = {
    400: b"Bad Request", 408: b"Request Timeout", 413: b"Content Too Large",
    414: b"URI Too Long", 431: b"Request Header Fields Too Large", 500: b"Internal Server Error",
    501: b"Not Implemented", 503: b"Service Unavailable", 505: b"HTTP Version Not Supported",
}
_NO_BODY_STATUS = (204, 304)
_PHRASES = {int(s): s.phrase.encode("ascii") for s in http.HTTPStatus}

# The runner's states and the transitions allowed between them (h11's _state.py is
# the model): IDLE waits for a request, HEAD has part of a head, BUSY runs a handler
# and sends its response, DONE is final.
_IDLE, _HEAD, _BUSY, _DONE = range(4)
_STATE_NAMES = ("IDLE", "HEAD", "BUSY", "DONE")
_RUNNER_TRANSITIONS = {
    _IDLE: {_HEAD, _BUSY, _DONE},   # head bytes arrive / a whole head arrived at once / close
    _HEAD: {_BUSY, _DONE},          # the head completed / timed out, bad, or the peer left
    _BUSY: {_IDLE, _DONE},          # keep-alive: next cycle / close after the response
    _DONE: set(),
}
# results of _wait_data
_DATA, _TIMEOUT, _STOP = "data", "timeout", "stop"


def error_response(status: int, message: str = "") -> bytes:
    """A complete ``Connection: close`` error response (for the accept path's refusals
    and connection-level errors)."""
    return _error_response(status, message)


def _error_response(status: int, message: str = "") -> bytes:
    reason = _REASONS.get(status, b"Error")
    body = reason + (b": " + message.encode("ascii", "replace")[:200] if message else b"") + b"\n"
    return (b"HTTP/1.1 %d %s\r\n%scontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n"
            % (status, reason, date_line(_wall_clock(ll.current_hub())()), len(body))) + body


def _wall_clock(hub) -> Callable[[], float]:
    """Seconds since the epoch for ``Date`` fields: the hub's ``wall_time`` (real
    time on the real hub, the virtual clock under the lab, so a simulated run stays
    deterministic)."""
    return hub.wall_time


def _emit(code: str, **data: Any) -> None:
    ll.current_hub().emit("protocol.error", protocol="http1", code=code, **data)


class _Body(PulledBody):
    """The request body, pulled from the connection's parser by the handler."""

    __slots__ = ("_c",)

    def __init__(self, conn: _Conn, length: int | None, empty: bool):
        PulledBody.__init__(self, length, empty)
        self._c = conn

    def read(self, max_bytes: int = 65536) -> bytes:
        """Next body bytes (``b""`` at the end). A checkpoint; a cancelled read loses
        no data. Sends ``100 Continue`` first if the client waits for it. Raises
        ``RequestTimeout`` (idle > ``body_idle_timeout``), ``PayloadTooLarge``,
        ``BadRequest`` (framing) or ``ClientDisconnected``."""
        ll.enter_checkpoint()
        if max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        if self._pending:
            return self._take_pending(max_bytes)
        if self._done:
            return b""
        c = self._c
        c._maybe_send_100()
        while True:
            ev = c._pull()
            t = type(ev)
            if t is h11.Data:
                return self._split(bytes(ev.data), max_bytes)
            if t is h11.EndOfMessage:
                self._end(ev)
                return b""
            if ev is NEED_DATA:
                lim = c.limits.body_idle_timeout
                r = c._wait_data(None if lim is None else c.hub.now() + lim)
                if r == _TIMEOUT:
                    c._fatal = True
                    _emit("body_idle_timeout", status=408)
                    raise RequestTimeout(f"no body bytes for {lim} s", code="body_idle_timeout")
                if r == _STOP:
                    raise ClientDisconnected("connection closing", code="closing")
                continue
            raise ClientDisconnected(f"unexpected event {t.__name__} in body", code="closed")

    def _end(self, ev) -> None:
        """The body ended: keep its trailer section (already bounded by the parser:
        ``max_headers`` fields, ``max_chunk_line`` bytes), minus the forbidden fields
        (``FORBIDDEN_TRAILERS``: dropped, with an ``http1.trailer_dropped`` event)."""
        self._done = True
        if ev.headers:
            self._trailers, dropped = split_trailers(ev.headers)
            if dropped:
                ll.current_hub().emit("http1.trailer_dropped",
                                      fields=[n.decode("latin-1") for n in dropped[:16]])

    def discard_buffered(self) -> None:
        """Consume what is already buffered of the body, without blocking (so an
        unread small body does not cost the connection its keep-alive)."""
        if self._done:
            return
        c = self._c
        self._pending = b""
        try:
            while True:
                ev = c._pull()
                if type(ev) is h11.EndOfMessage:
                    self._end(ev)
                    return
                if type(ev) is not h11.Data:
                    return
        except HTTPError:
            c._fatal = True


class _Writer(ResponseWriter):
    """Sends one response over the connection; see ``ResponseWriter``."""

    __slots__ = ("_c", "_head_only", "_started", "_finished", "_out", "status", "body_bytes")

    def __init__(self, conn: _Conn, head_only: bool):
        self._c = conn
        self._head_only = head_only
        self._started = False
        self._finished = False
        self._out = b""  # head bytes not yet sent (coalesced with the first body bytes)
        self.status = 0  # for the access log
        self.body_bytes = 0

    @property
    def headers_sent(self) -> bool:
        return self._started

    @property
    def finished(self) -> bool:
        return self._finished

    def _head(self, status: int, headers: Any, reason, content_length: int | None,
              replace_length: bool = True) -> bytes:
        if self._started:
            raise LocalProtocolError("response head already sent")
        c = self._c
        h = headers if isinstance(headers, Headers) else Headers(headers)
        body = c.body
        if body is not None and not (body._done and not body._pending):  # not body.complete
            self._unread_body(body)
        if isinstance(reason, str):
            reason = reason.encode("latin-1")
        elif reason is None:
            reason = _PHRASES.get(status, b"")
        self._started = True
        self.status = status
        try:
            return c.p.response_head(status, h._items, reason or b"", content_length,
                                     replace_length=replace_length)
        except LocalProtocolError:
            self._started = False
            raise

    def _unread_body(self, body: _Body) -> None:
        """The response starts before the request body was read: take what is
        buffered; if that was not all of it, the connection cannot be kept alive."""
        body.discard_buffered()
        if not body.complete:
            self._c.p.close_after_cycle = True  # unread request body: cannot keep alive

    def start(self, status: int, headers: Any = None, *, reason=None,
              content_length: int | None = None) -> None:
        """Queue the response head (sent with the first body bytes or at ``finish``).
        Not blocking itself; ``write``/``finish`` are the checkpoints."""
        self._out = self._head(status, headers, reason, content_length)

    def write(self, data: bytes) -> None:
        """Send body bytes. A checkpoint; blocks while the peer does not read."""
        if not self._started:
            raise LocalProtocolError("write() before start()")
        if self._finished:
            raise LocalProtocolError("write() after finish()")
        if not data:
            return
        c = self._c
        self.body_bytes += len(data)
        if self._head_only:
            out, self._out = self._out, b""
            if out:
                c._send(out)
            return
        out = c.p.response_data(data)
        if self._out:
            out = self._out + out
            self._out = b""
        c._send(out)

    def finish(self, trailers: Any = None) -> None:
        """End the response. A checkpoint. Idempotent.

        ``trailers`` (header fields, as for ``start``) are sent as the chunked
        trailer section (RFC 9112 §7.1.2) when the response is chunked (no
        Content-Length was given) and the request's ``TE`` field lists
        ``trailers``; otherwise they are dropped (RFC 9110 §6.5: a recipient
        that did not ask may discard them), as are fields that may not be trailers
        (``FORBIDDEN_TRAILERS``), with an ``http1.trailers_dropped`` trace event
        naming the fields and why. Cancelled while sending: the connection is
        closed after this exchange (the peer has an unknown prefix)."""
        if self._finished:
            return
        if not self._started:
            raise LocalProtocolError("finish() before start()")
        c = self._c
        out = c.p.response_end(self._trailers(trailers) if trailers else None)
        if self._out:
            out = self._out + out
            self._out = b""
        if out:
            c._send(out)
        self._finished = True

    def _trailers(self, trailers: Any) -> list[tuple[bytes, bytes]] | None:
        """The trailer fields to send (validated pairs), or ``None`` if none can be:
        the response is not chunked, the client did not send ``TE: trailers``;
        forbidden fields are left out. Each drop is an ``http1.trailers_dropped``
        trace event."""
        items = (trailers if isinstance(trailers, Headers) else Headers(trailers))._items
        if not items:
            return None
        c = self._c
        why = None
        if self._head_only:
            why = "no body (HEAD)"
        elif not c.p.response_chunked:
            why = "response not chunked"
        elif not _accepts_trailers(c.req_headers):
            why = "request has no TE: trailers"
        if why is None:
            kept = [kv for kv in items if kv[0] not in FORBIDDEN_TRAILERS]
            if len(kept) == len(items):
                return kept
            dropped = [kv[0] for kv in items if kv[0] in FORBIDDEN_TRAILERS]
            ll.current_hub().emit("http1.trailers_dropped", reason="forbidden trailer field",
                                  fields=[n.decode("latin-1") for n in dropped[:16]])
            return kept or None
        ll.current_hub().emit("http1.trailers_dropped", reason=why,
                              fields=[n.decode("latin-1") for n, _ in items[:16]])
        return None

    def send_response(self, resp: Response) -> None:
        """Send a complete ``Response`` (one write for head and body) or stream a
        ``StreamingResponse``. A checkpoint."""
        if resp.streaming:
            self._stream(resp)
            return
        if self._started:
            raise LocalProtocolError("response head already sent")
        c = self._c
        rbody = c.body
        if rbody is not None and not (rbody._done and not rbody._pending):  # not complete
            self._unread_body(rbody)
        body = resp.body
        status = resp.status
        reason = resp.reason
        if reason is None:
            reason = _PHRASES.get(status, b"")
        elif type(reason) is str:
            reason = reason.encode("latin-1")
        h = resp.headers
        p = c.p
        # head, body and end in one call (_head + response_data + response_end)
        out = p.response(status, (h if type(h) is Headers else Headers(h))._items,
                         reason, body, not self._head_only)
        self._started = True
        self.status = status
        if body and not self._head_only:
            self.body_bytes = len(body)
        if p._buf and p.reusable and not c._draining:  # p._buf: p.buffered without a call
            c._defer(out)  # the next request is (partly) here already: batch the responses
        else:
            c._send(out)
        self._finished = True

    def _stream(self, resp) -> None:
        chunks = resp.chunks
        self.start(resp.status, resp.headers, reason=resp.reason)
        try:
            for chunk in chunks:
                if chunk:
                    self.write(chunk if isinstance(chunk, bytes) else bytes(chunk))
            self.finish()
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()


class _LazyDeadline:
    """A deadline that calls ``fn()`` once it passes, re-armed lazily: ``set``/
    ``clear`` only write attributes unless the new deadline is *earlier* than the
    armed timer, so a deadline moved forward on every request (keep-alive, request
    budget) costs no timer operation; a stale timer that fires re-arms itself for the
    current deadline, or does nothing if it was cleared. Not a checkpoint. (The
    per-request paths, ``_wait_data``, ``_wake`` and ``_handle``, inline ``set``'s
    no-timer case and ``clear``.)"""

    __slots__ = ("hub", "fn", "when", "armed", "handle")

    def __init__(self, hub, fn):
        self.hub = hub
        self.fn = fn
        self.when: float | None = None
        self.armed: float | None = None
        self.handle = None

    def set(self, when: float) -> None:
        self.when = when
        if self.armed is None or when < self.armed:
            if self.handle is not None:
                self.handle.cancel()
            self.armed = when
            self.handle = self.hub.call_at(when, self._fire)

    def clear(self) -> None:
        self.when = None

    def cancel(self) -> None:
        self.when = None
        if self.handle is not None:
            self.handle.cancel()
            self.handle = self.armed = None

    def _fire(self) -> None:
        self.handle = self.armed = None
        when = self.when
        if when is None:
            return
        if self.hub.now() < when:
            self.armed = when
            self.handle = self.hub.call_at(when, self._fire)
            return
        self.when = None
        self.fn()


class _Conn:
    """One server connection: reader (the calling task) + runner (a child task)."""

    def __init__(self, stream, handler: Handler, limits: Limits, scheme: str,
                 upgrade_handler: Handler | None = None):
        self.handler = handler
        self.upgrade_handler = upgrade_handler
        self.stream = stream
        self.scheme = scheme
        self.limits = limits
        self.hub = ll.current_hub()
        self.p = H1Connection(SERVER, limits, own_send=True, wall_clock=_wall_clock(self.hub))
        self.state = _IDLE
        self.body: _Body | None = None
        self.writer: _Writer | None = None
        self.handler_scope: CancelScope | None = None
        self.requests = 0
        self._data_waiter = ll.WaitQueue()  # the one task waiting in _wait_data
        self._waiting = False  # someone waits in _data_waiter (a plain flag: no __bool__ call)
        self._wait_deadline = _LazyDeadline(self.hub, self._wait_expired)
        self._budget = _LazyDeadline(self.hub, self._budget_expired)
        self._reader_paused = ll.WaitQueue()  # the reader, parked above the high-water mark
        self._paused = False  # the reader waits in _reader_paused
        # who receives: the runner itself (inline, ``_recv_inline``) while the reader is
        # dormant in _reader_wake, or the reader once activated (``_activate_reader``:
        # a handler parked, or waits for body bytes); it goes dormant again after the
        # first bytes it delivers outside a handler
        self._reader_active = False
        self._reader_wake = ll.WaitQueue()
        self._inline = False  # the runner is parked in its own recv
        # why the requests scope was cancelled under an inline wait (_TIMEOUT, _STOP)
        self._idle_stop: str | None = None
        self._watch = None  # the timer that activates the reader if a handler parks
        # read once per connection: a level check per response costs a Python call
        self._access_on = _access.isEnabledFor(logging.INFO)
        self._eof = False
        self._discard = False
        self._discarded = 0
        self._fatal = False
        self._draining = False
        self._drain_timer = None
        self._stopped = False
        self._started = self.hub.now()
        # the upgrade hook (Request.upgrade): the reader runs in its own scope so the
        # handler can stop it and take the stream over
        self._upgraded = False
        self._read_scope: CancelScope | None = None
        self._reader_stopped = greenrt.Event()
        self._cur_empty = True
        self._no_body = _Body(self, None, True)  # the body of every request without one
        self.req_headers: list[tuple[bytes, bytes]] = []  # the current request's fields
        # pipelining: complete responses not yet sent, because the next request was
        # already buffered (``_defer``); they go out before any other byte
        self._out_pending = b""
        self._flush_timer = None
        try:
            self.peer = stream.peer_address
        except Exception:  # pragma: no cover - streams without addresses
            self.peer = None
        try:
            self.local = stream.local_address
        except Exception:  # pragma: no cover
            self.local = None

    # -- the reader ---------------------------------------------------------------------

    def _to(self, new: int) -> None:
        """Move the runner to state ``new``; an illegal transition is a bug here.
        (The per-request transitions IDLE -> BUSY -> IDLE inline this check.)"""
        old = self.state
        if old != new and new not in _RUNNER_TRANSITIONS[old]:
            raise greenrt.InvariantViolation(
                f"http1 connection: illegal transition {_STATE_NAMES[old]} -> {_STATE_NAMES[new]}")
        self.state = new

    def run(self, initial: bytes = b"") -> None:
        if initial:
            self.p.receive_data(initial)  # bytes the dispatcher read while sniffing
        with greenrt.region(name="http1.conn") as r:
            r.spawn(self._runner, name="http1.runner")
            try:
                try:
                    with CancelScope(name="http1.reader") as self._read_scope:
                        self._read_loop()
                finally:
                    self._reader_stopped.set()
            except Cancelled:
                # server shutdown or cancellation from outside: drain the request in
                # flight (its body may still be arriving, so keep reading when asked
                # to), then go
                if not self._upgraded:
                    self.begin_drain()
                    self._read_loop()
                raise

    def _upgrade_to(self, headers: Any) -> tuple:
        """``Request.upgrade``: stop the reader, send the 101, hand over the stream
        and the bytes read past the request head."""
        writer = self.writer
        if self.state != _BUSY or writer is None or writer.headers_sent or self._upgraded:
            raise LocalProtocolError("upgrade() after the response started")
        if not self._cur_empty:
            raise LocalProtocolError("upgrade() of a request with a body")
        lines = [b"HTTP/1.1 101 Switching Protocols\r\n"]
        for k, v in Headers(headers).raw():
            if any(c in k + v for c in b"\r\n\x00"):
                raise LocalProtocolError("CR, LF or NUL in a 101 header")
            lines.append(k + b": " + v + b"\r\n")
        lines.append(b"\r\n")
        ll.enter_checkpoint()
        self._upgraded = True
        self._fatal = True
        self._budget.clear()  # the new protocol is not an HTTP request: no request budget
        self._read_scope.cancel()
        self._reader_stopped.wait()
        self.stream.send_all(self._with_deferred(b"".join(lines)))
        self.hub.emit("http1.upgrade", peer=_peer_str(self.peer))
        return self.stream, self.p.trailing_data

    def _read_loop(self) -> None:
        """The reader task: dormant while the runner receives inline; once activated,
        receive into the parser and wake the runner, until the bytes it delivered
        reach a runner that is not in a handler (then dormant again), EOF or stop."""
        stream = self.stream
        p = self.p
        while not self._eof and not self._stopped:
            if not self._reader_active:
                self._reader_wake.park(what="http1: reader dormant (the runner receives)")
                continue
            if p.buffered >= _HIGH_WATER and not self._discard:
                self._pause_reader()
                continue
            try:
                data = stream.recv(65536)
            except (net.ClosedResourceError, net.BrokenStreamError) as e:
                if isinstance(e, net.BrokenStreamError):
                    self._peer_gone("reset")
                data = b""
            self._received(data)
            if not data and not self._discard:
                self._after_eof()
            elif self.state != _BUSY:
                self._reader_active = False  # outside a handler the runner receives itself

    def _received(self, data: bytes) -> None:
        """Bytes (``b""``: EOF) from ``recv``, by the reader or the runner inline: into
        the parser (or discarded while lingering), and wake a runner waiting for
        them. Not a checkpoint."""
        if self._discard:
            self._discarded += len(data)
            if not data or self._discarded > _LINGER_BYTES:
                self._eof = True
                self._wake(_DATA)
            return
        p = self.p
        if data:
            p.receive_data(data)
            self._wake(_DATA)
        else:
            self._eof = True
            p.receive_data(b"")
            if p.receiving_body:
                self._peer_gone("eof")  # mid-body: the request can never complete
            self._wake(_DATA)

    def _activate_reader(self) -> None:
        """Hand receiving to the reader task (it runs when the runner parks). Not a
        checkpoint."""
        self._reader_active = True
        self._reader_wake.wake_one()

    def _watch_fired(self) -> None:
        """The watch timer (armed by ``_handle`` while the reader is dormant): timers
        run only while tasks are parked, so a handler in progress now has parked (or
        yielded): activate the reader, which notices a client that disconnects,
        resets or half-closes meanwhile, and buffers pipelined requests."""
        self._watch = None
        if self.state == _BUSY and not self._reader_active and not self._stopped:
            self._activate_reader()

    def _after_eof(self) -> None:
        """The peer sent EOF after a complete request. That is either a half-close
        (``shutdown(SHUT_WR)``: the client still reads, and gets its response) or a
        full close (the client is gone: cancel the handler). TCP cannot tell them
        apart, so while a handler runs for an HTTP/1.1 request and nothing of its
        response went out, probe: send an interim ``100 Continue`` (every HTTP/1.1
        client must accept unsolicited 1xx responses); a closed peer answers with a
        reset, which ``SO_ERROR`` shows within a few round trips. Without socket
        options (TLS, simulated streams) or for HTTP/1.0, an EOF during a handler
        means the client is gone, as before. A checkpoint (sleeps while probing)."""
        greenrt.checkpoint()  # let the runner take up a request that came with the EOF
        writer = self.writer
        if self.state != _BUSY or self._stopped:
            return
        p = self.p
        stream = self.stream
        if p.receiving_body:  # pragma: no cover - the reader cancels mid-body EOFs
            return
        if writer is not None and writer.headers_sent:
            return  # the response is being written: its writes fail if the peer is gone
        try:
            if p.their_http_version != b"1.1":
                raise net.StreamError("no probe for HTTP/1.0")
            stream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # also clears it
            probe = p.response_continue()
        except (net.StreamError, LocalProtocolError, OSError):
            self._peer_gone("eof")
            return
        try:
            stream.send_all(self._with_deferred(probe))
            for delay in _PROBE_DELAYS:
                greenrt.sleep(delay)
                if self.state != _BUSY or self.writer is not writer or self._stopped:
                    return
                if stream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    break
            else:
                self.hub.emit("http1.half_close", peer=_peer_str(self.peer))
                return  # a half-close: the handler's response will be read
        except (net.StreamError, OSError):
            if self.state != _BUSY or self.writer is not writer:
                return
        self._peer_gone("eof")

    def _peer_gone(self, how: str) -> None:
        hs = self.handler_scope
        if self.state == _BUSY and hs is not None and not self._stopped:
            _emit("client_disconnected", how=how, peer=_peer_str(self.peer))
            hs.cancel(CancelReason(CancelKind.RESOURCE_UNAVAILABLE,
                                   message=f"client disconnected ({how})"))

    def _pause_reader(self) -> None:
        self._paused = True
        try:
            self._reader_paused.park(
                what="http1: reader paused (peer's requests not yet consumed)")
        finally:
            self._paused = False

    def _resume_reader(self) -> None:
        if self._paused and self.p.buffered < _HIGH_WATER // 2:
            self._reader_paused.wake_one()

    # -- waiting for data (runner / handler side) -----------------------------------------

    def _wait_data(self, deadline: float | None) -> str:
        """Park until the reader delivers bytes or EOF (``_DATA``), ``deadline``
        passes (``_TIMEOUT``) or the connection is told to stop (``_STOP``). A
        checkpoint; cancellation leaves no waiter behind (and the lazy timer finds
        nothing to do when it fires)."""
        if not self._reader_active and self.state != _BUSY and not self._stopped \
                and not self._eof:
            return self._recv_inline(deadline)
        task = ll.enter_checkpoint()
        if self._stopped:
            return _STOP
        if self._eof:
            return _DATA
        if not self._reader_active:
            self._activate_reader()  # a handler waits for body bytes: the reader gets them
        if self._paused:
            self._resume_reader()
        if deadline is not None:
            wd = self._wait_deadline
            if wd.armed is None or deadline < wd.armed:
                wd.set(deadline)
            else:
                wd.when = deadline  # _LazyDeadline.set without a timer operation, inlined
        self._waiting = True
        try:
            return self._data_waiter.wait(task, None, self._wait_deadline.clear,
                                          "http1: bytes from the peer")
        finally:
            self._waiting = False

    def _recv_inline(self, deadline: float | None) -> str:
        """``_wait_data`` while the reader is dormant and no handler runs: the runner
        receives itself (no hand-off between two tasks per request). A checkpoint.
        ``deadline`` passing, or a drain, cancels the requests scope with
        ``_idle_stop`` set (the connection ends either way; ``_after_cancel`` answers
        as ``_next_request`` would); a cancelled ``recv`` loses no data."""
        wd = self._wait_deadline
        if deadline is not None:
            if wd.armed is None or deadline < wd.armed:
                wd.set(deadline)
            else:
                wd.when = deadline  # _LazyDeadline.set without a timer operation, inlined
        self._inline = True
        try:
            data = self.stream.recv(65536)
        except (net.ClosedResourceError, net.BrokenStreamError):
            data = b""
        finally:
            self._inline = False
            wd.when = None  # _LazyDeadline.clear, inlined
        if data and not self._discard:
            self.p.receive_data(data)  # _received's common case (nobody waits: the runner)
        else:
            self._received(data)
        return _DATA

    def _stop_inline(self, why: str, kind: CancelKind, message: str) -> None:
        """End the runner's inline wait (``_recv_inline``): cancel the requests
        scope, noting why for ``_after_cancel``."""
        self._idle_stop = why
        self.handler_scope.cancel(CancelReason(kind, message=message))

    def _wait_expired(self) -> None:
        if self._inline:
            self._stop_inline(_TIMEOUT, CancelKind.TIMEOUT, "http1: wait for the request expired")
            return
        self._data_waiter.wake_one(_TIMEOUT)

    def _wake(self, value: str) -> None:
        if self._waiting:
            self._wait_deadline.when = None  # _LazyDeadline.clear, inlined
            self._data_waiter.wake_one(value)

    def _pull(self):
        ev = self.p.next_event()
        if self._paused:
            self._resume_reader()
        return ev

    # -- sending ----------------------------------------------------------------------

    def _defer(self, data: bytes) -> None:
        """Keep a complete response to send with the next one (pipelined requests
        are answered with one ``send`` for as many responses as were ready). Every
        send prepends what is deferred, the runner flushes before it waits for bytes
        or closes, and a zero-delay timer flushes (without blocking) if the runner
        parks anywhere else first (a handler that blocks), so no response waits on a
        later request's handler. Not a checkpoint."""
        out = self._out_pending + data
        if len(out) > _HIGH_WATER // 4:
            self._out_pending = b""
            self._send(out)
            return
        self._out_pending = out
        if self._flush_timer is None:
            self._flush_timer = self.hub.call_later(0, self._flush_soon)

    def _with_deferred(self, data: bytes) -> bytes:
        pending = self._out_pending
        if not pending:
            return data
        self._out_pending = b""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        return pending + data

    def _flush_soon(self) -> None:
        """The timer of ``_defer``: the runner parked with responses deferred; send
        what fits now (never blocks: a full transport leaves the rest to the runner's
        next send, wait or close)."""
        self._flush_timer = None
        data = self._out_pending
        if not data:
            return
        try:
            n = self.stream.send_nowait(data)
        except (net.StreamError, OSError):
            return  # busy, full or broken: the runner's next send reports it
        self._out_pending = data[n:]

    def _flush(self) -> None:
        """Send the deferred responses (the runner, before it waits or closes). A
        checkpoint if anything was deferred."""
        if self._out_pending:
            self._send(b"")

    def _send(self, data: bytes) -> None:
        if self._out_pending:
            data = self._with_deferred(data)
        t = self.limits.send_timeout
        if t is None or (self.state == _BUSY and self.limits.request_timeout is not None):
            # inside a request the request budget already bounds a stalled send
            self.stream.send_all(data)
            return
        with greenrt.move_on_after(t) as sc:
            self.stream.send_all(data)
        if sc.cancelled_caught:
            self._fatal = True
            _emit("send_timeout", peer=_peer_str(self.peer))
            raise ClientDisconnected(f"peer did not read for {t} s", code="send_timeout")

    def _maybe_send_100(self) -> None:
        p = self.p
        if p.they_are_waiting_for_100_continue:
            self._send(p.response_continue())

    def _answer_error(self, status: int | None, code: str, message: str = "") -> None:
        """Answer a connection-level error (no response started) and stop."""
        _emit(code, status=status, peer=_peer_str(self.peer))
        if status is None:
            return
        try:
            self._send(_error_response(status, message))
        except (HTTPError, net.StreamError, OSError):
            pass

    # -- the runner -------------------------------------------------------------------

    def _runner(self) -> None:
        # One cancel scope for every request of the connection: each way it can be
        # cancelled (request budget, client gone, drain expiry) ends the connection,
        # so it never needs to be reset, and a timer per request is much cheaper than
        # a scope per request.
        scope = CancelScope(name="http1.requests")
        self.handler_scope = scope
        p = self.p
        with greenrt.masked():
            try:
                with scope:
                    while True:
                        ev = self._next_request()
                        if ev is None:
                            break
                        self._handle(ev)
                        if self._fatal or self._draining or not p.next_cycle():
                            break
                        # self._to(_IDLE), inlined (a call per request costs)
                        if _IDLE not in _RUNNER_TRANSITIONS[self.state]:
                            self._to(_IDLE)  # raises
                        self.state = _IDLE
                if scope.cancelled_caught:
                    self._after_cancel(scope.reason)
            finally:
                self.state = _DONE  # from any state (errors included): final
                self._budget.cancel()
                if self._drain_timer is not None:
                    self._drain_timer.cancel()
                self._close()
                self._wait_deadline.cancel()
                if self._flush_timer is not None:
                    self._flush_timer.cancel()
                if self._watch is not None:
                    self._watch.cancel()
                    self._watch = None

    def _budget_expired(self) -> None:
        if self.state == _BUSY:
            self.handler_scope.cancel(CancelReason(
                CancelKind.DEADLINE, message=f"request budget of {self.limits.request_timeout} s "
                "exceeded"))

    def _after_cancel(self, reason) -> None:
        self._fatal = True
        if self._upgraded:
            return  # not HTTP any more: nothing to answer
        why = self._idle_stop
        if why is not None:  # an inline wait for a request ended (_recv_inline)
            if why == _TIMEOUT:
                self._request_wait_expired(self.p.head_started, self.requests == 0)
            return
        kind = reason.kind if reason is not None else None
        if kind is CancelKind.RESOURCE_UNAVAILABLE:
            return  # peer gone: nothing to answer
        code = "shutdown" if kind is CancelKind.SHUTDOWN else "request_timeout"
        writer = self.writer
        if writer is not None and writer.headers_sent:
            _emit(code, status=None, peer=_peer_str(self.peer), detail="response cut short")
            self.p.send_failed()
        else:
            self._answer_error(503, code, "request budget exceeded"
                               if code == "request_timeout" else "server shutting down")

    def _next_request(self):
        p = self.p
        lim = self.limits
        now = self.hub.now
        first = self.requests == 0
        head_deadline = None
        if first and lim.header_timeout is not None:
            head_deadline = self._started + lim.header_timeout
        idle_deadline = None if first or lim.keepalive_timeout is None else \
            now() + lim.keepalive_timeout
        if (not first and not p._buf and not self._reader_active and not self._out_pending
                and not self._draining and not self._eof and not self._stopped):
            # the common keep-alive wait (nothing buffered, nothing to flush): receive
            # at once, without asking the parser first (_wait_data's inline case)
            self._recv_inline(idle_deadline)
        while True:
            try:
                ev = p.next_event()
            except HTTPError as e:
                self._answer_error(e.status, e.code, e.message)
                return None
            t = type(ev)
            if t is RequestHead:
                self.requests += 1
                return ev
            if ev is not NEED_DATA:  # ConnectionClosed
                return None
            started = p.head_started
            if started:
                self._to(_HEAD)
                if head_deadline is None and lim.header_timeout is not None:
                    head_deadline = now() + lim.header_timeout
            elif self._draining:
                return None
            deadline = head_deadline if (started or first) else idle_deadline
            if self._out_pending:
                try:
                    self._flush()
                except (HTTPError, net.StreamError, OSError):
                    self._fatal = True
                    return None
            r = self._wait_data(deadline)
            if r == _TIMEOUT:
                self._request_wait_expired(started, first)
                return None
            if r == _STOP:
                return None

    def _request_wait_expired(self, started: bool, first: bool) -> None:
        """The wait for a request head timed out (``started``: some of it came)."""
        if started:
            self._answer_error(408, "header_timeout", "request head not received in time")
        elif first:
            _emit("header_timeout", status=None, peer=_peer_str(self.peer))
        else:
            _emit("keepalive_timeout", status=None, peer=_peer_str(self.peer))

    def _handle(self, ev) -> None:
        p = self.p
        hdrs = ev.headers
        m = ev.method
        method = "GET" if m == b"GET" else m.decode("ascii")
        cl = p._declared  # p.body_length, p.body_framing without the property calls
        empty = p._framing == "none" or cl == 0
        if empty:
            p.end_empty_body()  # no EndOfMessage event to fetch, so the cycle can complete
            # an empty body never changes: one object serves every such request
            body = self._no_body if cl is None else _Body(self, cl, True)
        else:
            body = _Body(self, cl, False)
        self._cur_empty = empty
        writer = _Writer(self, method == "HEAD")
        self.body = body
        self.writer = writer
        self.req_headers = hdrs
        v = ev.http_version
        req = Request(method, ev.target.decode("latin-1"), Headers._trusted(hdrs), body,
                      http_version="1.1" if v == b"1.1" else v.decode("ascii"),
                      scheme=self.scheme,
                      client=self.peer, server=self.local, writer=writer,
                      upgrade=self._upgrade_to)
        rt = self.limits.request_timeout
        if rt is not None:
            b = self._budget
            when = self.hub.now() + rt
            if b.armed is None or when < b.armed:
                b.set(when)
            else:
                b.when = when  # _LazyDeadline.set without a timer operation, inlined
        if self._watch is None and not self._reader_active:
            # if the handler parks, the reader takes over receiving (see _watch_fired)
            self._watch = self.hub.call_later(_WATCH_PERIOD, self._watch_fired)
        # self._to(_BUSY), inlined (a call per request costs)
        if _BUSY not in _RUNNER_TRANSITIONS[self.state]:
            self._to(_BUSY)  # raises
        self.state = _BUSY
        error: BaseException | None = None
        handler = self.handler
        if p.upgrade_requested and self.upgrade_handler is not None:
            handler = self.upgrade_handler
        try:
            resp = handler(req)
            if self._upgraded:
                return  # the handler took the connection over; it is done now
            if resp is not None:
                if writer._started:  # headers_sent
                    raise LocalProtocolError("handler used request.writer and returned a response")
                writer.send_response(resp)
            elif not writer._started:
                raise LocalProtocolError("handler returned None without sending a response")
            else:
                writer.finish()
        except Exception as e:
            error = e
        finally:
            self._budget.when = None  # _LazyDeadline.clear, inlined
        if error is not None and self._upgraded:
            ll.current_hub().emit("http1.handler_error", error=type(error).__name__,
                                  message=str(error)[:200], upgraded=True)
            return
        if error is not None:
            self._fatal = True
            if isinstance(error, ClientDisconnected):
                _emit(error.code, status=None, peer=_peer_str(self.peer))
                return
            if isinstance(error, (net.StreamError, ConnectionError)) and not isinstance(
                    error, HTTPError):
                _emit("stream_error", status=None, error=type(error).__name__)
                return
            if isinstance(error, HTTPError) and not isinstance(error, LocalProtocolError):
                status, code = error.status, error.code
            else:
                status, code = 500, "handler_error"
                ll.current_hub().emit("http1.handler_error", error=type(error).__name__,
                                      message=str(error)[:200])
                _log.error("handler failed on %s %s (from %s)", method, req.target,
                           _peer_str(self.peer), exc_info=error)
            if writer.headers_sent:
                p.send_failed()
                _emit(code, status=None, detail="after response head")
            else:
                writer.status = status
                self._answer_error(status, code, getattr(error, "message", ""))
            if self._access_on:
                self._log_access(req, writer)
            return
        if not writer._finished:  # pragma: no cover - send_response/finish always finish
            self._fatal = True
        if self._access_on:
            self._log_access(req, writer)

    def _log_access(self, req: Request, writer: _Writer) -> None:
        _access.info(_combined(self, req, writer), extra={
            "http_method": req.method, "http_target": req.target, "http_status": writer.status,
            "http_bytes": writer.body_bytes, "http_peer": _peer_str(self.peer)})

    # -- draining and closing -----------------------------------------------------------

    def begin_drain(self) -> None:
        """Stop after the request in flight, which gets ``drain_timeout`` seconds. Not
        a checkpoint; idempotent."""
        if self._draining:
            return
        self._draining = True
        self.p.close_after_cycle = True
        if self.state == _BUSY:
            self._drain_timer = self.hub.call_later(self.limits.drain_timeout,
                                                    self._drain_expired)
        elif self.state == _IDLE:
            self._stopped = True
            if self._inline:
                self._stop_inline(_STOP, CancelKind.SHUTDOWN, "http1: drain of an idle connection")
            else:
                self._wake(_STOP)

    def _drain_expired(self) -> None:
        self._drain_timer = None
        if self.state == _BUSY:
            self.handler_scope.cancel(CancelReason(CancelKind.SHUTDOWN, message="drain timeout"))

    def _close(self) -> None:
        """Half-close, linger briefly discarding input, then close."""
        stream = self.stream
        if self._upgraded:
            self._stopped = True
            stream.close()
            return
        if self._out_pending and not stream.broken and not stream.closed:
            try:
                self._flush()
            except (HTTPError, net.StreamError, OSError):
                pass
        if not self._eof and not stream.broken and not stream.closed:
            try:
                stream.send_eof()
            except (net.StreamError, OSError):
                pass
            else:
                self._discard = True
                self._resume_reader_now()
                with greenrt.move_on_after(_LINGER_SECONDS):
                    while not self._eof:
                        if self._wait_data(None) == _STOP:
                            break
        self._stopped = True
        stream.close()
        self._resume_reader_now()

    def _resume_reader_now(self) -> None:
        self._reader_paused.wake_one()
        self._reader_wake.wake_one()  # a dormant reader: it looks at _stopped


def _accepts_trailers(headers: list[tuple[bytes, bytes]]) -> bool:
    """The request's ``TE`` field lists ``trailers`` (RFC 9110 §10.1.4)."""
    for k, v in headers:
        if k == b"te" and any(t.split(b";", 1)[0].strip(b" \t").lower() == b"trailers"
                              for t in v.split(b",")):
            return True
    return False


def _combined(conn: _Conn, req: Request, writer: _Writer) -> str:
    """One line in the combined log format (Apache/nginx ``combined``)."""
    peer = conn.peer[0] if isinstance(conn.peer, tuple) else (conn.peer or "-")
    when = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(conn.hub.wall_time()))
    h = req.headers
    referer = (h.get("referer") or "-").replace('"', "%22")
    agent = (h.get("user-agent") or "-").replace('"', "%22")
    line = f"{req.method} {req.target} HTTP/{req.http_version}".replace('"', "%22")
    return (f'{peer} - - [{when}] "{line}" {writer.status} {writer.body_bytes or "-"} '
            f'"{referer}" "{agent}"')


def serve_connection(stream, handler: Handler, *, limits: Limits = DEFAULT_LIMITS,
                     initial: bytes = b"", scheme: str = "http", client: Any = None,
                     accepted: Any = None, upgrade_handler: Handler | None = None) -> None:
    """Serve HTTP/1.1 on one connection until it ends. A checkpoint (blocks).

    ``initial``: bytes already read from ``stream`` (by a dispatcher that sniffed for
    the HTTP/2 preface). ``accepted`` (a ``protocols.base.serve.Accepted``) registers
    the connection's graceful drain with the accept path. Cancelling the caller drains
    the request in flight (see the module docstring) and then raises. The caller
    closes ``stream``. ``upgrade_handler``, if given, is called instead of
    ``handler`` for a request whose head has an ``Upgrade`` field (the unified
    server's ``Upgrade: h2c`` hook; the parser notes the field while parsing, so
    other requests pay one comparison per field).
    """
    conn = _Conn(stream, handler, limits, scheme, upgrade_handler)
    if accepted is not None:
        accepted.on_drain(conn.begin_drain)
    conn.run(initial)
