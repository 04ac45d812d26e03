"""gRPC over greenrt's HTTP/2 (see docs/grpc.md).

Sans-IO pieces: ``framing`` (length-prefixed messages), ``timeout`` (``grpc-timeout``),
``status`` (codes and mappings), ``metadata``. The server: ``server``.
"""

from ..base.errors import require_extra

require_extra("greenrt.protocols.grpc", "grpc", ("h2", "h2"), ("google.protobuf", "protobuf"), ("h11", "h11"))

from .errors import GrpcError, GrpcLimitError, GrpcProtocolError, GrpcUsageError, RpcError
from .limits import DEFAULT_GRPC_LIMITS, GrpcLimits
from .status import StatusCode

__all__ = [
    "DEFAULT_GRPC_LIMITS", "GrpcError", "GrpcLimitError", "GrpcLimits", "GrpcProtocolError",
    "GrpcUsageError", "RpcError", "StatusCode",
]
