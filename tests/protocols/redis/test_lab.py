"""The CVE-class test under the lab: virtual time, seeded scheduling, the simulated
network, and a scripted in-lab Redis server.

Cancellation is injected at *every* checkpoint position of a call: call number ``k``
of each worker runs under a poll quota of ``k % K + 1`` checkpoints, so across the
run the cancellation lands on the first, second, ... checkpoint of the SET/GET/ECHO
sequence (acquire, connect, send, recv, ...), plus random ``cancel()`` from a chaos
task driven by the lab's seeded RNG. Every completed call must see its own reply,
and the lab's oracles (no leaked obligations or tasks, quiescence, the cancellation
protocol) must hold.
"""

from __future__ import annotations

import pytest

import greenrt
import greenrt.lab as lab
from greenrt import net
from greenrt.protocols.redis import Redis
from greenrt.protocols.redis.resp import NEED_DATA, Decoder, SimpleString, encode

pytestmark = pytest.mark.timeout(120)

PORT = 6379


def scripted_server(stream, store: dict, inject: float = 0.0) -> None:
    """A minimal Redis: HELLO, PING, SET, GET, ECHO (one keyspace shared by every
    connection); replies in order, with a random (virtual) think time per command
    so replies straddle cancellations. With ``inject`` > 0, that fraction of replies
    is followed (in the same write) by an unsolicited ``INJECTED`` bulk string: a reply
    too many, which must never reach a caller."""
    rng = lab.rng()
    dec = Decoder()
    proto = 2
    while True:
        data = stream.recv(65536)
        if not data:
            return
        dec.receive_data(data)
        while (cmd := dec.next_event()) is not NEED_DATA:
            name = bytes(cmd[0]).upper()
            greenrt.sleep(rng.choice([0, 0, 0.0001, 0.0005]))
            if name == b"HELLO":
                proto = int(cmd[1])
                reply = {b"server": b"lab", b"proto": proto}
            elif name == b"PING":
                reply = SimpleString(b"PONG")
            elif name == b"SET":
                store[bytes(cmd[1])] = bytes(cmd[2])
                reply = SimpleString(b"OK")
            elif name == b"GET":
                reply = store.get(bytes(cmd[1]))
            elif name == b"ECHO":
                reply = bytes(cmd[1])
            else:
                from greenrt.protocols.redis.errors import ReplyError

                reply = ReplyError("ERR unknown command")
            out = encode(reply, protocol=proto)
            if inject and name != b"HELLO" and rng.random() < inject:
                out += encode(b"INJECTED", protocol=proto)
            stream.send_all(out)


def program(workers: int, rounds: int, k_max: int, drain: float, inject: float = 0.0) -> dict:
    rng = lab.rng()
    active: dict[int, greenrt.CancelScope] = {}
    tally = {"ok": 0, "cancelled": 0}

    def worker(w: int, r: Redis):
        for i in range(rounds):
            val = f"v{w}.{i}"
            quota = (w + i) % k_max + 1
            with greenrt.cancel_scope(budget=greenrt.Budget(poll_quota=quota)) as sc:
                active[id(sc)] = sc
                try:
                    assert r.set(f"k{w}", val) is True
                    got = r.get(f"k{w}")
                    assert got == val.encode(), f"worker {w}: got {got!r}, expected {val!r}"
                    echoed = r.echo(val)
                    assert echoed == val.encode(), f"worker {w}: echo {echoed!r} for {val!r}"
                    tally["ok"] += 1
                finally:
                    active.pop(id(sc), None)
            if sc.cancelled_caught:
                tally["cancelled"] += 1

    def chaos(stop):
        while not stop:
            greenrt.sleep(rng.choice([0.0001, 0.0003, 0.001]))
            if active and rng.random() < 0.5:
                rng.choice(list(active.values())).cancel("chaos")

    servers = []

    def main():
        with greenrt.region() as outer:
            store: dict = {}
            outer.spawn(lambda: net.serve_tcp(lambda s: scripted_server(s, store, inject), "127.0.0.1",
                                              PORT, on_ready=servers.append))
            while not servers:
                greenrt.sleep(0.0001)
            stop: list = []
            outer.spawn(chaos, stop)
            with Redis("127.0.0.1", PORT, max_connections=4, drain_timeout=drain,
                       health_check_interval=None) as r:
                with greenrt.region() as rg:
                    for w in range(workers):
                        rg.spawn(worker, w, r)
                st = r.pool.statistics()
            stop.append(True)
            servers[0].shutdown()
        return {**tally, **st}

    return main()


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("drain", [0.0, 0.01], ids=["discard", "drain"])
def test_cve_class_under_the_lab(seed, drain):
    res = lab.run(program, 12, 24, 120, drain, seed=seed)
    res.check()
    out = res.value
    assert out["ok"] + out["cancelled"] == 12 * 24
    assert out["ok"] > 0 and out["cancelled"] > 0
    assert out["in_use"] == 0 and out["waiting"] == 0
    assert out["discarded"] + out["drained"] > 0  # replies were owed when cancelled


@pytest.mark.parametrize("seed", [4, 5])
def test_replies_too_many_under_the_lab_with_cancellation(seed):
    """Issue 13 under the lab: 10% of replies come with an unsolicited extra frame while
    cancellations land on every checkpoint; every completed call still sees its own
    reply (the workers assert it) and each poisoned connection is discarded."""
    res = lab.run(program, 8, 16, 60, 0.0, 0.1, seed=seed)
    res.check()
    out = res.value
    assert out["ok"] + out["cancelled"] == 8 * 16 and out["ok"] > 0
    assert out["discard_reasons"].get("decoder_buffered", 0) + \
        out["discard_reasons"].get("socket_readable", 0) > 0


def test_lab_run_is_deterministic():
    assert lab.check_determinism(program, 6, 8, 20, 0.0, seed=5) is None
