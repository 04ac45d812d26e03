"""The gRPC server: handlers written blocking-style, served by our HTTP/2 server.

::

    server = grpc_server.Server()
    server.add_servicer(test_pb2.DESCRIPTOR.services_by_name["TestService"], MyServicer())
    server.add_unary("/pkg.Svc/Get", get, GetRequest, GetReply)
    server.serve_connection(stream)          # one HTTP/2 connection (blocks)
    # or: handler = server.handle            # for any HTTP/2 serve_connection

Handlers, by call kind (``ctx`` is the call's :class:`ServerContext`)::

    unary             fn(request, ctx) -> response
    server streaming  fn(request, ctx) -> iterable of responses (or ctx.send(m); return None)
    client streaming  fn(requests, ctx) -> response       # requests: an iterator
    bidirectional     fn(requests, ctx) -> iterable of responses (or ctx.send)

Iterating ``requests`` blocks for the next message (a checkpoint); it ends when the
client half-closes. ``ctx.send`` blocks while the client's flow-control window is
closed (backpressure; a checkpoint).

The outcome of a handler is mapped to the status explicitly (:func:`outcome_status`):
ok → OK; :class:`~.errors.RpcError` (or ``ctx.abort``) → its status, message, details
and trailers; a gRPC wire fault of the request (a bad prefix, a message over the
limit) → its status (INTERNAL, RESOURCE_EXHAUSTED); any other exception → UNKNOWN;
the ``grpc-timeout`` deadline passing → DEADLINE_EXCEEDED; a greenrt invariant
failure (a panic: ``InvariantViolation``, ``ObligationLeak``) → INTERNAL. A client
RST_STREAM cancels the handler's task (``Cancelled`` at its next checkpoint, reason
``user`` from the HTTP/2 server); the stream is reset and no status is sent, as the
client is gone.

``grpc-timeout`` becomes a cancel scope with that deadline around the handler (a
budget: everything the handler calls inherits it). A malformed value is refused
with INTERNAL before the handler runs.

Interceptors: ``Server(interceptors=[f, ...])``, each ``f(ctx, call)`` → the result;
``call()`` runs the rest of the chain and the handler (for streaming responses the
result is the iterable). An interceptor may read ``ctx.metadata``, raise
``RpcError`` to refuse the call, or wrap the result.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import greenrt
from greenrt import lowlevel as ll

from ..http.model import Headers, Request, Response
from ..http2 import DEFAULT_H2_LIMITS, H2Limits
from ..http2 import serve_connection as h2_serve_connection
from ..http2._wire import HeaderBlock
from . import metadata as md
from .errors import GrpcError, GrpcUsageError, RpcError
from .framing import END, SUPPORTED_ENCODINGS, MessageDecoder, encode_message
from .keepalive import PingPolicy
from .limits import DEFAULT_GRPC_LIMITS, GrpcLimits
from .status import StatusCode
from .status import encode_message as encode_grpc_message
from .timeout import BadTimeout, parse_timeout

__all__ = ["Method", "Server", "ServerContext", "outcome_status"]

_log = logging.getLogger("greenrt.grpc")

UNARY_UNARY, UNARY_STREAM, STREAM_UNARY, STREAM_STREAM = (
    "unary_unary", "unary_stream", "stream_unary", "stream_stream")
_PANICS = tuple(getattr(greenrt, n) for n in ("InvariantViolation", "ObligationLeak",
                                              "CleanupOverrun") if hasattr(greenrt, n))
#: the HTTP/2 limits a gRPC server uses by default: streams are long-lived, so the
#: per-stream body cap of plain HTTP is lifted (each message is capped by GrpcLimits)
GRPC_H2_LIMITS = dataclasses.replace(DEFAULT_H2_LIMITS, max_body_bytes=1 << 62)
_ACCEPT = b"identity,deflate,gzip"
#: the response head without metadata or compression, and an OK call's trailers:
#: encoded once (see ``http2._wire.HeaderBlock``), sent with one write per call
_HEAD = HeaderBlock([(b":status", b"200"), (b"content-type", b"application/grpc"),
                     (b"grpc-accept-encoding", _ACCEPT)])
_OK = HeaderBlock([(b"grpc-status", b"0")])
#: the request headers the server reads itself (the rest is metadata, or reserved)
_OWN = frozenset((b"content-type", b"grpc-encoding", b"grpc-timeout",
                  b"grpc-accept-encoding"))


@dataclasses.dataclass(frozen=True)
class Method:
    """One registered method: ``kind`` (``"unary_unary"``...), the handler and how to
    turn bytes into the request message and the response into bytes."""

    kind: str
    handler: Callable
    deserialize: Callable[[bytes], Any]
    serialize: Callable[[Any], bytes]


class _SendFailed(Exception):
    """Sending on the stream failed (it was reset or the connection ended): the
    handler's outcome no longer matters; the original error goes up to HTTP/2."""


class ServerContext:
    """What a handler knows about its call and how it shapes the response.

    ``metadata`` the client's custom metadata ``[(key, value)]`` (``-bin`` values are
    bytes); ``method`` the full path (``/pkg.Service/Method``); ``peer`` the client
    address; ``deadline`` the call's deadline on the hub clock, or ``None``.
    """

    def __init__(self, server: Server, req: Request, method: str, meta: list,
                 deadline: float | None, accept: bytes | None = None):
        self._server = server
        self._req = req
        self._writer = req.writer
        self.method = method
        self.metadata = meta
        self.peer = req.client
        self.deadline = deadline
        self._initial: list[tuple[bytes, bytes]] = []
        self._trailing: list[tuple[bytes, bytes]] = []
        self._compression: bytes | None = None
        self._accept_raw = accept  # the client's grpc-accept-encoding, parsed on use
        self._serialize: Callable[[Any], bytes] | None = None
        self.messages_sent = 0

    def time_remaining(self) -> float | None:
        """Seconds until the deadline (``None`` without one). Not a checkpoint."""
        return None if self.deadline is None else max(0.0, self.deadline - greenrt.now())

    def invocation_metadata(self) -> list:
        return list(self.metadata)

    def send_initial_metadata(self, metadata: Any) -> None:
        """Metadata for the response headers; before the first message only (a
        UsageError after). Not a checkpoint: the headers go with the first message,
        or with the status."""
        if self._writer.headers_sent:
            raise GrpcUsageError("grpc: initial metadata already sent", code="headers_sent")
        self._initial += md.encode_metadata(metadata)

    def set_trailing_metadata(self, metadata: Any) -> None:
        """Metadata for the trailers (sent with the status). Not a checkpoint."""
        self._trailing += md.encode_metadata(metadata)

    def set_compression(self, encoding: str | bytes | None) -> None:
        """Compress later response messages with ``"gzip"``/``"deflate"``, if the
        client accepts it (``grpc-accept-encoding``); otherwise they go uncompressed."""
        enc = encoding.encode() if isinstance(encoding, str) else encoding
        if enc is not None and enc not in SUPPORTED_ENCODINGS:
            raise GrpcUsageError(f"grpc: unsupported encoding {enc!r}", code="bad_encoding")
        accept = {e.strip() for e in (self._accept_raw or b"").lower().split(b",")
                  if e.strip()}
        self._compression = enc if enc in accept and enc != b"identity" else None

    def abort(self, status: int, message: str = "", *, details: bytes | None = None) -> None:
        """End the call with ``status``: raises :class:`RpcError` (never returns)."""
        if StatusCode(status) == StatusCode.OK:
            raise GrpcUsageError("grpc: abort with OK", code="abort_ok")
        raise RpcError(status, message, details=details)

    def send(self, message: Any) -> None:
        """Send one response message (streaming responses). A checkpoint; blocks while
        the client's window is closed. If cancelled, the message may be partly sent;
        the stream is then reset by the cancellation."""
        self._send_frame(self._frame(message))

    def _send_frame(self, frame: bytes) -> None:
        """One framed message, the head first if it is not sent yet; a transport
        failure becomes ``_SendFailed`` (the caller's outcome is then decided by the
        server, not by the handler's exception)."""
        try:
            if not self._writer.headers_sent:
                self._writer.start(200, self._head())
            self._writer.write(frame)
        except greenrt.Cancelled:
            raise
        except Exception as e:
            raise _SendFailed() from e
        self.messages_sent += 1

    def _frame(self, message: Any) -> bytes:
        data = self._serialize(message)
        lim = self._server.limits.max_send_message_bytes
        if len(data) > lim:
            raise RpcError(StatusCode.RESOURCE_EXHAUSTED,
                           f"response message of {len(data)} bytes exceeds the limit {lim}")
        return encode_message(data, compress=self._compression)

    def _head(self) -> list[tuple[bytes, bytes]]:
        h = [(b"content-type", b"application/grpc")]
        if self._compression:
            h.append((b"grpc-encoding", self._compression))
        h.append((b"grpc-accept-encoding", _ACCEPT))
        return h + self._initial


def _status_fields(status: int, message: str = "", details: bytes | None = None
                   ) -> list[tuple[bytes, bytes]]:
    out = [(b"grpc-status", b"%d" % int(status))]
    if message:
        out.append((b"grpc-message", encode_grpc_message(message)))
    if details is not None:
        out.append((b"grpc-status-details-bin", md.encode_metadata([("x-bin", details)])[0][1]))
    return out


def outcome_status(exc: BaseException | None) -> tuple[StatusCode, str, bytes | None, list]:
    """The status a handler's outcome maps to: ``(status, message, details,
    trailers)`` for ``exc`` (``None`` = returned normally). ``Cancelled`` is not
    mapped here (the caller decides between DEADLINE_EXCEEDED and a reset)."""
    if exc is None:
        return StatusCode.OK, "", None, []
    if isinstance(exc, RpcError):
        tr = md.encode_metadata(exc.trailers) if exc.trailers else []
        return exc.status, exc.message, exc.details, tr
    if isinstance(exc, GrpcError):
        return exc.status, exc.message, None, []
    if _PANICS and isinstance(exc, _PANICS):
        return StatusCode.INTERNAL, f"handler panicked: {type(exc).__name__}", None, []
    return StatusCode.UNKNOWN, f"Exception calling application: {type(exc).__name__}", None, []


class _Requests:
    """The request messages of one call as a blocking iterator (each ``next`` a
    checkpoint); wire faults raise the GrpcProtocolError, which the handler may let
    escape (it becomes the call's status)."""

    def __init__(self, body, decoder: MessageDecoder | None, deserialize,
                 ctx: ServerContext, max_bytes: int = 0, encoding: bytes | None = None):
        self._body = body
        self._dec = decoder  # made on first use (a unary call may never need one)
        self._max = max_bytes
        self._enc = encoding
        self._de = deserialize
        self._done = False
        self.count = 0

    def __iter__(self) -> Iterator:
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        if self._dec is None:
            self._dec = MessageDecoder(max_message_bytes=self._max, encoding=self._enc)
        while True:
            ev = self._dec.next_event()
            if ev is END:
                self._done = True
                raise StopIteration
            if isinstance(ev, bytes):
                self.count += 1
                try:
                    return self._de(ev)
                except Exception as e:
                    raise RpcError(StatusCode.INTERNAL,
                                   f"could not parse the request message: {type(e).__name__}"
                                   ) from None
            data = self._body.read(65536)
            if not data and not self._body.complete:
                # not a half-close: the stream was reset (the HTTP/2 server cancels our
                # task right after); deliver that cancellation rather than an end
                greenrt.checkpoint()
                raise RpcError(StatusCode.CANCELLED, "the client reset the stream")
            self._dec.receive_data(data)  # b"" at the end: EOF

    def exhausted(self) -> bool:
        return self._done

    def single(self):
        """The one request message of a unary-request call: exactly one, then the
        end (else INTERNAL). When the request is complete already and is one
        uncompressed message within the limit, it is taken whole (no decoder, no
        read per chunk); anything else goes through the decoder, which judges it."""
        take = getattr(self._body, "take_complete", None) if self._dec is None else None
        data = take() if take is not None else None
        if data is not None:
            n = len(data) - 5
            if (n >= 0 and data[0] == 0 and int.from_bytes(data[1:5], "big") == n
                    and n <= self._max):
                self._done = True
                self.count = 1
                try:
                    return self._de(data[5:])
                except Exception as e:
                    raise RpcError(StatusCode.INTERNAL,
                                   f"could not parse the request message: {type(e).__name__}"
                                   ) from None
            self._dec = MessageDecoder(max_message_bytes=self._max, encoding=self._enc)
            self._dec.receive_data(data)
            self._dec.receive_data(b"")  # the body is complete: its end
        return _one(self)


class Server:
    """A set of gRPC methods and their serving; see the module docstring.

    ``limits`` the per-call :class:`GrpcLimits`; ``h2_limits`` those of each HTTP/2
    connection; ``interceptors`` a list of ``f(ctx, call)``.
    """

    def __init__(self, *, limits: GrpcLimits = DEFAULT_GRPC_LIMITS,
                 h2_limits: H2Limits = GRPC_H2_LIMITS, interceptors: Iterable[Callable] = ()):
        self.limits = limits
        self.h2_limits = h2_limits
        self.interceptors = list(interceptors)
        self.methods: dict[str, Method] = {}
        #: the protobuf ServiceDescriptors registered with add_servicer (for reflection)
        self.descriptors: list = []
        self.calls = 0

    # -- registration ---------------------------------------------------------------------

    def add_method(self, path: str, kind: str, handler: Callable, request_type: Any,
                   response_type: Any) -> None:
        """Register ``handler`` for ``path`` (``/pkg.Service/Method``). ``request_type``
        is a protobuf message class (or any object with ``FromString``);
        ``response_type`` is used for nothing but documentation (responses are
        serialized with their own ``SerializeToString``)."""
        if kind not in (UNARY_UNARY, UNARY_STREAM, STREAM_UNARY, STREAM_STREAM):
            raise GrpcUsageError(f"grpc: unknown method kind {kind!r}", code="bad_kind")
        if not path.startswith("/") or path.count("/") != 2:
            raise GrpcUsageError(f"grpc: method path {path!r} is not /service/method",
                                 code="bad_path")
        self.methods[path] = Method(kind, handler, request_type.FromString,
                                    lambda m: m.SerializeToString())

    def add_unary(self, path, handler, request_type, response_type=None) -> None:
        self.add_method(path, UNARY_UNARY, handler, request_type, response_type)

    def add_server_streaming(self, path, handler, request_type, response_type=None) -> None:
        self.add_method(path, UNARY_STREAM, handler, request_type, response_type)

    def add_client_streaming(self, path, handler, request_type, response_type=None) -> None:
        self.add_method(path, STREAM_UNARY, handler, request_type, response_type)

    def add_bidi(self, path, handler, request_type, response_type=None) -> None:
        self.add_method(path, STREAM_STREAM, handler, request_type, response_type)

    def add_servicer(self, service_descriptor: Any, servicer: Any) -> list[str]:
        """Register every method of a protobuf ``ServiceDescriptor``
        (``pb2.DESCRIPTOR.services_by_name["Name"]``) that ``servicer`` implements, as
        ``servicer.<MethodName>(request_or_iterator, ctx)``. Returns the paths."""
        from google.protobuf import message_factory

        paths = []
        for m in service_descriptor.methods:
            fn = getattr(servicer, m.name, None)
            if fn is None:
                continue
            kind = {(False, False): UNARY_UNARY, (False, True): UNARY_STREAM,
                    (True, False): STREAM_UNARY, (True, True): STREAM_STREAM}[
                        (m.client_streaming, m.server_streaming)]
            path = f"/{service_descriptor.full_name}/{m.name}"
            self.add_method(path, kind, fn, message_factory.GetMessageClass(m.input_type),
                            message_factory.GetMessageClass(m.output_type))
            paths.append(path)
        if paths and service_descriptor not in self.descriptors:
            self.descriptors.append(service_descriptor)
        return paths

    # -- serving --------------------------------------------------------------------------

    def serve_connection(self, stream, **kw: Any):
        """Serve one HTTP/2 connection with this server's methods until it ends. A
        checkpoint (blocks); see ``protocols.http2.serve_connection``. The keepalive
        ping policy (``limits.min_ping_interval``/``max_ping_strikes``, see
        ``keepalive``) watches the connection: on abuse it sends GOAWAY
        (ENHANCE_YOUR_CALM, ``too_many_pings``) and ends the connection, cancelling
        the calls in flight."""
        kw.setdefault("limits", self.h2_limits)
        if self.limits.min_ping_interval is not None and "ping_hook" not in kw:
            kw["ping_hook"] = _ping_hook(PingPolicy(self.limits.min_ping_interval,
                                                    self.limits.max_ping_strikes))
        return h2_serve_connection(stream, self.handle, **kw)

    def handle(self, req: Request) -> Response | None:
        """The HTTP/2 request handler: one gRPC call. A checkpoint."""
        if req.method != "POST":
            return Response(405, [("allow", "POST")])
        # one pass over the request headers: the fields the server reads, whether
        # any custom metadata came, and the metadata size (every field counts)
        ctype = encb = tv = accept = None
        custom = False
        size = 0
        for k, v in req.headers._items:
            size += len(k) + len(v) + 32
            if k in _OWN:
                if k == b"content-type":
                    if ctype is None:
                        ctype = v
                elif k == b"grpc-encoding":
                    if encb is None:
                        encb = v
                elif k == b"grpc-timeout":
                    if tv is None:
                        tv = v
                elif accept is None:
                    accept = v
            elif not custom and not md.is_reserved(k):
                custom = True
        ctype = b"" if ctype is None else ctype
        if not (ctype == b"application/grpc" or ctype.startswith((b"application/grpc+",
                                                                   b"application/grpc;"))):
            return Response(415, [("content-type", "text/plain")], b"not a gRPC request\n")
        if req.writer is None:
            return _trailers_only(StatusCode.INTERNAL, "server cannot send trailers")
        self.calls += 1
        path = req.path
        method = self.methods.get(path)
        if method is None:
            return _trailers_only(StatusCode.UNIMPLEMENTED, f"Method not found: {path}")
        hub = ll.current_hub()
        if not encb:
            encb = None
        else:
            enc = encb.decode("latin-1")
            encb = encb.strip().lower()
            if encb not in SUPPORTED_ENCODINGS:
                return _trailers_only(StatusCode.UNIMPLEMENTED,
                                      f"unsupported grpc-encoding {enc[:32]}",
                                      extra=[(b"grpc-accept-encoding", _ACCEPT)])
        deadline = None
        if tv is not None:
            try:
                ns = parse_timeout(tv)
            except BadTimeout as e:
                hub.emit("protocol.error", protocol="grpc", code="bad_timeout")
                return _trailers_only(StatusCode.INTERNAL, str(e))
            deadline = greenrt.now() + ns / 1e9
        meta: list = []
        if custom or size > self.limits.max_metadata_bytes:
            try:
                meta = md.decode_metadata(req.headers._items,
                                          max_bytes=self.limits.max_metadata_bytes)
            except GrpcError as e:
                hub.emit("protocol.error", protocol="grpc", code=e.code)
                return _trailers_only(e.status, e.message)
        ctx = ServerContext(self, req, path, meta, deadline, accept)
        ctx._serialize = method.serialize
        requests = _Requests(req.body, None, method.deserialize, ctx,
                             self.limits.max_receive_message_bytes, encb)
        exc: BaseException | None = None
        reply = None
        # a cancel scope (and its timer) only for a call with a deadline
        scope = None if deadline is None else greenrt.cancel_scope(deadline=deadline,
                                                                    name=f"grpc{path}")
        try:
            if scope is None:
                reply = self._run(method, requests, ctx)
            else:
                with scope:
                    reply = self._run(method, requests, ctx)
        except _SendFailed as e:
            raise e.__cause__ from None
        except greenrt.Cancelled as e:
            # the client reset the stream, or the connection ended: no status is sent
            hub.emit("grpc.call", method=path, status=int(StatusCode.CANCELLED),
                     reason=str(getattr(e, "reason", "")))
            raise
        except Exception as e:
            exc = e
        except BaseException as e:
            if _PANICS and isinstance(e, _PANICS):
                exc = e
            else:
                raise
        writer = ctx._writer
        if scope is not None and scope.cancelled_caught:
            status, message, details, trailers = (StatusCode.DEADLINE_EXCEEDED,
                                                  "Deadline Exceeded", None, [])
        elif exc is None:
            if reply is not None:
                if (not writer.headers_sent and not ctx._initial and not ctx._trailing
                        and ctx._compression is None):
                    # the common unary answer: head, message and OK in one write
                    writer.send_whole(_HEAD, reply, _OK)
                    ctx.messages_sent += 1
                    hub.emit("grpc.call", method=path, status=0)
                    return None
                ctx._send_frame(reply)
            hub.emit("grpc.call", method=path, status=0)
            if not writer.headers_sent:
                return Response(200, [(b"content-type", b"application/grpc")] + ctx._initial
                                + [(b"grpc-status", b"0")] + ctx._trailing)
            writer.finish(trailers=[(b"grpc-status", b"0")] + ctx._trailing)
            return None
        else:
            if not isinstance(exc, GrpcError):
                _log.warning("grpc handler %s failed: %r", path, exc)
            status, message, details, trailers = outcome_status(exc)
        if exc is not None and isinstance(exc, GrpcError) and exc.code in (
                "limit_exceeded", "message_too_large", "decompressed_too_large",
                "compressed_without_encoding", "bad_flag", "truncated_message",
                "bad_compression", "unsupported_encoding"):
            hub.emit("protocol.error", protocol="grpc", code=exc.code)
        hub.emit("grpc.call", method=path, status=int(status))
        fields = _status_fields(status, message, details) + ctx._trailing + trailers
        if not writer.headers_sent:
            # trailers-only: one HEADERS frame with END_STREAM
            return Response(200, [(b"content-type", b"application/grpc")] + ctx._initial
                            + fields)
        writer.finish(trailers=fields)
        return None

    def _run(self, method: Method, requests: _Requests, ctx: ServerContext) -> bytes | None:
        """Run the handler (through the interceptors). A unary-response call returns
        its framed response message (sent by ``handle`` with the status); a
        streaming one sends its messages here and returns ``None``."""
        kind = method.kind
        if self.interceptors:
            def call():
                if kind in (UNARY_UNARY, UNARY_STREAM):
                    return method.handler(requests.single(), ctx)
                return method.handler(requests, ctx)

            for f in reversed(self.interceptors):
                call = _bind(f, ctx, call)
            result = call()
        elif kind in (UNARY_UNARY, UNARY_STREAM):
            result = method.handler(requests.single(), ctx)
        else:
            result = method.handler(requests, ctx)
        if kind in (UNARY_UNARY, STREAM_UNARY):
            if result is None:
                raise RpcError(StatusCode.INTERNAL, "handler returned no response")
            return ctx._frame(result)
        if result is not None:
            try:
                for m in result:
                    ctx.send(m)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        return None


def _bind(f: Callable, ctx: ServerContext, nxt: Callable) -> Callable:
    return lambda: f(ctx, nxt)


def _one(requests: _Requests):
    """The single request message of a unary-request call: exactly one, then the end."""
    first = next(requests, None)
    if first is None:
        raise RpcError(StatusCode.INTERNAL, "expected one request message, got none")
    if next(requests, None) is not None:
        raise RpcError(StatusCode.INTERNAL, "expected one request message, got more")
    return first


def _trailers_only(status: int, message: str = "", *, extra: list | None = None) -> Response:
    return Response(200, Headers([(b"content-type", b"application/grpc")]
                                 + _status_fields(status, message) + (extra or [])))


def _ping_hook(policy: PingPolicy) -> Callable:
    """The HTTP/2 server's ``ping_hook`` for ``policy``: each PING the client sends is
    judged (with the connection's count of HEADERS/DATA sent); when the policy trips,
    ``too_many_pings`` becomes the GOAWAY(ENHANCE_YOUR_CALM)'s debug data and the
    connection ends (the calls in flight are cancelled)."""
    def hook(conn) -> bytes | None:
        if not policy.on_ping(conn.hub.now(), conn.sends):
            return None
        conn.hub.emit("protocol.error", protocol="grpc", code="too_many_pings",
                      strikes=policy.strikes)
        return b"too_many_pings"
    return hook
