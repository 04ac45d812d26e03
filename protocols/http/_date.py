"""The ``Date`` field (RFC 9110 §6.6.1, IMF-fixdate), formatted once per distinct
second and shared by the HTTP/1.1 response writer and the HTTP/2 server. Sans-IO:
the caller passes its clock (the hub's ``wall_time``, virtual under the lab).

``_date`` is ``[second, value, line]``: the HTTP/1.1 writer's hot path compares the
second inline and takes ``line`` (``date: <value>\\r\\n``) without a call.
"""

from __future__ import annotations

from email.utils import formatdate

__all__ = ["date_line", "date_value"]

_date: list = [-1, b"", b""]


def _format(now: int) -> None:
    value = formatdate(now, usegmt=True).encode("ascii")
    _date[1] = value
    _date[2] = b"date: " + value + b"\r\n"
    _date[0] = now


def date_value(wall: float) -> bytes:
    """The field value for ``wall`` seconds since the epoch. Not a checkpoint."""
    now = int(wall)
    if now != _date[0]:
        _format(now)
    return _date[1]


def date_line(wall: float) -> bytes:
    """``date: <IMF-fixdate>\\r\\n`` for ``wall`` seconds since the epoch."""
    now = int(wall)
    if now != _date[0]:
        _format(now)
    return _date[2]
