"""Fuzz target: the lab's replay-token decoder (``lab.token.decode``).

Replay tokens are pasted from CI logs and bug reports into ``greenrt-lab replay`` and
``shrink``, so they are untrusted input: base64url of zlib-compressed JSON, with size
limits on the text, the decompressed bytes and the choice list. Run with atheris::

    .venv/bin/python fuzz/fuzz_lab_token.py /tmp/token-scratch fuzz/corpus/lab_token \
        -max_total_time=60

What one input checks: the decoder is total (only ``lab.token.TokenError``, for the
input as text and for its base64url form, so both the text layer and the
decompressed-JSON layer are reached), and a token that decodes re-encodes to a token
that decodes to the same fields (the run hash cut to the 16 hex digits the encoder
keeps: the decoder also accepts a longer hash, up to 64 digits).
"""

from __future__ import annotations

import base64
import sys
import zlib

CORPUS = "corpus/lab_token"

try:  # pragma: no cover - only when running under atheris
    import atheris

    with atheris.instrument_imports():
        from greenrt.lab.token import PREFIX, TokenError, decode
except ImportError:
    atheris = None
    from greenrt.lab.token import PREFIX, TokenError, decode

#: The documented error of the token decoder: nothing else may escape it.
EXPECTED_ERRORS = (TokenError,)


def _check(text: str) -> None:
    try:
        tok = decode(text)
    except TokenError:
        return
    again = decode(tok.encode())
    want = dict(vars(tok), run_hash=tok.run_hash[:16])  # the encoder keeps a 16-digit prefix
    if vars(again) != want:
        raise AssertionError("a decoded token does not survive encode/decode")


def TestOneInput(data: bytes) -> None:
    # Layer 1: the raw bytes as token text.
    _check(data.decode("latin-1"))
    # Layer 2: the bytes as the JSON payload, compressed and wrapped like a real token,
    # so the fuzzer explores the field validation rather than base64/zlib framing.
    body = base64.urlsafe_b64encode(zlib.compress(data)).decode("ascii").rstrip("=")
    _check(PREFIX + body)


if __name__ == "__main__":  # pragma: no cover
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
