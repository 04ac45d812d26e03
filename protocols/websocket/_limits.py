"""WebSocket limits (the threat model's defaults)."""

from __future__ import annotations

import dataclasses

from greenrt.protocols.base import Limits

__all__ = ["WebSocketLimits"]


@dataclasses.dataclass(frozen=True)
class WebSocketLimits(Limits):
    """Bounds on what a peer can make us hold or do.

    * ``max_frame_bytes`` — one frame's payload length, checked on the header,
      before any of the payload is buffered (close 1009).
    * ``max_message_bytes`` — one message's size: the sum of its frames on the wire,
      and for a compressed message the *inflated* size, enforced while inflating
      (zlib never produces more than the room left; close 1009).
    * ``max_fragments`` — frames per message (close 1009).
    * ``max_pings_per_second`` / ``ping_burst`` — a token bucket on inbound pings
      (each is answered with a pong); an exhausted bucket closes 1008.
    * ``max_handshake_bytes`` — the HTTP head of the opening handshake.
    * ``max_outbound_bytes`` — bytes queued behind a write in progress; past it a
      sender waits (``outbound_policy="wait"``) or the connection closes 1013
      (``"close"``).
    * ``close_timeout`` — how long ``close()`` waits for the peer's Close before it
      closes TCP anyway; ``handshake_timeout`` bounds the opening handshake.
    """

    positive_ints = ("max_frame_bytes", "max_message_bytes", "max_fragments",
                     "max_pings_per_second", "ping_burst", "max_handshake_bytes",
                     "max_outbound_bytes")
    timeouts = ("close_timeout", "handshake_timeout")

    max_frame_bytes: int = 16 * 1024 * 1024
    max_message_bytes: int = 64 * 1024 * 1024
    max_fragments: int = 4096
    max_pings_per_second: int = 20
    ping_burst: int = 100
    max_handshake_bytes: int = 16 * 1024
    max_outbound_bytes: int = 4 * 1024 * 1024
    outbound_policy: str = "wait"
    close_timeout: float | None = 5.0
    handshake_timeout: float | None = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.outbound_policy not in ("wait", "close"):
            raise ValueError(f"WebSocketLimits.outbound_policy must be 'wait' or 'close', "
                             f"not {self.outbound_policy!r}")
