"""``grpc-timeout``: strict parsing and formatting (sans-IO: no greenrt).

``Timeout → TimeoutValue TimeoutUnit``, ``TimeoutValue → {positive integer as ASCII
string of at most 8 digits}``, ``TimeoutUnit → H | M | S | m | u | n``
(doc/PROTOCOL-HTTP2.md). Anything else (9 digits, a sign, spaces, ``0``, an unknown
unit, an empty value) is refused. Values are kept as integer nanoseconds, so there
is no overflow or rounding on parse: the largest, ``99999999H``, is about 3.6e23 ns.
"""

from __future__ import annotations

__all__ = ["BadTimeout", "format_timeout", "parse_timeout", "MAX_TIMEOUT_NS"]

_UNIT_NS = {
    ord("H"): 3600 * 10**9,
    ord("M"): 60 * 10**9,
    ord("S"): 10**9,
    ord("m"): 10**6,
    ord("u"): 10**3,
    ord("n"): 1,
}
_MAX_VALUE = 99_999_999
#: the longest timeout the header can express
MAX_TIMEOUT_NS = _MAX_VALUE * 3600 * 10**9


class BadTimeout(ValueError):
    """A malformed ``grpc-timeout`` value (a plain ValueError: the caller maps it to
    its own error type and status)."""


def parse_timeout(value: bytes | str) -> int:
    """``grpc-timeout`` -> nanoseconds (a positive int). Raises :class:`BadTimeout`
    for anything that is not 1-8 ASCII digits, not zero, followed by one unit."""
    if isinstance(value, str):
        try:
            value = value.encode("ascii")
        except UnicodeEncodeError:
            raise BadTimeout("grpc-timeout is not ASCII") from None
    if not 2 <= len(value) <= 9:
        raise BadTimeout(f"grpc-timeout {value[:16]!r}: 1-8 digits and a unit")
    digits, unit = value[:-1], value[-1]
    if unit not in _UNIT_NS:
        raise BadTimeout(f"grpc-timeout {value!r}: unknown unit")
    if not all(0x30 <= b <= 0x39 for b in digits):
        raise BadTimeout(f"grpc-timeout {value!r}: value is not decimal digits")
    n = int(digits)
    if n == 0:
        raise BadTimeout(f"grpc-timeout {value!r}: value must be positive")
    return n * _UNIT_NS[unit]


_FORMAT_UNITS = (("n", 1), ("u", 10**3), ("m", 10**6), ("S", 10**9), ("M", 60 * 10**9),
                 ("H", 3600 * 10**9))


def format_timeout(seconds: float) -> bytes:
    """A ``grpc-timeout`` value for a budget of ``seconds``: the finest unit whose
    value fits in 8 digits, rounded up (a peer never sees a shorter deadline than
    ours, by less than one unit). At most ``99999999H``; a budget of zero or less is
    sent as ``1n`` (already expired, but the header has no zero)."""
    if seconds != seconds:  # NaN
        raise ValueError("timeout is NaN")
    if seconds <= 0:
        return b"1n"
    if seconds == float("inf"):
        return b"99999999H"
    ns = int(seconds * 10**9)
    if ns < seconds * 10**9:
        ns += 1
    ns = max(ns, 1)
    for unit, size in _FORMAT_UNITS:
        v = -(-ns // size)
        if v <= _MAX_VALUE:
            return b"%d%s" % (v, unit.encode())
    return b"99999999H"
