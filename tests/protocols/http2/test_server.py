"""The HTTP/2 server against real clients (curl, nghttp, h2load) and raw attack frames
built with h2/hyperframe over a real socket."""

from __future__ import annotations

import shutil
import subprocess
import threading

import h2.config
import h2.connection
import h2.errors
import h2.events
import hyperframe.frame as hf
import pytest

from greenrt.protocols.http.model import Response, StreamingResponse
from greenrt.protocols.http2 import H2Limits

from .conftest import connect


def echo(req):
    if req.path == "/big":
        return StreamingResponse(200, [("content-type", "application/octet-stream")],
                                 (b"x" * 16384 for _ in range(64)))
    body = req.body.read_all()
    return Response(200, [("content-type", "text/plain"), ("x-method", req.method)],
                    b"echo:" + body + b":" + req.path.encode())


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is required (installed by scripts/apt-packages.txt)"
    return path


def test_curl_prior_knowledge_get_and_post(h2_server):
    srv = h2_server(echo)
    out = subprocess.run([_tool("curl"), "-sS", "--http2-prior-knowledge", "-i",
                          f"http://127.0.0.1:{srv.port}/hello"],
                         capture_output=True, timeout=20, check=True).stdout
    assert out.startswith(b"HTTP/2 200")
    assert out.endswith(b"echo::/hello")
    out = subprocess.run([_tool("curl"), "-sS", "--http2-prior-knowledge", "--data-binary",
                          "payload", f"http://127.0.0.1:{srv.port}/p"],
                         capture_output=True, timeout=20, check=True).stdout
    assert out == b"echo:payload:/p"


def test_nghttp_multiplexed_streams(h2_server):
    srv = h2_server(echo)
    url = f"http://127.0.0.1:{srv.port}"
    r = subprocess.run([_tool("nghttp"), "-n", "-s", f"{url}/a", f"{url}/b", f"{url}/big"],
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    # the statistics table lists one row per completed stream
    rows = [ln for ln in r.stdout.decode().splitlines() if ln.strip().endswith(("/a", "/b",
                                                                              "/big"))]
    assert len(rows) == 3, r.stdout


def test_h2load_completes_every_request(h2_server):
    srv = h2_server(echo)
    r = subprocess.run([_tool("h2load"), "-n", "2000", "-c", "4", "-m", "10",
                        f"http://127.0.0.1:{srv.port}/x"],
                       capture_output=True, timeout=120)
    out = r.stdout.decode()
    assert "2000 succeeded, 0 failed, 0 errored" in out, out


# -- raw frames ---------------------------------------------------------------------------


class RawClient:
    """An h2 client connection over a real socket, for crafting hostile frames."""

    def __init__(self, port: int):
        self.sock = connect(port)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.initiate_connection()
        self.sock.sendall(self.h2.data_to_send())

    def send_raw(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def events_until_close(self, timeout: float = 10.0) -> list:
        self.sock.settimeout(timeout)
        out = []
        while True:
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not data:
                break
            try:
                out += self.h2.receive_data(data)
            except Exception:  # our h2 client may itself object after GOAWAY
                break
            self.send_raw(self.h2.data_to_send())
        return out

    def goaway_code(self, timeout: float = 10.0):
        """The error code of the server's GOAWAY (read until it comes or the socket
        closes). Frames are parsed raw: h2's client state would choke on frames for
        streams the test opened with raw frames."""
        self.sock.settimeout(timeout)
        buf = b""
        while True:
            i = 0
            while i + 9 <= len(buf):
                f, length = hf.Frame.parse_frame_header(memoryview(buf[i:i + 9]))
                if i + 9 + length > len(buf):
                    break
                f.parse_body(memoryview(buf[i + 9:i + 9 + length]))
                if isinstance(f, hf.GoAwayFrame):
                    return h2.errors.ErrorCodes(f.error_code)
                i += 9 + length
            buf = buf[i:]
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                return None
            if not data:
                return None
            buf += data

    def close(self):
        self.sock.close()


def test_oversized_frame_header_rejected_after_nine_bytes(h2_server):
    srv = h2_server(echo)
    c = RawClient(srv.port)
    # only the 9-byte header of a 16 MiB DATA frame: no payload follows, yet the
    # server must answer at once rather than wait to buffer it
    c.send_raw((16 * 1024 * 1024 - 1).to_bytes(3, "big") + b"\x00\x00\x00\x00\x00\x01")
    assert c.goaway_code() == h2.errors.ErrorCodes.FRAME_SIZE_ERROR
    assert "frame_too_large" in srv.codes()
    c.close()


@pytest.mark.parametrize("kind,code", [
    ("ping", "ping_flood"), ("settings", "settings_flood"), ("priority", "priority_flood"),
    ("empty_data", "empty_frame_flood"),
])
def test_flood_ends_with_enhance_your_calm(h2_server, kind, code):
    limits = H2Limits(pings_per_window=20, settings_per_window=20, priority_per_window=20,
                      empty_frames_per_window=20)
    srv = h2_server(echo, limits)
    c = RawClient(srv.port)
    if kind == "empty_data":
        c.h2.send_headers(1, [(":method", "POST"), (":path", "/"), (":scheme", "http"),
                              (":authority", "x")])
        c.send_raw(c.h2.data_to_send())
    frames = []
    for i in range(200):
        if kind == "ping":
            f = hf.PingFrame(0, opaque_data=i.to_bytes(8, "big"))
        elif kind == "settings":
            f = hf.SettingsFrame(0)
        elif kind == "priority":
            f = hf.PriorityFrame(3 + 2 * i, depends_on=1, stream_weight=16)
        else:
            f = hf.DataFrame(1, b"")
        frames.append(f.serialize())
    c.send_raw(b"".join(frames))
    assert c.goaway_code() == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assert code in srv.codes()
    c.close()


def test_rapid_reset_bounded_handler_work(h2_server):
    started = threading.Event()

    def slow(req):
        started.set()
        req.body.read_all()
        return Response(200, body=b"ok")

    srv = h2_server(slow, H2Limits(resets_per_window=50))
    c = RawClient(srv.port)
    out = []
    for i in range(1000):
        sid = 1 + 2 * i
        out.append(hf.HeadersFrame(sid, c.h2.encoder.encode(
            [(":method", "POST"), (":path", "/"), (":scheme", "http"), (":authority", "x")]),
            flags=["END_HEADERS"]).serialize())
        out.append(hf.RstStreamFrame(sid, error_code=8).serialize())
    c.send_raw(b"".join(out))
    assert c.goaway_code() == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assert "rst_stream_flood" in srv.codes()
    # the gate fires before h2 processes the 51st reset's batch: handler starts are
    # bounded by the reset budget, not by the 1000 streams sent
    assert srv.stream_starts <= 60, srv.stream_starts
    c.close()


def test_hpack_garbage_is_compression_error(h2_server):
    srv = h2_server(echo)
    c = RawClient(srv.port)
    c.send_raw(hf.HeadersFrame(1, b"\xff\xff\xff\xff\xff\xff", flags=["END_HEADERS",
                                                                        "END_STREAM"]).serialize())
    assert c.goaway_code() == h2.errors.ErrorCodes.COMPRESSION_ERROR
    c.close()


def test_bad_preface_closes(h2_server):
    srv = h2_server(echo)
    s = connect(srv.port)
    s.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    s.settimeout(10)
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    assert srv.wait_for_code("bad_preface")
    s.close()


def test_cancelled_download_returns_connection_window(h2_server):
    """The client resets one stream mid-download while another completes; DATA sent
    on the reset stream is still acknowledged in the connection window."""
    srv = h2_server(echo)
    c = RawClient(srv.port)
    hdrs = [(":method", "GET"), (":path", "/big"), (":scheme", "http"), (":authority", "x")]
    c.h2.send_headers(1, hdrs, end_stream=True)
    c.h2.send_headers(3, [(":method", "POST"), (":path", "/up"), (":scheme", "http"),
                          (":authority", "x")])
    c.h2.send_data(3, b"y" * 15000)
    c.h2.send_data(3, b"y" * 15000)
    c.h2.end_stream(3)
    c.send_raw(c.h2.data_to_send())
    c.sock.settimeout(10)
    got1 = 0
    done3 = False
    reset = False
    body3 = b""
    while not done3:
        for ev in c.h2.receive_data(c.sock.recv(65536)):
            if isinstance(ev, h2.events.DataReceived):
                c.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                if ev.stream_id == 1:
                    got1 += len(ev.data)
                else:
                    body3 += ev.data
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == 3:
                done3 = True
        if got1 and not reset:
            c.h2.reset_stream(1, error_code=8)
            reset = True
        c.send_raw(c.h2.data_to_send())
    assert body3 == b"echo:" + b"y" * 30000 + b":/up"
    # our 30000 uploaded bytes were acknowledged: the connection window is whole again
    # after a PING round trip (the server flushes WINDOW_UPDATE before the PONG)
    c.h2.ping(b"12345678")
    c.send_raw(c.h2.data_to_send())
    while True:
        evs = c.h2.receive_data(c.sock.recv(65536))
        c.send_raw(c.h2.data_to_send())
        if any(isinstance(e, h2.events.PingAckReceived) for e in evs):
            break
    assert c.h2.outbound_flow_control_window == 65535
    c.close()


def test_hpack_bomb_ends_connection(h2_server):
    """A header block that decodes to more than max_header_list_size (one big indexed
    entry repeated) ends the connection without decoding it all."""
    srv = h2_server(echo, H2Limits(max_header_list_size=8192))
    c = RawClient(srv.port)
    import hpack
    enc = hpack.Encoder()
    base = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "x")]
    block = enc.encode(base + [("x-bomb", "a" * 3000)])
    # the entry is now in the dynamic table at index 62: each repeat is one byte
    block += b"\xbe" * 2000
    c.send_raw(hf.HeadersFrame(1, block[:16000], flags=["END_HEADERS", "END_STREAM"]).serialize())
    assert c.goaway_code() in (h2.errors.ErrorCodes.ENHANCE_YOUR_CALM,
                               h2.errors.ErrorCodes.COMPRESSION_ERROR)
    assert srv.stream_starts == 0
    c.close()


def test_httpx_http2_client(h2_server):
    import httpx
    srv = h2_server(echo)
    with httpx.Client(http1=False, http2=True) as client:
        rs = [client.post(f"http://127.0.0.1:{srv.port}/n{i}", content=b"b%d" % i)
              for i in range(5)]
    assert [r.http_version for r in rs] == ["HTTP/2"] * 5
    assert [r.content for r in rs] == [b"echo:b%d:/n%d" % (i, i) for i in range(5)]


# the concurrent-stream cap (REFUSED_STREAM, not a connection error): test_server_gaps.py
