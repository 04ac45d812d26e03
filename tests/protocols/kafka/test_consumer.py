"""The consumer against librdkafka's mock cluster (``mock``: a fresh cluster with its
control API), and against a scripted broker for fetch responses a real broker does
not send (a partial trailing batch, a batch below the fetch offset, a bad CRC)."""

from __future__ import annotations

import struct

import pytest

import greenrt
from greenrt.protocols.kafka import codec, records
from greenrt.protocols.kafka.cluster import Cluster
from greenrt.protocols.kafka.consumer import Consumer
from greenrt.protocols.kafka.errors import CommitFailedError, KafkaProtocolError, NoOffsetError
from greenrt.protocols.kafka.producer import Producer

from .scripted import ScriptedBroker

pytestmark = pytest.mark.timeout(120)

OFFSET_COMMIT = 8


def _produce(bootstrap, topic, n, *, partitions=None, prefix="v"):
    def main():
        prod = Producer(bootstrap)
        try:
            out = []
            for i in range(n):
                p = None if partitions is None else partitions[i % len(partitions)]
                out.append(prod.send(topic, f"{prefix}{i}".encode(), key=f"k{i}".encode(),
                                     headers=[("i", str(i).encode()), ("none", None)], partition=p))
            return out
        finally:
            prod.close()

    return greenrt.run(main)


def _produce_one_batch(bootstrap, topic, partition, values):
    """All ``values`` as one record batch (so that one fetch returns them all)."""
    def main():
        cl = Cluster(bootstrap)
        try:
            conn = cl.connection(cl.leader(topic, partition))
            r = conn.request("Produce", {"acks": -1, "timeout_ms": 5000, "topic_data": [
                {"name": topic, "partition_data": [
                    {"index": partition, "records": records.encode_batch([(None, v, []) for v in values])}]}]})
            assert r["responses"][0]["partition_responses"][0]["error_code"] == 0
        finally:
            cl.close()

    greenrt.run(main)


def _poll_until(c, n, *, limit=30.0):
    got = []
    with greenrt.fail_after(limit):
        while len(got) < n:
            got += c.poll(0.5)
    return got


def test_assign_round_trip_keys_headers_offsets(mock):
    mock.create_topic("rt", 3, 3)
    metas = _produce(mock.bootstrap, "rt", 30)

    def main():
        with Consumer(mock.bootstrap, auto_offset_reset="earliest") as c:
            c.assign([("rt", p) for p in range(3)])
            got = _poll_until(c, 30)
            extra = c.poll(0.3)
            return got, extra, c.statistics()

    got, extra, st = greenrt.run(main)
    assert extra == []
    assert sorted(r.value for r in got) == sorted(f"v{i}".encode() for i in range(30))
    where = {(m.partition, m.offset) for m in metas}
    assert {(r.partition, r.offset) for r in got} == where
    for r in got:
        i = int(r.value[1:])
        assert r.key == f"k{i}".encode()
        assert r.headers == (("i", str(i).encode()), ("none", None))
    per_part = {}
    for r in got:
        per_part.setdefault(r.partition, []).append(r.offset)
    assert all(offs == sorted(offs) for offs in per_part.values())  # in log order
    assert st["records_returned"] == 30 and st["buffered_records"] == 0


def test_auto_offset_reset_earliest_latest_none(mock):
    mock.create_topic("aor", 1, 1)
    _produce(mock.bootstrap, "aor", 5, partitions=[0], prefix="old")

    def main():
        with Consumer(mock.bootstrap, auto_offset_reset="earliest") as c:
            c.assign([("aor", 0)])
            early = _poll_until(c, 5)
        with Consumer(mock.bootstrap, auto_offset_reset="latest") as c:
            c.assign([("aor", 0)])
            assert c.poll(0.3) == []
            assert c.position("aor", 0) == 5
            prod = Producer(mock.bootstrap)
            prod.send("aor", b"new", partition=0)
            prod.close()
            late = _poll_until(c, 1)
        with pytest.raises(NoOffsetError), Consumer(mock.bootstrap, group_id="g-none",
                                                    auto_offset_reset="none") as c:
            c.assign([("aor", 0)])
            c.poll(0.3)
        return early, late

    early, late = greenrt.run(main)
    assert [r.value for r in early] == [f"old{i}".encode() for i in range(5)]
    assert [(r.value, r.offset) for r in late] == [(b"new", 5)]


def test_commit_survives_a_consumer_restart(mock):
    mock.create_topic("cm", 2, 3)
    _produce(mock.bootstrap, "cm", 20, partitions=[0, 1])

    def main():
        with Consumer(mock.bootstrap, group_id="g-cm", auto_offset_reset="earliest",
                      max_poll_records=3) as c:
            c.assign([("cm", 0), ("cm", 1)])
            first = _poll_until(c, 8)
            done = c.commit()
        with Consumer(mock.bootstrap, group_id="g-cm", auto_offset_reset="earliest") as c:
            c.assign([("cm", 0), ("cm", 1)])
            committed = c.committed([("cm", 0), ("cm", 1)])
            rest = _poll_until(c, 20 - len(first))
            assert c.poll(0.3) == []
        return first, done, committed, rest

    first, done, committed, rest = greenrt.run(main)
    assert committed == done
    assert {(r.partition, r.offset) for r in first}.isdisjoint({(r.partition, r.offset) for r in rest})
    assert sorted(r.value for r in first + rest) == sorted(f"v{i}".encode() for i in range(20))
    for r in rest:
        assert r.offset >= done[("cm", r.partition)]


def test_a_refused_commit_reports_failure_and_stores_nothing(mock):
    mock.create_topic("rf", 1, 1)
    _produce(mock.bootstrap, "rf", 4, partitions=[0])

    def main():
        with Consumer(mock.bootstrap, group_id="g-rf", auto_offset_reset="earliest") as c:
            c.assign([("rf", 0)])
            _poll_until(c, 4)
            mock.push_errors(OFFSET_COMMIT, 27)  # REBALANCE_IN_PROGRESS
            with pytest.raises(CommitFailedError) as ei:
                c.commit()
            after_refusal = c.committed([("rf", 0)])
            mock.push_errors(OFFSET_COMMIT, 22)  # ILLEGAL_GENERATION, via commit_async
            res = c.commit_async()
            with pytest.raises(CommitFailedError):
                res.result()
            ok = c.commit_async().result()
            return ei.value, after_refusal, ok, c.committed([("rf", 0)]), c.statistics()

    err, after_refusal, ok, final, st = greenrt.run(main)
    assert err.code == "rebalance_in_progress"
    assert after_refusal == {("rf", 0): None}
    assert ok == final == {("rf", 0): 4}
    assert st["commit_failures"] == 2 and st["commits"] == 1


def test_seek_pause_resume(mock):
    mock.create_topic("sp", 2, 1)
    _produce(mock.bootstrap, "sp", 10, partitions=[0, 1])

    def main():
        with Consumer(mock.bootstrap, auto_offset_reset="earliest") as c:
            c.assign([("sp", 0), ("sp", 1)])
            c.pause(("sp", 1))
            only0 = _poll_until(c, 5)
            idle = c.poll(0.3)
            c.seek("sp", 0, 2)
            again = _poll_until(c, 3)
            c.resume(("sp", 1))
            p1 = _poll_until(c, 5)
            return only0, idle, again, p1, c.paused()

    only0, idle, again, p1, paused = greenrt.run(main)
    assert {r.partition for r in only0} == {0} and idle == []
    assert [r.offset for r in again] == [2, 3, 4] and {r.partition for r in again} == {0}
    assert {r.partition for r in p1} == {1} and [r.offset for r in p1] == [0, 1, 2, 3, 4]
    assert paused == []


def test_fetch_buffer_stays_within_its_record_and_byte_caps(mock):
    mock.create_topic("cap", 1, 1)
    _produce_one_batch(mock.bootstrap, "cap", 0, [b"%05d" % i for i in range(30)])
    _produce_one_batch(mock.bootstrap, "cap", 0, [b"%05d" % i for i in range(30, 60)])

    def main():
        seen_max = [0, 0]
        got = []
        with Consumer(mock.bootstrap, auto_offset_reset="earliest", max_buffer_records=7,
                      max_buffer_bytes=40, max_poll_records=2) as c:
            c.assign([("cap", 0)])
            with greenrt.fail_after(60):
                while len(got) < 60:
                    got += c.poll(0.5)
                    st = c.statistics()
                    seen_max[0] = max(seen_max[0], st["buffered_records"])
                    seen_max[1] = max(seen_max[1], st["buffered_bytes"])
            return got, seen_max, c.statistics()

    got, (max_recs, max_bytes), st = greenrt.run(main)
    assert [r.offset for r in got] == list(range(60))  # nothing lost, nothing repeated
    assert [r.value for r in got] == [b"%05d" % i for i in range(60)]
    assert max_recs <= 7 and max_bytes <= 40
    assert st["records_dropped_over_cap"] > 0  # the caps were hit, and refetched


def test_processing_batch_is_an_obligation(mock):
    """A batch neither committed nor released when its task ends is a reported leak, and
    its records are delivered again; ``release`` redelivers; ``commit`` commits."""
    mock.create_topic("ob", 1, 1)
    _produce_one_batch(mock.bootstrap, "ob", 0, [b"r%d" % i for i in range(6)])

    def main():
        with Consumer(mock.bootstrap, group_id="g-ob", auto_offset_reset="earliest",
                      max_poll_records=2) as c:
            c.assign([("ob", 0)])

            forgotten = []

            def forgetful():
                forgotten.extend(x.offset for x in c.poll_batch(5))  # processed, then dropped

            with pytest.raises(ExceptionGroup) as ei, greenrt.region() as r:
                r.spawn(forgetful)
            leak = ei.value.exceptions[0]
            b = c.poll_batch(5)
            first_again = [x.offset for x in b]
            b.release()
            b2 = c.poll_batch(5)
            released_again = [x.offset for x in b2]
            b2.commit()
            committed = c.committed([("ob", 0)])
            return forgotten, leak, first_again, released_again, committed, c.statistics()["batches_rewound"]

    forgotten, leak, first_again, released_again, committed, rewound = greenrt.run(main)
    assert isinstance(leak, greenrt.ObligationLeak)
    assert forgotten == [0, 1]
    assert first_again == [0, 1] and released_again == [0, 1]
    assert committed == {("ob", 0): 2}
    assert rewound == 2


def _group_member(bootstrap, topic, name, log, *, assignor="range", stop=None):
    def on_assign(tps):
        log.append((name, "assign", tuple(tps)))

    def on_revoke(tps):
        log.append((name, "revoke", tuple(tps)))

    def run():
        with Consumer(bootstrap, group_id="g-grp", auto_offset_reset="earliest", assignor=assignor,
                      heartbeat_interval=0.1, session_timeout_ms=3000, leader_sync_delay=0.2,
                      on_assign=on_assign, on_revoke=on_revoke) as c:
            c.subscribe([topic])
            members[name] = c
            while not stop[name].is_set():
                for r in c.poll(0.1):
                    log.append((name, "record", (r.partition, r.offset)))
            members.pop(name)

    members = _group_member.members
    return run


_group_member.members = {}


def _stable_split(members, names, nparts):
    cs = [members.get(n) for n in names]
    if any(c is None or c.rebalancing for c in cs):
        return None
    if len({c.generation for c in cs}) != 1:
        return None
    sets = [set(c.assignment()) for c in cs]
    union = set().union(*sets)
    if len(union) != nparts or sum(len(s) for s in sets) != nparts:
        return None
    return [sorted(p for _, p in s) for s in sets]


@pytest.mark.parametrize("assignor", ["range", "roundrobin"])
def test_group_two_members_then_a_third_joins_then_one_leaves(mock, assignor):
    mock.create_topic("grp", 6, 3)
    _produce(mock.bootstrap, "grp", 30)
    log: list = []
    members = _group_member.members
    members.clear()

    def wait_split(names):
        with greenrt.fail_after(60):
            while (split := _stable_split(members, names, 6)) is None:
                greenrt.sleep(0.05)
        return split

    def main():
        stop = {n: greenrt.Event() for n in "abc"}
        with greenrt.region() as r:
            r.spawn(_group_member(mock.bootstrap, "grp", "a", log, assignor=assignor, stop=stop))
            r.spawn(_group_member(mock.bootstrap, "grp", "b", log, assignor=assignor, stop=stop))
            two = wait_split("ab")
            with greenrt.fail_after(60):  # every record reaches one of the two
                while len({x[2] for x in log if x[1] == "record"}) < 30:
                    greenrt.sleep(0.05)
            r.spawn(_group_member(mock.bootstrap, "grp", "c", log, assignor=assignor, stop=stop))
            three = wait_split("abc")
            stop["c"].set()
            with greenrt.fail_after(30):
                while "c" in members:
                    greenrt.sleep(0.05)
            back_to_two = wait_split("ab")
            stop["a"].set()
            stop["b"].set()
        return two, three, back_to_two

    two, three, back = greenrt.run(main)
    assert sorted(len(s) for s in two) == [3, 3]
    assert sorted(len(s) for s in three) == [2, 2, 2]
    assert sorted(len(s) for s in back) == [3, 3]
    if assignor == "range":
        assert sorted(map(tuple, two)) == [(0, 1, 2), (3, 4, 5)]
    else:
        assert sorted(map(tuple, two)) == [(0, 2, 4), (1, 3, 5)]
    # eager protocol: a member's partitions were revoked before each new assignment
    for n in "ab":
        kinds = [k for (m, k, _) in log if m == n and k != "record"]
        assert kinds[0] == "assign" and kinds.count("revoke") >= 2
        assert ("revoke", "revoke") not in set(zip(kinds, kinds[1:], strict=False))
    records = [x[2] for x in log if x[1] == "record"]
    assert len(set(records)) == 30


def test_commit_during_a_rebalance_reports_failure(mock):
    """A member whose heartbeat has seen the rebalance refuses to commit (the partitions
    may already be another member's); after rejoining, commits work again."""
    mock.create_topic("rb", 2, 1)
    _produce(mock.bootstrap, "rb", 4, partitions=[0, 1])

    def main():
        with Consumer(mock.bootstrap, group_id="g-rb", auto_offset_reset="earliest",
                      heartbeat_interval=0.1, session_timeout_ms=3000, leader_sync_delay=0.2) as a:
            a.subscribe(["rb"])
            _poll_until(a, 4)
            assert not a.rebalancing
            before = a.commit()

            def joiner(stop):
                with Consumer(mock.bootstrap, group_id="g-rb", heartbeat_interval=0.1,
                              session_timeout_ms=3000, leader_sync_delay=0.2) as b:
                    b.subscribe(["rb"])
                    while not stop.is_set():
                        b.poll(0.1)

            stop = greenrt.Event()
            with greenrt.region() as r:
                r.spawn(joiner, stop)
                with greenrt.fail_after(30):
                    while not a.rebalancing:  # a's heartbeat hears of the join; a does not poll
                        greenrt.sleep(0.02)
                with pytest.raises(CommitFailedError) as ei:
                    a.commit({("rb", 0): 1})
                stored = a.committed([("rb", 0)])
                with greenrt.fail_after(30):
                    while a.rebalancing:
                        a.poll(0.1)
                mine = a.assignment()
                ok = a.commit({tp: 0 for tp in mine})
                stop.set()
            return ei.value, before, stored, mine, ok

    err, before, stored, mine, ok = greenrt.run(main)
    assert err.code == "rebalance_in_progress"
    assert before[("rb", 0)] == 2
    assert stored == {("rb", 0): before[("rb", 0)]}  # the refused commit stored nothing
    assert len(mine) == 1 and ok == {mine[0]: 0}


# -- fetch responses a real broker does not send ---------------------------------------

def _fetch_server(records_for):
    """A scripted single-broker cluster with topic ``t`` (one partition); Fetch answers
    with ``records_for(fetch_offset)``."""

    def respond(api_key, version, cid, n, port):
        api = {v: k for k, v in codec.API_KEYS.items()}[api_key]
        if api == "ApiVersions" and version > 0:  # as a real broker: 35, v0 layout
            body = struct.pack(">hi", 35, 0)
        elif api == "ApiVersions":
            versions = {"ApiVersions": 0, "Metadata": 1, "Fetch": 4, "ListOffsets": 1}
            body = codec.encode_message("ApiVersionsResponse", 0, {"api_keys": [
                {"api_key": codec.API_KEYS[a], "min_version": 0, "max_version": mv}
                for a, mv in versions.items()]})
        elif api == "Metadata":
            body = codec.encode_message("MetadataResponse", 1, {
                "brokers": [{"node_id": 1, "host": "127.0.0.1", "port": port}],
                "topics": [{"name": "t", "partitions": [
                    {"partition_index": 0, "leader_id": 1, "replica_nodes": [1], "isr_nodes": [1]}]}]})
        elif api == "ListOffsets":
            body = codec.encode_message("ListOffsetsResponse", 1, {"topics": [{"name": "t", "partitions": [
                {"partition_index": 0, "offset": 0}]}]})
        elif api == "Fetch":
            return None  # answered below, needs the request
        payload = struct.pack(">i", cid) + body
        return struct.pack(">i", len(payload)) + payload

    class Server(ScriptedBroker):
        def _serve(self, conn):
            buf = b""
            while True:
                while len(buf) < 4 or len(buf) < 4 + struct.unpack(">i", buf[:4])[0]:
                    d = conn.recv(65536)
                    if not d:
                        return
                    buf += d
                size = struct.unpack(">i", buf[:4])[0]
                frame, buf = buf[4:4 + size], buf[4 + size:]
                api_key, version, cid = struct.unpack(">hhi", frame[:8])
                if api_key == codec.API_KEYS["Fetch"]:
                    (clen,) = struct.unpack(">h", frame[8:10])
                    req = codec.decode_message("FetchRequest", version, frame[10 + clen:])
                    offset = req["topics"][0]["partitions"][0]["fetch_offset"]
                    body = codec.encode_message("FetchResponse", 4, {"responses": [{"topic": "t", "partitions": [
                        {"partition_index": 0, "high_watermark": 100, "records": records_for(offset)}]}]})
                    payload = struct.pack(">i", cid) + body
                    out = struct.pack(">i", len(payload)) + payload
                else:
                    out = respond(api_key, version, cid, self.n, self.port)
                self.n += 1
                conn.sendall(out)

    return Server(None)


def _batch(base, values):
    return records.encode_batch([(None, v, []) for v in values], base_offset=base)


def test_fetch_skips_records_below_the_offset_and_ignores_a_partial_trailing_batch():
    def records_for(offset):
        if offset == 0:  # a whole batch 0-2, then the first half of batch 3-4
            nxt = _batch(3, [b"d", b"e"])
            return _batch(0, [b"a", b"b", b"c"]) + nxt[:len(nxt) // 2]
        if offset == 3:  # the broker resends from an earlier batch start (offset 2)
            return _batch(2, [b"c", b"d", b"e"])
        return b""

    srv = _fetch_server(records_for)

    def main():
        with Consumer(f"127.0.0.1:{srv.port}", auto_offset_reset="earliest") as c:
            c.assign([("t", 0)])
            got = _poll_until(c, 5)
            return got, c.statistics()

    try:
        got, st = greenrt.run(main)
    finally:
        srv.close()
    assert [(r.offset, r.value) for r in got] == [(0, b"a"), (1, b"b"), (2, b"c"), (3, b"d"), (4, b"e")]
    assert st["records_skipped_below_position"] == 1


def test_fetch_with_a_corrupt_crc_raises_and_keeps_the_position():
    def records_for(offset):
        good = _batch(0, [b"a"])
        bad = bytearray(_batch(1, [b"b"]))
        bad[-1] ^= 0xFF  # a flipped bit in the record: CRC-32C no longer matches
        return good + bytes(bad)

    srv = _fetch_server(records_for)

    def main():
        with Consumer(f"127.0.0.1:{srv.port}", auto_offset_reset="earliest") as c:
            c.assign([("t", 0)])
            with pytest.raises(KafkaProtocolError) as ei:
                c.poll(5)
            return ei.value, c.position("t", 0), c.statistics()["buffered_records"]

    try:
        err, pos, buffered = greenrt.run(main)
    finally:
        srv.close()
    assert err.code == "crc_mismatch"
    assert pos == 0 and buffered == 0  # nothing from the corrupt response was handed out


def test_iteration_checkpoints_per_record_and_gives_back_what_it_did_not_deliver(mock):
    """``for r in consumer``: cancelled between two buffered records (the check half
    of a checkpoint per record), or left by ``break``, the records drained and not
    delivered come again from the next ``poll``, none skipped, none repeated."""
    mock.create_topic("it", 1, 1)
    _produce_one_batch(mock.bootstrap, "it", 0, [b"r%d" % i for i in range(10)])

    def main():
        seen = []
        with Consumer(mock.bootstrap, auto_offset_reset="earliest", max_poll_records=10) as c:
            c.assign([("it", 0)])
            with greenrt.fail_after(30):
                with greenrt.cancel_scope() as scope:
                    for r in c:
                        seen.append(r.offset)
                        if len(seen) == 2:
                            scope.cancel()  # the next record is buffered: the check half raises
                assert scope.cancelled_caught
                assert c.position("it", 0) == 2
                for r in c:
                    seen.append(r.offset)
                    if len(seen) == 5:
                        break
                assert c.position("it", 0) == 5
                seen += [r.offset for r in _poll_until(c, 5)]
        return seen

    assert greenrt.run(main) == list(range(10))
