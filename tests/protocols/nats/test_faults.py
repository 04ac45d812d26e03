"""Parser faults over a real socket, against a scripted peer (a real nats-server never
sends these): each bad input is a typed protocol error, the connection is dropped
(never resynchronised) and the client reconnects, replays its subscription and keeps
working."""

from __future__ import annotations

import socket

import pytest

import greenrt
from greenrt.protocols import nats

from ...scripted_peer import ScriptedPeer

pytestmark = pytest.mark.timeout(60)

INFO = b'INFO {"server_id":"scripted","max_payload":1024,"headers":true,"proto":1}\r\n'


def read_until(c: socket.socket, buf: bytearray, token: bytes) -> bytes:
    while token not in buf:
        d = c.recv(65536)
        if not d:
            raise OSError("closed")
        buf += d
    i = buf.index(token) + len(token)
    out = bytes(buf[:i])
    del buf[:i]
    return out


def handshake(c, buf):
    c.sendall(INFO)
    read_until(c, buf, b"PING\r\n")
    c.sendall(b"PONG\r\n")


def make_peer(bad: bytes):
    state = {"conns": 0, "after_bad": []}

    def serve(c):
        state["conns"] += 1
        n = state["conns"]
        buf = bytearray()
        handshake(c, buf)
        read_until(c, buf, b"SUB fault 1\r\n")
        if n == 1:
            # the bad input, followed by a well-formed MSG that must never be delivered
            c.sendall(bad + b"MSG fault 1 6\r\nresync\r\n")
            try:
                while c.recv(65536):
                    pass
            except OSError:
                pass
            return
        c.sendall(b"MSG fault 1 4\r\ngood\r\n")
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
                if b"PING\r\n" in buf:
                    buf.clear()
                    c.sendall(b"PONG\r\n")
        except OSError:
            return

    return ScriptedPeer(serve), state


@pytest.mark.parametrize("bad,code", [
    (b"MSG " + b"x" * 5000, "limit_exceeded"),                  # control line without CRLF
    (b"MSG fault 1 2048\r\n" + b"y" * 2048 + b"\r\n", "limit_exceeded"),  # > max_payload
    (b"MSG fault 1 3\r\nabcXX", "bad_terminator"),
    (b"INFO {oops\r\n", "bad_info"),
    (b"WHAT\r\n", "unknown_op"),
], ids=["long-line", "max-payload", "terminator", "bad-info", "unknown-op"])
def test_bad_input_is_a_protocol_error_then_a_reconnect(bad, code):
    peer, state = make_peer(bad)
    errors = []

    def main():
        with nats.connect(f"nats://127.0.0.1:{peer.port}", reconnect_wait=0.01,
                          reconnect_jitter=0.0) as nc:
            sub = nc.subscribe("fault")
            m = sub.next_msg(timeout=10)
            assert m.data == b"good"  # the 'resync' message after the fault never arrived
            st = nc.statistics()
            assert st["protocol_errors"] == 1 and st["reconnects"] == 1
            errors.append(nc.last_error)
            nc.flush(timeout=5)

    try:
        greenrt.run(main)
    finally:
        peer.close()
    assert state["conns"] == 2
    err = errors[0]
    assert isinstance(err, nats.ProtocolError) and err.code == code


def test_handshake_error_reply_is_typed():
    def serve(c):
        buf = bytearray()
        c.sendall(INFO)
        read_until(c, buf, b"PING\r\n")
        c.sendall(b"-ERR 'Authorization Violation'\r\n")

    peer = ScriptedPeer(serve)

    def main():
        with pytest.raises(nats.AuthorizationError):
            with nats.connect(f"nats://127.0.0.1:{peer.port}"):
                pass
    try:
        greenrt.run(main)
    finally:
        peer.close()


def test_no_info_first_is_a_protocol_error():
    def serve(c):
        c.sendall(b"PONG\r\n")
        c.recv(100)

    peer = ScriptedPeer(serve)

    def main():
        with pytest.raises(nats.NatsConnectionError, match="scripted|any server"):
            with nats.connect(f"nats://127.0.0.1:{peer.port}"):
                pass
    try:
        greenrt.run(main)
    finally:
        peer.close()


def _peer_with(behaviour):
    """A peer whose first connection runs ``behaviour(c, buf)`` after the handshake;
    later connections answer PINGs forever."""
    state = {"conns": 0}

    def serve(c):
        state["conns"] += 1
        buf = bytearray()
        handshake(c, buf)
        if state["conns"] == 1:
            behaviour(c, buf)
            return
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
                while b"PING\r\n" in buf:
                    del buf[:buf.index(b"PING\r\n") + 6]
                    c.sendall(b"PONG\r\n")
        except OSError:
            return

    return ScriptedPeer(serve), state


def _silent(c, buf):
    try:
        while c.recv(65536):
            pass  # never answers a PING
    except OSError:
        pass


def test_stale_connection_detected_by_the_pinger():
    """... and a callback that raises (on_disconnect here) does not stop the reconnect."""
    peer, state = _peer_with(_silent)
    seen = []

    def main():
        with nats.connect(f"nats://127.0.0.1:{peer.port}", ping_interval=0.05,
                          max_outstanding_pings=2, reconnect_wait=0.01,
                          on_disconnect=lambda: (seen.append("disconnect"), 1 / 0),
                          on_reconnect=lambda: seen.append("reconnect")) as nc:
            with greenrt.fail_after(20):
                while nc.statistics()["reconnects"] == 0 or not nc.is_connected:
                    greenrt.sleep(0.01)
            assert "stale" in str(nc.last_error)
            nc.flush(timeout=5)
    try:
        greenrt.run(main)
    finally:
        peer.close()
    assert seen == ["disconnect", "reconnect"] and state["conns"] == 2


def test_fatal_err_reconnects_and_permissions_violation_does_not():
    def behaviour(c, buf):
        c.sendall(b"-ERR 'Permissions Violation for Publish to \"x\"'\r\n")
        read_until(c, buf, b"PING\r\n")
        c.sendall(b"PONG\r\n")  # the connection is still in use after a permissions error
        read_until(c, buf, b"PING\r\n")
        c.sendall(b"-ERR 'Stale Connection'\r\n")
        _silent(c, buf)

    peer, state = _peer_with(behaviour)
    errors = []

    def main():
        with nats.connect(f"nats://127.0.0.1:{peer.port}", reconnect_wait=0.01,
                          on_error=errors.append) as nc:
            nc.flush(timeout=5)  # answered on the first connection
            assert nc.statistics()["reconnects"] == 0
            with pytest.raises(nats.NatsConnectionError):
                nc.flush(timeout=5)  # the -ERR arrives instead of its PONG
            nc.wait_connected(timeout=20)
            nc.flush(timeout=5)
            assert nc.statistics()["reconnects"] == 1
    try:
        greenrt.run(main)
    finally:
        peer.close()
    assert [type(e) for e in errors] == [nats.ServerError, nats.ServerError]
    assert "Permissions" in str(errors[0]) and "Stale" in str(errors[1])


def test_discovered_servers_are_bounded():
    """At most 64 URLs are taken from one INFO and the list never passes 256, however
    many INFOs the server sends."""
    def info(k):
        urls = ",".join(f'"10.{k}.{i // 250}.{i % 250}:4222"' for i in range(100))
        return b'INFO {"server_id":"s","connect_urls":[' + urls.encode() + b"]}\r\n"
    big_info = b"".join(info(k) for k in range(6))

    def behaviour(c, buf):
        c.sendall(big_info)
        read_until(c, buf, b"PING\r\n")
        c.sendall(b"PONG\r\n")
        _silent(c, buf)

    peer, _ = _peer_with(behaviour)

    def main():
        with nats.connect(f"nats://127.0.0.1:{peer.port}") as nc:
            nc.flush(timeout=5)  # the INFO came before this PONG
            assert len(nc.servers) == 256
            assert nc.servers[1].discovered
    try:
        greenrt.run(main)
    finally:
        peer.close()


def test_a_frame_torn_by_a_lost_connection_never_reaches_the_next_one():
    """Replies leave from the reader task (``_send_now``) right after the consumers
    it woke have run. If that write stops part-way through a PUB and the connection
    is then lost before the flusher runs, the rest of that PUB belongs to the dead
    connection: the next connection gets whole operations only (the issue's "no
    partial PUB ever written"). The partial write is forced (a fault a real kernel
    gives only with a full send buffer): the wrapped ``send_nowait`` really writes,
    but at most 7 bytes; the peer's EOF is right behind its MSG, so the reader meets
    it before the flusher runs."""
    second = bytearray()
    state = {"conns": 0}
    got_second = []

    def serve(c):
        state["conns"] += 1
        buf = bytearray()
        handshake(c, buf)
        if state["conns"] == 1:
            read_until(c, buf, b"SUB svc 1\r\nPING\r\n")
            c.sendall(b"PONG\r\n")
            read_until(c, buf, b"PING\r\n")  # the test's flush: the wrapper is in place
            c.sendall(b"PONG\r\nMSG svc 1 2\r\nhi\r\n")
            c.shutdown(socket.SHUT_WR)  # EOF right behind the MSG
            try:
                while c.recv(65536):
                    pass
            except OSError:
                pass
            return
        # the second connection: record everything up to the test's final flush
        second.extend(buf)
        while b"PING\r\n" not in second[second.find(b"SUB svc 1\r\n"):] or \
                b"SUB svc 1\r\n" not in second:
            d = c.recv(65536)
            if not d:
                return
            second.extend(d)
        c.sendall(b"PONG\r\n")
        got_second.append(True)
        _silent(c, buf)

    peer = ScriptedPeer(serve)

    def main():
        with nats.connect(f"nats://127.0.0.1:{peer.port}", reconnect_wait=0.01,
                          ping_interval=0) as nc:
            sub = nc.subscribe("svc")
            nc.flush(timeout=5)
            real = nc._conn.send_nowait
            nc._conn.send_nowait = lambda data: real(bytes(data[:7]))

            def respond():
                for _m in sub:
                    nc.publish("reply.subject", b"PAYLOAD-OF-THE-TORN-PUB")
                    return

            with greenrt.region() as rg:
                rg.spawn(respond)
                nc.flush(timeout=5)  # (the peer sends the MSG after this PONG)
            nc.wait_connected(timeout=20)
            with greenrt.fail_after(20):
                while nc.statistics()["reconnects"] < 1:
                    greenrt.sleep(0.01)
            nc.flush(timeout=5)  # answered on the second connection
    try:
        greenrt.run(main)
    finally:
        peer.close()
    assert state["conns"] == 2 and got_second
    data = bytes(second)
    assert b"PAYLOAD" not in data and b"ubject" not in data, data
    # whole operations only: every line is a known verb (no PUB carries a payload here)
    for line in data.split(b"\r\n")[:-1]:
        assert line.split(b" ", 1)[0] in (b"CONNECT", b"PING", b"PONG", b"SUB", b"UNSUB"), data
