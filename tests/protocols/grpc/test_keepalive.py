"""The keepalive ping policy: the sans-IO PingPolicy, a raw client flooding PINGs
(GOAWAY ENHANCE_YOUR_CALM "too_many_pings"), grpcio's client with an aggressive
keepalive (it gets the GOAWAY too), and a normal client that is never struck."""

from __future__ import annotations

import socket
import time

import grpc
import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenrt.protocols.grpc import GrpcLimits
from greenrt.protocols.grpc.keepalive import PingPolicy
from greenrt.protocols.grpc.server import Server

from .conftest import GrpcServerThread
from .interop_service import OurTestService
from .pb import SERVICE, pb2, pb2_grpc

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _frame(ftype, flags=0, sid=0, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes((ftype, flags)) + sid.to_bytes(4, "big") \
        + payload


PING = _frame(6, 0, 0, b"\0" * 8)


def test_policy_counts_strikes_and_clears_on_data():
    p = PingPolicy(min_ping_interval=10.0, max_ping_strikes=2)
    assert not p.inbound(PREFACE + PING, now=0.0)   # the first ping is free
    assert not p.inbound(PING, now=1.0)             # strike 1
    p.outbound(_frame(0, 0, 1, b"x"))                # we sent DATA: strikes cleared
    assert p.strikes == 0
    assert not p.inbound(PING, now=2.0)
    assert not p.inbound(PING, now=3.0)             # 1
    assert not p.inbound(PING, now=4.0)             # 2
    assert p.inbound(PING, now=5.0)                 # 3 > 2: trip
    g = p.goaway()
    assert g[3] == 7 and g[9:13] == b"\0\0\0\0" and g[13:17] == b"\0\0\0\x0b"
    assert g.endswith(b"too_many_pings")


def test_policy_ping_acks_and_slow_pings_are_fine():
    p = PingPolicy(min_ping_interval=10.0, max_ping_strikes=0)
    p.inbound(PREFACE, now=0)
    for i in range(5):
        assert not p.inbound(_frame(6, 1, 0, b"\0" * 8), now=i)  # ACKs do not count
        assert not p.inbound(PING, now=100.0 * (i + 1))          # 100 s apart


def test_policy_tracks_the_last_stream_id():
    p = PingPolicy()
    p.inbound(PREFACE + _frame(1, 4, 5, b"x" * 3) + _frame(1, 4, 3), now=0)
    assert p.last_stream_id == 5
    assert p.goaway()[9:13] == (5).to_bytes(4, "big")


@given(st.lists(st.integers(1, 40), max_size=10))
def test_policy_segmentation_independent(cuts):
    data = PREFACE + _frame(1, 4, 1, b"h" * 20) + PING * 5 + _frame(0, 1, 1, b"d" * 30) + PING * 4
    whole = PingPolicy(min_ping_interval=10.0, max_ping_strikes=3)
    whole.inbound(data, now=0)
    split = PingPolicy(min_ping_interval=10.0, max_ping_strikes=3)
    i = 0
    for c in cuts + [len(data)]:
        split.inbound(data[i:i + c], now=0)
        i += c
    split.inbound(data[i:], now=0)
    assert (whole.strikes, whole.tripped, whole.last_stream_id) == \
        (split.strikes, split.tripped, split.last_stream_id)


def test_on_ping_strikes_and_clears_on_sends():
    # the HTTP/2 server's path: it sees the PINGs and counts its HEADERS/DATA sends
    p = PingPolicy(min_ping_interval=10.0, max_ping_strikes=1)
    assert not p.on_ping(0.0, 0)          # the first ping is free
    assert not p.on_ping(1.0, 0)          # strike 1
    assert not p.on_ping(2.0, 3)          # the server sent since: cleared, no strike
    assert p.strikes == 0
    assert not p.on_ping(3.0, 3)          # 1
    assert p.on_ping(4.0, 3)              # 2 > 1: trip
    slow = PingPolicy(min_ping_interval=10.0, max_ping_strikes=0)
    assert not any(slow.on_ping(100.0 * i, 0) for i in range(5))  # 100 s apart


@pytest.fixture
def strict_server():
    srv = Server(limits=GrpcLimits(min_ping_interval=60.0, max_ping_strikes=2))
    srv.add_servicer(SERVICE, OurTestService())
    t = GrpcServerThread(srv).start()
    yield t
    t.stop()


def test_ping_flood_gets_goaway_too_many_pings(strict_server):
    sock = socket.create_connection(("127.0.0.1", strict_server.port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    goaway = None
    for i in range(10):
        conn.ping(b"%08d" % i)
        try:
            sock.sendall(conn.data_to_send())
        except OSError:
            break
    deadline = time.monotonic() + 10
    while goaway is None and time.monotonic() < deadline:
        data = sock.recv(65536)
        if not data:
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ConnectionTerminated):
                goaway = ev
    sock.close()
    assert goaway is not None, "no GOAWAY"
    assert goaway.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assert goaway.additional_data == b"too_many_pings"
    assert "too_many_pings" in strict_server.codes()


def test_pings_between_answered_calls_are_never_struck(strict_server):
    # each PING follows a response (HEADERS and DATA sent): the strikes are cleared
    # every time, so many more PINGs than max_ping_strikes pass; then a burst of
    # PINGs with nothing sent in between still trips the policy
    sock = socket.create_connection(("127.0.0.1", strict_server.port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    body = b"\0\0\0\0\0"  # one empty message
    answered = 0

    def pump(until):
        while not until():
            data = sock.recv(65536)
            if not data:
                return False
            for ev in conn.receive_data(data):
                nonlocal answered
                if isinstance(ev, h2.events.StreamEnded):
                    answered += 1
                if isinstance(ev, h2.events.ConnectionTerminated):
                    return ev
            sock.sendall(conn.data_to_send())
        return True

    for i in range(8):
        conn.ping(b"%08d" % i)
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"),
                                (":authority", "x"),
                                (":path", "/grpc.testing.TestService/EmptyCall"),
                                ("content-type", "application/grpc"), ("te", "trailers")])
        conn.send_data(sid, body, end_stream=True)
        sock.sendall(conn.data_to_send())
        assert pump(lambda i=i: answered == i + 1) is True
    assert "too_many_pings" not in strict_server.codes()
    for i in range(5):
        conn.ping(b"b%07d" % i)
    sock.sendall(conn.data_to_send())
    ended = pump(lambda: False)
    sock.close()
    assert isinstance(ended, h2.events.ConnectionTerminated)
    assert ended.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assert ended.additional_data == b"too_many_pings"
    assert "too_many_pings" in strict_server.codes()


def test_grpcio_aggressive_keepalive_is_told_too_many_pings(strict_server):
    opts = [("grpc.keepalive_time_ms", 10), ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0), ("grpc.http2.min_time_between_pings_ms", 10)]
    with grpc.insecure_channel(strict_server.target, options=opts) as ch:
        stub = pb2_grpc.TestServiceStub(ch)
        assert stub.EmptyCall(pb2.Empty()) == pb2.Empty()
        deadline = time.monotonic() + 20
        while "too_many_pings" not in strict_server.codes() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "too_many_pings" in strict_server.codes()
        # the channel reconnects (grpcio backs its keepalive off) and calls still work
        assert stub.EmptyCall(pb2.Empty(), timeout=10) == pb2.Empty()


def test_normal_client_is_never_struck(strict_server):
    with grpc.insecure_channel(strict_server.target) as ch:
        stub = pb2_grpc.TestServiceStub(ch)
        for _ in range(20):
            stub.UnaryCall(pb2.SimpleRequest(response_size=100000,
                                             payload=pb2.Payload(body=b"\0" * 100000)))
        req = pb2.StreamingOutputCallRequest(
            response_parameters=[pb2.ResponseParameters(size=50000)] * 50)
        assert len(list(stub.StreamingOutputCall(req))) == 50
    assert "too_many_pings" not in strict_server.codes()


@given(st.lists(st.tuples(st.sampled_from([0, 1, 6, 8]), st.integers(0, 1),
                          st.integers(0, 9), st.integers(0, 30)), max_size=12),
       st.lists(st.integers(1, 50), max_size=12))
def test_walker_sees_the_same_frames_however_split(frames, cuts):
    from greenrt.protocols.grpc.keepalive import _Walker

    data = PREFACE + b"".join(_frame(t, f, sid, b"p" * ln) for t, f, sid, ln in frames)
    expected = [(t, f, sid) for t, f, sid, _ in frames]
    for pieces in ([data], [data[i:i + 1] for i in range(len(data))], _split(data, cuts)):
        seen: list = []
        w = _Walker(24)
        for p in pieces:
            w.feed(p, lambda t, f, s, seen=seen: seen.append((t, f, s)))
        assert seen == expected


def _split(data, cuts):
    out, i = [], 0
    for c in cuts:
        out.append(data[i:i + c])
        i += c
    return out + [data[i:]]
