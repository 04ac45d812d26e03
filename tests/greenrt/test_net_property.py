"""Property: whatever the chunking and wherever cancellations land, a TCP stream
delivers exactly the bytes sent, in order (a cancelled recv loses nothing), and a
send_all is either complete, untouched, or leaves the stream broken."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import greenrt
from greenrt import net

pytestmark = pytest.mark.timeout(120)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chunks=st.lists(st.integers(1, 70_000), min_size=1, max_size=12),
    recv_sizes=st.lists(st.integers(1, 100_000), min_size=1, max_size=8),
    cancel_every=st.lists(st.integers(0, 6), min_size=1, max_size=8),
)
def test_no_byte_lost_or_reordered_under_random_cancellation(chunks, recv_sizes, cancel_every):
    payload = b"".join(bytes([i % 251]) * n for i, n in enumerate(chunks))

    def main():
        lst = net.listen_tcp("127.0.0.1", 0)
        c = net.open_tcp("127.0.0.1", lst.address[1])
        s = lst.accept()
        got = bytearray()
        cancelled = 0
        with greenrt.region() as r:
            def sender():
                for i, n in enumerate(chunks):
                    c.send_all(bytes([i % 251]) * n)
                    greenrt.sleep(0)
                c.send_eof()

            r.spawn(sender)
            k = 0
            while True:
                size = recv_sizes[k % len(recv_sizes)]
                ticks = cancel_every[k % len(cancel_every)]
                k += 1
                with greenrt.cancel_scope() as sc:
                    if ticks:
                        # cancel the receiver after `ticks` scheduler turns
                        def canceller(sc=sc, ticks=ticks):
                            for _ in range(ticks):
                                greenrt.sleep(0)
                            sc.cancel()

                        t = r.spawn(canceller)
                    d = s.recv(size)
                    if not d:
                        break
                    got.extend(d)
                if ticks:
                    t.cancel()
                cancelled += sc.cancelled_caught
        for x in (c, s, lst):
            x.close()
        return bytes(got), cancelled

    got, _ = greenrt.run(main)
    assert got == payload


@settings(max_examples=20, deadline=None)
@given(size=st.integers(1, 8_000_000), delay=st.sampled_from([0.0, 0.001, 0.01, 0.05]))
def test_send_all_is_complete_untouched_or_broken(size, delay):
    def main():
        lst = net.listen_tcp("127.0.0.1", 0)
        c = net.open_tcp("127.0.0.1", lst.address[1])
        s = lst.accept()  # never reads until the sender is done
        with greenrt.move_on_after(delay) as sc:
            c.send_all(b"q" * size)
        sent = c.statistics()["bytes_sent"]
        state = (sc.cancelled_caught, sent, c.broken)
        c.close()
        received = 0
        while d := s.recv(1 << 20):
            received += len(d)
        s.close()
        lst.close()
        return state, received

    (cancelled, sent, broken), received = greenrt.run(main)
    assert received == sent  # the peer got exactly what the statistics say
    if not cancelled:
        assert sent == size and not broken
    elif sent == 0:
        assert not broken
    else:
        assert broken == (sent < size)
