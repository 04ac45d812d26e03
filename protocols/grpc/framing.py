"""Length-prefixed messages: the gRPC message framing (sans-IO: no greenrt).

``Length-Prefixed-Message → Compressed-Flag Message-Length Message``: one flag byte
(0 or 1), a 4-byte big-endian length, the bytes (doc/PROTOCOL-HTTP2.md).

:class:`MessageDecoder` follows the floor's sans-IO convention
(``protocols/base/sansio.py``)::

    dec = MessageDecoder(max_message_bytes=4 << 20, encoding=b"gzip")
    dec.receive_data(chunk)          # b"" = the stream ended (END_STREAM)
    while (msg := dec.next_event()) is not NEED_DATA:
        if msg is END: break
        handle(msg)                  # bytes, decompressed

Limits and faults, each a typed error carrying its gRPC status:

* a length over ``max_message_bytes`` is refused from the prefix, before a byte of
  the message is buffered (:class:`~.errors.GrpcLimitError`, RESOURCE_EXHAUSTED);
* the compressed flag without a ``grpc-encoding`` (or with ``identity``) is
  INTERNAL; a flag byte other than 0/1 is INTERNAL;
* gzip/deflate are decompressed incrementally as the bytes arrive, output capped
  at ``max_message_bytes + 1``, so a bomb is refused after at most the limit of
  output (RESOURCE_EXHAUSTED); corrupt or trailing compressed data is INTERNAL;
* the stream ending inside a message is INTERNAL.

Errors are sticky. ``buffered`` counts received bytes not yet returned.
"""

from __future__ import annotations

import zlib

from ..base.sansio import NEED_DATA, StickyError
from .errors import GrpcLimitError, GrpcProtocolError

__all__ = ["END", "MessageDecoder", "encode_message", "SUPPORTED_ENCODINGS"]

#: encodings the decoder can decompress (``identity`` means none)
SUPPORTED_ENCODINGS = (b"identity", b"gzip", b"deflate")


class _End:
    def __repr__(self) -> str:
        return "END"


#: returned by ``next_event`` once, after the last message, when the stream ended
END = _End()


def encode_message(data: bytes, *, compress: bytes | None = None) -> bytes:
    """One framed message. ``compress=b"gzip"`` (or ``b"deflate"``) sets the flag
    and compresses; the caller must send the matching ``grpc-encoding``."""
    if compress in (None, b"identity"):
        return b"\x00" + len(data).to_bytes(4, "big") + data
    if compress == b"gzip":
        co = zlib.compressobj(wbits=31)
    elif compress == b"deflate":
        co = zlib.compressobj(wbits=15)
    else:
        raise ValueError(f"unsupported encoding {compress!r}")
    body = co.compress(data) + co.flush()
    return b"\x01" + len(body).to_bytes(4, "big") + body


class MessageDecoder:
    """Decodes one direction of one call; see the module docstring. ``encoding`` is
    the peer's ``grpc-encoding`` header value (``None`` if absent)."""

    __slots__ = ("max_message_bytes", "encoding", "_buf", "_need", "_compressed", "_body",
                 "_inflate", "_out", "_eof", "_error", "_done", "messages")

    def __init__(self, *, max_message_bytes: int = 4 * 1024 * 1024,
                 encoding: bytes | None = None) -> None:
        if max_message_bytes < 0:
            raise ValueError("max_message_bytes must be >= 0")
        self.max_message_bytes = max_message_bytes
        self.encoding = encoding.strip().lower() if encoding else None
        self._buf = bytearray()     # bytes not yet parsed (at most a prefix + a chunk)
        self._need = -1             # -1: reading a prefix; else message bytes still due
        self._compressed = False
        self._body = bytearray()    # the message so far (uncompressed bytes)
        self._inflate = None
        self._out = 0
        self._eof = False
        self._error = StickyError()
        self._done = False
        #: messages decoded so far
        self.messages = 0

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned in a message."""
        return len(self._buf) + len(self._body)

    def receive_data(self, data: bytes) -> None:
        """Append bytes; ``b""`` means the stream ended. Never raises for bad input
        (errors surface from :meth:`next_event`)."""
        if self._eof and data:
            self._error.set(GrpcProtocolError("data after the end of the stream",
                                              code="data_after_end"))
            return
        if not data:
            self._eof = True
            return
        self._buf += data

    def next_event(self):
        """The next message (``bytes``), :data:`END` after the last one, or
        ``NEED_DATA``. Raises :class:`GrpcProtocolError` / :class:`GrpcLimitError`."""
        self._error.check()
        try:
            return self._next()
        except (GrpcProtocolError, zlib.error) as e:
            if isinstance(e, zlib.error):
                e = GrpcProtocolError(f"grpc: corrupt compressed message: {e}",
                                      code="bad_compression")
            self._error.set(e)
            self._buf.clear()
            self._body.clear()
            raise e from None

    def _next(self):
        while True:
            if self._need < 0:
                if len(self._buf) < 5:
                    if self._eof:
                        if self._buf:
                            raise GrpcProtocolError("grpc: stream ended inside a message "
                                                    "prefix", code="truncated_message")
                        if self._done:
                            return NEED_DATA
                        self._done = True
                        return END
                    return NEED_DATA
                flag = self._buf[0]
                length = int.from_bytes(self._buf[1:5], "big")
                del self._buf[:5]
                if flag > 1:
                    raise GrpcProtocolError(f"grpc: bad compressed flag {flag}",
                                            code="bad_flag")
                if length > self.max_message_bytes:
                    raise GrpcLimitError(limit="max_receive_message_bytes", value=length,
                                         maximum=self.max_message_bytes, code="message_too_large")
                if flag:
                    enc = self.encoding
                    if enc is None or enc == b"identity":
                        raise GrpcProtocolError("grpc: compressed flag set without "
                                                "grpc-encoding", code="compressed_without_encoding")
                    if enc == b"gzip":
                        self._inflate = zlib.decompressobj(wbits=31)
                    elif enc == b"deflate":
                        self._inflate = zlib.decompressobj(wbits=15)
                    else:
                        raise GrpcProtocolError(f"grpc: unsupported grpc-encoding {enc[:32]!r}",
                                                code="unsupported_encoding")
                    self._out = 0
                self._compressed = bool(flag)
                self._need = length
            take = min(self._need, len(self._buf))
            if take:
                chunk = bytes(self._buf[:take])
                del self._buf[:take]
                self._need -= take
                if self._compressed:
                    self._inflate_chunk(chunk)
                else:
                    self._body += chunk
            if self._need:
                if self._eof:
                    raise GrpcProtocolError("grpc: stream ended inside a message",
                                            code="truncated_message")
                return NEED_DATA
            if self._compressed:
                self._inflate_chunk(b"", final=True)
            msg = bytes(self._body)
            self._body.clear()
            self._need = -1
            self._inflate = None
            self.messages += 1
            return msg

    def _inflate_chunk(self, chunk: bytes, final: bool = False) -> None:
        d = self._inflate
        room = self.max_message_bytes + 1 - len(self._body)
        out = d.decompress(chunk, room) if chunk else b""
        self._body += out
        if len(self._body) > self.max_message_bytes or d.unconsumed_tail:
            self._too_big()
        if final and not d.eof:
            raise GrpcProtocolError("grpc: truncated compressed message",
                                    code="bad_compression")
        if final and d.unused_data:
            raise GrpcProtocolError("grpc: bytes after the compressed stream",
                                    code="bad_compression")

    def _too_big(self) -> None:
        raise GrpcLimitError(limit="max_receive_message_bytes", value=None,
                             maximum=self.max_message_bytes, code="decompressed_too_large")
