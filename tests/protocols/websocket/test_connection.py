"""Our client and server against each other and against scripted peers (fault
cases a real peer cannot produce): handshake refusals, Origin hook, subprotocols,
client-side frame checks, the bytes that arrive with the 101, cancellation and the
bounded outbound queue."""

import base64

import pytest
from wsproto.utilities import generate_accept_token

import greenrt
from greenrt.protocols import websocket

from .conftest import serve
from .rawpeer import frame

pytestmark = pytest.mark.timeout(60)


def scripted_server(r, script):
    """A server that reads the request head and runs ``script(stream, key)``."""
    def handler(stream):
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = stream.recv(65536)
            if not d:
                return
            buf += d
        key = next(line.split(b":", 1)[1].strip() for line in buf.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:"))
        script(stream, key)
    return serve(r, handler)


def ok_101(key, extra=b""):
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + generate_accept_token(key) + b"\r\n" + extra + b"\r\n")


def with_client(script, check):
    def main():
        with greenrt.region() as r:
            server, port = scripted_server(r, script)
            try:
                check(port)
            finally:
                server.shutdown()
    greenrt.run(main)


# -- handshake ------------------------------------------------------------------

def test_wrong_accept_token_refused():
    def script(stream, key):
        stream.send_all(ok_101(b"not-the-key"))
        stream.recv(10)

    def check(port):
        with pytest.raises(websocket.HandshakeError) as ei:
            websocket.connect(f"ws://127.0.0.1:{port}/")
        assert ei.value.code == "bad_accept"
    with_client(script, check)


def test_non_101_answer_refused():
    def script(stream, key):
        stream.send_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")

    def check(port):
        with pytest.raises(websocket.HandshakeError) as ei:
            websocket.connect(f"ws://127.0.0.1:{port}/")
        assert ei.value.status == 403
    with_client(script, check)


def test_unoffered_subprotocol_refused():
    def script(stream, key):
        stream.send_all(ok_101(key, b"Sec-WebSocket-Protocol: evil\r\n"))
        stream.recv(10)

    def check(port):
        with pytest.raises(websocket.HandshakeError) as ei:
            websocket.connect(f"ws://127.0.0.1:{port}/", subprotocols=["good"])
        assert ei.value.code == "bad_subprotocol"
    with_client(script, check)


def test_frame_in_the_same_segment_as_the_101():
    def script(stream, key):
        stream.send_all(ok_101(key) + frame(0x1, b"early", mask=False))
        stream.recv(10)

    def check(port):
        ws = websocket.connect(f"ws://127.0.0.1:{port}/")
        assert ws.recv() == "early"
        ws._stream.close()
    with_client(script, check)


def test_masked_frame_from_server_refused_by_client():
    def script(stream, key):
        stream.send_all(ok_101(key) + frame(0x1, b"masked", mask=True))
        stream.recv(100)

    def check(port):
        ws = websocket.connect(f"ws://127.0.0.1:{port}/")
        with pytest.raises(websocket.WebSocketProtocolError) as ei:
            ws.recv()
        assert ei.value.close_code == 1002
        assert ws.closed
    with_client(script, check)


def test_oversized_frame_header_refused_by_client():
    def script(stream, key):
        stream.send_all(ok_101(key) + frame(0x2, b"", length=1 << 40, mask=False))
        stream.recv(100)

    def check(port):
        ws = websocket.connect(f"ws://127.0.0.1:{port}/")
        with pytest.raises(websocket.WebSocketLimitError) as ei:
            ws.recv()
        assert ei.value.limit == "max_frame_bytes"
        assert ei.value.close_code == 1009
    with_client(script, check)


def test_handshake_head_over_limit():
    def script(stream, key):
        stream.send_all(b"HTTP/1.1 101 Switching Protocols\r\nX-Pad: " + b"a" * 20000 + b"\r\n\r\n")
        stream.recv(10)

    def check(port):
        with pytest.raises(websocket.WebSocketLimitError) as ei:
            websocket.connect(f"ws://127.0.0.1:{port}/")
        assert ei.value.limit == "max_handshake_bytes"
    with_client(script, check)


def test_server_handshake_head_over_limit():
    def check(port, got):
        from greenrt import net
        s = net.open_tcp("127.0.0.1", port)
        s.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 20000 + b"\r\n\r\n")
        # the server gives up on the head and closes without upgrading
        data = b""
        while True:
            try:
                d = s.recv(4096)
            except net.BrokenStreamError:
                break
            if not d:
                break
            data += d
        assert b"101" not in data
        s.close()
        assert got == []
    _with_server(check)


def test_handler_error_closes_1011():
    def handler(ws):
        ws.recv()
        raise RuntimeError("boom")

    def check(port, got):
        ws = websocket.connect(f"ws://127.0.0.1:{port}/")
        ws.send_text("trigger")
        with pytest.raises(websocket.ConnectionClosed) as ei:
            ws.recv()
        assert ei.value.close_code == 1011
    _with_server(check, handler=handler)


def test_limits_are_validated():
    with pytest.raises(ValueError):
        websocket.WebSocketLimits(outbound_policy="drop")
    with pytest.raises(ValueError):
        websocket.WebSocketLimits(max_frame_bytes=0)
    assert websocket.WebSocketLimits().max_message_bytes == 64 * 1024 * 1024


def _with_server(check, handler=None, **accept_options):
    got = []

    def default(ws):
        got.append(ws)
        for m in ws:
            ws.send(m)

    def main():
        with greenrt.region() as r:
            server, port = serve(r, websocket.serve_handler(handler or default, **accept_options))
            try:
                check(port, got)
            finally:
                server.shutdown()
    greenrt.run(main)


def test_origin_hook_refuses_with_403():
    seen = []

    def origin_check(origin):
        seen.append(origin)
        return origin == "https://good.example"

    def check(port, got):
        with pytest.raises(websocket.HandshakeError) as ei:
            websocket.connect(f"ws://127.0.0.1:{port}/", origin="https://evil.example")
        assert ei.value.status == 403
        ws = websocket.connect(f"ws://127.0.0.1:{port}/", origin="https://good.example")
        ws.send_text("in")
        assert ws.recv() == "in"
        ws.close()
    _with_server(check, origin_check=origin_check)
    assert seen == ["https://evil.example", "https://good.example"]


def test_bad_version_gets_426():
    def check(port, got):
        from greenrt import net
        s = net.open_tcp("127.0.0.1", port)
        key = base64.b64encode(b"0123456789abcdef")
        s.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 8\r\n\r\n")
        head = s.recv(4096)
        assert head.startswith(b"HTTP/1.1 426")
        assert b"Sec-WebSocket-Version: 13" in head
        s.close()
    _with_server(check)


def test_subprotocol_negotiation_server_preference():
    def check(port, got):
        ws = websocket.connect(f"ws://127.0.0.1:{port}/", subprotocols=["b", "a"])
        assert ws.subprotocol == "a"
        ws.close()
        ws = websocket.connect(f"ws://127.0.0.1:{port}/", subprotocols=["z"])
        assert ws.subprotocol is None
        ws.close()
    _with_server(check, subprotocols=["a", "b"])


def test_iteration_ends_on_normal_close_and_close_codes_reported():
    def handler(ws):
        ws.send_text("one")
        ws.send_text("two")
        ws.close(1001, "bye")

    def check(port, got):
        ws = websocket.connect(f"ws://127.0.0.1:{port}/")
        assert list(ws) == ["one", "two"]
        assert ws.close_code == 1001
        with pytest.raises(websocket.ConnectionClosed):
            ws.send_text("late")
    _with_server(check, handler=handler)


def test_ping_rtt_while_another_task_receives():
    def check(port, got):
        ws = websocket.connect(f"ws://127.0.0.1:{port}/")
        received = []
        with greenrt.region() as r:
            r.spawn(lambda: received.append(ws.recv()))
            greenrt.sleep(0)
            rtt = ws.ping()
            assert rtt >= 0
            ws.send_text("wake")
        assert received == ["wake"]
        ws.close()
    _with_server(check)


def test_recv_while_a_ping_is_reading_waits_for_it():
    def check(port, got):
        ws = websocket.connect(f"ws://127.0.0.1:{port}/")
        rtts = []
        with greenrt.region() as r:
            r.spawn(lambda: rtts.append(ws.ping()))
            greenrt.sleep(0)
            assert ws._pinging
            ws.send_text("during ping")
            assert ws.recv() == "during ping"
        assert len(rtts) == 1
        ws.close()
    _with_server(check)


# -- cancellation -------------------------------------------------------------------

def test_cancelled_recv_loses_no_message():
    """The first fragment arrives, recv is cancelled waiting for the rest; the next
    recv returns the whole message."""
    cancelled = greenrt.Event()

    def script(stream, key):
        stream.send_all(ok_101(key) + frame(0x1, b"hel", fin=False, mask=False))
        cancelled.wait()
        stream.send_all(frame(0x0, b"lo", mask=False))
        stream.recv(100)

    def check(port):
        ws = websocket.connect(f"ws://127.0.0.1:{port}/")
        with greenrt.move_on_after(0.05) as scope:
            ws.recv()
        assert scope.cancelled_caught
        cancelled.set()
        assert ws.recv() == "hello"
        ws._stream.close()
    with_client(script, check)


def test_cancelled_send_mid_message_breaks_the_connection():
    """A 48 MB message to a peer that never reads blocks in the write; cancelling it
    leaves a partial frame on the wire, so the connection is closed."""
    def script(stream, key):
        stream.send_all(ok_101(key))
        greenrt.sleep_forever()

    def check(port):
        ws = websocket.connect(f"ws://127.0.0.1:{port}/")
        with greenrt.move_on_after(0.2) as scope:
            ws.send_bytes(bytes(48 * 1024 * 1024))
        assert scope.cancelled_caught
        assert ws.closed
        with pytest.raises(websocket.ConnectionClosed) as ei:
            ws.send_text("again")
        assert ei.value.close_code == 1006

    def main():
        with greenrt.region() as r:
            server, port = scripted_server(r, script)
            check(port)
            server.shutdown()
            r.cancel()
    greenrt.run(main)


@pytest.mark.parametrize("policy", ["close", "wait"])
def test_outbound_queue_bound(policy):
    """Task A's big write is stuck (the peer does not read yet); task B's send finds
    the queue over max_outbound_bytes: with "close" it fails with 1013, with "wait" it
    waits until the peer reads, then goes through."""
    limits = websocket.WebSocketLimits(max_outbound_bytes=10_000, outbound_policy=policy)
    release = greenrt.Event()
    got = []

    def script(stream, key):
        stream.send_all(ok_101(key))
        release.wait()
        total = 0
        while total < 32 * 1024 * 1024 + 20_000:
            d = stream.recv(1 << 20)
            if not d:
                break
            total += len(d)
        got.append(total)

    def main():
        with greenrt.region() as r:
            server, port = scripted_server(r, script)
            ws = websocket.connect(f"ws://127.0.0.1:{port}/", limits=limits, compression=False)
            r.spawn(lambda: ws.send_bytes(bytes(32 * 1024 * 1024)))
            while not ws._writing:
                greenrt.sleep(0)
            if policy == "close":
                with pytest.raises(websocket.WebSocketLimitError) as ei:
                    ws.send_bytes(bytes(20_000))
                assert ei.value.close_code == 1013
                assert ws.closed
                release.set()
            else:
                r.spawn(lambda: (greenrt.sleep(0.05), release.set()))
                ws.send_bytes(bytes(20_000))
                assert release.is_set(), "the second send waited for the peer to read"
                assert not ws.closed
            while not got and policy == "wait":
                greenrt.sleep(0.001)
            server.shutdown()
            r.cancel()
        if policy == "wait":
            assert got[0] >= 32 * 1024 * 1024 + 20_000

    greenrt.run(main)


def test_no_timeouts_at_all():
    """handshake_timeout=None and close_timeout=None are allowed (no scope opened)."""
    limits = websocket.WebSocketLimits(handshake_timeout=None, close_timeout=None)

    def check(port, got):
        ws = websocket.connect(f"ws://127.0.0.1:{port}/", limits=limits)
        ws.send_text("x")
        assert ws.recv() == "x"
        ws.close()
        assert ws.close_code == 1000
    _with_server(check, limits=limits)
