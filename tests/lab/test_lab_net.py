"""greenrt.net runs unchanged under the lab on the simulated network."""

from __future__ import annotations

import os
import sys

import pytest

import greenrt.lab as lab
from greenrt.lab.net import NetConfig

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import lab_net_programs as N  # noqa: E402

NAMES = {"echo.lab": N.SERVER}


@pytest.mark.parametrize("seed", range(4))
def test_tcp_echo_service_and_clients(seed):
    cfg = NetConfig(latency=0.002, jitter=0.003)
    r = lab.run(N.echo_clients, seed=seed, net=cfg)
    assert r.ok, r.summary()
    assert r.value == sorted(f"client{n} message{i}" for n in range(3) for i in range(3))
    kinds = {ev.kind for ev in r.events}
    assert {"lab.net.listen", "lab.net.connect", "lab.net.send", "lab.net.deliver"} <= kinds


def test_echo_is_deterministic_and_replays(tmp_path):
    cfg = NetConfig(latency=0.002, jitter=0.003)
    assert lab.check_determinism(N.echo_clients, seed=5, net=cfg) is None
    path = tmp_path / "echo.jsonl"
    r = lab.run(N.echo_clients, seed=5, net=cfg, record=str(path))
    rr = lab.replay(path)
    assert rr.divergence is None and rr.final_hash == r.final_hash


def test_jitter_changes_the_interleaving_between_seeds():
    cfg = NetConfig(latency=0.002, jitter=0.01)
    hashes = {lab.run(N.echo_clients, seed=s, net=cfg).final_hash for s in range(4)}
    assert len(hashes) > 1


@pytest.mark.parametrize("seed", range(3))
def test_partition_holds_traffic_until_heal(seed):
    r = lab.run(N.echo_partition, seed=seed, net=NetConfig(jitter=0.001))
    assert r.ok, r.summary()
    assert r.value == {"before": "before", "connect_during_partition_timed_out": True,
                       "during": "during", "waited": True, "after": "after"}
    kinds = [ev.kind for ev in r.events]
    assert kinds.index("lab.net.partition") < kinds.index("lab.net.heal")


def test_connect_refused_resolve_and_names():
    r = lab.run(N.refused_and_names, seed=0, net=NetConfig(names=NAMES))
    assert r.ok, r.summary()
    assert r.value == {"refused": True, "by_name": "hi", "peer": (N.SERVER, N.PORT),
                       "gaierror": "gaierror"}


def test_injected_reset_breaks_the_stream():
    r = lab.run(N.injected_reset, seed=0)
    assert r.ok, r.summary()
    assert r.value == "broken: ConnectionResetError"
    assert any(ev.kind == "lab.net.reset" for ev in r.events)


def test_random_resets_come_from_the_choice_stream():
    cfg = NetConfig(reset_rate=0.3)
    results = [lab.run(N.echo_clients, 2, 3, seed=s, net=cfg) for s in range(6)]
    resets = [sum(ev.kind == "lab.net.reset" for ev in r.events) for r in results]
    assert any(resets)
    for r in results:
        assert any(ev.kind == "lab.choice" and ev.data["what"] == "net.reset" for ev in r.events)
        if any(ev.kind == "lab.net.reset" for ev in r.events):
            assert not r.ok  # a client saw its connection break
    again = lab.run(N.echo_clients, 2, 3, seed=0, net=cfg)
    assert again.final_hash == results[0].final_hash


def test_udp_drops_are_seeded():
    lossless = lab.run(N.udp_pings, seed=0)
    assert lossless.ok and lossless.value == 50
    lossy = [lab.run(N.udp_pings, seed=s, net=NetConfig(udp_drop=0.5)) for s in range(3)]
    for r in lossy:
        assert r.ok, r.summary()
        dropped = sum(1 for ev in r.events if ev.kind == "lab.net.udp" and ev.data["dropped"])
        assert r.value == 50 - dropped and 0 < dropped < 50
    assert lab.run(N.udp_pings, seed=1, net=NetConfig(udp_drop=0.5)).value == lossy[1].value


def test_unix_sockets():
    r = lab.run(N.unix_echo, seed=0)
    assert r.ok, r.summary()
    assert r.value == "over unix"


def test_real_sockets_are_refused_in_strict_mode():
    import greenrt

    def uses_real_fd():
        import socket

        a, b = socket.socketpair()
        try:
            greenrt.lowlevel.wait_readable(a)
        finally:
            a.close()
            b.close()

    r = lab.run(uses_real_fd, seed=0)
    assert isinstance(r.error, lab.NondeterminismError)
    assert r.error.what.startswith("wait_readable(")


def test_blocked_recv_shows_in_the_deadlock_report():
    import greenrt
    from greenrt import net

    def silent_peer():
        with greenrt.region() as r:
            def server():
                with net.listen_tcp("127.0.0.1", 9) as lst:
                    s = lst.accept()
                    s.recv(10)  # the client never sends

            r.spawn(server, name="server")
            greenrt.sleep(0.01)
            with net.open_tcp("127.0.0.1", 9) as s:
                s.recv(10)  # and the server never sends either

    r = lab.run(silent_peer, seed=0)
    (v,) = r.violations_of("deadlock")
    assert "TransportStream.recv on stream #1" in v.message
