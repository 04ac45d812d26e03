"""TCP streams on real loopback sockets: echo, half-close, large transfers, resets,
cancellation semantics (recv loses nothing, send_all breaks, connect leaks no fd)."""

import os
import socket
import threading

import pytest

import greenrt
from greenrt import net

pytestmark = pytest.mark.timeout(60)


def run(fn, *args):
    return greenrt.run(fn, *args)


def echo_handler(s):
    while True:
        d = s.recv(65536)
        if not d:
            break
        s.send_all(d)
    s.send_eof()


def start_server(r, handler, **kw):
    servers = []
    r.spawn(lambda: net.serve_tcp(handler, "127.0.0.1", 0, on_ready=servers.append, **kw))
    while not servers:
        greenrt.sleep(0)
    return servers[0], servers[0].addresses[0][1]


def recv_exactly(s, n):
    buf = bytearray()
    while len(buf) < n:
        d = s.recv(min(65536, n - len(buf)))
        if not d:
            raise EOFError(len(buf))
        buf += d
    return bytes(buf)


def recv_all(s):
    buf = bytearray()
    while True:
        d = s.recv(65536)
        if not d:
            return bytes(buf)
        buf += d


def count_fds():
    return len(os.listdir("/proc/self/fd"))


def test_echo_many_concurrent_connections():
    N = 100

    def main():
        results = {}
        with greenrt.region() as r:
            server, port = start_server(r, echo_handler)

            def client(i):
                with net.open_tcp("127.0.0.1", port) as s:
                    for k in range(20):
                        msg = f"{i}:{k}:".encode() * (k + 1)
                        s.send_all(msg)
                        assert recv_exactly(s, len(msg)) == msg
                    s.send_eof()
                    assert s.recv(10) == b""
                    results[i] = s.statistics()

            with greenrt.region() as clients:
                for i in range(N):
                    clients.spawn(client, i)
            stats = server.statistics()
            server.shutdown()
        return results, stats

    results, stats = run(main)
    assert len(results) == N
    assert stats["accepted"] == N and stats["handler_errors"] == 0
    st = results[0]
    assert st["eof_sent"] and st["eof_received"] and st["recv_calls"] >= 20
    assert st["bytes_sent"] == sum(len(b"0:%d:" % k) * (k + 1) for k in range(20))


def test_half_close_keeps_the_other_direction():
    def handler(s):
        data = recv_all(s)  # until the client's EOF
        s.send_all(b"got " + str(len(data)).encode())
        s.send_all(data[::-1])

    def main():
        with greenrt.region() as r:
            server, port = start_server(r, handler)
            s = net.open_tcp("127.0.0.1", port)
            s.send_all(b"abc" * 1000)
            s.send_eof()
            s.send_eof()  # idempotent
            with pytest.raises(net.StreamError):
                s.send_all(b"more")
            out = recv_all(s)
            s.close()
            server.shutdown()
        return out

    out = run(main)
    assert out == b"got 3000" + (b"abc" * 1000)[::-1]


def test_large_transfer_both_directions():
    payload = os.urandom(8 * 1024 * 1024)

    def main():
        with greenrt.region() as r:
            server, port = start_server(r, echo_handler)
            s = net.open_tcp("127.0.0.1", port)
            got = []
            with greenrt.region() as rr:
                rr.spawn(lambda: got.append(recv_all(s)))

                def sender():
                    s.send_all(memoryview(payload))
                    s.send_eof()

                rr.spawn(sender)
            st = s.statistics()
            s.close()
            server.shutdown()
        return got[0], st

    got, st = run(main)
    assert got == payload
    assert st["bytes_sent"] == len(payload) == st["bytes_received"]
    assert st["send_waits"] > 0  # 8 MiB does not fit the socket buffers: it waited


def test_peer_reset_mid_transfer_raises_broken_stream():
    # A real peer (a plain thread) that reads a little and then resets the connection.
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    port = lsock.getsockname()[1]

    def peer():
        c, _ = lsock.accept()
        c.recv(1000)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        c.close()  # RST

    t = threading.Thread(target=peer)
    t.start()

    def main():
        s = net.open_tcp("127.0.0.1", port)
        with pytest.raises(net.BrokenStreamError) as ei:
            for _ in range(10000):
                s.send_all(b"x" * 65536)
        assert isinstance(ei.value, ConnectionError)
        assert isinstance(ei.value.__cause__, OSError)
        assert s.broken
        with pytest.raises(net.BrokenStreamError, match="broken"):
            s.recv(10)
        s.close()
        with pytest.raises(net.ClosedResourceError):
            s.recv(10)
        return True

    try:
        assert run(main)
    finally:
        t.join()
        lsock.close()


def test_recv_after_reset_raises_broken_stream():
    def handler(s):
        recv_exactly(s, 2)
        s.send_all(b"hello")
        s.abort()  # RST

    def main():
        with greenrt.region() as r:
            server, port = start_server(r, handler)
            s = net.open_tcp("127.0.0.1", port)
            s.send_all(b"go")
            first = recv_exactly(s, 5)
            with pytest.raises(net.BrokenStreamError, match="recv failed"):
                while s.recv(10):
                    pass
            s.close()
            server.shutdown()
        return first

    assert run(main) == b"hello"


def test_cancelled_recv_loses_no_data():
    def main():
        chunks = [os.urandom(1000) for _ in range(50)]
        with greenrt.region() as r:
            release = []

            def handler(s):
                # Send in bursts, pausing so the client is often blocked in recv
                # when its timeout fires.
                for i, c in enumerate(chunks):
                    s.send_all(c)
                    if i % 5 == 0:
                        greenrt.sleep(0.01)
                while not release:
                    greenrt.sleep(0.01)

            server, port = start_server(r, handler)
            s = net.open_tcp("127.0.0.1", port)
            buf = bytearray()
            cancelled = 0
            while len(buf) < 50000:
                with greenrt.move_on_after(0.002) as sc:
                    buf += s.recv(700)
                if sc.cancelled_caught:
                    cancelled += 1
            release.append(1)
            s.close()
            server.shutdown()
        return bytes(buf), b"".join(chunks), cancelled

    got, want, cancelled = run(main)
    assert cancelled > 0
    assert got == want


def test_cancelled_send_all_breaks_the_stream():
    def main():
        with greenrt.region() as r:
            stop = []

            def handler(s):  # never reads: the client's send_all must block
                while not stop:
                    greenrt.sleep(0.01)

            server, port = start_server(r, handler)
            s = net.open_tcp("127.0.0.1", port)
            with greenrt.move_on_after(0.2) as sc:
                s.send_all(b"y" * (64 * 1024 * 1024))
            assert sc.cancelled_caught
            st = s.statistics()
            assert 0 < st["bytes_sent"] < 64 * 1024 * 1024
            assert s.broken and st["broken"]
            for op in (lambda: s.recv(1), lambda: s.send_all(b"z"), s.send_eof):
                with pytest.raises(net.BrokenStreamError, match="send_all interrupted"):
                    op()
            s.close()
            stop.append(1)
            server.shutdown()
        return True

    assert run(main)


def test_send_all_cancelled_before_writing_keeps_stream_usable():
    def main():
        with greenrt.region() as r:
            server, port = start_server(r, echo_handler)
            s = net.open_tcp("127.0.0.1", port)
            with greenrt.cancel_scope() as sc:
                sc.cancel()
                s.send_all(b"never")
            assert sc.cancelled_caught and not s.broken
            s.send_all(b"ok")
            out = recv_exactly(s, 2)
            s.close()
            server.shutdown()
        return out

    assert run(main) == b"ok"


def test_cancelled_connect_leaves_no_fd():
    # 192.0.2.0/24 (TEST-NET-1) is not routed: the SYN goes unanswered, so the
    # connect is still pending when the timeout cancels it. If the network answers
    # at once (unreachable), the connect fails with OSError: no fd may leak either way.
    def main():
        greenrt.sleep(0)
        before = count_fds()
        outcomes = []
        for _ in range(20):
            with greenrt.move_on_after(0.01) as sc:
                try:
                    net.open_tcp("192.0.2.1", 9)
                    outcomes.append("connected")
                except OSError as e:
                    outcomes.append(type(e).__name__)
            if sc.cancelled_caught:
                outcomes.append("cancelled")
        return before, count_fds(), outcomes

    before, after, outcomes = run(main)
    assert "connected" not in outcomes
    assert after == before


def test_cancelled_connect_via_local_listener_backlog_leaves_no_fd():
    # A listener that never accepts, with its backlog full: further SYNs are
    # dropped, so connects stay pending until cancelled.
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]

    def main():
        opened = []
        # Fill the backlog (these connect at once).
        for _ in range(3):
            with greenrt.move_on_after(0.2):
                opened.append(net.open_tcp("127.0.0.1", port))
        before = count_fds()
        cancelled = 0
        later = []
        for _ in range(5):
            with greenrt.move_on_after(0.05) as sc:
                later.append(net.open_tcp("127.0.0.1", port))
            cancelled += sc.cancelled_caught
        after = count_fds()
        for s in opened + later:
            s.close()
        return cancelled, before, after, len(later)

    try:
        cancelled, before, after, n_later = run(main)
    finally:
        lsock.close()
    assert cancelled >= 1
    assert after == before + n_later  # only connections that completed hold an fd


def test_connect_refused_is_an_oserror_and_leaks_nothing():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now

    def main():
        before = count_fds()
        with pytest.raises(ConnectionRefusedError):
            net.open_tcp("127.0.0.1", port)
        return before, count_fds()

    before, after = run(main)
    assert before == after


def test_concurrent_receivers_are_refused():
    def main():
        with greenrt.region() as r:
            server, port = start_server(r, echo_handler)
            s = net.open_tcp("127.0.0.1", port)
            errors = []
            with greenrt.region() as rr:
                rr.spawn(s.recv, 10)
                greenrt.sleep(0.01)

                def second():
                    try:
                        s.recv(10)
                    except net.BusyResourceError as e:
                        errors.append(e)

                rr.spawn(second)
                greenrt.sleep(0.01)
                s.send_all(b"x")
            s.close()
            server.shutdown()
        return errors

    assert len(run(main)) == 1


def test_close_wakes_a_blocked_receiver():
    def main():
        with greenrt.region() as r:
            server, port = start_server(r, lambda s: greenrt.sleep(10))
            s = net.open_tcp("127.0.0.1", port)
            errors = []

            def reader():
                try:
                    s.recv(10)
                except net.ClosedResourceError as e:
                    errors.append(e)

            with greenrt.region() as rr:
                rr.spawn(reader)
                greenrt.sleep(0.01)
                s.close()
            server.shutdown()
        return errors

    assert len(run(main)) == 1


def test_open_tcp_by_name_and_options():
    def main():
        with greenrt.region() as r:
            server, port = start_server(r, echo_handler)
            s = net.open_tcp("localhost", port, timeout=10)
            assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            assert s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert s.peer_address[1] == port
            assert isinstance(s, net.TCPStream) and isinstance(s, net.Stream)
            s.send_all(b"ping")
            out = recv_exactly(s, 4)
            s.close()
            server.shutdown()
        return out

    assert run(main) == b"ping"


def test_every_call_is_a_checkpoint():
    def main():
        with greenrt.region() as r:
            server, port = start_server(r, echo_handler)
            s = net.open_tcp("127.0.0.1", port)
            s.send_all(b"abc")
            greenrt.sleep(0.05)  # data is ready: recv would complete at once
            with greenrt.cancel_scope() as sc:
                sc.cancel()
                s.recv(10)
            assert sc.cancelled_caught
            assert s.recv(10) == b"abc"  # and nothing was lost
            s.close()
            server.shutdown()
        return True

    assert run(main)


def test_a_stream_that_is_always_ready_does_not_starve_other_tasks():
    # The fast path skips the yield, but every FAIR_STREAK-th call yields anyway.
    def main():
        with greenrt.region() as r:
            def flood(s):
                try:
                    while True:
                        s.send_all(b"x" * 65536)
                except (net.BrokenStreamError, net.ClosedResourceError):
                    pass

            server, port = start_server(r, flood)
            s = net.open_tcp("127.0.0.1", port)
            greenrt.sleep(0.05)  # let the socket buffer fill up
            ticks = []
            done = []

            def ticker():
                while not done:
                    ticks.append(1)
                    greenrt.sleep(0)

            r.spawn(ticker)
            got = 0
            for _ in range(2000):  # data is (almost) always there: fast paths
                got += len(s.recv(1000))
            seen = len(ticks)
            done.append(1)
            s.close()
            server.shutdown()
        return got, seen, s.statistics()["recv_waits"]

    got, seen, waits = run(main)
    assert got > 0
    assert seen >= 2000 // 65 - waits  # the ticker ran at least once per forced yield
    assert seen > 0


def test_every_blocking_call_is_a_checkpoint_even_when_it_could_complete():
    def main():
        lst = net.listen_tcp("127.0.0.1", 0)
        port = lst.address[1]
        c = net.open_tcp("127.0.0.1", port)
        s = lst.accept()
        c.send_all(b"ready")
        greenrt.sleep(0.02)
        u1 = net.udp_socket(net.AF_INET, ("127.0.0.1", 0))
        u1.sendto(b"dgram", u1.local_address)
        greenrt.sleep(0.02)
        ops = {
            "recv": lambda: s.recv(10),
            "send_all": lambda: s.send_all(b"x"),
            "send_eof": s.send_eof,
            "accept": lst.accept,
            "open_tcp": lambda: net.open_tcp("127.0.0.1", port),
            "open_unix": lambda: net.open_unix("/nonexistent/socket"),
            "resolve": lambda: net.resolve("127.0.0.1", 80),
            "sendto": lambda: u1.sendto(b"d", u1.local_address),
            "recvfrom": u1.recvfrom,
        }
        raised = {}
        for name, op in ops.items():
            with greenrt.cancel_scope() as sc:
                sc.cancel()
                op()
            raised[name] = sc.cancelled_caught
        # and nothing was consumed or half-done by the cancelled calls:
        leftovers = (s.recv(10), u1.recvfrom()[0], s.statistics()["eof_sent"])
        for x in (c, s, u1, lst):
            x.close()
        return raised, leftovers

    raised, leftovers = run(main)
    assert all(raised.values()), raised
    assert leftovers == (b"ready", b"dgram", False)


def _has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback here")
def test_ipv6_echo_and_local_address():
    def main():
        with greenrt.region() as r:
            servers = []
            r.spawn(lambda: net.serve_tcp(echo_handler, "::1", 0, on_ready=servers.append))
            while not servers:
                greenrt.sleep(0)
            port = servers[0].addresses[0][1]
            s = net.open_tcp("::1", port)
            s.send_all(b"six")
            out = recv_exactly(s, 3)
            fam6 = len(s.peer_address) == 4
            s.close()
            # and an IPv4 connection from a chosen local address
            lst = net.listen_tcp("127.0.0.1", 0)
            c = net.open_tcp("127.0.0.1", lst.address[1], local_address=("127.0.0.3", 0))
            a = lst.accept()
            local = (c.local_address[0], a.peer_address[0])
            for x in (c, a, lst):
                x.close()
            servers[0].shutdown()
        return out, fam6, local

    assert run(main) == (b"six", True, ("127.0.0.3", "127.0.0.3"))


def test_huge_max_bytes_is_capped_before_allocating():
    from greenrt.net._stream import MAX_RECV

    def main():
        with greenrt.region() as r:
            server, port = start_server(r, echo_handler)
            s = net.open_tcp("127.0.0.1", port)
            data = os.urandom(3 * MAX_RECV)
            r.spawn(s.send_all, data)
            got = bytearray()
            sizes = []
            while len(got) < len(data):
                d = s.recv(1 << 40)  # e.g. a length a peer declared: must not be allocated
                sizes.append(len(d))
                got += d
            s.close()
            server.shutdown()
        return bytes(got) == data, max(sizes)

    ok, biggest = run(main)
    assert ok and biggest <= MAX_RECV


def _pair():
    lst = net.listen_tcp("127.0.0.1", 0)
    c = net.open_tcp("127.0.0.1", lst.address[1])
    s = lst.accept()
    return lst, c, s


def _count_transport_recvs(s):
    calls = []
    inner = s._t_recv

    def counting(n):
        calls.append(n)
        return inner(n)

    s._t_recv = counting  # the primitive is an instance attribute on the real network
    return calls


def test_request_response_costs_one_recv_syscall_per_message():
    # After a short read the queue was empty, so the next recv waits for the
    # driver's edge instead of making a recv that can only say EAGAIN.
    def main():
        lst, c, s = _pair()
        calls = _count_transport_recvs(s)
        got = []
        with greenrt.region() as r:
            def server():
                for _ in range(20):
                    d = s.recv(65536)
                    got.append(d)
                    s.send_all(d)

            r.spawn(server)
            while s.statistics()["recv_waits"] == 0:
                greenrt.sleep(0)
            for i in range(20):
                c.send_all(b"m%02d" % i)
                assert recv_exactly(c, 3) == b"m%02d" % i
        waits = s.statistics()["recv_waits"]
        for x in (c, s, lst):
            x.close()
        return got, len(calls), waits

    got, syscalls, waits = run(main)
    assert got == [b"m%02d" % i for i in range(20)]
    assert waits == 20
    # one trial recv before the very first wait (nothing is known yet), then one each
    assert syscalls == 21


def test_data_and_eof_seen_in_one_event_are_both_delivered():
    # The hang-up readiness is sticky: the FIN arrives with the data, the short read
    # of the data must not make the next recv wait for an edge that never comes.
    def main():
        lst, c, s = _pair()
        got = []
        with greenrt.region() as r:
            def reader():
                got.append(s.recv(100))  # parks first: arms the registration
                got.append(s.recv(100))
                got.append(s.recv(100))

            r.spawn(reader)
            while s.statistics()["recv_waits"] == 0:
                greenrt.sleep(0)
            c.send_all(b"last words")
            c.send_eof()  # both reach the kernel before the hub's next poll
        for x in (c, s, lst):
            x.close()
        return got

    assert run(main) == [b"last words", b"", b""]


def test_recv_after_a_cancelled_wait_tries_the_socket_first():
    # A cancelled wait may have missed readiness (the hub polls epoll only while
    # somebody waits), so the next recv must not rely on the driver's record; a
    # cancel/retry loop that did would livelock.
    def main():
        lst, c, s = _pair()
        c.send_all(b"a")
        greenrt.sleep(0.01)
        first = s.recv(100)  # short read: readiness cleared
        with greenrt.region() as r:
            with greenrt.cancel_scope() as sc:
                r.spawn(sc.cancel)
                s.recv(100)  # parks at once, cancelled by the sibling
        c.send_all(b"b")  # arrives while nobody waits: no poll harvests it
        waits = s.statistics()["recv_waits"]
        second = s.recv(100)
        waited = s.statistics()["recv_waits"] - waits
        for x in (c, s, lst):
            x.close()
        return first, sc.cancelled_caught, second, waited

    assert run(main) == (b"a", True, b"b", 0)


def test_urgent_data_does_not_stall_recv():
    # A TCP read stops early at an urgent-data mark with data left and no new edge
    # to come; the driver treats EPOLLPRI as sticky readiness, so recv goes on.
    def main():
        lst, c, s = _pair()
        got = []
        with greenrt.region() as r:
            def reader():
                while sum(map(len, got)) < 10:
                    got.append(s.recv(100))

            r.spawn(reader)
            while s.statistics()["recv_waits"] == 0:
                greenrt.sleep(0)
            raw = c.socket
            raw.send(b"hello")
            raw.send(b"!", socket.MSG_OOB)
            raw.send(b"world")  # all of it reaches the kernel before the hub's next poll
        for x in (c, s, lst):
            x.close()
        return b"".join(got)

    assert run(main) == b"helloworld"  # the urgent byte is out of band
