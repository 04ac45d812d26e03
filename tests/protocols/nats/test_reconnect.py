"""Reconnect against real nats-server processes: restart mid-stream (subscriptions
replayed with their remaining auto-unsubscribe counts, pending publishes flushed, the
pending buffer's bound), a 3-node cluster for server-list failover and discovered
servers, lame-duck mode."""

from __future__ import annotations

import signal

import pytest

import greenrt
from greenrt.protocols import nats

from .conftest import free_port

pytestmark = pytest.mark.timeout(120)


def wait_for(pred, timeout=20.0, step=0.02):
    with greenrt.fail_after(timeout):
        while not pred():
            greenrt.sleep(step)


def test_restart_mid_stream_resubscribes_and_flushes_pending(nats_factory):
    srv = nats_factory(jetstream=False)
    port = srv.port

    def main():
        with nats.connect(srv.url, reconnect_wait=0.05, reconnect_jitter=0.01,
                          max_reconnect_attempts=-1, pending_size=64 * 1024) as nc:
            sub = nc.subscribe("s")
            limited = nc.subscribe("lim", max_msgs=5)
            nc.flush()
            for i in range(3):
                nc.publish("s", b"before %d" % i)
                nc.publish("lim", b"%d" % i)
            nc.flush()
            assert [sub.next_msg(timeout=5).data for _ in range(3)] == [b"before %d" % i for i in range(3)]
            assert [limited.next_msg(timeout=5).data for _ in range(3)] == [b"0", b"1", b"2"]
            greenrt.to_thread(srv.stop)
            wait_for(lambda: nc.state == "reconnecting")
            # while disconnected: publishes go to the bounded pending buffer
            for i in range(5):
                nc.publish("s", b"pending %d" % i)
                nc.publish("lim", b"p%d" % i)
            with pytest.raises(nats.PendingBufferFull) as ei:
                nc.publish("s", b"z" * (64 * 1024))
            assert ei.value.limit == "pending_size"
            before = nc.statistics()["pending_bytes"]
            assert 0 < before < 64 * 1024
            with pytest.raises(nats.NatsConnectionError):
                nc.flush()
            late_sub = nc.subscribe("late")  # made while disconnected: SUB sent once, on replay
            gone = nc.subscribe("gone")
            gone.unsubscribe()                # made and dropped while disconnected
            greenrt.to_thread(srv.start)
            nc.wait_connected(timeout=30)
            nc.publish("late", b"hi")
            nc.publish("gone", b"nobody")
            assert late_sub.next_msg(timeout=10).data == b"hi"
            nc.flush()
            assert nc.statistics()["unknown_sid"] == 0
            got = [sub.next_msg(timeout=10).data for _ in range(5)]
            assert got == [b"pending %d" % i for i in range(5)]
            # the auto-unsubscribe count survived: 2 of 5 remained after the 3 delivered
            assert [m.data for m in limited] == [b"p0", b"p1"]
            st = nc.statistics()
            assert st["reconnects"] == 1 and st["disconnects"] == 1
            assert st["pending_rejected"] == 1 and st["server"] == f"127.0.0.1:{port}"
    greenrt.run(main)


def test_no_reconnect_closes_and_fails_calls(nats_factory):
    srv = nats_factory(jetstream=False)

    def main():
        with nats.connect(srv.url, allow_reconnect=False) as nc:
            sub = nc.subscribe("x")
            nc.flush()
            greenrt.to_thread(srv.stop)
            wait_for(lambda: nc.state == "closed")
            with pytest.raises(nats.ClientClosed):
                nc.publish("x", b"1")
            with pytest.raises(nats.EndOfSubscription):
                sub.next_msg(timeout=5)
    greenrt.run(main)


def cluster(nats_factory, n=3):
    ports = [free_port() for _ in range(n)]
    cports = [free_port() for _ in range(n)]
    routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in cports)
    nodes = []
    for i in range(n):
        body = (f'server_name: "n{i}"\n'
                f'cluster {{ name: "c1", listen: "127.0.0.1:{cports[i]}", routes: [{routes}] }}\n')
        nodes.append(nats_factory(body, jetstream=False, port=ports[i], name=f"n{i}"))
    return nodes


def test_cluster_failover_and_discovered_servers(nats_factory):
    nodes = cluster(nats_factory)

    def main():
        # only the first node is given: the others are discovered from INFO
        with nats.connect(nodes[0].url, reconnect_wait=0.05, reconnect_jitter=0.01) as nc, \
                nats.connect(nodes[2].url) as other:
            wait_for(lambda: len(nc.servers) == 3)
            sub = nc.subscribe("c")
            nc.flush()
            wait_for(lambda: _delivered(other, sub, b"warm"), timeout=20)
            greenrt.to_thread(nodes[0].stop)
            nc.wait_connected(timeout=30)
            assert nc.connected_server.port != nodes[0].port
            assert nc.connected_server.discovered
            nc.flush()
            wait_for(lambda: _delivered(other, sub, b"after failover"), timeout=20)
    greenrt.run(main)


def _delivered(pub: nats.Client, sub: nats.Subscription, data: bytes) -> bool:
    """Publish ``data`` from ``pub`` and see if ``sub`` gets it (route interest
    propagates asynchronously in a cluster)."""
    pub.publish(sub.subject, data)
    pub.flush()
    try:
        while True:
            m = sub.next_msg(timeout=0.2)
            if m.data == data:
                return True
    except nats.RequestTimeout:
        return False


def test_lame_duck_mode_moves_to_another_server(nats_factory):
    nodes = cluster(nats_factory, 2)

    def main():
        ldm = []
        with nats.connect(nodes[0].url, reconnect_wait=0.05, reconnect_jitter=0.01,
                          on_lame_duck=lambda: ldm.append(True)) as nc:
            wait_for(lambda: len(nc.servers) == 2)
            nodes[0].signal(signal.SIGUSR2)  # nats-server: SIGUSR2 = lame-duck mode
            wait_for(lambda: ldm and nc.is_connected and nc.connected_server.port == nodes[1].port,
                     timeout=30)
            assert nc.statistics()["lame_duck"] >= 1
            nc.flush()
    greenrt.run(main)


def test_reconnect_attempts_are_bounded_then_closed(nats_factory):
    srv = nats_factory(jetstream=False)

    def main():
        with nats.connect(srv.url, reconnect_wait=0.01, max_reconnect_wait=0.02,
                          max_reconnect_attempts=3, connect_timeout=1) as nc:
            greenrt.to_thread(srv.stop)
            wait_for(lambda: nc.state == "closed", timeout=30)
            with pytest.raises(nats.ClientClosed):
                nc.wait_connected(timeout=1)
    greenrt.run(main)
