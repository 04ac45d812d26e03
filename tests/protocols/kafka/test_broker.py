"""The Kafka connection and codec against a real broker implementation (librdkafka's
mock cluster) and against confluent-kafka's producer and consumer; scripted peers for
the faults a real broker does not produce."""

from __future__ import annotations

import struct
import threading
import time
import uuid

import pytest

import greenrt
from greenrt import net
from greenrt.protocols.kafka import codec, records
from greenrt.protocols.kafka.connection import BrokerConnection, KafkaLimits
from greenrt.protocols.kafka.errors import (
    KafkaConnectionError,
    KafkaLimitError,
    KafkaOutcomeUnknown,
    KafkaProtocolError,
)

from .scripted import ScriptedBroker


def _leader(conn, topic):
    for _ in range(50):
        md = conn.request("Metadata", {"topics": [{"name": topic}], "allow_auto_topic_creation": True})
        t = md["topics"][0]
        if t["error_code"] == 0 and t["partitions"]:
            brokers = {b["node_id"]: (b["host"], b["port"]) for b in md["brokers"]}
            p = sorted(t["partitions"], key=lambda p: p["partition_index"])[0]
            return p["partition_index"], brokers[p["leader_id"]]
        greenrt.sleep(0.1)
    raise AssertionError(f"topic {topic} never got a leader")


def _fetch_all(conn, topic, partition, offset=0):
    out = []
    for _ in range(50):
        f = conn.request("Fetch", {
            "replica_id": -1, "max_wait_ms": 100, "min_bytes": 1, "max_bytes": 1 << 20,
            "topics": [{"topic": topic, "partitions": [{
                "partition": partition, "fetch_offset": offset, "partition_max_bytes": 1 << 20,
                "current_leader_epoch": -1, "log_start_offset": -1}]}]})
        (pd,) = f["responses"][0]["partitions"]
        assert pd["error_code"] == 0
        for b in records.decode_batches(pd["records"]):
            out += [r for r in b.records if r.offset >= offset]
        if out:
            return out
    raise AssertionError("nothing fetched")


def test_api_versions_v3_is_refused_by_the_mock_and_renegotiated(mock_cluster):
    def main():
        c = BrokerConnection.open(*mock_cluster["brokers"][1])
        try:
            # the mock knows ApiVersions 0-2: our v3 got UNSUPPORTED_VERSION, then v0
            assert c.broker_versions["ApiVersions"][1] < 3
            assert c.version_for("Metadata") == 12 and c.version_for("Produce") == 9
        finally:
            c.close()

    greenrt.run(main)


@pytest.mark.parametrize("compression", [records.COMPRESSION_NONE, records.COMPRESSION_GZIP])
def test_our_batches_are_read_by_confluent_kafka(mock_cluster, compression):
    from confluent_kafka import Consumer, TopicPartition

    topic = f"ours-{uuid.uuid4().hex[:8]}"
    sent = [(b"k1", b"v1", [("h", b"1")]), (None, b"v2", []), (b"k3", b"", [("x", None)])]

    def main():
        boot = BrokerConnection.open(*mock_cluster["brokers"][1])
        part, leader = _leader(boot, topic)
        boot.close()
        c = BrokerConnection.open(*leader)
        try:
            batch = records.encode_batch(sent, base_timestamp=int(time.time() * 1000),
                                         compression=compression)
            r = c.request("Produce", {"acks": -1, "timeout_ms": 5000, "topic_data": [
                {"name": topic, "partition_data": [{"index": part, "records": batch}]}]})
            pr = r["responses"][0]["partition_responses"][0]
            assert pr["error_code"] == 0
            return part
        finally:
            c.close()

    part = greenrt.run(main)
    cons = Consumer({"bootstrap.servers": mock_cluster["bootstrap"], "group.id": "g-" + topic,
                     "enable.auto.commit": False, "log_level": 0})
    try:
        cons.assign([TopicPartition(topic, part, 0)])
        got = []
        deadline = time.monotonic() + 20
        while len(got) < len(sent) and time.monotonic() < deadline:
            m = cons.poll(0.5)
            if m is not None and not m.error():
                got.append((m.key(), m.value(), [(k, v) for k, v in (m.headers() or [])]))
    finally:
        cons.close()
    assert got == [(k, v, h) for k, v, h in sent]


def test_confluent_kafka_batches_are_read_by_us(mock_cluster):
    from confluent_kafka import Producer

    topic = f"theirs-{uuid.uuid4().hex[:8]}"
    prod = Producer({"bootstrap.servers": mock_cluster["bootstrap"], "compression.type": "gzip",
                     "linger.ms": 50, "log_level": 0})
    for i in range(20):
        prod.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode() * 10, partition=0,
                     headers=[("n", str(i).encode())])
    assert prod.flush(20) == 0

    def main():
        boot = BrokerConnection.open(*mock_cluster["brokers"][1])
        md = boot.request("Metadata", {"topics": [{"name": topic}]})
        brokers = {b["node_id"]: (b["host"], b["port"]) for b in md["brokers"]}
        p0 = [p for p in md["topics"][0]["partitions"] if p["partition_index"] == 0][0]
        boot.close()
        c = BrokerConnection.open(*brokers[p0["leader_id"]])
        try:
            recs = []
            while len(recs) < 20:
                recs += _fetch_all(c, topic, 0, offset=len(recs))
            return recs
        finally:
            c.close()

    recs = greenrt.run(main)
    assert [(r.key, r.value, r.headers) for r in recs] == [
        (f"k{i}".encode(), f"v{i}".encode() * 10, (("n", str(i).encode()),)) for i in range(20)]


# -- scripted peers ----------------------------------------------------------------------

def _open(port, **kw):
    return BrokerConnection(net.open_tcp("127.0.0.1", port), **kw)


def test_response_larger_than_the_cap_closes_before_allocating():
    def respond(api, ver, cid, n, port):
        return struct.pack(">i", 2**31 - 1) + struct.pack(">i", cid)

    srv = ScriptedBroker(respond)

    def main():
        c = _open(srv.port, limits=KafkaLimits(max_response_bytes=1 << 20))
        with pytest.raises(KafkaLimitError, match="max_frame_bytes"):
            c.request("ApiVersions", {}, version=0)
        assert not c.usable

    try:
        greenrt.run(main)
    finally:
        srv.close()


def test_a_response_too_many_never_reaches_the_next_caller():
    """The broker answers the first heartbeat twice; the second request must not take
    the first's duplicate as its own (the correlation id says whose it is)."""

    def respond(api, ver, cid, n, port):
        payload = struct.pack(">ih", cid, 0)  # HeartbeatResponse v0: error_code 0
        frame = struct.pack(">i", len(payload)) + payload
        return frame * 2 if n == 0 else frame

    srv = ScriptedBroker(respond)

    def main():
        c = _open(srv.port)
        c.broker_versions = {"Heartbeat": (0, 0)}
        hb = {"group_id": "g", "generation_id": 1, "member_id": "m"}
        assert c.request("Heartbeat", hb) == {"error_code": 0}
        with pytest.raises(KafkaProtocolError, match="correlation id"):
            c.request("Heartbeat", hb)
        assert not c.usable

    try:
        greenrt.run(main)
    finally:
        srv.close()


def test_cancelled_after_send_closes_the_connection_and_the_next_request_goes_unsent():
    answer = threading.Event()

    def respond(api, ver, cid, n, port):
        if n == 0:
            answer.wait(5)  # the reply comes after the caller was cancelled
        payload = struct.pack(">ih", cid, 0)
        return struct.pack(">i", len(payload)) + payload

    srv = ScriptedBroker(respond)

    def main():
        c = _open(srv.port)
        c.broker_versions = {"Heartbeat": (0, 0)}
        hb = {"group_id": "g", "generation_id": 1, "member_id": "m"}
        with greenrt.move_on_after(0.2):
            c.request("Heartbeat", hb)
        answer.set()
        assert not c.usable
        # the next request is refused unsent (the first one's answer is owed: never read)
        with pytest.raises(KafkaConnectionError) as ei:
            c.request("Heartbeat", hb)
        assert not isinstance(ei.value, KafkaOutcomeUnknown) and "not sent" in str(ei.value)

    try:
        greenrt.run(main)
    finally:
        srv.close()


def test_encode_request_header_versions():
    v1 = codec.encode_request("Metadata", 8, 5, "cid", {"topics": None})
    v2 = codec.encode_request("Metadata", 9, 5, "cid", {"topics": None})
    assert v1[4:14] == struct.pack(">hhih", 3, 8, 5, 3) and v1[14:17] == b"cid"
    assert v2[17:18] == b"\x00"  # header v2's empty tagged-field section


def test_murmur2_partitioner_matches_librdkafka(mock_cluster):
    """confluent-kafka with ``partitioner=murmur2`` (the Java client's algorithm) puts
    each key where ours does."""
    from confluent_kafka import Producer

    from greenrt.protocols.kafka.partitioner import murmur2_partition

    topic = f"keys-{uuid.uuid4().hex[:8]}"
    placed = {}
    prod = Producer({"bootstrap.servers": mock_cluster["bootstrap"], "partitioner": "murmur2",
                     "log_level": 0})

    def on_delivery(err, msg):
        assert err is None
        placed[msg.key()] = msg.partition()

    keys = [f"key-{i}".encode() for i in range(60)] + [b"", b"a", b"ab", b"abc", b"\xff" * 7]
    for k in keys:
        prod.produce(topic, key=k, value=b"x", on_delivery=on_delivery)
    assert prod.flush(20) == 0
    nparts = len(mock_cluster["admin"].list_topics(topic, timeout=10).topics[topic].partitions)
    assert nparts > 1
    assert {k: murmur2_partition(k, nparts) for k in keys} == placed
