"""The HTTP/2 client against server behaviour a well-behaved server does not produce:
GOAWAY below streams already sent, floods, oversized frames, header bombs. The server
side is a scripted peer (a thread with h2/hyperframe on a real loopback socket)."""

from __future__ import annotations

import socket
import threading

import h2.config
import h2.connection
import h2.events
import hyperframe.frame as hf
import pytest

import greenrt
from greenrt.protocols import http2
from greenrt.protocols.http2 import H2Limits


class ScriptedServer:
    """Accept one connection and run ``script(sock, h2conn, events)`` in a thread;
    ``events()`` reads and returns the next batch of h2 events."""

    def __init__(self, script):
        self.lst = socket.socket()
        self.lst.bind(("127.0.0.1", 0))
        self.lst.listen(1)
        self.port = self.lst.getsockname()[1]
        self.script = script
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()

    def _main(self):
        try:
            sock, _ = self.lst.accept()
            sock.settimeout(10)
            h = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
            h.initiate_connection()
            sock.sendall(h.data_to_send())

            def events():
                data = sock.recv(65536)
                if not data:
                    return None
                evs = h.receive_data(data)
                sock.sendall(h.data_to_send())
                return evs

            try:
                self.script(sock, h, events)
            finally:
                try:
                    sock.shutdown(socket.SHUT_WR)
                    while sock.recv(65536):
                        pass
                except OSError:
                    pass
                sock.close()
        except BaseException as e:  # reported by close()
            self.error = e

    def close(self):
        self.thread.join(20)
        self.lst.close()
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error


def wait_requests(events, n: int) -> list[int]:
    sids: list[int] = []
    while len(sids) < n:
        evs = events()
        assert evs is not None, "client closed"
        sids += [e.stream_id for e in evs if isinstance(e, h2.events.RequestReceived)]
    return sids


def respond(sock, h, sid: int, body: bytes) -> None:
    h.send_headers(sid, [(":status", "200")])
    h.send_data(sid, body, end_stream=True)
    sock.sendall(h.data_to_send())


def test_goaway_streams_above_last_id_are_refused_and_retryable():
    def script(sock, h, events):
        sids = wait_requests(events, 2)
        assert sids == [1, 3]
        # GOAWAY(last=1), hand-built: h2 would refuse to send DATA after its own GOAWAY
        sock.sendall(hf.GoAwayFrame(0, last_stream_id=1, error_code=0).serialize())
        respond(sock, h, 1, b"one")

    srv = ScriptedServer(script)

    def main():
        conn = http2.connect("127.0.0.1", srv.port)
        s1 = conn.open_stream("GET", "/1", end_stream=True)
        s3 = conn.open_stream("GET", "/3", end_stream=True)
        with pytest.raises(http2.StreamRefused) as ei:
            s3.response_headers()
        assert ei.value.goaway and ei.value.retryable
        assert s1.response_headers()[0] == 200
        assert s1.read_all() == b"one"
        with pytest.raises(http2.StreamRefused):
            conn.open_stream("GET", "/new", end_stream=True)
        assert not conn.is_usable
        st = conn.statistics()
        conn.close()
        return st

    st = greenrt.run(main)
    srv.close()
    assert st["goaway_received"] == 1 and st["unacked_bytes"] == 0


def test_refused_stream_is_retryable():
    def script(sock, h, events):
        (sid,) = wait_requests(events, 1)
        h.reset_stream(sid, error_code=7)
        sock.sendall(h.data_to_send())
        (sid,) = wait_requests(events, 1)
        respond(sock, h, sid, b"second")

    srv = ScriptedServer(script)

    def main():
        conn = http2.connect("127.0.0.1", srv.port)
        s = conn.open_stream("GET", "/", end_stream=True)
        with pytest.raises(http2.StreamRefused) as ei:
            s.response_headers()
        assert ei.value.retryable and not ei.value.goaway
        s = conn.open_stream("GET", "/", end_stream=True)
        body = s.read_all() if s.response_headers()[0] == 200 else None
        conn.close()
        return body

    assert greenrt.run(main) == b"second"
    srv.close()


@pytest.mark.parametrize("kind", ["ping", "settings", "empty_data", "rst_cancel",
                                  "rst_no_error"])
def test_server_flood_ends_connection(kind):
    def script(sock, h, events):
        sids = wait_requests(events, 2 if kind.startswith("rst") else 1)
        sid = sids[0]
        if kind.startswith("rst"):
            # the flood is on the second stream; the first one waits for its head.
            # RST_STREAM(NO_ERROR) after the response ended is excused once per stream
            # (RFC 9113 8.1): the later ones on the closed stream count
            h.send_headers(sids[1], [(":status", "200")], end_stream=True)
            sock.sendall(h.data_to_send())
            code = 0 if kind == "rst_no_error" else 8
            sock.sendall(b"".join(hf.RstStreamFrame(sids[1], error_code=code).serialize()
                                  for _ in range(300)))
            return
        if kind == "empty_data":
            h.send_headers(sid, [(":status", "200")])
            sock.sendall(h.data_to_send())
        out = []
        for i in range(300):
            if kind == "ping":
                out.append(hf.PingFrame(0, opaque_data=i.to_bytes(8, "big")))
            elif kind == "settings":
                out.append(hf.SettingsFrame(0))
            else:
                out.append(hf.DataFrame(sid, b""))
        try:
            sock.sendall(b"".join(f.serialize() for f in out))
        except OSError:
            pass

    srv = ScriptedServer(script)

    def main():
        conn = http2.connect("127.0.0.1", srv.port, limits=H2Limits(
            pings_per_window=20, settings_per_window=20, empty_frames_per_window=20,
            resets_per_window=20))
        s = conn.open_stream("GET", "/", end_stream=True)
        if kind.startswith("rst"):
            conn.open_stream("POST", "/upload")  # not half-closed
        with pytest.raises(http2.LimitError) as ei:
            s.response_headers()
            s.read_all()
        return ei.value.code

    assert greenrt.run(main) == {"ping": "ping_flood", "settings": "settings_flood",
                                 "empty_data": "empty_frame_flood",
                                 "rst_cancel": "rst_stream_flood",
                                 "rst_no_error": "rst_stream_flood"}[kind]
    srv.close()


def test_oversized_frame_rejected_after_header():
    def script(sock, h, events):
        wait_requests(events, 1)
        # a 16 MiB DATA frame header, and no payload: the client must not wait for it
        sock.sendall((2**24 - 1).to_bytes(3, "big") + b"\x00\x00\x00\x00\x00\x01")
        sock.settimeout(10)
        assert sock.recv(65536) is not None  # the client's GOAWAY (or EOF)

    srv = ScriptedServer(script)

    def main():
        conn = http2.connect("127.0.0.1", srv.port)
        s = conn.open_stream("GET", "/", end_stream=True)
        with pytest.raises(http2.LimitError) as ei:
            s.response_headers()
        return ei.value.error_code

    assert greenrt.run(main) == 6  # FRAME_SIZE_ERROR
    srv.close()


def test_response_header_list_over_limit():
    def script(sock, h, events):
        (sid,) = wait_requests(events, 1)
        h.send_headers(sid, [(":status", "200")] + [(f"x-{i}", "v" * 100) for i in range(50)])
        sock.sendall(h.data_to_send())

    srv = ScriptedServer(script)

    def main():
        conn = http2.connect("127.0.0.1", srv.port, limits=H2Limits(max_header_list_size=2048))
        s = conn.open_stream("GET", "/", end_stream=True)
        with pytest.raises(http2.ProtocolError):
            s.response_headers()
        return conn.is_usable

    assert greenrt.run(main) is False
    srv.close()


def test_cancelled_request_sends_rst_cancel_and_connection_survives():
    got = {}

    def script(sock, h, events):
        (sid,) = wait_requests(events, 1)
        h.send_headers(sid, [(":status", "200")])
        h.send_data(sid, b"x" * 1000)
        sock.sendall(h.data_to_send())
        while True:
            evs = events()
            assert evs is not None
            for e in evs:
                if isinstance(e, h2.events.StreamReset):
                    got["reset"] = (e.stream_id, e.error_code)
                if isinstance(e, h2.events.RequestReceived):
                    respond(sock, h, e.stream_id, b"after")
                    return

    srv = ScriptedServer(script)

    def main():
        conn = http2.connect("127.0.0.1", srv.port)
        s = conn.open_stream("GET", "/slow", end_stream=True)
        s.response_headers()
        assert s.read() == b"x" * 1000
        with greenrt.move_on_after(0.05):
            s.read()  # no more data comes: the deadline cancels the read
        s2 = conn.open_stream("GET", "/next", end_stream=True)
        s2.response_headers()
        out = s2.read_all()
        st = conn.statistics()
        conn.close()
        return out, st

    out, st = greenrt.run(main)
    srv.close()
    assert out == b"after"
    assert got["reset"] == (1, 8)  # RST_STREAM(CANCEL)
    assert st["resets_sent"] == 1 and st["unacked_bytes"] == 0
