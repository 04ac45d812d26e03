"""The HTTP/1.1 server and client under the deterministic lab (virtual time, seeded
scheduling, simulated network): a cancelled client request, cancelled at each of its
checkpoints in turn, never leaves a broken or half-read connection in the pool, and
the lab's oracles (quiescence, no leaks, cancellation protocol) hold."""

from __future__ import annotations

import pytest

import greenrt
import greenrt.lab as lab


def _program():
    from greenrt import net
    from greenrt.protocols.http import HTTPServer, Response
    from greenrt.protocols.http1.client import Client

    def app(req):
        if req.path == "/echo":
            return Response(200, [], req.body.read_all())
        return Response(200, [], b"hello " + req.target.encode())

    lst = net.listen_tcp("127.0.0.1", 8080)
    srv = HTTPServer(app)
    sweeps = {}
    with greenrt.region() as r:
        r.spawn(srv.serve_listeners, [lst])
        greenrt.sleep(0.01)
        c = Client()
        for kind in ("get", "post"):
            for k in range(1, 500):
                with greenrt.cancel_scope(budget=greenrt.Budget(poll_quota=k)) as sc:
                    if kind == "get":
                        assert c.get("http://127.0.0.1:8080/x").content == b"hello /x"
                    else:
                        body = b"p" * 100000
                        assert c.request("POST", "http://127.0.0.1:8080/echo",
                                         body=body).content == body
                for idle in [c.pool.idle_connections(k) for k in c.pool.key_statistics()]:
                    for conn in idle:
                        assert not conn.stream.broken and conn.p.buffered == 0
                assert c.get(f"http://127.0.0.1:8080/probe{k}").content == b"hello /probe%d" % k
                if not sc.cancelled_caught:
                    sweeps[kind] = k
                    break
        c.close()
        srv.shutdown()
    return sweeps


@pytest.mark.parametrize("seed", [1, 2])
def test_cancellation_sweep_under_the_lab(seed):
    res = lab.run(_program, seed=seed)
    res.check()  # every oracle: quiescence, no leaks, cancellation protocol, no deadlock
    sweeps = res.value
    # each request kind was cancelled at each of its first k-1 checkpoints, then completed
    assert set(sweeps) == {"get", "post"} and all(k > 2 for k in sweeps.values()), sweeps
