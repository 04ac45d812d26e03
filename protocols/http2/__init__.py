"""HTTP/2 on h2: ``serve_connection`` serves one connection (see ``server``);
``connect``/``ClientConnection`` are the low-level client (see ``client``),
``Client``/``request`` the high-level one (ALPN, one connection per origin; see
``session``); ``extended_connect``/``ExtendedConnect``/``Tunnel``/``ClientTunnel``
are RFC 8441 (a WebSocket over one stream; see ``_connect``)."""

from ..base.errors import require_extra

require_extra("greenrt.protocols.http2", "http", ("h2", "h2"), ("h11", "h11"))

from ._connect import ClientTunnel, ExtendedConnect, Tunnel, extended_connect
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
from .session import Client, ClientResponse, request

__all__ = [
    "CANCEL", "Client", "ClientConnection", "ClientResponse", "ClientStream", "ConnectionClosed", "ConnectionLost",
    "DEFAULT_H2_LIMITS", "H2Limits", "HTTP2Error", "LimitError", "PREFACE", "ProtocolError",
    "StreamRefused", "StreamReset", "UsageError", "connect", "request", "serve_connection",
    "ClientTunnel", "ExtendedConnect", "Tunnel", "extended_connect",
]
