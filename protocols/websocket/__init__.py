"""greenrt.protocols.websocket: RFC 6455 WebSockets (client and server) on wsproto.

Blocking-style, one object per connection::

    from greenrt.protocols import websocket

    ws = websocket.connect("wss://example.org/chat", subprotocols=["chat.v1"])
    ws.send_text("hello")
    reply = ws.recv()         # a whole message: str (text) or bytes (binary)
    rtt = ws.ping()
    ws.close()

    def handler(ws):          # server: one task per connection
        for message in ws:    # ends on a normal close
            ws.send(message)
    net.serve_tcp(websocket.serve_handler(handler), "127.0.0.1", 8765)

    ws = websocket.connect("wss://example.org/chat", http2=True)   # RFC 8441

What wsproto leaves out is added here: limits checked on frame headers before any
payload is buffered, a cap on the *inflated* size of compressed messages, a
fragment cap, a ping rate cap, a bounded outbound queue and the close timeout
(:class:`WebSocketLimits`). See ``docs/websocket.md``.
"""

from ..base.errors import require_extra

require_extra("greenrt.protocols.websocket", "websocket", ("wsproto", "wsproto"), ("h11", "h11"))

from ._connection import WebSocket
from ._deflate import BoundedPerMessageDeflate
from ._errors import (
    ConnectionClosed,
    HandshakeError,
    WebSocketError,
    WebSocketLimitError,
    WebSocketProtocolError,
    WebSocketUsageError,
)
from ._handshake import (
    ServerHandshake,
    accept,
    accept_request,
    accept_upgrade,
    accept_wsgi,
    connect,
    handshake_refused,
    http_handler,
    serve_handler,
    server_handshake,
    server_handshake_h2,
)
from ._limits import WebSocketLimits

__all__ = [
    "BoundedPerMessageDeflate", "ConnectionClosed", "HandshakeError", "ServerHandshake",
    "WebSocket", "WebSocketError", "WebSocketLimitError", "WebSocketLimits",
    "WebSocketProtocolError", "WebSocketUsageError", "accept", "accept_request",
    "accept_upgrade", "accept_wsgi", "connect", "handshake_refused", "http_handler",
    "serve_handler", "server_handshake", "server_handshake_h2",
]
