"""Fuzz target: the sans-IO gRPC message decoder (``protocols.grpc.framing``).

Run with atheris::

    .venv/bin/python fuzz/fuzz_grpc_framing.py /tmp/grpc-scratch fuzz/corpus/grpc_framing -max_total_time=60

The first input byte picks the peer's ``grpc-encoding`` (none, identity, gzip,
deflate); the rest is the DATA byte stream of one call, ended by END_STREAM.

What one input checks, beyond "no unexpected exception":

* total: only ``GrpcProtocolError`` (and its ``GrpcLimitError``) escapes, with a small
  limit (256 bytes) so the prefix and decompressed-size limits run;
* split invariance: whole vs. pieces (cuts derived from the input) give the same
  messages and the same error code;
* bounded: no message longer than the limit is returned, and the buffered bytes
  never exceed what was fed plus the limit;
* re-encoding the decoded messages (uncompressed) decodes to the same messages.
"""

from __future__ import annotations

import sys
import zlib

CORPUS = "corpus/grpc_framing"

if __name__ == "__main__":  # pragma: no cover - only when run by atheris
    try:
        import atheris
    except ImportError:
        sys.exit("atheris is not installed; use fuzz/run_bounded.py for the fallback fuzzer")
    with atheris.instrument_imports():
        from greenrt.protocols.grpc import framing
        from greenrt.protocols.grpc.errors import GrpcProtocolError
else:
    from greenrt.protocols.grpc import framing
    from greenrt.protocols.grpc.errors import GrpcProtocolError

#: The documented errors of the decoder: nothing else may escape it.
EXPECTED_ERRORS = (GrpcProtocolError,)

LIMIT = 256
_ENCODINGS = (None, b"identity", b"gzip", b"deflate")


class Finding(AssertionError):
    """An invariant of the decoder broke (not an expected error)."""


def _decode(chunks, encoding):
    d = framing.MessageDecoder(max_message_bytes=LIMIT, encoding=encoding)
    out, err, fed = [], None, 0
    try:
        for c in chunks:
            d.receive_data(c)
            fed += len(c)
            while (v := d.next_event()) is not framing.NEED_DATA and v is not framing.END:
                if len(v) > LIMIT:
                    raise Finding(f"message of {len(v)} bytes over the limit {LIMIT}")
                out.append(v)
            if d.buffered > fed + LIMIT:
                raise Finding(f"decoder buffers {d.buffered} bytes after {fed} fed")
        d.receive_data(b"")
        while (v := d.next_event()) is not framing.NEED_DATA and v is not framing.END:
            out.append(v)
    except EXPECTED_ERRORS as e:
        err = (type(e).__name__, e.code)
    return out, err


def _cuts(data: bytes) -> list[bytes]:
    h = zlib.crc32(data)
    parts, i = [], 0
    while i < len(data):
        step = 1 + (h % 9)
        h = (h * 1103515245 + 12345) & 0x7FFFFFFF
        parts.append(data[i:i + step])
        i += step
    return parts


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    encoding = _ENCODINGS[data[0] % len(_ENCODINGS)]
    body = data[1:]
    whole = _decode([body], encoding)
    pieces = _decode(_cuts(body), encoding)
    if whole != pieces:
        raise Finding(f"split input decoded differently: {whole[1]} vs {pieces[1]}, "
                      f"{len(whole[0])} vs {len(pieces[0])} messages")
    again = _decode([b"".join(framing.encode_message(m) for m in whole[0])], None)
    if again != (whole[0], None):
        raise Finding("re-encoded messages decode differently")


if __name__ == "__main__":  # pragma: no cover
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
