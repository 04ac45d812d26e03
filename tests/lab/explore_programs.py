"""Small programs for the exploration tests (also loaded by path from subprocesses)."""

from __future__ import annotations

import greenrt
import greenrt.lab as lab
import greenrt.lab.net as lnet
from greenrt import net


def writers3() -> None:
    """Three tasks write one shared cell once: 3! = 6 classes."""
    x = lab.shared({}, "x")

    def w(i: int) -> None:
        greenrt.checkpoint()
        x["v"] = i

    with greenrt.region() as r:
        for i in range(3):
            r.spawn(w, i, name=f"w{i}")


def independent3() -> None:
    """Three tasks touching nothing shared: one class."""

    def w() -> None:
        for _ in range(3):
            greenrt.checkpoint()

    with greenrt.region() as r:
        for i in range(3):
            r.spawn(w, name=f"w{i}")


def locks2() -> None:
    """Two tasks, two critical sections each on one greenrt.Lock."""
    a = greenrt.Lock()

    def w() -> None:
        for _ in range(2):
            with a:
                greenrt.checkpoint()
            greenrt.checkpoint()

    with greenrt.region() as r:
        for i in range(2):
            r.spawn(w, name=f"w{i}")


def event_and_channel() -> list:
    """An Event gate and a channel: dependencies reported by greenrt.sync/channel."""
    gate = greenrt.Event()
    tx, rx = greenrt.channel(1)
    log = lab.shared([], "log")

    def producer(tag: str, t) -> None:
        with t:
            gate.wait()
            t.send(tag)

    def opener() -> None:
        greenrt.checkpoint()
        log.append("open")
        gate.set()

    with greenrt.region() as r:
        r.spawn(producer, "p", tx.clone(), name="p")
        r.spawn(producer, "q", tx.clone(), name="q")
        r.spawn(opener, name="opener")
        tx.close()
        out = list(rx)
    return out


def undeclared_lost_update() -> int:
    """The lost update with a plain dict: invisible to DPOR (documented caveat)."""
    account = {"balance": 0}

    def dep(n: int) -> None:
        seen = account["balance"]
        greenrt.checkpoint()
        account["balance"] = seen + n

    with greenrt.region() as r:
        r.spawn(dep, 1)
        r.spawn(dep, 2)
    assert account["balance"] == 3, account["balance"]
    return account["balance"]


def declared_lost_update() -> int:
    account = lab.shared({"balance": 0}, "account")

    def dep(n: int) -> None:
        seen = account["balance"]
        greenrt.checkpoint()
        account["balance"] = seen + n

    with greenrt.region() as r:
        r.spawn(dep, 1)
        r.spawn(dep, 2)
    assert account["balance"] == 3, account["balance"]
    return account["balance"]


def depth2_order() -> None:
    """Fails only when ``b`` sets its flag after ``a`` checked it twice (ordering)."""
    flags = lab.shared({"a": 0, "b": 0}, "flags")

    def a() -> None:
        for _ in range(5):
            greenrt.checkpoint()
        flags["a"] = 1

    def b() -> None:
        greenrt.checkpoint()
        if flags["a"]:
            raise RuntimeError("b ran after a finished")

    with greenrt.region() as r:
        r.spawn(a, name="a")
        r.spawn(b, name="b")


SERVER = "10.0.0.2"
PORT = 5000


def _echo(stream) -> None:
    with stream:
        try:
            while True:
                data = stream.recv(1024)
                if not data:
                    return
                stream.send_all(data)
        except (OSError, greenrt.net.BrokenStreamError):
            return  # a broken connection ends its handler, not the server


def _server(listener) -> None:
    with lnet.host(SERVER):
        with greenrt.region() as r:
            while True:
                r.spawn(_echo, listener.accept(), name="echo")


def _ping(retry: bool) -> bytes:
    while True:
        try:
            s = net.open_tcp(SERVER, PORT)
            with s, greenrt.fail_after(0.5):
                s.send_all(b"ping")
                got = b""
                while len(got) < 4:
                    data = s.recv(16)
                    if not data:
                        raise ConnectionError("closed")
                    got += data
                return got
        except (OSError, TimeoutError, greenrt.net.BrokenStreamError, ConnectionError):
            if not retry:
                raise
            greenrt.sleep(0.1)


def pinger(retry: bool = True) -> bytes:
    """Ping an echo server over lab.net, ten times, retrying on network errors."""
    with greenrt.region() as top:
        with lnet.host(SERVER):
            lst = net.listen_tcp(SERVER, PORT)
        srv = top.spawn(_server, lst, name="server")
        out = b""
        for _ in range(10):
            out += _ping(retry)
            greenrt.sleep(0.05)
        srv.cancel()
    return out


def pinger_no_retry() -> bytes:
    return pinger(False)


def noisy_lost_update() -> int:
    """A lost update among busy unrelated tasks (shrinking removes the noise)."""
    account = lab.shared({"balance": 0}, "account")

    def dep(n: int) -> None:
        for _ in range(3):
            greenrt.checkpoint()
        seen = account["balance"]
        greenrt.checkpoint()
        account["balance"] = seen + n

    def noise() -> None:
        for _ in range(6):
            greenrt.checkpoint()

    with greenrt.region() as r:
        for i in range(3):
            r.spawn(noise, name=f"noise{i}")
        r.spawn(dep, 1, name="dep1")
        r.spawn(dep, 2, name="dep2")
    assert account["balance"] == 3, account["balance"]
    return account["balance"]
