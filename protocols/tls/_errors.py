"""TLS errors. All are ``greenrt.net.StreamError`` subclasses, so code that handles
stream failures handles TLS failures too; ``TLSHandshakeError`` carries the alert or
verification failure that ended the handshake."""

from __future__ import annotations

from greenrt.net import BrokenStreamError, StreamError


class TLSError(StreamError):
    """A TLS protocol failure on an established stream (the stream is broken)."""


class TLSConfigError(TLSError, ValueError):
    """Invalid TLS configuration (bad certificate, key, CA file, version, ALPN id)."""


class TLSHandshakeError(TLSError, BrokenStreamError):
    """The handshake failed. ``alert`` is the TLS alert description number when known
    (e.g. 120 no_application_protocol, 40 handshake_failure, 70 protocol_version),
    ``sent`` tells whether we sent it (``True``) or received it (``False``)."""

    def __init__(self, message: str, *, alert: int | None = None, sent: bool | None = None):
        super().__init__(message)
        self.alert = alert
        self.sent = sent


class TLSCertificateError(TLSHandshakeError):
    """The peer's certificate was rejected: untrusted or self-signed chain, expired,
    wrong host name, missing client certificate. ``verify_code`` is OpenSSL's X509
    error number when it comes from chain verification (``None`` for a host-name
    mismatch found by ``service_identity``)."""

    def __init__(self, message: str, *, verify_code: int | None = None, alert: int | None = None,
                 sent: bool | None = None):
        super().__init__(message, alert=alert, sent=sent)
        self.verify_code = verify_code


class TLSTruncationError(TLSError, BrokenStreamError):
    """The transport reached EOF without a TLS close_notify: the data may have been
    truncated by an attacker. (``allow_truncation=True`` turns this into plain EOF.)"""
