"""``TLSStream``: TLS over any greenrt stream, through pyOpenSSL memory BIOs.

The TLS engine never sees a socket. Ciphertext goes between OpenSSL's memory BIOs and
the wrapped ``greenrt.net.Stream`` (a TCP or Unix stream, the lab's simulated stream,
even another TLS stream), so TLS works identically on the real and the lab network.

Concurrency: one task may ``recv`` while another ``send_all``\\s. Outgoing ciphertext
is written by whoever holds the send lock, which drains the outgoing BIO completely
before releasing it, so records leave in the order OpenSSL produced them. ``recv``
never waits for that lock (a sender blocked on a full transport must not stop us
from reading, or two peers could deadlock): when the lock is held, the holder will
send whatever ``recv`` produced.

Cancellation (every blocking method is a checkpoint):

* ``recv`` loses no data: it is interrupted only while waiting for ciphertext from
  the transport, when no plaintext has been taken out of OpenSSL.
* ``send_all`` and ``handshake``: once OpenSSL has produced records for them, an
  interruption leaves the peer with an unknown prefix of a record stream whose
  sequence numbers have advanced: the stream is marked broken (``BrokenStreamError``
  on every further use except ``close``). Cancelled at their entry checkpoint they
  leave the stream untouched.
* ``close()`` never blocks: it sends close_notify only if the transport accepts it
  without waiting (``send_nowait``), then closes the transport. ``send_eof()`` (a
  checkpoint) sends close_notify and keeps receiving; ``unwrap()`` performs the full
  close_notify exchange and hands back the transport.

EOF: a transport EOF without the peer's close_notify raises ``TLSTruncationError``
(an attacker can cut a connection; only the close_notify proves the data is complete),
unless the stream was made with ``allow_truncation=True``.

Limits: the ciphertext read per transport ``recv`` is bounded (``READ_SIZE``), OpenSSL
decrypts one record (<= 16 KiB) at a time, and ``send_all`` encrypts and flushes in
``WRITE_CHUNK`` slices, so buffered memory per stream is bounded whatever the peer or
the caller does. Renegotiation is disabled in the context.

Hazards: ``unwrap()`` returns exactly the bytes that followed the peer's close_notify
only if they arrived during ``unwrap()`` (it feeds records one at a time); bytes that
arrived together with a close_notify during an earlier ``recv`` are lost.
"""

from __future__ import annotations

import ipaddress

from OpenSSL import SSL

import greenrt
from greenrt import lowlevel
from greenrt.net import BrokenStreamError, BusyResourceError, ClosedResourceError, Stream

from ._config import NoApplicationProtocol, TLSContext
from ._errors import (
    TLSCertificateError,
    TLSConfigError,
    TLSError,
    TLSHandshakeError,
    TLSTruncationError,
)

READ_SIZE = 65536
WRITE_CHUNK = 65536
#: One ``recv`` returns at most this much plaintext (a TLS record holds <= 16 KiB).
MAX_PLAINTEXT_READ = 65536

# Alert descriptions as OpenSSL names them in its error reasons.
_ALERTS = {
    "close notify": 0, "unexpected message": 10, "bad record mac": 20,
    "record overflow": 22, "handshake failure": 40, "bad certificate": 42,
    "unsupported certificate": 43, "certificate revoked": 44, "certificate expired": 45,
    "certificate unknown": 46, "illegal parameter": 47, "unknown ca": 48,
    "access denied": 49, "decode error": 50, "decrypt error": 51, "protocol version": 70,
    "insufficient security": 71, "internal error": 80, "inappropriate fallback": 86,
    "user canceled": 90, "missing extension": 109, "unsupported extension": 110,
    "unrecognized name": 112, "bad certificate status response": 113,
    "unknown psk identity": 115, "certificate required": 116,
    "no application protocol": 120,
}
_CERT_ALERTS = {42, 43, 44, 45, 46, 48, 49, 116}


def _reasons(err: SSL.Error) -> list[str]:
    out = []
    for arg in err.args:
        if isinstance(arg, list):
            for item in arg:
                if isinstance(item, tuple) and item:
                    out.append(str(item[-1]))
        else:
            out.append(str(arg))
    return out


class TLSStream(Stream):
    """A TLS connection over ``transport``. See the module docstring.

    ``context`` decides the side (``server_context()`` -> server). Clients name the
    server with ``server_hostname`` (sent as SNI unless it is an IP address, and
    verified against the certificate when the context verifies). The handshake runs
    on the first ``recv``/``send_all`` if ``handshake()`` was not called.
    """

    def __init__(self, transport: Stream, context: TLSContext, *,
                 server_hostname: str | None = None, allow_truncation: bool = False):
        if not isinstance(context, TLSContext):
            raise TLSConfigError("context must be a protocols.tls.TLSContext")
        self.transport = transport
        self.context = context
        self.server_side = context.server_side
        self.allow_truncation = allow_truncation
        conn = SSL.Connection(context.ssl_context, None)
        conn.set_app_data(self)
        self._expected_host = None
        if self.server_side:
            conn.set_accept_state()
        else:
            if context.check_hostname and not server_hostname:
                raise TLSConfigError("server_hostname is required when the context "
                                     "verifies the server")
            conn.set_connect_state()
            if server_hostname:
                host = server_hostname.rstrip(".")
                if not _is_ip(host):
                    conn.set_tlsext_host_name(host.encode("idna"))
                if context.check_hostname:
                    self._expected_host = host
        self.server_hostname = server_hostname
        self._conn = conn
        self._send_lock = greenrt.Lock()
        self._handshake_lock = greenrt.Lock()
        self._handshook = False
        self._receiving = False
        self._sending = False
        self._closed = False
        self._unwrapped = False
        self._eof_sent = False
        self._eof_received = False
        self._broken_exc: BaseException | None = None
        self._verify_failure = None
        self._alpn_failure = None
        self.bytes_sent = 0
        self.bytes_received = 0
        self.records_flushed = 0

    # -- state ----------------------------------------------------------------------

    @property
    def broken(self) -> bool:
        return self._broken_exc is not None

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def handshake_done(self) -> bool:
        return self._handshook

    def _check(self, op: str) -> None:
        if self._closed:
            raise ClosedResourceError(f"{op} on a closed TLS stream")
        if self._broken_exc is not None:
            exc = BrokenStreamError(f"{op} on a broken TLS stream: {self._broken_exc}")
            exc.__cause__ = self._broken_exc
            raise exc

    def _break(self, exc: BaseException) -> BaseException:
        if self._broken_exc is None:
            self._broken_exc = exc
            try:
                hub = lowlevel.current_hub()
                if hub._tracing:
                    hub.emit("protocol.error", protocol="tls", error=type(exc).__name__,
                             message=str(exc)[:200])
            except Exception:  # noqa: BLE001 - tracing must never mask the error
                pass
        return exc

    def _interrupted(self, op: str, e: BaseException) -> None:
        if self._broken_exc is None and not self._closed:
            self._break(BrokenStreamError(f"{op} interrupted by {type(e).__name__}"))

    # -- ciphertext plumbing ----------------------------------------------------------

    def _flush(self) -> None:
        """Send every pending outgoing record. A checkpoint (lock + transport)."""
        with self._send_lock:
            conn = self._conn
            while True:
                try:
                    data = conn.bio_read(WRITE_CHUNK)
                except SSL.WantReadError:
                    return
                try:
                    self.transport.send_all(data)
                except BaseException as e:
                    self._interrupted("sending TLS records", e)
                    raise
                self.records_flushed += 1

    def _flush_quietly(self) -> None:
        """Best effort (an alert after a failed handshake): never raises Exceptions."""
        try:
            self._flush()
        except Exception:  # noqa: BLE001 - the handshake error is what matters
            pass

    def _feed(self, during: str) -> None:
        data = self.transport.recv(READ_SIZE)
        if not data:
            self._eof_received = True
            if during == "handshake":
                raise TLSHandshakeError("the peer closed the connection during the TLS "
                                        "handshake")
            raise TLSTruncationError("the transport reached EOF without a TLS close_notify")
        self._conn.bio_write(data)

    # -- handshake ------------------------------------------------------------------

    def handshake(self, timeout: float | None = None) -> None:
        """Perform the TLS handshake (no-op if done). A checkpoint.

        ``timeout`` bounds it (``TooSlowError``). Failures raise
        ``TLSHandshakeError`` (``TLSCertificateError`` for rejected certificates),
        after sending the alert to the peer. A cancelled or failed handshake leaves
        the stream broken.
        """
        lowlevel.enter_checkpoint()
        self._check("handshake")
        if self._handshook:
            return
        if timeout is None:
            self._handshake()
        else:
            with greenrt.fail_after(timeout):
                self._handshake()

    def _handshake(self) -> None:
        with self._handshake_lock:
            if self._handshook:
                return
            self._check("handshake")
            try:
                self._handshake_loop()
            except BaseException as e:
                if isinstance(e, TLSError):
                    self._break(e)
                else:
                    self._interrupted("handshake", e)
                raise

    def _handshake_loop(self) -> None:
        conn = self._conn
        while True:
            try:
                conn.do_handshake()
                break
            except SSL.WantReadError:
                self._flush()
                self._feed("handshake")
            except NoApplicationProtocol as e:
                self._flush_quietly()
                raise TLSHandshakeError(str(e), alert=120, sent=True) from None
            except SSL.Error as e:
                self._flush_quietly()
                raise self._handshake_error(e) from e
        self._flush()
        self._post_handshake()
        self._handshook = True

    def _handshake_error(self, e: SSL.Error) -> TLSHandshakeError:
        reasons = _reasons(e)
        text = "; ".join(reasons) or str(e)
        vf = self._verify_failure
        if vf is not None:
            code, depth, why, subject = vf
            return TLSCertificateError(
                f"peer certificate rejected: {why} (depth {depth}, subject {subject})",
                verify_code=code, alert=None, sent=True)
        for r in reasons:
            low = r.lower()
            if "alert" in low:
                for name, num in _ALERTS.items():
                    if low.endswith(name):
                        cls = TLSCertificateError if num in _CERT_ALERTS else TLSHandshakeError
                        return cls(f"the peer aborted the TLS handshake: alert {num} ({name})",
                                   alert=num, sent=False)
            if "peer did not return a certificate" in low or "certificate required" in low:
                return TLSCertificateError("the client presented no certificate (mTLS "
                                           "requires one)", alert=116, sent=True)
            if ("unsupported protocol" in low or "wrong version number" in low
                    or "no protocols available" in low or "version too low" in low):
                return TLSHandshakeError(f"the peer only offers TLS versions we refuse: {r}",
                                         alert=70, sent=True)
            if "no shared cipher" in low:
                return TLSHandshakeError("no shared cipher suite", alert=40, sent=True)
        return TLSHandshakeError(f"TLS handshake failed: {text}")

    def _post_handshake(self) -> None:
        conn = self._conn
        ctx = self.context
        if not self.server_side:
            if ctx.check_hostname:
                cert = conn.get_peer_certificate(as_cryptography=True)
                if cert is None:
                    raise TLSCertificateError("the server presented no certificate")
                from ._config import check_host

                why = check_host(cert, self._expected_host)
                if why is not None:
                    raise TLSCertificateError(why)
            if ctx.require_alpn and ctx.alpn and not conn.get_alpn_proto_negotiated():
                raise TLSHandshakeError("the server selected no ALPN protocol")

    def _ensure_handshake(self) -> None:
        if not self._handshook:
            self._handshake()

    # -- data -----------------------------------------------------------------------

    def recv(self, max_bytes: int = 65536) -> bytes:
        """Receive up to ``max_bytes`` bytes of plaintext; ``b""`` after the peer's
        close_notify. A checkpoint; a cancelled ``recv`` loses no data. Raises
        ``TLSTruncationError`` on EOF without close_notify, ``TLSError`` on a protocol
        error (both break the stream)."""
        lowlevel.enter_checkpoint()
        self._check("recv")
        if max_bytes > MAX_PLAINTEXT_READ:
            max_bytes = MAX_PLAINTEXT_READ  # pyOpenSSL allocates max_bytes up front
        elif max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        self._ensure_handshake()
        if self._receiving:
            raise BusyResourceError("another task is already receiving on this stream")
        self._receiving = True
        conn = self._conn
        try:
            while True:
                try:
                    data = conn.recv(max_bytes)
                    self.bytes_received += len(data)
                    return data
                except SSL.WantReadError:
                    pass
                except SSL.ZeroReturnError:
                    self._eof_received = True
                    return b""
                except SSL.Error as e:
                    raise self._break(TLSError(f"TLS error while receiving: "
                                               f"{'; '.join(_reasons(e))}")) from e
                if not self._send_lock.locked():
                    self._flush()
                try:
                    self._feed("recv")
                except TLSTruncationError as e:
                    if self.allow_truncation:
                        return b""
                    raise self._break(e) from None
                except BrokenStreamError as e:  # the transport failed (reset...)
                    raise self._break(e) from None
        finally:
            self._receiving = False

    def has_unread(self) -> bool:
        """See ``greenrt.net.Stream.has_unread``: decrypted bytes pyOpenSSL holds, or
        raw bytes on the transport (a TLS record not yet processed; counted as unread,
        which may discard a connection that only had a late session ticket, never the
        other way round). Not a checkpoint."""
        if self.closed or self.broken:
            return True
        if self._conn.pending() > 0:
            return True
        return self.transport.has_unread()

    def send_all(self, data) -> None:
        """Encrypt and send every byte of ``data``. A checkpoint. Interrupted after
        encryption started (cancelled, or the transport failed), the stream is
        broken; cancelled at entry, nothing was sent."""
        lowlevel.enter_checkpoint()
        self._check("send_all")
        self._ensure_handshake()
        if self._sending:
            raise BusyResourceError("another task is already sending on this stream")
        if self._eof_sent:
            raise ClosedResourceError("send_all after send_eof (close_notify was sent)")
        view = memoryview(data).cast("B")
        n = len(view)
        if n == 0:
            return
        self._sending = True
        conn = self._conn
        try:
            off = 0
            while off < n:
                chunk = view[off:off + WRITE_CHUNK]
                try:
                    conn.sendall(chunk)
                except SSL.Error as e:
                    raise self._break(TLSError(f"TLS error while sending: "
                                               f"{'; '.join(_reasons(e))}")) from e
                off += len(chunk)
                self._flush()
            self.bytes_sent += n
        except BaseException as e:
            self._interrupted("send_all", e)
            raise
        finally:
            self._sending = False

    def send_eof(self) -> None:
        """Send close_notify (TLS's end of data) and keep receiving. A checkpoint;
        idempotent. TLS 1.3 peers may keep sending; TLS 1.2 peers usually answer with
        their own close_notify."""
        lowlevel.enter_checkpoint()
        self._check("send_eof")
        self._ensure_handshake()
        if self._eof_sent:
            return
        if self._sending:
            raise BusyResourceError("send_eof while another task is sending")
        self._eof_sent = True
        try:
            self._conn.shutdown()
        except SSL.Error as e:
            raise self._break(TLSError(f"TLS error in shutdown: {e}")) from e
        self._flush()

    def unwrap(self) -> tuple[Stream, bytes]:
        """Finish TLS cleanly and return ``(transport, trailing_bytes)``: send
        close_notify, wait for the peer's, and hand back the transport with any bytes
        that followed the peer's close_notify. A checkpoint. The TLS stream is closed
        afterwards (the transport is not). Application data arriving meanwhile is an
        error (``TLSError``): unwrap only when the peer is done sending."""
        lowlevel.enter_checkpoint()
        self._check("unwrap")
        self._ensure_handshake()
        if self._receiving or self._sending:
            raise BusyResourceError("unwrap while another task uses the stream")
        conn = self._conn
        self._receiving = self._sending = True
        try:
            if not self._eof_sent:
                self._eof_sent = True
                conn.shutdown()
            self._flush()
            buf = bytearray()
            while not (conn.get_shutdown() & SSL.RECEIVED_SHUTDOWN):
                try:
                    stray = conn.recv(READ_SIZE)
                    raise self._break(TLSError(f"{len(stray)} bytes of application data "
                                               f"arrived while unwrapping"))
                except SSL.WantReadError:
                    pass
                except SSL.ZeroReturnError:
                    break
                # Feed exactly one record so that what follows close_notify stays ours.
                while len(buf) < 5 or len(buf) < 5 + int.from_bytes(buf[3:5], "big"):
                    more = self.transport.recv(READ_SIZE)
                    if not more:
                        raise self._break(TLSTruncationError(
                            "EOF while waiting for the peer's close_notify"))
                    buf += more
                end = 5 + int.from_bytes(buf[3:5], "big")
                conn.bio_write(bytes(buf[:end]))
                del buf[:end]
        except SSL.Error as e:
            raise self._break(TLSError(f"TLS error while unwrapping: {e}")) from e
        except BaseException as e:
            self._interrupted("unwrap", e)
            raise
        finally:
            self._receiving = self._sending = False
        self._unwrapped = True
        self._closed = True
        return self.transport, bytes(buf)

    def close(self) -> None:
        """Close the TLS stream and its transport. Never blocks, not a checkpoint:
        close_notify is sent only if the transport takes it at once."""
        if self._closed:
            return
        self._closed = True
        try:
            if (self._handshook and self._broken_exc is None and not self._eof_sent
                    and not self._sending and not self._send_lock.locked()):
                send_nowait = getattr(self.transport, "send_nowait", None)
                if send_nowait is not None:
                    self._eof_sent = True
                    self._conn.shutdown()
                    try:
                        data = self._conn.bio_read(WRITE_CHUNK)
                    except SSL.WantReadError:
                        data = b""
                    if data:
                        send_nowait(data)
        except Exception:  # noqa: BLE001 - close is best effort and must not raise
            pass
        finally:
            self.transport.close()

    # -- information ----------------------------------------------------------------

    @property
    def selected_alpn(self) -> str | None:
        """The negotiated ALPN protocol (``"h2"``, ``"http/1.1"``...) or ``None``."""
        p = self._conn.get_alpn_proto_negotiated()
        return p.decode("ascii", "replace") if p else None

    @property
    def tls_version(self) -> str | None:
        """``"TLSv1.3"``, ``"TLSv1.2"`` once the handshake is done."""
        return self._conn.get_protocol_version_name() if self._handshook else None

    @property
    def cipher(self) -> str | None:
        return self._conn.get_cipher_name()

    @property
    def requested_server_name(self) -> str | None:
        """Server side: the SNI name the client asked for, or ``None``."""
        n = self._conn.get_servername()
        return n.decode("idna") if n else None

    @property
    def peer_certificate(self):
        """The peer's leaf certificate (``cryptography.x509.Certificate``) or ``None``
        (a server without mTLS gets ``None``)."""
        return self._conn.get_peer_certificate(as_cryptography=True)

    @property
    def peer_certificate_chain(self) -> list:
        return self._conn.get_peer_cert_chain(as_cryptography=True) or []

    @property
    def peer_identity(self) -> dict | None:
        """The peer's identity from its certificate: ``subject`` (RFC 4514),
        ``common_name``, ``dns_names``, ``ip_addresses``, ``uris``; ``None`` if the
        peer presented no certificate. With mTLS this is the verified client."""
        cert = self.peer_certificate
        if cert is None:
            return None
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        ident = {"subject": cert.subject.rfc4514_string(),
                 "common_name": cns[0].value if cns else None,
                 "dns_names": [], "ip_addresses": [], "uris": []}
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            ident["dns_names"] = san.get_values_for_type(x509.DNSName)
            ident["ip_addresses"] = [str(i) for i in san.get_values_for_type(x509.IPAddress)]
            ident["uris"] = san.get_values_for_type(x509.UniformResourceIdentifier)
        except x509.ExtensionNotFound:
            pass
        return ident

    @property
    def local_address(self):
        return self.transport.local_address

    @property
    def peer_address(self):
        return self.transport.peer_address

    def setsockopt(self, level: int, option: int, value) -> None:
        self.transport.setsockopt(level, option, value)

    def getsockopt(self, level: int, option: int, buflen: int = 0):
        return self.transport.getsockopt(level, option, buflen)

    def statistics(self) -> dict:
        return {
            "bytes_sent": self.bytes_sent, "bytes_received": self.bytes_received,
            "records_flushed": self.records_flushed, "handshake_done": self._handshook,
            "tls_version": self.tls_version, "alpn": self.selected_alpn,
            "broken": self.broken, "closed": self._closed, "eof_sent": self._eof_sent,
            "eof_received": self._eof_received, "transport": self.transport.statistics(),
        }

    def __repr__(self) -> str:
        side = "server" if self.server_side else "client"
        return (f"<TLSStream {side} {self.tls_version or 'no handshake'} "
                f"alpn={self.selected_alpn!r} broken={self.broken} closed={self._closed}>")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False
