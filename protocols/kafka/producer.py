"""The producer: blocking ``send``, batching without a background task, idempotence.

Theory of operation
-------------------
``producer.send(topic, value, key=..., headers=...)`` blocks until the record is
acknowledged (``acks=-1``: by every in-sync replica) and returns its
:class:`RecordMetadata`. Many tasks may call ``send`` at once; records for the same
partition are *batched by their callers* ("group commit"): the partition has at most
one produce request in flight; a caller that finds none in flight becomes the
*flusher* and sends every record queued for the partition so far as one batch, while
callers that arrive meanwhile queue their records for the next batch and wait. No
background task, no linger timer by default (``linger`` adds a short wait before a
flush, to grow batches at low concurrency). ``send_many`` queues many records of one
caller at once and returns a result per record (no task switch per record).

Idempotence (on by default, KIP-98): the producer gets a producer id and epoch
(InitProducerId) and numbers each partition's records; a batch is retried with the
*same* base sequence, so the broker writes it at most once, and
``DUPLICATE_SEQUENCE_NUMBER`` means "already written" — a success. Retries (connection
lost, ``NOT_LEADER_OR_FOLLOWER``, other retriable errors) happen inside the caller's
budget: the flusher refreshes the leader and re-sends until the batch is acknowledged,
fails for good, or its deadline cancels it.

A batch the broker refuses for good because of its producer identity or sequence
(``OUT_OF_ORDER_SEQUENCE_NUMBER``, ``INVALID_PRODUCER_EPOCH``, ``UNKNOWN_PRODUCER_ID``:
e.g. the broker lost the producer's state) moves the producer to a new identity, as
the Java client does (KIP-360): InitProducerId with the current id and epoch where the
broker supports it (v3+), else, or when that is refused, a new producer id; each
partition takes the new identity at its next batch, from sequence 0 (a partition with
a batch in doubt keeps the old one until that batch is settled). A refused batch that
was never written is renumbered under the new identity and sent again; one that may
have been written (an earlier attempt's answer was lost) is abandoned, its records
reported *unknown*, and later records proceed (``statistics()["in_doubt_abandoned"]``,
``["epoch_bumps"]``).

What a cancellation leaves (the rule of the issue: never report as failed a record
that may have been written, and never report as unknown one that was never sent):

* a record still queued (its batch not yet sent) is withdrawn: ``send`` raises
  ``Cancelled`` and the record is never sent;
* a flusher cancelled after it took a batch but before any byte of its Produce
  request reached the socket (waiting for a leader, a connection, a retry's backoff
  after a refusal) puts the batch back at the head of the queue: its own record is
  withdrawn (``Cancelled``), the other callers' records go in the next batch, sent by
  one of them (``statistics()["withdrawn_batches"]``); none is reported unknown;
* a caller (not the flusher) cancelled while its record's batch is on the wire gets
  ``Cancelled`` and the batch goes on; the record's fate is then unknown to that
  caller (counted in ``statistics()["cancelled_in_flight"]``);
* a batch whose request may have been written (its first byte was handed to the
  socket) when the flusher was cancelled is *in doubt*:
  every record in it gets :class:`~.errors.KafkaOutcomeUnknown` (not a failure), and
  the partition keeps the batch's bytes; the next flush on that partition first
  re-sends them (same producer id, epoch and sequence numbers), which settles the
  doubt at the broker (written once, or now), and counts it in
  ``statistics()["in_doubt_resolved"]``. The same holds for a batch whose answer was
  lost without a cancellation (connection lost, no answer within ``request_timeout``,
  an answer that does not parse) once ``delivery_timeout`` ends its retries.

Every loop makes progress or ends within the caller's budget: each retry waits
(a checkpoint) and opens a fresh connection when the old one broke; no answer is
awaited past ``request_timeout``; the retries of one batch end at
``delivery_timeout``.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import greenrt
from greenrt import lowlevel as ll

from . import records as rec
from .cluster import Cluster
from .errors import (
    BrokerError,
    KafkaConnectionError,
    KafkaOutcomeUnknown,
    KafkaProtocolError,
    broker_error,
)
from .partitioner import murmur2_partition

__all__ = ["Producer", "RecordMetadata"]

_DUPLICATE_SEQUENCE = 46
_REFRESH_CODES = {3, 5, 6, 74, 75}  # unknown topic/partition, leader changes
#: OUT_OF_ORDER_SEQUENCE_NUMBER, INVALID_PRODUCER_EPOCH, UNKNOWN_PRODUCER_ID: the broker
#: refuses the batch's producer identity or sequence (KIP-360: a new epoch resolves it)
_SEQUENCE_CODES = {45, 47, 59}

log = logging.getLogger("greenrt.protocols.kafka.producer")


class RecordMetadata(NamedTuple):
    """Where a record was written: ``topic``, ``partition``, ``offset``, ``timestamp`` (ms)."""

    topic: str
    partition: int
    offset: int
    timestamp: int


class _Pending:
    """One queued record and its outcome (``done`` once ``result`` or ``error`` is set).
    ``task`` is the caller parked on it (``Producer._park``), ``None`` when no one is:
    whoever wakes it clears ``task`` first, and so does a cancelled caller's abort, so
    a parked caller is woken once (see ``_Partition``)."""

    __slots__ = ("record", "timestamp", "done", "result", "error", "task")

    def __init__(self, record, timestamp: int):
        self.record = record
        self.timestamp = timestamp
        self.done = False
        self.result: RecordMetadata | None = None
        self.error: BaseException | None = None
        self.task = None

    def abort(self) -> bool:  # the park's abort function: the caller is cancelled
        self.task = None
        return True


class _Attempt:
    """What the sending of one batch left: ``maybe_written`` once any byte of a request
    whose answer has not come (or was lost) may have reached a socket."""

    __slots__ = ("maybe_written",)

    def __init__(self) -> None:
        self.maybe_written = False

    def written(self) -> None:  # the connection's ``on_write``
        self.maybe_written = True


class _Refused(Exception):
    """The broker refused a batch with a non-retriable code (``err``); ``maybe_written``
    is the loss of an earlier attempt's answer, if any (then the batch may be written)."""

    def __init__(self, err: BrokerError, maybe_written: KafkaOutcomeUnknown | None):
        super().__init__(str(err))
        self.err = err
        self.maybe_written = maybe_written
        #: refused for the producer identity or sequence the batch carries
        self.sequence = err.error_code in _SEQUENCE_CODES


class _Partition:
    """A partition's queue. A caller parks on its record (``send``; ``send_many`` on the
    last of its records for the partition) while a flush is in progress. A flusher
    takes the queued records as one batch and, once the batch is settled, wakes the
    callers parked on its records; when it ends with records still queued it wakes
    the first caller parked on one of them, which becomes the next flusher. So a
    parked caller is woken when its record is settled or when it is its turn to
    flush, once, and a record appended to the queue wakes no one."""

    __slots__ = ("queue", "flushing", "in_doubt", "fenced", "pid", "epoch", "next_sequence")

    def __init__(self) -> None:
        self.queue: list[_Pending] = []
        self.flushing = False
        #: the encoded bytes of a batch whose request was sent and whose answer was
        #: lost (producer id, epoch and sequence inside): re-sent byte for byte
        self.in_doubt: bytes | None = None
        #: the producer id and epoch the partition's sequence numbers belong to (the
        #: producer's, adopted whenever no batch is in doubt: ``Producer._adopt``)
        self.pid = -1
        self.epoch = -1
        self.next_sequence = 0
        #: the broker refused ``pid``/``epoch`` here for good: a new identity first
        self.fenced = False


class Producer:
    """A Kafka producer over a :class:`~.cluster.Cluster`; see the module docstring.

    ``acks``: -1 (all in-sync replicas; required for idempotence), 1 (leader) or 0
    (none; no result, no retries). ``compression``: ``"none"``, ``"gzip"``, ``"snappy"``,
    ``"lz4"`` or ``"zstd"`` (the last three need their package; see :mod:`.records`).
    ``max_batch_records`` bounds one batch (more queued records wait for the next).
    """

    def __init__(self, cluster: Cluster | str | list, *, acks: int = -1, idempotent: bool = True,
                 compression: str = "none", linger: float = 0.0, max_batch_records: int = 10000,
                 request_timeout_ms: int = 30000, retry_backoff: float = 0.05,
                 delivery_timeout: float | None = 120.0):
        self.cluster = cluster if isinstance(cluster, Cluster) else Cluster(cluster)
        if idempotent and acks != -1:
            raise ValueError("an idempotent producer needs acks=-1")
        codecs = {"none": rec.COMPRESSION_NONE, "gzip": rec.COMPRESSION_GZIP, "snappy": rec.COMPRESSION_SNAPPY,
                  "lz4": rec.COMPRESSION_LZ4, "zstd": rec.COMPRESSION_ZSTD}
        if compression not in codecs:
            raise ValueError(f"compression {compression!r} is not supported ({', '.join(codecs)})")
        self.acks = acks
        self.idempotent = idempotent
        self.compression = codecs[compression]
        if compression not in ("none", "gzip"):
            rec._module(self.compression)  # the package is there, or a typed error now
        self.linger = linger
        self.max_batch_records = max_batch_records
        self.request_timeout_ms = request_timeout_ms
        self.retry_backoff = retry_backoff
        #: how long one batch may be retried before its last error is raised (the Java
        #: client's delivery.timeout.ms); the caller's own deadline applies too
        self.delivery_timeout = delivery_timeout
        self.producer_id = -1
        self.producer_epoch = -1
        self._parts: dict[tuple[str, int], _Partition] = {}
        self._pid_lock = greenrt.Lock()
        self._rr: dict[str, int] = {}
        self._stats = {"records_sent": 0, "batches_sent": 0, "retries": 0, "duplicates": 0,
                       "in_doubt": 0, "in_doubt_resolved": 0, "in_doubt_abandoned": 0, "epoch_bumps": 0,
                       "withdrawn_batches": 0, "cancelled_in_flight": 0}

    # -- public API ------------------------------------------------------------------

    def send(self, topic: str, value: bytes | None, *, key: bytes | None = None,
             headers: list[tuple[str, bytes | None]] | None = None,
             partition: int | None = None, timestamp_ms: int | None = None) -> RecordMetadata | None:
        """Produce one record and wait for its acknowledgement (``None`` with acks=0).

        A checkpoint. Raises ``BrokerError`` for a non-retriable broker error,
        ``KafkaOutcomeUnknown`` when the record's batch was sent and its answer lost to
        a cancellation (the record may be written; see the module docstring), and
        ``Cancelled`` (the record withdrawn, never sent) when cancelled before its
        batch left. ``timestamp_ms`` (CreateTime) defaults to the time the record's
        batch is built (one timestamp per batch, as the metadata returned says)."""
        if partition is None:
            partition = self._choose_partition(topic, key)
        p = self._parts.get((topic, partition))
        if p is None:
            p = self._parts[(topic, partition)] = _Partition()
        item = _Pending((key, value, list(headers) if headers else None), timestamp_ms)
        p.queue.append(item)
        try:
            while not item.done:
                if not p.flushing:
                    self._flush(topic, partition, p)
                else:  # _park, inlined: the one wait of every record but the flusher's
                    hub = ll.current_hub()
                    task = ll.enter_checkpoint()
                    if hub.wants_access:
                        hub.note_access(p, True)
                    item.task = task
                    ll.park(item.abort, "kafka.Producer.send")
        except BaseException:
            if item in p.queue:
                p.queue.remove(item)  # never sent: withdrawn
            elif not item.done:
                self._stats["cancelled_in_flight"] += 1  # its batch is on the wire: fate unknown
            raise
        if item.error is not None:
            raise item.error
        return item.result

    def send_many(self, topic: str, records, *, partition: int | None = None,
                  timestamp_ms: int | None = None) -> list:
        """Produce many records and wait until every one is settled; return one result
        per record, in order: its :class:`RecordMetadata` (``None`` with acks=0), or
        the exception that settled it (``BrokerError``/``KafkaConnectionError``: not
        written; ``KafkaOutcomeUnknown``: maybe written).

        ``records`` is an iterable of ``(key, value)`` or ``(key, value, headers)``;
        each goes to ``partition``, or the partition of its key as in :meth:`send`.
        The records queue with those of concurrent ``send`` callers (batches of up to
        ``max_batch_records``); the partitions are served one after another.

        A checkpoint. Cancelled, it raises ``Cancelled``: records still queued are
        withdrawn (never sent), records of a batch on the wire have an unknown fate,
        records already settled stay settled (see the module docstring)."""
        ts = timestamp_ms
        items: list[_Pending] = []
        parts: dict[int, tuple[_Partition, list[_Pending]]] = {}
        for r in records:
            key, value, headers = r if len(r) == 3 else (r[0], r[1], None)
            part = self._choose_partition(topic, key) if partition is None else partition
            entry = parts.get(part)
            if entry is None:
                p = self._parts.get((topic, part))
                if p is None:
                    p = self._parts[(topic, part)] = _Partition()
                entry = parts[part] = (p, [])
            p = entry[0]
            it = _Pending((key, value, list(headers) if headers else None), ts)
            p.queue.append(it)
            entry[1].append(it)
            items.append(it)
        try:
            for part, (p, its) in parts.items():
                last = its[-1]  # batches leave in queue order: the last settles last
                while not last.done:
                    if not p.flushing:
                        try:
                            self._flush(topic, part, p)
                        except greenrt.Cancelled:
                            raise
                        except Exception as e:  # the batch's records hold their outcome
                            self._fail_queued(p, its, e)
                    else:
                        _park(last, p, "kafka.Producer.send_many")
        except BaseException:
            for p, its in parts.values():
                mine = {it for it in its if not it.done}
                queued = [it for it in p.queue if it in mine]
                if queued:  # never sent: withdrawn
                    p.queue[:] = [it for it in p.queue if it not in mine]
                self._stats["cancelled_in_flight"] += len(mine) - len(queued)
            raise
        return [it.result if it.error is None else it.error for it in items]

    @staticmethod
    def _fail_queued(p: _Partition, its: list[_Pending], e: Exception) -> None:
        """After a flush of ours failed: our records still queued were not sent;
        withdraw them and settle them as failed (``e`` says why)."""
        mine = {it for it in its if not it.done}
        for it in p.queue:
            if it in mine:
                it.error = KafkaConnectionError(f"kafka: not sent: an earlier flush failed ({e})")
                it.error.__cause__ = e
                it.done = True
        p.queue[:] = [it for it in p.queue if it not in mine]

    def flush(self) -> None:
        """Nothing is buffered without a waiting caller, so there is nothing to flush;
        kept for API familiarity (kafka-python, confluent-kafka)."""

    def close(self) -> None:
        self.cluster.close()

    def statistics(self) -> dict:
        return {**self._stats, "producer_id": self.producer_id,
                "in_doubt_partitions": sum(1 for p in self._parts.values() if p.in_doubt)}

    # -- internals -------------------------------------------------------------------

    def _choose_partition(self, topic: str, key: bytes | None) -> int:
        parts = self.cluster.topic_partitions(topic)
        n = len(parts)
        if key is not None:
            return murmur2_partition(key, n)
        i = self._rr.get(topic, 0)
        self._rr[topic] = i + 1
        return sorted(parts)[i % n]

    def _ensure_producer_id(self) -> None:
        """Get the producer id and epoch once. Serialised: flushers of different
        partitions may ask at the same time. A partition takes the producer's identity
        only when it has no batch in doubt (``_adopt``): an in-doubt batch is always
        re-sent under the identity and sequence it was first sent with, never
        re-numbered (a re-numbered copy would be a new batch to the broker, and be
        written twice)."""
        if not self.idempotent or self.producer_id >= 0:
            return
        with self._pid_lock:
            if self.producer_id >= 0:
                return
            self._init_producer_id(-1, -1)

    def _init_producer_id(self, pid: int, epoch: int) -> None:
        """InitProducerId: a new id (``pid == -1``), or the epoch bump of ``pid``/``epoch``
        (KIP-360, InitProducerId v3+). The caller holds ``_pid_lock``. A request that
        could not be sent, or whose answer was lost, is tried again on a fresh
        connection (3 attempts): a lost bump shows as ``INVALID_PRODUCER_EPOCH`` on
        the next one, and the caller then asks for a new id."""
        for attempt in range(3):
            try:
                conn = self.cluster._any_connection()
                r = conn.request("InitProducerId", {"transactional_id": None, "transaction_timeout_ms": 60000,
                                                    "producer_id": pid, "producer_epoch": epoch})
                break
            except KafkaConnectionError:
                if attempt == 2:
                    raise
                greenrt.sleep(self.retry_backoff)
        if r["error_code"]:
            raise broker_error(r["error_code"], "in InitProducerId")
        self.producer_id, self.producer_epoch = r["producer_id"], r["producer_epoch"]

    def _bump_epoch(self, pid: int, epoch: int) -> None:
        """The broker refused a batch sent under ``pid``/``epoch`` for good, so the
        sequence numbers of that identity can no longer be trusted on its partition:
        move the producer to a fresh identity, as the Java client's TransactionManager
        does for an idempotent producer (KIP-360). Where the broker supports it
        (InitProducerId v3+) the current id's epoch is bumped, else (or when the bump is
        refused, or the epoch is exhausted) a new producer id is fetched. Partitions
        take the new identity at their next batch, from sequence 0 (``_adopt``). A
        no-op when another flusher already moved past ``pid``/``epoch``. A checkpoint."""
        with self._pid_lock:
            if (self.producer_id, self.producer_epoch) != (pid, epoch):
                return  # already bumped since that batch was numbered
            bumped = False
            conn = self.cluster._any_connection()
            if pid >= 0 and epoch < 32767 and conn.version_for("InitProducerId") >= 3:
                try:
                    self._init_producer_id(pid, epoch)
                    bumped = True
                except BrokerError as e:
                    log.info("kafka: epoch bump of producer %d refused (%s); asking for a new id", pid, e)
            if not bumped:
                self._init_producer_id(-1, -1)
            self._stats["epoch_bumps"] += 1
            log.info("kafka: producer %d/%d moved to %d/%d", pid, epoch, self.producer_id, self.producer_epoch)

    def _unfence(self, p: _Partition) -> None:
        """A partition whose identity the broker refused for good moves to a new one
        before it sends again (``_bump_epoch``); a checkpoint. Until that succeeds the
        partition stays fenced: a batch numbered on under the refused identity could be
        taken by the broker for a duplicate of the abandoned one."""
        self._bump_epoch(p.pid, p.epoch)
        p.fenced = False
        self._adopt(p)

    def _adopt(self, p: _Partition) -> None:
        """Give a partition with no batch in doubt the producer's current identity;
        a new identity starts its sequence numbers at 0."""
        if p.pid != self.producer_id or p.epoch != self.producer_epoch:
            p.pid, p.epoch, p.next_sequence = self.producer_id, self.producer_epoch, 0

    def _flush(self, topic: str, partition: int, p: _Partition) -> None:
        """Become the partition's flusher: settle an in-doubt batch, then send what is
        queued. A batch whose request never reached the socket when the flusher is
        cancelled goes back to the head of the queue (its records were never sent: the
        flusher's own are withdrawn by its caller, the others go in the next batch)."""
        p.flushing = True
        try:
            if self.linger:
                greenrt.sleep(self.linger)
            self._ensure_producer_id()
            if p.in_doubt is not None:
                self._settle(topic, partition, p)
            if p.fenced:
                self._unfence(p)
            batch = p.queue[:self.max_batch_records]
            if not batch:
                return
            del p.queue[:len(batch)]
            self._send_batch(topic, partition, p, batch)
        finally:
            p.flushing = False
            if p.queue:  # wake a caller parked on a queued record: it becomes the next flusher
                for it in p.queue:
                    t = it.task
                    if t is not None:
                        it.task = None
                        ll.reschedule(t)
                        break

    def _send_batch(self, topic: str, partition: int, p: _Partition, batch: list) -> None:
        """Number, encode and send one batch taken from the queue, and settle its records."""
        renumbered = False
        # records without a timestamp of their own take the batch's (its creation time)
        now = int(ll.current_hub().wall_time() * 1000)
        stamps = [it.timestamp for it in batch]
        if stamps.count(None) == len(stamps):
            stamps = None  # the common case: one timestamp for the batch, every delta 0
        elif None in stamps:
            stamps = [now if t is None else t for t in stamps]
        recs = [it.record for it in batch]
        while True:
            if self.idempotent:
                self._adopt(p)
            seq = p.next_sequence if self.idempotent else -1
            data = self._encode(p, recs, stamps, now, seq)
            if self.idempotent:
                p.next_sequence += len(batch)
            state = _Attempt()
            try:
                meta = self._produce(topic, partition, data, state)
                break
            except _Refused as e:
                if self.idempotent:
                    p.next_sequence -= len(batch)
                if e.maybe_written is not None:
                    # sent, its answer lost, and now refused for good: the records stay
                    # unknown; the partition's sequence numbers cannot be trusted any more
                    self._stats["in_doubt"] += len(batch)
                    self._stats["in_doubt_abandoned"] += 1
                    self._settle_all(batch, KafkaOutcomeUnknown(
                        f"kafka: produce to {topic}[{partition}] was sent, its answer lost, and a "
                        f"retry refused ({e.err}); the records may or may not be written"))
                    if self.idempotent:
                        p.fenced = True
                        try:
                            self._unfence(p)
                        except Exception as be:  # the next flush on the partition tries again
                            log.info("kafka: %s[%d]: epoch bump failed (%s)", topic, partition, be)
                    return
                if self.idempotent and e.sequence and not renumbered:
                    # refused for its identity or sequence, and nothing of it was written:
                    # a new identity, the batch renumbered from 0 under it, sent again
                    p.fenced = True
                    try:
                        self._unfence(p)
                    except greenrt.Cancelled:
                        self._withdraw(p, batch)  # not written, not sent again: back in the queue
                        raise
                    except Exception as be:
                        self._settle_all(batch, be)  # not written
                        raise
                    renumbered = True
                    continue
                self._settle_all(batch, e.err)
                raise e.err from None
            except greenrt.Cancelled:
                if not state.maybe_written:
                    # no byte of it reached a socket: back to the queue, numbers given back
                    if self.idempotent:
                        p.next_sequence -= len(batch)
                    self._withdraw(p, batch)
                    raise
                self._in_doubt(topic, partition, p, batch, data, " (cancelled)")
                raise
            except KafkaOutcomeUnknown:
                self._in_doubt(topic, partition, p, batch, data, "")
                raise
            except BaseException as e:
                if self.idempotent:
                    p.next_sequence -= len(batch)  # nothing of it was written
                self._settle_all(batch, e)
                raise
        base_offset, log_time = meta
        # each record settled and its caller woken in one pass (``_wake``, inlined)
        reschedule = ll.current_hub().reschedule
        if self.acks == 0:
            for it in batch:
                it.done = True
                task = it.task
                if task is not None:
                    it.task = None
                    reschedule(task)
        else:
            new = tuple.__new__  # RecordMetadata built positionally: no Python __new__ per record
            off = base_offset
            if stamps is None or log_time != -1:
                t = now if log_time == -1 else log_time
                for it in batch:
                    it.result = new(RecordMetadata, (topic, partition, off, t))
                    it.done = True
                    off += 1
                    task = it.task
                    if task is not None:
                        it.task = None
                        reschedule(task)
            else:
                for it, t in zip(batch, stamps, strict=True):
                    it.result = new(RecordMetadata, (topic, partition, off, t))
                    it.done = True
                    off += 1
                    task = it.task
                    if task is not None:
                        it.task = None
                        reschedule(task)
        self._stats["records_sent"] += len(batch)
        self._stats["batches_sent"] += 1

    def _withdraw(self, p: _Partition, batch: list) -> None:
        """A taken batch that was never sent goes back to the head of the queue (the
        cancelled flusher's caller withdraws its own records from there; the callers
        parked on the others stay parked, and the flush's end wakes the first)."""
        p.queue[0:0] = batch
        self._stats["withdrawn_batches"] += 1

    @staticmethod
    def _settle_all(batch: list, error: BaseException) -> None:
        for it in batch:
            it.error = error
            it.done = True
        _wake(batch)

    def _in_doubt(self, topic, partition, p: _Partition, batch, data: bytes, why: str) -> None:
        """The batch may have been written and its answer is lost: its records are
        reported unknown, and (idempotent) the partition keeps its bytes to re-send."""
        if self.idempotent and self.acks != 0:
            p.in_doubt = data
        self._stats["in_doubt"] += len(batch)
        self._settle_all(batch, KafkaOutcomeUnknown(
            f"kafka: produce to {topic}[{partition}] was sent; its answer was lost" + why))

    def _settle(self, topic: str, partition: int, p: _Partition) -> None:
        """Re-send the partition's in-doubt batch (same bytes: same producer id, epoch
        and sequence), so the broker writes it once at most. Its records were already
        reported unknown. ``Cancelled`` leaves it in doubt. Refused for good (e.g.
        ``OUT_OF_ORDER_SEQUENCE_NUMBER``, ``UNKNOWN_PRODUCER_ID``): the batch is
        abandoned (its records stay unknown) and the producer moves to a new epoch, so
        the partition's later batches start again from sequence 0. Any other error
        leaves it in doubt and is raised as ``KafkaConnectionError`` to the flusher,
        whose own records were not sent (the partition cannot take new batches before
        the old one is settled: they would be out of sequence)."""
        try:
            self._produce(topic, partition, p.in_doubt, _Attempt())
        except greenrt.Cancelled:
            raise
        except _Refused as e:
            log.info("kafka: %s[%d]: in-doubt batch refused (%s); abandoned", topic, partition, e.err)
            p.in_doubt = None
            p.fenced = True
            self._stats["in_doubt_abandoned"] += 1
            return
        except Exception as e:
            raise KafkaConnectionError(
                f"kafka: {topic}[{partition}]: an earlier batch is still in doubt ({e}); "
                "this record was not sent") from e
        p.in_doubt = None
        self._stats["in_doubt_resolved"] += 1

    def _encode(self, p: _Partition, recs, stamps, now: int, seq: int) -> bytes:
        return rec.encode_batch(recs, timestamps=stamps, base_timestamp=now, compression=self.compression,
                                producer_id=p.pid if self.idempotent else -1,
                                producer_epoch=p.epoch if self.idempotent else -1,
                                base_sequence=seq)

    def _produce(self, topic: str, partition: int, data: bytes, state: _Attempt) -> tuple[int, int]:
        """Send one encoded batch until acknowledged, refused for good, or out of time.
        Raises ``KafkaOutcomeUnknown`` when an attempt may have been written and the
        retries ran out (never a plain failure then), ``_Refused`` for a non-retriable
        error code (with the earlier attempt that may have been written, if any), and
        ``Cancelled`` as itself; ``state.maybe_written`` then tells whether any byte of
        an attempt whose answer did not come may have reached the socket."""
        body = {"transactional_id": None, "acks": self.acks, "timeout_ms": self.request_timeout_ms,
                "topic_data": [{"name": topic, "partition_data": [{"index": partition, "records": data}]}]}
        attempt = 0
        maybe_written: KafkaOutcomeUnknown | None = None
        last: Exception | None = None
        give_up = None if self.delivery_timeout is None else greenrt.now() + self.delivery_timeout
        while True:
            if attempt and give_up is not None and greenrt.now() > give_up:
                raise maybe_written or last  # once possibly written, never reported failed
            try:
                conn = self.cluster.connection(self.cluster.leader(topic, partition))
                if self.acks == 0:
                    conn.send_only("Produce", body, on_write=state.written)
                    return (-1, -1)
                r = conn.request("Produce", body, on_write=state.written)
            except (KafkaOutcomeUnknown, KafkaProtocolError) as e:
                # sent, and the answer lost or garbled: it may have been written
                unknown = e if isinstance(e, KafkaOutcomeUnknown) else KafkaOutcomeUnknown(
                    f"kafka: produce to {topic}[{partition}] sent; its answer did not parse ({e})")
                if not self.idempotent:
                    raise unknown from e  # without sequence numbers a re-send could write twice
                last = maybe_written = unknown
                self._retry(topic, attempt := attempt + 1)
                continue
            except KafkaConnectionError as e:
                state.maybe_written = maybe_written is not None  # this attempt never left
                last = e
                self._retry(topic, attempt := attempt + 1)  # not sent: safe to retry
                continue
            pr = r["responses"][0]["partition_responses"][0]
            code = pr["error_code"]
            if code == 0:
                return pr["base_offset"], pr.get("log_append_time_ms", -1)
            if code == _DUPLICATE_SEQUENCE and self.idempotent:
                self._stats["duplicates"] += 1
                return pr["base_offset"], pr.get("log_append_time_ms", -1)
            # answered: this attempt was not written; an earlier one whose answer was
            # lost may have been
            state.maybe_written = maybe_written is not None
            err = broker_error(code, f"producing to {topic}[{partition}]")
            if not err.retriable:
                raise _Refused(err, maybe_written)
            if code in _REFRESH_CODES:
                self.cluster.invalidate(topic)
            last = err
            self._retry(topic, attempt := attempt + 1)

    def _retry(self, topic: str, attempt: int) -> None:
        """Wait before the next attempt (a checkpoint: the caller's deadline ends the loop)."""
        self._stats["retries"] += 1
        self.cluster.invalidate(topic)
        greenrt.sleep(min(self.retry_backoff * (2 ** min(attempt, 6)), 1.0))


def _park(item: _Pending, p: _Partition, what: str) -> None:
    """Park the current task on ``item`` until it is woken (its record settled, or its
    turn to flush); a checkpoint. Cancelled, it leaves ``item.task`` cleared."""
    hub = ll.current_hub()
    task = ll.enter_checkpoint()
    if hub.wants_access:  # for the lab's schedule exploration: the partition's queue
        hub.note_access(p, True)
    item.task = task
    ll.park(item.abort, what)


def _wake(batch: list) -> None:
    """Wake the callers parked on records of a settled batch (not a checkpoint)."""
    reschedule = None
    for it in batch:
        t = it.task
        if t is not None:
            it.task = None
            if reschedule is None:
                reschedule = ll.current_hub().reschedule
            reschedule(t)
