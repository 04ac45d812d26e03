"""RedisCluster against a real 3-master Redis Cluster: key hashing, routing, per-node
pipeline split, MOVED after resharding a slot, ASK during a migration."""

from __future__ import annotations

import pytest

import greenrt
from greenrt.protocols.redis import CrossSlotError, RedisCluster, TooManyRedirects, key_slot
from greenrt.protocols.redis.cluster import command_keys, crc16

pytestmark = pytest.mark.timeout(120)


def test_key_slot_matches_the_spec_and_the_server(redis_cluster):
    assert crc16(b"123456789") == 0x31C3  # the reference check value (XMODEM)
    assert key_slot("foo") == 12182 and key_slot("bar") == 5061
    assert key_slot("{user1000}.following") == key_slot("{user1000}.followers")
    assert key_slot("foo{}{bar}") == key_slot("foo{}{bar}") != key_slot("bar")
    assert key_slot("foo{{bar}}zap") == key_slot("{bar")
    n = redis_cluster.nodes[0]
    for k in ["a", "user:1", "{tag}x", "x{}", "é", "k" * 100]:
        assert key_slot(k) == n.cmd("CLUSTER", "KEYSLOT", k)


def test_command_keys_table():
    assert command_keys(["GET", "k"]) == ["k"]
    assert command_keys(["MSET", "a", 1, "b", 2]) == ["a", "b"]
    assert command_keys(["EVAL", "s", 2, "k1", "k2", "arg"]) == ["k1", "k2"]
    assert command_keys(["XREAD", "COUNT", 1, "STREAMS", "s1", "s2", "0", "0"]) == ["s1", "s2"]
    assert command_keys(["BLPOP", "a", "b", 0]) == ["a", "b"]
    assert command_keys(["PING"]) == []


def test_routing_to_every_node(redis_cluster):
    def main():
        with RedisCluster(redis_cluster.startup_nodes[:1]) as rc:
            keys = [f"key:{i}" for i in range(200)]
            for k in keys:
                assert rc.set(k, k) is True
            for k in keys:
                assert rc.get(k) == k.encode()
            owners = {rc.node_for_key(k).config.port for k in keys}
            assert len(owners) == 3  # all three primaries served some keys
            for k in keys[:20]:  # each key really lives on the node the map says
                assert redis_cluster.slot_owner(key_slot(k)).cmd("GET", k) == k.encode()
            assert rc.dbsize() == 200
            assert sorted(rc.keys("key:1*"))[:2] == [b"key:1", b"key:10"]
            assert rc.mset({"{u}a": 1, "{u}b": 2}) is True
            assert rc.mget("{u}a", "{u}b") == [b"1", b"2"]
            with pytest.raises(CrossSlotError):
                rc.mget("a", "b")
            assert rc.stats["moved"] == 0
            assert rc.flushdb() is True and rc.dbsize() == 0

    greenrt.run(main)


def test_pipeline_split_per_node(redis_cluster):
    def main():
        with RedisCluster(redis_cluster.startup_nodes) as rc:
            p = rc.pipeline()
            for i in range(60):
                p.set(f"p:{i}", i)
            for i in range(60):
                p.get(f"p:{i}")
            p.incr("p:0")
            out = p.execute()
            assert out[:60] == [True] * 60
            assert out[60:120] == [str(i).encode() for i in range(60)]
            assert out[120] == 1
            assert len({key_slot(f"p:{i}") and rc.node_for_key(f"p:{i}").config.port
                        for i in range(60)}) == 3
            tx = rc.transaction("{acct}a")
            with tx:
                tx.multi()
                tx.incrby("{acct}a", 5)
                tx.incrby("{acct}b", 7)
                assert tx.exec() == [5, 7]

    greenrt.run(main)


def _move_slot(cl, slot: int, src, dst, keys) -> None:
    """Migrate ``slot`` from ``src`` to ``dst`` the way redis-cli --cluster reshard does."""
    src_id, dst_id = cl.node_id(src), cl.node_id(dst)
    assert dst.cmd("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id) == b"OK"
    assert src.cmd("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id) == b"OK"
    if keys:
        r = src.cmd("MIGRATE", "127.0.0.1", dst.port, "", 0, 5000, "KEYS", *keys)
        assert r in (b"OK", b"NOKEY"), r
    for n in cl.nodes:
        assert n.cmd("CLUSTER", "SETSLOT", slot, "NODE", dst_id) == b"OK"
    cl.wait_consistent()


def test_moved_after_resharding_a_slot(redis_cluster):
    key = "moving-key"
    slot = key_slot(key)

    def main():
        with RedisCluster(redis_cluster.startup_nodes) as rc:
            assert rc.set(key, "v1") is True
            src = redis_cluster.slot_owner(slot)
            dst = next(n for n in redis_cluster.nodes if n is not src)
            assert rc.node_for_key(key).config.port == src.port
            _move_slot(redis_cluster, slot, src, dst, [key])
            # the client's map is stale: the old owner answers MOVED, the client
            # updates the slot and follows it; the write is applied exactly once
            assert rc.incr("moving-counter{" + key + "}") == 1
            assert rc.get(key) == b"v1"
            assert rc.stats["moved"] >= 1
            assert rc.node_for_key(key).config.port == dst.port
            assert dst.cmd("GET", key) == b"v1" and dst.cmd("GET", "moving-counter{" + key + "}") == b"1"
            moved_before = rc.stats["moved"]
            assert rc.get(key) == b"v1" and rc.stats["moved"] == moved_before  # map updated

    greenrt.run(main)


def test_ask_during_migration(redis_cluster):
    base = "{asktag}"
    slot = key_slot(base)

    def main():
        with RedisCluster(redis_cluster.startup_nodes) as rc:
            rc.set(base + "old", "stays-on-source")
            src = redis_cluster.slot_owner(slot)
            dst = next(n for n in redis_cluster.nodes if n is not src)
            src_id, dst_id = redis_cluster.node_id(src), redis_cluster.node_id(dst)
            assert dst.cmd("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id) == b"OK"
            assert src.cmd("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id) == b"OK"
            try:
                # a key that already left (or never existed) on the source: ASK -> target
                assert rc.set(base + "new", "written-during-migration") is True
                assert rc.stats["ask"] >= 1
                # the new key was created on the target; the source keeps only the old one
                assert dst.cmd("CLUSTER", "COUNTKEYSINSLOT", slot) == 1
                assert src.cmd("CLUSTER", "COUNTKEYSINSLOT", slot) == 1
                assert type(src.cmd("GET", base + "new")).__name__ == "AskError"
                assert rc.get(base + "old") == b"stays-on-source"  # still served by source
                assert rc.node_for_key(base).config.port == src.port  # ASK changes no map
                # and a redirect loop is bounded
                loop = RedisCluster(redis_cluster.startup_nodes, max_redirects=0)
                with pytest.raises(TooManyRedirects):
                    loop.get(base + "missing")
                loop.close()
            finally:
                # finish the migration so the session cluster stays consistent
                _move_slot_finish(redis_cluster, slot, src, dst, base)
            assert rc.get(base + "new") == b"written-during-migration"
            assert rc.get(base + "old") == b"stays-on-source"

    greenrt.run(main)


def _move_slot_finish(cl, slot, src, dst, base):
    keys = src.cmd("CLUSTER", "GETKEYSINSLOT", slot, 1000)
    if keys:
        assert src.cmd("MIGRATE", "127.0.0.1", dst.port, "", 0, 5000, "KEYS", *keys) == b"OK"
    dst_id = cl.node_id(dst)
    for n in cl.nodes:
        assert n.cmd("CLUSTER", "SETSLOT", slot, "NODE", dst_id) == b"OK"
    cl.wait_consistent()
