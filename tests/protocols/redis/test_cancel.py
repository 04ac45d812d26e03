"""Cancel-safety against a real redis-server (the CVE-2023-28858/28859 bug class).

The invariant: a command cancelled after it was sent and before its reply was read
never lets that reply reach another caller; a non-idempotent command is never sent
twice; blocking commands stay cancellable.
"""

from __future__ import annotations

import random
import threading
import time

import pytest

import greenrt
from greenrt.protocols.redis import OutcomeUnknown, Redis

pytestmark = pytest.mark.timeout(120)

# A Lua script that keeps the server busy for a while before answering ARGV[1], so a
# deadline reliably fires after the command was sent and before its reply arrives.
SLOW_ECHO = "local i = 0 while i < tonumber(ARGV[2]) do i = i + 1 end return ARGV[1]"


def _blocked_clients(redis) -> int:
    info = redis.cmd("INFO", "clients").decode()
    return int(info.split("blocked_clients:")[1].split()[0])


# drain: generous, so a loaded machine (the script runs ~0.3 s when idle) still drains
@pytest.mark.parametrize("drain", [0.0, 10.0], ids=["discard", "drain"])
def test_cancelled_reply_never_reaches_the_next_caller(redis, drain):
    def main():
        with Redis(port=redis.port, max_connections=1, drain_timeout=drain) as r:
            r.set("mine", "my-own-value")
            with greenrt.move_on_after(0.02) as scope:
                r.eval(SLOW_ECHO, 0, "STALE-REPLY", 3_000_000)
            assert scope.cancelled_caught
            # same pool, one connection: the next caller must get its own reply
            assert r.get("mine") == b"my-own-value"
            assert r.echo("next") == b"next"
            st = r.pool.statistics()
            if drain:
                assert st["drained"] == 1 and st["opened"] == 1  # drained, then reused
            else:
                assert st["discarded"] == 1 and st["opened"] == 2  # closed, never reused

    greenrt.run(main)


@pytest.mark.parametrize("drain", [0.0, 0.05], ids=["discard", "drain"])
def test_cve_class_many_tasks_random_cancellation(redis, drain):
    """Many tasks run SET/GET/ECHO with unique values through a small pool while a
    chaos task cancels random in-flight calls and others run under tiny deadlines.
    Every call that completes must see exactly its own reply."""
    rng = random.Random(1234 + int(drain * 100))
    completed = {"ok": 0, "cancelled": 0}
    active: dict[int, greenrt.CancelScope] = {}
    workers, rounds = 40, 40

    def worker(w: int, r: Redis, wrng: random.Random):
        for i in range(rounds):
            key = f"k:{w}:{i}"
            val = f"v:{w}:{i}:{wrng.random()}"
            mode = wrng.random()
            if mode < 0.3:
                scope = greenrt.move_on_after(wrng.choice([0, 1e-5, 5e-5, 2e-4, 1e-3]))
            else:
                scope = greenrt.cancel_scope()
            with scope:
                active[id(scope)] = scope
                try:
                    assert r.set(key, val) is True
                    got = r.get(key)
                    assert got == val.encode(), f"{key}: got {got!r}, expected {val!r}"
                    echoed = r.echo(val + "!")
                    assert echoed == (val + "!").encode(), f"echo mismatch {echoed!r}"
                    completed["ok"] += 1
                finally:
                    active.pop(id(scope), None)
            if scope.cancelled_caught:
                completed["cancelled"] += 1

    def chaos(stop: list):
        while not stop:
            greenrt.sleep(rng.choice([0, 0, 1e-5, 1e-4]))
            if active:
                victim = rng.choice(list(active.values()))
                victim.cancel("chaos")

    def main():
        with Redis(port=redis.port, max_connections=8, drain_timeout=drain) as r:
            stop: list = []
            with greenrt.region() as outer:
                outer.spawn(chaos, stop)
                with greenrt.region() as rg:
                    for w in range(workers):
                        rg.spawn(worker, w, r, random.Random(rng.random()))
                stop.append(True)
            st = r.pool.statistics()
            assert st["in_use"] == 0 and st["waiting"] == 0
            return st

    st = greenrt.run(main)
    assert completed["ok"] + completed["cancelled"] == workers * rounds
    assert completed["ok"] > 0 and completed["cancelled"] > 0
    # the dangerous window (reply owed when the caller was cancelled) was exercised:
    assert st["discarded"] + st["drained"] > 0, st


def test_outcome_unknown_write_is_never_resent(redis):
    """The server drops a connection under a pooled client. A dead *idle* connection is
    seen at checkout (its EOF is unread) and replaced, so nothing is lost; a read whose
    connection dies mid-command is retried once on a fresh connection; a write is not
    (it raises OutcomeUnknown), so INCR runs at most once."""

    def kill_when_paused(cid):
        # the INCR below is held by CLIENT PAUSE WRITE; kill its connection meanwhile
        time.sleep(0.2)
        redis.cmd("CLIENT", "KILL", "ID", str(cid))
        redis.cmd("CLIENT", "UNPAUSE")

    def main():
        with Redis(port=redis.port, max_connections=1, health_check_interval=None) as r:
            r.set("n", 0)
            cid = r.client_id()
            redis.cmd("CLIENT", "KILL", "ID", str(cid))
            idle = r.pool._keys[None].idle[-1][0]
            while not idle.stream.has_unread():  # the FIN reaches the idle socket
                greenrt.sleep(0.01)
            assert r.get("n") == b"0"  # the dead idle connection was replaced first
            assert r.pool.statistics()["discard_reasons"].get("idle_unread") == 1
            cid = r.client_id()
            redis.cmd("CLIENT", "PAUSE", "5000", "WRITE")
            killer = threading.Thread(target=kill_when_paused, args=(cid,))
            killer.start()
            with pytest.raises(OutcomeUnknown) as ei:
                r.incr("n")
            killer.join()
            assert ei.value.command == "INCR"
            assert r.get("n") == b"0"  # not applied twice (here: not at all)
            assert r.incr("n") == 1

    greenrt.run(main)


@pytest.mark.parametrize("protocol", [2, 3])
def test_blocking_commands_stay_cancellable(redis, protocol):
    def main():
        with Redis(port=redis.port, protocol=protocol, max_connections=2,
                   drain_timeout=1.0) as r:
            # cancel() of a task blocked in BLPOP
            with greenrt.region() as rg:
                t = rg.spawn(r.blpop, "queue", 0)
                while _blocked_clients(redis) == 0:
                    greenrt.sleep(0.005)
                t.cancel("user")
            assert t.outcome.is_cancelled
            # a deadline on XREAD BLOCK and on BZPOPMIN
            with greenrt.move_on_after(0.05) as s1:
                r.xread({"stream": "$"}, block=0)
            assert s1.cancelled_caught
            with greenrt.move_on_after(0.05) as s2:
                r.bzpopmin("zq", 0)
            assert s2.cancelled_caught
            # the cancelled callers' connections were closed (never drained: the
            # reply may never come), and the server has unblocked them
            assert r.pool.statistics()["discarded"] == 3
            while _blocked_clients(redis):
                greenrt.sleep(0.005)
            # nothing was consumed on their behalf
            r.rpush("queue", "job")
            assert r.lrange("queue", 0, -1) == [b"job"]
            assert r.blpop("queue", 1) == (b"queue", b"job")

    greenrt.run(main)


def test_cancelled_pipeline_and_transaction_leave_no_trace(redis):
    def main():
        with Redis(port=redis.port, max_connections=1) as r:
            p = r.pipeline()
            p.set("a", 1).eval(SLOW_ECHO, 0, "x", 3_000_000).set("b", 2)
            with greenrt.move_on_after(0.02) as s:
                p.execute()
            assert s.cancelled_caught
            assert r.echo("fresh") == b"fresh"
            # a transaction cancelled while queueing sends nothing
            with greenrt.cancel_scope() as cs, r.transaction() as tx:
                tx.multi()
                tx.set("tx-key", 1)
                cs.cancel()
                greenrt.checkpoint()
                tx.exec()
            assert cs.cancelled_caught
            assert r.get("tx-key") is None
            assert r.pool.statistics()["in_use"] == 0

    greenrt.run(main)
