"""``Producer.submit``: records queued from one task, sent by sender tasks of the
producer's region, each settled through its ``Delivery``; against librdkafka's mock
cluster, read back by confluent-kafka."""

from __future__ import annotations

import uuid
from collections import deque

import pytest

import greenrt
from greenrt.protocols.base.errors import UsageError
from greenrt.protocols.kafka.errors import KafkaOutcomeUnknown, RecordNotSent
from greenrt.protocols.kafka.partitioner import murmur2_partition
from greenrt.protocols.kafka.producer import Delivery, Producer

from .test_producer import _consume_all


def _topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_submitted_records_are_each_written_once_in_order(mock_cluster):
    """3000 keyed records from one task, 200 in flight at most (the oldest waited for
    before the next submit): every Delivery gives the offset the record really has,
    per key in submission order, each written once."""
    topic = _topic("submit")
    recs = [(f"k{i % 7}".encode(), f"v{i}".encode()) for i in range(3000)]

    def main():
        out = []
        with Producer(mock_cluster["bootstrap"]) as prod:
            window: deque[Delivery] = deque()
            for k, v in recs:
                if len(window) >= 200:
                    out.append(window.popleft().result())
                window.append(prod.submit(topic, v, key=k, headers=[("n", v)]))
            out += [d.result() for d in window]
            st = prod.statistics()
        return out, st

    metas, st = greenrt.run(main)
    assert st["records_sent"] == len(recs) and st["senders_started"] >= 1
    assert st["batches_sent"] < len(recs) // 10  # batched
    total = len(mock_cluster["admin"].list_topics(topic, timeout=10).topics[topic].partitions)
    assert all(m.partition == murmur2_partition(k, total) for m, (k, _) in zip(metas, recs, strict=True))
    got = _consume_all(mock_cluster["bootstrap"], topic, len(recs))
    assert len(got) == len(recs)  # written once each
    where = {(m.partition(), m.offset()): (m.key(), m.value(), m.headers()) for m in got}
    for m, (k, v) in zip(metas, recs, strict=True):
        assert where[(m.partition, m.offset)] == (k, v, [("n", v)])
    per_key: dict[bytes, list[int]] = {}
    for m, (k, _) in zip(metas, recs, strict=True):
        per_key.setdefault(k, []).append(m.offset)
    assert all(offs == sorted(offs) for offs in per_key.values())


def test_the_block_end_waits_for_every_submitted_record(mock_cluster):
    """Nothing waits on the Deliveries inside the block: its end flushes them all."""
    topic = _topic("flush")

    def main():
        with Producer(mock_cluster["bootstrap"]) as prod:
            ds = [prod.submit(topic, b"r%d" % i, partition=0) for i in range(500)]
            assert not any(d.done for d in ds)  # submit never sends by itself
        assert all(d.done for d in ds)
        return [d.result() for d in ds]

    metas = greenrt.run(main)
    assert [m.offset for m in metas] == list(range(metas[0].offset, metas[0].offset + 500))
    assert len(_consume_all(mock_cluster["bootstrap"], topic, 500)) == 500


def test_a_block_that_raises_sends_nothing_still_queued(mock_cluster):
    """The block raises before any checkpoint: no sender ran, so every record is
    settled RecordNotSent, and the broker has none of them."""
    topic = _topic("raise")
    held: list[Delivery] = []

    def main():
        with Producer(mock_cluster["bootstrap"]) as prod:
            prod.send(topic, b"first", partition=0)  # the topic exists, the producer is ready
            held.extend(prod.submit(topic, b"never %d" % i, partition=0) for i in range(20))
            raise ValueError("the application failed")

    with pytest.raises(ValueError, match="the application failed"):
        greenrt.run(main)
    assert all(d.done for d in held)
    for d in held:
        with pytest.raises(RecordNotSent):
            greenrt.run(d.result)
    got = _consume_all(mock_cluster["bootstrap"], topic, 1, timeout=5)
    assert [m.value() for m in got] == [b"first"]


def test_submit_needs_the_with_block(mock_cluster):
    def main():
        prod = Producer(mock_cluster["bootstrap"])
        try:
            with pytest.raises(UsageError, match="with block"):
                prod.submit("x", b"v", partition=0)
        finally:
            prod.close()
        with Producer(mock_cluster["bootstrap"]) as prod:
            pass
        with pytest.raises(UsageError, match="closing"):
            prod.submit("x", b"v", partition=0)

    greenrt.run(main)


def test_a_cancelled_wait_leaves_the_record_on_its_way(slow_mock_cluster):
    """``result()`` cancelled while the record's batch is on the wire (the broker
    answers after 300 ms): the record is not withdrawn, not made unknown; a second
    ``result()`` gets its metadata."""
    topic = _topic("waitcancel")

    def main():
        with Producer(slow_mock_cluster["bootstrap"]) as prod:
            prod.send(topic, b"zero", partition=0)
            d = prod.submit(topic, b"one", partition=0)
            with greenrt.move_on_after(0.1) as sc:
                d.result()
            assert sc.cancelled_caught and not d.done
            md = d.result()
            return md, prod.statistics()

    md, st = greenrt.run(main)
    assert md.offset >= 1 and st["in_doubt"] == 0 and st["withdrawn_batches"] == 0


def test_many_waiters_on_one_record_and_flush_are_all_woken(mock_cluster):
    topic = _topic("waiters")

    def main():
        got = []
        with Producer(mock_cluster["bootstrap"]) as prod:
            d = prod.submit(topic, b"shared", partition=0)
            with greenrt.region() as rg:
                for _ in range(3):
                    rg.spawn(lambda: got.append(d.result().offset))
                rg.spawn(lambda: (prod.flush(), got.append("flushed")))
                rg.spawn(lambda: got.append(type(d.exception()).__name__))
        return got, d.result().offset

    got, off = greenrt.run(main)
    assert sorted(got, key=str) == sorted([off, off, off, "flushed", "NoneType"], key=str)


def test_a_full_partition_queue_makes_submit_wait_for_room(mock_cluster):
    """``max_queued_records=8``: submit waits (a checkpoint) while 8 are queued; 200
    records all go, batches never larger than what the queue can hold plus the one
    in flight; a submit cancelled while it waits for room queues nothing."""
    topic = _topic("room")

    def main():
        with Producer(mock_cluster["bootstrap"], max_queued_records=8) as prod:
            prod.send(topic, b"warm", partition=0)
            ds = [prod.submit(topic, b"r%d" % i, partition=0) for i in range(200)]
            for _ in range(8):
                prod.submit(topic, b"fill", partition=0)  # the sender has not run yet
            with greenrt.move_on_after(0) as sc:
                prod.submit(topic, b"cancelled while waiting", partition=0)
            queued = len(prod._parts[(topic, 0)].queue)
            metas = [d.result() for d in ds]
        return metas, sc.cancelled_caught, queued

    metas, cancelled, queued = greenrt.run(main)
    assert cancelled and queued <= 8
    assert [m.offset for m in metas] == list(range(1, 201))
    got = _consume_all(mock_cluster["bootstrap"], topic, 209)
    values = [m.value() for m in got]
    assert b"cancelled while waiting" not in values and len(values) == 209


def test_a_flush_that_cannot_start_settles_submitted_records_as_not_sent():
    """No broker answers (a closed port): the sender's flush fails before taking a
    batch; the submitted records are settled RecordNotSent (never unknown: nothing
    was sent) and the sender ends instead of retrying in a loop."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connection refused

    def main():
        with Producer(f"127.0.0.1:{port}", retry_backoff=0.001) as prod:
            ds = [prod.submit("t", b"v", partition=0) for _ in range(5)]
            errs = [d.exception() for d in ds]
            return errs, prod.statistics()

    errs, st = greenrt.run(main)
    assert all(isinstance(e, RecordNotSent) and not isinstance(e, KafkaOutcomeUnknown) for e in errs), errs
    assert st["senders_started"] == 1 and st["records_sent"] == 0
