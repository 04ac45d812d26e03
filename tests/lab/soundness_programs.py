"""Programs for the fairness, environment, signature and UDP-partition tests."""

from __future__ import annotations

import greenrt
import greenrt.lab as lab
import greenrt.lab.net as lnet
from greenrt import net


def spin_wait() -> str:
    """A correct spin-wait: the waiter checkpoints until the setter has run."""
    ready = lab.shared({"v": False}, "ready")

    def setter() -> None:
        greenrt.checkpoint()
        ready["v"] = True

    def waiter() -> None:
        while not ready["v"]:
            greenrt.checkpoint()

    with greenrt.region() as r:
        r.spawn(waiter, name="waiter")
        r.spawn(setter, name="setter")
    return "done"


def real_livelock() -> str:
    """Each task waits for the other to go first: no fair schedule ends it."""
    flags = lab.shared({"a": False, "b": False}, "flags")

    def polite(me: str, other: str) -> None:
        while not flags[other]:
            greenrt.checkpoint()
        flags[me] = True

    with greenrt.region() as r:
        r.spawn(polite, "a", "b")
        r.spawn(polite, "b", "a")
    return "done"


def child_assertion() -> None:
    """A child's AssertionError reaches the caller inside the region's ExceptionGroup."""
    box = lab.shared({"n": 0}, "box")

    def inc() -> None:
        v = box["n"]
        greenrt.checkpoint()
        assert box["n"] == v, "changed under me"
        box["n"] = v + 1

    with greenrt.region() as r:
        r.spawn(inc)
        r.spawn(inc)


SERVER = "10.0.0.2"


def udp_only(n: int = 20) -> int:
    """Datagrams from the default host to a UDP-only server host, one every 10 ms."""
    got = 0
    with lnet.host(SERVER):
        rx = net.udp_socket(local_address=(SERVER, 53))
    tx = net.udp_socket()
    with rx, tx, greenrt.region() as r:
        def sender() -> None:
            for i in range(n):
                tx.sendto(b"ping %d" % i, (SERVER, 53))
                greenrt.sleep(0.01)

        r.spawn(sender)
        with greenrt.move_on_after(1.0):
            while True:
                rx.recvfrom(100)
                got += 1
    return got


def timer_tie() -> list:
    """Two sleepers due at the same instant append in timer order: the bug (b first)
    shows only in the timer tie the exploration decides."""
    log: list = []
    order = lab.shared(log, "log")

    def sleeper(me: str) -> None:
        greenrt.sleep(0.1)
        order.append(me)

    with greenrt.region() as r:
        r.spawn(sleeper, "a")
        r.spawn(sleeper, "b")
    assert log == ["a", "b"], log
    return log


def jittery_ping() -> bytes:
    """A TCP exchange whose segment delays are drawn from the environment (jitter)."""
    with greenrt.region() as top:
        with lnet.host(SERVER):
            lst = net.listen_tcp(SERVER, 7000)

        def server() -> None:
            with lnet.host(SERVER):
                s = lst.accept()
                with s:
                    s.send_all(s.recv(16))

        top.spawn(server)
        with net.open_tcp(SERVER, 7000) as s:
            s.send_all(b"ping")
            got = s.recv(16)
        lst.close()
    return got
