"""Limits of gRPC calls (defaults those of grpc-core)."""

from __future__ import annotations

from dataclasses import dataclass

from greenrt.protocols.base.limits import Limits

__all__ = ["DEFAULT_GRPC_LIMITS", "GrpcLimits"]


@dataclass(frozen=True)
class GrpcLimits(Limits):
    """Per-call limits.

    * ``max_receive_message_bytes`` (4 MiB): one received message, checked from the
      5-byte prefix before any byte is buffered, and again on the *decompressed*
      size while decompressing;
    * ``max_send_message_bytes`` (4 MiB): a larger local message is a usage error;
    * ``max_metadata_bytes`` (8 KiB): received metadata, counted as RFC 7541 counts
      header lists (name + value + 32 per entry);
    * ``min_ping_interval`` (300 s, grpc-core's ``GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS``)
      and ``max_ping_strikes`` (2): the server's keepalive ping policy.
    """

    positive_ints = ("max_receive_message_bytes", "max_send_message_bytes",
                     "max_metadata_bytes", "max_ping_strikes")
    timeouts = ("min_ping_interval",)
    max_receive_message_bytes: int = 4 * 1024 * 1024
    max_send_message_bytes: int = 4 * 1024 * 1024
    max_metadata_bytes: int = 8 * 1024
    min_ping_interval: float | None = 300.0
    max_ping_strikes: int = 2


DEFAULT_GRPC_LIMITS = GrpcLimits()
