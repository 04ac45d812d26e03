"""The producer against librdkafka's mock cluster, read back by confluent-kafka."""

from __future__ import annotations

import struct
import time
import uuid

import pytest

import greenrt
from greenrt.protocols.kafka import codec, records
from greenrt.protocols.kafka.cluster import Cluster
from greenrt.protocols.kafka.connection import KafkaLimits
from greenrt.protocols.kafka.errors import KafkaOutcomeUnknown
from greenrt.protocols.kafka.partitioner import murmur2_partition
from greenrt.protocols.kafka.producer import Producer

from .scripted import ScriptedBroker


def _consume_all(bootstrap, topic, expect, timeout=30):
    from confluent_kafka import Consumer

    cons = Consumer({"bootstrap.servers": bootstrap, "group.id": "g-" + uuid.uuid4().hex,
                     "auto.offset.reset": "earliest", "enable.auto.commit": False, "log_level": 0})
    cons.subscribe([topic])
    got = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < expect and time.monotonic() < deadline:
            m = cons.poll(0.5)
            if m is not None and not m.error():
                got.append(m)
        extra_until = time.monotonic() + 1.0  # anything written twice shows up here
        while time.monotonic() < extra_until:
            m = cons.poll(0.2)
            if m is not None and not m.error():
                got.append(m)
    finally:
        cons.close()
    return got


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_concurrent_sends_are_batched_and_each_written_once(mock_cluster, compression):
    topic = f"prod-{uuid.uuid4().hex[:8]}"
    results = []

    def main():
        prod = Producer(mock_cluster["bootstrap"], compression=compression)
        try:
            def sender(i):
                for j in range(5):
                    results.append(prod.send(topic, f"v{i}-{j}".encode(), key=f"k{i}".encode(),
                                             headers=[("i", str(i).encode())]))
            with greenrt.region() as r:
                for i in range(20):
                    r.spawn(sender, i)
            return prod.statistics()
        finally:
            prod.close()

    stats = greenrt.run(main)
    assert stats["records_sent"] == 100
    assert stats["batches_sent"] < 100  # callers batched each other's records
    nparts = len({m.partition for m in results})
    got = _consume_all(mock_cluster["bootstrap"], topic, 100)
    assert sorted(m.value() for m in got) == sorted(f"v{i}-{j}".encode() for i in range(20) for j in range(5))
    by_key = {}
    for m in got:
        by_key.setdefault(m.key(), set()).add(m.partition())
    total = len(mock_cluster["admin"].list_topics(topic, timeout=10).topics[topic].partitions)
    assert nparts >= 1
    assert all(parts == {murmur2_partition(k, total)} for k, parts in by_key.items())
    # per key, order of sends is the order in the log
    for i in range(20):
        vals = [m.value() for m in sorted(got, key=lambda m: m.offset()) if m.key() == f"k{i}".encode()]
        assert vals == [f"v{i}-{j}".encode() for j in range(5)]
    # offsets returned to the callers are the records' real offsets
    offs = {(m.partition, m.offset) for m in results}
    assert offs == {(m.partition(), m.offset()) for m in got}


def test_send_many_returns_one_result_per_record_and_writes_each_once(mock_cluster):
    topic = f"many-{uuid.uuid4().hex[:8]}"
    recs = [(f"k{i % 13}".encode(), f"v{i}".encode()) for i in range(1500)]
    recs[7] = (b"k7", b"with headers", [("h", b"1"), ("n", None)])

    def main():
        prod = Producer(mock_cluster["bootstrap"], max_batch_records=400)
        try:
            # one concurrent send() on a partition send_many also uses
            with greenrt.region() as r:
                r.spawn(lambda: results.append(prod.send(topic, b"solo", key=b"k0")))
                results.append(prod.send_many(topic, recs))
            return prod.statistics()
        finally:
            prod.close()

    results: list = []
    stats = greenrt.run(main)
    many = next(x for x in results if isinstance(x, list))
    assert len(many) == len(recs) and all(m is not None and not isinstance(m, BaseException) for m in many)
    assert stats["records_sent"] == len(recs) + 1 and stats["batches_sent"] >= 4  # 400 a batch at most
    total = len(mock_cluster["admin"].list_topics(topic, timeout=10).topics[topic].partitions)
    assert all(m.partition == murmur2_partition(k, total) for m, (k, *_) in zip(many, recs, strict=True))
    got = _consume_all(mock_cluster["bootstrap"], topic, len(recs) + 1)
    assert len(got) == len(recs) + 1  # written once each
    where = {(m.partition(), m.offset()): (m.key(), m.value(), m.headers()) for m in got}
    for m, r in zip(many, recs, strict=True):
        key, value, headers = where[(m.partition, m.offset)]
        assert (key, value) == r[:2]
        assert (headers or []) == (r[2] if len(r) == 3 else [])


def _batches(cluster, topic, partition):
    """Every batch of the partition, fetched with our own codec (the mock answers one
    batch per fetch)."""
    conn = cluster.connection(cluster.leader(topic, partition))
    out, offset = [], 0
    while True:
        f = conn.request("Fetch", {
            "replica_id": -1, "max_wait_ms": 10, "min_bytes": 1, "max_bytes": 1 << 20,
            "topics": [{"topic": topic, "partitions": [{
                "partition": partition, "fetch_offset": offset, "partition_max_bytes": 1 << 20,
                "current_leader_epoch": -1, "log_start_offset": -1}]}]})
        pd = f["responses"][0]["partitions"][0]
        got = [b for b in records.decode_batches(pd["records"]) if b.last_offset >= offset]
        if not got:
            return out
        out += got
        offset = got[-1].last_offset + 1


def test_cancelled_produce_is_in_doubt_and_resent_with_the_same_sequence(slow_mock_cluster):
    """The flusher is cancelled after its request left (the broker answers after 300 ms):
    the record is never reported failed; the next send on the partition first re-sends
    the in-doubt batch with the *same* producer id, epoch and base sequence — what a
    broker deduplicates (KIP-98). librdkafka's mock broker does not check sequences
    (it writes the copy), so the test reads both copies back and checks that they carry
    identical idempotence headers; ``test_duplicate_sequence_is_success`` covers the
    broker's DUPLICATE_SEQUENCE_NUMBER answer."""
    topic = f"doubt-{uuid.uuid4().hex[:8]}"

    def main():
        prod = Producer(Cluster(slow_mock_cluster["bootstrap"]))
        try:
            prod.send(topic, b"zero", partition=0)  # producer id, leader, connection: ready
            with greenrt.move_on_after(0.1):
                prod.send(topic, b"first", partition=0)
                raise AssertionError("not cancelled")  # pragma: no cover
            assert prod.statistics()["in_doubt_partitions"] == 1
            md = prod.send(topic, b"second", partition=0)
            return md, prod.statistics(), _batches(prod.cluster, topic, 0), prod.producer_id
        finally:
            prod.close()

    md, st, batches, pid = greenrt.run(main)
    assert st["in_doubt_resolved"] == 1 and st["in_doubt_partitions"] == 0
    heads = [(b.producer_id, b.producer_epoch, b.base_sequence, [r.value for r in b.records])
             for b in batches]
    assert heads[0] == (pid, 0, 0, [b"zero"])
    firsts = [h for h in heads if h[3] == [b"first"]]
    assert firsts and all(h[:3] == (pid, 0, 1) for h in firsts)   # same identity every time
    assert heads[-1] == (pid, 0, 2, [b"second"])
    assert md.offset == batches[-1].base_offset


def test_duplicate_sequence_is_success():
    """A broker that answers DUPLICATE_SEQUENCE_NUMBER (46) already has the batch: the
    producer reports success with the broker's offset (a scripted broker, since the
    mock never answers 46)."""
    versions = {"ApiVersions": 0, "Metadata": 1, "InitProducerId": 0, "Produce": 3}
    keys = {codec.API_KEYS[a]: (a, v) for a, v in versions.items()}

    def respond(api_key, version, cid, n, port):
        api, v = keys[api_key]
        if api == "ApiVersions" and version > 0:  # as a real broker: 35, v0 layout
            body = struct.pack(">hi", 35, 0)
        elif api == "ApiVersions":
            body = codec.encode_message("ApiVersionsResponse", 0, {"api_keys": [
                {"api_key": codec.API_KEYS[a], "min_version": 0, "max_version": mv}
                for a, mv in versions.items()]})
        elif api == "Metadata":
            body = codec.encode_message("MetadataResponse", 1, {
                "brokers": [{"node_id": 1, "host": "127.0.0.1", "port": port}],
                "topics": [{"name": "t", "partitions": [
                    {"partition_index": 0, "leader_id": 1, "replica_nodes": [1], "isr_nodes": [1]}]}]})
        elif api == "InitProducerId":
            body = codec.encode_message("InitProducerIdResponse", 0, {"producer_id": 7, "producer_epoch": 0})
        else:
            body = codec.encode_message("ProduceResponse", 3, {"responses": [{"name": "t", "partition_responses": [
                {"index": 0, "error_code": 46, "base_offset": 41}]}]})
        payload = struct.pack(">i", cid) + body
        return struct.pack(">i", len(payload)) + payload

    srv = ScriptedBroker(respond)

    def main():
        prod = Producer(f"127.0.0.1:{srv.port}")
        try:
            return prod.send("t", b"v", partition=0), prod.statistics()
        finally:
            prod.close()

    try:
        md, st = greenrt.run(main)
    finally:
        srv.close()
    assert (md.partition, md.offset) == (0, 41)
    assert st["duplicates"] == 1 and st["records_sent"] == 1


def test_other_waiters_get_outcome_unknown_when_the_flusher_is_cancelled(slow_mock_cluster):
    """A waiter whose record rode in a cancelled flusher's batch is told *unknown*, never
    failed; everything sent is in the log, and any copy (the mock does not deduplicate)
    carries the same idempotence identity as the original."""
    topic = f"waiters-{uuid.uuid4().hex[:8]}"
    seen = {}

    def main():
        prod = Producer(Cluster(slow_mock_cluster["bootstrap"]))
        try:
            prod.send(topic, b"zero", partition=0)

            def flusher():
                with greenrt.move_on_after(0.1):
                    prod.send(topic, b"a", partition=0)

            def waiter():
                greenrt.sleep(0.01)
                try:
                    prod.send(topic, b"b", partition=0)
                    seen["b"] = "ok"
                except KafkaOutcomeUnknown:
                    seen["b"] = "unknown"

            with greenrt.region() as r:
                r.spawn(flusher)
                r.spawn(waiter)
            prod.send(topic, b"c", partition=0)
            return _batches(prod.cluster, topic, 0)
        finally:
            prod.close()

    batches = greenrt.run(main)
    assert seen["b"] in ("ok", "unknown")
    values = [r.value for b in batches for r in b.records]
    assert set(values) == {b"zero", b"a", b"b", b"c"}
    ident = {}
    for b in batches:
        key = tuple(r.value for r in b.records)
        ident.setdefault(key, set()).add((b.producer_id, b.producer_epoch, b.base_sequence))
    assert all(len(ids) == 1 for ids in ident.values()), ident


# -- a batch refused for good: epoch bump (KIP-360) -----------------------------------

_PRODUCE, _INIT_PID = 0, 22


def _sequence_program(mock, topic, script, *, request_timeout=0.5):
    """Run ``script(prod, cluster)`` against ``mock`` with partition 0 of ``topic`` led
    by broker 1; return what it returns, the statistics and the partition's batches."""
    mock.create_topic(topic, 1)
    mock.set_leader(topic, 0, 1)

    def main():
        cluster = Cluster(mock.bootstrap, limits=KafkaLimits(request_timeout=request_timeout))
        prod = Producer(cluster, retry_backoff=0.01, delivery_timeout=30)
        try:
            out = script(prod, cluster)
            return out, prod.statistics(), _batches(cluster, topic, 0)
        finally:
            prod.close()

    return greenrt.run(main)


def _heads(batches):
    return [(b.producer_id, b.producer_epoch, b.base_sequence, [r.value for r in b.records]) for b in batches]


@pytest.mark.parametrize("code", [45, 47, 59], ids=["out_of_order", "invalid_epoch", "unknown_producer"])
def test_in_doubt_batch_refused_on_retry_is_unknown_and_the_partition_goes_on(mock, code):
    """The answer to a Produce is lost (the mock answers after 3 s, past the 0.5 s
    request timeout: the batch *is* written), and the retry is refused for good: the
    record is reported unknown, never failed; the producer moves to a new identity and
    the next record is written under it from sequence 0. Before, every later record on
    the partition failed ("an earlier batch is still in doubt").

    The producer first asks for an epoch bump (InitProducerId v3+ with its id and
    epoch, KIP-360); librdkafka's mock refuses that for a non-transactional producer
    (INVALID_PRODUCER_ID_MAPPING, as a Kafka broker, which always hands such a
    producer a new id), so the producer then asks for a new id: two InitProducerId
    requests. ``labbroker.py`` grants the bump (``test_lab.py``)."""
    topic = f"bump-{code}-{uuid.uuid4().hex[:6]}"

    def script(prod, cluster):
        prod.send(topic, b"zero", partition=0)
        pid = prod.producer_id
        mock.track_requests()
        mock.push_broker_errors(1, _PRODUCE, (0, 3000), (code, 0))
        try:
            prod.send(topic, b"lost", partition=0)
            first = "ok"
        except KafkaOutcomeUnknown:
            first = "unknown"
        md = prod.send(topic, b"after", partition=0)
        return pid, first, md, (prod.producer_id, prod.producer_epoch)

    (pid, first, md, ident), st, batches = _sequence_program(mock, topic, script)
    assert first == "unknown"
    assert ident[0] != pid and ident[1] == 0
    assert mock.request_keys().count(_INIT_PID) == 2  # the bump (refused), then a new id
    assert st["epoch_bumps"] == 1 and st["in_doubt_abandoned"] == 1 and st["in_doubt_partitions"] == 0
    heads = _heads(batches)
    assert heads == [(pid, 0, 0, [b"zero"]), (pid, 0, 1, [b"lost"]), (ident[0], 0, 0, [b"after"])], heads
    assert md.offset == batches[-1].base_offset


def test_in_doubt_batch_left_by_a_cancelled_flusher_then_refused_is_abandoned(mock):
    """The flusher is cancelled while its batch is on the wire (the answer is owed for
    3 s): the batch is in doubt. The next flush re-sends it first, the broker refuses
    it for good (OUT_OF_ORDER_SEQUENCE_NUMBER): it is abandoned, its record stays
    unknown, the producer moves to a new identity, and the flusher's own record goes
    out under it from sequence 0."""
    topic = f"abandon-{uuid.uuid4().hex[:6]}"

    def script(prod, cluster):
        prod.send(topic, b"zero", partition=0)
        mock.push_broker_errors(1, _PRODUCE, (0, 3000))
        with greenrt.move_on_after(0.2):
            prod.send(topic, b"lost", partition=0)
            raise AssertionError("not cancelled")  # pragma: no cover
        assert prod.statistics()["in_doubt_partitions"] == 1
        mock.push_broker_errors(1, _PRODUCE, (45, 0))  # (the broker's stack shadows the cluster's)
        return prod.send(topic, b"after", partition=0), prod.producer_id

    (md, new_pid), st, batches = _sequence_program(mock, topic, script, request_timeout=10)
    assert st["in_doubt"] == 1 and st["in_doubt_abandoned"] == 1 and st["in_doubt_resolved"] == 0, st
    assert st["epoch_bumps"] == 1 and st["in_doubt_partitions"] == 0
    heads = _heads(batches)
    assert heads[-1] == (new_pid, 0, 0, [b"after"]) and heads[0][0] != new_pid, heads
    assert md.offset == batches[-1].base_offset
    assert [h[3] for h in heads].count([b"lost"]) == 1  # the mock wrote the first copy


def test_batch_refused_before_anything_was_written_is_renumbered_and_sent(mock):
    """UNKNOWN_PRODUCER_ID on a batch that was never written (no answer lost): as the
    Java client does, the producer moves to a new identity and sends the batch again
    from sequence 0; the caller gets its offset, never a failure."""
    topic = f"renumber-{uuid.uuid4().hex[:6]}"

    def script(prod, cluster):
        prod.send(topic, b"zero", partition=0)
        pid = prod.producer_id
        mock.push_errors(_PRODUCE, 59)
        return pid, prod.send(topic, b"one", partition=0), prod.producer_id

    (pid, md, new_pid), st, batches = _sequence_program(mock, topic, script)
    assert st["epoch_bumps"] == 1 and st["in_doubt"] == 0 and st["records_sent"] == 2
    assert new_pid != pid
    assert _heads(batches) == [(pid, 0, 0, [b"zero"]), (new_pid, 0, 0, [b"one"])]
    assert md.offset == batches[-1].base_offset


def test_epoch_bump_without_kip360_asks_for_a_new_producer_id_at_once(mock):
    """A broker whose InitProducerId stops at v2 cannot bump an epoch: the producer
    does not try, and asks for a new producer id (one InitProducerId request)."""
    topic = f"newpid-{uuid.uuid4().hex[:6]}"
    mock.set_api_version(_INIT_PID, 0, 2)

    def script(prod, cluster):
        prod.send(topic, b"zero", partition=0)
        pid = prod.producer_id
        mock.track_requests()
        mock.push_errors(_PRODUCE, 59)
        return pid, prod.send(topic, b"one", partition=0), (prod.producer_id, prod.producer_epoch)

    (pid, md, ident), st, batches = _sequence_program(mock, topic, script)
    assert ident[0] != pid and ident[1] == 0 and st["epoch_bumps"] == 1
    assert mock.request_keys().count(_INIT_PID) == 1
    assert _heads(batches) == [(pid, 0, 0, [b"zero"]), (ident[0], 0, 0, [b"one"])]

