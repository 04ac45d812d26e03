"""Under the lab (virtual time, seeded scheduling, the simulated network) against a
scripted in-lab NATS server, with cancellation injected at every checkpoint position
(call ``k`` of a worker runs under a poll quota of ``k % K + 1``) plus random
``cancel()`` from a chaos task:

* request/reply: a cancelled request never receives another request's reply (every
  completed request checks its own); the lab's oracles (no leaked obligations or tasks,
  quiescence, the cancellation protocol) hold;
* JetStream fetch: every message the server delivered ends acked or nacked (a
  cancelled fetch nacks what it collected; unfetched deliveries are nacked at
  unsubscribe), none is acked twice, and no obligation leaks.
"""

from __future__ import annotations

import json

import pytest

import greenrt
import greenrt.lab as lab
from greenrt import net
from greenrt.protocols import nats

pytestmark = pytest.mark.timeout(180)

PORT = 4222
INFO = b'INFO {"server_id":"lab","max_payload":1048576,"headers":true,"proto":1}\r\n'


def matches(pattern: str, subject: str) -> bool:
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)


def scripted_server(stream, acks: dict, delivered: list) -> None:
    """A minimal NATS server: CONNECT, PING/PONG, SUB/UNSUB, PUB/HPUB. A PUB to ``svc``
    with a reply subject is answered after a random (virtual) think time; a PUB to
    ``$JS.API.CONSUMER.MSG.NEXT.S.C`` delivers ``batch`` stream messages with ack
    subjects; PUBs to ``$JS.ACK...`` are recorded in ``acks``."""
    rng = lab.rng()
    subs: dict[int, str] = {}
    buf = bytearray()
    stream.send_all(INFO)
    seq = [len(delivered)]

    def deliver(subject: str, payload: bytes, reply: str | None = None) -> bytes:
        out = b""
        for sid, pat in list(subs.items()):
            if matches(pat, subject):
                r = (" " + reply) if reply else ""
                out += b"MSG %s %d%s %d\r\n%s\r\n" % (subject.encode(), sid, r.encode(),
                                                      len(payload), payload)
        return out

    while True:
        while b"\r\n" not in buf:
            data = stream.recv(65536)
            if not data:
                return
            buf += data
        i = buf.index(b"\r\n")
        line = bytes(buf[:i]).decode()
        parts = line.split()
        op = parts[0].upper()
        if op in ("PUB", "HPUB"):
            size = int(parts[-1])
            while len(buf) < i + 2 + size + 2:
                data = stream.recv(65536)
                if not data:
                    return
                buf += data
            body = bytes(buf[i + 2:i + 2 + size])
            del buf[:i + 2 + size + 2]
            subject = parts[1]
            reply = parts[2] if len(parts) == (4 if op == "PUB" else 5) else None
            if op == "HPUB":
                body = body[int(parts[-2]):]
            if subject == "svc" and reply:
                greenrt.sleep(rng.choice([0, 0.0001, 0.0005, 0.002]))
                stream.send_all(deliver(reply, b"re:" + body))
            elif subject == "$JS.API.CONSUMER.MSG.NEXT.S.C" and reply:
                req = json.loads(body)
                greenrt.sleep(rng.choice([0, 0.0001, 0.0005]))
                out = b""
                for _ in range(int(req["batch"])):
                    seq[0] += 1
                    n = seq[0]
                    delivered.append(n)
                    out += deliver(reply, b"m%d" % n, f"$JS.ACK.S.C.1.{n}.{n}.0.0")
                stream.send_all(out)
            elif subject.startswith("$JS.ACK."):
                n = int(subject.split(".")[5])
                acks.setdefault(n, []).append(body)
            continue
        del buf[:i + 2]
        if op == "PING":
            stream.send_all(b"PONG\r\n")
        elif op == "SUB":
            subs[int(parts[-1])] = parts[1]
        elif op == "UNSUB":
            subs.pop(int(parts[1]), None)


def with_server(body, *args):
    servers = []
    acks: dict = {}
    delivered: list = []
    with greenrt.region() as outer:
        outer.spawn(lambda: net.serve_tcp(lambda s: scripted_server(s, acks, delivered),
                                          "127.0.0.1", PORT, on_ready=servers.append))
        while not servers:
            greenrt.sleep(0.0001)
        try:
            out = body(*args)
        finally:
            servers[0].shutdown()
    return out, acks, delivered


def chaos(rng, active: dict, stop: list):
    while not stop:
        greenrt.sleep(rng.choice([0.0001, 0.0003, 0.001]))
        if active and rng.random() < 0.5:
            rng.choice(list(active.values())).cancel("chaos")


def request_program(workers: int, rounds: int, k_max: int) -> dict:
    rng = lab.rng()
    active: dict = {}
    tally = {"ok": 0, "cancelled": 0, "timeout": 0}

    def body():
        with nats.connect(f"nats://127.0.0.1:{PORT}", ping_interval=0, rng=rng) as nc, \
                greenrt.region() as rg:
            stop: list = []
            rg.spawn(chaos, rng, active, stop)

            def worker(w):
                for i in range(rounds):
                    payload = f"w{w}.{i}".encode()
                    with greenrt.cancel_scope(
                            budget=greenrt.Budget(poll_quota=(w + i) % k_max + 1)) as sc:
                        active[id(sc)] = sc
                        try:
                            r = nc.request("svc", payload, timeout=1.0)
                            assert r.data == b"re:" + payload, (r.data, payload)
                            tally["ok"] += 1
                        except nats.RequestTimeout:
                            tally["timeout"] += 1
                        finally:
                            active.pop(id(sc), None)
                    if sc.cancelled_caught:
                        tally["cancelled"] += 1

            with greenrt.region() as wr:
                for w in range(workers):
                    wr.spawn(worker, w)
            stop.append(True)
            # give every in-flight reply time to land: late ones are dropped, counted
            greenrt.sleep(0.05)
            st = nc.statistics()
        return {**tally, "late": st["late_replies"], "outstanding": st["outstanding_requests"]}

    return with_server(body)[0]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_request_reply_under_cancellation_injection(seed):
    res = lab.run(request_program, 8, 20, 8, seed=seed)
    res.check()
    out = res.value
    assert out["ok"] + out["cancelled"] + out["timeout"] == 8 * 20
    assert out["ok"] > 0 and out["cancelled"] > 0
    assert out["late"] > 0  # cancelled requests' replies did arrive, and were dropped
    assert out["outstanding"] == 0


def fetch_program(workers: int, rounds: int, k_max: int) -> dict:
    rng = lab.rng()
    active: dict = {}
    tally = {"acked": 0, "cancelled": 0}

    def body():
        with nats.connect(f"nats://127.0.0.1:{PORT}", ping_interval=0, rng=rng) as nc, \
                greenrt.region() as rg:
            stop: list = []
            rg.spawn(chaos, rng, active, stop)
            js = nc.jetstream()
            ps = js.pull_subscribe("S", "C", create=False)

            def worker(w):
                for i in range(rounds):
                    with greenrt.cancel_scope(
                            budget=greenrt.Budget(poll_quota=(w + i) % k_max + 1)) as sc:
                        active[id(sc)] = sc
                        try:
                            for m in ps.fetch(rng.choice([1, 2, 3]), timeout=0.01):
                                m.ack()
                                tally["acked"] += 1
                        finally:
                            active.pop(id(sc), None)
                    if sc.cancelled_caught:
                        tally["cancelled"] += 1

            with greenrt.region() as wr:
                for w in range(workers):
                    wr.spawn(worker, w)
            stop.append(True)
            greenrt.sleep(0.05)  # every delivery has arrived
            ps.unsubscribe()     # nacks what was delivered but never fetched
            nc.flush()
            return dict(tally, stats=dict(ps.stats))

    out, acks, delivered = with_server(body)
    out["delivered"] = list(delivered)
    out["acks"] = {k: list(v) for k, v in acks.items()}
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_jetstream_fetch_under_cancellation_injection(seed):
    res = lab.run(fetch_program, 6, 15, 10, seed=seed)
    res.check()  # includes: no obligation leaked
    out = res.value
    acks = out["acks"]
    assert out["delivered"], "the server delivered nothing"
    missing = [n for n in out["delivered"] if n not in acks]
    assert not missing, f"delivered but neither acked nor nacked: {missing}"
    assert all(v.count(b"+ACK") <= 1 for v in acks.values())
    assert all(len(v) == 1 for v in acks.values()), "a message resolved twice"
    assert out["cancelled"] > 0 and out["acked"] > 0
    assert sum(1 for v in acks.values() if v == [b"-NAK"]) > 0


def test_lab_request_program_is_deterministic():
    assert lab.check_determinism(request_program, 4, 6, 5, seed=7) is None


def deadline_program() -> dict:
    """Request deadlines in virtual time, against a server that never answers
    ``nobody``: a short timeout issued after a long one wakes the deadline keeper
    early; a cancelled request's queued deadline wakes nobody; a shorter enclosing
    deadline wins over the request's own timeout."""
    rng = lab.rng()

    def body():
        with nats.connect(f"nats://127.0.0.1:{PORT}", ping_interval=0, rng=rng) as nc:
            got: dict = {}
            scopes: dict = {}

            def req(name, timeout, delay):
                greenrt.sleep(delay)
                start = greenrt.now()
                with greenrt.cancel_scope() as sc:
                    scopes[name] = sc
                    try:
                        nc.request("nobody", b"", timeout=timeout)
                        got[name] = "answered"
                    except nats.RequestTimeout:
                        got[name] = round(greenrt.now() - start, 6)
                if sc.cancelled_caught:
                    got[name] = ("cancelled", round(greenrt.now() - start, 6))

            with greenrt.region() as rg:
                rg.spawn(req, "long", 5.0, 0)
                rg.spawn(req, "short", 0.2, 0.01)
                rg.spawn(req, "cancelled", 0.3, 0.02)
                rg.spawn(req, "same-timeout", 0.3, 0.03)
                greenrt.sleep(0.1)
                scopes["cancelled"].cancel()
            with greenrt.move_on_after(0.25) as sc:
                nc.request("nobody", b"", timeout=5.0)
            st = nc.statistics()
            return {"got": got, "enclosing_won": sc.cancelled_caught,
                    "outstanding": st["outstanding_requests"], "late": st["late_replies"]}

    return with_server(body)[0]


@pytest.mark.parametrize("seed", [1, 2])
def test_request_deadlines_in_virtual_time(seed):
    res = lab.run(deadline_program, seed=seed)
    res.check()
    out = res.value
    assert out["got"] == {"long": 5.0, "short": 0.2, "cancelled": ("cancelled", 0.08),
                          "same-timeout": 0.3}
    assert out["enclosing_won"] is True
    assert out["outstanding"] == 0
