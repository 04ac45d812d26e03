"""``Upgrade: h2c`` (RFC 7540 §3.2): an HTTP/1.1 request on a cleartext connection
turns the connection into HTTP/2, the request becoming stream 1.

The one server (``protocols.http.server``) wraps the handler of every cleartext
HTTP/1.1 connection (when HTTP/2 is enabled) with :func:`upgrade_or_serve`. A request
asking for ``h2c`` is upgraded only if all of these hold, else it is served as plain
HTTP/1.1 with its ``Upgrade`` header ignored (RFC 9110 §7.8 lets a server do that;
each refusal is an ``http2.h2c_refused`` trace event naming why):

* HTTP/1.1 (an HTTP/1.0 request's Upgrade is ignored, RFC 9110 §7.8), not CONNECT;
* ``Connection`` lists both ``upgrade`` and ``http2-settings`` (RFC 7540 §3.2.1);
* exactly one ``HTTP2-Settings`` field, base64url (token68, padding optional, at most
  ``MAX_SETTINGS_FIELD`` characters) of a valid SETTINGS payload: a multiple of 6
  bytes, at most ``MAX_SETTINGS`` entries, each value within its RFC 9113 §6.5.2
  range (unknown identifiers are ignored, as in a SETTINGS frame);
* no request body (``Content-Length: 0`` or none, not chunked): the simplest safe
  rule; the body would otherwise have to be read before the switch, in HTTP/1.1
  framing, and a large one held while the connection changes protocol.

Over TLS the wrapper is not installed (h2c is cleartext only; TLS negotiates h2 with
ALPN), nor with ``http2=False``. On a yes: ``101 Switching Protocols`` (``Connection:
Upgrade``, ``Upgrade: h2c``) through ``Request.upgrade``, which also returns every
byte the HTTP/1.1 reader had already received past the request head: those bytes
(the client's preface and first frames, pipelined in the same segment) are handed to
the HTTP/2 connection as its first input, never dropped and never parsed as
HTTP/1.1. Then ``serve_connection(..., upgrade=Upgrade(...))``: h2's
``initiate_upgrade_connection`` applies the client's settings (the 101 acknowledges
them, no SETTINGS ACK) and opens stream 1 half-closed (remote); our SETTINGS go out
first, then stream 1's response.

Sans-IO except :func:`upgrade_or_serve`; ``decode_settings`` never raises.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from greenrt import lowlevel as ll

from ..http.model import Body, Headers, Request, ResponseWriter

__all__ = ["MAX_SETTINGS", "MAX_SETTINGS_FIELD", "Upgrade", "decode_settings", "refusal",
           "upgrade_or_serve"]

#: longest ``HTTP2-Settings`` value accepted (characters); a real one is ~30
MAX_SETTINGS_FIELD = 1024
#: most settings entries accepted in it (RFC 9113 defines 6, extensions a few more)
MAX_SETTINGS = 32

_TOKEN68 = re.compile(rb"[A-Za-z0-9_-]*=*")
# (identifier -> (minimum, maximum)) for the settings whose values RFC 9113 §6.5.2
# (and RFC 8441 for ENABLE_CONNECT_PROTOCOL) restricts
_RANGES = {2: (0, 1), 4: (0, 2**31 - 1), 5: (16384, 2**24 - 1), 8: (0, 1)}
# hop-by-hop fields of the HTTP/1.1 request that have no place in an HTTP/2 request
_HOP = frozenset((b"connection", b"upgrade", b"http2-settings", b"keep-alive",
                  b"proxy-connection", b"transfer-encoding", b"te"))


@dataclass(frozen=True)
class Upgrade:
    """An accepted ``Upgrade: h2c`` request: the client's SETTINGS payload and the
    request that becomes stream 1."""

    settings: bytes
    request: Request


def decode_settings(value: bytes) -> bytes | None:
    """The SETTINGS payload in an ``HTTP2-Settings`` value, or ``None`` if it is not
    base64url of a valid payload (see the module docstring). Never raises."""
    v = value.strip(b" \t")
    if len(v) > MAX_SETTINGS_FIELD or _TOKEN68.fullmatch(v) is None:
        return None
    core = v.rstrip(b"=")
    pad = -len(core) % 4
    if pad == 3 or (len(v) != len(core) and len(v) - len(core) != pad):
        return None  # an impossible length, or wrong padding
    try:
        payload = base64.urlsafe_b64decode(core + b"=" * pad)
    except (binascii.Error, ValueError):  # pragma: no cover - the regex admits no other
        return None
    n = len(payload)
    if n % 6 or n // 6 > MAX_SETTINGS:
        return None
    for i in range(0, n, 6):
        ident = int.from_bytes(payload[i:i + 2], "big")
        rng = _RANGES.get(ident)
        if rng is not None and not rng[0] <= int.from_bytes(payload[i + 2:i + 6], "big") <= rng[1]:
            return None
    return payload


def _tokens(headers: Headers, name: str) -> list[str]:
    return [t.strip(" \t").lower() for v in headers.get_all(name) for t in v.split(",")]


def refusal(req: Request) -> tuple[bytes | None, str | None]:
    """``(settings payload, None)`` if ``req`` may be upgraded to h2c, ``(None, why)``
    if it asks for h2c but may not, ``(None, None)`` if it does not ask. Not a
    checkpoint."""
    h = req.headers
    if b"upgrade" not in h or "h2c" not in _tokens(h, "upgrade"):
        return None, None
    if req.http_version != "1.1":
        return None, "http10"
    if req.method == "CONNECT":
        return None, "connect"
    conn = _tokens(h, "connection")
    if "upgrade" not in conn or "http2-settings" not in conn:
        return None, "connection_options"
    values = h.get_all("http2-settings")
    if not values:
        return None, "no_settings"
    if len(values) > 1:
        return None, "duplicate_settings"
    payload = decode_settings(values[0].encode("latin-1"))
    if payload is None:
        return None, "bad_settings"
    if not req.body.complete:
        return None, "body"
    return payload, None


def upgrade_or_serve(req: Request, handler, *, on_upgrade=None, **h2_kw: Any):
    """The wrapper around a cleartext HTTP/1.1 connection's handler: upgrade ``req``
    to HTTP/2 if it asks for h2c and qualifies (then serve the connection as HTTP/2
    until it ends, ``h2_kw`` going to ``serve_connection``, and return ``None``),
    else ``handler(req)``. A checkpoint when it upgrades (it blocks for the life of
    the connection); if cancelled before the 101 is written nothing changed, after it
    the HTTP/2 connection drains or is cancelled as ``serve_connection`` describes.
    ``on_upgrade()`` is called once the 101 is sent."""
    if b"upgrade" not in req.headers:
        return handler(req)
    settings, why = refusal(req)
    if settings is None:
        if why is not None:
            ll.current_hub().emit("http2.h2c_refused", why=why)
        return handler(req)
    from .server import serve_connection

    stream, leftover = req.upgrade([("Connection", "Upgrade"), ("Upgrade", "h2c")])
    ll.current_hub().emit("http2.h2c_upgrade", initial=len(leftover))
    if on_upgrade is not None:
        on_upgrade()
    serve_connection(stream, handler, initial=leftover, scheme=req.scheme, client=req.client,
                     upgrade=Upgrade(settings, req), **h2_kw)
    return None


def initiate(h2conn, settings: bytes) -> None:
    """h2's side of the switch (server): apply the client's settings, open stream 1
    half-closed (remote). Not a checkpoint."""
    h2conn.initiate_upgrade_connection(base64.urlsafe_b64encode(settings))


def stream_request(up: Upgrade, writer: ResponseWriter, body: Body) -> Request:
    """The request of stream 1, from the HTTP/1.1 request: hop-by-hop fields
    (``Connection``, ``Upgrade``, ``HTTP2-Settings``...) removed, ``Host`` kept (and
    also given as ``extensions["http2.authority"]``), ``http_version`` ``"2"`` (the
    response travels over HTTP/2), ``extensions["http2.upgraded"]`` true."""
    r = up.request
    fields = [(k, v) for k, v in r.headers.raw() if k not in _HOP]
    return Request(r.method, r.target, Headers._trusted(fields), body, http_version="2",
                   scheme=r.scheme, client=r.client, server=r.server, writer=writer,
                   extensions={"http2.stream_id": 1, "http2.upgraded": True,
                               "http2.authority": r.headers.get("host") or ""})
