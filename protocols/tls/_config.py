"""TLS configuration with safe defaults, on pyOpenSSL.

``client_context()`` and ``server_context()`` build a :class:`TLSContext`: a
pyOpenSSL ``SSL.Context`` plus the policy pyOpenSSL does not carry (host-name
verification, ALPN policy). Defaults, all explicit because OpenSSL's own defaults
depend on the build and the system configuration:

* protocol: TLS 1.2 minimum (``minimum_version`` may raise it to 1.3, never lower it);
* ``OP_NO_COMPRESSION`` (CRIME), ``OP_NO_RENEGOTIATION`` (renegotiation-based DoS and
  confusion), ``OP_CIPHER_SERVER_PREFERENCE`` on servers, ``OP_SINGLE_ECDH_USE``;
* TLS 1.2 cipher suites: ECDHE with AES-GCM or ChaCha20-Poly1305 only (AEAD, forward
  secrecy); TLS 1.3 suites are all AEAD already;
* clients verify the peer: chain against the system trust store (or ``cafile`` /
  ``cadata``) and the host name (or IP address) with ``service_identity``, checked
  inside the handshake so a mismatch aborts it with an alert (chain failures send the
  specific alert, e.g. 45 certificate_expired or 48 unknown_ca; a host-name mismatch,
  found by ``service_identity`` in the verify callback, goes out as 80
  internal_error because OpenSSL has no error code for it). ``verify=False`` exists
  for tests and is loud in its name only: it disables both checks;
* servers may require client certificates (mTLS): ``require_client_cert=True`` sets
  ``VERIFY_PEER | VERIFY_FAIL_IF_NO_PEER_CERT`` against ``client_ca``;
* ALPN: a server with ``alpn`` protocols *fails* the handshake with alert 120
  (no_application_protocol) when the client offers ALPN without any overlap; a client
  that offered ALPN and got none back can insist with ``require_alpn=True``.

Invalid configuration raises ``TLSConfigError`` at construction, never at the first
connection.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence

from OpenSSL import SSL, crypto

from ._errors import TLSConfigError

TLS1_2 = "1.2"
TLS1_3 = "1.3"
_VERSIONS = {TLS1_2: SSL.TLS1_2_VERSION, TLS1_3: SSL.TLS1_3_VERSION}

#: TLS 1.2 suites: ECDHE key exchange, AEAD ciphers only.
AEAD_CIPHERS_TLS12 = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)

_OPTIONS = (SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION | SSL.OP_SINGLE_ECDH_USE
            | SSL.OP_NO_SSLv2 | SSL.OP_NO_SSLv3 | SSL.OP_NO_TLSv1 | SSL.OP_NO_TLSv1_1)


def _load_certs(pem: bytes):
    from cryptography import x509

    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as e:
        raise TLSConfigError(f"invalid PEM certificate data: {e}") from e
    if not certs:
        raise TLSConfigError("no certificate in PEM data")
    return certs


def _read(path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TLSConfigError(f"cannot read {path!r}: {e}") from e


def _load_key(pem: bytes, password: bytes | None):
    from cryptography.hazmat.primitives import serialization

    try:
        return serialization.load_pem_private_key(pem, password)
    except (ValueError, TypeError) as e:
        raise TLSConfigError(f"invalid PEM private key: {e}") from e


def _encode_alpn(alpn: Sequence[str | bytes] | None) -> list[bytes]:
    out = []
    for p in alpn or ():
        b = p.encode("ascii") if isinstance(p, str) else bytes(p)
        if not 0 < len(b) < 256:
            raise TLSConfigError(f"invalid ALPN protocol id {p!r}")
        out.append(b)
    return out


class TLSContext:
    """A configured TLS context (client or server). Build it with
    :func:`client_context` or :func:`server_context`; share one across connections.

    ``ssl_context`` is the underlying pyOpenSSL ``SSL.Context`` for settings this API
    does not cover (changing it after connections exist affects only new ones).
    """

    def __init__(self, ssl_context: SSL.Context, *, server_side: bool, verify: bool,
                 check_hostname: bool, alpn: list[bytes], require_alpn: bool,
                 require_client_cert: bool):
        self.ssl_context = ssl_context
        self.server_side = server_side
        self.verify = verify
        self.check_hostname = check_hostname
        self.alpn = alpn
        self.require_alpn = require_alpn
        self.require_client_cert = require_client_cert

    def __repr__(self) -> str:
        side = "server" if self.server_side else "client"
        return f"<TLSContext {side} verify={self.verify} alpn={self.alpn}>"


def _base(minimum_version: str, maximum_version: str | None) -> SSL.Context:
    if minimum_version not in _VERSIONS:
        raise TLSConfigError(f"minimum_version must be one of {sorted(_VERSIONS)} "
                             f"(TLS < 1.2 is not supported)")
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_options(_OPTIONS)
    ctx.set_min_proto_version(_VERSIONS[minimum_version])
    if maximum_version is not None:
        if maximum_version not in _VERSIONS:
            raise TLSConfigError(f"maximum_version must be one of {sorted(_VERSIONS)}")
        ctx.set_max_proto_version(_VERSIONS[maximum_version])
    ctx.set_cipher_list(AEAD_CIPHERS_TLS12.encode("ascii"))
    ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)
    return ctx


def _use_identity(ctx: SSL.Context, certfile, keyfile, cert_pem, key_pem, password) -> None:
    if certfile is not None:
        cert_pem = _read(certfile)
    if keyfile is not None:
        key_pem = _read(keyfile)
    elif certfile is not None and key_pem is None:
        key_pem = cert_pem  # a combined PEM file
    if cert_pem is None:
        raise TLSConfigError("a certificate is required (certfile= or cert_pem=)")
    if key_pem is None:
        raise TLSConfigError("a private key is required (keyfile= or key_pem=)")
    certs = _load_certs(cert_pem)
    key = _load_key(key_pem, password)
    try:
        ctx.use_certificate(certs[0])
        for c in certs[1:]:
            ctx.add_extra_chain_cert(c)
        ctx.use_privatekey(key)
        ctx.check_privatekey()
    except SSL.Error as e:
        raise TLSConfigError(f"unusable certificate/key pair: {e}") from e


def _trust(ctx: SSL.Context, cafile, cadata) -> None:
    if cafile is None and cadata is None:
        ctx.set_default_verify_paths()
        return
    if cafile is not None:
        if not os.path.exists(cafile):
            raise TLSConfigError(f"CA file {cafile!r} does not exist")
        try:
            ctx.load_verify_locations(os.fspath(cafile))
        except SSL.Error as e:
            raise TLSConfigError(f"cannot load CA file {cafile!r}: {e}") from e
    if cadata is not None:
        store = ctx.get_cert_store()
        for c in _load_certs(cadata if isinstance(cadata, bytes) else cadata.encode()):
            store.add_cert(crypto.X509.from_cryptography(c))


def client_context(*, cafile: str | os.PathLike | None = None, cadata: bytes | str | None = None,
                   verify: bool = True, alpn: Sequence[str | bytes] | None = None,
                   require_alpn: bool = False, certfile=None, keyfile=None,
                   cert_pem: bytes | None = None, key_pem: bytes | None = None,
                   password: bytes | None = None, minimum_version: str = TLS1_2,
                   maximum_version: str | None = None) -> TLSContext:
    """A client context: verifies the server's chain (system trust store unless
    ``cafile``/``cadata``) and host name; offers ``alpn``; presents a client
    certificate for mTLS if ``certfile``/``cert_pem`` is given."""
    ctx = _base(minimum_version, maximum_version)
    if verify:
        _trust(ctx, cafile, cadata)
        ctx.set_verify(SSL.VERIFY_PEER, _verify_callback)
    else:
        ctx.set_verify(SSL.VERIFY_NONE, None)
    if certfile is not None or cert_pem is not None:
        _use_identity(ctx, certfile, keyfile, cert_pem, key_pem, password)
    protos = _encode_alpn(alpn)
    if protos:
        ctx.set_alpn_protos(protos)
    return TLSContext(ctx, server_side=False, verify=verify, check_hostname=verify,
                      alpn=protos, require_alpn=require_alpn, require_client_cert=False)


def server_context(*, certfile=None, keyfile=None, cert_pem: bytes | None = None,
                   key_pem: bytes | None = None, password: bytes | None = None,
                   alpn: Sequence[str | bytes] | None = None,
                   require_client_cert: bool = False, client_cafile=None,
                   client_cadata: bytes | str | None = None, minimum_version: str = TLS1_2,
                   maximum_version: str | None = None) -> TLSContext:
    """A server context with its certificate chain and key. ``alpn`` lists the
    protocols the server speaks, in preference order (no overlap with a client that
    offers ALPN: alert 120). ``require_client_cert`` enables mTLS against
    ``client_cafile``/``client_cadata`` (required then)."""
    ctx = _base(minimum_version, maximum_version)
    ctx.set_options(SSL.OP_CIPHER_SERVER_PREFERENCE)
    _use_identity(ctx, certfile, keyfile, cert_pem, key_pem, password)
    if require_client_cert:
        if client_cafile is None and client_cadata is None:
            raise TLSConfigError("require_client_cert needs client_cafile or client_cadata")
        _trust(ctx, client_cafile, client_cadata)
        cas = []
        if client_cafile is not None:
            cas += _load_certs(_read(client_cafile))
        if client_cadata is not None:
            cas += _load_certs(client_cadata if isinstance(client_cadata, bytes)
                               else client_cadata.encode())
        for ca in cas:
            ctx.add_client_ca(ca)
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _verify_callback)
        ctx.set_session_id(b"greenrt-tls")
    else:
        ctx.set_verify(SSL.VERIFY_NONE, None)
    protos = _encode_alpn(alpn)
    if protos:
        ctx.set_alpn_select_callback(_make_alpn_selector(protos))
    return TLSContext(ctx, server_side=True, verify=require_client_cert, check_hostname=False,
                      alpn=protos, require_alpn=False, require_client_cert=require_client_cert)


class NoApplicationProtocol(Exception):
    """Raised inside the ALPN callback: OpenSSL answers with alert 120."""


def _make_alpn_selector(protos: list[bytes]):
    def select(conn, offered: list[bytes]):
        for p in protos:  # server preference order
            if p in offered:
                return p
        stream = conn.get_app_data()
        if stream is not None:
            stream._alpn_failure = offered
        raise NoApplicationProtocol(f"no common ALPN protocol: client offered {offered}, "
                                    f"server speaks {protos}")

    return select


def _verify_callback(conn, cert, errnum: int, depth: int, ok: int) -> bool:
    """OpenSSL's verdict on each chain element, plus the host-name check on the leaf.
    Failures are recorded on the stream so the handshake error can name them."""
    stream = conn.get_app_data()
    if not ok:
        if stream is not None and stream._verify_failure is None:
            stream._verify_failure = (errnum, depth, _x509_error_string(errnum),
                                      _subject(cert))
        return False
    if depth == 0 and stream is not None and stream._expected_host is not None:
        reason = check_host(cert.to_cryptography(), stream._expected_host)
        if reason is not None:
            stream._verify_failure = (None, 0, reason, _subject(cert))
            return False
    return True


def check_host(cert, host: str) -> str | None:
    """``None`` if ``cert`` (a cryptography certificate) is valid for ``host`` (a DNS
    name or an IP address), else the reason, via ``service_identity``."""
    try:
        from service_identity import CertificateError, VerificationError
        from service_identity.cryptography import (
            verify_certificate_hostname,
            verify_certificate_ip_address,
        )
    except ImportError:
        from ..base.errors import MissingDependency

        raise MissingDependency("greenrt.protocols.tls host name checking", "service_identity",
                                "service_identity", "tls") from None

    try:
        try:
            ipaddress.ip_address(host)
            is_ip = True
        except ValueError:
            is_ip = False
        if is_ip:
            verify_certificate_ip_address(cert, host)
        else:
            verify_certificate_hostname(cert, host)
    except VerificationError as e:
        return f"certificate is not valid for {host!r}: {e}"
    except CertificateError as e:
        return f"certificate has no usable identity for {host!r}: {e}"
    return None


def _subject(cert) -> str:
    try:
        return cert.to_cryptography().subject.rfc4514_string()
    except Exception:  # noqa: BLE001 - only for an error message
        return "?"


_X509_ERRORS = {
    2: "unable to get issuer certificate",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate (untrusted CA)",
    21: "unable to verify the first certificate",
    24: "invalid CA certificate",
    26: "unsupported certificate purpose",
    62: "hostname mismatch",
}


def _x509_error_string(errnum: int) -> str:
    return _X509_ERRORS.get(errnum, f"X509 verify error {errnum}")
