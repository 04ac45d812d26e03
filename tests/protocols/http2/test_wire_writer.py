"""``_wire.Writer``: the ``send_nowait`` first try, the masked timed send for what does
not fit, the fairness yield, and wrappers that must not be bypassed. Real TCP
streams on loopback."""

from __future__ import annotations

import greenrt
from greenrt import net
from greenrt.protocols.http2._wire import Writer


def _pair():
    lst = net.listen_tcp("127.0.0.1", 0)
    c = net.open_tcp("127.0.0.1", lst.address[1])
    s = lst.accept()
    lst.close()
    return c, s


def _read(s, n: int) -> bytes:
    got = bytearray()
    while len(got) < n:
        b = s.recv(65536)
        assert b
        got += b
    return bytes(got)


def test_a_write_that_fits_goes_out_without_send_all():
    def main():
        c, s = _pair()
        w = Writer(c, 5.0)
        for i in range(10):
            w.write(b"frame%d;" % i)
        assert c.send_calls == 0  # every write went through send_nowait
        assert _read(s, 70) == b"".join(b"frame%d;" % i for i in range(10))
        assert w.pending == 0 and w.broken is None and w.bytes_queued == 70
        c.close()
        s.close()
    greenrt.run(main)


def test_what_does_not_fit_is_sent_by_the_timed_send_then_the_timeout_breaks_it():
    """The peer reads nothing: the first write fills the socket buffers, its rest
    waits in send_all until ``send_timeout``, then the writer is broken and drops
    what is queued; the peer got a prefix of the bytes, in order."""
    def main():
        c, s = _pair()
        w = Writer(c, 0.3)
        data = bytes(range(256)) * 40_000  # ~10 MB: more than the socket buffers
        w.write(data)
        assert w.broken == "send_timeout"
        assert w.pending == 0
        w.write(b"more")  # dropped
        assert w.pending == 0
        c.close()
        got = bytearray()
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            got += b
        assert 0 < len(got) < len(data) and bytes(got) == data[:len(got)]
        s.close()
    greenrt.run(main)


def test_nowait_writes_yield_every_fair_streak():
    """A task that only writes (and the transport always takes everything) still
    lets the others run: once per FAIR_STREAK writes."""
    def main():
        c, s = _pair()
        w = Writer(c, 5.0)
        ran = []
        with greenrt.region() as r:
            r.spawn(lambda: ran.append(True))
            for _ in range(Writer.FAIR_STREAK - 1):
                w.write(b"x")
            assert not ran  # no yield yet
            w.write(b"x")
            assert ran  # the 64th write yielded
        assert _read(s, Writer.FAIR_STREAK) == b"x" * Writer.FAIR_STREAK
        c.close()
        s.close()
    greenrt.run(main)


class _Forwarding:
    """A stream wrapper in the style of grpc's keepalive one: its own ``send_all``,
    every other attribute forwarded to the inner stream."""

    def __init__(self, inner):
        self._inner = inner
        self.seen = bytearray()

    def send_all(self, data) -> None:
        self.seen += data
        self._inner.send_all(data)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_a_forwarding_wrapper_is_written_through_its_send_all():
    """The inner stream's ``send_nowait`` (reachable through ``__getattr__``) is not
    used: every byte passes the wrapper's ``send_all`` (the keepalive policy sees
    the HEADERS/DATA it must see)."""
    def main():
        c, s = _pair()
        wrapped = _Forwarding(c)
        assert wrapped.send_nowait is not None
        w = Writer(wrapped, 5.0)
        for i in range(5):
            w.write(b"f%d" % i)
        assert bytes(wrapped.seen) == b"f0f1f2f3f4"
        assert _read(s, 10) == b"f0f1f2f3f4"
        c.close()
        s.close()
    greenrt.run(main)
