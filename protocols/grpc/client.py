"""The gRPC client, on our HTTP/2 client (``protocols.http2.connect``).

::

    ch = grpc_client.Channel("127.0.0.1", port)          # tls=True / a TLSContext for TLS
    stub = grpc_client.Stub(ch, test_pb2.DESCRIPTOR.services_by_name["TestService"])
    reply = stub.UnaryCall(request, timeout=1.0, metadata=[("k", "v")])
    for r in stub.StreamingOutputCall(request): ...
    reply = stub.StreamingInputCall(iter(requests))
    call = stub.FullDuplexCall()                          # bidi: send / done / iterate
    call.send(m); first = next(call); call.done(); rest = list(call)
    ch.close()

Every blocking call is a checkpoint. A call fails with
:class:`~.errors.RpcError` carrying ``status``, ``message``, ``details``
(``grpc-status-details-bin``), ``trailers`` and ``initial_metadata``.

Deadlines are budgets: a call's deadline is the earlier of ``timeout`` and the
caller's own deadline (``greenrt.current_deadline()``); it is sent as
``grpc-timeout``. When the call's own ``timeout`` passes, the stream is reset
(RST_STREAM CANCEL) and the call raises DEADLINE_EXCEEDED; when the caller's
enclosing deadline passes first, the caller is cancelled as usual (``Cancelled``
reaches its scope) and the stream is reset on the way out.

Cancellation: ``call.cancel()`` resets the stream (RST_STREAM CANCEL) and later
operations raise CANCELLED; a caller cancelled inside a call resets the stream too
(the HTTP/2 client does it) and ``Cancelled`` propagates.

Statuses the client derives itself: a response without ``grpc-status`` gets its
status from the HTTP status (``status.status_from_http``: 404 → UNIMPLEMENTED,
503 → UNAVAILABLE, ...; a 200 without one is UNKNOWN); an invalid or out-of-range
``grpc-status`` is UNKNOWN; a reset stream maps its RST_STREAM code
(``status.status_from_rst``); a stream refused by GOAWAY (above its last-stream-id)
or REFUSED_STREAM is UNAVAILABLE with ``retryable=True`` (never processed: a unary
call is retried once, transparently, on a new connection); a lost connection is
UNAVAILABLE; a response message over the receive limit is RESOURCE_EXHAUSTED (the
stream is reset).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import greenrt

from .. import http2
from . import metadata as md
from .errors import GrpcError, GrpcUsageError, RpcError
from .framing import END, SUPPORTED_ENCODINGS, MessageDecoder, encode_message
from .limits import DEFAULT_GRPC_LIMITS, GrpcLimits
from .status import (
    StatusCode,
    decode_message,
    parse_status,
    status_from_http,
    status_from_rst,
)
from .timeout import format_timeout

__all__ = ["Call", "Channel", "Stub"]

_USER_AGENT = b"greenrt-grpc/0.1"
#: the request headers of every call (then grpc-timeout, grpc-encoding, metadata)
_HEADERS = ((b"content-type", b"application/grpc"), (b"te", b"trailers"),
            (b"user-agent", _USER_AGENT), (b"grpc-accept-encoding", b"identity,deflate,gzip"))
#: the trailers of an OK call without trailing metadata
_OK_TRAILERS = [(b"grpc-status", b"0")]
#: ... as grpcio sends them
_OK_TRAILERS_EMPTY_MESSAGE = [(b"grpc-status", b"0"), (b"grpc-message", b"")]


class Channel:
    """Calls to one server over one HTTP/2 connection, opened on first use and
    re-opened when it can no longer take streams (GOAWAY, failure).

    ``tls``: ``None`` (cleartext, prior knowledge), ``True`` (default client context,
    ALPN h2) or a ``tls.TLSContext``. ``interceptors``: callables
    ``f(details, call)`` where ``details`` is a dict (``method``, ``metadata`` — a
    list the interceptor may extend —, ``timeout``) and ``call()`` continues.
    ``compression``: ``"gzip"``/``"deflate"`` to compress request messages.
    """

    def __init__(self, host: str, port: int, *, tls: Any = None,
                 server_hostname: str | None = None, limits: GrpcLimits = DEFAULT_GRPC_LIMITS,
                 h2_limits: Any = None, connect_timeout: float | None = 10.0,
                 interceptors: Iterable[Callable] = (), compression: str | None = None):
        self.host = host
        self.port = port
        self.tls = tls
        self.server_hostname = server_hostname
        self.limits = limits
        self.h2_limits = h2_limits
        self.connect_timeout = connect_timeout
        self.interceptors = list(interceptors)
        enc = compression.encode() if isinstance(compression, str) else compression
        if enc is not None and enc not in SUPPORTED_ENCODINGS:
            raise GrpcUsageError(f"grpc: unsupported compression {compression!r}",
                                 code="bad_encoding")
        self.compression = None if enc == b"identity" else enc
        self._conn = None
        self._lock = greenrt.Lock()
        self._closed = False
        self.connects = 0

    def _connection(self):
        """The usable HTTP/2 connection, connecting if needed. A checkpoint."""
        if self._closed:
            raise GrpcUsageError("grpc: the channel is closed", code="closed")
        conn = self._conn
        if conn is not None and conn.is_usable:
            return conn
        with self._lock:
            conn = self._conn
            if conn is not None and conn.is_usable:
                return conn
            if conn is not None:
                conn.close()
                self._conn = None
            try:
                conn = http2.connect(self.host, self.port, tls=self.tls,
                                     server_hostname=self.server_hostname,
                                     limits=self.h2_limits, timeout=self.connect_timeout)
            except (http2.HTTP2Error, OSError) as e:
                raise RpcError(StatusCode.UNAVAILABLE,
                               f"cannot connect to {self.host}:{self.port}: {e}") from e
            self._conn = conn
            self.connects += 1
            return conn

    def close(self) -> None:
        """Close the connection; calls in flight fail with UNAVAILABLE. Not a
        checkpoint. Idempotent."""
        self._closed = True
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls ----------------------------------------------------------------------------

    def start_call(self, path: str, response_type: Any, *, timeout: float | None = None,
                   metadata: Any = None, compression: str | None = None,
                   _only: Any = None) -> Call:
        """Start a call of any kind: HEADERS sent, nothing else. A checkpoint. The
        returned :class:`Call` sends with ``send``/``done`` and receives by
        iteration."""
        if not self.interceptors:
            return Call(self, path, response_type.FromString, timeout,
                        list(metadata) if metadata else [], compression, _only)
        details = {"method": path, "metadata": list(metadata or ()), "timeout": timeout}

        def call():
            return Call(self, path, response_type.FromString, details["timeout"],
                        details["metadata"], compression)

        for f in reversed(self.interceptors):
            call = _bind(f, details, call)
        return call()

    def unary(self, path: str, request: Any, response_type: Any, **kw: Any) -> Any:
        """One request, one response. A checkpoint. A call refused without being
        processed (GOAWAY, REFUSED_STREAM) is retried once on a new connection."""
        for attempt in (0, 1):
            # without interceptors (which might wait on the call first) the call
            # opens with its one message: HEADERS and DATA(END_STREAM) in one write
            only = None if self.interceptors else request
            call = self.start_call(path, response_type, _only=only, **kw)
            try:
                if only is None:
                    call.send(request, end=True)
                return call.result()
            except RpcError as e:
                if not (e.retryable and attempt == 0 and call.messages_received == 0):
                    raise

    def server_streaming(self, path: str, request: Any, response_type: Any, **kw: Any) -> Call:
        call = self.start_call(path, response_type, **kw)
        call.send(request)
        call.done()
        return call

    def client_streaming(self, path: str, requests: Iterable, response_type: Any,
                         **kw: Any) -> Any:
        call = self.start_call(path, response_type, **kw)
        for r in requests:
            call.send(r)
        call.done()
        return call.result()

    def bidi(self, path: str, response_type: Any, **kw: Any) -> Call:
        return self.start_call(path, response_type, **kw)


def _bind(f: Callable, details: dict, nxt: Callable) -> Callable:
    return lambda: f(details, nxt)


class Call:
    """One call in flight. ``send(message)`` / ``done()`` (half-close) on the sending
    side; iteration (``next(call)``) yields response messages and raises the call's
    :class:`RpcError` at a non-OK end; ``result()`` is the single response of a
    unary-response call. ``initial_metadata()``, ``trailing_metadata()``, ``status``
    (``None`` until the end), ``cancel()``.

    Every method that waits is a checkpoint; see the module docstring for deadlines
    and cancellation."""

    def __init__(self, channel: Channel, path: str, deserialize: Callable, timeout: float | None,
                 metadata: list, compression: str | None, only: Any = None):
        self._ch = channel
        self.path = path
        self._de = deserialize
        now = greenrt.now()
        own = None if timeout is None else now + timeout
        ambient = greenrt.current_deadline()
        self.deadline = own if ambient is None or (own is not None and own <= ambient) \
            else ambient
        self._own_deadline = own
        enc = compression.encode() if isinstance(compression, str) else compression
        self._enc = channel.compression if enc is None else (None if enc == b"identity" else enc)
        self.status: StatusCode | None = None
        self.error: RpcError | None = None
        self._initial: list = []
        self._trailing: list = []
        self._head = None
        self._decoder: MessageDecoder | None = None
        self._sent_end = False
        self.messages_received = 0
        headers = _HEADERS
        if self.deadline is not None or self._enc is not None or metadata:
            headers = list(_HEADERS)
            if self.deadline is not None:
                headers.append((b"grpc-timeout", format_timeout(self.deadline - now)))
            if self._enc is not None:
                headers.append((b"grpc-encoding", self._enc))
            headers += md.encode_metadata(metadata)
        conn = channel._connection()
        if only is not None:  # the whole request: its one message, half-closed
            frame = self._frame(only)
            self._sent_end = True
            if headers is _HEADERS:
                def op():
                    return conn.send_request("POST", path, _HEADERS, frame)
            else:
                def op():
                    s = conn.open_stream("POST", path, headers, flush=False)
                    s.send_data(frame, end_stream=True)
                    return s
        else:
            def op():
                return conn.open_stream("POST", path, headers)
        try:
            self._s = self._guard(op)
        except RpcError:
            self._s = None
            raise

    # -- the guard: deadlines and HTTP/2 errors -> RpcError ------------------------------------

    def _guard(self, op: Callable):
        if self.error is not None:
            raise self.error
        if self._own_deadline is None:
            try:
                return op()
            except http2.HTTP2Error as e:
                raise self._fail_h2(e) from None
            except greenrt.Cancelled:
                self._abandon_quietly()
                raise
        scope = greenrt.cancel_scope(deadline=self._own_deadline, name=f"grpc.call{self.path}")
        try:
            with scope:
                return op()
        except http2.HTTP2Error as e:
            raise self._fail_h2(e) from None
        except greenrt.Cancelled:
            self._abandon_quietly()
            raise
        finally:
            if scope.cancelled_caught:
                # the HTTP/2 client reset the stream (CANCEL) as the cancellation passed
                self._finish(RpcError(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
                raise self.error from None

    def _abandon_quietly(self) -> None:
        """The caller was cancelled inside the call: reset the stream (CANCEL), so
        neither end keeps it. Not a checkpoint (the frame is queued masked)."""
        s = getattr(self, "_s", None)
        if s is not None and self.status is None:
            with greenrt.masked(name="grpc.cancel"):
                s.reset(http2.CANCEL)
            self._finish(RpcError(StatusCode.CANCELLED, "the caller was cancelled"))

    def _fail_h2(self, e: Exception) -> RpcError:
        if isinstance(e, http2.StreamRefused):
            err = RpcError(StatusCode.UNAVAILABLE, f"stream refused: {e}", retryable=True)
        elif isinstance(e, http2.StreamReset):
            code = e.error_code if e.error_code is not None else 0
            err = RpcError(status_from_rst(code), f"stream reset by the server: {e}")
            if not e.remote:
                err = RpcError(StatusCode.CANCELLED, "the call was cancelled")
        elif isinstance(e, http2.LimitError):
            err = RpcError(StatusCode.RESOURCE_EXHAUSTED, str(e))
        elif isinstance(e, (http2.ConnectionLost, http2.ConnectionClosed)):
            err = RpcError(StatusCode.UNAVAILABLE, f"connection lost: {e}")
        else:
            err = RpcError(StatusCode.INTERNAL, f"http2: {e}")
        return self._finish(err)

    def _finish(self, err: RpcError | None) -> RpcError | None:
        if self.status is None:
            if err is None:
                self.status = StatusCode.OK
            else:
                err.initial_metadata = list(self._initial)
                if not err.trailers:
                    err.trailers = list(self._trailing)
                self.error = err
                self.status = err.status
        return self.error

    # -- sending ------------------------------------------------------------------------------

    def send(self, message: Any, *, end: bool = False) -> None:
        """Send one request message; ``end=True`` half-closes with it (``done()`` in
        the same frame). A checkpoint (blocks while the server's window is closed).
        After the call ended, raises its RpcError."""
        if self._sent_end:
            raise GrpcUsageError("grpc: send after done()", code="send_after_done")
        frame = self._frame(message)
        if end:
            self._sent_end = True
        try:
            self._guard(lambda: self._s.send_data(frame, end_stream=end))
        except RpcError:
            if self.error is not None and self.error.status != StatusCode.DEADLINE_EXCEEDED:
                # the server ended the call (or reset it): its status is in the response
                self._collect_status()
            raise self.error from None

    def _frame(self, message: Any) -> bytes:
        data = message.SerializeToString()
        lim = self._ch.limits.max_send_message_bytes
        if len(data) > lim:
            raise GrpcUsageError(f"grpc: request message of {len(data)} bytes exceeds "
                                 f"max_send_message_bytes {lim}", code="message_too_large")
        return encode_message(data, compress=self._enc)

    def done(self) -> None:
        """Half-close: no more request messages. A checkpoint. Idempotent."""
        if self._sent_end or self.error is not None:
            self._sent_end = True
            return
        self._sent_end = True
        try:
            self._guard(self._s.end)
        except RpcError:
            pass  # the status is read from the response

    def cancel(self) -> None:
        """Cancel the call: RST_STREAM(CANCEL); later operations raise CANCELLED.
        Not a checkpoint. A no-op after the call ended."""
        if self.status is not None or self._s is None:
            return
        self._s.reset(http2.CANCEL)
        self._finish(RpcError(StatusCode.CANCELLED, "Cancelled by the client"))

    # -- receiving ----------------------------------------------------------------------------

    def _read_head(self) -> None:
        if self._head is not None:
            return
        self._on_head(*self._guard(self._s.response_headers))

    def _on_head(self, status: int, headers: Any) -> None:
        """The response head arrived: trailers-only status, HTTP status, content-type,
        metadata, the message decoder. Raises the call's RpcError if it ends here."""
        self._head = (status, headers)
        raw = headers.raw()
        if status == 200:
            # the common head (grpcio's, ours): content-type, grpc-accept-encoding and
            # maybe grpc-encoding, no metadata: no metadata decoding, one pass
            enc = None
            grpc_type = False
            size = 0
            for k, v in raw:
                size += len(k) + len(v) + 32
                if k == b"content-type":
                    grpc_type = v.startswith(b"application/grpc")
                    if not grpc_type:
                        break
                elif k == b"grpc-encoding":
                    enc = v
                elif k != b"grpc-accept-encoding":
                    break
            else:
                if grpc_type and size <= self._ch.limits.max_metadata_bytes:
                    self._decoder = MessageDecoder(
                        max_message_bytes=self._ch.limits.max_receive_message_bytes,
                        encoding=enc)
                    return
        try:
            self._initial = md.decode_metadata(raw, max_bytes=self._ch.limits.max_metadata_bytes)
        except GrpcError as e:
            self._abandon(RpcError(e.status, e.message))
        if any(k == b"grpc-status" for k, _ in raw):
            # trailers-only: the status is in the only HEADERS frame
            self._status_from(raw, trailers_only=True)
            return
        if status != 200:
            self._abandon(RpcError(status_from_http(status),
                                   f"HTTP status {status} without grpc-status"), reset=False)
        ctype = headers.get("content-type") or ""
        if not ctype.startswith("application/grpc"):
            self._abandon(RpcError(StatusCode.UNKNOWN,
                                   f"response content-type {ctype[:40]!r} is not gRPC"))
        enc = headers.get("grpc-encoding")
        self._decoder = MessageDecoder(
            max_message_bytes=self._ch.limits.max_receive_message_bytes,
            encoding=enc.encode("latin-1") if enc else None)

    def _abandon(self, err: RpcError, *, reset: bool = True) -> None:
        if reset and self._s is not None:
            self._s.reset(http2.CANCEL)
        else:
            self._s.close()
        self._finish(err)
        raise self.error

    def _status_from(self, fields: list, *, trailers_only: bool = False) -> None:
        if fields == _OK_TRAILERS or fields == _OK_TRAILERS_EMPTY_MESSAGE:
            # the common end: OK, no trailing metadata
            if trailers_only:
                self._initial = []
            self._finish(None)
            return
        d = dict(fields)
        st = parse_status(d.get(b"grpc-status"))
        raw_msg = d.get(b"grpc-message")
        message = decode_message(raw_msg) if raw_msg is not None else ""
        details = None
        if b"grpc-status-details-bin" in d:
            try:
                details = md.b64decode_lenient(d[b"grpc-status-details-bin"])
            except GrpcError:
                details = None
        try:
            trailing = md.decode_metadata(fields, max_bytes=self._ch.limits.max_metadata_bytes)
        except GrpcError as e:
            self._finish(RpcError(e.status, e.message))
            raise self.error from None
        if trailers_only:
            self._initial = []
        self._trailing = trailing
        if st is None:
            v = d.get(b"grpc-status")
            why = "missing grpc-status" if v is None else f"invalid grpc-status {v[:8]!r}"
            err = RpcError(StatusCode.UNKNOWN, message or why)
        elif st == StatusCode.OK:
            err = None
        else:
            err = RpcError(st, message, details=details)
        self._finish(err)
        if err is not None:
            raise self.error

    def _collect_status(self) -> None:
        """After the server ended the call early: read its status if it sent one."""
        try:
            self.error = None
            self.status = None
            self._read_head()
            for _ in self:
                pass
        except RpcError:
            pass

    def __iter__(self) -> Iterator:
        return self

    def __next__(self) -> Any:
        """The next response message (a checkpoint); StopIteration at an OK end;
        the call's RpcError at any other end."""
        if self.status == StatusCode.OK:
            raise StopIteration
        if self.error is not None:
            raise self.error
        self._read_head()
        if self.status is not None:  # trailers-only OK
            raise StopIteration
        dec = self._decoder
        while True:
            try:
                ev = dec.next_event()
            except GrpcError as e:
                self._abandon(RpcError(e.status, e.message))
            if isinstance(ev, bytes):
                self.messages_received += 1
                try:
                    return self._de(ev)
                except Exception as e:  # noqa: BLE001 - any parse failure of the message
                    self._abandon(RpcError(StatusCode.INTERNAL,
                                           f"cannot parse the response message: "
                                           f"{type(e).__name__}"))
            if ev is END:
                trailers = self._guard(self._s.trailers)
                self._status_from(trailers.raw() if trailers is not None else [])
                raise StopIteration
            dec.receive_data(self._guard(lambda: self._s.read(65536)))

    def result(self) -> Any:
        """The single response message of a unary-response call. A checkpoint. Raises
        the call's RpcError; INTERNAL if an OK call had no response or several."""
        if self._head is None and self.error is None and self._s is not None:
            # the whole answer in one wake-up, usually: head, message, trailers
            lim = self._ch.limits.max_receive_message_bytes
            got = self._guard(lambda: self._s.read_complete(lim + 5))
            if got is not None:
                status, headers, body, trailers = got
                self._on_head(status, headers)
                if self.status is not None:  # trailers-only OK: no message
                    raise self._finish_bad("expected one response message, got 0")
                n = len(body) - 5
                raw = trailers.raw() if trailers is not None else []
                if (n >= 0 and body[0] == 0 and int.from_bytes(body[1:5], "big") == n
                        and n <= lim and (raw == _OK_TRAILERS
                                          or raw == _OK_TRAILERS_EMPTY_MESSAGE)):
                    # one uncompressed message within the limit, then OK
                    try:
                        reply = self._de(body[5:])
                    except Exception as e:  # noqa: BLE001 - any parse failure
                        self._abandon(RpcError(StatusCode.INTERNAL,
                                               f"cannot parse the response message: "
                                               f"{type(e).__name__}"))
                    self.messages_received = 1
                    self._finish(None)
                    return reply
                self._decoder.receive_data(body)  # the general path takes it from here
        out = list(self)
        if len(out) != 1:
            raise self._finish_bad(f"expected one response message, got {len(out)}")
        return out[0]

    def _finish_bad(self, why: str) -> RpcError:
        self.status = None
        self.error = None
        return self._finish(RpcError(StatusCode.INTERNAL, why))

    def initial_metadata(self) -> list:
        """The response headers' metadata. A checkpoint (waits for the headers)."""
        if self._head is None and self.error is None:
            try:
                self._read_head()
            except RpcError:
                pass
        return list(self._initial)

    def trailing_metadata(self) -> list:
        """The trailers' metadata (after the call ended; ``[]`` before)."""
        return list(self._trailing)


class Stub:
    """Methods of a protobuf ``ServiceDescriptor`` as attributes of a stub:
    ``stub.Method(request)`` (unary), ``stub.Method(request)`` → iterator (server
    streaming), ``stub.Method(iterable)`` (client streaming), ``stub.Method()`` →
    :class:`Call` (bidi); keyword arguments ``timeout``, ``metadata``,
    ``compression``."""

    def __init__(self, channel: Channel, service_descriptor: Any):
        from google.protobuf import message_factory

        for m in service_descriptor.methods:
            path = f"/{service_descriptor.full_name}/{m.name}"
            out = message_factory.GetMessageClass(m.output_type)
            setattr(self, m.name, _stub_method(channel, path, out, m.client_streaming,
                                               m.server_streaming))


def _stub_method(ch: Channel, path: str, out: Any, cs: bool, ss: bool) -> Callable:
    if not cs and not ss:
        return lambda request, **kw: ch.unary(path, request, out, **kw)
    if not cs:
        return lambda request, **kw: ch.server_streaming(path, request, out, **kw)
    if not ss:
        return lambda requests, **kw: ch.client_streaming(path, requests, out, **kw)
    return lambda **kw: ch.bidi(path, out, **kw)
