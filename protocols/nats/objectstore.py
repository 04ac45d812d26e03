"""JetStream object store: objects of any size as chunks in a stream, in the layout
nats.go and nats-py use (so buckets are shared with them).

Bucket ``b`` is stream ``OBJ_b`` with subjects ``$O.b.C.>`` (chunks) and ``$O.b.M.>``
(meta), ``discard: new`` and rollup headers allowed. An object is its chunks, published
on ``$O.b.C.<nuid>`` (a fresh nuid per put), then its meta, a JSON document on
``$O.b.M.<base64url(name)>`` published with ``Nats-Rollup: sub`` so only the latest
meta of a name is kept. The meta gives ``name``, ``bucket``, ``nuid``, ``size``,
``chunks``, ``mtime``, ``digest`` (``SHA-256=<base64url of the SHA-256>``), ``deleted``
and optionally ``description``, ``headers`` and ``options.max_chunk_size``.

What is read is not trusted: the meta is validated (``ObjectCorrupt`` with
``reason='bad_meta'``, never a ``JSONDecodeError``/``KeyError``), its ``size`` is
checked against the reader's ``max_size`` before any chunk is read
(``ObjectTooLarge``), and the chunks are checked as they arrive against ``size`` and
``chunks`` (a chunk that would go past either is refused before it is kept) and, at
the end, against the byte count, chunk count and digest (``ObjectCorrupt``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .client import EndOfSubscription
from .errors import (
    ERR_NO_MESSAGE,
    JetStreamError,
    ObjectCorrupt,
    ObjectNotFound,
    ObjectTooLarge,
    UsageError,
)

if TYPE_CHECKING:
    from .jetstream import JetStream, OrderedConsumer

__all__ = ["ObjectInfo", "ObjectStore", "ObjectWatcher", "DEFAULT_CHUNK_SIZE", "DEFAULT_MAX_SIZE"]

DEFAULT_CHUNK_SIZE = 128 * 1024
DEFAULT_MAX_SIZE = 64 * 1024 * 1024
_BUCKET = re.compile(r"^[-_a-zA-Z0-9]+$")
_NUID = re.compile(r"^[-_=a-zA-Z0-9]{1,64}$")
_DIGEST = "SHA-256="


def valid_bucket(bucket: str) -> str:
    if not isinstance(bucket, str) or not _BUCKET.match(bucket):
        raise UsageError(f"nats: invalid object store bucket name {bucket!r}")
    return bucket


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


@dataclass(frozen=True)
class ObjectInfo:
    """An object's meta (what ``info``, ``put`` and ``list`` return)."""

    name: str
    bucket: str
    nuid: str
    size: int
    chunks: int
    mtime: str = ""
    digest: str = ""
    deleted: bool = False
    description: str | None = None
    headers: dict | None = None
    max_chunk_size: int | None = None

    def as_json(self) -> bytes:
        d: dict[str, Any] = {"name": self.name, "bucket": self.bucket, "nuid": self.nuid,
                             "size": self.size, "mtime": self.mtime, "chunks": self.chunks,
                             "digest": self.digest}
        if self.deleted:
            d["deleted"] = True
        if self.description is not None:
            d["description"] = self.description
        if self.headers:
            d["headers"] = self.headers
        if self.max_chunk_size is not None:
            d["options"] = {"max_chunk_size": self.max_chunk_size}
        return json.dumps(d).encode()


def parse_meta(data: bytes) -> ObjectInfo:
    """The ``ObjectInfo`` of a stored meta; ``ObjectCorrupt(reason='bad_meta')`` if it
    is not a JSON object of the expected shape."""
    def bad(why: str) -> ObjectCorrupt:
        return ObjectCorrupt(f"nats: malformed object meta: {why}", reason="bad_meta")
    try:
        d = json.loads(data)
    except (ValueError, RecursionError):
        raise bad("not JSON") from None
    if not isinstance(d, dict):
        raise bad("not an object")

    def field(key: str, kind: type | tuple, default: Any = ...) -> Any:
        v = d.get(key)
        if v is None:
            if default is ...:
                raise bad(f"no {key!r}")
            return default
        if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
            raise bad(f"{key!r} is not {getattr(kind, '__name__', kind)}")
        return v

    deleted = field("deleted", bool, False)
    size = field("size", int, 0)
    chunks = field("chunks", int, 0)
    if size < 0 or chunks < 0 or chunks > size:
        raise bad(f"size {size}, chunks {chunks}")
    nuid = field("nuid", str, "")
    if not deleted and not _NUID.match(nuid):
        raise bad(f"invalid nuid {nuid!r}")
    headers = field("headers", dict, None)
    opts = field("options", dict, None) or {}
    mcs = opts.get("max_chunk_size")
    if mcs is not None and (not isinstance(mcs, int) or isinstance(mcs, bool)):
        raise bad("'options.max_chunk_size' is not int")
    return ObjectInfo(field("name", str), field("bucket", str, ""), nuid, size, chunks,
                      field("mtime", str, "") or "", field("digest", str, "") or "", deleted,
                      field("description", str, None), headers, mcs)


def _digest_bytes(digest: str) -> bytes:
    if not digest.upper().startswith(_DIGEST):
        raise ObjectCorrupt(f"nats: object digest {digest!r} is not SHA-256", reason="bad_meta")
    s = digest[len(_DIGEST):]
    try:
        raw = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    except (ValueError, binascii.Error):
        raise ObjectCorrupt("nats: object digest is not base64url", reason="bad_meta") from None
    if len(raw) != 32:
        raise ObjectCorrupt("nats: object digest is not 32 bytes", reason="bad_meta")
    return raw


class ObjectStore:
    """An object store bucket (stream ``OBJ_<bucket>``). Get it from
    ``JetStream.create_object_store`` or ``JetStream.object_store``."""

    def __init__(self, js: JetStream, bucket: str):
        self.js = js
        self.bucket = valid_bucket(bucket)
        self.stream = f"OBJ_{bucket}"

    def _meta_subject(self, name: str) -> str:
        if not isinstance(name, str) or not name:
            raise UsageError(f"nats: invalid object name {name!r}")
        return f"$O.{self.bucket}.M.{_b64(name.encode())}"

    def _chunk_subject(self, nuid: str) -> str:
        return f"$O.{self.bucket}.C.{nuid}"

    # -- meta ------------------------------------------------------------------------------

    def _last(self, subject: str) -> dict | None:
        """The last stored message on ``subject`` (the API's dict), or ``None``."""
        try:
            d = self.js._api(f"STREAM.MSG.GET.{self.stream}", {"last_by_subj": subject})
        except JetStreamError as e:
            if e.err_code == ERR_NO_MESSAGE:
                return None
            raise
        msg = d.get("message")
        if not isinstance(msg, dict):
            raise JetStreamError("nats: malformed stored message", code="bad_response")
        return msg

    def _info(self, name: str, *, show_deleted: bool = False) -> ObjectInfo:
        msg = self._last(self._meta_subject(name))
        if msg is None:
            raise ObjectNotFound(f"nats: object {name!r} not found in {self.bucket!r}",
                                 status=404)
        try:
            data = base64.b64decode(msg.get("data") or "")
        except (ValueError, TypeError, binascii.Error):
            raise JetStreamError("nats: malformed stored message", code="bad_response") from None
        info = parse_meta(data)
        if info.name != name:
            raise ObjectCorrupt(f"nats: the meta stored for {name!r} names {info.name!r}",
                                reason="bad_meta")
        if info.deleted and not show_deleted:
            raise ObjectNotFound(f"nats: object {name!r} was deleted", status=404)
        return info

    def info(self, name: str) -> ObjectInfo:
        """The meta of object ``name``; ``ObjectNotFound`` if there is none or it was
        deleted, ``ObjectCorrupt`` if the stored meta is malformed. A checkpoint;
        cancelled, nothing is left behind."""
        return self._info(name)

    def list(self) -> list[ObjectInfo]:
        """The live objects, by name. A checkpoint (one stream info, then an ordered
        consumer over the meta subjects); cancelled, its consumer is stopped. A
        malformed meta is an ``ObjectCorrupt``."""
        all_meta = f"$O.{self.bucket}.M.>"
        st = self.js._api(f"STREAM.INFO.{self.stream}", {"subjects_filter": all_meta})
        subjects = (st.get("state") or {}).get("subjects") or {}
        if not subjects:
            return []
        oc = self.js.ordered_consumer(self.stream, filter_subject=all_meta,
                                      deliver_policy="last_per_subject")
        out: dict[str, ObjectInfo] = {}
        try:
            seen = 0
            while seen < len(subjects):
                m = oc.next_msg(timeout=self.js.timeout)
                seen += 1
                info = parse_meta(m.data)
                out[info.name] = info
                if m.metadata and m.metadata.num_pending == 0:
                    break
        finally:
            oc.stop()
        return [out[k] for k in sorted(out) if not out[k].deleted]

    # -- put -------------------------------------------------------------------------------

    def put(self, name: str, data: bytes | Any, *, description: str | None = None,
            headers: dict | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE) -> ObjectInfo:
        """Store ``data`` (bytes, or a binary file-like read ``chunk_size`` bytes at a
        time) as object ``name``: its chunks under a fresh nuid, each published with an
        ack, then its meta (rolled up, replacing any earlier meta of ``name``); then the
        chunks of the object it replaced are purged. Returns the new meta.

        A checkpoint (each chunk's ack). If it is cancelled or fails before the meta is
        sent (a chunk's publish, a read of ``data``), its chunks are purged with a
        request sent without a checkpoint (``publish_nowait`` of a stream purge
        filtered to the new nuid), so no orphan chunks remain and the earlier object,
        if any, is untouched. Cancelled while awaiting the meta's ack, the meta may or
        may not be stored: the chunks are kept (either the new object is whole, or
        they are orphans under an unused nuid), and the old object's chunks are not
        purged (so the old object, if its meta is still the latest, stays readable)."""
        if not isinstance(chunk_size, int) or not 0 < chunk_size <= self.js.client.max_payload:
            raise UsageError(f"nats: chunk_size must be in 1..{self.js.client.max_payload}")
        meta_subj = self._meta_subject(name)
        try:
            old: ObjectInfo | None = self._info(name, show_deleted=True)
        except (ObjectNotFound, ObjectCorrupt):
            old = None
        read: Callable[[int], bytes]
        if isinstance(data, (bytes, bytearray, memoryview)):
            read = io.BytesIO(bytes(data)).read
        elif hasattr(data, "read"):
            read = data.read
        else:
            raise UsageError("nats: put needs bytes or a binary file-like object")
        nuid = secrets.token_hex(11)
        chunk_subj = self._chunk_subject(nuid)
        h = hashlib.sha256()
        size = chunks = 0
        meta_sent = False
        try:
            while True:
                chunk = read(chunk_size)
                if not chunk:
                    break
                if not isinstance(chunk, (bytes, bytearray)) or len(chunk) > chunk_size:
                    raise UsageError("nats: put's source must give bytes of at most "
                                     "chunk_size per read")
                h.update(chunk)
                self.js.publish(chunk_subj, bytes(chunk))
                size += len(chunk)
                chunks += 1
            info = ObjectInfo(name, self.bucket, nuid, size, chunks,
                              datetime.now(UTC).isoformat(), _DIGEST + _b64(h.digest()),
                              False, description, headers, chunk_size)
            meta_sent = True
            self.js.publish(meta_subj, info.as_json(), headers={"Nats-Rollup": "sub"})
        except BaseException:
            if not meta_sent and chunks:
                self._purge_nowait(chunk_subj)
            raise
        if old is not None and not old.deleted and old.nuid and old.nuid != nuid:
            self._purge(self._chunk_subject(old.nuid))
        return info

    def _purge(self, subject: str) -> None:
        self.js._api(f"STREAM.PURGE.{self.stream}", {"filter": subject})

    def _purge_nowait(self, subject: str) -> None:
        """Purge ``subject`` without waiting for the reply (not a checkpoint: it runs
        while a cancellation unwinds). Lost with the connection, the chunks stay."""
        self.js._api_nowait(f"STREAM.PURGE.{self.stream}", {"filter": subject})

    # -- get -------------------------------------------------------------------------------

    def get(self, name: str, *, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
        """The content of object ``name``, verified against its meta: ``ObjectNotFound``
        if missing or deleted; ``ObjectTooLarge`` if its declared size is above
        ``max_size`` (checked before any chunk is read); ``ObjectCorrupt`` if the chunks
        total more or fewer bytes than ``size``, are more or fewer than ``chunks``, or
        the digest differs. At most ``size`` bytes are buffered (a chunk that would go
        past it is refused unkept); on any error nothing is returned. A checkpoint;
        cancelled, its consumer is stopped and what was read is dropped."""
        parts: list[bytes] = []
        self.get_into(name, parts.append, max_size=max_size)
        return b"".join(parts)

    def get_into(self, name: str, write: Callable[[bytes], Any] | Any, *,
                 max_size: int = DEFAULT_MAX_SIZE) -> ObjectInfo:
        """Stream object ``name`` into ``write`` (a callable, or an object with a
        ``write`` method) chunk by chunk; returns its meta. The checks are ``get``'s,
        but the digest can only be checked at the end: on ``ObjectCorrupt`` the
        writable may hold a prefix of the chunks (never more than ``size`` bytes nor
        more than ``chunks`` chunks): discard it. A checkpoint; cancelled, its consumer
        is stopped."""
        w = write if callable(write) else write.write
        info = self._info(name)
        if info.size > max_size:
            raise ObjectTooLarge(value=info.size, maximum=max_size)
        want = _digest_bytes(info.digest)
        subj = self._chunk_subject(info.nuid)
        last = self._last(subj)
        if last is None:
            if info.size or info.chunks:
                raise ObjectCorrupt(f"nats: object {name!r} has no chunks", reason="too_few_bytes")
            if want != hashlib.sha256().digest():
                raise ObjectCorrupt(f"nats: object {name!r} digest mismatch", reason="digest")
            return info
        h = hashlib.sha256()
        got = n = 0
        oc = self.js.ordered_consumer(self.stream, filter_subject=subj)
        try:
            while True:
                m = oc.next_msg(timeout=self.js.timeout)
                if got + len(m.data) > info.size:
                    raise ObjectCorrupt(f"nats: object {name!r} has more than its size "
                                        f"{info.size}", reason="too_many_bytes")
                if n + 1 > info.chunks:
                    raise ObjectCorrupt(f"nats: object {name!r} has more than its "
                                        f"{info.chunks} chunks", reason="chunk_count")
                got += len(m.data)
                n += 1
                h.update(m.data)
                w(m.data)
                if m.metadata is None or m.metadata.num_pending == 0:
                    break
        finally:
            oc.stop()
        if got != info.size:
            raise ObjectCorrupt(f"nats: object {name!r} has {got} bytes, not {info.size}",
                                reason="too_few_bytes")
        if n != info.chunks:
            raise ObjectCorrupt(f"nats: object {name!r} has {n} chunks, not {info.chunks}",
                                reason="chunk_count")
        if h.digest() != want:
            raise ObjectCorrupt(f"nats: object {name!r} digest mismatch", reason="digest")
        return info

    # -- delete ----------------------------------------------------------------------------

    def delete(self, name: str) -> None:
        """Delete object ``name``: its meta is replaced by one marked deleted (size 0),
        then its chunks are purged. ``ObjectNotFound`` if missing or already deleted. A
        checkpoint; cancelled after the deleted meta is stored and before the purge,
        the chunks stay as orphans (a later put of the name does not reuse them)."""
        info = self._info(name)
        dead = ObjectInfo(info.name, self.bucket, info.nuid, 0, 0, "", "", True,
                          info.description, info.headers, info.max_chunk_size)
        self.js.publish(self._meta_subject(name), dead.as_json(),
                        headers={"Nats-Rollup": "sub"})
        self._purge(self._chunk_subject(info.nuid))

    def watch(self, *, include_history: bool = False,
              updates_only: bool = False) -> ObjectWatcher:
        """Watch the bucket's metas: the current meta of each name first (every stored
        one if ``include_history``; none if ``updates_only``), then every change, as
        ``ObjectInfo`` (deletes with ``deleted=True``). A checkpoint (it creates the
        consumer); ``stop()`` ends it."""
        policy = "new" if updates_only else "all" if include_history else "last_per_subject"
        oc = self.js.ordered_consumer(self.stream, filter_subject=f"$O.{self.bucket}.M.>",
                                      deliver_policy=policy)
        return ObjectWatcher(oc)

    def status(self) -> dict:
        """The backing stream's info. A checkpoint."""
        return self.js.stream_info(self.stream)


class ObjectWatcher:
    """Iterator of :class:`ObjectInfo` from an :meth:`ObjectStore.watch`."""

    def __init__(self, oc: OrderedConsumer):
        self._oc = oc

    def next(self, timeout: float | None = None) -> ObjectInfo:
        """The next meta; a checkpoint (``RequestTimeout`` after ``timeout`` seconds).
        A cancelled call loses no meta. A malformed meta is an ``ObjectCorrupt`` (the
        watch goes on with the next one)."""
        return parse_meta(self._oc.next_msg(timeout).data)

    def __iter__(self) -> Iterator[ObjectInfo]:
        while True:
            try:
                yield self.next()
            except EndOfSubscription:
                return

    def stop(self) -> None:
        """Unsubscribe and delete the consumer; not a checkpoint."""
        self._oc.stop()
