"""gRPC status codes and the mappings into them (sans-IO: no greenrt).

* :class:`StatusCode`: the 17 codes of ``doc/statuscodes.md``.
* :func:`status_from_http`: a response without ``grpc-status`` gets its status from
  the HTTP status (``doc/http-grpc-status-mapping.md``).
* :func:`status_from_rst`: an RST_STREAM error code seen by a client
  (``doc/PROTOCOL-HTTP2.md``, "Errors").
* :func:`parse_status`: the ``grpc-status`` header value, strictly (decimal 0..16;
  anything else is ``None``, which the caller maps to UNKNOWN).
* :func:`encode_message` / :func:`decode_message`: ``grpc-message`` is
  percent-encoded UTF-8. Decoding never fails: a bad escape is passed through
  as the raw text, as the spec asks ("MUST NOT error").
"""

from __future__ import annotations

import enum

__all__ = [
    "StatusCode", "decode_message", "encode_message", "parse_status", "status_from_http",
    "status_from_rst",
]


class StatusCode(enum.IntEnum):
    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


#: doc/http-grpc-status-mapping.md; every other status is UNKNOWN
HTTP_TO_GRPC: dict[int, StatusCode] = {
    400: StatusCode.INTERNAL,
    401: StatusCode.UNAUTHENTICATED,
    403: StatusCode.PERMISSION_DENIED,
    404: StatusCode.UNIMPLEMENTED,
    429: StatusCode.UNAVAILABLE,
    502: StatusCode.UNAVAILABLE,
    503: StatusCode.UNAVAILABLE,
    504: StatusCode.UNAVAILABLE,
}

#: RST_STREAM error code (RFC 9113 7) -> status, doc/PROTOCOL-HTTP2.md; unknown -> INTERNAL
RST_TO_GRPC: dict[int, StatusCode] = {
    0x0: StatusCode.INTERNAL,            # NO_ERROR before a status: the call did not finish
    0x1: StatusCode.INTERNAL,            # PROTOCOL_ERROR
    0x2: StatusCode.INTERNAL,            # INTERNAL_ERROR
    0x3: StatusCode.INTERNAL,            # FLOW_CONTROL_ERROR
    0x4: StatusCode.INTERNAL,            # SETTINGS_TIMEOUT
    0x5: StatusCode.INTERNAL,            # STREAM_CLOSED
    0x6: StatusCode.INTERNAL,            # FRAME_SIZE_ERROR
    0x7: StatusCode.UNAVAILABLE,         # REFUSED_STREAM: not processed, safe to retry
    0x8: StatusCode.CANCELLED,           # CANCEL
    0x9: StatusCode.INTERNAL,            # COMPRESSION_ERROR
    0xA: StatusCode.INTERNAL,            # CONNECT_ERROR
    0xB: StatusCode.RESOURCE_EXHAUSTED,  # ENHANCE_YOUR_CALM
    0xC: StatusCode.PERMISSION_DENIED,   # INADEQUATE_SECURITY
    0xD: StatusCode.INTERNAL,            # HTTP_1_1_REQUIRED
}


def status_from_http(http_status: int) -> StatusCode:
    """The gRPC status for an HTTP response that carries no ``grpc-status``. A 200
    without one is UNKNOWN too (the server broke the protocol)."""
    return HTTP_TO_GRPC.get(http_status, StatusCode.UNKNOWN)


def status_from_rst(error_code: int) -> StatusCode:
    """The gRPC status for a stream the peer reset with ``error_code``."""
    return RST_TO_GRPC.get(error_code, StatusCode.INTERNAL)


def parse_status(value: bytes | str | None) -> StatusCode | None:
    """``grpc-status`` -> :class:`StatusCode`, or ``None`` when missing or invalid
    (not 1-2 ASCII digits, or out of range). Total."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.encode("latin-1", "replace")
    if not 1 <= len(value) <= 2 or not all(0x30 <= b <= 0x39 for b in value):
        return None
    n = int(value)
    if n > 16:
        return None
    return StatusCode(n)


# grpc-message: unreserved printable ASCII stays, everything else is %XX (UTF-8 bytes)
_PLAIN = frozenset(range(0x20, 0x7F)) - {ord("%")}


def encode_message(message: str) -> bytes:
    """Percent-encode ``message`` for ``grpc-message`` (UTF-8; every byte outside
    0x20..0x7E, and ``%``, becomes ``%XX``)."""
    raw = message.encode("utf-8", "surrogatepass")
    if all(b in _PLAIN for b in raw):
        return raw
    return b"".join(bytes((b,)) if b in _PLAIN else b"%%%02X" % b for b in raw)


def decode_message(value: bytes | str) -> str:
    """Decode a ``grpc-message`` value. Total: a ``%`` not followed by two hex digits
    is kept literally, and bytes that are not UTF-8 are replaced (U+FFFD)."""
    if isinstance(value, str):
        value = value.encode("latin-1", "replace")
    if b"%" not in value:
        return value.decode("utf-8", "replace")
    out = bytearray()
    i, n = 0, len(value)
    hexd = b"0123456789abcdefABCDEF"
    while i < n:
        b = value[i]
        if b == 0x25 and i + 2 < n and value[i + 1] in hexd and value[i + 2] in hexd:
            out.append(int(value[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(b)
            i += 1
    return out.decode("utf-8", "replace")
