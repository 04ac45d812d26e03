"""Fuzz target: HPACK header blocks through the decoder as the HTTP/2 server
configures it (``max_header_list_size`` counting 32 bytes per entry, table size
updates capped at 4096).

Run with atheris::

    .venv/bin/python fuzz/fuzz_hpack_block.py /tmp/hpack-scratch fuzz/corpus/hpack_block

Checks: only ``hpack.HPACKError`` escapes (the server maps it to COMPRESSION_ERROR,
an oversized list to ENHANCE_YOUR_CALM); a decoded list never exceeds the limit.
"""

from __future__ import annotations

import sys

CORPUS = "corpus/hpack_block"

try:  # pragma: no cover - only when running under atheris
    import atheris

    with atheris.instrument_imports():
        import hpack
        import hpack.exceptions
except ImportError:
    atheris = None
    import hpack
    import hpack.exceptions

MAX_LIST = 4096
EXPECTED_ERRORS = (hpack.exceptions.HPACKError,)


class Finding(AssertionError):
    """An invariant broke."""


def TestOneInput(data: bytes) -> None:
    d = hpack.Decoder(max_header_list_size=MAX_LIST)
    try:
        headers = d.decode(data, raw=True)
    except EXPECTED_ERRORS:
        return
    size = sum(32 + len(k) + len(v) for k, v in headers)
    if size > MAX_LIST:
        raise Finding(f"decoded {size} bytes of headers, limit {MAX_LIST}")
    if d.header_table_size > 4096:
        raise Finding(f"table grew to {d.header_table_size}")


if __name__ == "__main__":  # pragma: no cover
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
