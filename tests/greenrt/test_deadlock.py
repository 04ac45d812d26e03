"""The real hub reports a deadlock instead of hanging (issue 12 §2): when nothing is
runnable and nothing can ever wake a task, every task is cancelled (kind
``resource_unavailable``) and ``greenrt.run`` raises ``Deadlock`` with the wait-for
graph. And it does not fire while a thread, a timer, a socket or a signal can still
wake someone. (Before the fix each positive case below blocked forever.)"""

from __future__ import annotations

import socket
import threading
import time

import pytest

import greenrt
from greenrt import net


def _deadlock_of(main) -> greenrt.Deadlock:
    with pytest.raises(greenrt.Deadlock) as ei:
        greenrt.run(main)
    return ei.value


def test_a_lone_event_wait():
    def main():
        greenrt.Event().wait()

    d = _deadlock_of(main)
    assert d.graph["blocked"] == [{"task": 1, "name": "test_a_lone_event_wait.<locals>.main",
                                   "waits_for": "Event.wait", "held_by": None}]
    assert "waits for Event.wait" in str(d)


def test_an_abba_lock_cycle_names_the_cycle():
    a, b = greenrt.Lock(), greenrt.Lock()
    order = []

    def first():
        with a:
            greenrt.checkpoint()
            greenrt.checkpoint()
            with b:
                order.append("first")  # pragma: no cover

    def second():
        with b:
            greenrt.checkpoint()
            greenrt.checkpoint()
            with a:
                order.append("second")  # pragma: no cover

    def main():
        with greenrt.region() as r:
            r.spawn(first, name="first")
            r.spawn(second, name="second")

    d = _deadlock_of(main)
    by_name = {b["name"]: b for b in d.graph["blocked"]}
    t1, t2 = by_name["first"]["task"], by_name["second"]["task"]
    assert by_name["first"]["held_by"] == t2 and by_name["second"]["held_by"] == t1
    assert set(d.graph["cycle"]) == {t1, t2} and len(d.graph["cycle"]) == 3
    assert order == []


def test_a_channel_receive_with_no_sender_left():
    def main():
        tx, rx = greenrt.channel(1)
        rx.recv()  # the only sender is this task's own, unused handle

    d = _deadlock_of(main)
    assert len(d.graph["blocked"]) == 1


def test_a_condition_wait_with_no_notifier():
    def main():
        cond = greenrt.Condition()
        with cond:
            cond.wait()

    d = _deadlock_of(main)
    assert len(d.graph["blocked"]) == 1


def test_every_task_unwinds_through_its_cleanup():
    cleaned = []

    def waiter(ev):
        try:
            ev.wait()
        finally:
            cleaned.append(greenrt.current_task().name)

    def main():
        ev = greenrt.Event()
        with greenrt.region() as r:
            r.spawn(waiter, ev, name="w1")
            r.spawn(waiter, ev, name="w2")

    _deadlock_of(main)
    assert sorted(cleaned) == ["w1", "w2"]


# -- no false alarms ----------------------------------------------------------------------

def test_not_while_a_thread_can_still_wake_someone():
    def main():
        ev = greenrt.Event()

        def worker():
            greenrt.to_thread(time.sleep, 0.2)
            ev.set()

        with greenrt.region() as r:
            r.spawn(worker)
            ev.wait()
        return "woken"

    assert greenrt.run(main) == "woken"


def test_not_while_a_timer_is_pending():
    def main():
        ev = greenrt.Event()
        greenrt.lowlevel.current_hub().call_later(0.1, ev.set)
        ev.wait()
        return "woken"

    assert greenrt.run(main) == "woken"


def test_not_while_a_socket_read_is_pending():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]

    def peer():
        c, _ = srv.accept()
        time.sleep(0.2)
        c.sendall(b"late")
        c.close()

    th = threading.Thread(target=peer)
    th.start()

    def main():
        s = net.open_tcp("127.0.0.1", port)
        data = s.recv(10)
        s.close()
        return data

    try:
        assert greenrt.run(main) == b"late"
    finally:
        th.join()
        srv.close()


def test_not_while_a_signal_can_still_end_sleep_forever():
    """``sleep_forever()`` waits to be cancelled, and SIGTERM does that: a program
    that runs until a signal is not deadlocked."""
    import os
    import signal

    def main():
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
        greenrt.sleep_forever()

    with pytest.raises(SystemExit) as ei:
        greenrt.run(main)
    assert ei.value.code == 128 + signal.SIGTERM


def test_sleep_forever_without_signal_handling_is_a_deadlock():
    def main():
        greenrt.sleep_forever()

    with pytest.raises(greenrt.Deadlock):
        greenrt.run(main, handle_signals=False)
