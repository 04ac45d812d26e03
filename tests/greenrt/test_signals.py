"""greenrt.open_signal_receiver: real signals sent to this process with os.kill."""

from __future__ import annotations

import os
import signal
import threading

import pytest

import greenrt


def test_receives_signals_in_order_and_restores_the_handler():
    before = signal.getsignal(signal.SIGUSR1)

    def main():
        with greenrt.open_signal_receiver(signal.SIGUSR1, signal.SIGUSR2) as sigs:
            os.kill(os.getpid(), signal.SIGUSR1)
            os.kill(os.getpid(), signal.SIGUSR2)
            got = [next(sigs), next(sigs)]
            assert sigs.pending() == 0
            return got

    assert greenrt.run(main) == [signal.SIGUSR1, signal.SIGUSR2]
    assert signal.getsignal(signal.SIGUSR1) is before


def test_a_task_waiting_for_a_signal_is_not_a_deadlock_and_others_run():
    order = []

    def main():
        with greenrt.open_signal_receiver(signal.SIGUSR1) as sigs:
            def sender():
                order.append("send")
                os.kill(os.getpid(), signal.SIGUSR1)

            with greenrt.region() as r:
                r.spawn(sender)
                order.append(("got", sigs.receive()))

    greenrt.run(main)
    assert order == ["send", ("got", signal.SIGUSR1)]


def test_signal_from_another_thread_wakes_the_receiver():
    def main():
        with greenrt.open_signal_receiver(signal.SIGUSR1) as sigs:
            t = threading.Timer(0.01, os.kill, (os.getpid(), signal.SIGUSR1))
            t.start()
            s = sigs.receive()  # nothing else can wake the hub: the signal must
            t.join()
            return s

    assert greenrt.run(main) == signal.SIGUSR1


def test_receive_is_cancellable_and_loses_nothing():
    def main():
        with greenrt.open_signal_receiver(signal.SIGUSR1) as sigs:
            with greenrt.move_on_after(0.01) as s:
                sigs.receive()
            assert s.cancelled_caught
            os.kill(os.getpid(), signal.SIGUSR1)
            greenrt.sleep(0)
            with greenrt.cancel_scope() as c:
                c.cancel()
                sigs.receive()  # cancelled at the checkpoint, before taking it
            assert sigs.receive() == signal.SIGUSR1

    greenrt.run(main)


def test_sigint_goes_to_an_open_receiver_and_shuts_down_after_it_closes():
    def main():
        with greenrt.open_signal_receiver(signal.SIGINT) as sigs:
            os.kill(os.getpid(), signal.SIGINT)
            assert sigs.receive() == signal.SIGINT  # no shutdown while caught
        # closed: SIGINT is run's shutdown again
        os.kill(os.getpid(), signal.SIGINT)
        greenrt.sleep_forever()

    with pytest.raises(KeyboardInterrupt):
        greenrt.run(main)


def test_nested_receivers_innermost_wins_and_others_pass_through():
    def main():
        with greenrt.open_signal_receiver(signal.SIGUSR1, signal.SIGUSR2) as outer:
            with greenrt.open_signal_receiver(signal.SIGUSR1) as inner:
                os.kill(os.getpid(), signal.SIGUSR1)
                os.kill(os.getpid(), signal.SIGUSR2)
                assert inner.receive() == signal.SIGUSR1
                assert outer.receive() == signal.SIGUSR2
                assert inner.pending() == 0 and outer.pending() == 0

    greenrt.run(main)


def test_outside_the_main_thread_is_refused():
    def in_thread(out):
        def main():
            with greenrt.open_signal_receiver(signal.SIGUSR1):
                pass

        try:
            greenrt.run(main)
        except RuntimeError as e:
            out.append(str(e))

    out: list = []
    t = threading.Thread(target=in_thread, args=(out,))
    t.start()
    t.join()
    assert out and "main thread" in out[0]
