"""One connection to one Kafka broker: requests with correlation ids, API version
negotiation, bounded frames.

``BrokerConnection.request(api, body)`` is a checkpoint. It sends one request frame
and reads frames until the one with its correlation id arrives (Kafka answers the
requests of one connection in order, so any other id is a protocol error). What a
cancellation leaves: cancelled before the request was written, nothing happened and
the connection stays usable; cancelled after it was (partly) written, the response
is still owed by the broker, so the connection is closed: the cancelled caller gets
``Cancelled``, and a later request on it is refused unsent (``KafkaConnectionError``),
so no response ever reaches a caller it was not meant for (the Kafka form of
CVE-2023-28858). An answer that does not come within
``KafkaLimits.request_timeout`` (per call: ``timeout=``) is the same case: the
connection is closed and the request raises ``KafkaOutcomeUnknown``, so a silent
broker never holds a caller past that bound. Requests on one connection are serialised by a
lock (FIFO); the producer and consumer use one connection per broker.

Version negotiation: the first request on a connection is ApiVersions at the highest
version we know (3). A broker that does not know it answers with
``UNSUPPORTED_VERSION`` (35); we then retry at v0, which every broker answers with
the version range of each API it supports (KAFKA-3652's behaviour). Every later request
uses ``min(our max, broker max)`` for its API, or raises ``BrokerError`` when the
ranges do not overlap.
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass

import greenrt
from greenrt import net

from ..base.limits import Limits
from . import codec
from ._messages import MESSAGES
from .errors import (
    KafkaConnectionError,
    KafkaOutcomeUnknown,
    KafkaProtocolError,
    broker_error,
)

__all__ = ["BrokerConnection", "KafkaLimits"]


@dataclass(frozen=True)
class KafkaLimits(Limits):
    """Limits for the Kafka client (``receive.message.max.bytes`` is librdkafka's
    name for the first)."""

    positive_ints = ("max_response_bytes", "max_decompressed_bytes")
    timeouts = ("connect_timeout", "request_timeout")
    #: largest response frame accepted; a larger size prefix closes the connection
    #: after 4 bytes, before anything is allocated
    max_response_bytes: int = 100 * 1024 * 1024
    #: cap on a gzip record section after inflation
    max_decompressed_bytes: int = 64 * 1024 * 1024
    connect_timeout: float | None = 10.0
    request_timeout: float | None = 30.0


def _our_range(api: str) -> tuple[int, int]:
    return MESSAGES[f"{api}Request"]["versions"]


class BrokerConnection:
    """A connection to one broker; see the module docstring."""

    def __init__(self, stream, *, client_id: str = "greenrt", limits: KafkaLimits | None = None):
        self._stream = stream
        self.client_id = client_id
        self.limits = limits = limits or KafkaLimits()
        self._frames = codec.FrameDecoder(limits.max_response_bytes)
        self._ids = itertools.count(1)
        self._lock = greenrt.Lock()
        self._broken: str | None = None
        #: api name -> (min, max) the broker supports
        self.broker_versions: dict[str, tuple[int, int]] = {}

    @classmethod
    def open(cls, host: str, port: int, **kw) -> BrokerConnection:
        """Connect and negotiate versions. A checkpoint; a cancellation leaves no socket."""
        limits = kw.get("limits") or KafkaLimits()
        with greenrt.fail_after(limits.connect_timeout) if limits.connect_timeout else contextlib.nullcontext():
            stream = net.open_tcp(host, port)
        conn = cls(stream, **kw)
        try:
            conn.negotiate()
        except BaseException:
            conn.close()
            raise
        return conn

    @property
    def usable(self) -> bool:
        return self._broken is None

    def close(self) -> None:
        if self._broken is None:
            self._broken = "closed"
        self._stream.close()

    def version_for(self, api: str) -> int:
        lo, hi = _our_range(api)
        blo, bhi = self.broker_versions.get(api, (lo, hi))
        v = min(hi, bhi)
        if v < max(lo, blo):
            raise broker_error(35, f"for {api}: ours {lo}-{hi}, broker's {blo}-{bhi}")
        return v

    def negotiate(self) -> None:
        """ApiVersions at our highest version, retried lower when the broker refuses it."""
        version = _our_range("ApiVersions")[1]
        body = {"client_software_name": "greenrt", "client_software_version": greenrt.__version__}
        resp = self._roundtrip("ApiVersions", version, body)
        if resp["error_code"] == 35:  # UNSUPPORTED_VERSION: every broker knows v0
            resp = self._roundtrip("ApiVersions", 0, {})
        if resp["error_code"]:
            raise broker_error(resp["error_code"], "in ApiVersions")
        by_key = {k: n for n, k in codec.API_KEYS.items()}
        self.broker_versions = {by_key[k["api_key"]]: (k["min_version"], k["max_version"])
                                for k in resp["api_keys"] if k["api_key"] in by_key}

    def request(self, api: str, body: dict, *, version: int | None = None,
                timeout: float | None = None, on_write=None) -> dict:
        """Send one request and return its decoded response (a checkpoint; see the
        module docstring for what a cancellation leaves). ``timeout`` (default: the
        limits' ``request_timeout``) bounds the wait for the answer: past it the
        connection is closed and ``KafkaOutcomeUnknown`` raised (the request was sent).
        ``on_write``, if given, is called (no arguments) just before the first byte of
        the request is handed to the socket: a caller cancelled before that call knows
        its request never left (the producer's "withdrawn" versus "unknown")."""
        return self._roundtrip(api, self.version_for(api) if version is None else version, body, timeout,
                               on_write)

    def send_only(self, api: str, body: dict, *, version: int | None = None, on_write=None) -> None:
        """Send a request the broker does not answer (Produce with acks=0); a
        checkpoint. ``on_write`` as for :meth:`request`."""
        v = self.version_for(api) if version is None else version
        with self._lock:
            self._check()
            frame = codec.encode_request(api, v, next(self._ids), self.client_id, body)
            if on_write is not None:
                on_write()
            self._write(frame)

    def _check(self) -> None:
        if self._broken is not None:
            # this request is not sent: "not sent" is what its caller must hear, even when
            # an earlier request's answer was lost with the connection (that request's
            # own caller was told; a request that never left is safe to send elsewhere)
            why = "an earlier request's answer was lost" if self._broken == "outcome" else self._broken
            raise KafkaConnectionError(f"kafka: connection unusable ({why}); request not sent")

    def _write(self, frame: bytes) -> None:
        """Write one request frame. Any failure may leave part of it at the broker, so
        the connection is closed and the outcome is unknown: ``Cancelled`` is re-raised
        as itself, an I/O error becomes ``KafkaOutcomeUnknown`` (never a bare
        ``OSError`` a caller could take for "not sent")."""
        try:
            self._stream.send_all(frame)
        except BaseException as e:
            self._broken = "outcome"
            self._stream.close()
            if isinstance(e, (OSError, greenrt.ClosedResourceError)) and not isinstance(e, KafkaOutcomeUnknown):
                raise KafkaOutcomeUnknown(f"kafka: request written in part or whole, connection lost: {e}") from e
            raise

    def _roundtrip(self, api: str, version: int, body: dict, timeout: float | None = None,
                   on_write=None) -> dict:
        if timeout is None:
            timeout = self.limits.request_timeout
        with self._lock:
            self._check()
            cid = next(self._ids)
            frame = codec.encode_request(api, version, cid, self.client_id, body)
            if on_write is not None:
                on_write()
            self._write(frame)
            try:
                raw = None
                with greenrt.move_on_after(timeout) if timeout else contextlib.nullcontext():
                    raw = self._read_frame()
                if raw is None:
                    raise KafkaConnectionError(f"kafka: no answer to {api} within {timeout} s")
                got, payload = codec.decode_response_header(raw, api, version)
                if got != cid:
                    raise KafkaProtocolError(f"response for correlation id {got}, expected {cid}",
                                             code="correlation_mismatch")
                if api == "ApiVersions" and bytes(payload[0:2]) == b"\x00\x23":
                    return _decode_unsupported_api_versions(payload, version)
                # exact=False: librdkafka's mock broker ends flexible Metadata responses
                # with one byte more than the schema; Kafka's own clients ignore
                # trailing bytes too. Everything inside the schema is still strict.
                try:
                    return codec.decode_message(f"{api}Response", version, payload, exact=False)
                except KafkaProtocolError:
                    loose = _decode_error_only(api, version, payload)
                    if loose is None:
                        raise
                    return loose
            except greenrt.Cancelled:
                self._broken = "outcome"
                self._stream.close()
                raise
            except KafkaProtocolError:
                self._broken = "protocol_error"
                self._stream.close()
                raise
            except (OSError, greenrt.ClosedResourceError) as e:
                self._broken = "outcome"
                self._stream.close()
                raise KafkaOutcomeUnknown(f"kafka: {api} sent, connection lost: {e}") from e

    def _read_frame(self) -> bytes:
        while True:
            ev = self._frames.next_event()
            if ev is not codec.NEED_DATA:
                return ev
            data = self._stream.recv(65536)
            self._frames.receive_data(data)
            if not data:
                self._frames.next_event()  # raises the truncation error if mid-frame
                raise KafkaConnectionError("kafka: broker closed the connection")


def _decode_unsupported_api_versions(payload, version: int) -> dict:
    """An ApiVersions answer with UNSUPPORTED_VERSION. Kafka brokers send it in the v0
    layout (KIP-511), librdkafka's mock broker in a layout of its own; the only fact
    we use is the error itself (the retry at v0 lists every range), so the body is
    not parsed."""
    return {"error_code": 35, "api_keys": []}


def _decode_error_only(api: str, version: int, payload) -> dict | None:
    """An error response whose body does not follow the schema, for APIs whose body
    starts with ``[throttle_time_ms] error_code``: librdkafka's mock broker answers a
    failed SyncGroup with a *null* assignment, which the schema says cannot be null.
    When the top-level error code is non-zero it is the only fact a client uses, so
    ``{"error_code": code}`` is returned (the frame was read whole, so the connection
    is in a known state). A zero error code, or an API without that prefix, keeps the
    ``KafkaProtocolError``."""
    fields = [f for f in MESSAGES[f"{api}Response"]["fields"]
              if f[2] is not None and f[2][0] <= version <= f[2][1] and f[4] is None]
    names = [f[0] for f in fields[:2]]
    if names[:1] == ["ErrorCode"]:
        at = 0
    elif names == ["ThrottleTimeMs", "ErrorCode"]:
        at = 4
    else:
        return None
    if len(payload) < at + 2:
        return None
    code = int.from_bytes(bytes(payload[at:at + 2]), "big", signed=True)
    return {"error_code": code} if code else None
