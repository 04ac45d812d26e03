"""Sync primitives: fairness, ownership, obligations and cancel-safety of every wait.

"The exact moment" cases are produced deterministically: the releasing task hands the
resource over and cancels the waiter in one step (no checkpoint in between), or
cancels first and releases after.
"""

import pytest

import greenrt
from greenrt import (
    Barrier,
    Cancelled,
    CapacityLimiter,
    Condition,
    Event,
    InvalidStateError,
    Lock,
    ObligationLeak,
    RWLock,
    Semaphore,
    WouldBlock,
)
from greenrt.sync import COOP_BUDGET, BrokenBarrierError


def settle(pred, limit=10_000):
    """Run other tasks until ``pred()`` holds (bounded: a hang guard)."""
    for _ in range(limit):
        if pred():
            return
        greenrt.sleep(0)
    raise AssertionError("never settled")


def run(fn, **kw):
    return greenrt.run(fn, **kw)


# -- Lock ------------------------------------------------------------------------------


def test_lock_is_fifo_fair():
    order = []

    def worker(lock, i):
        with lock:
            order.append(i)
            greenrt.sleep(0)

    def main():
        lock = Lock()
        with greenrt.region() as r:
            lock.acquire()
            for i in range(6):
                r.spawn(worker, lock, i)
            settle(lambda: lock.statistics()["tasks_waiting"] == 6)
            lock.release()
        return lock.statistics()

    stats = run(main)
    assert order == list(range(6))
    assert stats == {"locked": False, "owner": None, "tasks_waiting": 0, "acquisitions": 7}


def test_lock_no_barging():
    # A task arriving while others wait queues behind them even though the lock is
    # momentarily between owners.
    order = []

    def main():
        lock = Lock()

        def w(name):
            with lock:
                order.append(name)

        with greenrt.region() as r:
            lock.acquire()
            r.spawn(w, "queued")
            settle(lambda: lock.statistics()["tasks_waiting"] == 1)
            lock.release()
            assert lock.owner is not None and lock.owner is not greenrt.current_task()
            with pytest.raises(WouldBlock):
                lock.acquire_nowait()
            lock.acquire()
            order.append("main")
            lock.release()

    run(main)
    assert order == ["queued", "main"]


def test_lock_owner_tracking_and_errors():
    def main():
        lock = Lock()
        with greenrt.region() as r:
            lock.acquire()
            assert lock.owner is greenrt.current_task()
            with pytest.raises(InvalidStateError, match="not reentrant"):
                lock.acquire()

            def intruder():
                with pytest.raises(InvalidStateError, match=r"released by task \d+ .* held by task"):
                    lock.release()
                return "refused"

            t = r.spawn(intruder)
        assert t.outcome.value == "refused"
        assert lock.locked()
        lock.release()
        with pytest.raises(InvalidStateError, match="held by nobody"):
            lock.release()
        lock.acquire_nowait()
        assert lock.locked()
        lock.release()

    run(main)


def test_lock_cancelled_waiter_loses_nothing():
    got = []

    def main():
        lock = Lock()

        def w(name):
            with lock:
                got.append(name)

        with greenrt.region() as r:
            lock.acquire()
            a = r.spawn(w, "a")
            b = r.spawn(w, "b")
            settle(lambda: lock.statistics()["tasks_waiting"] == 2)
            a.cancel()
            settle(lambda: a.done)
            assert lock.statistics()["tasks_waiting"] == 1
            assert lock.owner is greenrt.current_task()
            lock.release()
        assert not lock.locked()
        return a, b

    a, b = run(main)
    assert a.outcome.is_cancelled and b.outcome.is_ok
    assert got == ["b"]


@pytest.mark.parametrize("order", ["release_then_cancel", "cancel_then_release"])
def test_lock_cancel_at_the_moment_of_hand_off(order):
    log = []

    def main():
        lock = Lock()

        def w():
            try:
                with lock:
                    log.append("acquired")
                    greenrt.checkpoint()
                    log.append("not reached")
            except Cancelled:
                log.append(("cancelled", lock.owner is greenrt.current_task()))
                raise

        def third():
            with lock:
                log.append("third")

        with greenrt.region() as r:
            lock.acquire()
            t = r.spawn(w)
            settle(lambda: lock.statistics()["tasks_waiting"] == 1)
            r.spawn(third)
            settle(lambda: lock.statistics()["tasks_waiting"] == 2)
            if order == "release_then_cancel":
                lock.release()          # hands the lock to w ...
                t.cancel()              # ... and cancels it in the same step
            else:
                t.cancel()
                lock.release()
        assert not lock.locked()
        return t

    t = run(main)
    assert t.outcome.is_cancelled
    if order == "release_then_cancel":
        # The hand-off was kept: w owned the lock, unwound, released it.
        assert log == ["acquired", ("cancelled", False), "third"]
    else:
        # The abort came first: w never got the lock.
        assert log == [("cancelled", False), "third"]


def test_lock_fast_path_is_a_checkpoint_and_yields_periodically():
    ticks = []

    def main():
        lock = Lock()
        with greenrt.region() as r:
            r.spawn(lambda: ticks.append(1))
            for _ in range(COOP_BUDGET * 2):
                lock.acquire()
                lock.release()
            assert ticks == [1]  # the other task ran while main only used the fast path
            greenrt.current_task().cancel()
            with pytest.raises(Cancelled):
                lock.acquire()
            assert not lock.locked()
        return "ok"

    assert run(main) == "ok"


# -- Semaphore -------------------------------------------------------------------------


def test_semaphore_permits_are_obligations_and_fifo():
    ring = greenrt.TraceRing()
    order = []

    def main():
        sem = Semaphore(2, name="pool")

        def w(i):
            with sem:
                order.append(i)
                greenrt.sleep(0)

        with greenrt.region() as r:
            p1 = sem.acquire()
            p2 = sem.acquire()
            assert isinstance(p1, greenrt.Obligation) and p1.kind == "semaphore_permit"
            assert sem.statistics() == {"value": 0, "max_value": None, "held": 2, "tasks_waiting": 0}
            for i in range(5):
                r.spawn(w, i)
            settle(lambda: sem.statistics()["tasks_waiting"] == 5)
            sem.release()
            p2.commit()  # committing the obligation releases too
        return sem.statistics(), p1.state, p2.state

    stats, s1, s2 = run(main, instruments=[ring])
    assert order == [0, 1, 2, 3, 4]
    assert stats == {"value": 2, "max_value": None, "held": 0, "tasks_waiting": 0}
    assert (s1, s2) == ("committed", "committed")
    kinds = {e.data["kind"] for e in ring.events("obligation.reserve")}
    assert kinds == {"semaphore_permit"}


def test_semaphore_leak_is_reported_with_site_and_permit_returned():
    ring = greenrt.TraceRing()

    def leaker(sem):
        sem.acquire()  # LEAK-SITE
        return "forgot to release"

    def main():
        sem = Semaphore(1)
        with greenrt.region(policy="collect_all") as r:
            r.spawn(leaker, sem)
        # unreachable: the region raises
        return sem

    with pytest.raises(ExceptionGroup) as ei:
        run(main, instruments=[ring])
    (leak,) = ei.value.exceptions
    assert isinstance(leak, ObligationLeak)
    (ob,) = leak.obligations
    assert ob.kind == "semaphore_permit"
    assert "test_sync.py" in ob.site and "in leaker" in ob.site
    leaks = ring.events("obligation.leak")
    assert len(leaks) == 1 and leaks[0].data["site"] == ob.site


def test_semaphore_leak_returns_the_permit_to_a_waiter():
    got = []

    def main():
        sem = Semaphore(1)

        def leaker():
            sem.acquire()

        def waiter():
            with sem:
                got.append("waiter")

        with greenrt.region(leak_policy="abort") as r:
            r.spawn(leaker)
            r.spawn(waiter)
        return sem.statistics()

    stats = run(main)
    assert got == ["waiter"]
    assert stats["value"] == 1 and stats["held"] == 0


def test_semaphore_site_of_with_statement():
    def main():
        sem = Semaphore(1)
        with sem as permit:  # the with line is the reservation site
            site = permit.site
        return site

    site = run(main)
    assert "test_sync.py" in site and "in main" in site


@pytest.mark.parametrize("order", ["release_then_cancel", "cancel_then_release"])
def test_semaphore_cancel_at_the_moment_of_hand_off(order):
    log = []

    def main():
        sem = Semaphore(1)

        def w():
            try:
                with sem:
                    log.append("acquired")
                    greenrt.checkpoint()
            except Cancelled:
                log.append("cancelled")
                raise

        with greenrt.region() as r:
            sem.acquire()
            t = r.spawn(w)
            settle(lambda: sem.statistics()["tasks_waiting"] == 1)
            if order == "release_then_cancel":
                sem.release()
                t.cancel()
            else:
                t.cancel()
                sem.release()
        return t, sem.statistics()

    t, stats = run(main)
    assert t.outcome.is_cancelled
    assert stats == {"value": 1, "max_value": None, "held": 0, "tasks_waiting": 0}
    assert log == (["acquired", "cancelled"] if order == "release_then_cancel" else ["cancelled"])


def test_semaphore_cancel_while_holding_handed_permit_without_with_is_a_leak_not_a_loss():
    def main():
        sem = Semaphore(1)

        def w():
            sem.acquire()          # handed over at the moment of cancellation ...
            greenrt.checkpoint()   # ... Cancelled here, permit still held

        with greenrt.region(leak_policy="abort") as r:
            sem.acquire()
            t = r.spawn(w)
            settle(lambda: sem.statistics()["tasks_waiting"] == 1)
            sem.release()
            t.cancel()
        return t, sem.statistics()

    t, stats = run(main)
    assert t.outcome.is_cancelled
    assert stats["value"] == 1 and stats["held"] == 0


def test_semaphore_nowait_post_and_max_value():
    def main():
        sem = Semaphore(0, max_value=1)
        with pytest.raises(WouldBlock):
            sem.acquire_nowait()
        sem.release()  # a post: no permit outstanding
        p = sem.acquire_nowait()
        assert "test_sync.py" in p.site
        sem.release()
        with pytest.raises(InvalidStateError, match="max_value"):
            sem.release()
        with pytest.raises(ValueError):
            Semaphore(-1)

        # Releasing from another task resolves the oldest outstanding permit.
        held = sem.acquire()
        with greenrt.region() as r:
            r.spawn(sem.release)
        assert held.state == "committed" and sem.value == 1

    run(main)


# -- Event -----------------------------------------------------------------------------


def test_event_wakes_all_and_cancelled_waiter_leaves():
    woke = []

    def main():
        ev = Event()

        def w(i):
            ev.wait()
            woke.append(i)

        with greenrt.region() as r:
            ts = [r.spawn(w, i) for i in range(4)]
            settle(lambda: ev.statistics()["tasks_waiting"] == 4)
            ts[1].cancel()
            settle(lambda: ev.statistics()["tasks_waiting"] == 3)
            ev.set()
            ev.set()
        assert ev.is_set()
        ev.wait()  # already set: still a checkpoint, returns at once
        return ts

    ts = run(main)
    assert sorted(woke) == [0, 2, 3]
    assert ts[1].outcome.is_cancelled


# -- Condition -------------------------------------------------------------------------


def test_condition_notify_order_and_lock_reacquired():
    log = []

    def main():
        cond = Condition()

        def w(i):
            with cond:
                cond.wait()
                assert cond.lock.owner is greenrt.current_task()
                log.append(i)

        with greenrt.region() as r:
            for i in range(3):
                r.spawn(w, i)
            settle(lambda: cond.statistics()["tasks_waiting"] == 3)
            with cond:
                assert cond.notify() == 1
            settle(lambda: log == [0])
            with cond:
                assert cond.notify_all() == 2
            with pytest.raises(InvalidStateError, match="requires holding the lock"):
                cond.notify()
        return cond.statistics()

    stats = run(main)
    assert log == [0, 1, 2]
    assert stats["notified"] == 3 and stats["lock"]["locked"] is False


def test_condition_cancelled_waiter_consumes_no_notification_and_holds_lock():
    log = []

    def main():
        cond = Condition()

        def w(name):
            with cond:
                try:
                    cond.wait()
                except Cancelled:
                    log.append((name, "cancelled, holds lock", cond.lock.owner is greenrt.current_task()))
                    raise
                log.append((name, "notified"))

        with greenrt.region() as r:
            a = r.spawn(w, "a")
            r.spawn(w, "b")
            settle(lambda: cond.statistics()["tasks_waiting"] == 2)
            with cond:
                a.cancel()        # a leaves the queue ...
                cond.notify()     # ... so the one notification goes to b
        return cond.lock.locked()

    assert run(main) is False
    assert log == [("a", "cancelled, holds lock", True), ("b", "notified")]


def test_condition_notify_and_cancel_at_same_moment():
    log = []

    def main():
        cond = Condition()

        def w():
            with cond:
                cond.wait()
                log.append("returned normally")
                greenrt.checkpoint()

        with greenrt.region() as r:
            t = r.spawn(w)
            settle(lambda: cond.statistics()["tasks_waiting"] == 1)
            with cond:
                cond.notify()
                t.cancel()
        return t, cond.lock.locked()

    t, locked = run(main)
    assert log == ["returned normally"] and t.outcome.is_cancelled and not locked


def test_condition_wait_for():
    def main():
        cond = Condition()
        box = []

        def producer():
            for i in range(3):
                with cond:
                    box.append(i)
                    cond.notify_all()
                greenrt.sleep(0)

        with greenrt.region() as r:
            r.spawn(producer)
            with cond:
                got = cond.wait_for(lambda: len(box) >= 3 and list(box))
        return got

    assert run(main) == [0, 1, 2]


# -- CapacityLimiter -------------------------------------------------------------------


def test_capacity_limiter_bound_borrowers_and_resize():
    active, peak = [0], [0]

    def main():
        lim = CapacityLimiter(2)

        def w():
            with lim:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
                greenrt.sleep(0)
                greenrt.sleep(0)
                active[0] -= 1

        with greenrt.region() as r:
            for _ in range(6):
                r.spawn(w)
        assert peak[0] == 2

        lim.acquire()
        with pytest.raises(InvalidStateError, match="already holds"):
            lim.acquire()
        lim.acquire_on_behalf_of("job-1")
        with pytest.raises(WouldBlock):
            lim.acquire_on_behalf_of_nowait("job-2")
        with greenrt.region() as r:
            t = r.spawn(lim.acquire_on_behalf_of, "job-3")
            settle(lambda: lim.statistics()["tasks_waiting"] == 1)
            lim.total_tokens = 3  # a raise admits the waiter at once
        assert t.outcome.is_ok and lim.borrowed_tokens == 3
        with pytest.raises(InvalidStateError, match="does not hold"):
            lim.release_on_behalf_of("nobody")
        for b in ("job-1", "job-3"):
            lim.release_on_behalf_of(b)
        lim.release()
        with pytest.raises(ValueError):
            lim.total_tokens = 0
        return lim.statistics()

    stats = run(main)
    assert stats["borrowed_tokens"] == 0 and stats["total_tokens"] == 3


@pytest.mark.parametrize("order", ["release_then_cancel", "cancel_then_release"])
def test_capacity_limiter_cancel_at_hand_off(order):
    def main():
        lim = CapacityLimiter(1)

        def w():
            with lim:
                greenrt.checkpoint()

        with greenrt.region() as r:
            lim.acquire()
            t = r.spawn(w)
            settle(lambda: lim.statistics()["tasks_waiting"] == 1)
            if order == "release_then_cancel":
                lim.release()
                assert lim.statistics()["borrowers"] == [t]
                t.cancel()
            else:
                t.cancel()
                lim.release()
        return t, lim.statistics()

    t, stats = run(main)
    assert t.outcome.is_cancelled
    assert stats["borrowed_tokens"] == 0 and stats["tasks_waiting"] == 0


# -- Barrier ---------------------------------------------------------------------------


def test_barrier_indices_cyclic_and_cancel_withdraws():
    results = []

    def main():
        b = Barrier(3)

        def w(name):
            results.append((name, b.wait()))

        with greenrt.region() as r:
            r.spawn(w, "a")
            c = r.spawn(w, "cancelled")
            settle(lambda: b.n_waiting == 2)
            c.cancel()
            settle(lambda: b.n_waiting == 1)  # withdrew: it did not count as arrived
            r.spawn(w, "b")
            settle(lambda: b.n_waiting == 2)
            results.append(("main", b.wait()))
        # Cyclic: usable again.
        with greenrt.region() as r:
            for i in range(3):
                r.spawn(w, i)
        return b.statistics()

    stats = run(main)
    assert sorted(results[:3]) == [("a", 0), ("b", 1), ("main", 2)]
    assert sorted(i for _, i in results[3:]) == [0, 1, 2]
    assert stats == {"parties": 3, "tasks_waiting": 0, "broken": False, "generation": 2}


def test_barrier_abort_breaks_waiters():
    def main():
        b = Barrier(2)
        with greenrt.region(policy="collect_all") as r:
            t = r.spawn(b.wait)
            settle(lambda: b.n_waiting == 1)
            b.abort()
        return t, b

    with pytest.raises(ExceptionGroup) as ei:
        run(main)
    assert isinstance(ei.value.exceptions[0], BrokenBarrierError)

    def main2():
        b = Barrier(1)
        b.abort()
        with pytest.raises(BrokenBarrierError):
            b.wait()
        b.reset()
        return b.wait()

    assert run(main2) == 0


# -- RWLock ----------------------------------------------------------------------------


def test_rwlock_readers_share_writer_excludes_and_is_fair():
    log = []

    def main():
        rw = RWLock()

        def reader(i):
            with rw.read():
                log.append(("r+", i))
                greenrt.sleep(0)
                log.append(("r-", i))

        def writer(i):
            with rw.write():
                log.append(("w+", i))
                greenrt.sleep(0)
                log.append(("w-", i))

        with greenrt.region() as r:
            rw.acquire_read()
            r.spawn(reader, 1)               # joins the current readers
            settle(lambda: rw.statistics()["readers"] == 2)
            r.spawn(writer, 1)               # waits for the readers
            settle(lambda: rw.statistics()["writers_waiting"] == 1)
            r.spawn(reader, 2)               # queues behind the writer (no starvation)
            settle(lambda: rw.statistics()["readers_waiting"] == 1)
            def try_read():
                with pytest.raises(WouldBlock):
                    rw.acquire_read_nowait()

            r.spawn(try_read).join()
            rw.release_read()
        return rw.statistics()

    stats = run(main)
    assert stats == {"readers": 0, "writer": None, "tasks_waiting": 0, "readers_waiting": 0,
                     "writers_waiting": 0}
    w_in, w_out = log.index(("w+", 1)), log.index(("w-", 1))
    assert log.index(("r-", 1)) < w_in and w_out == w_in + 1 and log.index(("r+", 2)) > w_out


def test_rwlock_cancelled_writer_unblocks_readers_behind_it():
    log = []

    def main():
        rw = RWLock()

        def writer():
            with rw.write():
                log.append("writer")

        def reader():
            with rw.read():
                log.append("reader")

        with greenrt.region() as r:
            rw.acquire_read()
            w = r.spawn(writer)
            settle(lambda: rw.statistics()["writers_waiting"] == 1)
            r.spawn(reader)
            settle(lambda: rw.statistics()["readers_waiting"] == 1)
            w.cancel()
            settle(lambda: log == ["reader"])  # admitted while main still reads
            assert rw.statistics()["readers"] == 1
            rw.release_read()
            with pytest.raises(InvalidStateError, match="does not hold a read lock"):
                rw.release_read()
            with pytest.raises(InvalidStateError, match="write-released"):
                rw.release_write()
        return w

    w = run(main)
    assert w.outcome.is_cancelled and log == ["reader"]


@pytest.mark.parametrize("order", ["release_then_cancel", "cancel_then_release"])
def test_rwlock_cancel_at_hand_off(order):
    def main():
        rw = RWLock()

        def writer():
            with rw.write():
                greenrt.checkpoint()

        with greenrt.region() as r:
            rw.acquire_read()
            t = r.spawn(writer)
            settle(lambda: rw.statistics()["writers_waiting"] == 1)
            if order == "release_then_cancel":
                rw.release_read()
                assert rw.statistics()["writer"] == t.id
                t.cancel()
            else:
                t.cancel()
                rw.release_read()
        rw.acquire_write_nowait()
        rw.release_write()
        return t, rw.statistics()

    t, stats = run(main)
    assert t.outcome.is_cancelled and stats["writer"] is None and stats["readers"] == 0


def test_blocked_tasks_say_what_they_wait_for():
    def main():
        lock, sem, cond, ev = Lock(), Semaphore(0), Condition(), Event()
        tx, rx = greenrt.channel(1)
        tx.send_nowait("fill")

        def in_cond():
            with cond:
                cond.wait()

        with greenrt.region() as r:
            lock.acquire()
            ts = [r.spawn(lock.acquire), r.spawn(sem.acquire), r.spawn(in_cond),
                  r.spawn(ev.wait), r.spawn(tx.send, "x"), r.spawn(greenrt.channel(1)[1].recv)]
            settle(lambda: all(t.waiting_for is not None for t in ts))
            what = [t.waiting_for for t in ts]
            r.cancel()
        lock.release()
        return what

    assert greenrt.run(main) == ["Lock.acquire", "Semaphore.acquire", "Condition.wait",
                                 "Event.wait", "channel Sender.reserve",
                                 "channel Receiver.recv"]


@pytest.mark.parametrize("prim", ["event", "barrier"])
def test_wake_and_cancel_in_the_same_step_returns_normally(prim):
    """The waiter was released (hand-off done) and cancelled in one step: its wait
    returns normally and the cancellation comes at its next checkpoint."""
    log = []

    def main():
        ev, bar = Event(), Barrier(2)

        def waiter():
            try:
                log.append(("returned", ev.wait() if prim == "event" else bar.wait()))
                greenrt.checkpoint()
            except Cancelled:
                log.append("cancelled")
                raise

        with greenrt.region() as r:
            t = r.spawn(waiter)
            settle(lambda: t.waiting_for is not None)
            if prim == "event":
                ev.set()
                t.cancel()
            else:
                # The last arrival trips the barrier (handing index 0 to the waiter) and
                # yields; main runs before the waiter does and cancels it.
                r.spawn(bar.wait)
                greenrt.sleep(0)
                assert bar.statistics()["generation"] == 1 and not t.done
                t.cancel()
        return t

    t = greenrt.run(main)
    assert t.outcome.is_cancelled
    assert log == [("returned", None if prim == "event" else 0), "cancelled"]
