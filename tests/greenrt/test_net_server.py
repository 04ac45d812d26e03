"""serve_tcp/serve_unix: one task per connection, graceful shutdown within its budget,
connection cap, handler errors; Unix listener path safety; happy eyeballs and DNS."""

import errno
import os
import socket
import stat
import threading
import time

import pytest

import greenrt
from greenrt import net
from greenrt.net import _real

pytestmark = pytest.mark.timeout(60)


def start(r, serve, *args, **kw):
    servers = []
    r.spawn(lambda: serve(*args, on_ready=servers.append, **kw))
    while not servers:
        greenrt.sleep(0)
    return servers[0]


def recv_all(s):
    buf = bytearray()
    while True:
        d = s.recv(65536)
        if not d:
            return bytes(buf)
        buf += d


def wait_until(cond):
    while not cond():
        greenrt.sleep(0.002)


def test_graceful_shutdown_cancels_handlers_with_shutdown_and_lets_them_clean_up():
    seen = []

    def handler(s):
        try:
            s.recv(100)  # idle client: blocks until shutdown
        except greenrt.Cancelled as e:
            seen.append(e.reason.kind)
            s.send_all(b"bye")  # cleanup I/O is allowed while draining
            raise

    def main():
        with greenrt.region() as r:
            server = start(r, net.serve_tcp, handler, "127.0.0.1", 0, shutdown_budget=5.0)
            port = server.addresses[0][1]
            clients = [net.open_tcp("127.0.0.1", port) for _ in range(10)]
            wait_until(lambda: server.statistics()["active"] == 10)
            server.shutdown()
            outs = [recv_all(c) for c in clients]
            for c in clients:
                c.close()
        return outs, server.statistics()

    outs, stats = greenrt.run(main)
    assert outs == [b"bye"] * 10
    assert seen == [greenrt.CancelKind.SHUTDOWN] * 10
    assert stats["state"] == "closed" and stats["active"] == 0 and stats["force_closed"] == 0


def test_shutdown_of_stubborn_handlers_completes_within_budget():
    exhausted = []

    def handler(s):
        try:
            greenrt.sleep_forever()
        except greenrt.Cancelled:
            try:
                greenrt.sleep_forever()  # refuses to stop: the budget must end it
            except greenrt.Cancelled as e:
                exhausted.append(e.cleanup_exhausted)
                raise

    def blocked_in_io(s):
        try:
            s.recv(10)
        except greenrt.Cancelled:
            with greenrt.masked():  # hide from cancellation: only closing can end it
                try:
                    s.recv(10)
                except net.ClosedResourceError:
                    exhausted.append("closed")

    def main():
        results = []
        for h in (handler, blocked_in_io):
            with greenrt.region() as r:
                server = start(r, net.serve_tcp, h, "127.0.0.1", 0, shutdown_budget=0.2)
                port = server.addresses[0][1]
                c = net.open_tcp("127.0.0.1", port)
                wait_until(lambda srv=server: srv.statistics()["active"] == 1)
                t0 = greenrt.now()
                server.shutdown()
            results.append((greenrt.now() - t0, server.statistics()))
            c.close()
        return results

    results = greenrt.run(main)
    assert exhausted == [True, "closed"]
    (_, st1), (_, st2) = results
    assert st1["state"] == st2["state"] == "closed"
    assert st2["force_closed"] == 1
    # the hang guard is the test timeout; the budget (0.2 s) bounded the drain
    assert all(elapsed < 30 for elapsed, _ in results)


def test_cancelling_serve_is_a_graceful_shutdown_and_propagates():
    seen = []

    def handler(s):
        try:
            s.recv(100)
        except greenrt.Cancelled as e:
            seen.append(e.reason.kind)
            raise

    def main():
        servers = []
        with greenrt.move_on_after(10) as outer:
            with greenrt.region() as r:
                r.spawn(lambda: net.serve_tcp(handler, "127.0.0.1", 0,
                                              on_ready=servers.append))
                wait_until(lambda: servers)
                c = net.open_tcp("127.0.0.1", servers[0].addresses[0][1])
                wait_until(lambda: servers[0].statistics()["active"] == 1)
                outer.cancel()
        eof = c.recv(10)
        c.close()
        return outer.cancelled_caught, eof, servers[0].statistics()

    caught, eof, stats = greenrt.run(main)
    assert caught and eof == b""
    assert seen == [greenrt.CancelKind.SHUTDOWN]
    assert stats["state"] == "closed"


def test_connection_cap_holds_new_connections_in_the_backlog():
    order = []

    def handler(s):
        order.append(("start", s.recv(10)))
        s.recv(10)  # until the client closes
        order.append("end")

    def main():
        with greenrt.region() as r:
            server = start(r, net.serve_tcp, handler, "127.0.0.1", 0, max_connections=2)
            port = server.addresses[0][1]
            cs = []
            for i in range(3):
                c = net.open_tcp("127.0.0.1", port)  # the kernel completes all three
                c.send_all(b"c%d" % i)
                cs.append(c)
            wait_until(lambda: server.statistics()["at_capacity"] >= 1)
            greenrt.sleep(0.05)
            snapshot = (list(order), server.statistics()["active"])
            cs[0].close()
            wait_until(lambda: len([o for o in order if o != "end"]) == 3)
            for c in cs[1:]:
                c.close()
            server.shutdown()
        return snapshot, order

    (early, active), order = greenrt.run(main)
    assert active == 2 and sorted(early) == [("start", b"c0"), ("start", b"c1")]
    assert order.index(("start", b"c2")) > order.index("end")


def test_handler_errors_do_not_stop_the_server():
    def handler(s):
        if s.recv(10) == b"boom":
            raise ValueError("handler failed")
        s.send_all(b"fine")

    def main():
        with greenrt.region() as r:
            server = start(r, net.serve_tcp, handler, "127.0.0.1", 0)
            port = server.addresses[0][1]
            a = net.open_tcp("127.0.0.1", port)
            a.send_all(b"boom")
            assert a.recv(10) == b""  # its connection was closed
            b = net.open_tcp("127.0.0.1", port)
            b.send_all(b"ok")
            out = recv_all(b)
            a.close()
            b.close()
            stats = server.statistics()
            server.shutdown()
        return out, stats

    out, stats = greenrt.run(main)
    assert out == b"fine" and stats["handler_errors"] == 1 and stats["accepted"] == 2


def test_serve_unix_echo_many_connections(tmp_path):
    path = str(tmp_path / "echo.sock")

    def handler(s):
        while True:
            d = s.recv(4096)
            if not d:
                return
            s.send_all(d)

    def main():
        got = {}
        with greenrt.region() as r:
            server = start(r, net.serve_unix, handler, path, mode=0o600)
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

            def client(i):
                with net.open_unix(path) as s:
                    assert isinstance(s, net.UnixStream)
                    data = os.urandom(50_000)
                    with greenrt.region() as rr:
                        rr.spawn(lambda: (s.send_all(data), s.send_eof()))
                        got[i] = recv_all(s) == data

            with greenrt.region() as cr:
                for i in range(50):
                    cr.spawn(client, i)
            server.shutdown()
        return got

    got = greenrt.run(main)
    assert len(got) == 50 and all(got.values())
    assert not os.path.exists(path)  # the listener removed its socket file


def test_listen_unix_refuses_to_unlink_a_regular_file(tmp_path):
    path = tmp_path / "not-a-socket"
    path.write_text("precious")

    def main():
        with pytest.raises(FileExistsError):
            net.listen_unix(str(path))

    greenrt.run(main)
    assert path.read_text() == "precious"


def test_listen_unix_replaces_a_stale_socket_but_not_a_live_one(tmp_path):
    path = str(tmp_path / "s.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens: stale
    live = socket.socket(socket.AF_UNIX)
    live_path = str(tmp_path / "live.sock")
    live.bind(live_path)
    live.listen(1)

    def main():
        lst = net.listen_unix(path)
        assert lst.address == path
        lst.close()
        with pytest.raises(OSError) as ei:
            net.listen_unix(live_path)
        assert ei.value.errno == errno.EADDRINUSE

    try:
        greenrt.run(main)
    finally:
        live.close()
    assert os.path.exists(live_path)


def test_udp_echo_and_cancelled_recvfrom_loses_no_datagram():
    def main():
        a = net.udp_socket(net.AF_INET, ("127.0.0.1", 0))
        b = net.udp_socket(net.AF_INET, ("127.0.0.1", 0))
        with greenrt.move_on_after(0.01) as sc:
            a.recvfrom()
        assert sc.cancelled_caught
        for i in range(5):
            b.sendto(b"d%d" % i, a.local_address)
        got = [a.recvfrom(100) for _ in range(5)]
        a.sendto(b"reply", got[0][1])
        back = b.recvfrom(1 << 40)  # capped at the largest datagram, not allocated
        a.close()
        b.close()
        with pytest.raises(net.ClosedResourceError):
            a.recvfrom()
        return got, back, b.local_address

    got, back, baddr = greenrt.run(main)
    assert [d for d, _ in got] == [b"d%d" % i for i in range(5)]
    assert all(addr == baddr for _, addr in got)
    assert back[0] == b"reply"


# -- happy eyeballs and DNS, through the network seam --------------------------------


class ScriptedNetwork(_real.RealNetwork):
    """The real network with a scripted resolver (no real DNS in the test sandbox)
    and a log of connect attempts."""

    def __init__(self, hub, answers):
        super().__init__(hub)
        self.answers = answers
        self.attempts = []

    def resolve(self, host, port, family=0, type=0):
        greenrt.lowlevel.enter_checkpoint()
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in self.answers]

    def open_tcp(self, host, port, *, local_address=None):
        self.attempts.append(host)
        return super().open_tcp(host, port, local_address=local_address)


def _blackhole_listener(ip):
    """A listener that never accepts, its backlog filled: SYNs to it go unanswered."""
    lsock = socket.socket()
    lsock.bind((ip, 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    for _ in range(3):
        f = socket.socket()
        f.setblocking(False)
        try:
            f.connect((ip, port))
        except BlockingIOError:
            pass
        fillers.append(f)
    time.sleep(0.05)
    return lsock, port, fillers


def _blackhole_and_good_listener():
    """A black hole on 127.0.0.2 and a listener on 127.0.0.1, on the same port. The
    port is free on 127.0.0.2 but another process may hold it on 127.0.0.1: try
    another one then."""
    for _ in range(50):
        lsock, port, fillers = _blackhole_listener("127.0.0.2")
        good = socket.socket()
        good.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            good.bind(("127.0.0.1", port))
        except OSError:
            good.close()
            for f in fillers:
                f.close()
            lsock.close()
            continue
        good.listen(5)
        return lsock, port, fillers, good
    raise RuntimeError("no port free on both 127.0.0.1 and 127.0.0.2")


def test_happy_eyeballs_falls_over_to_the_next_address_and_closes_losers():
    lsock, port, fillers, good = _blackhole_and_good_listener()

    def main():
        hub = greenrt.lowlevel.current_hub()
        hub._network = netw = ScriptedNetwork(hub, ["127.0.0.2", "127.0.0.1"])
        greenrt.sleep(0)
        before = len(os.listdir("/proc/self/fd"))
        s = net.open_tcp("multi.test", port, happy_eyeballs_delay=0.05)
        peer = s.peer_address
        during = len(os.listdir("/proc/self/fd"))
        s.close()
        after = len(os.listdir("/proc/self/fd"))
        return netw.attempts, peer, before, during, after

    try:
        attempts, peer, before, during, after = greenrt.run(main)
    finally:
        for f in fillers:
            f.close()
        lsock.close()
        good.close()
    assert attempts == ["127.0.0.2", "127.0.0.1"]
    assert peer == ("127.0.0.1", port)
    assert during == before + 1  # only the winner is open: the pending loser was closed
    assert after == before


def test_happy_eyeballs_all_attempts_fail():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()

    def main():
        hub = greenrt.lowlevel.current_hub()
        hub._network = ScriptedNetwork(hub, ["127.0.0.1", "127.0.0.3"])
        with pytest.raises(OSError) as ei:
            net.open_tcp("multi.test", port)
        return ei.value

    err = greenrt.run(main)
    assert "all 2 connection attempts" in str(err)
    assert isinstance(err.__cause__, ExceptionGroup)
    assert all(isinstance(e, ConnectionRefusedError) for e in err.__cause__.exceptions)


def test_numeric_hosts_skip_dns_and_names_respect_the_deadline(monkeypatch):
    started = threading.Event()
    finished = threading.Event()
    real_gai = socket.getaddrinfo

    def slow_gai(host, *a, **k):
        flags = a[4] if len(a) >= 5 else k.get("flags", 0)
        if flags & socket.AI_NUMERICHOST:
            return real_gai(host, *a, **k)
        started.set()
        time.sleep(1.0)
        finished.set()
        return real_gai("127.0.0.1", *a[:1])

    monkeypatch.setattr(_real.socket, "getaddrinfo", slow_gai)
    import greenrt.threads as threads_mod

    def main():
        calls = []
        real_to_thread = threads_mod.to_thread
        monkeypatch.setattr(threads_mod, "to_thread",
                            lambda *a, **k: (calls.append(a), real_to_thread(*a, **k))[1])
        infos = net.resolve("127.0.0.1", 80)
        assert infos[0][4] == ("127.0.0.1", 80) and calls == []
        with greenrt.move_on_after(0.1) as sc:
            net.resolve("slow.example", 80)
        return sc.cancelled_caught, finished.is_set(), len(calls)

    caught, finished_then, ncalls = greenrt.run(main)
    assert caught and started.is_set() and not finished_then and ncalls == 1


def test_listen_backlog_is_honoured():
    # backlog=0: the kernel queues at most one unaccepted connection; further SYNs are
    # dropped, so without accept() the next connects stay pending (and get cancelled).
    def main():
        lst = net.listen_tcp("127.0.0.1", 0, backlog=0)
        port = lst.address[1]
        done, pending = [], 0
        for _ in range(4):
            with greenrt.move_on_after(0.1) as sc:
                done.append(net.open_tcp("127.0.0.1", port))
            pending += sc.cancelled_caught
        for s in done:
            s.close()
        lst.close()
        return len(done), pending

    completed, pending = greenrt.run(main)
    assert completed <= 2 and pending >= 2


def test_interleave_alternates_families_from_the_first_answer():
    from greenrt.net._connect import interleave

    v4 = [(socket.AF_INET, 1, 6, "", (f"10.0.0.{i}", 80)) for i in range(3)]
    v6 = [(socket.AF_INET6, 1, 6, "", (f"fe80::{i}", 80, 0, 0)) for i in range(2)]
    order = [i[4][0] for i in interleave(v6 + v4)]
    assert order == ["fe80::0", "10.0.0.0", "fe80::1", "10.0.0.1", "10.0.0.2"]
    assert [i[4][0] for i in interleave(v4[:1] + v6 + v4[1:])][:3] == [
        "10.0.0.0", "fe80::0", "10.0.0.1"]
    assert interleave([]) == []


SIGTERM_SERVER = r'''
import sys
import greenrt
from greenrt import net

def handler(s):
    s.send_all(b"hello\n")
    try:
        s.recv(100)
    except greenrt.Cancelled as e:
        s.send_all(f"bye {e.reason.kind.value}\n".encode())
        raise

def ready(server):
    print(server.addresses[0][1], flush=True)

greenrt.run(lambda: net.serve_tcp(handler, "127.0.0.1", 0, on_ready=ready))
'''


def test_sigterm_shuts_a_server_process_down_gracefully(tmp_path):
    import signal
    import subprocess
    import sys

    script = tmp_path / "server.py"
    script.write_text(SIGTERM_SERVER)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": root})
    try:
        port = int(p.stdout.readline())
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        for c in clients:
            c.settimeout(20)
            assert c.recv(100) == b"hello\n"
        p.send_signal(signal.SIGTERM)
        outs = []
        for c in clients:
            buf = b""
            while d := c.recv(100):
                buf += d
            outs.append(buf)
            c.close()
        rc = p.wait(20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert outs == [b"bye shutdown\n"] * 3  # handlers drained, then EOF
    assert rc == 128 + signal.SIGTERM
