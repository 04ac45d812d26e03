"""Channels: two-phase send, close semantics, cancel-safety, broadcast lag, watch,
and a property test (no message lost or duplicated under random cancellations)."""

import functools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import greenrt
from greenrt import (
    BrokenChannelError,
    Cancelled,
    ClosedResourceError,
    EndOfChannel,
    InvalidStateError,
    Lagged,
    ObligationLeak,
    WouldBlock,
    broadcast,
    channel,
    oneshot,
    watch,
)


def settle(pred, limit=10_000):
    for _ in range(limit):
        if pred():
            return
        greenrt.sleep(0)
    raise AssertionError("never settled")


# -- basic mpsc ------------------------------------------------------------------------


def test_send_recv_order_and_iteration_until_closed():
    def main():
        tx, rx = channel(2)

        def producer():
            with tx:
                for i in range(10):
                    tx.send(i)

        with greenrt.region() as r:
            r.spawn(producer)
            got = list(rx)
        with pytest.raises(EndOfChannel):
            rx.recv()
        return got, rx.statistics()

    got, stats = greenrt.run(main)
    assert got == list(range(10))
    assert stats["sent"] == stats["received"] == 10
    assert stats["buffered"] == stats["reserved"] == 0 and stats["senders_open"] == 0


def test_capacity_bound_and_nowait():
    def main():
        tx, rx = channel(2)
        tx.send_nowait("a")
        p = tx.reserve_nowait()
        assert tx.statistics()["reserved"] == 1 and tx.statistics()["buffered"] == 1
        with pytest.raises(WouldBlock):
            tx.send_nowait("c")  # buffered + reserved == capacity
        with pytest.raises(WouldBlock):
            tx.reserve_nowait()
        p.send("b")
        with pytest.raises(InvalidStateError, match="already committed"):
            p.send("again")
        assert [rx.recv_nowait(), rx.recv_nowait()] == ["a", "b"]
        with pytest.raises(WouldBlock):
            rx.recv_nowait()
        for bad in (0, -1, 1.5, True):
            with pytest.raises(ValueError):
                channel(bad)

    greenrt.run(main)


def test_two_phase_permit_abort_returns_capacity_and_blocked_reserver_gets_it():
    order = []

    def main():
        tx, rx = channel(1)
        p = tx.reserve()
        assert isinstance(p.obligation, greenrt.Obligation)
        assert p.obligation.kind == "send_permit"

        def second():
            q = tx.reserve()
            order.append("second reserved")
            q.send("from second")

        with greenrt.region() as r:
            r.spawn(second)
            settle(lambda: tx.statistics()["tasks_waiting_send"] == 1)
            p.abort("changed my mind")
            assert p.state == "aborted"
            p.abort()  # idempotent
            assert rx.recv() == "from second"
        return tx.statistics()

    stats = greenrt.run(main)
    assert order == ["second reserved"]
    assert stats["reserved"] == 0 and stats["permits"] == 2


def test_leaked_permit_is_reported_with_reservation_site():
    ring = greenrt.TraceRing()

    def leaky(tx):
        tx.reserve()  # the reservation site
        return "oops"

    def main():
        tx, rx = channel(1)
        with greenrt.region(policy="collect_all") as r:
            r.spawn(leaky, tx)

    with pytest.raises(ExceptionGroup) as ei:
        greenrt.run(main, instruments=[ring])
    (leak,) = ei.value.exceptions
    assert isinstance(leak, ObligationLeak)
    (ob,) = leak.obligations
    assert ob.kind == "send_permit"
    assert "test_channel.py" in ob.site and "in leaky" in ob.site
    assert "send_permit reserved at" in str(leak) and ob.site in str(leak)
    (ev,) = ring.events("obligation.leak")
    assert ev.data["site"] == ob.site and ev.data["kind"] == "send_permit"


def test_leaked_permit_capacity_goes_back_to_a_waiting_sender():
    def main():
        tx, rx = channel(1)

        def leaky():
            tx.reserve()

        with greenrt.region(leak_policy="abort") as r:
            r.spawn(leaky)
            r.spawn(tx.send, "after the leak")
        return rx.recv_nowait(), tx.statistics()["reserved"]

    assert greenrt.run(main) == ("after the leak", 0)


def test_permit_context_manager_aborts_on_error():
    def main():
        tx, rx = channel(1)
        with pytest.raises(KeyError):
            with tx.reserve() as p:
                raise KeyError("boom")
        assert p.state == "aborted"
        tx.send_nowait("capacity is back")
        return rx.recv_nowait()

    assert greenrt.run(main) == "capacity is back"


# -- cancel-safety ---------------------------------------------------------------------


@pytest.mark.parametrize("order", ["handoff_then_cancel", "cancel_then_handoff"])
def test_reserve_cancel_at_the_moment_capacity_frees(order):
    log = []

    def main():
        tx, rx = channel(1)
        tx.send("first")

        def sender():
            try:
                tx.send("second")
                log.append("sent")
                greenrt.checkpoint()
            except Cancelled:
                log.append("cancelled")
                raise

        with greenrt.region() as r:
            t = r.spawn(sender)
            settle(lambda: tx.statistics()["tasks_waiting_send"] == 1)
            if order == "handoff_then_cancel":
                assert rx.recv_nowait() == "first"  # frees a slot: handed to the sender
                t.cancel()
            else:
                t.cancel()
                assert rx.recv_nowait() == "first"
        rest = []
        while True:
            try:
                rest.append(rx.recv_nowait())
            except WouldBlock:
                break
        return t, rest, tx.statistics()

    t, rest, stats = greenrt.run(main)
    assert t.outcome.is_cancelled
    assert stats["reserved"] == 0 and stats["tasks_waiting_send"] == 0
    if order == "handoff_then_cancel":
        assert log == ["sent", "cancelled"] and rest == ["second"]
    else:
        assert log == ["cancelled"] and rest == []


@pytest.mark.parametrize("order", ["handoff_then_cancel", "cancel_then_handoff"])
def test_recv_cancel_at_the_moment_a_value_arrives(order):
    log = []

    def main():
        tx, rx = channel(4)

        def receiver():
            try:
                v = rx.recv()
                log.append(("got", v))
                greenrt.checkpoint()
            except Cancelled:
                log.append("cancelled")
                raise

        with greenrt.region() as r:
            t = r.spawn(receiver)
            settle(lambda: rx.statistics()["tasks_waiting_recv"] == 1)
            if order == "handoff_then_cancel":
                tx.send_nowait("v")
                t.cancel()
            else:
                t.cancel()
                tx.send_nowait("v")
        left = []
        while True:
            try:
                left.append(rx.recv_nowait())
            except WouldBlock:
                break
        return t, left

    t, left = greenrt.run(main)
    assert t.outcome.is_cancelled
    if order == "handoff_then_cancel":
        assert log == [("got", "v"), "cancelled"] and left == []
    else:
        assert log == ["cancelled"] and left == ["v"]  # the value stayed in the channel


# -- close semantics -------------------------------------------------------------------


def test_all_senders_closed_wakes_every_receiver_with_end_of_channel():
    def main():
        tx, rx = channel(1)
        tx2 = tx.clone()
        errors = []

        def receiver():
            try:
                rx.recv()
            except EndOfChannel as e:
                errors.append(type(e).__name__)

        with greenrt.region() as r:
            for _ in range(3):
                r.spawn(receiver)
            settle(lambda: rx.statistics()["tasks_waiting_recv"] == 3)
            tx.close()
            tx.close()  # idempotent
            greenrt.sleep(0)
            assert rx.statistics()["tasks_waiting_recv"] == 3  # one handle still open
            p = tx2.reserve()
            tx2.close()
            greenrt.sleep(0)
            # An outstanding permit keeps the stream alive: it may still send.
            assert rx.statistics()["tasks_waiting_recv"] == 3
            p.abort()
        with pytest.raises(ClosedResourceError):
            tx.send("x")
        with pytest.raises(ClosedResourceError):
            tx.clone()
        return errors

    assert greenrt.run(main) == ["EndOfChannel"] * 3


def test_permit_outstanding_after_close_still_delivers():
    def main():
        tx, rx = channel(1)
        p = tx.reserve()
        tx.close()
        p.send("last words")
        return list(rx)

    assert greenrt.run(main) == ["last words"]


def test_receiver_close_breaks_senders_and_returns_buffered():
    def main():
        tx, rx = channel(1)
        tx.send("buffered")
        other = tx.clone()
        errors = []

        def blocked_sender(h):
            try:
                h.send("never")
            except BrokenChannelError as e:
                errors.append(str(e))

        def blocked_receiver():
            try:
                rx.recv()
            except ClosedResourceError as e:
                errors.append(type(e).__name__)

        with greenrt.region() as r:
            r.spawn(blocked_sender, tx)
            r.spawn(blocked_sender, other)
            settle(lambda: tx.statistics()["tasks_waiting_send"] == 2)
            left = rx.close()
        assert left == ["buffered"]
        assert rx.close() == []
        with pytest.raises(BrokenChannelError):
            tx.send("after close")
        with pytest.raises(ClosedResourceError):
            rx.recv()
        return errors, left, tx.statistics()

    errors, left, stats = greenrt.run(main)
    assert errors == ["the receiver was closed"] * 2
    assert stats["dropped"] == 1 and stats["receiver_closed"]


def test_receiver_close_wakes_receivers_and_breaks_permits():
    def main():
        tx, rx = channel(2)
        p = tx.reserve()
        errors = []

        def blocked_receiver():
            try:
                rx.recv()
            except ClosedResourceError:
                errors.append("closed")

        with greenrt.region() as r:
            r.spawn(blocked_receiver)
            settle(lambda: rx.statistics()["tasks_waiting_recv"] == 1)
            rx.close()
        with pytest.raises(BrokenChannelError):
            p.send("too late")
        assert p.state == "aborted"
        return errors, tx.statistics()["reserved"]

    assert greenrt.run(main) == (["closed"], 0)


def test_sender_close_wakes_only_its_own_waiters():
    def main():
        tx, rx = channel(1)
        tx.send("fill")
        tx2 = tx.clone()
        out = []

        def s(h, name):
            try:
                h.send(name)
                out.append(("sent", name))
            except ClosedResourceError:
                out.append(("closed", name))

        with greenrt.region() as r:
            r.spawn(s, tx, "a")
            r.spawn(s, tx2, "b")
            settle(lambda: tx.statistics()["tasks_waiting_send"] == 2)
            tx.close()
            settle(lambda: tx.statistics()["tasks_waiting_send"] == 1)
            assert rx.recv() == "fill"
            assert rx.recv() == "b"
        return out

    assert greenrt.run(main) == [("closed", "a"), ("sent", "b")]


def test_receiver_closed_after_slot_handed_to_sender_is_not_a_silent_loss():
    def main():
        tx, rx = channel(1)
        tx.send("fill")
        out = []

        def s():
            try:
                tx.send("handed")
                out.append("sent")
            except BrokenChannelError:
                out.append("broken")

        with greenrt.region() as r:
            r.spawn(s)
            settle(lambda: tx.statistics()["tasks_waiting_send"] == 1)
            rx.recv_nowait()     # slot handed to s ...
            left = rx.close()    # ... receiver closes before s runs
        return out, left, tx.statistics()["reserved"]

    assert greenrt.run(main) == (["broken"], [], 0)


# -- property: no loss, no duplicates, random cancellations ----------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    capacity=st.integers(1, 4),
    plans=st.lists(
        st.tuples(st.integers(1, 8), st.booleans(), st.one_of(st.none(), st.integers(0, 12))),
        min_size=1, max_size=6),
    recv_pauses=st.lists(st.integers(0, 3), min_size=1, max_size=8),
)
def test_property_no_message_lost_or_duplicated(capacity, plans, recv_pauses):
    """Senders send unique messages (one-shot or two-phase), some are cancelled at a
    random step. Every message whose send returned is received exactly once, and
    nothing else is received."""
    confirmed: list = []
    received: list = []

    def sender(tx, sid, count, two_phase):
        with tx:
            for i in range(count):
                msg = (sid, i)
                if two_phase:
                    p = tx.reserve()
                    p.send(msg)
                else:
                    tx.send(msg)
                confirmed.append(msg)

    def receiver(rx):
        k = 0
        for v in rx:
            received.append(v)
            for _ in range(recv_pauses[k % len(recv_pauses)]):
                greenrt.sleep(0)
            k += 1

    def main():
        tx, rx = channel(capacity)
        with greenrt.region() as outer:
            outer.spawn(receiver, rx)
            with greenrt.region() as r:
                tasks = []
                for sid, (count, two_phase, _) in enumerate(plans):
                    tasks.append(r.spawn(sender, tx.clone(), sid, count, two_phase))
                tx.close()
                cancels = sorted((at, i) for i, (_, _, at) in enumerate(plans) if at is not None)
                step = 0
                for at, i in cancels:
                    while step < at:
                        greenrt.sleep(0)
                        step += 1
                    tasks[i].cancel()
        return rx.statistics()

    stats = greenrt.run(main)
    assert sorted(received) == sorted(confirmed)
    assert len(set(received)) == len(received)
    assert stats["reserved"] == 0 and stats["buffered"] == 0
    # Per sender, order is preserved.
    for sid in range(len(plans)):
        mine = [i for s, i in received if s == sid]
        assert mine == sorted(mine)


# -- oneshot ---------------------------------------------------------------------------


def test_oneshot():
    def main():
        tx, rx = oneshot()
        with greenrt.region() as r:
            t = r.spawn(rx.recv)
            settle(lambda: rx.statistics()["tasks_waiting"] == 1)
            tx.send(42)
        with pytest.raises(InvalidStateError):
            tx.send(43)
        with pytest.raises(EndOfChannel, match="already received"):
            rx.recv_nowait()

        tx2, rx2 = oneshot()
        with pytest.raises(WouldBlock):
            rx2.recv_nowait()
        tx2.send("kept")
        assert rx2.recv() == "kept"

        tx3, rx3 = oneshot()
        with greenrt.region() as r:
            t3 = r.spawn(lambda: pytest.raises(EndOfChannel, rx3.recv))
            settle(lambda: rx3.statistics()["tasks_waiting"] == 1)
            tx3.close()

        tx4, rx4 = oneshot()
        rx4.close()
        with pytest.raises(BrokenChannelError):
            tx4.send(1)
        return t.outcome.value, t3.outcome.is_ok

    assert greenrt.run(main) == (42, True)


def test_oneshot_cancelled_recv_loses_nothing():
    def main():
        tx, rx = oneshot()
        with greenrt.region() as r:
            t = r.spawn(rx.recv)
            settle(lambda: rx.statistics()["tasks_waiting"] == 1)
            t.cancel()
            settle(lambda: t.done)
            tx.send("still here")
        return rx.recv(), t.outcome.is_cancelled

    assert greenrt.run(main) == ("still here", True)


# -- broadcast -------------------------------------------------------------------------


def test_broadcast_every_receiver_sees_every_message():
    def main():
        tx, rx1 = broadcast(8)
        rx2 = tx.subscribe()
        out = {1: [], 2: []}

        def consume(rx, k):
            for v in rx:
                out[k].append(v)

        with greenrt.region() as r:
            r.spawn(consume, rx1, 1)
            r.spawn(consume, rx2, 2)
            for i in range(20):
                assert tx.send(i) == 2
                greenrt.sleep(0)
            tx.close()
        return out

    out = greenrt.run(main)
    assert out[1] == out[2] == list(range(20))


def test_broadcast_slow_receiver_gets_lagged_with_count():
    def main():
        tx, rx = broadcast(3)
        fast = tx.subscribe()
        for i in range(10):
            tx.send(i)
            assert fast.recv_nowait() == i
        with pytest.raises(Lagged) as ei:
            rx.recv()
        assert ei.value.missed == 7 and ei.value.capacity == 3
        assert "missed 7 message(s)" in str(ei.value)
        got = [rx.recv(), rx.recv(), rx.recv()]
        with pytest.raises(WouldBlock):
            rx.recv_nowait()
        return got, rx.statistics()

    got, stats = greenrt.run(main)
    assert got == [7, 8, 9]
    assert stats["lag_errors"] == 1 and stats["retained"] == 3


def test_broadcast_cancelled_recv_keeps_cursor_and_close():
    def main():
        tx, rx = broadcast(4)
        with greenrt.region() as r:
            t = r.spawn(rx.recv)
            settle(lambda: rx.statistics()["tasks_waiting"] == 1)
            t.cancel()
            settle(lambda: t.done)
            tx.send("m")
        assert rx.recv() == "m"
        clone = rx.clone()
        tx.close()
        with pytest.raises(EndOfChannel):
            rx.recv()
        rx.close()
        with pytest.raises(ClosedResourceError):
            rx.recv()
        with pytest.raises(ClosedResourceError):
            tx.send(1)
        return list(clone), t.outcome.is_cancelled

    assert greenrt.run(main) == ([], True)


# -- watch -----------------------------------------------------------------------------


def test_watch_latest_value_and_changes():
    def main():
        tx, rx = watch("v0")
        assert rx.get() == "v0" and not rx.has_changed()
        seen = []

        def observer(r):
            for v in r:
                seen.append(v)

        with greenrt.region() as reg:
            reg.spawn(observer, rx.clone())
            settle(lambda: tx.statistics()["tasks_waiting"] == 1)
            tx.send("v1")
            greenrt.sleep(0)
            tx.send("v2")
            tx.send("v3")  # coalesced with v2: observers see the latest
            greenrt.sleep(0)
            tx.close()
        assert rx.changed() == "v3"
        with pytest.raises(EndOfChannel):
            rx.changed()
        return seen

    assert greenrt.run(main) == ["v1", "v3"]


def test_watch_cancelled_wait_marks_nothing_seen():
    def main():
        tx, rx = watch(0)
        with greenrt.region() as r:
            t = r.spawn(rx.changed)
            settle(lambda: tx.statistics()["tasks_waiting"] == 1)
            t.cancel()
            settle(lambda: t.done)
            tx.send(1)
        return rx.has_changed(), rx.changed()

    assert greenrt.run(main) == (True, 1)


def test_statistics_everywhere():
    def main():
        parts = [channel(1), oneshot(), broadcast(1), watch(None)]
        for a, b in parts:
            for h in (a, b):
                assert isinstance(h.statistics(), dict)

    greenrt.run(main)


def test_partial_used_in_spawn():  # keyword-free spawning helper stays usable
    def main():
        tx, rx = channel(1)
        with greenrt.region() as r:
            r.spawn(functools.partial(tx.send, "p"))
        return rx.recv()

    assert greenrt.run(main) == "p"


@pytest.mark.parametrize("kind", ["oneshot", "broadcast", "watch"])
def test_value_and_cancel_in_the_same_step_is_not_lost(kind):
    log = []

    def main():
        if kind == "oneshot":
            tx, rx = oneshot()
            get = rx.recv
        elif kind == "broadcast":
            tx, rx = broadcast(4)
            get = rx.recv
        else:
            tx, rx = watch(None)
            get = rx.changed

        def waiter():
            try:
                log.append(("got", get()))
                greenrt.checkpoint()
            except Cancelled:
                log.append("cancelled")
                raise

        with greenrt.region() as r:
            t = r.spawn(waiter)
            settle(lambda: t.waiting_for is not None)
            tx.send("v")
            t.cancel()
        return t

    t = greenrt.run(main)
    assert t.outcome.is_cancelled
    assert log == [("got", "v"), "cancelled"]
