"""The producer: blocking ``send``, ``submit`` with a Delivery per record, idempotence.

Theory of operation
-------------------
``producer.send(topic, value, key=..., headers=...)`` blocks until the record is
acknowledged (``acks=-1``: by every in-sync replica) and returns its
:class:`RecordMetadata`. Many tasks may call ``send`` at once; records for the same
partition are *batched by their callers* ("group commit"): the partition has at most
one produce request in flight; a caller that finds none in flight becomes the
*flusher* and sends every record queued for the partition so far as one batch, while
callers that arrive meanwhile queue their records for the next batch and wait. It
needs no background task, and no linger timer by default (``linger`` adds a short wait before a
flush, to grow batches at low concurrency). ``send_many`` queues many records of one
caller at once and returns a result per record (no task switch per record).

``producer.submit(...)`` is the asynchronous form (other clients' ``send`` returning
a future): it queues the record and returns its :class:`Delivery` at once, so one
task can keep many records in flight. Submitted records have no caller to flush
them, so a *sender* task does: one per partition with submitted records queued and
no flush in progress, spawned in the producer's region (``with Producer(...) as
p:``; the region is why ``submit`` needs the block), ending when the queue is empty.
It flushes exactly as a ``send`` caller does, and shares batches with ``send``
callers. A task waiting on a Delivery never flushes, so cancelling a wait never
changes a record's fate. The block's end waits for every submitted record
(``flush``); a block that raised instead settles those still queued with
:class:`~.errors.RecordNotSent` (never sent, so certainly not written).

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

import contextlib
import logging
from typing import NamedTuple

import greenrt
from greenrt import lowlevel as ll

from ..base.errors import UsageError
from . import records as rec
from ._owned import exit_owned_region
from .cluster import Cluster
from .errors import (
    BrokerError,
    KafkaConnectionError,
    KafkaOutcomeUnknown,
    KafkaProtocolError,
    RecordNotSent,
    broker_error,
)
from .partitioner import murmur2_partition

__all__ = ["Delivery", "Producer", "RecordMetadata"]

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


class Delivery:
    """One record on its way to the broker, and its outcome once settled.

    ``Producer.submit`` returns one; ``send`` and ``send_many`` use them inside.
    ``done`` tells whether the record is settled; :meth:`result` waits for it (a
    checkpoint) and returns its :class:`RecordMetadata` (``None`` with acks=0) or
    raises what settled it: ``BrokerError`` or :class:`~.errors.RecordNotSent` (not
    written), :class:`~.errors.KafkaOutcomeUnknown` (may be written). Waiting is only
    waiting: a cancelled ``result()`` leaves the record as it was (queued or on the
    wire), to be settled as if no one had waited.

    Internals: ``task`` is the task parked on the record (``Producer._park``), ``None``
    when none is: whoever wakes it clears ``task`` first, and so does a cancelled
    waiter's abort, so a parked task is woken once (see ``_Partition``); more waiters
    than one wait on the partition's ``watchers``. ``part`` is the partition of a
    submitted record, ``None`` for one of ``send``/``send_many``, whose caller flushes
    it."""

    __slots__ = ("record", "timestamp", "settled", "meta", "exc", "task", "part")

    def __init__(self, record, timestamp: int | None, part: _Partition | None = None):
        self.record = record
        self.timestamp = timestamp
        self.settled = False
        self.meta: RecordMetadata | None = None
        self.exc: BaseException | None = None
        self.task = None
        self.part = part

    @property
    def done(self) -> bool:
        """The record is settled: :meth:`result` returns or raises at once. Not a checkpoint."""
        return self.settled

    def result(self) -> RecordMetadata | None:
        """Wait until the record is settled, then return its :class:`RecordMetadata`
        (``None`` with acks=0) or raise the exception that settled it (see the class).

        A checkpoint (when already settled, the check half: a cancellation due is
        raised, nothing waits). Cancelled, it raises ``Cancelled`` and
        the record's course is unchanged: :meth:`result` may be called again."""
        _wait(self)
        if self.exc is not None:
            raise self.exc
        return self.meta

    def exception(self) -> BaseException | None:
        """Wait as :meth:`result` does; return the exception that settled the record,
        or ``None`` when it was written. A checkpoint."""
        _wait(self)
        return self.exc

    def abort(self) -> bool:  # the park's abort function: the waiter is cancelled
        self.task = None
        return True

    def __repr__(self) -> str:
        state = ("pending" if not self.settled else "written" if self.exc is None
                 else type(self.exc).__name__)
        return f"<kafka Delivery {state}>"


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
    """A partition's queue. A ``send`` caller parks on its record (``send_many`` on the
    last of its records for the partition) while a flush is in progress. A flusher
    takes the queued records as one batch and, once the batch is settled, wakes the
    tasks parked on its records; when it ends with records still queued it wakes the
    first ``send``/``send_many`` caller parked on one of them, which becomes the next
    flusher, or, when none is parked and submitted records are queued, starts a
    *sender* task (``Producer._sender``) in the producer's region to flush them. So a
    parked caller is woken when its record is settled or when it is its turn to
    flush, once; a record appended to the queue wakes no one; and a submitted record
    is never left queued with no one to send it.

    A task waiting on a submitted record (``Delivery.result``) never flushes: its
    cancellation must not change the record's fate. ``watchers`` are the tasks waiting
    on something other than their own record's ``task`` slot (a second waiter of one
    record, ``flush``, a ``submit`` waiting for room); each flush's end wakes them all
    to look again."""

    __slots__ = ("topic", "index", "queue", "flushing", "in_doubt", "fenced", "pid", "epoch", "next_sequence",
                 "sender", "watchers", "last_submitted")

    def __init__(self, topic: str, index: int) -> None:
        self.topic = topic
        self.index = index
        self.queue: list[Delivery] = []
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
        #: the sender task started for submitted records, until it ends
        self.sender = None
        self.watchers: list = []
        #: the latest submitted record: batches settle in queue order, so once it is
        #: settled every record submitted before it is (``Producer.flush``)
        self.last_submitted: Delivery | None = None


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
                 delivery_timeout: float | None = 120.0, max_queued_records: int = 100_000):
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
        #: submitted records a partition may hold queued (not yet in a batch) before
        #: ``submit`` waits for room
        self.max_queued_records = max_queued_records
        self.producer_id = -1
        self.producer_epoch = -1
        self._parts: dict[tuple[str, int], _Partition] = {}
        self._pid_lock = greenrt.Lock()
        self._rr: dict[str, int] = {}
        self._stats = {"records_sent": 0, "batches_sent": 0, "retries": 0, "duplicates": 0,
                       "in_doubt": 0, "in_doubt_resolved": 0, "in_doubt_abandoned": 0, "epoch_bumps": 0,
                       "withdrawn_batches": 0, "cancelled_in_flight": 0, "senders_started": 0,
                       "not_sent_at_close": 0}
        self._region = None
        self._region_cm = None
        #: no sender is started any more (the producer's block is ending)
        self._closing = False

    # -- lifetime --------------------------------------------------------------------

    def __enter__(self) -> Producer:
        """Open the producer's region, which owns the sender tasks of ``submit``."""
        self._region_cm = greenrt.region(name="kafka.producer")
        self._region = self._region_cm.__enter__()
        return self

    def __exit__(self, etype, exc, tb) -> bool:
        """A block that ends normally first waits for every submitted record
        (:meth:`flush`, a checkpoint). A block that raised, or a flush cancelled, does
        not wait: the region cancels the senders (a batch on the wire is then in
        doubt, its records reported unknown) and the records still queued are settled
        with :class:`~.errors.RecordNotSent`. The connections close in both cases."""
        def before() -> None:
            try:
                if exc is None:
                    self.flush()
            finally:
                self._closing = True  # no sender starts any more

        try:
            return exit_owned_region(self._region_cm, etype, exc, tb, before)
        finally:
            self._settle_left_behind()
            self.cluster.close()

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
            p = self._parts[(topic, partition)] = _Partition(topic, partition)
        item = Delivery((key, value, list(headers) if headers else None), timestamp_ms)
        p.queue.append(item)
        try:
            while not item.settled:
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
            elif not item.settled:
                self._stats["cancelled_in_flight"] += 1  # its batch is on the wire: fate unknown
            raise
        if item.exc is not None:
            raise item.exc
        return item.meta

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
        items: list[Delivery] = []
        parts: dict[int, tuple[_Partition, list[Delivery]]] = {}
        for r in records:
            key, value, headers = r if len(r) == 3 else (r[0], r[1], None)
            part = self._choose_partition(topic, key) if partition is None else partition
            entry = parts.get(part)
            if entry is None:
                p = self._parts.get((topic, part))
                if p is None:
                    p = self._parts[(topic, part)] = _Partition(topic, part)
                entry = parts[part] = (p, [])
            p = entry[0]
            it = Delivery((key, value, list(headers) if headers else None), ts)
            p.queue.append(it)
            entry[1].append(it)
            items.append(it)
        try:
            for part, (p, its) in parts.items():
                last = its[-1]  # batches leave in queue order: the last settles last
                while not last.settled:
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
                mine = {it for it in its if not it.settled}
                queued = [it for it in p.queue if it in mine]
                if queued:  # never sent: withdrawn
                    p.queue[:] = [it for it in p.queue if it not in mine]
                self._stats["cancelled_in_flight"] += len(mine) - len(queued)
            raise
        return [it.meta if it.exc is None else it.exc for it in items]

    @staticmethod
    def _fail_queued(p: _Partition, its: list[Delivery], e: Exception) -> None:
        """After a flush of ours failed: our records still queued were not sent;
        withdraw them and settle them as failed (``e`` says why)."""
        mine = {it for it in its if not it.settled}
        for it in p.queue:
            if it in mine:
                it.exc = RecordNotSent(f"kafka: not sent: an earlier flush failed ({e})")
                it.exc.__cause__ = e
                it.settled = True
        p.queue[:] = [it for it in p.queue if it not in mine]

    def submit(self, topic: str, value: bytes | None, *, key: bytes | None = None,
               headers: list[tuple[str, bytes | None]] | None = None,
               partition: int | None = None, timestamp_ms: int | None = None) -> Delivery:
        """Queue one record and return its :class:`Delivery` at once; a sender task in
        the producer's region sends it (batched with every record queued for its
        partition) and settles it. For callers that keep many records in flight from
        one task, as with other clients' asynchronous ``send``: ``delivery.result()``
        waits for the outcome. Needs the producer's ``with`` block (its region owns the
        senders); records are settled by the end of that block (see ``__exit__``).

        Not a checkpoint, except when the partition already holds
        ``max_queued_records`` queued records: it then waits for room (a checkpoint;
        cancelled there, nothing is queued). Once queued, the record is sent even if
        the caller is cancelled; only the producer's block ending without a flush
        withdraws it (:class:`~.errors.RecordNotSent`)."""
        if self._region is None or self._closing:
            self._require_open()
        if partition is None:
            partition = self._choose_partition(topic, key)
        p = self._parts.get((topic, partition))
        if p is None:
            p = self._parts[(topic, partition)] = _Partition(topic, partition)
        if len(p.queue) >= self.max_queued_records:
            self._wait_for_room(p)
        hub = ll.current_hub()
        if hub.wants_access:  # for the lab's schedule exploration: the partition's queue
            hub.note_access(p, True)
        d = Delivery((key, value, list(headers) if headers else None), timestamp_ms, p)
        p.queue.append(d)
        p.last_submitted = d
        if p.sender is None and not p.flushing:
            self._start_sender(p)
        return d

    def flush(self) -> None:
        """Wait until every record submitted so far is settled (written, refused, or
        unknown; see :class:`Delivery`). Records of ``send`` and ``send_many`` have
        their callers waiting already and are not waited for. A checkpoint; cancelled,
        it only stops waiting."""
        ll.enter_checkpoint()
        for p in list(self._parts.values()):
            d = p.last_submitted
            if d is not None and not d.settled:
                _wait(d)  # (settled ones skipped: flush's one check half is above)

    def close(self) -> None:
        """Close the producer's connections. Inside the producer's ``with`` block the
        block's end does this (after waiting for submitted records); called directly
        it first waits for them (:meth:`flush`, a checkpoint). Not needed after a
        ``with`` block."""
        if self._region is not None and not self._closing:
            self.flush()
        self.cluster.close()

    def statistics(self) -> dict:
        return {**self._stats, "producer_id": self.producer_id,
                "in_doubt_partitions": sum(1 for p in self._parts.values() if p.in_doubt)}

    # -- internals -------------------------------------------------------------------

    def _require_open(self) -> None:
        if self._region is None:
            raise UsageError("kafka: submit() needs the producer's with block (with Producer(...) as p:), "
                             "whose region owns the sender tasks; send() and send_many() do not",
                             code="no_region")
        raise UsageError("kafka: the producer is closing", code="closed")

    def _start_sender(self, p: _Partition) -> None:
        """Start the sender task of ``p``'s submitted records (not a checkpoint)."""
        if self._closing or self._region is None:
            return
        self._stats["senders_started"] += 1
        p.sender = self._region.spawn(self._sender, p, name=f"kafka.sender {p.topic}[{p.index}]")

    def _sender(self, p: _Partition) -> None:
        """Flush ``p`` until nothing is queued or another task is flushing it (that
        flush's end hands the rest on). A batch's failure is its records' outcome, not
        the sender's; a flush that failed before taking a batch (no producer id, an
        in-doubt batch that cannot be settled) settles the submitted records queued
        then with :class:`~.errors.RecordNotSent` and ends, so a broken cluster costs
        one attempt per run of submitted records, never a busy loop. A sender task
        cancelled by itself (``task.cancel()``: the lab's injection) is replaced, so
        its records still go; cancelled with the producer's region, it is not: the
        region's end settles them."""
        me = greenrt.current_task()
        try:
            while p.queue and not p.flushing:
                first = p.queue[0]
                try:
                    self._flush(p.topic, p.index, p)
                except greenrt.Cancelled:
                    raise
                except Exception as e:  # the records hold the outcome
                    if not first.settled and first in p.queue:
                        log.info("kafka: %s[%d]: flush failed before sending (%s)", p.topic, p.index, e)
                        self._fail_submitted(p, f"the flush failed first ({e})", e)
                        break
        finally:
            if p.sender is me:
                p.sender = None
            if (me.cancel_called and not self._region.cancel_called and p.queue and not p.flushing
                    and any(it.part is not None for it in p.queue)):
                self._start_sender(p)

    def _fail_submitted(self, p: _Partition, why: str, cause: BaseException | None) -> int:
        """Settle every submitted record still queued on ``p`` as never sent; return
        how many there were."""
        left = []
        failed = []
        for it in p.queue:
            (failed if it.part is not None else left).append(it)
        p.queue[:] = left
        for it in failed:
            it.exc = RecordNotSent(f"kafka: {p.topic}[{p.index}]: not sent: {why}")
            it.exc.__cause__ = cause
            it.settled = True
        _wake(failed)
        _notify(p)
        return len(failed)

    def _wait_for_room(self, p: _Partition) -> None:
        """``submit`` on a full partition queue: wait (a checkpoint) until a flush has
        taken records from it."""
        while len(p.queue) >= self.max_queued_records:
            if p.sender is None and not p.flushing:
                self._start_sender(p)
            _watch(p, "kafka.Producer.submit (queue full)")

    def _settle_left_behind(self) -> None:
        """The producer's block ended: submitted records still queued will not be
        sent (no sender may start any more)."""
        for p in self._parts.values():
            if p.queue:
                self._stats["not_sent_at_close"] += self._fail_submitted(
                    p, "the producer closed before its batch left", None)

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
            if p.queue:
                # wake a send/send_many caller parked on a queued record: it becomes the
                # next flusher; failing that, submitted records get a sender
                for it in p.queue:
                    t = it.task
                    if t is not None and it.part is None:
                        it.task = None
                        ll.reschedule(t)
                        break
                else:
                    if p.sender is None and any(it.part is not None for it in p.queue):
                        self._start_sender(p)
            if p.watchers:
                _notify(p)

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
                it.settled = True
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
                    it.meta = new(RecordMetadata, (topic, partition, off, t))
                    it.settled = True
                    off += 1
                    task = it.task
                    if task is not None:
                        it.task = None
                        reschedule(task)
            else:
                for it, t in zip(batch, stamps, strict=True):
                    it.meta = new(RecordMetadata, (topic, partition, off, t))
                    it.settled = True
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
            it.exc = error
            it.settled = True
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


def _park(item: Delivery, p: _Partition, what: str) -> None:
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


def _wait(d: Delivery) -> None:
    """Park until the submitted record ``d`` is settled (a checkpoint; settled already,
    the check half only: a cancellation due is raised, nothing waits). The first
    waiter takes the record's own ``task`` slot, woken when it is settled; any other
    watches the partition, woken at each flush's end to look again. Cancelled, the
    waiter has left its wait and the record is untouched."""
    if d.settled:
        ll.enter_checkpoint()
        return
    p = d.part
    what = "kafka.Delivery.result"
    while not d.settled:
        if d.task is None:
            hub = ll.current_hub()
            task = ll.enter_checkpoint()
            if hub.wants_access:  # for the lab's schedule exploration
                hub.note_access(p, False)
            d.task = task
            ll.park(d.abort, what)
        else:
            _watch(p, what)


def _watch(p: _Partition, what: str) -> None:
    """Park on ``p.watchers`` until the next flush of ``p`` ends (a checkpoint)."""
    task = ll.enter_checkpoint()
    watchers = p.watchers
    watchers.append(task)

    def abort() -> bool:
        with contextlib.suppress(ValueError):
            p.watchers.remove(task)
        return True

    ll.park(abort, what)


def _notify(p: _Partition) -> None:
    """Wake every watcher of ``p`` (not a checkpoint)."""
    ws = p.watchers
    if ws:
        p.watchers = []
        reschedule = ll.current_hub().reschedule
        for t in ws:
            reschedule(t)
