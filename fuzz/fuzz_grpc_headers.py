"""Fuzz target: the gRPC header-value parsers (``grpc-timeout``, ``grpc-status``,
``grpc-message``, metadata with ``-bin`` values).

The first byte picks the parser; the rest is the value (for metadata: lines
``key:value`` separated by ``\\n``). Checks: only the documented typed errors escape;
a parsed timeout is positive and at most ``99999999H``, and formats back to a value
that parses; a parsed status is 0..16; ``grpc-message`` decoding never fails and
re-encoding its result decodes to the same text; decoded metadata re-encodes and
decodes to itself.
"""

from __future__ import annotations

import sys

CORPUS = "corpus/grpc_headers"

if __name__ == "__main__":  # pragma: no cover - only when run by atheris
    try:
        import atheris
    except ImportError:
        sys.exit("atheris is not installed; use fuzz/run_bounded.py for the fallback fuzzer")
    with atheris.instrument_imports():
        from greenrt.protocols.grpc import metadata, status, timeout
        from greenrt.protocols.grpc.errors import GrpcProtocolError
else:
    from greenrt.protocols.grpc import metadata, status, timeout
    from greenrt.protocols.grpc.errors import GrpcProtocolError

EXPECTED_ERRORS = (timeout.BadTimeout, GrpcProtocolError)


class Finding(AssertionError):
    """An invariant of a parser broke."""


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    which, value = data[0] % 4, data[1:]
    if which == 0:
        try:
            ns = timeout.parse_timeout(value)
        except timeout.BadTimeout:
            return
        if not 0 < ns <= timeout.MAX_TIMEOUT_NS:
            raise Finding(f"timeout {value!r} parsed to {ns}")
        if timeout.parse_timeout(timeout.format_timeout(ns / 1e9)) < ns * (1 - 1e-9):
            raise Finding(f"timeout {value!r} formats back shorter")
    elif which == 1:
        s = status.parse_status(value)
        if s is not None and not 0 <= s <= 16:
            raise Finding(f"status {value!r} -> {s}")
    elif which == 2:
        text = status.decode_message(value)
        if status.decode_message(status.encode_message(text)) != text:
            raise Finding(f"grpc-message {value!r} does not round-trip")
    else:
        fields = []
        for line in value.split(b"\n"):
            k, _, v = line.partition(b":")
            fields.append((k, v))
        try:
            md = metadata.decode_metadata(fields, max_bytes=1024)
        except EXPECTED_ERRORS:
            return
        ok = [(k, v) for k, v in md
              if metadata._KEY.match(k.encode("latin-1"))
              and (k.endswith("-bin") or metadata._VALUE.match(v.encode("latin-1")))]
        if metadata.decode_metadata(metadata.encode_metadata(ok), max_bytes=1 << 20) != ok:
            raise Finding("metadata does not round-trip")


if __name__ == "__main__":  # pragma: no cover
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
