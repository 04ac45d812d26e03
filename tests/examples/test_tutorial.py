"""The tutorial's service (``examples/tutorial/hits.py``, ``docs/tutorial.md``), tested
the two ways the tutorial shows: against a real redis-server over real sockets, and
under the lab (virtual time, simulated network, an in-lab Redis) where a slow Redis
and a lost update are found deterministically."""

from __future__ import annotations

import functools
import importlib.util
import pathlib

import greenrt
import greenrt.lab as lab
from greenrt import net
from greenrt.protocols.http1 import Client
from greenrt.protocols.redis import Redis
from greenrt.protocols.redis.resp import NEED_DATA, Decoder, SimpleString, encode

_PATH = pathlib.Path(__file__).resolve().parents[2] / "examples" / "tutorial" / "hits.py"
_spec = importlib.util.spec_from_file_location("tutorial_hits", _PATH)
hits = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hits)


def test_the_service_against_a_real_redis(redis):
    def main():
        ready = []
        with greenrt.region() as r:
            r.spawn(hits.main, 0, redis.port, ready.append)
            while not ready:
                greenrt.sleep(0.001)
            base = f"http://127.0.0.1:{ready[0].addresses[0][1]}"
            with Client() as c:
                with greenrt.region() as clients:  # 20 concurrent hits: none lost
                    for _ in range(20):
                        clients.spawn(c.request, "POST", f"{base}/hit/home")
                assert c.get(f"{base}/hits/home").content == b"20\n"
                assert c.get(f"{base}/nope").status == 404
            ready[0].shutdown()

    greenrt.run(main)


# -- under the lab -------------------------------------------------------------------

REDIS_PORT = 6379


def lab_redis(stream, store: dict, delay: float) -> None:
    """Just enough Redis for the service (HELLO, GET, SET, INCR) on the lab's simulated
    network, answering each command after ``delay`` virtual seconds plus a random
    (seeded) think time, so requests interleave."""
    rng = lab.rng()
    dec = Decoder()
    while data := stream.recv(65536):
        dec.receive_data(data)
        while (cmd := dec.next_event()) is not NEED_DATA:
            name = bytes(cmd[0]).upper()
            greenrt.sleep(delay + rng.choice([0, 0.001, 0.002]))
            if name == b"HELLO":
                reply = {b"server": b"lab", b"proto": 3}
            elif name == b"GET":
                reply = store.get(bytes(cmd[1]))
            elif name == b"SET":
                store[bytes(cmd[1])] = bytes(cmd[2])
                reply = SimpleString(b"OK")
            elif name == b"INCR":
                store[bytes(cmd[1])] = b"%d" % (int(store.get(bytes(cmd[1]), b"0")) + 1)
                reply = int(store[bytes(cmd[1])])
            else:
                reply = SimpleString(b"OK")
            stream.send_all(encode(reply, protocol=3))


def service_program(clients: int, *, naive: bool = False, redis_delay: float = 0.0):
    """The service and ``clients`` concurrent POSTs, all in the lab; returns the
    statuses and the final count."""
    store: dict = {}
    statuses = []
    with greenrt.region() as r:
        ready = []
        r.spawn(functools.partial(net.serve_tcp, lambda s: lab_redis(s, store, redis_delay),
                                  "127.0.0.1", REDIS_PORT, on_ready=ready.append))
        while not ready:
            greenrt.sleep(0.0001)
        with Redis("127.0.0.1", REDIS_PORT, health_check_interval=None) as redis:
            servers = []
            r.spawn(functools.partial(hits.http.serve, hits.make_handler(redis, naive=naive),
                                      "127.0.0.1", 8080, on_ready=servers.append))
            while not servers:
                greenrt.sleep(0.0001)
            with Client() as c:
                with greenrt.region() as rc:
                    for _ in range(clients):
                        rc.spawn(lambda: statuses.append(
                            c.request("POST", "http://127.0.0.1:8080/hit/home").status))
            servers[0].shutdown()
        ready[0].shutdown()
    return {"statuses": sorted(statuses), "count": int(store.get(b"hits:home", b"0"))}


def test_a_slow_redis_gives_503_within_the_deadline_in_virtual_time():
    res = lab.run(functools.partial(service_program, 3, redis_delay=1.0), seed=1)
    res.check()
    assert res.value["statuses"] == [503, 503, 503]  # 0.25 s deadline, 1 s Redis
    assert res.stats["virtual_time"] < 30  # virtual seconds: the test takes milliseconds


def test_incr_never_loses_a_hit_across_schedules():
    out = lab.explore(counted, 3, runs=20, seed=7, strategy="random")
    assert out.failures == [] and out.runs == 20


def counted(clients: int, naive: bool = False) -> dict:
    """The program explored: every hit must be counted."""
    v = service_program(clients, naive=naive)
    assert v["statuses"] == [200] * clients
    assert v["count"] == clients, f"lost update: {clients} hits counted as {v['count']}"
    return v


def test_the_lab_finds_the_lost_update_of_get_then_set():
    out = lab.explore(counted, 3, True, runs=50, seed=7, strategy="random")
    assert out.failures, "the read-modify-write race was not found in 50 schedules"
    first = out.failures[0]
    assert any("AssertionError" in s for s in first.signature), first.signature
    # the failing schedule replays exactly from its token
    again = lab.replay_token(first.token, counted)
    assert again.reproduced
    assert "lost update" in repr(again.result.error)
