"""gRPC errors, on the protocol floor's hierarchy.

Every error carries ``status`` (a :class:`~.status.StatusCode`): the status a peer
fault produces on the call it broke (a peer fault on the wire is INTERNAL, a limit is
RESOURCE_EXHAUSTED), so the server can answer with it and the client can raise it.

:class:`RpcError` is the outcome of a call that ended with a status other than OK;
a handler raises it to end its call with that status.
"""

from __future__ import annotations

from typing import Any

from greenrt.protocols import base

from .status import StatusCode

__all__ = ["GrpcError", "GrpcLimitError", "GrpcProtocolError", "GrpcUsageError", "RpcError"]


class GrpcError(base.Error):
    """Base of every gRPC error."""

    protocol = "grpc"
    status: StatusCode = StatusCode.UNKNOWN


class GrpcProtocolError(GrpcError, base.ProtocolError):
    """The peer broke the gRPC wire protocol (bad prefix, compressed flag without
    ``grpc-encoding``, bad ``grpc-timeout``, truncated message...)."""

    code = "protocol_error"
    status = StatusCode.INTERNAL


class GrpcLimitError(GrpcProtocolError, base.LimitError):
    """The peer exceeded a limit of :class:`~.limits.GrpcLimits` (message size before
    or after decompression, metadata size)."""

    code = "limit_exceeded"
    status = StatusCode.RESOURCE_EXHAUSTED


class GrpcUsageError(GrpcError, base.UsageError):
    """Local misuse (a reserved metadata key, a non-ASCII value, sending after close)."""

    code = "usage_error"


class RpcError(GrpcError):
    """A call ended with a non-OK status.

    ``RpcError(StatusCode.NOT_FOUND, "no such key", details=b"...", trailers=[...])``:
    ``status`` the code, ``message`` the text sent as ``grpc-message``, ``details``
    the raw ``grpc-status-details-bin`` bytes (a serialized ``google.rpc.Status``) or
    ``None``, ``trailers`` the trailing metadata (a list of ``(key, value)``) and
    ``initial_metadata`` the response headers' metadata (client side). ``retryable``
    is true when the server never processed the call (GOAWAY past the stream,
    REFUSED_STREAM), so a retry cannot duplicate it.
    """

    code = "rpc_error"

    def __init__(self, status: int = StatusCode.UNKNOWN, message: str = "", *,
                 details: bytes | None = None, trailers: Any = (),
                 initial_metadata: Any = (), retryable: bool = False) -> None:
        self.status = StatusCode(status)
        self.details = details
        self.trailers = list(trailers)
        self.initial_metadata = list(initial_metadata)
        self.retryable = retryable
        GrpcError.__init__(self, message or self.status.name)
        # the text as sent (the default message above is for humans only)
        self.message = message

    def __str__(self) -> str:
        return f"{self.status.name}: {self.message}" if self.message else self.status.name

    def __repr__(self) -> str:
        return f"RpcError({self.status.name}, {self.message!r})"
