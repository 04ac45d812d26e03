"""The Redis client against a real redis-server: helpers (RESP2 and RESP3), decoding,
URLs, handshake (HELLO/AUTH/ACL/SELECT/client name, RESP2 fallback), pipelines,
transactions with WATCH conflicts, scripts, streams."""

from __future__ import annotations

import pytest

import greenrt
from greenrt.protocols.redis import (
    AuthenticationError,
    ExecAbortError,
    NoPermissionError,
    NoScriptError,
    Redis,
    ReplyError,
    WatchError,
    WrongTypeError,
    parse_url,
)
from greenrt.protocols.redis.errors import DataError, RedisConnectionError

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def protocol(request):
    return request.param


def run(fn):
    return greenrt.run(fn)


def test_handshake_negotiates_protocol(redis, protocol):
    def main():
        with Redis(port=redis.port, protocol=protocol, client_name="greenrt-test") as r:
            assert r.ping() is True
            lease = r.pool.acquire()
            try:
                assert lease.conn.protocol == protocol
                if protocol == 3:
                    assert lease.conn.server_info[b"proto"] == 3
            finally:
                lease.release()
            assert r.client_getname() == b"greenrt-test"

    run(main)


def test_string_and_key_helpers(redis, protocol):
    def main():
        with Redis(port=redis.port, protocol=protocol) as r:
            assert r.set("s", "v") is True
            assert r.get("s") == b"v"
            assert r.get("missing") is None
            assert r.set("s", "w", nx=True) is False
            assert r.set("s", "w", xx=True) is True
            assert r.set("s", "x", get=True) == b"w"
            assert r.getset("s", "y") == b"x"
            assert r.setnx("n", 1) is True and r.setnx("n", 2) is False
            assert r.incr("n") == 2 and r.incrby("n", 5) == 7 and r.decr("n") == 6
            assert r.decrby("n", 2) == 4
            assert r.incrbyfloat("f", 1.5) == 1.5
            assert r.append("s", "z") == 2 and r.strlen("s") == 2
            assert r.getrange("s", 0, 0) == b"y" and r.setrange("s", 1, "Q") == 2
            assert r.mset({"m1": "a", "m2": "b"}) is True
            assert r.mget("m1", "m2", "nope") == [b"a", b"b", None]
            assert r.getdel("m1") == b"a" and r.exists("m1", "m2") == 1
            assert r.setex("t", 100, "v") is True and 0 < r.ttl("t") <= 100
            assert r.pttl("t") > 0 and r.persist("t") is True and r.ttl("t") == -1
            assert r.expire("t", 50) is True and r.pexpire("t", 50_000) is True
            assert r.ttl("missing") == -2 and r.expire("missing", 5) is False
            assert r.set("e", 1, ex=100) and r.ttl("e") > 0
            assert r.set("p", 1, px=100_000) and r.pttl("p") > 0
            assert r.expireat("p", 4_000_000_000) is True
            assert r.type("s") in (b"string", "string")
            assert r.rename("s", "s2") is True and r.get("s2") == b"yQ"
            assert sorted(r.keys("m*")) == [b"m2"]
            assert r.delete("s2", "nope") == 1 and r.unlink("m2") == 1
            assert r.dbsize() == r.execute("DBSIZE")
            seen = set(r.scan_iter(match="*"))
            assert seen == set(r.keys("*"))
            assert r.echo("hi") == b"hi"
            assert r.info("server")["redis_version"]
            sec, usec = r.time()
            assert sec > 0 and 0 <= usec < 1_000_000

    run(main)


def test_hash_list_set_zset_helpers(redis, protocol):
    def main():
        with Redis(port=redis.port, protocol=protocol) as r:
            assert r.hset("h", "a", 1) == 1
            assert r.hset("h", mapping={"b": 2, "c": 3}) == 2
            assert r.hget("h", "a") == b"1" and r.hmget("h", "a", "x") == [b"1", None]
            assert r.hgetall("h") == {b"a": b"1", b"b": b"2", b"c": b"3"}
            assert r.hgetall("nohash") == {}
            assert r.hexists("h", "a") is True and r.hsetnx("h", "a", 9) is False
            assert r.hincrby("h", "a", 4) == 5 and r.hincrbyfloat("h", "b", 0.5) == 2.5
            assert sorted(r.hkeys("h")) == [b"a", b"b", b"c"] and r.hlen("h") == 3
            assert sorted(r.hvals("h")) == [b"2.5", b"3", b"5"]
            cursor, fields = r.hscan("h")
            assert cursor == 0 and fields == r.hgetall("h")
            assert r.hdel("h", "a", "zz") == 1

            assert r.rpush("l", "a", "b", "c") == 3 and r.lpush("l", "z") == 4
            assert r.lrange("l", 0, -1) == [b"z", b"a", b"b", b"c"]
            assert r.llen("l") == 4 and r.lindex("l", 1) == b"a"
            assert r.lset("l", 1, "A") is True and r.lrem("l", 0, "A") == 1
            assert r.lpop("l") == b"z" and r.rpop("l") == b"c" and r.lpop("l", 5) == [b"b"]
            assert r.lpop("l") is None
            r.rpush("l", 1, 2, 3, 4)
            assert r.ltrim("l", 1, 2) is True and r.lrange("l", 0, -1) == [b"2", b"3"]
            assert r.lmove("l", "l2") == b"2" and r.lrange("l2", 0, -1) == [b"2"]

            assert r.sadd("s", "a", "b", "c") == 3 and r.srem("s", "c") == 1
            assert r.smembers("s") == {b"a", b"b"} and r.smembers("nos") == set()
            assert r.sismember("s", "a") is True and r.sismember("s", "z") is False
            assert r.smismember("s", "a", "z") == [True, False]
            assert r.scard("s") == 2
            r.sadd("s2", "b", "q")
            assert r.sinter("s", "s2") == {b"b"} and r.sunion("s", "s2") == {b"a", b"b", b"q"}
            assert r.sdiff("s", "s2") == {b"a"} and r.smove("s", "s2", "a") is True
            assert r.srandmember("s") == b"b" and r.spop("s") == b"b" and r.spop("s2", 5) == {b"a", b"b", b"q"}

            assert r.zadd("z", {"a": 1, "b": 2.5, "c": 3}) == 3
            assert r.zadd("z", {"a": 5}, xx=True, ch=True) == 1
            assert r.zscore("z", "a") == 5.0 and r.zscore("z", "nope") is None
            assert r.zincrby("z", 1, "b") == 3.5 and r.zcard("z") == 3
            assert r.zcount("z", 3, 4) == 2 and r.zrank("z", "c") == 0 and r.zrevrank("z", "c") == 2
            assert r.zrange("z", 0, -1) == [b"c", b"b", b"a"]
            assert r.zrange("z", 0, -1, withscores=True) == [(b"c", 3.0), (b"b", 3.5), (b"a", 5.0)]
            assert r.zrevrange("z", 0, 0, withscores=True) == [(b"a", 5.0)]
            assert r.zrangebyscore("z", 3.5, "+inf") == [b"b", b"a"]
            assert r.zrangebyscore("z", "-inf", "+inf", withscores=True, offset=1, count=1) == [(b"b", 3.5)]
            assert r.zpopmin("z") == [(b"c", 3.0)] and r.zpopmax("z", 1) == [(b"a", 5.0)]
            assert r.zremrangebyscore("z", 0, 10) == 1 and r.zrem("z", "x") == 0

    run(main)


def test_decode_responses(redis, protocol):
    def main():
        with Redis(port=redis.port, protocol=protocol, decode_responses=True) as r:
            r.hset("h", mapping={"k": "välue"})
            r.sadd("s", "x")
            assert r.get("nope") is None
            assert r.hgetall("h") == {"k": "välue"}
            assert r.smembers("s") == {"x"}
            assert r.set("a", "ü") is True and r.get("a") == "ü"
            assert r.keys("*") and all(isinstance(k, str) for k in r.keys("*"))
            assert r.type("a") == "string"

    run(main)


def test_error_replies_are_typed_and_leave_the_connection_usable(redis):
    def main():
        with Redis(port=redis.port, max_connections=1) as r:
            r.set("s", "v")
            with pytest.raises(WrongTypeError):
                r.lpush("s", "x")
            with pytest.raises(ReplyError) as ei:
                r.execute("NOSUCHCOMMAND")
            assert ei.value.code == "ERR"
            with pytest.raises(NoScriptError):
                r.evalsha("0" * 40, 0)
            with pytest.raises(DataError):
                r.set("k", None)
            assert r.get("s") == b"v"
            assert r.pool.statistics()["opened"] == 1

    run(main)


def test_scripts_and_register_script(redis, protocol):
    def main():
        with Redis(port=redis.port, protocol=protocol) as r:
            assert r.eval("return {KEYS[1], ARGV[1]}", 1, "k", "a") == [b"k", b"a"]
            sha = r.script_load("return redis.call('INCR', KEYS[1])")
            assert r.script_exists(sha, "0" * 40) == [True, False]
            assert r.evalsha(sha, 1, "c") == 1
            s = r.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
            r.script_flush()
            assert s(keys=["c"], args=[10]) == 11  # NOSCRIPT -> EVAL, ran exactly once
            assert s(keys=["c"], args=[1]) == 12
            assert int(r.get("c")) == 12

    run(main)


def test_streams(redis, protocol):
    def main():
        with Redis(port=redis.port, protocol=protocol) as r:
            i1 = r.xadd("st", {"a": 1})
            i2 = r.xadd("st", {"b": 2}, maxlen=1000)
            assert r.xlen("st") == 2
            assert r.xrange("st") == [(i1, {b"a": b"1"}), (i2, {b"b": b"2"})]
            assert r.xrevrange("st", count=1) == [(i2, {b"b": b"2"})]
            assert r.xread({"st": 0}) == {b"st": [(i1, {b"a": b"1"}), (i2, {b"b": b"2"})]}
            assert r.xread({"st": i2}, block=10) == {}
            assert r.xgroup_create("st", "g", id="0") is True
            got = r.xreadgroup("g", "c1", {"st": ">"}, count=1)
            assert got == {b"st": [(i1, {b"a": b"1"})]}
            assert r.xack("st", "g", i1) == 1
            assert r.xdel("st", i1) == 1 and r.xtrim("st", 0, approximate=False) == 1

    run(main)


def test_blocking_list_commands(redis, protocol):
    def main():
        with Redis(port=redis.port, protocol=protocol) as r:
            assert r.blpop("q", timeout=0.05) is None
            with greenrt.region() as rg:
                t = rg.spawn(r.blpop, ["q"], 5)
                greenrt.sleep(0.05)
                r.rpush("q", "job")
            assert t.outcome.value == (b"q", b"job")
            r.rpush("q2", "x")
            assert r.brpop("q2", 1) == (b"q2", b"x")
            r.zadd("zq", {"m": 2})
            assert r.bzpopmin("zq", 1) == (b"zq", b"m", 2.0)
            r.rpush("src", "e")
            assert r.blmove("src", "dst", 1) == b"e"

    run(main)


def test_pipeline_batches_and_reports_errors_per_command(redis, protocol):
    def main():
        with Redis(port=redis.port, protocol=protocol, max_connections=1) as r:
            with r.pipeline() as p:
                p.set("a", 1).incr("a").get("a").hgetall("nope").lpush("a", "x").get("a")
                assert len(p) == 6
                res = p.execute(raise_on_error=False)
            assert res[:4] == [True, 2, b"2", {}]
            assert isinstance(res[4], WrongTypeError) and res[5] == b"2"
            p = r.pipeline()
            p.set("b", 1).lpush("b", 1).set("c", 3)
            with pytest.raises(WrongTypeError):
                p.execute()
            assert r.get("c") == b"3"  # the rest still ran; the connection is clean
            assert r.pipeline().execute() == []
            # many commands, one connection
            p = r.pipeline()
            for i in range(500):
                p.set(f"k{i}", i)
            for i in range(500):
                p.get(f"k{i}")
            out = p.execute()
            assert out[500:] == [str(i).encode() for i in range(500)]
            assert r.pool.statistics()["opened"] == 1

    run(main)


def test_transaction_exec_and_queued_results(redis, protocol):
    def main():
        with Redis(port=redis.port, protocol=protocol) as r:
            with r.pipeline(transaction=True) as tx:
                tx.set("a", 1).incr("a").hset("h", "f", "v").hgetall("h")
                assert tx.exec() == [True, 2, 1, {b"f": b"v"}]
            with r.transaction() as tx:
                tx.multi()
                tx.set("x", 1)
                tx.lpush("x", 2)  # fails at EXEC time, the rest runs
                tx.get("x")
                res = tx.exec(raise_on_error=False)
            assert res[0] is True and isinstance(res[1], WrongTypeError) and res[2] == b"1"
            with r.transaction() as tx:
                tx.multi()
                tx.execute_command("SET", "only-one-arg")
                with pytest.raises(ExecAbortError):
                    tx.exec()
            assert r.get("only-one-arg") is None

    run(main)


def test_watch_conflict_raises_and_nothing_runs(redis, protocol):
    def main():
        with Redis(port=redis.port, protocol=protocol) as r, \
                Redis(port=redis.port, protocol=protocol) as other:
            r.set("counter", 10)
            with r.transaction("counter") as tx:
                v = int(tx.get("counter"))
                other.set("counter", 100)  # conflicting write from another client
                tx.multi()
                tx.set("counter", v + 1)
                tx.set("side-effect", 1)
                with pytest.raises(WatchError):
                    tx.exec()
            assert r.get("counter") == b"100" and r.get("side-effect") is None

            # transact() retries until it commits; concurrent incrementers lose nothing
            def incr(tx):
                n = int(tx.get("counter"))
                tx.multi()
                tx.set("counter", n + 1)

            with greenrt.region() as rg:
                for _ in range(10):
                    rg.spawn(lambda: [r.transact(incr, "counter", retries=100) for _ in range(5)])
            assert r.get("counter") == b"150"
            # the watched connection went back clean (WATCH cleared by EXEC/UNWATCH)
            s = r.pool.statistics()
            assert s["in_use"] == 0

    run(main)


def test_transaction_obligation_and_discard(redis):
    events = []

    def main():
        with Redis(port=redis.port) as r:
            with r.transaction("w") as tx:
                tx.multi()
                tx.set("never", 1)
                tx.discard()
            assert r.get("never") is None
            # leaving the block by an exception aborts (DISCARD); nothing runs
            with pytest.raises(KeyError), r.transaction() as tx:
                tx.multi()
                tx.set("never", 2)
                raise KeyError("boom")
            assert r.get("never") is None
            # leaving without exec/discard while commands are queued is a bug
            with pytest.raises(greenrt.InvalidStateError), r.transaction() as tx:
                tx.multi()
                tx.set("never", 3)
            assert r.get("never") is None
            assert r.pool.statistics()["in_use"] == 0

    greenrt.run(main, instruments=[events.append])
    kinds = [(e.kind, e.data.get("kind")) for e in events
             if e.kind.startswith("obligation.") and e.data.get("kind") == "transaction"]
    assert ("obligation.reserve", "transaction") in kinds
    assert ("obligation.abort", "transaction") in kinds
    assert not any(e.kind == "obligation.leak" for e in events)


def test_from_url_variants(redis):
    assert parse_url("redis://u:p%40ss@example.com:7000/3?protocol=2&client_name=x") == {
        "username": "u", "password": "p@ss", "host": "example.com", "port": 7000, "db": 3,
        "protocol": 2, "client_name": "x"}
    assert parse_url("unix:///tmp/r.sock?db=2")["path"] == "/tmp/r.sock"
    assert parse_url("rediss://h")["tls"] is True
    for bad in ("http://x", "redis://h/notadb", "redis://h?bogus=1"):
        with pytest.raises(ValueError):
            parse_url(bad)

    def main():
        with Redis.from_url(f"redis://127.0.0.1:{redis.port}/2") as r:
            r.set("in-db-2", 1)
        with Redis.from_url(f"unix://{redis.unix_path}?db=2&decode_responses=true") as r:
            assert r.get("in-db-2") == "1"
        with Redis.from_url(f"redis://127.0.0.1:{redis.port}/0") as r:
            assert r.get("in-db-2") is None

    run(main)


def test_auth_password_and_acl_users(redis_factory, protocol):
    srv = redis_factory("--requirepass", "sekret")

    def main():
        with Redis(port=srv.port, protocol=protocol, password="sekret") as r:
            assert r.ping()
            r.execute("ACL", "SETUSER", "alice", "on", ">alicepw", "~app:*", "+@all")
        with Redis(port=srv.port, protocol=protocol, username="alice", password="alicepw") as a:
            assert a.set("app:1", "x") is True
            with pytest.raises(NoPermissionError):
                a.set("other", "x")
        with Redis(port=srv.port, protocol=protocol, password="wrong") as bad:
            with pytest.raises(AuthenticationError):
                bad.ping()
            assert bad.pool.statistics()["open"] == 0  # the failed connect freed its slot
        with Redis(port=srv.port, protocol=protocol) as anon:
            with pytest.raises(AuthenticationError):
                anon.get("app:1")

    run(main)


def test_resp2_fallback_when_hello_is_unknown(redis_factory):
    srv = redis_factory("--rename-command", "HELLO", "")

    def main():
        with Redis(port=srv.port, protocol=3, client_name="fb", db=1) as r:
            assert r.set("k", "v") is True and r.hgetall("none") == {}
            lease = r.pool.acquire()
            assert lease.conn.protocol == 2
            lease.release()
            assert r.client_getname() == b"fb"
            assert r.execute("CLIENT", "INFO").split(b"db=")[1].startswith(b"1")

    run(main)


def test_connect_failure_is_typed(unused_port):
    def main():
        with Redis(port=unused_port, connect_timeout=2) as r:
            with pytest.raises(RedisConnectionError):
                r.ping()
            assert r.pool.statistics()["open"] == 0

    run(main)


def test_tls_rediss(redis_factory, tmp_path, unused_port):
    """rediss:// through protocols.tls against redis-server's own TLS port, with chain
    and host-name verification."""
    import trustme
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    other_ca = trustme.CA()
    other_ca.cert_pem.write_to_path(str(tmp_path / "other.pem"))
    srv = redis_factory("--tls-port", str(unused_port), "--tls-cert-file", str(tmp_path / "cert.pem"),
                        "--tls-key-file", str(tmp_path / "key.pem"),
                        "--tls-ca-cert-file", str(tmp_path / "ca.pem"),
                        "--tls-auth-clients", "no", "--tls-replication", "no")
    tls_port = int(srv.cmd("CONFIG", "GET", "tls-port")[1])
    assert tls_port == unused_port

    def main():
        url = f"rediss://localhost:{tls_port}/0?ssl_ca_certs={tmp_path / 'ca.pem'}"
        with Redis.from_url(url) as r:
            assert r.set("over-tls", "yes") is True and r.get("over-tls") == b"yes"
            p = r.pipeline()
            p.incr("n").incr("n")
            assert p.execute() == [1, 2]
        bad = f"rediss://localhost:{tls_port}/0?ssl_ca_certs={tmp_path / 'other.pem'}"
        with Redis.from_url(bad) as r:
            with pytest.raises(RedisConnectionError):
                r.ping()

    run(main)


def test_redis_py_names_execute_command_and_transaction(redis):
    """Issue 13: redis-py users call ``execute_command`` and ``transaction(fn, *watches)``."""

    def main():
        with Redis(port=redis.port) as r:
            assert r.execute_command("SET", "rp:k", "1") == b"OK"
            assert r.execute_command("INCRBY", "rp:k", 4) == 5
            with pytest.raises(TypeError, match="Redis.execute"):
                r.execute_command("GET", "rp:k", shard_hint="x")

            def incr(tx):
                n = int(tx.get("rp:k"))
                tx.multi()
                tx.set("rp:k", n + 1)
                return n + 1

            assert r.transaction(incr, "rp:k") == [True]
            assert r.transaction(incr, "rp:k", value_from_callable=True) == 7
            assert r.get("rp:k") == b"7"

            # a conflicting write between WATCH and EXEC: retried until it commits
            calls = []

            def racy(tx):
                calls.append(1)
                n = int(tx.get("rp:k"))
                if len(calls) == 1:
                    r.set("rp:k", 100)  # another client changes the watched key
                tx.multi()
                tx.set("rp:k", n + 1)

            assert r.transaction(racy, "rp:k", watch_delay=0.01) == [True]
            assert len(calls) == 2 and r.get("rp:k") == b"101"

    greenrt.run(main)
