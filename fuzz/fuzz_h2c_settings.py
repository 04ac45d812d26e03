"""Fuzz target: the ``HTTP2-Settings`` decoder of the ``Upgrade: h2c`` path
(``protocols.http2._h2c.decode_settings``), which decides whether an HTTP/1.1
request may turn its connection into HTTP/2.

Run with atheris::

    .venv/bin/python fuzz/fuzz_h2c_settings.py /tmp/h2c-scratch fuzz/corpus/h2c_settings \\
        -max_total_time=60

What one input checks, beyond "no exception at all" (the decoder is total: it
returns ``None`` for anything it refuses):

* an accepted value decodes to a whole number of settings, at most ``MAX_SETTINGS``,
  from at most ``MAX_SETTINGS_FIELD`` characters, each restricted value in range;
* an accepted value is canonical enough: re-encoding the payload (padded or not)
  is accepted again and gives the same payload;
* the input is also tried as a SETTINGS *payload*: its base64url form is accepted
  exactly when the payload itself is valid.
"""

from __future__ import annotations

import base64
import sys

CORPUS = "corpus/h2c_settings"

try:  # pragma: no cover - only when running under atheris
    import atheris

    with atheris.instrument_imports():
        from greenrt.protocols.http2._h2c import MAX_SETTINGS, MAX_SETTINGS_FIELD, decode_settings
except ImportError:
    atheris = None
    from greenrt.protocols.http2._h2c import MAX_SETTINGS, MAX_SETTINGS_FIELD, decode_settings


class Finding(AssertionError):
    """An invariant of the decoder broke."""


#: The decoder documents no error: bad input gives ``None``. The convention wants a
#: non-empty tuple; nothing in ``TestOneInput`` catches it, so any exception at all
#: escapes as a finding.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (Finding,)

_RANGES = {2: (0, 1), 4: (0, 2**31 - 1), 5: (16384, 2**24 - 1), 8: (0, 1)}


def _valid_payload(p: bytes) -> bool:
    if len(p) % 6 or len(p) // 6 > MAX_SETTINGS:
        return False
    for i in range(0, len(p), 6):
        rng = _RANGES.get(int.from_bytes(p[i:i + 2], "big"))
        if rng is not None and not rng[0] <= int.from_bytes(p[i + 2:i + 6], "big") <= rng[1]:
            return False
    return True


def TestOneInput(data: bytes) -> None:
    got = decode_settings(data)
    if got is not None:
        if len(data.strip(b" \t")) > MAX_SETTINGS_FIELD:
            raise Finding("an over-long value was accepted")
        if not _valid_payload(got):
            raise Finding(f"an invalid payload was accepted: {got!r}")
        enc = base64.urlsafe_b64encode(got)
        if decode_settings(enc) != got or decode_settings(enc.rstrip(b"=")) != got:
            raise Finding("the re-encoded payload does not decode to itself")
    enc = base64.urlsafe_b64encode(data)
    fits = len(enc) <= MAX_SETTINGS_FIELD
    if (decode_settings(enc) == data) != (fits and _valid_payload(data)):
        raise Finding(f"payload {data!r}: accepted {decode_settings(enc) is not None}")


if __name__ == "__main__":  # pragma: no cover
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
