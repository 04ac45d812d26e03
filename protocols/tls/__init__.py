"""protocols.tls: TLS for greenrt streams, on pyOpenSSL.

``TLSStream`` wraps any ``greenrt.net.Stream`` (it talks to OpenSSL through memory
BIOs, so it works over the lab's simulated network as well as over sockets).
Contexts come from ``client_context()`` / ``server_context()`` with safe defaults:
TLS >= 1.2, no compression, no renegotiation, AEAD suites, chain *and* host-name
verification on clients (``service_identity``), optional mTLS, strict ALPN.

    from greenrt.protocols import tls
    ctx = tls.client_context(alpn=["h2", "http/1.1"])
    s = tls.open_tls("example.com", 443, ctx, timeout=10)
    s.selected_alpn                      # "h2"
    s.send_all(b"..."); s.recv(65536)

    server_ctx = tls.server_context(certfile="cert.pem", keyfile="key.pem")
    net.serve_tcp(tls.tls_handler(server_ctx, handler), "0.0.0.0", 443)

Needs the ``tls`` extra (``pyOpenSSL``, ``service_identity``).
"""

from __future__ import annotations

from ..base.errors import require_extra

require_extra("greenrt.protocols.tls", "tls", ("OpenSSL", "pyOpenSSL"))

from greenrt import net

from ._config import (
    AEAD_CIPHERS_TLS12,
    TLS1_2,
    TLS1_3,
    TLSContext,
    check_host,
    client_context,
    server_context,
)
from ._errors import (
    TLSCertificateError,
    TLSConfigError,
    TLSError,
    TLSHandshakeError,
    TLSTruncationError,
)
from ._stream import TLSStream

DEFAULT_HANDSHAKE_TIMEOUT = 10.0


def open_tls(host: str, port: int, context: TLSContext | None = None, *,
             server_hostname: str | None = None, timeout: float | None = None,
             handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
             allow_truncation: bool = False) -> TLSStream:
    """Connect with TCP (``net.open_tcp``) and complete a TLS handshake.

    A checkpoint. ``context`` defaults to ``client_context()`` (system trust store);
    the certificate is checked against ``server_hostname`` (default: ``host``).
    ``timeout`` bounds the TCP connect, ``handshake_timeout`` the handshake. On any
    failure (or cancellation) the connection is closed before the error leaves.
    """
    if context is None:
        context = client_context()
    tcp = net.open_tcp(host, port, timeout=timeout)
    try:
        s = TLSStream(tcp, context, server_hostname=server_hostname or host,
                      allow_truncation=allow_truncation)
        s.handshake(handshake_timeout)
    except BaseException:
        tcp.close()
        raise
    return s


def tls_handler(context: TLSContext, handler, *,
                handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT):
    """Wrap a ``handler(stream)`` for ``net.serve_tcp``: each connection is wrapped in
    a server-side ``TLSStream``, handshaken within ``handshake_timeout`` (a client
    that stalls the handshake cannot hold a connection slot forever), passed to
    ``handler`` and closed afterwards. A failed handshake closes the connection and
    is reported like any handler error (``net.handler_error`` trace event)."""
    if not context.server_side:
        raise TLSConfigError("tls_handler needs a server_context()")

    def wrapped(stream):
        s = TLSStream(stream, context)
        try:
            s.handshake(handshake_timeout)
            handler(s)
        finally:
            s.close()

    wrapped.__qualname__ = f"tls_handler({getattr(handler, '__qualname__', handler)})"
    return wrapped


__all__ = [
    "AEAD_CIPHERS_TLS12", "DEFAULT_HANDSHAKE_TIMEOUT", "TLS1_2", "TLS1_3", "TLSCertificateError",
    "TLSConfigError", "TLSContext", "TLSError", "TLSHandshakeError", "TLSStream",
    "TLSTruncationError", "check_host", "client_context", "open_tls", "server_context",
    "tls_handler",
]
