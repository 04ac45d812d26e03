"""Network programs for the lab tests: greenrt.net code, unmodified, on lab.net."""

from __future__ import annotations

import greenrt
import greenrt.lab.net as lnet
from greenrt import net

SERVER = "10.0.0.2"
PORT = 7


def echo_handler(stream) -> None:
    """A plain greenrt.net echo handler: nothing in it knows about the lab."""
    with stream:
        while True:
            data = stream.recv(1024)
            if not data:
                return
            stream.send_all(data)


def _start_server(r, **kw):
    ready: dict = {}

    def server() -> None:
        with lnet.host(SERVER):
            net.serve_tcp(echo_handler, SERVER, PORT,
                          on_ready=lambda s: ready.setdefault("server", s), **kw)

    r.spawn(server, name="echo_server")
    while "server" not in ready:
        greenrt.sleep(0.001)
    return ready["server"]


def _exchange(s, msg: bytes) -> bytes:
    s.send_all(msg)
    got = b""
    while len(got) < len(msg):
        chunk = s.recv(1024)
        if not chunk:
            raise ConnectionError("EOF before the echo")
        got += chunk
    return got


def echo_clients(clients: int = 3, rounds: int = 3) -> list:
    """An echo service and several clients exchanging messages concurrently."""
    out: list = []
    with greenrt.region() as r:
        server = _start_server(r)

        def client(n: int) -> None:
            with net.open_tcp(SERVER, PORT) as s:
                for i in range(rounds):
                    msg = f"client{n} message{i}".encode()
                    out.append(_exchange(s, msg).decode())

        with greenrt.region() as cr:
            for n in range(clients):
                cr.spawn(client, n, name=f"client{n}")
        server.shutdown()
    return sorted(out)


def echo_partition() -> dict:
    """A client talks, the network splits, a message sent meanwhile waits, a connect
    attempt during the split times out, the network heals, everything flows again."""
    log: dict = {}
    with greenrt.region() as r:
        server = _start_server(r)
        with net.open_tcp(SERVER, PORT) as s:
            log["before"] = _exchange(s, b"before").decode()
            lnet.partition("10.0.0.1", SERVER)
            t0 = greenrt.now()

            def healer() -> None:
                greenrt.sleep(5.0)
                lnet.heal()

            r.spawn(healer, name="healer")
            with greenrt.move_on_after(1.0) as cs:
                net.open_tcp(SERVER, PORT)
            log["connect_during_partition_timed_out"] = cs.cancelled_caught
            log["during"] = _exchange(s, b"during").decode()
            log["waited"] = greenrt.now() - t0 >= 5.0
        with net.open_tcp(SERVER, PORT) as s2:
            log["after"] = _exchange(s2, b"after").decode()
        server.shutdown()
    return log


def refused_and_names() -> dict:
    out: dict = {}
    try:
        net.open_tcp("10.0.0.9", 80)
    except ConnectionRefusedError:
        out["refused"] = True
    with greenrt.region() as r:
        server = _start_server(r)
        with net.open_tcp("echo.lab", PORT) as s:
            out["by_name"] = _exchange(s, b"hi").decode()
            out["peer"] = s.peer_address
        server.shutdown()
    try:
        net.resolve("nowhere.invalid", 1)
    except OSError as e:
        out["gaierror"] = type(e).__name__
    return out


def injected_reset() -> str:
    with greenrt.region() as r:
        server = _start_server(r)
        s = net.open_tcp(SERVER, PORT)
        _exchange(s, b"x")
        lnet.reset("10.0.0.1", SERVER)
        try:
            s.send_all(b"y")
            s.recv(10)
        except net.BrokenStreamError as e:
            result = f"broken: {e.__cause__.__class__.__name__}"
        else:
            result = "not broken"
        s.close()
        server.shutdown()
    return result


def udp_pings(n: int = 50) -> int:
    """UDP datagrams over a lossy simulated network: how many arrived."""
    got = 0
    with lnet.host(SERVER):
        rx = net.udp_socket(local_address=(SERVER, 53))
    tx = net.udp_socket()
    with rx, tx:
        for i in range(n):
            tx.sendto(b"ping %d" % i, (SERVER, 53))
        with greenrt.move_on_after(1.0):
            while True:
                rx.recvfrom(100)
                got += 1
    return got


def unix_echo() -> str:
    with greenrt.region() as r:
        ready: dict = {}

        def server() -> None:
            lst = net.listen_unix("/lab/echo.sock")
            ready["l"] = lst
            with lst:
                s = lst.accept()
                echo_handler(s)

        r.spawn(server, name="unix_server")
        while "l" not in ready:
            greenrt.sleep(0.001)
        with net.open_unix("/lab/echo.sock") as s:
            return _exchange(s, b"over unix").decode()
