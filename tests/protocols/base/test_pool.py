"""``greenrt.protocols.base.pool``: the one connection pool, over real loopback sockets.

The connections are a tiny line protocol (``LineConn``: send ``b"x\\n"``, read one line
back) against a server started by each test in the same hub, so every property is
exercised with a real socket, a real parser buffer and the real non-blocking peek.
Each promise of the module docstring is tried, including the adversarial peer that
answers one request twice."""

from __future__ import annotations

import pytest

import greenrt
from greenrt import net
from greenrt.protocols.base import PoolClosed, PoolTimeout
from greenrt.protocols.base.pool import Pool, unread_reason


class LineConn:
    """A pooled connection speaking ``request\\n`` -> ``reply\\n``."""

    def __init__(self, stream):
        self.stream = stream
        self.buf = bytearray()
        self.busy = False
        self.closed = False

    def call(self, line: bytes) -> bytes:
        self.busy = True
        self.stream.send_all(line + b"\n")
        while b"\n" not in self.buf:
            chunk = self.stream.recv(65536)
            if not chunk:
                raise ConnectionError("eof")
            self.buf += chunk
        i = self.buf.index(b"\n")
        reply = bytes(self.buf[:i])
        del self.buf[:i + 1]
        self.busy = False
        return reply

    def reusable(self) -> bool:
        return not self.busy and not self.closed and not self.stream.broken

    def unread(self):
        return unread_reason(len(self.buf), self.stream)

    def close(self) -> None:
        self.closed = True
        self.stream.close()


class LineServer:
    """Answers each line with ``<line>:<connection number>``; ``twice`` answers every
    request two times (the reply too many); ``push(n)`` writes unsolicited bytes to
    connection ``n``; ``hang_up(n)`` closes it."""

    def __init__(self, region, *, twice: bool = False):
        self.twice = twice
        self.streams: list = []
        self.listener = net.listen_tcp("127.0.0.1", 0)
        self.port = self.listener.address[1]
        region.spawn(self._accept)

    def _accept(self):
        with greenrt.region() as r:
            while True:
                s = self.listener.accept()
                self.streams.append(s)
                r.spawn(self._serve, s, len(self.streams))

    def _serve(self, s, n):
        buf = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    reply = line + b":%d\n" % n
                    s.send_all(reply * (2 if self.twice else 1))
        except (OSError, greenrt.ClosedResourceError, net.BrokenStreamError):
            pass
        finally:
            s.close()

    def push(self, n: int, data: bytes) -> None:
        self.streams[n - 1].send_all(data)

    def hang_up(self, n: int) -> None:
        self.streams[n - 1].close()

    def opener(self, key=None) -> LineConn:
        return LineConn(net.open_tcp("127.0.0.1", self.port))


def serving(test, *, twice: bool = False, events=None):
    """Run ``test(server)`` in a hub with a ``LineServer``; cancel the server after."""
    def main():
        with greenrt.region() as r:
            srv = LineServer(r, twice=twice)
            try:
                test(srv)
            finally:
                r.cancel()

    greenrt.run(main, instruments=[events.append] if events is not None else ())


def settle(n: int = 20) -> None:
    # Let the server's tasks run (loopback delivery is immediate once they have).
    for _ in range(n):
        greenrt.sleep(0.001)


def test_a_released_connection_is_reused_and_counted():
    def test(srv):
        pool = Pool(srv.opener, name="line", max_per_key=2)
        with pool.acquire() as c:
            assert c.call(b"a") == b"a:1"
        with pool.acquire() as c2:
            assert c2 is c and c.call(b"b") == b"b:1"
        st = pool.statistics()
        assert (st["opened"], st["reused"], st["open"], st["idle"], st["in_use"]) == (1, 1, 1, 1, 0)
        pool.close()
        assert c.closed

    serving(test)


def test_a_reply_too_many_never_reaches_the_next_caller():
    events = []

    def test(srv):
        pool = Pool(srv.opener, name="line", max_per_key=1)
        with pool.acquire() as c:
            assert c.call(b"a") == b"a:1"  # and a second "a:1" follows
            settle()
        # The extra reply was buffered or readable: the connection was closed.
        assert c.closed
        with pool.acquire() as c2:
            assert c2 is not c
            assert c2.call(b"b") == b"b:2"  # its own reply, not "a:1"
            settle()
        st = pool.statistics()  # (the second connection got two replies as well)
        assert st["discarded"] == 2 and st["opened"] == 2 and st["open"] == 0
        assert set(st["discard_reasons"]) <= {"decoder_buffered", "socket_readable"}
        assert sum(st["discard_reasons"].values()) == 2
        pool.close()

    serving(test, twice=True, events=events)
    discards = [e.data for e in events if e.kind == "pool.discard"]
    assert len(discards) == 2 and {d["protocol"] for d in discards} == {"line"}
    assert {d["reason"] for d in discards} <= {"decoder_buffered", "socket_readable"}


def test_bytes_arriving_while_idle_discard_the_connection_at_checkout():
    def test(srv):
        pool = Pool(srv.opener, name="line")
        with pool.acquire() as c:
            c.call(b"a")
        srv.push(1, b"INJECTED:1\n")
        settle()
        with pool.acquire() as c2:
            assert c2 is not c and c2.call(b"b") == b"b:2"
        assert pool.statistics()["discard_reasons"] == {"idle_unread": 1}
        pool.close()

    serving(test)


def test_a_peer_that_hung_up_on_an_idle_connection_is_replaced():
    def test(srv):
        pool = Pool(srv.opener, name="line")
        with pool.acquire() as c:
            c.call(b"a")
        srv.hang_up(1)
        settle()
        with pool.acquire() as c2:
            assert c2 is not c and c2.call(b"b") == b"b:2"
        # EOF makes the socket readable: the peek sees it before anyone reads.
        assert pool.statistics()["discarded"] == 1
        pool.close()

    serving(test)


def test_a_connection_in_an_unknown_state_is_never_reused():
    def test(srv):
        pool = Pool(srv.opener, name="line")
        lease = pool.acquire()
        lease.conn.busy = True  # e.g. cancelled between request and reply
        lease.release()
        assert lease.conn.closed
        assert pool.statistics()["discard_reasons"] == {"state_unknown": 1}
        pool.close()

    serving(test)


def test_waiters_are_served_first_in_first_out_with_a_bound_per_key():
    def test(srv):
        pool = Pool(srv.opener, name="line", max_per_key=1)
        order = []

        def user(i):
            with pool.acquire() as c:
                order.append(i)
                c.call(b"%d" % i)

        held = pool.acquire()
        with greenrt.region() as r:
            for i in range(4):
                r.spawn(user, i)
            while pool.statistics()["waiting"] < 4:
                greenrt.checkpoint()
            other = pool.acquire("other key")  # another key has its own bound
            other.release()
            held.release()
        assert order == [0, 1, 2, 3]
        st = pool.statistics()
        assert st["waits"] == 4 and st["open"] == 2 and st["keys"] == 2
        pool.close()

    serving(test)


def test_acquire_timeout_raises_pool_timeout_and_takes_nothing():
    def test(srv):
        pool = Pool(srv.opener, name="line", max_per_key=1, acquire_timeout=0.05)
        held = pool.acquire()
        with pytest.raises(PoolTimeout, match="no line connection available within 0.05 s"):
            pool.acquire()
        st = pool.statistics()
        assert st["timeouts"] == 1 and st["waiting"] == 0 and st["open"] == 1
        held.release()
        pool.acquire().release()
        pool.close()

    serving(test)


def test_a_cancelled_waiter_takes_nothing():
    def test(srv):
        pool = Pool(srv.opener, name="line", max_per_key=1)
        held = pool.acquire()
        with greenrt.move_on_after(0.02) as s:
            pool.acquire()
        assert s.cancelled_caught
        assert pool.statistics()["waiting"] == 0
        held.release()
        assert pool.statistics()["idle"] == 1  # not handed to the departed waiter
        pool.close()

    serving(test)


def test_a_hand_off_racing_a_cancel_loses_nothing():
    def test(srv):
        pool = Pool(srv.opener, name="line", max_per_key=1)
        held = pool.acquire()
        got = []

        def waiter(box):
            with greenrt.cancel_scope() as s:
                box.append(s)
                lease = pool.acquire()
                got.append(lease)
                try:
                    greenrt.checkpoint()  # the cancel is delivered here ...
                finally:
                    lease.release()       # ... and the lease still comes back

        with greenrt.region() as r:
            box = []
            r.spawn(waiter, box)
            while pool.statistics()["waiting"] == 0:
                greenrt.checkpoint()
            held.release()  # hand-off to the waiter ...
            box[0].cancel()  # ... then a cancel before it runs
        assert len(got) == 1
        st = pool.statistics()
        assert st["idle"] == 1 and st["in_use"] == 0 and st["open"] == 1
        pool.close()

    serving(test)


def test_a_leaked_lease_is_reported_and_frees_its_slot():
    def test(srv):
        pool = Pool(srv.opener, name="line", max_per_key=1)

        def leaker():
            pool.acquire()

        with pytest.raises(ExceptionGroup) as ei:
            with greenrt.region() as r:
                r.spawn(leaker)
        leak = ei.value.exceptions[0]
        assert isinstance(leak, greenrt.ObligationLeak)
        assert leak.obligations[0].kind == "lease" and "leaker" in leak.obligations[0].site
        st = pool.statistics()
        assert st["open"] == 0 and st["discarded"] == 1
        assert st["discard_reasons"] == {"leaked": 1}
        pool.acquire().release()  # the slot is free again
        pool.close()

    serving(test)


def test_a_failed_or_cancelled_open_frees_its_slot():
    def test(srv):
        calls = []

        def opener(key):
            calls.append(key)
            if len(calls) == 1:
                raise ConnectionRefusedError("no")
            if len(calls) == 2:
                greenrt.sleep(10)  # cancelled below
            return srv.opener()

        pool = Pool(opener, name="line", max_per_key=1)
        with pytest.raises(ConnectionRefusedError):
            pool.acquire()
        with greenrt.move_on_after(0.02):
            pool.acquire()
        assert pool.statistics()["open"] == 0
        with pool.acquire() as c:
            assert c.call(b"x") == b"x:1"
        pool.close()

    serving(test)


def test_lifetime_idle_time_and_health_check_replace_connections():
    def test(srv):
        verdicts = [False]
        pool = Pool(srv.opener, name="line", max_lifetime=0.05)
        with pool.acquire() as c:
            c.call(b"a")
        greenrt.sleep(0.06)
        with pool.acquire() as c2:
            assert c2 is not c
        assert pool.statistics()["discard_reasons"] == {"lifetime": 1}
        pool.close()

        pool = Pool(srv.opener, name="line", max_idle_time=0.02)
        with pool.acquire() as c:
            c.call(b"a")
        greenrt.sleep(0.03)
        with pool.acquire() as c2:
            assert c2 is not c
        assert pool.statistics()["discard_reasons"] == {"idle_timeout": 1}
        pool.close()

        pool = Pool(srv.opener, name="line", check=lambda c: verdicts.pop(0),
                    check_interval=0.0)
        with pool.acquire() as c:
            c.call(b"a")
        greenrt.sleep(0.001)
        with pool.acquire() as c2:
            assert c2 is not c
        st = pool.statistics()
        assert st["checks"] == 1 and st["discard_reasons"] == {"health_check": 1}
        pool.close()

    serving(test)


def test_close_wakes_waiters_and_closes_leased_connections_on_release():
    def test(srv):
        pool = Pool(srv.opener, name="line", max_per_key=1)
        held = pool.acquire()
        errors = []

        def waiter():
            try:
                pool.acquire()
            except PoolClosed as e:
                errors.append(str(e))

        with greenrt.region() as r:
            r.spawn(waiter)
            while pool.statistics()["waiting"] == 0:
                greenrt.checkpoint()
            pool.close()
        assert errors == ["line pool closed while waiting"]
        with pytest.raises(PoolClosed):
            pool.acquire()
        held.release()
        assert held.conn.closed and pool.statistics()["open"] == 0

    serving(test)


def test_state_of_unused_keys_is_forgotten():
    def test(srv):
        pool = Pool(srv.opener, name="line", max_idle_per_key=0)
        for i in range(50):
            with pool.acquire(("host", i)) as c:
                c.call(b"x")
        assert pool.statistics()["keys"] == 0  # not 50 entries kept forever
        pool.close()

    serving(test)


def test_the_wait_is_labelled_for_deadlock_reports_and_task_dumps():
    never = greenrt.Event()
    labels = []

    def main():
        pool = Pool(lambda key: never.wait(), name="line", max_per_key=1)
        with greenrt.region() as r:
            r.spawn(pool.acquire)  # takes the only slot; its open waits on the event
            w1 = r.spawn(pool.acquire)  # waits for that slot
            w2 = r.spawn(pool.acquire, "db")
            w3 = r.spawn(pool.acquire, "db")
            while pool.statistics()["waiting"] < 1 or w3.waiting_for is None:
                greenrt.checkpoint()
            labels.extend([w1.waiting_for, w3.waiting_for])
            assert w2.waiting_for == "Event.wait"  # opening the first "db" connection
            r.cancel()

    greenrt.run(main)
    assert labels == ["line pool checkout", "line pool checkout for 'db'"]
