"""JetStream on the core client: stream and consumer management, publish with a
dedup id and an ack, pull consumers whose messages are obligations, ordered consumers,
and key-value buckets; object stores are in ``objectstore``.

Everything is JSON request/reply on ``$JS.API.*`` subjects over ``Client.request``,
so each call is a checkpoint with the request's budget (``timeout``), and an API
error is a ``JetStreamError`` carrying the server's ``code``/``err_code``/
``description``. A response that is not a JSON object is a ``JetStreamError`` with
``code='bad_response'`` (never a ``JSONDecodeError``).

Acks are obligations. Each message returned by ``PullSubscription.fetch`` holds a
``greenrt`` obligation of kind ``ack`` owned by the fetching task; ``ack``, ``nak``
and ``term`` resolve it (``in_progress`` extends the server's ack wait and keeps it
open). A fetched message that is neither acked nor nacked when its task ends is an
obligation leak: reported by the runtime (``obligation.leak`` trace event, the task's
outcome becomes ``ObligationLeak`` under the default policy) and the message is
nacked so the server redelivers it at once. A *cancelled* ``fetch`` nacks the messages
it had collected and returns none: nothing is left un-acked without a report.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import greenrt
from greenrt.protocols.base.events import emit_event

from . import codec
from .client import Client, EndOfSubscription, Message, Subscription, _HeaderedMessage
from .errors import (
    ERR_NO_MESSAGE,
    ERR_WRONG_LAST_SEQ,
    JetStreamError,
    KeyNotFound,
    KeyWrongRevision,
    NatsError,
    UsageError,
)
from .objectstore import ObjectStore, valid_bucket

__all__ = ["JetStream", "JsMessage", "KeyValue", "KvEntry", "OrderedConsumer", "PubAck",
           "PullSubscription"]

_NAME = re.compile(r"^[^.*>\s]+$")
_KEY = re.compile(r"^[-/_=.a-zA-Z0-9]+$")
_ERR_STREAM_NOT_FOUND = 10059


@dataclass(frozen=True)
class PubAck:
    stream: str
    seq: int
    duplicate: bool = False
    domain: str | None = None


@dataclass(frozen=True)
class Metadata:
    """From a JetStream message's reply subject (``$JS.ACK...``)."""

    stream: str
    consumer: str
    num_delivered: int
    stream_seq: int
    consumer_seq: int
    timestamp_ns: int
    num_pending: int


def parse_metadata(reply: str | None) -> Metadata | None:
    """The metadata of ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.
    <pending>`` (and the v2 form with domain and account hash); ``None`` if the
    subject is not an ack subject or is malformed."""
    if not reply or not reply.startswith("$JS.ACK."):
        return None
    t = reply.split(".")
    if len(t) == 9:
        base = 2
    elif len(t) >= 12:
        base = 4
    else:
        return None
    try:
        nums = [int(x) for x in t[base + 2:base + 7]]
    except ValueError:
        return None
    return Metadata(t[base], t[base + 1], *nums)


def _name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise UsageError(f"nats: invalid {kind} name {value!r}")
    return value


class JsMessage(_HeaderedMessage):
    """A message from a JetStream consumer, with ack methods and ``metadata``."""

    __slots__ = ("metadata", "_ob", "_done")

    def __init__(self, m: Message, ob=None):
        super().__init__(m._client, m.subject, m.sid, m.reply, m.data, m.headers, m.status,
                         m.description)
        self.metadata = parse_metadata(m.reply)
        self._ob = ob
        self._done = False

    def _reply(self, body: bytes) -> None:
        if self._done:
            raise UsageError("nats: message already acknowledged")
        if not self.reply:
            raise UsageError("nats: message has no ack subject")
        self._client.publish_nowait(self.reply, body)

    def _resolve(self) -> None:
        self._done = True
        ob, self._ob = self._ob, None
        if ob is not None and not ob.resolved:
            ob.commit()

    def ack(self) -> None:
        """Acknowledge (``+ACK``); resolves the obligation. Not a checkpoint (an ack
        resolves an obligation, so a pending cancellation does not interrupt it): the
        ack is buffered for the flusher; ``PendingBufferFull``/``ClientClosed`` if it
        cannot be, and then the obligation stays open."""
        self._reply(b"+ACK")
        self._resolve()

    def ack_sync(self, timeout: float = 5.0) -> None:
        """Acknowledge and wait for the server to confirm it (a request)."""
        if self._done:
            raise UsageError("nats: message already acknowledged")
        self._client.request(self.reply, b"+ACK", timeout=timeout)
        self._resolve()

    def nak(self, delay: float | None = None) -> None:
        """Negative ack (``-NAK``, redelivery after ``delay`` seconds if given);
        resolves the obligation. Not a checkpoint."""
        body = b"-NAK" if delay is None else b'-NAK {"delay":%d}' % int(delay * 1e9)
        self._reply(body)
        self._resolve()

    def in_progress(self) -> None:
        """Working on it (``+WPI``): resets the ack wait; the obligation stays open.
        Not a checkpoint."""
        if self._done:
            raise UsageError("nats: message already acknowledged")
        self._client.publish_nowait(self.reply, b"+WPI")

    def term(self) -> None:
        """Never redeliver (``+TERM``); resolves the obligation. Not a checkpoint."""
        self._reply(b"+TERM")
        self._resolve()

    def _nak_nowait(self, reason: Any = None) -> None:
        """Best-effort NAK without a checkpoint (leak and cancellation paths)."""
        if self._done or not self.reply:
            return
        self._done = True
        try:
            self._client._append_nowait(codec.encode_pub(self.reply, b"-NAK"))
        except Exception:
            pass


class JetStream:
    """A JetStream context over a connected :class:`Client`."""

    def __init__(self, client: Client, *, prefix: str = "$JS.API", timeout: float = 5.0):
        self.client = client
        self.prefix = prefix
        self.timeout = timeout

    # -- the API -----------------------------------------------------------------------------

    def _api(self, subject: str, body: dict | None = None, timeout: float | None = None) -> dict:
        payload = b"" if body is None else json.dumps(body).encode()
        m = self.client.request(f"{self.prefix}.{subject}", payload,
                                timeout=self.timeout if timeout is None else timeout)
        return _response(m.data)

    def _api_nowait(self, subject: str, body: dict | None = None) -> None:
        """Send an API request without waiting for its reply (the server acts on it
        all the same). Not a checkpoint: for clean-up that must go out while a
        cancellation unwinds. Nothing is sent once the client is closed (or the
        pending buffer is full while reconnecting)."""
        payload = b"" if body is None else json.dumps(body).encode()
        try:
            self.client.publish_nowait(f"{self.prefix}.{subject}", payload)
        except NatsError:
            pass

    def account_info(self) -> dict:
        return self._api("INFO")

    def add_stream(self, name: str, subjects: list[str] | None = None, **config: Any) -> dict:
        """Create a stream (``STREAM.CREATE``); ``config`` fields are the server's
        (``storage``, ``max_msgs``, ``max_msgs_per_subject``, ``duplicate_window``
        in nanoseconds...). Returns the stream info."""
        cfg = {"name": _name("stream", name), "subjects": subjects or [name], **config}
        cfg.setdefault("storage", "file")
        cfg.setdefault("retention", "limits")
        cfg.setdefault("num_replicas", 1)
        return self._api(f"STREAM.CREATE.{name}", cfg)

    def update_stream(self, name: str, **config: Any) -> dict:
        cfg = {**self.stream_info(name)["config"], **config}
        return self._api(f"STREAM.UPDATE.{_name('stream', name)}", cfg)

    def stream_info(self, name: str) -> dict:
        return self._api(f"STREAM.INFO.{_name('stream', name)}")

    def delete_stream(self, name: str) -> bool:
        return bool(self._api(f"STREAM.DELETE.{_name('stream', name)}").get("success"))

    def purge_stream(self, name: str) -> int:
        return int(self._api(f"STREAM.PURGE.{_name('stream', name)}").get("purged", 0))

    def stream_names(self) -> list[str]:
        return list(self._api("STREAM.NAMES").get("streams") or [])

    def add_consumer(self, stream: str, durable_name: str | None = None, **config: Any) -> dict:
        """Create a consumer on ``stream`` (durable if ``durable_name``); ``config``
        fields are the server's (``ack_policy``, ``filter_subject``, ``deliver_policy``,
        ``ack_wait`` in ns, ``max_deliver``, ``deliver_subject`` for push...)."""
        cfg = dict(config)
        cfg.setdefault("ack_policy", "explicit")
        cfg.setdefault("deliver_policy", "all")
        if durable_name:
            cfg["durable_name"] = _name("consumer", durable_name)
            subj = f"CONSUMER.DURABLE.CREATE.{_name('stream', stream)}.{durable_name}"
        else:
            subj = f"CONSUMER.CREATE.{_name('stream', stream)}"
        return self._api(subj, {"stream_name": stream, "config": cfg})

    def consumer_info(self, stream: str, consumer: str) -> dict:
        return self._api(f"CONSUMER.INFO.{_name('stream', stream)}.{_name('consumer', consumer)}")

    def delete_consumer(self, stream: str, consumer: str) -> bool:
        return bool(self._api(f"CONSUMER.DELETE.{_name('stream', stream)}."
                              f"{_name('consumer', consumer)}").get("success"))

    # -- publishing ---------------------------------------------------------------------------

    def publish(self, subject: str, payload: bytes = b"", *, msg_id: str | None = None,
                headers: dict | None = None, expected_stream: str | None = None,
                expected_last_seq: int | None = None,
                expected_last_subject_seq: int | None = None,
                timeout: float | None = None) -> PubAck:
        """Publish to a stream and wait for its ack (a checkpoint, within ``timeout``).
        ``msg_id`` sets ``Nats-Msg-Id``: within the stream's duplicate window a second
        publish with the same id is not stored again (``PubAck.duplicate``). A cancelled
        or timed-out publish may or may not have been stored; retry it with the same
        ``msg_id`` to make that safe."""
        h = dict(headers or {})
        if msg_id is not None:
            h["Nats-Msg-Id"] = msg_id
        if expected_stream is not None:
            h["Nats-Expected-Stream"] = expected_stream
        if expected_last_seq is not None:
            h["Nats-Expected-Last-Sequence"] = str(expected_last_seq)
        if expected_last_subject_seq is not None:
            h["Nats-Expected-Last-Subject-Sequence"] = str(expected_last_subject_seq)
        m = self.client.request(subject, payload, headers=h or None,
                                timeout=self.timeout if timeout is None else timeout)
        d = _response(m.data)
        try:
            return PubAck(str(d["stream"]), int(d["seq"]), bool(d.get("duplicate", False)),
                          d.get("domain"))
        except (KeyError, TypeError, ValueError):
            raise JetStreamError("nats: malformed JetStream publish ack",
                                 code="bad_response") from None

    # -- consumers -----------------------------------------------------------------------------

    def pull_subscribe(self, stream: str, durable: str, *, create: bool = True,
                       **config: Any) -> PullSubscription:
        """A pull subscription on durable consumer ``durable`` of ``stream`` (created
        with ``config`` when ``create``)."""
        if create:
            self.add_consumer(stream, durable, **config)
        return PullSubscription(self, stream, durable)

    def ordered_consumer(self, stream: str, *, filter_subject: str | None = None,
                         deliver_policy: str = "all", headers_only: bool = False,
                         **config: Any) -> OrderedConsumer:
        return OrderedConsumer(self, stream, filter_subject, deliver_policy, headers_only, config)

    # -- key-value --------------------------------------------------------------------------

    def create_key_value(self, bucket: str, *, history: int = 1, ttl: float | None = None,
                         max_value_size: int = -1, storage: str = "file") -> KeyValue:
        """Create (or bind to an identical) key-value bucket ``bucket``."""
        if not _KEY.match(bucket) or "." in bucket:
            raise UsageError(f"nats: invalid bucket name {bucket!r}")
        if not 1 <= history <= 64:
            raise UsageError("nats: history must be in 1..64")
        self.add_stream(f"KV_{bucket}", [f"$KV.{bucket}.>"], max_msgs_per_subject=history,
                        discard="new", deny_delete=True, deny_purge=False,
                        allow_rollup_hdrs=True, allow_direct=True, storage=storage,
                        max_msg_size=max_value_size,
                        max_age=0 if ttl is None else int(ttl * 1e9),
                        duplicate_window=120 * 10**9)
        return KeyValue(self, bucket)

    def key_value(self, bucket: str) -> KeyValue:
        """Bind to an existing bucket (``JetStreamError`` if it does not exist)."""
        self.stream_info(f"KV_{bucket}")
        return KeyValue(self, bucket)

    def delete_key_value(self, bucket: str) -> bool:
        return self.delete_stream(f"KV_{bucket}")

    # -- object store -----------------------------------------------------------------------

    def create_object_store(self, bucket: str, *, description: str | None = None,
                            max_bytes: int = -1, storage: str = "file",
                            ttl: float | None = None) -> ObjectStore:
        """Create (or bind to an identical) object store ``bucket``: stream
        ``OBJ_<bucket>`` in the layout nats.go and nats-py use. A checkpoint."""
        valid_bucket(bucket)
        cfg: dict[str, Any] = {}
        if description is not None:
            cfg["description"] = description
        self.add_stream(f"OBJ_{bucket}", [f"$O.{bucket}.C.>", f"$O.{bucket}.M.>"],
                        discard="new", allow_rollup_hdrs=True, allow_direct=True,
                        storage=storage, max_bytes=max_bytes or -1,
                        max_age=0 if ttl is None else int(ttl * 1e9), **cfg)
        return ObjectStore(self, bucket)

    def object_store(self, bucket: str) -> ObjectStore:
        """Bind to an existing object store (``JetStreamError`` if it does not exist).
        A checkpoint."""
        self.stream_info(f"OBJ_{valid_bucket(bucket)}")
        return ObjectStore(self, bucket)

    def delete_object_store(self, bucket: str) -> bool:
        """Delete the object store's stream (every object). A checkpoint."""
        return self.delete_stream(f"OBJ_{valid_bucket(bucket)}")


def _response(data: bytes) -> dict:
    try:
        d = json.loads(data)
    except (ValueError, RecursionError):
        raise JetStreamError("nats: JetStream response is not JSON", code="bad_response") from None
    if not isinstance(d, dict):
        raise JetStreamError("nats: JetStream response is not an object", code="bad_response")
    err = d.get("error")
    if isinstance(err, dict):
        desc = str(err.get("description", "error"))
        ec = err.get("err_code")
        cls = KeyWrongRevision if ec == ERR_WRONG_LAST_SEQ else JetStreamError
        raise cls(f"nats: JetStream: {desc}", status=err.get("code"), err_code=ec,
                  description=desc)
    return d


class PullSubscription:
    """Fetch batches from a durable pull consumer. Each ``fetch`` uses its own reply
    subject; status messages (404 no messages, 408 expired, 409) only end the fetch
    they belong to."""

    def __init__(self, js: JetStream, stream: str, consumer: str):
        self.js = js
        self.stream = stream
        self.consumer = consumer
        self._inbox = js.client.new_inbox()
        self._sub: Subscription = js.client.subscribe(self._inbox + ".*")
        self._n = 0
        self.stats = {"fetched": 0, "nacked_on_cancel": 0, "leaked": 0}

    def fetch(self, batch: int = 1, timeout: float = 5.0) -> list[JsMessage]:
        """Up to ``batch`` messages, waiting at most ``timeout`` seconds (fewer, or
        none, when the consumer has no more). A checkpoint. Each message holds an
        ``ack`` obligation of the calling task (see the module docstring); a cancelled
        fetch nacks what it collected and returns nothing."""
        if batch < 1:
            raise UsageError("nats: batch must be >= 1")
        c = self.js.client
        self._n += 1
        token = f"{self._n:x}"
        reply = f"{self._inbox}.{token}"
        expires = max(int(timeout * 1e9 * 0.9), 1_000_000)
        body = json.dumps({"batch": batch, "expires": expires}).encode()
        got: list[JsMessage] = []
        try:
            c.publish(f"{self.js.prefix}.CONSUMER.MSG.NEXT.{self.stream}.{self.consumer}", body,
                      reply=reply)
            with greenrt.move_on_after(timeout):
                while len(got) < batch:
                    m = self._sub.next_msg()
                    if m.status is not None:
                        if m.subject == reply and m.status in (404, 408, 409):
                            break
                        continue  # a status for an earlier fetch, or a heartbeat
                    got.append(self._claim(m))
        except BaseException:
            for jm in got:
                jm._nak_nowait("fetch cancelled")
                ob = jm._ob
                jm._ob = None
                if ob is not None and not ob.resolved:
                    ob.abort("fetch cancelled: nacked")
            self.stats["nacked_on_cancel"] += len(got)
            raise
        self.stats["fetched"] += len(got)
        return got

    def _claim(self, m: Message) -> JsMessage:
        jm = JsMessage(m)
        site = f"nats fetch {self.stream}/{self.consumer} seq " \
               f"{jm.metadata.stream_seq if jm.metadata else '?'}"

        def on_abort(reason, jm=jm):
            if not jm._done:  # leaked: not acked when its task ended
                self.stats["leaked"] += 1
                emit_event("nats.ack_leak", stream=self.stream, consumer=self.consumer,
                           subject=jm.subject)
                jm._nak_nowait(reason)

        jm._ob = greenrt.reserve("ack", name=site, on_abort=on_abort, stacklevel=3)
        return jm

    def unsubscribe(self) -> None:
        """Stop; messages delivered but never fetched are nacked (so redelivered)."""
        sub = self._sub
        sub.unsubscribe()
        n = 0
        while sub._q:
            m = sub._q.popleft()
            if m.status is None and m.reply:
                JsMessage(m)._nak_nowait()
                n += 1
        if n:
            emit_event("nats.unfetched_nacked", stream=self.stream, consumer=self.consumer, n=n)


class OrderedConsumer:
    """An ordered, ephemeral push consumer: messages of ``stream`` (matching
    ``filter_subject``) in stream order, without gaps. It answers flow control, and on
    a gap in the consumer sequence (or a heartbeat showing one) it recreates the
    consumer from the last stream sequence seen. Iterate it, or call ``next_msg``."""

    def __init__(self, js: JetStream, stream: str, filter_subject: str | None,
                 deliver_policy: str, headers_only: bool, config: dict):
        self.js = js
        self.stream = stream
        self.filter_subject = filter_subject
        self.deliver_policy = deliver_policy
        self.headers_only = headers_only
        self.config = config
        self.last_stream_seq = 0
        self._cseq = 0
        self.resets = 0
        self.consumer_name: str | None = None
        self._sub: Subscription | None = None
        self._create(deliver_policy, None)

    def _create(self, policy: str, start_seq: int | None) -> None:
        c = self.js.client
        if self._sub is not None:
            self._sub.unsubscribe()
        inbox = c.new_inbox()
        self._sub = c.subscribe(inbox)
        cfg: dict[str, Any] = {"deliver_subject": inbox, "ack_policy": "none", "max_deliver": 1,
                               "flow_control": True, "idle_heartbeat": 5 * 10**9,
                               "mem_storage": True, "num_replicas": 1,
                               "headers_only": self.headers_only, **self.config}
        if self.filter_subject:
            cfg["filter_subject"] = self.filter_subject
        if start_seq is not None:
            cfg["deliver_policy"] = "by_start_sequence"
            cfg["opt_start_seq"] = start_seq
        else:
            cfg["deliver_policy"] = policy
        info = self.js._api(f"CONSUMER.CREATE.{self.stream}",
                            {"stream_name": self.stream, "config": cfg})
        self.consumer_name = info.get("name")
        self._cseq = 0

    def _reset(self) -> None:
        self.resets += 1
        emit_event("nats.ordered_reset", stream=self.stream, last=self.last_stream_seq)
        old = self.consumer_name
        self._create(self.deliver_policy, self.last_stream_seq + 1)
        if old:
            self._forget(old)

    def next_msg(self, timeout: float | None = None) -> JsMessage:
        """The next message in stream order; a checkpoint (``RequestTimeout`` after
        ``timeout``)."""
        deadline = None if timeout is None else greenrt.now() + timeout
        while True:
            left = None if deadline is None else max(deadline - greenrt.now(), 0)
            m = self._sub.next_msg(timeout=left)
            if m.status is not None:
                if m.status == 100:
                    if m.reply:  # flow control: answer it
                        self.js.client.publish(m.reply, b"")
                    stalled = (m.headers or {}).get("Nats-Consumer-Stalled")
                    if stalled:
                        self.js.client.publish(stalled, b"")
                    last = (m.headers or {}).get("Nats-Last-Consumer")
                    if last is not None and last.isdigit() and int(last) != self._cseq:
                        self._reset()
                continue
            md = parse_metadata(m.reply)
            if md is None:
                continue
            if md.consumer_seq != self._cseq + 1:
                self._reset()
                continue
            self._cseq = md.consumer_seq
            self.last_stream_seq = md.stream_seq
            jm = JsMessage(m)
            jm._done = True  # ack policy none
            return jm

    def __iter__(self) -> Iterator[JsMessage]:
        while True:
            try:
                yield self.next_msg()
            except EndOfSubscription:
                return

    def stop(self) -> None:
        """Unsubscribe and delete the consumer. Not a checkpoint, so it works while a
        cancellation unwinds (a ``finally``): the delete is sent without waiting for
        its reply (the server acts on it all the same); were it lost with the
        connection, the server drops an ephemeral consumer that lost its interest."""
        if self._sub is not None:
            self._sub.unsubscribe()
        if self.consumer_name:
            self._forget(self.consumer_name)
            self.consumer_name = None

    def _forget(self, name: str) -> None:
        """Delete consumer ``name`` without waiting for the reply (not a checkpoint;
        not sent once closed: the server drops the consumer with its interest)."""
        self.js._api_nowait(f"CONSUMER.DELETE.{self.stream}.{_name('consumer', name)}")


@dataclass(frozen=True)
class KvEntry:
    bucket: str
    key: str
    value: bytes
    revision: int
    operation: str = "PUT"  # PUT, DEL, PURGE
    created: float | None = None


class KeyValue:
    """A key-value bucket (stream ``KV_<bucket>``, subjects ``$KV.<bucket>.<key>``)."""

    def __init__(self, js: JetStream, bucket: str):
        self.js = js
        self.bucket = bucket
        self.stream = f"KV_{bucket}"

    def _subject(self, key: str) -> str:
        if not isinstance(key, str) or not _KEY.match(key) or key.startswith(".") or \
                key.endswith(".") or ".." in key:
            raise UsageError(f"nats: invalid key {key!r}")
        return f"$KV.{self.bucket}.{key}"

    def get(self, key: str, revision: int | None = None) -> KvEntry:
        """The current entry of ``key`` (or the one at ``revision``); ``KeyNotFound`` if
        there is none or it was deleted. A checkpoint."""
        subj = self._subject(key)
        body: dict = {"seq": revision} if revision is not None else {"last_by_subj": subj}
        try:
            d = self.js._api(f"STREAM.MSG.GET.{self.stream}", body)
        except JetStreamError as e:
            if e.err_code == ERR_NO_MESSAGE or e.status == 404:
                raise KeyNotFound(f"nats: key {key!r} not found in {self.bucket!r}",
                                  status=404, err_code=e.err_code) from None
            raise
        msg = d.get("message") or {}
        try:
            data = base64.b64decode(msg.get("data") or "")
            hdrs = base64.b64decode(msg.get("hdrs") or "")
            seq = int(msg["seq"])
        except (KeyError, TypeError, ValueError):
            raise JetStreamError("nats: malformed stored message", code="bad_response") from None
        if revision is not None and msg.get("subject") != subj:
            raise KeyNotFound(f"nats: revision {revision} is not of key {key!r}")
        op = "PUT"
        if hdrs:
            try:
                _, _, pairs = codec.parse_headers(hdrs)
            except Exception:
                raise JetStreamError("nats: malformed stored headers", code="bad_response") from None
            op = dict(pairs).get("KV-Operation", "PUT")
        if op in ("DEL", "PURGE"):
            raise KeyNotFound(f"nats: key {key!r} was deleted", status=404)
        return KvEntry(self.bucket, key, data, seq, op)

    def put(self, key: str, value: bytes) -> int:
        """Store ``value``; returns the new revision. A checkpoint; cancelled, the
        value may or may not have been stored (as any publish awaiting its ack)."""
        return self.js.publish(self._subject(key), value).seq

    def create(self, key: str, value: bytes) -> int:
        """Store only if ``key`` has no value (``KeyWrongRevision`` otherwise); a
        deleted or purged key counts as having none. A checkpoint, as ``put``."""
        try:
            return self.update(key, value, 0)
        except KeyWrongRevision:
            try:
                self.get(key)
            except KeyNotFound:  # deleted: the last entry is a tombstone
                last = self._last_revision(key)
                return self.update(key, value, last)
            raise

    def _last_revision(self, key: str) -> int:
        d = self.js._api(f"STREAM.MSG.GET.{self.stream}", {"last_by_subj": self._subject(key)})
        return int((d.get("message") or {}).get("seq", 0))

    def update(self, key: str, value: bytes, last: int) -> int:
        """Store only if the key's current revision is ``last`` (compare-and-set);
        ``KeyWrongRevision`` otherwise. Returns the new revision. A checkpoint, as
        ``put``."""
        return self.js.publish(self._subject(key), value, expected_last_subject_seq=last).seq

    def delete(self, key: str) -> int:
        """Delete ``key`` (a tombstone; history is kept). Returns the tombstone's
        revision. A checkpoint, as ``put``."""
        return self.js.publish(self._subject(key), b"", headers={"KV-Operation": "DEL"}).seq

    def purge(self, key: str) -> int:
        """Delete ``key`` and its history: a purge marker that rolls up the subject,
        so the server drops every earlier entry of the key (the bucket's other keys
        are untouched). Returns the marker's revision. A checkpoint, as ``put``."""
        return self.js.publish(self._subject(key), b"",
                               headers={"KV-Operation": "PURGE", "Nats-Rollup": "sub"}).seq

    def history(self, key: str) -> list[KvEntry]:
        """Every stored entry of ``key``, oldest first, deletes and purges included
        (``operation``); at most the bucket's ``history`` of them. ``KeyNotFound`` if
        the key has no entry at all. A checkpoint; cancelled, its consumer is
        stopped and nothing else is left behind."""
        try:
            last = self._last_revision(key)
        except JetStreamError as e:
            if e.err_code == ERR_NO_MESSAGE or e.status == 404:
                raise KeyNotFound(f"nats: key {key!r} not found in {self.bucket!r}",
                                  status=404, err_code=e.err_code) from None
            raise
        oc = self.js.ordered_consumer(self.stream, filter_subject=self._subject(key),
                                      deliver_policy="all")
        out: list[KvEntry] = []
        try:
            while not out or out[-1].revision < last:
                out.append(_entry(self.bucket, oc.next_msg(timeout=self.js.timeout)))
        finally:
            oc.stop()
        return out

    def keys(self) -> list[str]:
        """The keys with a live value (reads the last entry of each subject). A
        checkpoint; cancelled, its consumer is stopped."""
        oc = self.js.ordered_consumer(self.stream, filter_subject=f"$KV.{self.bucket}.>",
                                      deliver_policy="last_per_subject", headers_only=True)
        out: dict[str, bool] = {}
        try:
            pending = self.js.stream_info(self.stream)["state"].get("num_subjects", 0)
            seen = 0
            while seen < pending:
                m = oc.next_msg(timeout=self.js.timeout)
                seen += 1
                key = m.subject[len(f"$KV.{self.bucket}."):]
                op = (m.headers or {}).get("KV-Operation", "PUT")
                out[key] = op not in ("DEL", "PURGE")
                if m.metadata and m.metadata.num_pending == 0:
                    break
        finally:
            oc.stop()
        return sorted(k for k, live in out.items() if live)

    def watch(self, key: str = ">", *, include_history: bool = False) -> KvWatcher:
        """Watch ``key`` (wildcards allowed): the current value(s) first, then every
        change, as ``KvEntry`` (deletes with ``operation='DEL'``, purges with
        ``'PURGE'``). A checkpoint (it creates the consumer); ``stop()`` ends it."""
        subj = f"$KV.{self.bucket}.{key}"
        oc = self.js.ordered_consumer(self.stream, filter_subject=subj,
                                      deliver_policy="all" if include_history else "last_per_subject")
        return KvWatcher(self, oc)


def _entry(bucket: str, m: JsMessage) -> KvEntry:
    """The ``KvEntry`` of a message read from bucket ``bucket``'s stream."""
    key = m.subject[len(f"$KV.{bucket}."):]
    op = (m.headers or {}).get("KV-Operation", "PUT")
    md = m.metadata
    return KvEntry(bucket, key, m.data, md.stream_seq if md else 0, op,
                   md.timestamp_ns / 1e9 if md else None)


class KvWatcher:
    """Iterator of :class:`KvEntry` from a :meth:`KeyValue.watch`."""

    def __init__(self, kv: KeyValue, oc: OrderedConsumer):
        self.kv = kv
        self._oc = oc

    def next(self, timeout: float | None = None) -> KvEntry:
        """The next entry; a checkpoint (``RequestTimeout`` after ``timeout``
        seconds). A cancelled call loses no entry."""
        return _entry(self.kv.bucket, self._oc.next_msg(timeout))

    def __iter__(self) -> Iterator[KvEntry]:
        while True:
            try:
                yield self.next()
            except EndOfSubscription:
                return

    def stop(self) -> None:
        self._oc.stop()

