"""Pub/sub against a real redis-server, RESP2 and RESP3: channels, patterns, sharded
channels, the bounded backlog and its lag error, cancellation, and RESP3 push frames
routed out of band on an ordinary connection."""

from __future__ import annotations

import pytest

import greenrt
from greenrt.protocols.redis import Connection, ConnectionConfig, Message, PubSubLagged, Redis

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def protocol(request):
    return request.param


def test_subscribe_psubscribe_ssubscribe(redis, protocol):
    def main():
        with Redis(port=redis.port, protocol=protocol) as r, r.pubsub() as ps:
            assert ps.protocol == protocol
            ps.subscribe("news", "sport")
            ps.psubscribe("log.*")
            ps.ssubscribe("shard")
            assert ps.channels == {b"news", b"sport"} and ps.patterns == {b"log.*"}
            assert ps.shard_channels == {b"shard"}
            assert r.publish("news", "hello") == 1
            assert r.publish("log.err", "disk") == 1
            assert r.spublish("shard", "s1") == 1
            assert ps.get_message(timeout=5) == Message("message", b"news", b"hello")
            assert ps.get_message(timeout=5) == Message("pmessage", b"log.err", b"disk", b"log.*")
            assert ps.get_message(timeout=5) == Message("smessage", b"shard", b"s1")
            ps.ping()
            ps.unsubscribe("news")
            assert ps.channels == {b"sport"}
            assert r.publish("news", "nobody") == 0
            assert ps.get_message(timeout=0.02) is None
            ps.punsubscribe()
            ps.sunsubscribe()
            ps.unsubscribe()
            assert not (ps.channels or ps.patterns or ps.shard_channels)

    greenrt.run(main)


def test_decoded_messages_and_confirmations(redis, protocol):
    def main():
        with Redis(port=redis.port, protocol=protocol, decode_responses=True) as r:
            with r.pubsub(ignore_subscribe_messages=False) as ps:
                ps.subscribe("c")
                assert ps.get_message(timeout=5) == Message("subscribe", "c", 1)
                r.publish("c", "ü")
                assert ps.get_message(timeout=5) == Message("message", "c", "ü")

    greenrt.run(main)


def test_backlog_overflow_raises_lag_once(redis, protocol):
    def main():
        with Redis(port=redis.port, protocol=protocol) as r, r.pubsub(max_backlog=10) as ps:
            ps.subscribe("fast")
            for i in range(50):
                r.publish("fast", str(i))
            # the confirmation of "other" arrives after the 50 messages: they are
            # read into the bounded backlog, which keeps the newest 10
            ps.subscribe("other")
            assert ps.backlog == 10 and ps.stats["dropped"] == 40
            with pytest.raises(PubSubLagged) as ei:
                ps.get_message()
            assert ei.value.missed == 40
            got = [ps.get_message(timeout=5).data for _ in range(10)]
            assert got == [str(i).encode() for i in range(40, 50)]
            r.publish("other", "after")
            assert ps.get_message(timeout=5).data == b"after"

    greenrt.run(main)


def test_cancelled_get_message_loses_nothing(redis, protocol):
    def main():
        with Redis(port=redis.port, protocol=protocol) as r, r.pubsub() as ps:
            ps.subscribe("c")
            for _ in range(5):
                with greenrt.move_on_after(0.005) as s:
                    ps.get_message()
                assert s.cancelled_caught
            # cancellation in the middle of a frame: the rest arrives later
            r.publish("c", "x" * 200_000)
            r.publish("c", "second")
            assert ps.get_message(timeout=5).data == b"x" * 200_000
            assert ps.get_message(timeout=5).data == b"second"

    greenrt.run(main)


def test_resp3_push_frames_do_not_disturb_replies(redis):
    """Client-side caching invalidations arrive as push frames between replies on an
    ordinary RESP3 connection; replies still match their commands."""
    pushes = []

    def main():
        conn = Connection.open(ConnectionConfig(port=redis.port))
        try:
            assert conn.protocol == 3
            conn.push_handler = pushes.append
            assert conn.call(["CLIENT", "TRACKING", "ON"]) == b"OK"
            conn.call(["SET", "tracked", "1"])
            assert conn.call(["GET", "tracked"]) == b"1"
            with Redis(port=redis.port) as other:
                other.set("tracked", "2")
            # the invalidation push is read before (or with) this reply
            assert conn.call(["GET", "tracked"]) == b"2"
            assert conn.call(["ECHO", "still-in-order"]) == b"still-in-order"
        finally:
            conn.close()

    greenrt.run(main)
    assert pushes and pushes[0][0] == b"invalidate" and pushes[0][1] == [b"tracked"]
