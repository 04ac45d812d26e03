"""HTTP limits and timeouts: one immutable object shared by servers and clients.

The defaults are those of the threat model (``docs/security.md``): a head of at most
64 KiB with at most 128 fields, a request line of at most 8192 bytes, a body of at
most 16 MiB, at most 1000 requests per connection. Each limit is enforced by the
protocol layer *regardless of how the bytes are segmented* by the network: the same
byte stream yields the same verdict whether it arrives in one read or one byte at a
time.

Timeouts are budgets in seconds of hub time (virtual under the lab):

* ``header_timeout`` — from the first byte of a request head (or from accepting the
  connection, for the first request) until the head is complete: the slowloris
  defence. Expiry answers 408 and closes. On a client: from the request having been
  sent until the final response head has arrived (interim 1xx responses included),
  then ``RequestTimeout`` and the connection is closed.
* ``body_idle_timeout`` — the longest wait for the next body byte while a body is
  being read (408, close); on a client, the same for response bodies
  (``RequestTimeout``, connection closed).
* ``keepalive_timeout`` — the longest idle time between two requests on one
  connection (close, no answer).
* ``request_timeout`` — the budget of one handler call; expiry cancels the handler
  (kind ``deadline``) and answers 503, or closes if the response head already left.
* ``send_timeout`` — the longest a single send may stall because the peer does not
  read (close).
* ``drain_timeout`` — how long a graceful shutdown lets in-flight requests finish
  before cancelling them with reason ``shutdown``.

``None`` disables a timeout. Hazard: disabling ``header_timeout`` re-opens slowloris.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..base import limits as base_limits

__all__ = ["Limits", "DEFAULT_LIMITS"]


@dataclass(frozen=True)
class Limits(base_limits.Limits):
    """Limits and timeouts for HTTP servers and clients; see the module docstring.

    Three groups: what the server's accept path enforces for every connection
    whatever its version (``max_connections``, ``max_connections_per_ip``,
    ``drain_timeout``, and ``header_timeout`` which also bounds the TLS handshake and
    the HTTP/2 preface sniff); HTTP/1.1 message framing (heads, lines, chunks,
    bodies); and the per-exchange timeouts. HTTP/2's frame-level limits are
    ``protocols.http2.H2Limits``."""

    positive_ints = ("max_head_bytes", "max_headers", "max_request_line", "max_body_bytes",
                     "max_requests_per_connection", "max_chunk_line", "max_connections_per_ip",
                     "max_connections", "max_informational_responses")
    timeouts = ("header_timeout", "body_idle_timeout", "keepalive_timeout", "request_timeout",
                "send_timeout")

    # -- connections (the accept path, every HTTP version) --
    #: open connections per client IP address (server); the next one gets 503 and is closed
    max_connections_per_ip: int = 256
    #: open connections in all (server)
    max_connections: int = 4096
    drain_timeout: float = 10.0

    # -- HTTP/1.1 messages --
    max_head_bytes: int = 64 * 1024
    max_headers: int = 128
    max_request_line: int = 8192
    max_body_bytes: int = 16 * 1024 * 1024
    max_requests_per_connection: int = 1000
    #: longest chunk-size line or trailer section h11 may buffer while incomplete
    max_chunk_line: int = 16 * 1024
    #: reject bare LF line endings and obs-fold continuation lines (RFC 9112 §2.2, §5.2)
    strict: bool = True
    #: interim (1xx) responses a client accepts before the final one (an endless
    #: ``102 Processing`` stream ends the request with a ``ProtocolError``)
    max_informational_responses: int = 16

    # -- timeouts of an exchange (seconds; None disables) --
    header_timeout: float | None = 10.0
    body_idle_timeout: float | None = 30.0
    keepalive_timeout: float | None = 5.0
    request_timeout: float | None = 60.0
    send_timeout: float | None = 30.0

    def replace(self, **changes) -> Limits:
        """A copy with some fields changed."""
        return replace(self, **changes)


DEFAULT_LIMITS = Limits()
