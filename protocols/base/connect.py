"""One way for every client in the stack to reach its peer: TCP, then TLS.

``connect(host, port, tls=..., alpn=..., timeout=...)`` opens a TCP connection
(``greenrt.net.open_tcp``: resolution in a worker thread, happy eyeballs), wraps it in
``greenrt.protocols.tls.TLSStream`` when asked (SNI and certificate host name from
``server_hostname``, default ``host``; ALPN offered from ``alpn``), and runs the
handshake, all under **one** budget: ``timeout`` bounds the whole of it, not each
step, so a peer that accepts quickly and then stalls the handshake cannot double the
caller's wait. The caller's own deadline and cancellation apply as at any checkpoint.

On any failure or cancellation the socket is closed before the exception leaves:
nothing half-open is returned or leaked.

It returns a :class:`Connected` ``(stream, alpn)``: the stream and the negotiated
ALPN protocol (``None`` for cleartext, or when the server chose none). A protocol
maps the errors to its own (``OSError`` — including ``greenrt.TooSlowError``, a
``TimeoutError`` — for TCP and timeouts, ``tls.TLSError`` subclasses for TLS).

Default client contexts (system trust store, one per ALPN list) are built once per
process: loading the trust store costs milliseconds, a connection should not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import greenrt
from greenrt import net

__all__ = ["Connected", "connect", "default_client_context"]


class Connected(NamedTuple):
    """What :func:`connect` returns."""

    stream: Any  # a greenrt.net.Stream (a TLSStream over TLS)
    alpn: str | None


_DEFAULT_CONTEXTS: dict[tuple, Any] = {}


def default_client_context(alpn: Sequence[str] | None = None) -> Any:
    """The shared default client context for ``alpn`` (system trust store, chain and
    host-name verification). Needs the ``tls`` extra."""
    key = tuple(alpn or ())
    ctx = _DEFAULT_CONTEXTS.get(key)
    if ctx is None:
        from greenrt.protocols import tls

        ctx = _DEFAULT_CONTEXTS[key] = tls.client_context(alpn=list(key) or None)
    return ctx


def connect(host: str, port: int, *, tls: Any = None, server_hostname: str | None = None,
            alpn: Sequence[str] | None = None, timeout: float | None = None) -> Connected:
    """Connect to ``host``:``port``; TLS when ``tls`` is given.

    A checkpoint. ``tls``: ``None`` (cleartext), ``True`` (the default client context
    offering ``alpn``) or a ``tls.TLSContext`` (a client context; its own ALPN list is
    used, and ``alpn``, if given, must match it — an ALPN list on the context and a
    different one here is a configuration error, raised as ``ValueError``).
    ``server_hostname`` sets SNI and the name the certificate is checked against
    (default ``host``). ``timeout`` bounds TCP connect plus handshake together
    (``TooSlowError``). A cancelled or failed connect leaves no socket open.
    """
    if tls is None and alpn:
        raise ValueError("alpn needs tls (ALPN is negotiated in the TLS handshake)")
    if timeout is not None and not timeout >= 0:
        raise ValueError(f"timeout must be None or >= 0, not {timeout!r}")
    if timeout is None:
        return _connect(host, port, tls, server_hostname, alpn)
    with greenrt.fail_after(timeout):
        return _connect(host, port, tls, server_hostname, alpn)


def _connect(host: str, port: int, tls: Any, server_hostname: str | None,
             alpn: Sequence[str] | None) -> Connected:
    if tls is None:
        return Connected(net.open_tcp(host, port), None)
    from greenrt.protocols import tls as _tls

    if tls is True:
        ctx = default_client_context(alpn)
    else:
        ctx = tls
        if getattr(ctx, "server_side", False):
            raise ValueError("connect() needs a client TLS context, not a server_context()")
        if alpn and [p.encode() for p in alpn] != list(ctx.alpn):
            raise ValueError(f"alpn={list(alpn)!r} differs from the context's ALPN list "
                             f"{[p.decode() for p in ctx.alpn]!r}: set it on the context")
    # protocols.tls's own path (it closes the socket on any failure); both of its
    # timeouts off: the enclosing budget bounds TCP and handshake together
    s = _tls.open_tls(host, port, ctx, server_hostname=server_hostname or host,
                      timeout=None, handshake_timeout=None)
    return Connected(s, s.selected_alpn)
