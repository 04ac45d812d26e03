"""The bounded pool against a real redis-server: bounds, acquire timeout under the
caller's budget, cancel-safe waiting, health checks, lifetime, lease leaks, close."""

from __future__ import annotations

import pytest

import greenrt
from greenrt.protocols.redis import ConnectionConfig, ConnectionPool, PoolClosed, PoolTimeout, Redis

pytestmark = pytest.mark.timeout(60)


def test_pool_is_bounded_and_fifo(redis):
    order = []

    def user(r, i):
        lease = r.pool.acquire()
        order.append(i)
        greenrt.sleep(0.01)
        assert r.pool.statistics()["open"] <= 2
        lease.release()

    def main():
        with Redis(port=redis.port, max_connections=2) as r:
            # open both connections first, so no task's order depends on connect speed
            warm = [r.pool.acquire(), r.pool.acquire()]
            for lease in warm:
                lease.release()
            with greenrt.region() as rg:
                for i in range(8):
                    rg.spawn(user, r, i)
            st = r.pool.statistics()
            assert st["opened"] == 2 and st["open"] == 2 and st["in_use"] == 0
            assert st["waits"] == 6

    greenrt.run(main)
    assert order == list(range(8))  # FIFO hand-off, no barging


def test_acquire_timeout_and_callers_deadline(redis):
    def main():
        with Redis(port=redis.port, max_connections=1, acquire_timeout=0.05) as r:
            held = r.pool.acquire()
            with pytest.raises(PoolTimeout):
                r.get("x")
            r.pool.acquire_timeout = None
            with pytest.raises(greenrt.TooSlowError):
                with greenrt.fail_after(0.05):
                    r.get("x")  # waits under the caller's own deadline
            st = r.pool.statistics()
            assert st["waiting"] == 0 and st["timeouts"] == 1
            held.release()
            assert r.get("x") is None

    greenrt.run(main)


def test_cancelled_waiters_lose_nothing(redis):
    def main():
        with Redis(port=redis.port, max_connections=1) as r:
            held = r.pool.acquire()
            got = []
            with greenrt.region() as rg:
                waiters = [rg.spawn(r.echo, f"w{i}") for i in range(6)]
                greenrt.sleep(0.01)
                for t in waiters[::2]:
                    t.cancel("user")
                greenrt.sleep(0.01)
                assert r.pool.statistics()["waiting"] == 3
                held.release()
            for i, t in enumerate(waiters):
                if i % 2:
                    got.append(t.outcome.value)
                else:
                    assert t.outcome.is_cancelled
            assert got == [b"w1", b"w3", b"w5"]
            st = r.pool.statistics()
            assert st["open"] == 1 and st["in_use"] == 0 and st["discarded"] == 0

    greenrt.run(main)


def test_hand_off_racing_with_cancellation(redis):
    """A waiter cancelled in the same instant it is handed the connection: the lease
    exists and is released while it unwinds, so nothing leaks."""

    def waiter(r, out):
        with r.pool.acquire() as conn:
            out.append(conn)
            greenrt.checkpoint()  # the cancellation lands here

    def main():
        with Redis(port=redis.port, max_connections=1) as r:
            held = r.pool.acquire()
            out = []
            with greenrt.region() as rg:
                t = rg.spawn(waiter, r, out)
                greenrt.sleep(0.01)
                held.release()      # hands the connection to t ...
                t.cancel("user")    # ... and cancels it before it runs
            assert t.outcome.is_cancelled and len(out) == 1
            st = r.pool.statistics()
            assert st["in_use"] == 0 and st["idle"] == 1
            assert r.ping()

    greenrt.run(main)


def test_health_check_and_max_lifetime(redis):
    def main():
        with Redis(port=redis.port, max_connections=1, health_check_interval=0) as r:
            cid = r.client_id()
            redis.cmd("CLIENT", "KILL", "ID", str(cid))
            assert r.set("k", "v") is True  # dead idle connection detected, replaced
            assert r.client_id() != cid
            st = r.pool.statistics()
            # seen by the checkout peek (its EOF is unread) or, if the FIN was not in
            # yet, by the PING health check
            seen_dead = st["discard_reasons"].get("idle_unread", 0) + st["discard_reasons"].get("health_check", 0)
            assert seen_dead == 1 and st["opened"] == 2 and st["checks"] >= 1
        with Redis(port=redis.port, max_lifetime=0, health_check_interval=None) as r:
            ids = {r.client_id() for _ in range(3)}
            assert len(ids) == 3

    greenrt.run(main)


def test_leaked_lease_is_reported_and_its_connection_closed(redis):
    pool_box = []

    def leaker():
        pool_box[0].acquire()  # never released

    def main():
        pool = ConnectionPool(ConnectionConfig(port=redis.port), max_connections=1)
        pool_box.append(pool)
        with pytest.raises(ExceptionGroup) as ei:
            with greenrt.region() as rg:
                rg.spawn(leaker)
        leak = ei.value.exceptions[0]
        assert isinstance(leak, greenrt.ObligationLeak)
        assert leak.obligations[0].kind == "lease"
        assert "leaker" in leak.obligations[0].site
        st = pool.statistics()
        assert st["open"] == 0 and st["discarded"] == 1
        lease = pool.acquire()  # the slot is free again
        lease.release()
        pool.close()

    greenrt.run(main)


def test_close_wakes_waiters(redis):
    def main():
        r = Redis(port=redis.port, max_connections=1)
        held = r.pool.acquire()
        with greenrt.region() as rg:
            t = rg.spawn(lambda: pytest.raises(PoolClosed, r.get, "x"))
            greenrt.sleep(0.01)
            r.close()
        assert t.outcome.is_ok
        held.release()  # a lease released after close is closed, not pooled
        assert r.pool.statistics()["open"] == 0
        with pytest.raises(PoolClosed):
            r.ping()

    greenrt.run(main)
