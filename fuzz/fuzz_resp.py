"""Fuzz target: the sans-IO RESP decoder (``protocols.redis.resp``).

Run with atheris::

    .venv/bin/python fuzz/fuzz_resp.py fuzz/corpus/resp -max_total_time=60

(atheris writes new interesting inputs into the first corpus directory; point it at a
scratch copy if you do not want them, as ``fuzz/run_bounded.py`` does.)

What one input checks, beyond "no unexpected exception":

* the decoder is total: the only exception it may raise is ``ProtocolError``
  (``MalformedFrame`` or ``FrameTooLarge``), with small limits so limit paths run;
* split invariance: the input fed whole and fed in pieces (cut points derived from
  the input itself, so runs are reproducible) gives the same frames and the same
  error type;
* re-encoding every decoded frame and decoding it again gives the same frame;
* buffered bytes stay bounded by the limits.
"""

from __future__ import annotations

import math
import sys
import zlib

CORPUS = "corpus/resp"

if __name__ == "__main__":  # pragma: no cover - only when run by atheris
    try:
        import atheris
    except ImportError:
        sys.exit("atheris is not installed; use fuzz/run_bounded.py for the fallback fuzzer")
    with atheris.instrument_imports():
        from greenrt.protocols.redis import resp
        from greenrt.protocols.redis.errors import ProtocolError
else:
    from greenrt.protocols.redis import resp
    from greenrt.protocols.redis.errors import ProtocolError

#: The documented errors of the RESP decoder: nothing else may escape it.
EXPECTED_ERRORS = (ProtocolError,)

LIMITS = resp.Limits(max_bulk_length=4096, max_aggregate_length=64, max_frame_elements=256,
                     max_depth=8, max_frame_size=16384, max_line_length=256,
                     max_bignum_digits=64)
_BUFFER_BOUND = LIMITS.max_frame_size + 2 * LIMITS.max_line_length + 8


class Finding(AssertionError):
    """An invariant of the decoder broke (not an expected error)."""


def _norm(v):
    if isinstance(v, float) and math.isnan(v):
        return ("nan",)
    if isinstance(v, resp.Push):
        return ("push", tuple(_norm(x) for x in v))
    if isinstance(v, (list, tuple)):
        return tuple(_norm(x) for x in v)
    if isinstance(v, dict):
        return ("map", tuple(sorted((repr(_norm(k)), _norm(x)) for k, x in v.items())))
    if isinstance(v, (set, frozenset)):
        return ("set", tuple(sorted(repr(_norm(x)) for x in v)))
    return (type(v).__name__, v)


def _decode(chunks) -> tuple[list, type | None]:
    d = resp.Decoder(LIMITS)
    out = []
    err = None
    try:
        for c in chunks:
            d.receive_data(c)
            while (v := d.next_event()) is not resp.NEED_DATA:
                out.append(_norm(v))
            if d.buffered > _BUFFER_BOUND + len(c):
                raise Finding(f"decoder buffers {d.buffered} bytes, bound {_BUFFER_BOUND}")
    except EXPECTED_ERRORS as e:
        err = type(e)
    return out, err


def _cuts(data: bytes) -> list[bytes]:
    h = zlib.crc32(data)
    parts, i = [], 0
    while i < len(data):
        step = 1 + (h % 7)
        h = (h * 1103515245 + 12345) & 0x7FFFFFFF
        parts.append(data[i:i + step])
        i += step
    return parts


def TestOneInput(data: bytes) -> None:
    whole, err = _decode([data])
    pieces, err2 = _decode(_cuts(data))
    if (whole, err) != (pieces, err2):
        raise Finding(f"split input decoded differently: {err} vs {err2}, "
                      f"{len(whole)} vs {len(pieces)} frames")
    # re-encode what decoded and decode it again
    d = resp.Decoder(LIMITS)
    d.receive_data(data)
    try:
        while (v := d.next_event()) is not resp.NEED_DATA:
            again = resp.Decoder()
            again.receive_data(resp.encode(v))
            if _norm(again.next_event()) != _norm(v):
                raise Finding(f"re-encoded frame decodes differently: {v!r}")
    except EXPECTED_ERRORS:
        pass


if __name__ == "__main__":  # pragma: no cover
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
