"""JetStream against a real nats-server with -js: streams and consumers, publish with
dedup ids and acks, pull fetch with ack/nak/in_progress/term, acks as obligations
(a leaked fetched message is reported and redelivered), ordered consumers, key-value
(get/put/create/update with revision, delete, purge, history, keys, watch)."""

from __future__ import annotations

import pytest

import greenrt
from greenrt.protocols import nats
from greenrt.protocols.nats.jetstream import parse_metadata

pytestmark = pytest.mark.timeout(90)


def run(fn):
    return greenrt.run(fn)


def test_stream_and_consumer_management(nats_server):
    def main():
        with nats.connect(nats_server.url) as nc:
            js = nc.jetstream()
            info = js.add_stream("MGMT", ["mgmt.>"])
            assert info["config"]["name"] == "MGMT"
            assert "MGMT" in js.stream_names()
            js.update_stream("MGMT", max_msgs=10)
            assert js.stream_info("MGMT")["config"]["max_msgs"] == 10
            ci = js.add_consumer("MGMT", "dur", filter_subject="mgmt.a")
            assert ci["name"] == "dur"
            assert js.consumer_info("MGMT", "dur")["config"]["filter_subject"] == "mgmt.a"
            assert js.delete_consumer("MGMT", "dur")
            with pytest.raises(nats.JetStreamError) as ei:
                js.consumer_info("MGMT", "dur")
            assert ei.value.status == 404
            for i in range(3):
                js.publish("mgmt.a", b"%d" % i)
            assert js.purge_stream("MGMT") == 3
            assert js.delete_stream("MGMT")
            with pytest.raises(nats.JetStreamError):
                js.stream_info("MGMT")
    run(main)


def test_publish_dedup_and_expectations(nats_server):
    def main():
        with nats.connect(nats_server.url) as nc:
            js = nc.jetstream()
            js.add_stream("DEDUP", ["dedup.>"])
            a = js.publish("dedup.x", b"1", msg_id="id-1")
            b = js.publish("dedup.x", b"1 again", msg_id="id-1")
            c = js.publish("dedup.x", b"2", msg_id="id-2")
            assert (a.stream, a.seq, a.duplicate) == ("DEDUP", 1, False)
            assert b.duplicate and b.seq == 1
            assert c.seq == 2 and not c.duplicate
            assert js.stream_info("DEDUP")["state"]["messages"] == 2
            with pytest.raises(nats.JetStreamError):
                js.publish("dedup.x", b"3", expected_last_seq=1)
            assert js.publish("dedup.x", b"3", expected_last_seq=2).seq == 3
            with pytest.raises(nats.JetStreamError):
                js.publish("dedup.x", b"4", expected_stream="OTHER")
            with pytest.raises(nats.NoResponders):
                js.publish("no.stream.here", b"x")
            js.delete_stream("DEDUP")
    run(main)


def test_pull_fetch_ack_nak_wpi_term(nats_server):
    def main():
        with nats.connect(nats_server.url) as nc:
            js = nc.jetstream()
            js.add_stream("PULL", ["pull.>"])
            for i in range(5):
                js.publish("pull.x", b"%d" % i)
            ps = js.pull_subscribe("PULL", "worker", ack_wait=2 * 10**9, max_deliver=5)
            msgs = ps.fetch(3, timeout=5)
            assert [m.data for m in msgs] == [b"0", b"1", b"2"]
            md = msgs[0].metadata
            assert md.stream == "PULL" and md.consumer == "worker" and md.stream_seq == 1
            assert md.num_delivered == 1 and md.num_pending == 4
            msgs[0].ack()
            msgs[1].in_progress()
            msgs[1].ack_sync()
            msgs[2].nak()
            with pytest.raises(nats.UsageError):
                msgs[0].ack()  # twice
            again = ps.fetch(3, timeout=5)
            # the nacked one comes back (delivered twice), then 3 and 4
            assert sorted(m.data for m in again) == [b"2", b"3", b"4"]
            redelivered = next(m for m in again if m.data == b"2")
            assert redelivered.metadata.num_delivered == 2
            redelivered.term()
            for m in again:
                if m is not redelivered:
                    m.ack()
            assert ps.fetch(1, timeout=0.5) == []
            ci = js.consumer_info("PULL", "worker")
            assert ci["num_ack_pending"] == 0 and ci["num_pending"] == 0
            js.delete_stream("PULL")
    run(main)


def test_unacked_fetched_message_is_an_obligation_leak_and_redelivered(nats_server):
    def main():
        with nats.connect(nats_server.url) as nc:
            js = nc.jetstream()
            js.add_stream("LEAK", ["leak.>"])
            js.publish("leak.x", b"precious")
            ps = js.pull_subscribe("LEAK", "w", ack_wait=60 * 10**9)

            def forgetful():
                msgs = ps.fetch(1, timeout=5)
                assert msgs[0].data == b"precious"  # ... and never acked

            with greenrt.region() as rg:
                rg.spawn(forgetful)

    with pytest.raises(BaseExceptionGroup) as ei:
        run(main)
    leaks = ei.value.subgroup(lambda e: isinstance(e, greenrt.ObligationLeak))
    # the report names the line of the fetch in the user's code
    text = str(leaks.exceptions[0])
    assert "ack reserved at" in text and "test_jetstream.py" in text and "in forgetful" in text


def test_leaked_message_is_nacked_for_redelivery(nats_server):
    def main():
        with nats.connect(nats_server.url) as nc:
            js = nc.jetstream()
            js.add_stream("LEAK2", ["leak2.>"])
            js.publish("leak2.x", b"precious")
            ps = js.pull_subscribe("LEAK2", "w", ack_wait=60 * 10**9)

            def forgetful():
                ps.fetch(1, timeout=5)

            t = None
            try:
                with greenrt.region() as rg:
                    t = rg.spawn(forgetful)
            except BaseExceptionGroup:
                pass
            assert isinstance(t.outcome.value, greenrt.ObligationLeak)
            assert ps.stats["leaked"] == 1
            # nacked at once: redelivered now, not after the 60 s ack wait
            again = ps.fetch(1, timeout=5)
            assert again[0].data == b"precious" and again[0].metadata.num_delivered == 2
            again[0].ack()
            js.delete_stream("LEAK2")
    run(main)


def test_cancelled_fetch_nacks_what_it_collected(nats_server):
    def main():
        with nats.connect(nats_server.url) as nc:
            js = nc.jetstream()
            js.add_stream("CF", ["cf.>"])
            js.publish("cf.x", b"only one")
            ps = js.pull_subscribe("CF", "w", ack_wait=60 * 10**9)
            with greenrt.move_on_after(0.5):
                ps.fetch(5, timeout=30)  # gets 1, waits for more, cancelled
            assert ps.stats["nacked_on_cancel"] == 1
            again = ps.fetch(1, timeout=5)
            assert again[0].data == b"only one" and again[0].metadata.num_delivered == 2
            again[0].ack()
            js.delete_stream("CF")
    run(main)


def test_ordered_consumer(nats_server):
    def main():
        with nats.connect(nats_server.url) as nc:
            js = nc.jetstream()
            js.add_stream("ORD", ["ord.>"])
            for i in range(50):
                js.publish(f"ord.{i % 3}", b"%d" % i)
            oc = js.ordered_consumer("ORD")
            got = [int(oc.next_msg(timeout=5).data) for _ in range(50)]
            assert got == list(range(50))
            js.publish("ord.1", b"50")
            assert oc.next_msg(timeout=5).data == b"50"
            oc.stop()
            filt = js.ordered_consumer("ORD", filter_subject="ord.2")
            assert [int(filt.next_msg(timeout=5).data) for _ in range(3)] == [2, 5, 8]
            filt.stop()
            js.delete_stream("ORD")
    run(main)


def test_ordered_consumer_recovers_from_a_gap(nats_server):
    """A consumer deleted under the ordered consumer (the server stops delivering, a
    heartbeat/gap shows it) is recreated from the last stream sequence."""
    def main():
        with nats.connect(nats_server.url) as nc:
            js = nc.jetstream()
            js.add_stream("ORDG", ["ordg"])
            for i in range(5):
                js.publish("ordg", b"%d" % i)
            oc = js.ordered_consumer("ORDG")
            assert [oc.next_msg(timeout=5).data for _ in range(2)] == [b"0", b"1"]
            # simulate a lost message: pretend we saw one more consumer sequence
            oc._cseq -= 1
            rest = [oc.next_msg(timeout=5).data for _ in range(3)]
            assert rest == [b"2", b"3", b"4"]
            assert oc.resets == 1
            oc.stop()
            js.delete_stream("ORDG")
    run(main)


def test_key_value(nats_server):
    def main():
        with nats.connect(nats_server.url) as nc:
            js = nc.jetstream()
            kv = js.create_key_value("cfg", history=5)
            r1 = kv.put("a", b"1")
            assert kv.get("a").value == b"1" and kv.get("a").revision == r1
            r2 = kv.update("a", b"2", r1)
            assert r2 > r1
            with pytest.raises(nats.KeyWrongRevision):
                kv.update("a", b"stale", r1)
            assert kv.get("a").value == b"2"
            assert kv.get("a", revision=r1).value == b"1"
            with pytest.raises(nats.KeyNotFound):
                kv.get("missing")
            rc = kv.create("b", b"new")
            with pytest.raises(nats.KeyWrongRevision):
                kv.create("b", b"again")
            kv.delete("b")
            with pytest.raises(nats.KeyNotFound):
                kv.get("b")
            assert kv.create("b", b"recreated") > rc
            assert kv.keys() == ["a", "b"]
            with pytest.raises(nats.UsageError):
                kv.put("bad key", b"")
            assert js.key_value("cfg").get("b").value == b"recreated"
            js.delete_key_value("cfg")
    run(main)


def test_key_value_watch(nats_server):
    def main():
        with nats.connect(nats_server.url) as nc:
            js = nc.jetstream()
            kv = js.create_key_value("w", history=5)
            kv.put("k1", b"old")
            kv.put("k1", b"current")
            w = kv.watch("k1")
            e = w.next(timeout=5)
            assert (e.key, e.value, e.operation) == ("k1", b"current", "PUT")
            kv.put("k1", b"changed")
            assert w.next(timeout=5).value == b"changed"
            kv.delete("k1")
            assert w.next(timeout=5).operation == "DEL"
            w.stop()
            h = kv.watch("k1", include_history=True)
            assert [h.next(timeout=5).operation for _ in range(4)] == ["PUT", "PUT", "PUT", "DEL"]
            h.stop()
            assert js.account_info()["streams"] >= 1
            js.delete_key_value("w")
    run(main)


def test_key_value_purge_and_history(nats_server):
    """``history`` lists a key's entries oldest first, tombstones included; ``purge``
    rolls the key up to one marker (its history gone, other keys untouched); a
    purged key reads as missing and can be created again."""
    def main():
        with nats.connect(nats_server.url) as nc:
            js = nc.jetstream()
            kv = js.create_key_value("hist", history=10)
            revs = [kv.put("k", b"v%d" % i) for i in range(3)]
            kv.put("other", b"stays")
            rdel = kv.delete("k")
            h = kv.history("k")
            assert [(e.value, e.operation) for e in h] == \
                [(b"v0", "PUT"), (b"v1", "PUT"), (b"v2", "PUT"), (b"", "DEL")]
            assert [e.revision for e in h] == [*revs, rdel]
            assert all(e.key == "k" and e.bucket == "hist" and e.created for e in h)
            kv.put("k", b"v3")
            rp = kv.purge("k")
            assert [(e.operation, e.revision) for e in kv.history("k")] == [("PURGE", rp)]
            with pytest.raises(nats.KeyNotFound):
                kv.get("k")
            with pytest.raises(nats.KeyNotFound):
                kv.get("k", revision=revs[0])  # the rolled-up entries are gone
            assert kv.keys() == ["other"]
            assert kv.get("other").value == b"stays"
            assert kv.create("k", b"again") > rp
            with pytest.raises(nats.KeyNotFound):
                kv.history("never-written")
            w = kv.watch("k", include_history=True)
            assert [w.next(timeout=5).operation for _ in range(2)] == ["PURGE", "PUT"]
            w.stop()
            js.delete_key_value("hist")
    run(main)


def test_a_cancelled_history_deletes_its_consumer(nats_server):
    """``history`` cancelled while it waits for an entry (here, one that never comes:
    the last revision is made to lie) still deletes its ephemeral consumer. The
    delete is sent without a checkpoint; the server's own clean-up of a consumer
    without interest would take its 5 s inactive threshold, longer than this waits."""
    def main():
        with nats.connect(nats_server.url) as nc:
            js = nc.jetstream()
            kv = js.create_key_value("hc", history=5)
            kv.put("k", b"1")
            kv._last_revision = lambda key: 10**9  # history waits for more entries
            with greenrt.move_on_after(0.5) as sc:
                kv.history("k")
            assert sc.cancelled_caught
            count = None
            for _ in range(30):
                count = js.stream_info("KV_hc")["state"].get("consumer_count")
                if count == 0:
                    break
                greenrt.sleep(0.1)
            assert count == 0
            js.delete_key_value("hc")
    run(main)


def test_metadata_parsing():
    md = parse_metadata("$JS.ACK.S.C.2.10.4.1700000000000000000.7")
    assert (md.stream, md.consumer, md.num_delivered, md.stream_seq, md.consumer_seq,
            md.num_pending) == ("S", "C", 2, 10, 4, 7)
    md2 = parse_metadata("$JS.ACK.dom.acc.S.C.2.10.4.1700000000000000000.7.tok")
    assert md2.stream == "S" and md2.stream_seq == 10
    assert parse_metadata("$JS.ACK.S.C.x.10.4.1.7") is None
    assert parse_metadata("foo") is None and parse_metadata(None) is None
