"""RFC 8441 extended CONNECT: a tunnel (a WebSocket, typically) over one HTTP/2 stream.

Server side. A handler opts in by being wrapped with :func:`extended_connect` (the
WebSocket ``http_handler`` and the WSGI adapter are marked already); the connection
then advertises ``SETTINGS_ENABLE_CONNECT_PROTOCOL = 1`` and a ``CONNECT`` request
carrying ``:protocol`` reaches the handler with an :class:`ExtendedConnect` in
``request.extensions["http2.connect"]``. ``ExtendedConnect.accept()`` answers 200 and
returns a :class:`Tunnel`: ``recv``/``send_all``/``close`` over the stream's DATA,
the byte-stream shape the WebSocket connection runs on.

* A malformed extended CONNECT is a stream error, RST_STREAM(PROTOCOL_ERROR), and no
  handler runs: ``:protocol`` when the setting was not advertised, on a method other
  than CONNECT, or not a token; a missing ``:scheme``/``:path``/``:authority`` (h2's
  header validation, reset by the server's stream-error path). Counted like every
  server-provoked reset (MadeYouReset).
* Flow control, in batches, through the connection's own window accounting
  (``ServerConnection.ack``, ``ClientConnection._ack``: a WINDOW_UPDATE once a
  quarter window is due, or ahead of the next control frame): a tunnel's DATA is
  credited to the *connection* window when it arrives, and to the stream's window
  when the tunnel reads it; all of it goes back when a tunnel closes. A tunnel that
  is not read (a slow or cancelled reader) therefore holds at most its stream's
  window, and the connection's window is never held back by more than a quarter;
  the request-body limit does not apply (a tunnel streams). The client end credits
  both windows on read (:class:`ClientTunnel`).
* ``Tunnel.close()`` ends our side with END_STREAM (after a WebSocket's Close frame),
  or resets the stream (CANCEL) if a send was cut short mid-write, so a peer never
  sees half a frame followed by a clean end.

Client side: :class:`ClientTunnel` wraps a ``ClientStream`` opened with
``open_stream("CONNECT", path, protocol="websocket")`` the same way.
"""

from __future__ import annotations

import collections
import functools
import re
from typing import Any

import h2.errors
import h2.exceptions

import greenrt
from greenrt import lowlevel as ll

from ._h2fast import put_data  # the one DATA-frame fast writer (also the tunnels')
from .errors import HTTP2Error, StreamReset

__all__ = ["ClientTunnel", "ExtendedConnect", "Tunnel", "extended_connect"]

#: the attribute a handler carries when it accepts extended CONNECT requests
MARK = "http2_extended_connect"
#: the connection-level receive window (RFC 9113 6.9.2: 65,535 at the start; neither
#: end enlarges it)
CONNECTION_WINDOW = 65535
_E = h2.errors.ErrorCodes
# RFC 9110 5.6.2 token
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
def extended_connect(handler):
    """Mark ``handler`` (an HTTP handler) as accepting RFC 8441 extended CONNECT:
    a server connection running it advertises SETTINGS_ENABLE_CONNECT_PROTOCOL=1 and
    hands it ``CONNECT`` requests with ``:protocol``, each carrying an
    :class:`ExtendedConnect` in ``request.extensions["http2.connect"]``. Returns a
    wrapper (the handler itself is not modified); not a checkpoint."""
    if getattr(handler, MARK, False):
        return handler

    @functools.wraps(handler)
    def wrapped(request):
        return handler(request)

    setattr(wrapped, MARK, True)
    return wrapped


def enabled(handler: Any) -> bool:
    """Does ``handler`` accept extended CONNECT (see :func:`extended_connect`)?"""
    return bool(getattr(handler, MARK, False))


def admit(conn: Any, sid: int, method: bytes, protocol: bytes) -> bool:
    """Server: may a request with ``:protocol`` be served? If not, the stream is reset
    with PROTOCOL_ERROR (RFC 8441 4: malformed) and no handler starts."""
    if not conn.connect_protocol:
        why = "connect_protocol_not_enabled"
    elif method != b"CONNECT":
        why = "protocol_without_connect"
    elif not _TOKEN.match(protocol):
        why = "bad_protocol_token"
    else:
        return True
    conn.hub.emit("protocol.error", protocol="http2", code="malformed_extended_connect",
                  stream_id=sid, why=why)
    conn.stats["stream_errors"] += 1
    try:
        conn.h2.reset_stream(sid, error_code=_E.PROTOCOL_ERROR)
    except h2.exceptions.ProtocolError:
        pass
    conn.gate.count("server_reset", conn.limits.refused_per_window)
    return False


def attach(conn: Any, st: Any, extensions: dict, protocol: bytes) -> None:
    """Server: make the admitted stream ``st`` a tunnel and give the handler its
    :class:`ExtendedConnect`. Not a checkpoint."""
    st.tunnel = Tunnel(conn, st)
    extensions["http2.connect"] = ExtendedConnect(st.tunnel, protocol.decode("ascii"))


class ExtendedConnect:
    """What an extended CONNECT request offers its handler (in
    ``request.extensions["http2.connect"]``): the requested ``protocol`` (e.g.
    ``"websocket"``) and :meth:`accept`. To refuse, the handler returns an ordinary
    response (a 4xx) instead. The stream's DATA belongs to the tunnel: the request's
    ``body`` reads nothing but its end."""

    __slots__ = ("protocol", "_tunnel")

    def __init__(self, tunnel: Tunnel, protocol: str):
        self.protocol = protocol
        self._tunnel = tunnel

    @property
    def accepted(self) -> bool:
        """True once :meth:`accept` sent the 2xx."""
        return self._tunnel._st.writer.headers_sent

    def accept(self, headers: Any = (), *, status: int = 200) -> Tunnel:
        """Answer ``status`` (a 2xx, default 200) with ``headers`` and return the
        :class:`Tunnel`. A checkpoint: cancelled there, nothing was sent. The handler
        returns ``None`` once it is done with the tunnel (close it first)."""
        if not 200 <= status < 300:
            raise ValueError("an accepted extended CONNECT is answered with a 2xx")
        self._tunnel._st.writer.start(status, headers)
        return self._tunnel


class Tunnel:
    """The server end of an accepted extended CONNECT: a byte stream over the HTTP/2
    stream's DATA frames (``recv``, ``send_all``, ``close``; what
    ``protocols.websocket`` runs a WebSocket on)."""

    __slots__ = ("_c", "_st", "_chunks", "_pending", "_closed", "_broken")

    def __init__(self, conn: Any, st: Any):
        self._c = conn
        self._st = st
        self._chunks: collections.deque = collections.deque()  # (bytes, flow length)
        self._pending = b""
        self._closed = False
        self._broken = False

    @property
    def stream_id(self) -> int:
        return self._st.id

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def buffered(self) -> int:
        """Bytes received and not yet read."""
        return len(self._pending) + sum(len(d) for d, _ in self._chunks)

    def on_data(self, data: bytes, flow: int) -> None:
        """The connection's reader: DATA for this stream arrived. Its connection
        window is credited at once (returned in a batch, see the module docstring;
        the connection flushes after its read); the stream's when it is read. Not a
        checkpoint."""
        c = self._c
        c.ack(self._st.id, flow, stream=False)
        if self._closed:
            self._ack_stream(flow, now=True)  # nobody will read it: let the peer finish
            return
        self._chunks.append((data, flow))
        self._st.wake()

    def _ack_stream(self, flow: int, *, now: bool = False) -> None:
        """Credit ``flow`` read bytes to the stream's window, batched by the
        connection's ``ack`` (or returned at once, with every window update due,
        with ``now``). Not a checkpoint."""
        c = self._c
        c.ack(self._st.id, flow, connection=False)
        if now:
            c.flush(acks=True)

    def recv(self, max_bytes: int = 65536) -> bytes:
        """The next bytes from the peer (at most ``max_bytes``), ``b""`` once the peer
        ended its side (END_STREAM), reset the stream or the connection ended. A
        checkpoint; cancellation loses no byte (what arrived stays buffered)."""
        ll.enter_checkpoint()
        if max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        st = self._st
        while not self._pending:
            if self._chunks:
                data, flow = self._chunks.popleft()
                self._ack_stream(flow)
                self._pending = data
                break
            if st.ended or st.reset or self._c.closed or self._closed:
                return b""
            st.waiter = greenrt.Event()
            try:
                st.waiter.wait()
            finally:
                st.waiter = None
        out, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        return out

    def send_all(self, data: bytes) -> None:
        """Send ``data`` as DATA frames within the flow-control windows (blocks while
        they are shut: backpressure). A checkpoint. Raises :class:`StreamReset` if the
        stream was reset or the connection ended. Cancelled midway: the part sent is
        sent, and ``close()`` will reset the stream rather than end it cleanly."""
        if self._closed:
            raise StreamReset("http2: the tunnel is closed", stream_id=self._st.id, remote=False)
        st, c = self._st, self._c
        try:
            if st.writer.headers_sent and not (st.reset or c.closed) \
                    and c.writer.pending < c.limits.send_high_water:
                ll.enter_checkpoint()
                # one DATA frame that fits the windows (a WebSocket message, mostly):
                # straight out, without the general path's loop
                if not (st.reset or c.closed) and c.writer.pending < c.limits.send_high_water \
                        and put_data(c.h2, st.id, data):
                    _send_now(c)
                    return
            st.writer.write(data)
        except greenrt.Cancelled:
            self._broken = True
            raise
        except Exception:
            self._broken = True
            if st.reset or self._c.closed:
                raise StreamReset(f"http2: tunnel stream {st.id} was reset or its "
                                  "connection ended", stream_id=st.id) from None
            raise

    def send_eof(self) -> None:
        """End our side (END_STREAM); the peer may still send. Not a checkpoint. After
        a cut-short send it resets the stream instead (see :meth:`close`)."""
        c, st = self._c, self._st
        if st.reset or c.closed or st.id not in c.streams:
            return
        if self._broken:
            c._reset(st, _E.CANCEL)
            return
        try:
            st.writer.finish()
        except Exception:  # noqa: BLE001 - the stream is already gone: nothing to end
            pass

    def close(self) -> None:
        """End the tunnel: END_STREAM (or RST_STREAM(CANCEL) after a cut-short send);
        bytes not yet read are dropped, their window returned. Not a checkpoint (the
        frame is queued for the connection's writer). Idempotent."""
        if self._closed:
            return
        self.send_eof()
        self._closed = True
        unread = sum(f for _, f in self._chunks)
        self._chunks.clear()
        self._pending = b""
        # every update due goes now, the connection's other tunnels' share too
        # (early is safe)
        self._ack_stream(unread, now=True)
        self._st.wake()

    def __repr__(self) -> str:
        return f"<http2.Tunnel stream={self._st.id}{' closed' if self._closed else ''}>"


def _send_now(c: Any) -> None:
    """Server: write what h2 has queued from the calling task when nothing else is
    queued or being sent, so a tunnel's reply does not wait for the flusher task's
    round (two task switches); otherwise queue it for the flusher, which sends it
    with the rest. Not a checkpoint beyond the write's own (masked, bounded by
    ``send_timeout``)."""
    w = c.writer
    if w.buf or w.sending or c.closed or not c._flusher_idle:
        c.flush()
        return
    w.write(c.h2.data_to_send())
    if w.broken is not None:  # what the flusher does when its own write fails
        c.closed = True
        c._wake_all()
        if c._recv_scope is not None:
            c._recv_scope.cancel()




class ClientTunnel:
    """The client end of an extended CONNECT: a byte stream over a ``ClientStream``
    whose 2xx response has been received. ``owns`` is a ``ClientConnection`` to close
    with the tunnel (``websocket.connect(..., http2=True)`` opens one per WebSocket).

    What it reads goes back to the server's windows in the connection's batches
    (``ClientConnection._ack``), and all of it when the tunnel closes."""

    __slots__ = ("stream", "owns", "_closed")

    def __init__(self, stream: Any, owns: Any = None):
        self.stream = stream
        self.owns = owns
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def recv(self, max_bytes: int = 65536) -> bytes:
        """Next bytes from the server, ``b""`` at its END_STREAM, a reset, or the end
        of the connection (what a byte stream reports; the WebSocket above makes it
        close code 1006). A checkpoint; cancellation loses no byte and leaves the
        stream open."""
        if self._closed:
            return b""
        ll.enter_checkpoint()
        if max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        s = self.stream
        c, st = s._c, s._s
        while not s._pending:
            if st.chunks:
                data, flow = st.chunks.popleft()
                st.buffered -= len(data)
                s._pending = data
                if flow:  # credited to both windows, batched by the connection
                    c._ack(st.id, flow, stream_open=not st.ended and st.error is None)
                break
            if st.ended or st.error is not None:
                return b""
            try:
                c._wait(lambda: bool(st.chunks) or st.ended or st.error is not None,
                        "http2.read")
            except HTTP2Error:  # the connection ended: what arrived is still read
                if not st.chunks:
                    return b""
        data = s._pending
        if max_bytes >= len(data):
            s._pending = b""
            return data
        s._pending = data[max_bytes:]
        return data[:max_bytes]

    def send_all(self, data: bytes) -> None:
        """Send ``data`` (flow-controlled, blocks for window). A checkpoint. Cancelled
        midway: the stream is reset (the peer never sees a clean end after half a
        frame)."""
        if self._closed:
            raise StreamReset("http2: the tunnel is closed", stream_id=self.stream.stream_id,
                              remote=False)
        s = self.stream
        c, st = s._c, s._s
        if st.error is None and not st.local_closed and c._error is None:
            s._checkpoint()
            # one DATA frame that fits the windows: straight out
            if st.error is None and not st.local_closed and c._error is None \
                    and put_data(c.h2, st.id, data):
                c._flush()
                return
        s.send_data(data)

    def close(self) -> None:
        """END_STREAM (unless the stream is already ended or reset), then discard what
        the server still sends, returning its window; closes ``owns``. Not a
        checkpoint in effect (the frame is written masked). Idempotent."""
        if self._closed:
            return
        self._closed = True
        s = self.stream
        c = s._c
        try:
            with greenrt.masked(name="http2.tunnel_close"):
                # what was read goes back before END_STREAM, so the server can
                # finish: every update due, the connection's other tunnels' share
                # too (early is safe)
                c._flush(acks=True)
                s.end_nowait()
        except HTTP2Error:
            pass
        finally:
            s.discard_response()
            if self.owns is not None:
                self.owns.close()

    def __repr__(self) -> str:
        return f"<http2.ClientTunnel stream={self.stream.stream_id}>"
