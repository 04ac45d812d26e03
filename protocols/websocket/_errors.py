"""WebSocket errors, on the protocol floor's hierarchy.

Every peer fault carries the RFC 6455 close ``close_code`` we sent (or would send)
for it, so a caller can tell a UTF-8 fault (1007) from a size limit (1009).
"""

from __future__ import annotations

from greenrt.protocols import base

__all__ = [
    "ConnectionClosed", "HandshakeError", "WebSocketError", "WebSocketLimitError",
    "WebSocketProtocolError", "WebSocketUsageError",
]


class WebSocketError(base.Error):
    """Base of every WebSocket error."""

    protocol = "websocket"


class WebSocketProtocolError(WebSocketError, base.ProtocolError):
    """The peer broke RFC 6455 (bad frame, bad UTF-8, bad close code...). We sent a
    Close with ``close_code`` and closed the connection."""

    code = "protocol_error"
    close_code: int = 1002


class WebSocketLimitError(WebSocketProtocolError, base.LimitError):
    """The peer exceeded a limit of :class:`WebSocketLimits`; we closed with
    ``close_code`` (1009 for sizes, 1008 for rates)."""

    code = "limit_exceeded"
    close_code = 1009


class HandshakeError(WebSocketProtocolError):
    """The opening handshake failed (bad request or response, refused Origin, no
    acceptable subprotocol). ``status`` is the HTTP status involved, if any."""

    code = "handshake_failed"
    status: int | None = None


class ConnectionClosed(WebSocketError, base.ConnectionLost):
    """The WebSocket is closed. ``code``/``reason`` are the peer's close code and
    reason (1006 when the TCP connection ended without a Close frame); ``ok`` is
    true for a normal closure (1000, 1001, or no status 1005)."""

    code = "closed"
    close_code: int = 1006
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.close_code in (1000, 1001, 1005)


class WebSocketUsageError(WebSocketError, base.UsageError):
    """Local misuse: sending after close, two tasks receiving at once..."""

    code = "usage_error"
