"""HTTP/2 on h2: ``serve_connection`` serves one connection (see ``server``);
``connect``/``ClientConnection`` are the client (see ``client``)."""

from .client import CANCEL, ClientConnection, ClientStream, connect
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
from .server import PREFACE, serve_connection

__all__ = [
    "CANCEL", "ClientConnection", "ClientStream", "ConnectionClosed", "ConnectionLost",
    "DEFAULT_H2_LIMITS", "H2Limits", "HTTP2Error", "LimitError", "PREFACE", "ProtocolError",
    "StreamRefused", "StreamReset", "UsageError", "connect", "serve_connection",
]
