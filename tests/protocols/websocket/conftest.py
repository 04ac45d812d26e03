"""Shared helpers for the WebSocket tests: a greenrt server on loopback, trustme
certificates, and a `websockets` (sync API) peer in a thread."""

import threading

import pytest
import trustme

import greenrt
from greenrt import net
from greenrt.protocols import tls


@pytest.fixture(scope="session")
def pki():
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    return {
        "ca": ca,
        "ca_pem": ca.cert_pem.bytes(),
        "chain": b"".join(b.bytes() for b in leaf.cert_chain_pems),
        "key": leaf.private_key_pem.bytes(),
    }


def serve(r, handler, **kw):
    """Start ``net.serve_tcp(handler)`` on a free loopback port inside region ``r``."""
    servers = []
    r.spawn(lambda: net.serve_tcp(handler, "127.0.0.1", 0, on_ready=servers.append, **kw))
    while not servers:
        greenrt.sleep(0)
    return servers[0], servers[0].addresses[0][1]


def tls_server_ctx(pki):
    return tls.server_context(cert_pem=pki["chain"], key_pem=pki["key"])


def tls_client_ctx(pki):
    return tls.client_context(cadata=pki["ca_pem"])


class ThreadPeer:
    """Run ``fn`` in a real OS thread (a peer library's blocking API); ``join``
    re-raises its exception in the test."""

    def __init__(self, fn):
        self.result = None
        self.error = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn):
        try:
            self.result = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in join
            self.error = e

    def join_green(self, timeout=30):
        """Wait for the thread without blocking the hub."""
        deadline = greenrt.now() + timeout
        while self.thread.is_alive():
            assert greenrt.now() < deadline, "peer thread did not finish"
            greenrt.sleep(0.005)
        if self.error is not None:
            raise self.error
        return self.result


def recv_under_growing_quotas(ws, messages: int, k_max: int, tally: dict) -> None:
    """Receive ``messages`` messages, each first under a poll quota of ``i % k_max + 1``
    that is raised by one after every cancellation, so a cancellation lands at each
    checkpoint of a receive in turn; counts them in ``tally["cancelled"]`` and records
    each message's number in ``tally["received"]`` (the lab echo programs' core)."""
    for i in range(messages):
        quota = i % k_max + 1
        while True:
            with greenrt.cancel_scope(budget=greenrt.Budget(poll_quota=quota)) as sc:
                got = ws.recv()
            if not sc.cancelled_caught:
                break
            tally["cancelled"] += 1
            quota += 1
        tally["received"].append(got.split(" ", 2)[1])


def ping_under_quota(connect, k: int, outcomes: dict) -> None:
    """Open a WebSocket with ``connect()``, echo one ping message and close, all under a
    poll quota of ``k`` (so the cancellation lands at the k-th checkpoint of the
    exchange); count the exchange in ``outcomes["cut"]`` or ``["completed"]``, and in
    ``["open_after"]`` if its transport was left open."""
    holder = {}
    with greenrt.cancel_scope(budget=greenrt.Budget(poll_quota=k)) as sc:
        ws = connect()
        holder["ws"] = ws
        try:
            ws.send_text("ping " * 100)
            assert ws.recv() == "ping " * 100
            ws.close()
        finally:
            if not ws.closed:
                ws.close()
    ws = holder.get("ws")
    if sc.cancelled_caught:
        outcomes["cut"] += 1
    else:
        outcomes["completed"] += 1
    if ws is not None and not ws._stream.closed:
        outcomes["open_after"] += 1
