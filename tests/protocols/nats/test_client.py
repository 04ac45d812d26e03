"""The NATS client against a real nats-server: publish/subscribe, queue groups,
auto-unsubscribe, headers, request/reply (budgets, no responders, late replies),
flush, drain, statistics, slow consumers, max_payload, subscriptions as iterators
and callbacks."""

from __future__ import annotations

import pytest

import greenrt
from greenrt.protocols import nats

pytestmark = pytest.mark.timeout(60)


def run(fn):
    return greenrt.run(fn)


def test_publish_subscribe_roundtrip(nats_server):
    def main():
        with nats.connect(nats_server.url, name="t1") as nc:
            sub = nc.subscribe("greet.*")
            nc.flush()
            for i in range(10):
                nc.publish(f"greet.{i}", b"hello %d" % i)
            got = [sub.next_msg(timeout=5) for _ in range(10)]
            assert [m.data for m in got] == [b"hello %d" % i for i in range(10)]
            assert [m.subject for m in got] == [f"greet.{i}" for i in range(10)]
            st = nc.statistics()
            assert st["out_msgs"] == 10 and st["in_msgs"] == 10
            assert st["state"] == "connected" and st["server"] == f"127.0.0.1:{nats_server.port}"
    run(main)


def test_headers_roundtrip(nats_server):
    def main():
        with nats.connect(nats_server.url) as nc:
            sub = nc.subscribe("h")
            nc.flush()
            nc.publish("h", b"body", headers={"X-Trace": "abc", "Multi": ["1", "2"]})
            m = sub.next_msg(timeout=5)
            assert m.data == b"body"
            assert m.headers["X-Trace"] == "abc"
            assert m.headers["Multi"] == "2"  # last value of a repeated name
            with pytest.raises(nats.UsageError):
                nc.publish("h", b"", headers={"X": "a\r\nPUB evil 1"})
            with pytest.raises(nats.UsageError):
                nc.publish("bad subject", b"")
    run(main)


def test_queue_group_delivers_each_message_once(nats_server):
    def main():
        with nats.connect(nats_server.url) as nc:
            a = nc.subscribe("work", queue="workers")
            b = nc.subscribe("work", queue="workers")
            nc.flush()
            for i in range(100):
                nc.publish("work", str(i).encode())
            nc.flush()
            greenrt.sleep(0.05)
            seen = []
            for s in (a, b):
                while s.pending[0]:
                    seen.append(int(s.next_msg().data))
            assert sorted(seen) == list(range(100))
    run(main)


def test_auto_unsubscribe_after_n_and_iteration_ends(nats_server):
    def main():
        with nats.connect(nats_server.url) as nc:
            sub = nc.subscribe("n", max_msgs=3)
            nc.flush()
            for i in range(6):
                nc.publish("n", b"%d" % i)
            got = [m.data for m in sub]  # ends after 3
            assert got == [b"0", b"1", b"2"]
            with pytest.raises(nats.EndOfSubscription):
                sub.next_msg(timeout=1)
            assert nc.statistics()["subscriptions"] == 0
    run(main)


def test_unsubscribe_later_with_count(nats_server):
    def main():
        with nats.connect(nats_server.url) as nc:
            sub = nc.subscribe("u")
            nc.flush()
            nc.publish("u", b"a")
            assert sub.next_msg(timeout=5).data == b"a"
            sub.auto_unsubscribe(3)  # 3 in total: two more
            for _ in range(5):
                nc.publish("u", b"x")
            assert len(list(sub)) == 2
    run(main)


def test_request_reply_and_no_responders(nats_server):
    def main():
        with nats.connect(nats_server.url) as nc:
            svc = nc.subscribe("echo", callback=lambda m: m.respond(b"re:" + m.data))
            nc.flush()
            for i in range(20):
                assert nc.request("echo", b"%d" % i, timeout=5).data == b"re:%d" % i
            with pytest.raises(nats.NoResponders):
                nc.request("nobody.here", b"x", timeout=5)
            svc.unsubscribe()
    run(main)


def test_request_timeout_then_late_reply_is_dropped(nats_server):
    """A timed-out request's late reply never reaches the next request."""
    def main():
        with nats.connect(nats_server.url) as nc:
            held = []
            nc.subscribe("slow", callback=held.append)
            nc.subscribe("fast", callback=lambda m: m.respond(b"fast"))
            nc.flush()
            with pytest.raises(nats.RequestTimeout):
                nc.request("slow", b"1", timeout=0.2)
            assert len(held) == 1
            held[0].respond(b"late answer for the first request")
            nc.flush()
            assert nc.request("fast", b"2", timeout=5).data == b"fast"
            greenrt.sleep(0.05)
            assert nc.statistics()["late_replies"] == 1
            assert nc.statistics()["outstanding_requests"] == 0
    run(main)


def test_a_responder_that_replies_one_time_too_many_never_answers_the_next_request(nats_server):
    """One reply too many: a responder (on a second connection, so the replies race
    the next request) answers every request twice. Each request gets its own first
    reply; each extra reply is a late reply, dropped and counted, never handed to the
    request issued after it; nothing stays outstanding."""
    def main():
        with nats.connect(nats_server.url) as svc, nats.connect(nats_server.url) as nc:
            def twice(m):
                m.respond(b"first:" + m.data)
                m.respond(b"extra:" + m.data)
            svc.subscribe("dup", callback=twice)
            svc.flush()
            for i in range(50):
                assert nc.request("dup", b"%d" % i, timeout=5).data == b"first:%d" % i
            for _ in range(200):  # (the last extra reply may still be on its way)
                if nc.statistics()["late_replies"] == 50:
                    break
                greenrt.sleep(0.01)
            st = nc.statistics()
            assert st["late_replies"] == 50 and st["outstanding_requests"] == 0
    run(main)


def test_cancelled_requests_never_get_each_others_replies(nats_server):
    """Many concurrent requests, half cancelled at random points; every completed
    request sees its own reply."""
    def main():
        with nats.connect(nats_server.url) as nc:
            def responder(m):
                greenrt.sleep(0.001 * (int(m.data) % 5))
                m.respond(b"re:" + m.data)

            sub = nc.subscribe("svc")
            with greenrt.region() as serve:
                def serve_loop():
                    with greenrt.region() as rg:
                        for m in sub:
                            rg.spawn(responder, m)
                serve.spawn(serve_loop)
                nc.flush()
                ok = [0]

                def client(i):
                    with greenrt.move_on_after(0.002 * (i % 4)) if i % 2 else _null():
                        r = nc.request("svc", b"%d" % i, timeout=5)
                        assert r.data == b"re:%d" % i
                        ok[0] += 1

                with greenrt.region() as rg:
                    for i in range(200):
                        rg.spawn(client, i)
                assert ok[0] >= 100
                sub.unsubscribe()
    run(main)


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


def test_slow_consumer_bounded_queue(nats_server):
    def main():
        with nats.connect(nats_server.url) as nc:
            sub = nc.subscribe("flood", max_pending_msgs=10, max_pending_bytes=1 << 20)
            nc.flush()
            for i in range(50):
                nc.publish("flood", b"%d" % i)
            nc.flush()
            greenrt.sleep(0.05)
            assert sub.pending[0] == 10
            with pytest.raises(nats.SlowConsumer) as ei:
                sub.next_msg(timeout=1)
            assert ei.value.dropped == 40
            assert [sub.next_msg().data for _ in range(10)] == [b"%d" % i for i in range(10)]
            assert nc.statistics()["slow_consumer_drops"] == 40
            # the byte bound too
            sub2 = nc.subscribe("big", max_pending_msgs=1000, max_pending_bytes=1000)
            nc.flush()
            for _ in range(5):
                nc.publish("big", b"x" * 400)
            nc.flush()
            greenrt.sleep(0.05)
            assert sub2.pending == (2, 800)
            assert sub2.dropped == 3
    run(main)


def test_payload_above_server_max_payload_is_refused_locally(nats_factory):
    srv = nats_factory("max_payload: 1024", jetstream=False)

    def main():
        with nats.connect(srv.url) as nc:
            assert nc.max_payload == 1024
            with pytest.raises(nats.UsageError):
                nc.publish("p", b"x" * 1025)
            nc.publish("p", b"x" * 1024)
            nc.flush()
    run(main)


def test_drain_delivers_routed_messages_then_closes(nats_server):
    def main():
        got = []
        with nats.connect(nats_server.url) as nc:
            nc.subscribe("d", callback=lambda m: got.append(m.data))
            nc.flush()
            for i in range(100):
                nc.publish("d", b"%d" % i)
            nc.drain(timeout=10)
            assert nc.state == "closed"
            with pytest.raises(nats.ClientClosed):
                nc.publish("d", b"late")
        assert got == [b"%d" % i for i in range(100)]
    run(main)


def test_connect_failure_is_typed(nats_factory):
    from .conftest import free_port

    def main():
        with pytest.raises(nats.NatsConnectionError):
            with nats.connect(f"nats://127.0.0.1:{free_port()}", connect_timeout=2):
                pass
    run(main)


def test_callback_exception_is_logged_and_reported(nats_server, caplog):
    def main():
        errors = []
        got = []

        def cb(m):
            if m.data == b"boom":
                raise ValueError("callback failed")
            got.append(m.data)

        with nats.connect(nats_server.url, on_error=errors.append) as nc:
            nc.subscribe("cb", callback=cb)
            nc.flush()
            for d in (b"a", b"boom", b"b"):
                nc.publish("cb", d)
            nc.flush()
            with greenrt.fail_after(5):
                while len(got) < 2:
                    greenrt.sleep(0.01)
        assert got == [b"a", b"b"]  # the subscription survived the failing callback
        assert [type(e) for e in errors] == [ValueError]

    with caplog.at_level("ERROR", logger="greenrt.protocols.nats"):
        run(main)
    assert any("callback" in r.getMessage() for r in caplog.records)


def test_cancelled_next_msg_loses_no_message(nats_server):
    def main():
        with nats.connect(nats_server.url) as nc:
            sub = nc.subscribe("c")
            nc.flush()
            with greenrt.move_on_after(0.05):
                sub.next_msg()  # nothing yet: cancelled while parked
            nc.publish("c", b"kept")
            assert sub.next_msg(timeout=5).data == b"kept"
    run(main)


def test_a_flood_is_delivered_in_batches_the_consumer_drains(nats_server):
    """The reader lets a consumer it woke drain its queue between batches of parsed
    messages (so received messages die young and queues stay short) instead of
    parsing everything buffered first: the queue never holds more than a batch."""
    from greenrt.protocols.nats import client as client_mod

    n = 20000

    def main():
        with nats.connect(nats_server.url) as sub_c, nats.connect(nats_server.url) as pub_c:
            sub = sub_c.subscribe("flood", max_pending_msgs=n + 1)
            sub_c.flush()
            deepest = [0]

            def consume():
                got = 0
                for _ in sub:
                    deepest[0] = max(deepest[0], sub.pending[0])
                    got += 1
                    if got == n:
                        return

            with greenrt.region() as rg:
                rg.spawn(consume)
                for i in range(n):
                    pub_c.publish("flood", b"%d" % i)
                pub_c.flush()
            assert sub.delivered == n
            return deepest[0]

    deepest = run(main)
    assert 0 < deepest < client_mod._BATCH, deepest


def test_the_publish_prefix_cache_stays_bounded_and_takes_hot_subjects_late(nats_server):
    """A responder publishes to a new inbox every time: the validated-prefix cache
    stays at most its size, and a subject first published after thousands of one-off
    ones is still cached (a cache that kept its first entries never would), and
    every publish still reaches the server intact."""
    from greenrt.protocols.nats import client as nats_client

    size = nats_client._PUB_PREFIX_CACHE

    def main():
        with nats.connect(nats_server.url) as nc:
            sub = nc.subscribe("hot.subject")
            nc.flush()
            for i in range(size + 100):
                nc.publish(f"_INBOX.oneoff.{i}", b"")
                assert len(nc._pub_prefixes) <= size
            nc.publish("hot.subject", b"late")
            assert "hot.subject" in nc._pub_prefixes
            assert sub.next_msg(timeout=5).data == b"late"
    run(main)
