"""The consumer: assignment or group membership, fetching, positions, commits.

Theory of operation
-------------------
A :class:`Consumer` is a context manager that owns a region (``with Consumer(...) as
c:``). Inside it, ``c.poll()`` is where everything the caller waits for happens, in the
caller's task: the group protocol (join, sync, rebalance callbacks), position lookup
(committed offsets, then ``auto_offset_reset``), and fetching. The only other task is
the group's *heartbeat*, spawned in the consumer's region: it tells the coordinator
the member is alive every ``heartbeat_interval`` seconds on a connection of its own
(so a cancelled commit or a long JoinGroup never delays or breaks it), and when the
coordinator answers ``REBALANCE_IN_PROGRESS`` it marks the group for a rejoin, which
the next ``poll`` performs (Kafka's "eager" protocol: ``on_revoke`` with everything
assigned, JoinGroup, the leader computes the plan with the ``range`` or ``roundrobin``
assignor, SyncGroup, ``on_assign`` with the new assignment). Leaving the ``with``
block cancels the heartbeat and sends LeaveGroup, so the other members rebalance at
once instead of after the session timeout.

Positions. Each assigned partition has a *fetch position* (the next offset to ask the
broker for) and a *consumed position* (the offset after the last record ``poll``
returned); ``commit()`` commits consumed positions. Fetch responses go through
:func:`~.records.decode_batches` (CRC-32C verified, a partial trailing batch ignored,
decompression capped); records below the fetch position — a broker may return a batch
that starts before it — are skipped, and control batches are stepped over.

Bounded buffers. Fetched records wait in per-partition buffers whose total is held
to ``max_buffer_records`` records and ``max_buffer_bytes`` bytes of keys and values:
a fetch is sent only while both are below their caps, and records that would cross
a cap are dropped *without advancing the fetch position*, so they are fetched again
later — nothing is lost and nothing grows without bound. A buffer holds whole
batches (a batch's key and value bytes are summed by the decoder, and given back when
the batch's last record is returned), so neither buffering nor ``poll`` takes a step
per record: the per-record work of the consumer is the record decoder's loop.

Commits. ``commit()`` is synchronous: it returns only after the coordinator
acknowledged every partition, and raises :class:`~.errors.CommitFailedError`
otherwise. A commit while the group is rebalancing (a rejoin is pending or under way,
or the coordinator says so) is refused — it reports failure, never success, since
the partitions may already belong to another member. ``commit_async()`` runs the
same commit in a task of the consumer's region and returns a :class:`CommitResult`.

At-least-once processing. ``poll_batch()`` returns a :class:`ProcessingBatch` whose
records are an *obligation* of the calling task (``greenrt.reserve("ack")``): the
task must ``commit()`` it (offsets committed, obligation resolved) or ``release()``
it (the consumer seeks back to the batch's first offsets, so the records are
delivered again). A task that ends holding an unresolved batch has leaked it: the
runtime reports an ``ObligationLeak`` and the abort hook seeks back, so the records
are redelivered, never silently skipped.

What a cancellation leaves: ``poll`` cancelled while fetching leaves positions where
they were (a fetch has no effect on the broker); cancelled during a join, the member
is not in a stable generation and the next ``poll`` rejoins; ``commit`` cancelled
after its request was written raises ``Cancelled`` and the commit's fate is unknown
(the coordinator may have stored the offsets) — it is never reported as done.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
from collections.abc import Callable, Iterator

import greenrt

from ..base.errors import UsageError
from . import group as gp
from . import records as rec
from ._owned import exit_owned_region
from .cluster import Cluster
from .connection import BrokerConnection
from .errors import (
    CommitFailedError,
    CommitOutcomeUnknown,
    KafkaConnectionError,
    KafkaError,
    KafkaOutcomeUnknown,
    KafkaProtocolError,
    NoOffsetError,
    broker_error,
)

__all__ = ["CommitResult", "Consumer", "ConsumerRecord", "ProcessingBatch", "TopicPartition"]

_REFRESH_CODES = {3, 5, 6, 74, 75}  # unknown topic/partition, leader changes
_REJOIN_CODES = {22, 25, 27}  # ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS
_COORDINATOR_CODES = {14, 15, 16}  # load in progress, not available, not coordinator
_EARLIEST, _LATEST = -2, -1

TopicPartition = tuple  # (topic, partition)


#: One fetched record: ``topic``, ``partition``, ``offset``, ``timestamp`` (ms),
#: ``key``, ``value`` (bytes or None) and ``headers`` (a tuple of ``(str, bytes | None)``
#: pairs, the empty tuple when there are none);
#: a named tuple (the record decoder's :class:`~.records.Record`), built positionally.
ConsumerRecord = rec.Record


class _PartitionState:
    """A partition's positions and its buffer: ``chunks``, a deque of ``[records,
    next index, data bytes]`` (one per buffered batch, or run of records), so that
    buffering and draining take whole slices, never a step per record."""

    __slots__ = ("fetch_position", "consumed", "chunks", "paused")

    def __init__(self) -> None:
        self.fetch_position: int | None = None
        self.consumed: int | None = None
        self.chunks: collections.deque[list] = collections.deque()
        self.paused = False


def _size(r: ConsumerRecord) -> int:
    return (len(r.key) if r.key else 0) + (len(r.value) if r.value else 0)


class CommitResult:
    """The outcome of ``commit_async()``: ``done``, and ``result()`` (a checkpoint:
    waits, then returns the committed offsets or raises the commit's error)."""

    def __init__(self) -> None:
        self._event = greenrt.Event()
        self._value: dict | None = None
        self._error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self._event.is_set()

    def result(self) -> dict:
        self._event.wait()
        if self._error is not None:
            raise self._error
        return self._value


class ProcessingBatch:
    """Records handed out for at-least-once processing (see the module docstring).
    Iterable; ``commit()`` (a checkpoint) or ``release()`` (not a checkpoint) resolves it."""

    def __init__(self, consumer: Consumer, records: list[ConsumerRecord]):
        self._consumer = consumer
        self.records = records
        self.first: dict[tuple[str, int], int] = {}
        self.next: dict[tuple[str, int], int] = {}
        for r in records:
            tp = (r.topic, r.partition)
            self.first.setdefault(tp, r.offset)
            self.next[tp] = r.offset + 1
        span = ", ".join(f"{t}[{p}]@{o}" for (t, p), o in self.first.items())
        self._ob = greenrt.reserve("ack", name=f"kafka batch {span}" if span else "kafka batch (empty)",
                                   on_abort=self._rewind)

    def __iter__(self) -> Iterator[ConsumerRecord]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def resolved(self) -> bool:
        return self._ob.resolved

    def commit(self) -> None:
        """Commit the offsets after this batch's records; resolves the obligation only
        when the coordinator acknowledged them. On failure the batch stays owed (the
        caller retries or releases it)."""
        if self.next:
            self._consumer.commit(dict(self.next))
        self._ob.commit()

    def release(self) -> None:
        """Give the records back: the consumer seeks to their first offsets, so they
        are delivered again."""
        self._ob.abort("released")

    def _rewind(self, reason=None) -> None:
        for tp, off in self.first.items():
            if tp in self._consumer._parts:
                self._consumer.seek(tp[0], tp[1], off)
        self._consumer._stats["batches_rewound"] += 1


class Consumer:
    """A Kafka consumer; see the module docstring.

    ``group_id`` names the group for ``subscribe`` and for commits; ``auto_offset_reset``
    is ``"earliest"``, ``"latest"`` or ``"none"`` (a partition without a usable position
    raises :class:`~.errors.NoOffsetError`). ``assignor``: ``"range"`` or ``"roundrobin"``.
    ``on_assign(partitions)`` / ``on_revoke(partitions)`` run inside ``poll`` with lists
    of ``(topic, partition)``.
    """

    def __init__(self, cluster: Cluster | str | list, *, group_id: str | None = None,
                 auto_offset_reset: str = "latest", assignor: str = "range",
                 on_assign: Callable[[list], None] | None = None,
                 on_revoke: Callable[[list], None] | None = None,
                 session_timeout_ms: int = 10000, rebalance_timeout_ms: int = 30000,
                 heartbeat_interval: float = 1.0, max_poll_records: int = 500,
                 max_buffer_records: int = 10000, max_buffer_bytes: int = 16 << 20,
                 fetch_max_bytes: int = 4 << 20, partition_max_bytes: int = 1 << 20,
                 fetch_max_wait_ms: int = 200, retry_backoff: float = 0.05,
                 leader_sync_delay: float = 0.0):
        if auto_offset_reset not in ("earliest", "latest", "none"):
            raise ValueError(f"auto_offset_reset must be earliest, latest or none, not {auto_offset_reset!r}")
        if assignor not in gp.ASSIGNORS:
            raise ValueError(f"assignor must be one of {sorted(gp.ASSIGNORS)}, not {assignor!r}")
        for name, v in (("max_poll_records", max_poll_records), ("max_buffer_records", max_buffer_records),
                        ("max_buffer_bytes", max_buffer_bytes), ("fetch_max_bytes", fetch_max_bytes),
                        ("partition_max_bytes", partition_max_bytes)):
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive int, not {v!r}")
        self.cluster = cluster if isinstance(cluster, Cluster) else Cluster(cluster)
        self.group_id = group_id
        self.auto_offset_reset = auto_offset_reset
        self.assignor = assignor
        self.on_assign = on_assign
        self.on_revoke = on_revoke
        self.session_timeout_ms = session_timeout_ms
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.heartbeat_interval = heartbeat_interval
        self.max_poll_records = max_poll_records
        self.max_buffer_records = max_buffer_records
        self.max_buffer_bytes = max_buffer_bytes
        self.fetch_max_bytes = fetch_max_bytes
        self.partition_max_bytes = partition_max_bytes
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.retry_backoff = retry_backoff
        #: seconds the group leader waits before its SyncGroup (see ``_join_and_sync``)
        self.leader_sync_delay = leader_sync_delay
        self._parts: dict[tuple[str, int], _PartitionState] = {}
        self._buffered_records = 0
        self._buffered_bytes = 0
        self._rr = itertools.count()
        # group state
        self._subscription: list[str] | None = None
        self._mode: str | None = None  # "assign" | "subscribe"
        #: "unjoined" -> "joining" -> "stable"; a pending rejoin is ``_rejoin_needed``
        self._state = "unjoined"
        self._rejoin_needed = False
        self.member_id = ""
        self.generation = -1
        self._coordinator: tuple[int, str, int] | None = None
        self._coord_conn: BrokerConnection | None = None
        self._hb_conn: BrokerConnection | None = None
        self._region = None
        self._region_cm = None
        self._heartbeat_task = None
        self._closed = False
        self._stats = collections.Counter(
            records_returned=0, fetches=0, fetch_errors=0, rebalances=0, commits=0,
            commit_failures=0, commit_unknown=0, heartbeats=0, heartbeat_errors=0, batches_rewound=0,
            records_dropped_over_cap=0, records_skipped_below_position=0, offset_resets=0)

    # -- lifetime --------------------------------------------------------------------

    def __enter__(self) -> Consumer:
        self._region_cm = greenrt.region(name="kafka.consumer")
        self._region = self._region_cm.__enter__()
        return self

    def __exit__(self, etype, exc, tb) -> bool:
        return exit_owned_region(self._region_cm, etype, exc, tb, self._shutdown)

    def close(self) -> None:
        """Stop the heartbeat, leave the group (LeaveGroup) and close connections. A
        checkpoint (LeaveGroup); a cancellation still closes everything. Called by the
        ``with`` block; the region closes with the block."""
        self._shutdown()

    def _shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
        try:
            if self._mode == "subscribe" and self.member_id and self._coord_conn is not None:
                with contextlib.suppress(KafkaError, OSError), greenrt.move_on_after(5):
                    self._coordinator_request("LeaveGroup", {
                        "group_id": self.group_id, "member_id": self.member_id,
                        "members": [{"member_id": self.member_id, "group_instance_id": None}]})
        finally:
            for c in (self._coord_conn, self._hb_conn):
                if c is not None:
                    c.close()
            self.cluster.close()

    def _require_region(self) -> None:
        if self._region is None:
            raise UsageError("kafka: use the consumer as a context manager (with Consumer(...) as c:)",
                             code="no_region")
        if self._closed:
            raise UsageError("kafka: the consumer is closed", code="closed")

    # -- assignment ------------------------------------------------------------------

    def assign(self, partitions: list[tuple[str, int]]) -> None:
        """Consume exactly these partitions, without group membership (commits still
        go to ``group_id`` if set). Not a checkpoint."""
        self._require_region()
        if self._mode == "subscribe":
            raise UsageError("kafka: assign() after subscribe()", code="mode")
        self._mode = "assign"
        self._set_assignment([tuple(tp) for tp in partitions])

    def subscribe(self, topics: list[str]) -> None:
        """Join ``group_id`` for ``topics``; the join happens in the next ``poll``.
        Not a checkpoint. Starts the heartbeat task in the consumer's region."""
        self._require_region()
        if not self.group_id:
            raise UsageError("kafka: subscribe() needs a group_id", code="no_group")
        if self._mode == "assign":
            raise UsageError("kafka: subscribe() after assign()", code="mode")
        self._mode = "subscribe"
        self._subscription = sorted(set(topics))
        self._rejoin_needed = True
        if self._heartbeat_task is None:
            self._heartbeat_task = self._region.spawn(self._heartbeat_loop, name="kafka.heartbeat")

    def assignment(self) -> list[tuple[str, int]]:
        return sorted(self._parts)

    def _set_assignment(self, tps: list[tuple[str, int]]) -> None:
        for tp in list(self._parts):
            if tp not in tps:
                self._drop_buffer(self._parts.pop(tp))
        for tp in tps:
            self._parts.setdefault(tp, _PartitionState())

    def _drop_buffer(self, st: _PartitionState) -> None:
        for recs, i, nbytes in st.chunks:
            self._buffered_records -= len(recs) - i
            self._buffered_bytes -= nbytes
        st.chunks.clear()

    def seek(self, topic: str, partition: int, offset: int) -> None:
        """The next record returned for the partition is at ``offset`` (buffered records
        are dropped). Not a checkpoint."""
        st = self._state_of(topic, partition)
        self._drop_buffer(st)
        st.fetch_position = st.consumed = offset

    def seek_to_beginning(self, topic: str, partition: int) -> None:
        st = self._state_of(topic, partition)
        self._drop_buffer(st)
        st.fetch_position = st.consumed = None
        self._reset_positions([(topic, partition)], "earliest")

    def position(self, topic: str, partition: int) -> int | None:
        """The offset of the next record ``poll`` will return for the partition."""
        return self._state_of(topic, partition).consumed

    def pause(self, *partitions: tuple[str, int]) -> None:
        """Stop fetching and returning records for these partitions (their buffers are
        kept). Not a checkpoint."""
        for tp in partitions:
            self._state_of(*tp).paused = True

    def resume(self, *partitions: tuple[str, int]) -> None:
        for tp in partitions:
            self._state_of(*tp).paused = False

    def paused(self) -> list[tuple[str, int]]:
        return sorted(tp for tp, st in self._parts.items() if st.paused)

    def _state_of(self, topic: str, partition: int) -> _PartitionState:
        st = self._parts.get((topic, partition))
        if st is None:
            raise UsageError(f"kafka: {topic}[{partition}] is not assigned to this consumer",
                             code="not_assigned")
        return st

    # -- polling ---------------------------------------------------------------------

    def poll(self, timeout: float | None = 1.0, *, max_records: int | None = None) -> list[ConsumerRecord]:
        """Up to ``max_records`` (default ``max_poll_records``) records, waiting up to
        ``timeout`` seconds (``None``: until there is one) for the first. A checkpoint
        (records already buffered are returned after the check half of one,
        ``greenrt.checkpoint_if_cancelled``; a fetch or a wait is a full one); runs the
        group protocol when a (re)join is due. Cancelled, it returns nothing and every
        position is as it was. Raises ``NoOffsetError`` under
        ``auto_offset_reset="none"``, ``KafkaProtocolError`` for a corrupt response
        (positions unchanged), ``BrokerError`` for a non-retriable broker error."""
        self._require_region()
        limit = self.max_poll_records if max_records is None else max_records
        deadline = None if timeout is None else greenrt.now() + timeout
        while True:
            self._ensure_group()
            self._ensure_positions()
            if self._buffered_records:
                greenrt.checkpoint_if_cancelled()
                out = self._drain(limit)
                if out:
                    return out
            remaining = None if deadline is None else deadline - greenrt.now()
            if remaining is not None and remaining <= 0:
                greenrt.checkpoint()
                return []
            wait_ms = self.fetch_max_wait_ms if remaining is None else min(
                self.fetch_max_wait_ms, max(int(remaining * 1000), 0))
            if not self._fetch(wait_ms):
                greenrt.sleep(min(self.retry_backoff, remaining) if remaining is not None else self.retry_backoff)

    def __iter__(self) -> Iterator[ConsumerRecord]:
        """Records forever, one checkpoint per record: a fetch or a wait (via ``poll``)
        when none is buffered, else the check half (``checkpoint_if_cancelled``).
        Cancelled, or closed early (``break``), the records taken from the buffer and
        not yet yielded are given back (their partitions seek to the first of them),
        so they are delivered again, never skipped."""
        check = greenrt.checkpoint_if_cancelled
        while True:
            recs = self.poll(None)
            delivered = 0
            try:
                for r in recs:
                    if delivered:
                        check()
                    delivered += 1  # counted before the yield: a break there has it
                    yield r
            finally:
                if delivered < len(recs):
                    self._give_back(recs[delivered:])

    def _give_back(self, recs: list[ConsumerRecord]) -> None:
        """Records drained and not delivered: each partition seeks to the first of them."""
        first: dict[tuple[str, int], int] = {}
        for r in recs:
            first.setdefault((r.topic, r.partition), r.offset)
        for (t, p), off in first.items():
            if (t, p) in self._parts:
                self.seek(t, p, off)

    def poll_batch(self, timeout: float | None = 1.0, *, max_records: int | None = None) -> ProcessingBatch:
        """Like ``poll``, as a :class:`ProcessingBatch` owed by the calling task (see the
        module docstring). An empty batch is resolved at once."""
        batch = ProcessingBatch(self, self.poll(timeout, max_records=max_records))
        if not batch.records:
            batch._ob.commit()
        return batch

    def _drain(self, limit: int) -> list[ConsumerRecord]:
        out: list[ConsumerRecord] = []
        ready = [st for st in self._parts.values() if st.chunks and not st.paused]
        if not ready:
            return out
        if len(ready) > 1:
            start = next(self._rr) % len(ready)  # fairness: rotate the first partition
            ready = ready[start:] + ready[:start]
        taken = 0
        for st in ready:
            chunks = st.chunks
            while chunks and taken < limit:
                chunk = chunks[0]
                recs, i, nbytes = chunk
                k = min(len(recs) - i, limit - taken)
                if i == 0 and k == len(recs):
                    out += recs
                else:
                    out += recs[i:i + k]
                taken += k
                if i + k == len(recs):
                    chunks.popleft()
                    self._buffered_bytes -= nbytes
                else:
                    chunk[1] = i + k
            st.consumed = out[-1].offset + 1
            if taken >= limit:
                break
        self._buffered_records -= taken
        self._stats["records_returned"] += taken
        return out

    def _fetchable(self) -> dict[int, list[tuple[str, int]]]:
        by_leader: dict[int, list[tuple[str, int]]] = {}
        for tp, st in self._parts.items():
            if st.paused or st.chunks or st.fetch_position is None:
                continue
            by_leader.setdefault(self.cluster.leader(*tp), []).append(tp)
        return by_leader

    def _fetch(self, wait_ms: int) -> bool:
        """One round of fetches, one request per leader, concurrently. False when
        nothing could be fetched (no partitions, all paused, buffers full, errors)."""
        if (self._buffered_records >= self.max_buffer_records
                or self._buffered_bytes >= self.max_buffer_bytes):
            return False
        by_leader = self._fetchable()
        if not by_leader:
            return False
        got = [False]

        def one(node: int, tps: list[tuple[str, int]]) -> None:
            try:
                if self._fetch_from(node, tps, wait_ms):
                    got[0] = True
            except (KafkaConnectionError, OSError):
                self._stats["fetch_errors"] += 1
                for t in {t for t, _ in tps}:
                    self.cluster.invalidate(t)

        if len(by_leader) == 1:
            (node, tps), = by_leader.items()
            one(node, tps)
        else:
            with greenrt.region(name="kafka.fetch") as r:
                for node, tps in by_leader.items():
                    r.spawn(one, node, tps)
        return got[0]

    def _fetch_from(self, node: int, tps: list[tuple[str, int]], wait_ms: int) -> bool:
        topics: dict[str, list[dict]] = {}
        for t, p in tps:
            topics.setdefault(t, []).append({
                "partition": p, "current_leader_epoch": -1, "fetch_offset": self._parts[(t, p)].fetch_position,
                "last_fetched_epoch": -1, "log_start_offset": -1,
                "partition_max_bytes": self.partition_max_bytes})
        room = self.max_buffer_bytes - self._buffered_bytes
        body = {"replica_id": -1, "max_wait_ms": wait_ms, "min_bytes": 1,
                "max_bytes": max(1, min(self.fetch_max_bytes, room)), "isolation_level": 0,
                "session_id": 0, "session_epoch": -1,
                "topics": [{"topic": t, "partitions": ps} for t, ps in topics.items()],
                "forgotten_topics_data": [], "rack_id": ""}
        resp = self.cluster.connection(node).request("Fetch", body)
        self._stats["fetches"] += 1
        if resp.get("error_code"):
            raise broker_error(resp["error_code"], "in Fetch")
        got = False
        for t in resp["responses"]:
            for pd in t["partitions"]:
                tp = (t["topic"], pd["partition_index"])
                st = self._parts.get(tp)
                if st is None or st.fetch_position is None:
                    continue  # unassigned or sought meanwhile
                code = pd["error_code"]
                if code:
                    self._partition_error(tp, st, code)
                    continue
                got |= self._accept(tp, st, pd["records"])
        return got

    def _partition_error(self, tp, st: _PartitionState, code: int) -> None:
        self._stats["fetch_errors"] += 1
        if code == 1:  # OFFSET_OUT_OF_RANGE
            st.fetch_position = st.consumed = None
            self._reset_positions([tp], self.auto_offset_reset)
            return
        err = broker_error(code, f"fetching {tp[0]}[{tp[1]}]")
        if code in _REFRESH_CODES or err.retriable:
            self.cluster.invalidate(tp[0])
            return
        raise err

    def _accept(self, tp, st: _PartitionState, data: bytes | None) -> bool:
        """Buffer the records of one partition's fetch data; see "Bounded buffers"."""
        topic, partition = tp
        got = False
        pos = st.fetch_position
        # every batch is decoded (and its CRC checked) before any is buffered: a corrupt
        # response leaves the partition exactly as it was
        batches = list(rec.decode_batches(data, max_decompressed_bytes=self.cluster.limits.max_decompressed_bytes,
                                          topic=topic, partition=partition))
        chunks = st.chunks
        for batch in batches:
            if batch.last_offset < pos:
                self._stats["records_skipped_below_position"] += len(batch.records)
                continue
            if batch.is_control:
                pos = batch.last_offset + 1
                continue
            recs = batch.records
            if (recs and recs[0].offset >= pos and self._buffered_records + len(recs) <= self.max_buffer_records
                    and self._buffered_bytes + batch.data_bytes <= self.max_buffer_bytes):
                # the common case: the whole batch is new and fits both caps
                chunks.append([recs, 0, batch.data_bytes])
                self._buffered_records += len(recs)
                self._buffered_bytes += batch.data_bytes
                pos = max(recs[-1].offset + 1, batch.last_offset + 1)
                got = True
                continue
            # record by record: below the position, or near a cap
            run: list[ConsumerRecord] = []
            run_bytes = 0
            full = False
            for r in recs:
                if r.offset < pos:
                    self._stats["records_skipped_below_position"] += 1
                    continue
                size = _size(r)
                if (self._buffered_records + 1 > self.max_buffer_records
                        or (self._buffered_bytes + size > self.max_buffer_bytes and self._buffered_records)):
                    self._stats["records_dropped_over_cap"] += 1
                    full = True
                    break
                run.append(r)
                run_bytes += size
                self._buffered_records += 1
                self._buffered_bytes += size
                pos = r.offset + 1
            if run:
                chunks.append([run, 0, run_bytes])
                got = True
            if full:
                st.fetch_position = pos  # fetched again once the buffer drains
                return got
            pos = max(pos, batch.last_offset + 1)  # compacted gaps at the batch's end
        st.fetch_position = pos
        return got

    # -- positions -------------------------------------------------------------------

    def _ensure_positions(self) -> None:
        missing = [tp for tp, st in self._parts.items() if st.fetch_position is None]
        if not missing:
            return
        if self.group_id:
            committed = self.committed(missing)
            for tp, off in committed.items():
                if off is not None and off >= 0:
                    st = self._parts[tp]
                    st.fetch_position = st.consumed = off
            missing = [tp for tp in missing if self._parts[tp].fetch_position is None]
        if missing:
            self._reset_positions(missing, self.auto_offset_reset)

    def _reset_positions(self, tps: list[tuple[str, int]], how: str) -> None:
        if how == "none":
            raise NoOffsetError(f"kafka: no committed offset or position out of range for "
                                f"{', '.join(f'{t}[{p}]' for t, p in tps)} and auto_offset_reset='none'")
        offsets = self.list_offsets(tps, _EARLIEST if how == "earliest" else _LATEST)
        for tp, off in offsets.items():
            st = self._parts.get(tp)
            if st is not None and st.fetch_position is None:
                st.fetch_position = st.consumed = off
                self._stats["offset_resets"] += 1

    def list_offsets(self, tps: list[tuple[str, int]], timestamp: int) -> dict[tuple[str, int], int]:
        """ListOffsets at each partition's leader: ``timestamp`` -2 (earliest), -1 (latest)
        or a time in ms. A checkpoint; retries leader changes."""
        out: dict[tuple[str, int], int] = {}
        for _attempt in range(10):
            todo = [tp for tp in tps if tp not in out]
            if not todo:
                return out
            by_leader: dict[int, list[tuple[str, int]]] = {}
            for tp in todo:
                by_leader.setdefault(self.cluster.leader(*tp), []).append(tp)
            for node, group in by_leader.items():
                topics: dict[str, list] = {}
                for t, p in group:
                    topics.setdefault(t, []).append({"partition_index": p, "current_leader_epoch": -1,
                                                     "timestamp": timestamp})
                try:
                    resp = self.cluster.connection(node).request("ListOffsets", {
                        "replica_id": -1, "isolation_level": 0,
                        "topics": [{"name": t, "partitions": ps} for t, ps in topics.items()]})
                except KafkaConnectionError:
                    for t in topics:
                        self.cluster.invalidate(t)
                    continue
                for t in resp["topics"]:
                    for p in t["partitions"]:
                        if p["error_code"] == 0:
                            out[(t["name"], p["partition_index"])] = p["offset"]
                        elif p["error_code"] in _REFRESH_CODES or broker_error(p["error_code"]).retriable:
                            self.cluster.invalidate(t["name"])
                        else:
                            raise broker_error(p["error_code"], f"in ListOffsets for {t['name']}[{p['partition_index']}]")
            if len(out) < len(tps):
                greenrt.sleep(self.retry_backoff)
        missing = [tp for tp in tps if tp not in out]
        if missing:
            raise broker_error(5, f"in ListOffsets for {missing}")
        return out

    # -- the group -------------------------------------------------------------------

    def _find_coordinator(self) -> None:
        for _attempt in range(20):
            conn = self.cluster._any_connection()
            r = conn.request("FindCoordinator", {"key": self.group_id, "key_type": 0,
                                                 "coordinator_keys": [self.group_id]})
            if "coordinators" in r and r.get("coordinators"):
                c = r["coordinators"][0]
                code, node, host, port = c["error_code"], c["node_id"], c["host"], c["port"]
            else:
                code, node, host, port = r["error_code"], r["node_id"], r["host"], r["port"]
            if code == 0:
                if self._coordinator != (node, host, port):
                    for c in (self._coord_conn, self._hb_conn):
                        if c is not None:
                            c.close()
                    self._coord_conn = self._hb_conn = None
                self._coordinator = (node, host, port)
                return
            err = broker_error(code, f"in FindCoordinator for group {self.group_id!r}")
            if not err.retriable:
                raise err
            greenrt.sleep(self.retry_backoff)
        raise broker_error(15, f"for group {self.group_id!r}")

    def _conn_to_coordinator(self, which: str) -> BrokerConnection:
        if self._coordinator is None:
            self._find_coordinator()
        conn = getattr(self, which)
        if conn is None or not conn.usable:
            if conn is not None:
                conn.close()
            _, host, port = self._coordinator
            conn = BrokerConnection.open(host, port, client_id=self.cluster.client_id, limits=self.cluster.limits)
            setattr(self, which, conn)
        return conn

    def _coordinator_request(self, api: str, body: dict, *, which: str = "_coord_conn",
                             timeout: float | None = None) -> dict:
        try:
            return self._conn_to_coordinator(which).request(api, body, timeout=timeout)
        except KafkaConnectionError:
            self._coordinator = None
            raise

    def _ensure_group(self) -> None:
        if self._mode != "subscribe" or not self._rejoin_needed and self._state == "stable":
            return
        self._rejoin()

    def _rejoin(self) -> None:
        if self._parts:
            revoked = sorted(self._parts)
            self._set_assignment([])
            if self.on_revoke is not None:
                self.on_revoke(revoked)
        self._state = "joining"
        self._rejoin_needed = False
        self._stats["rebalances"] += 1
        for _attempt in range(50):
            try:
                if self._join_and_sync():
                    return
            except KafkaConnectionError:
                self._coordinator = None
            greenrt.sleep(self.retry_backoff)
        self._state = "unjoined"
        self._rejoin_needed = True
        raise broker_error(27, f"joining group {self.group_id!r}: gave up after 50 attempts")

    def _join_and_sync(self) -> bool:
        """One JoinGroup + SyncGroup round; True when stable with an assignment."""
        meta = gp.encode_subscription(self._subscription)
        r = self._coordinator_request("JoinGroup", {
            "group_id": self.group_id, "session_timeout_ms": self.session_timeout_ms,
            "rebalance_timeout_ms": self.rebalance_timeout_ms, "member_id": self.member_id,
            "group_instance_id": None, "protocol_type": "consumer",
            "protocols": [{"name": self.assignor, "metadata": meta}], "reason": None},
            # the coordinator holds a JoinGroup until the rebalance completes
            timeout=self.rebalance_timeout_ms / 1000 + 5)
        code = r["error_code"]
        if code == 79:  # MEMBER_ID_REQUIRED (KIP-394): rejoin with the id given
            self.member_id = r["member_id"]
            return False
        if code == 25:
            self.member_id = ""
            return False
        if code in _COORDINATOR_CODES:
            self._coordinator = None
            return False
        if code == 27:
            return False
        if code:
            raise broker_error(code, f"in JoinGroup for group {self.group_id!r}")
        self.member_id = r["member_id"]
        self.generation = r["generation_id"]
        assignments = []
        if r["leader"] == self.member_id:
            assignments = self._plan(r.get("protocol_name") or self.assignor, r["members"])
            if self.leader_sync_delay:
                # librdkafka's mock coordinator completes a sync as soon as the leader's
                # SyncGroup carries every member's assignment, and answers followers
                # whose SyncGroup comes later with INVALID_REQUEST (a Kafka broker hands
                # them their assignment). With every member in one process the leader
                # tends to win that race; a pause lets the followers' requests land first.
                greenrt.sleep(self.leader_sync_delay)
        s = self._coordinator_request("SyncGroup", {
            "group_id": self.group_id, "generation_id": self.generation, "member_id": self.member_id,
            "group_instance_id": None, "protocol_type": "consumer",
            "protocol_name": r.get("protocol_name") or self.assignor, "assignments": assignments})
        code = s["error_code"]
        # INVALID_REQUEST: librdkafka's mock coordinator answers a SyncGroup that
        # arrives after the group moved on (stable again, or empty) with it; a Kafka
        # broker says REBALANCE_IN_PROGRESS or ILLEGAL_GENERATION. Either way: rejoin.
        if code in _REJOIN_CODES or code in _COORDINATOR_CODES or code == 42:
            if code == 25:
                self.member_id = ""
            if code in _COORDINATOR_CODES:
                self._coordinator = None
            return False
        if code:
            raise broker_error(code, f"in SyncGroup for group {self.group_id!r}")
        plan = gp.decode_assignment(s["assignment"])
        tps = sorted((t, p) for t, ps in plan.items() for p in ps)
        if self._rejoin_needed:  # a rebalance began while we synced: go round again
            return False
        self._set_assignment(tps)
        self._state = "stable"
        if self.on_assign is not None:
            self.on_assign(list(tps))
        return True

    def _plan(self, protocol: str, members: list[dict]) -> list[dict]:
        subs = {m["member_id"]: gp.decode_subscription(m["metadata"]) for m in members}
        counts = {}
        for t in sorted({t for ts in subs.values() for t in ts}):
            try:
                counts[t] = len(self.cluster.topic_partitions(t))
            except KafkaError:
                continue  # a topic without partitions yet: nothing to assign
        assignor = gp.ASSIGNORS.get(protocol, gp.assign_range)
        plan = assignor(subs, counts)
        return [{"member_id": m, "assignment": gp.encode_assignment(a)} for m, a in sorted(plan.items())]

    def _heartbeat_loop(self) -> None:
        """The heartbeat task (see the module docstring). Errors never end it: a lost
        connection is reopened next time, a rebalance marks the group for a rejoin."""
        while True:
            greenrt.sleep(self.heartbeat_interval)
            if self._state != "stable" or self._rejoin_needed:
                continue
            generation, member = self.generation, self.member_id
            try:
                r = self._coordinator_request("Heartbeat", {
                    "group_id": self.group_id, "generation_id": generation, "member_id": member,
                    "group_instance_id": None}, which="_hb_conn")
            except (KafkaError, OSError):
                self._stats["heartbeat_errors"] += 1
                continue
            self._stats["heartbeats"] += 1
            code = r["error_code"]
            if code and generation == self.generation:
                self._stats["heartbeat_errors"] += 1
                # any refusal means this member is not in a stable generation any
                # more: rejoin (the next poll does)
                if code == 25:
                    self.member_id = ""
                if code in _COORDINATOR_CODES:
                    self._coordinator = None
                self._rejoin_needed = True

    @property
    def rebalancing(self) -> bool:
        """True while a rejoin is pending or under way (commits are refused)."""
        return self._mode == "subscribe" and (self._rejoin_needed or self._state != "stable")

    # -- offsets ---------------------------------------------------------------------

    def committed(self, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int | None]:
        """The group's committed offsets (``None`` where there is none). A checkpoint."""
        if not self.group_id:
            raise UsageError("kafka: committed offsets need a group_id", code="no_group")
        topics: dict[str, list[int]] = {}
        for t, p in tps:
            topics.setdefault(t, []).append(p)
        for _attempt in range(20):
            try:
                r = self._coordinator_request("OffsetFetch", {
                    "group_id": self.group_id, "require_stable": False,
                    "topics": [{"name": t, "partition_indexes": ps} for t, ps in topics.items()]})
            except KafkaConnectionError:
                greenrt.sleep(self.retry_backoff)
                continue
            if r.get("error_code") in _COORDINATOR_CODES:
                self._coordinator = None
                greenrt.sleep(self.retry_backoff)
                continue
            if r.get("error_code"):
                raise broker_error(r["error_code"], "in OffsetFetch")
            out: dict[tuple[str, int], int | None] = {tp: None for tp in tps}
            for t in r["topics"]:
                for p in t["partitions"]:
                    if p["error_code"]:
                        raise broker_error(p["error_code"], f"in OffsetFetch for {t['name']}[{p['partition_index']}]")
                    out[(t["name"], p["partition_index"])] = p["committed_offset"] if p["committed_offset"] >= 0 else None
            return out
        raise broker_error(15, f"in OffsetFetch for group {self.group_id!r}")

    def commit(self, offsets: dict[tuple[str, int], int] | None = None) -> dict[tuple[str, int], int]:
        """Commit ``offsets`` (``{(topic, partition): next offset}``; default: the
        consumed positions) and return them once the coordinator acknowledged all.

        A checkpoint. Raises ``CommitFailedError`` when the group is rebalancing (not
        sent), when it could not be sent, or when the coordinator refuses any
        partition (nothing stored); ``CommitOutcomeUnknown`` when it was sent and the
        answer was lost (the offsets may be stored; not a failure). Cancelled after
        sending, it raises ``Cancelled``: the commit's fate is unknown and it is not
        reported done. Cancelled before sending, nothing was sent."""
        if not self.group_id:
            raise UsageError("kafka: commit() needs a group_id", code="no_group")
        if offsets is None:
            offsets = {tp: st.consumed for tp, st in self._parts.items() if st.consumed is not None}
        if not offsets:
            return {}
        if self.rebalancing:
            self._stats["commit_failures"] += 1
            raise CommitFailedError("kafka: commit refused: the group is rebalancing", code="rebalance_in_progress")
        generation, member = (self.generation, self.member_id) if self._mode == "subscribe" else (-1, "")
        topics: dict[str, list[dict]] = {}
        for (t, p), off in sorted(offsets.items()):
            topics.setdefault(t, []).append({"partition_index": p, "committed_offset": off,
                                             "committed_leader_epoch": -1, "committed_metadata": None,
                                             "commit_timestamp": -1})
        body = {"group_id": self.group_id, "generation_id_or_member_epoch": generation,
                "generation_id": generation, "member_id": member, "group_instance_id": None,
                "retention_time_ms": -1,
                "topics": [{"name": t, "partitions": ps} for t, ps in topics.items()]}
        try:
            r = self._coordinator_request("OffsetCommit", body)
        except (KafkaOutcomeUnknown, KafkaProtocolError) as e:  # sent; no readable answer
            self._stats["commit_unknown"] += 1
            raise CommitOutcomeUnknown(f"kafka: commit sent, answer lost ({e}); the offsets may be stored") from e
        except KafkaConnectionError as e:
            self._stats["commit_failures"] += 1
            raise CommitFailedError(f"kafka: commit not sent: {e}", code="not_sent") from e
        errors = [(t["name"], p["partition_index"], p["error_code"])
                  for t in r["topics"] for p in t["partitions"] if p["error_code"]]
        if errors:
            self._stats["commit_failures"] += 1
            codes = {c for _, _, c in errors}
            if codes & _REJOIN_CODES and self._mode == "subscribe":
                self._rejoin_needed = True
            if codes & _COORDINATOR_CODES:
                self._coordinator = None
            first = broker_error(errors[0][2])
            raise CommitFailedError(f"kafka: commit refused: {first.name} for "
                                    + ", ".join(f"{t}[{p}]" for t, p, _ in errors), code=first.code)
        self._stats["commits"] += 1
        return dict(offsets)

    def commit_async(self, offsets: dict[tuple[str, int], int] | None = None) -> CommitResult:
        """Start a commit in a task of the consumer's region and return its
        :class:`CommitResult` at once. Not a checkpoint. The offsets are taken now."""
        self._require_region()
        if offsets is None:
            offsets = {tp: st.consumed for tp, st in self._parts.items() if st.consumed is not None}
        res = CommitResult()

        def run() -> None:
            try:
                res._value = self.commit(dict(offsets))
            except BaseException as e:  # handed to the caller through the result
                res._error = e
                if isinstance(e, greenrt.Cancelled):
                    res._error = CommitOutcomeUnknown("kafka: commit cancelled; its fate is unknown")
                    res._event.set()
                    raise
            res._event.set()

        self._region.spawn(run, name="kafka.commit_async")
        return res

    # -- statistics ------------------------------------------------------------------

    def statistics(self) -> dict:
        return {**self._stats, "state": self._state, "rebalancing": self.rebalancing,
                "generation": self.generation, "member_id": self.member_id,
                "assigned": len(self._parts), "paused": sum(1 for st in self._parts.values() if st.paused),
                "buffered_records": self._buffered_records, "buffered_bytes": self._buffered_bytes,
                "cluster": self.cluster.statistics()}
