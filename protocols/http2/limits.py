"""Limits of the HTTP/2 server (defaults from the threat model)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["H2Limits", "DEFAULT_H2_LIMITS"]


@dataclass(frozen=True)
class H2Limits:
    """Per-connection limits. Flood counters allow ``*_per_window`` events within
    ``flood_window`` seconds; more ends the connection with GOAWAY(ENHANCE_YOUR_CALM)."""

    max_frame_size: int = 16384
    max_header_list_size: int = 65536
    max_concurrent_streams: int = 100
    initial_window_size: int = 65535
    max_body_bytes: int = 16 * 1024 * 1024
    flood_window: float = 10.0
    pings_per_window: int = 100
    settings_per_window: int = 100
    resets_per_window: int = 200
    empty_frames_per_window: int = 200
    priority_per_window: int = 1000
    drain_timeout: float = 10.0
    send_high_water: int = 1024 * 1024


DEFAULT_H2_LIMITS = H2Limits()
