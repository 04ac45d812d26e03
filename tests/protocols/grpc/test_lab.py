"""gRPC under the lab: virtual time, seeded scheduling, the simulated network, our
server and our client in one program.

Cancellation lands on every checkpoint position of a call: call ``i`` of worker
``w`` runs under a poll quota of ``(w + i) % K + 1`` checkpoints, so across the run
the cancellation hits the first, second, ... checkpoint of a unary call and of a
bidirectional exchange (connect, open_stream, send, read head, read data, trailers;
on the server: read, handler, send). Checked for every run:

* a call that completed saw its own response, and the status the client saw is the
  handler's outcome (handlers raise NOT_FOUND for some requests);
* no lost flow-control window: the client acknowledged every DATA byte it got, and
  the server gave back the whole connection window (read after a PING round trip);
* no leaked stream: once the workers are done no handler is still running and the
  client connection has no open stream; the server's http2 connection counters show
  every stream it started ended;
* the lab's oracles (no leaked task or obligation, quiescence, the cancellation
  protocol) via ``res.check()``.
"""

from __future__ import annotations

import pytest

import greenrt
import greenrt.lab as lab
from greenrt import net
from greenrt.protocols.grpc import RpcError, StatusCode
from greenrt.protocols.grpc.client import Channel, Stub
from greenrt.protocols.grpc.server import Server

from .pb import SERVICE, pb2

pytestmark = pytest.mark.timeout(300)

PORT = 50051


class LabService:
    def __init__(self):
        self.active = 0
        self.outcomes: dict[str, str] = {}

    def UnaryCall(self, req, ctx):
        key = dict(ctx.metadata)["x-id"]
        self.active += 1
        try:
            greenrt.sleep(0.0001 * (req.response_size % 3))
            if req.response_size % 5 == 0:
                self.outcomes[key] = "not_found"
                raise RpcError(StatusCode.NOT_FOUND, key)
            self.outcomes[key] = "ok"
            return pb2.SimpleResponse(payload=pb2.Payload(body=key.encode()))
        except greenrt.Cancelled:
            self.outcomes[key] = "cancelled"
            raise
        finally:
            self.active -= 1

    def FullDuplexCall(self, requests, ctx):
        key = dict(ctx.metadata)["x-id"]
        self.active += 1
        try:
            for r in requests:
                ctx.send(pb2.StreamingOutputCallResponse(payload=r.payload))
            self.outcomes[key] = "ok"
        except greenrt.Cancelled:
            self.outcomes[key] = "cancelled"
            raise
        finally:
            self.active -= 1


def program(workers: int, rounds: int, k_max: int, base: int = 1) -> dict:
    svc = LabService()
    server = Server()
    server.add_servicer(SERVICE, svc)
    conns: list = []
    tally = {"ok": 0, "not_found": 0, "cancelled": 0, "bidi_ok": 0}
    mismatches: list = []

    def worker(w: int, stub):
        for i in range(rounds):
            key = f"{w}.{i}"
            quota = (w * rounds + i) % k_max + base
            bidi = i % 2 == 1
            with greenrt.cancel_scope(budget=greenrt.Budget(poll_quota=quota)) as sc:
                try:
                    if bidi:
                        call = stub.FullDuplexCall(metadata=[("x-id", key)])
                        for j in range(3):
                            call.send(pb2.StreamingOutputCallRequest(
                                payload=pb2.Payload(body=f"{key}/{j}".encode())))
                            got = next(call).payload.body
                            assert got == f"{key}/{j}".encode(), (key, got)
                        call.done()
                        assert list(call) == []
                        assert call.status == StatusCode.OK
                        tally["bidi_ok"] += 1
                        if svc.outcomes.get(key) != "ok":
                            mismatches.append((key, "ok", svc.outcomes.get(key)))
                    else:
                        size = w * rounds + i
                        try:
                            r = stub.UnaryCall(pb2.SimpleRequest(response_size=size),
                                               metadata=[("x-id", key)])
                            assert r.payload.body == key.encode(), (key, r.payload.body)
                            seen = "ok"
                        except RpcError as e:
                            assert e.status == StatusCode.NOT_FOUND, e
                            assert e.message == key
                            seen = "not_found"
                        tally[seen] += 1
                        if svc.outcomes.get(key) != seen:
                            mismatches.append((key, seen, svc.outcomes.get(key)))
                except RpcError as e:
                    # the server saw our reset before its reply: it was cancelled too
                    assert e.status == StatusCode.CANCELLED, e
            if sc.cancelled_caught:
                tally["cancelled"] += 1

    def handle(stream):
        conns.append(server.serve_connection(stream))

    servers: list = []

    def main():
        with greenrt.region() as outer:
            outer.spawn(lambda: net.serve_tcp(handle, "127.0.0.1", PORT,
                                              on_ready=servers.append))
            while not servers:
                greenrt.sleep(0.0001)
            ch = Channel("127.0.0.1", PORT)
            stub = Stub(ch, SERVICE)
            with greenrt.region() as rg:
                for w in range(workers):
                    rg.spawn(worker, w, stub)
            open_streams = ch._conn.open_streams if ch._conn is not None else 0
            # let the server see every reset, then check it is idle
            greenrt.sleep(0.05)
            active = svc.active
            # a PING round trip reads every frame the server sent before its ACK
            # (WINDOW_UPDATEs for the DATA it consumed or dropped)
            ch._conn.ping()
            cstats = ch._conn.statistics()
            ch.close()
            greenrt.sleep(0.01)
            servers[0].shutdown()
        return {**tally, "mismatches": mismatches, "client_open_streams": open_streams,
                "client_unacked": cstats["unacked_bytes"],
                "client_outbound_window": cstats["outbound_window"],
                "server_active": active, "connects": ch.connects,
                "server_streams_open": [c.statistics().get("streams_open", 0)
                                        if hasattr(c, "statistics") else len(c.streams)
                                        for c in conns]}

    return main()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cancellation_at_every_checkpoint(seed):
    # a unary call takes < 20 checkpoints, a 3-message bidi exchange < 50: quotas
    # 1..50 over 6 x 17 calls (odd rounds: both kinds get every quota) hit each one
    res = lab.run(program, 6, 17, 50, seed=seed)
    res.check()
    out = res.value
    assert out["mismatches"] == []
    assert out["ok"] + out["not_found"] + out["bidi_ok"] + out["cancelled"] == 6 * 17
    assert out["ok"] > 0 and out["bidi_ok"] > 0 and out["not_found"] > 0
    assert out["cancelled"] > 0
    assert out["client_open_streams"] == 0
    assert out["server_active"] == 0
    # no lost flow-control window either way: every DATA byte the client received was
    # acknowledged, and the server returned the whole connection window to the client
    assert out["client_unacked"] == 0
    assert out["client_outbound_window"] == 65535
    assert all(n == 0 for n in out["server_streams_open"])


def test_lab_run_is_deterministic():
    assert lab.check_determinism(program, 3, 6, 20, seed=5) is None
