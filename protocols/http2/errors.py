"""HTTP/2 errors, on the protocol floor's hierarchy (``greenrt.protocols.base``).

A connection error ends every stream of the connection; a stream error ends one.
``error_code`` is the RFC 9113 section 7 code (an int; ``h2.errors.ErrorCodes``
names them).
"""

from __future__ import annotations

from greenrt.protocols import base

__all__ = ["HTTP2Error", "ProtocolError", "LimitError", "ConnectionLost", "ConnectionClosed",
           "StreamReset", "StreamRefused", "UsageError"]


class HTTP2Error(base.Error):
    """Base of the HTTP/2 errors."""

    protocol = "http2"
    #: the RFC 9113 error code involved, if any
    error_code: int | None = None


class ProtocolError(HTTP2Error, base.ProtocolError):
    """The peer broke HTTP/2 (a connection error: the connection is closed; our
    GOAWAY carries ``error_code``)."""


class LimitError(ProtocolError, base.LimitError):
    """The peer exceeded one of our ``H2Limits`` (a flood counter, a size)."""


class ConnectionLost(HTTP2Error, base.ConnectionLost):
    """The transport failed or the peer closed it; streams still open are lost.
    A stream whose request was fully sent may or may not have been processed."""


class ConnectionClosed(HTTP2Error, base.UsageError):
    """The connection was closed locally (``close()``); no new streams."""


class StreamReset(HTTP2Error):
    """The stream was reset: by the peer (``remote=True``, RST_STREAM received) or by
    us (a local reset or cancellation). ``error_code`` says why."""

    code = "stream_reset"
    remote: bool = True
    stream_id: int | None = None


class StreamRefused(StreamReset):
    """The peer did not process the stream and it is safe to retry it, on a new
    connection: a RST_STREAM(REFUSED_STREAM), or a stream above the last-stream-id
    of a GOAWAY received (``goaway=True``). ``retryable`` is always True."""

    code = "stream_refused"
    retryable = True
    goaway: bool = False


class UsageError(HTTP2Error, base.UsageError):
    """The application misused the API (e.g. sent data after ending the stream)."""
