"""Limits of an HTTP/2 connection, server or client (defaults from the threat model)."""

from __future__ import annotations

from dataclasses import dataclass

from greenrt.protocols.base import Limits

__all__ = ["H2Limits", "DEFAULT_H2_LIMITS"]


@dataclass(frozen=True)
class H2Limits(Limits):
    """Per-connection limits, the same on both ends.

    Flood counters allow ``*_per_window`` events within ``flood_window`` seconds;
    one more ends the connection with GOAWAY(ENHANCE_YOUR_CALM).

    * ``max_frame_size``: a frame header announcing more is rejected after its 9
      bytes (FRAME_SIZE_ERROR), never buffered.
    * ``max_header_list_size``: decoded header list (32 bytes per entry, RFC 7541);
      a header block's fragments (HEADERS + CONTINUATION) may total at most 4× this.
    * ``continuation_timeout``: an unfinished header block must be completed within
      this many seconds (a CONTINUATION trickle is cut off).
    * ``max_concurrent_streams``: advertised; a peer's stream beyond it is refused
      with RST_STREAM(REFUSED_STREAM), counted in ``refused_per_window``.
    * ``send_high_water``: bytes queued towards a peer that does not read; past it
      the connection stops reading from that peer until the queue drains.
    * ``send_timeout``: one write to the transport may block this long, then the
      connection is dead (a peer that stopped reading altogether).
    * ``window_stall_timeout``: a stream waiting this long for the peer to open its
      flow-control window is reset (zero-window stall, CVE-2019-9517).
    * ``drain_timeout``: the budget of a graceful shutdown (GOAWAY, then in-flight
      streams may finish within it, then they are cancelled).
    """

    positive_ints = ("max_frame_size", "max_header_list_size", "max_concurrent_streams",
                     "initial_window_size", "max_body_bytes", "pings_per_window",
                     "settings_per_window", "resets_per_window", "refused_per_window",
                     "empty_frames_per_window", "priority_per_window",
                     "window_updates_per_window", "send_high_water")
    timeouts = ("flood_window", "continuation_timeout", "drain_timeout", "send_timeout",
                "window_stall_timeout")

    max_frame_size: int = 16384
    max_header_list_size: int = 65536
    max_concurrent_streams: int = 100
    initial_window_size: int = 65535
    max_body_bytes: int = 16 * 1024 * 1024
    flood_window: float = 10.0  # not None: a window of forever would never forget
    pings_per_window: int = 100
    settings_per_window: int = 100
    resets_per_window: int = 200
    refused_per_window: int = 200
    empty_frames_per_window: int = 200
    priority_per_window: int = 1000
    window_updates_per_window: int = 100_000
    continuation_timeout: float = 5.0
    drain_timeout: float = 10.0
    send_high_water: int = 1024 * 1024
    send_timeout: float = 30.0
    window_stall_timeout: float = 30.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 16384 <= self.max_frame_size <= 16777215:
            raise ValueError("H2Limits.max_frame_size must be in [16384, 2**24-1] (RFC 9113)")
        if self.initial_window_size > 2**31 - 1:
            raise ValueError("H2Limits.initial_window_size must be <= 2**31-1")
        if self.flood_window is None:
            raise ValueError("H2Limits.flood_window cannot be None")


DEFAULT_H2_LIMITS = H2Limits()
