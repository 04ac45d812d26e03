"""gRPC custom metadata <-> HTTP/2 header fields (sans-IO: no greenrt).

* Keys are lower-case ``[0-9a-z_.-]``; a key ending in ``-bin`` carries bytes,
  base64-encoded on the wire (sent unpadded; both padded and unpadded accepted, and
  a comma-separated list of values, as merged headers arrive). Other values are
  printable ASCII (0x20..0x7E) strings.
* Reserved keys are refused when sending (:class:`~.errors.GrpcUsageError`): pseudo
  headers, ``grpc-*`` (the protocol's own), and the HTTP headers gRPC sets itself
  (``content-type``, ``te``, ``user-agent``, ``host``, connection-specific ones).
  When receiving they are not metadata and are left out.
* :func:`decode_metadata` refuses received metadata larger than ``max_bytes``
  (counted as RFC 7541 counts: name + value + 32 per entry) with a
  :class:`~.errors.GrpcLimitError` (RESOURCE_EXHAUSTED), and a ``-bin`` value that
  is not base64 with a :class:`~.errors.GrpcProtocolError` (INTERNAL).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from typing import Any

from .errors import GrpcLimitError, GrpcProtocolError, GrpcUsageError

__all__ = ["decode_metadata", "encode_metadata", "is_reserved", "metadata_size"]

_KEY = re.compile(rb"[0-9a-z_.\-]+\Z")
_VALUE = re.compile(rb"[\x20-\x7e]*\Z")
_B64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}\Z")
_RESERVED = frozenset((b"content-type", b"te", b"user-agent", b"host", b"connection",
                       b"keep-alive", b"transfer-encoding", b"upgrade", b"proxy-connection",
                       b"content-length"))


def is_reserved(key: bytes) -> bool:
    """True for a header that is not application metadata."""
    return key.startswith((b":", b"grpc-")) or key in _RESERVED


def _b(x: Any, what: str) -> bytes:
    if isinstance(x, bytes):
        return x
    if isinstance(x, (bytearray, memoryview)):
        return bytes(x)
    if isinstance(x, str):
        try:
            return x.encode("ascii")
        except UnicodeEncodeError:
            raise GrpcUsageError(f"grpc: metadata {what} {x[:32]!r} is not ASCII",
                                 code="bad_metadata") from None
    raise GrpcUsageError(f"grpc: metadata {what} must be str or bytes, not "
                         f"{type(x).__name__}", code="bad_metadata")


def encode_metadata(items: Iterable[tuple[Any, Any]] | None) -> list[tuple[bytes, bytes]]:
    """``[(key, value), ...]`` -> header fields. Keys are lower-cased; ``-bin`` values
    (bytes or str) are base64-encoded unpadded. Raises GrpcUsageError for a reserved
    or malformed key, or a non-ASCII / non-printable value."""
    out: list[tuple[bytes, bytes]] = []
    if not items:
        return out
    if hasattr(items, "items") and not isinstance(items, (list, tuple)):
        items = items.items()  # a mapping
    for k, v in items:
        key = _b(k, "key").lower()
        if is_reserved(key):
            raise GrpcUsageError(f"grpc: metadata key {key[:32]!r} is reserved",
                                 code="reserved_metadata")
        if not _KEY.match(key):
            raise GrpcUsageError(f"grpc: bad metadata key {key[:32]!r}", code="bad_metadata")
        if key.endswith(b"-bin"):
            raw = v.encode("utf-8") if isinstance(v, str) else _b(v, "value")
            out.append((key, base64.b64encode(raw).rstrip(b"=")))
        else:
            val = _b(v, "value")
            if not _VALUE.match(val):
                raise GrpcUsageError(f"grpc: metadata value for {key[:32]!r} is not printable "
                                     "ASCII", code="bad_metadata")
            out.append((key, val))
    return out


def b64decode_lenient(value: bytes) -> bytes:
    """Decode one ``-bin`` value: padded or unpadded standard base64, or a
    comma-separated list of such values (concatenated). Raises GrpcProtocolError."""
    parts = value.split(b",") if b"," in value else [value]
    out = []
    for p in parts:
        p = p.strip()
        if not _B64.match(p) or len(p.rstrip(b"=")) % 4 == 1:
            raise GrpcProtocolError("grpc: -bin metadata value is not base64",
                                    code="bad_binary_metadata")
        p = p.rstrip(b"=")
        try:
            out.append(base64.b64decode(p + b"=" * (-len(p) % 4), validate=True))
        except binascii.Error:
            raise GrpcProtocolError("grpc: -bin metadata value is not base64",
                                    code="bad_binary_metadata") from None
    return b"".join(out)


def metadata_size(fields: Iterable[tuple[bytes, bytes]]) -> int:
    """RFC 7541 size of a header list: name + value + 32 per entry."""
    return sum(len(k) + len(v) + 32 for k, v in fields)


def decode_metadata(fields: Iterable[tuple[bytes, bytes]], *,
                    max_bytes: int = 8 * 1024) -> list[tuple[str, str | bytes]]:
    """Header fields -> metadata ``[(key, value)]``: reserved headers left out, ``-bin``
    values decoded to bytes, others to str. Checks the size of the whole list first."""
    fields = list(fields)
    size = metadata_size(fields)
    if size > max_bytes:
        raise GrpcLimitError(limit="max_metadata_bytes", value=size, maximum=max_bytes,
                             code="metadata_too_large")
    out: list[tuple[str, str | bytes]] = []
    for k, v in fields:
        if is_reserved(k):
            continue
        key = k.decode("latin-1")
        if k.endswith(b"-bin"):
            out.append((key, b64decode_lenient(v)))
        else:
            out.append((key, v.decode("latin-1")))
    return out
