"""Interop with confluent-kafka (librdkafka) both ways, through librdkafka's mock
cluster: records our producer writes are read by confluent-kafka's consumer, and
records confluent-kafka's producer writes are read by our consumer — keys, null keys
and values, headers (with a null header value), in every compression codec."""

from __future__ import annotations

import time
import uuid

import pytest

import greenrt
from greenrt.protocols.kafka.consumer import Consumer
from greenrt.protocols.kafka.producer import Producer

pytestmark = pytest.mark.timeout(120)

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
N = 40


def _record(i):
    key = None if i % 7 == 0 else f"key-{i}".encode()
    value = None if i % 11 == 5 else (f"value-{i}-" * (i % 5 + 1)).encode()
    headers = [("n", str(i).encode()), ("empty", b""), ("null", None)] if i % 3 else []
    return key, value, headers


@pytest.mark.parametrize("compression", CODECS)
def test_our_producer_is_read_by_confluent_kafka(mock, compression):
    from confluent_kafka import Consumer as CKConsumer

    topic = f"to-ck-{compression}"
    mock.create_topic(topic, 2, 3)

    def main():
        prod = Producer(mock.bootstrap, compression=compression)
        try:
            def send(i):
                k, v, h = _record(i)
                prod.send(topic, v, key=k, headers=h, partition=i % 2)

            with greenrt.region() as r:  # concurrent sends: multi-record compressed batches
                for i in range(N):
                    r.spawn(send, i)
            return prod.statistics()
        finally:
            prod.close()

    st = greenrt.run(main)
    assert st["records_sent"] == N and st["batches_sent"] < N

    cons = CKConsumer({"bootstrap.servers": mock.bootstrap, "group.id": "ck-" + uuid.uuid4().hex,
                       "auto.offset.reset": "earliest", "enable.auto.commit": False, "log_level": 0})
    cons.subscribe([topic])
    got = []
    deadline = time.monotonic() + 30
    try:
        while len(got) < N and time.monotonic() < deadline:
            m = cons.poll(0.5)
            if m is not None:
                assert m.error() is None, m.error()
                got.append(m)
    finally:
        cons.close()
    assert len(got) == N
    want = sorted(repr(_record(i)) for i in range(N))
    seen = sorted(repr((m.key(), m.value(), [(k, v) for k, v in (m.headers() or [])])) for m in got)
    assert seen == want


@pytest.mark.parametrize("compression", CODECS)
def test_confluent_kafka_producer_is_read_by_us(mock, compression):
    from confluent_kafka import Producer as CKProducer

    topic = f"from-ck-{compression}"
    mock.create_topic(topic, 2, 3)
    p = CKProducer({"bootstrap.servers": mock.bootstrap, "compression.type": compression,
                    "linger.ms": 20, "log_level": 0})
    errors = []
    for i in range(N):
        k, v, h = _record(i)
        p.produce(topic, value=v, key=k, headers=h or None, partition=i % 2,
                  on_delivery=lambda err, msg: errors.append(err) if err else None)
    assert p.flush(30) == 0 and not errors

    def main():
        with Consumer(mock.bootstrap, auto_offset_reset="earliest") as c:
            c.assign([(topic, 0), (topic, 1)])
            got = []
            with greenrt.fail_after(30):
                while len(got) < N:
                    got += c.poll(0.5)
            got += c.poll(0.3)
            return got

    got = greenrt.run(main)
    assert len(got) == N
    want = sorted(repr(_record(i)) for i in range(N))
    assert sorted(repr((r.key, r.value, list(r.headers))) for r in got) == want
