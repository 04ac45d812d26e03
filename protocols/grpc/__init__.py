"""gRPC over greenrt's HTTP/2 (see docs/grpc.md).

Sans-IO pieces: ``framing`` (length-prefixed messages), ``timeout`` (``grpc-timeout``),
``status`` (codes and mappings), ``metadata``. The server: ``server``.
"""

from .errors import GrpcError, GrpcLimitError, GrpcProtocolError, GrpcUsageError, RpcError
from .limits import DEFAULT_GRPC_LIMITS, GrpcLimits
from .status import StatusCode

__all__ = [
    "DEFAULT_GRPC_LIMITS", "GrpcError", "GrpcLimitError", "GrpcLimits", "GrpcProtocolError",
    "GrpcUsageError", "RpcError", "StatusCode",
]
