"""``Stream.has_unread()``: a non-blocking peek that consumes nothing, on real TCP
streams and on the lab's simulated ones (pools rely on it to refuse reusing a
connection with bytes nobody asked for)."""

from __future__ import annotations

import greenrt
import greenrt.lab as lab
from greenrt import net


def _pair_program():
    out = {}
    listener = net.listen_tcp("127.0.0.1", 0)
    port = listener.address[1]
    with greenrt.region() as r:
        accepted = []
        r.spawn(lambda: accepted.append(listener.accept()))
        client = net.open_tcp("127.0.0.1", port)
        while not accepted:
            greenrt.sleep(0.001)
        server = accepted[0]
        out["empty"] = client.has_unread()
        server.send_all(b"xy")
        for _ in range(1000):
            if client.has_unread():
                break
            greenrt.sleep(0.001)
        out["after_send"] = client.has_unread()
        out["still_there"] = client.recv(10)      # the peek consumed nothing
        out["drained"] = client.has_unread()
        server.close()
        for _ in range(1000):
            if client.has_unread():
                break
            greenrt.sleep(0.001)
        out["after_eof"] = client.has_unread()
        client.close()
        out["closed"] = client.has_unread()
        listener.close()
    return out


EXPECTED = {"empty": False, "after_send": True, "still_there": b"xy", "drained": False,
            "after_eof": True, "closed": True}


def test_has_unread_on_real_tcp():
    assert greenrt.run(_pair_program) == EXPECTED


def test_has_unread_on_the_lab_network():
    res = lab.run(_pair_program, seed=1)
    res.check()
    assert res.value == EXPECTED
