"""The HTTP/2 client and server under the deterministic lab (virtual time, seeded
scheduling, simulated network): a small multi-stream exchange (a download and an
upload at once on one connection) cancelled at each of its checkpoints in turn. After
every cut: no stream is left open on either side, no byte of window is lost (the
client has acknowledged everything it received, and the server everything it got:
our outbound connection window is whole again), the connection still serves a
request, and the lab's oracles (quiescence, no leaks, cancellation protocol) hold."""

from __future__ import annotations

import pytest

import greenrt
import greenrt.lab as lab


def _program():
    from greenrt import net
    from greenrt.protocols import http2
    from greenrt.protocols.http.model import Response, StreamingResponse
    from greenrt.protocols.http2.server import ServerConnection

    def app(req):
        if req.path == "/big":
            return StreamingResponse(200, [], (b"d" * 16384 for _ in range(6)))
        return Response(200, [], b"%d" % len(req.body.read_all()))

    server_conns = []

    def handle(stream):
        sc = ServerConnection(stream, app, http2.DEFAULT_H2_LIMITS, "http", None)
        server_conns.append(sc)
        try:
            sc.run(b"")
        finally:
            stream.close()

    lst = net.listen_tcp("127.0.0.1", 8080)
    srv = net.Server([lst], handle, name="h2lab")
    cuts = 0
    with greenrt.region() as r:
        r.spawn(srv.serve)
        greenrt.sleep(0.01)
        conn = http2.connect("127.0.0.1", 8080)
        results: dict = {}

        def download():
            s = conn.open_stream("GET", "/big", end_stream=True)
            s.response_headers()
            results["down"] = len(s.read_all())

        def upload():
            s = conn.open_stream("POST", "/up")
            for _ in range(3):
                s.send_data(b"u" * 30000)
            s.end()
            s.response_headers()
            results["up"] = s.read_all()

        for k in range(1, 2000):
            results.clear()
            with greenrt.cancel_scope(budget=greenrt.Budget(poll_quota=k)) as sc:
                with greenrt.region() as ex:
                    ex.spawn(download)
                    ex.spawn(upload)
            conn.ping()  # a round trip: the server has seen our resets and acks
            greenrt.sleep(0.01)
            st = conn.statistics()
            assert st["streams_open"] == 0, (k, st)
            assert st["unacked_bytes"] == 0 and st["buffered_bytes"] == 0, (k, st)
            assert st["outbound_window"] == 65535, (k, st)  # the server acked every byte
            assert all(not c.streams for c in server_conns), k  # no stuck stream there
            s = conn.open_stream("GET", f"/probe{k}", end_stream=True)
            assert s.response_headers()[0] == 200 and s.read_all() == b"0"
            if not sc.cancelled_caught:
                assert results == {"down": 6 * 16384, "up": b"90000"}
                break
            cuts += 1
        conn.close()
        srv.shutdown()
    return cuts


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cancellation_sweep_multi_stream(seed):
    res = lab.run(_program, seed=seed)
    res.check()  # quiescence, no leaks, cancellation protocol, no deadlock
    # the exchange was cut at each of its first checkpoints in turn, then completed
    assert res.value > 10, res.value
