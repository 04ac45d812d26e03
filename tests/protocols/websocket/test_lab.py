"""WebSocket echo under the lab (virtual time, seeded scheduling, simulated network).

Cancellation is injected at every checkpoint position: receive number ``i`` runs
under a poll quota of ``i % K + 1`` checkpoints, so across the run the cancellation
lands on each checkpoint of ``recv`` (waiting for bytes, mid-fragment, between the
frames of a message). A cancelled ``recv`` is retried, and the messages must still
arrive complete and in order: none lost, none duplicated. A second program cancels
a whole connect/send/recv/close exchange at its k-th checkpoint for every k; the
lab's oracles (no leaked tasks or obligations, quiescence) must hold, and the
connection must be closed whatever was cut short.

Strict mode is off (``strict=False``): wsproto draws the handshake nonce and the
client's masking keys from ``os.urandom``, which the strict lab refuses. Those bytes
change frame contents only, never lengths or scheduling decisions, so the runs stay
deterministic (``test_lab_run_is_deterministic``).
"""

from __future__ import annotations

import pytest

import greenrt
import greenrt.lab as lab
from greenrt import net
from greenrt.protocols import websocket

from .conftest import ping_under_quota, recv_under_growing_quotas

pytestmark = pytest.mark.timeout(120)

PORT = 8765


def _server(r, servers, fragmenting=True):
    rng = lab.rng()

    def handler(ws):
        for m in ws:
            # think time so replies straddle the cancellations
            greenrt.sleep(rng.choice([0, 0, 0.0001, 0.0005]))
            ws.send(m)

    r.spawn(lambda: net.serve_tcp(websocket.serve_handler(handler), "127.0.0.1", PORT,
                                  on_ready=servers.append))
    while not servers:
        greenrt.sleep(0.0001)


def echo_program(messages: int, k_max: int) -> dict:
    tally = {"cancelled": 0, "received": []}
    servers = []
    with greenrt.region() as r:
        _server(r, servers)
        ws = websocket.connect(f"ws://127.0.0.1:{PORT}/", compression=False)

        def sender():
            for i in range(messages):
                # from one read to several per message, so cancellations land mid-message
                ws.send_text(f"message {i} " + "x" * (i * 9973 % 300_000))

        r.spawn(sender)
        recv_under_growing_quotas(ws, messages, k_max, tally)
        ws.close()
        tally["close_code"] = ws.close_code
        servers[0].shutdown()
    return tally


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cancelled_recv_loses_no_message_under_the_lab(seed):
    res = lab.run(echo_program, 40, 6, seed=seed, strict=False)
    res.check()
    out = res.value
    assert out["received"] == [str(i) for i in range(40)]
    assert out["cancelled"] > 0
    assert out["close_code"] == 1000


def exchange_program(k_max: int) -> dict:
    outcomes = {"completed": 0, "cut": 0, "open_after": 0}
    servers = []
    with greenrt.region() as r:
        _server(r, servers)
        for k in range(1, k_max + 1):
            ping_under_quota(lambda: websocket.connect(f"ws://127.0.0.1:{PORT}/"), k, outcomes)
        servers[0].shutdown()
    return outcomes


@pytest.mark.parametrize("seed", [1, 2])
def test_cancellation_at_every_checkpoint_of_an_exchange_leaks_nothing(seed):
    res = lab.run(exchange_program, 40, seed=seed, strict=False)
    res.check()
    out = res.value
    assert out["cut"] > 0 and out["completed"] > 0
    assert out["open_after"] == 0


def test_lab_run_is_deterministic():
    assert lab.check_determinism(echo_program, 10, 4, seed=5, strict=False) is None
