"""``Upgrade: h2c`` (RFC 7540 §3.2) on the one server: ``curl --http2`` and
``nghttp -u`` on cleartext get HTTP/2 after a 101; every refusal (a body, bad,
missing or repeated ``HTTP2-Settings``, missing connection options, HTTP/1.0, TLS,
``http2=False``) is answered in HTTP/1.1 on a connection that stays HTTP/1.1; the
bytes pipelined behind the upgrade request are the HTTP/2 preface and frames, served
as HTTP/2, and behind a refused one they are HTTP/1.1 again."""

from __future__ import annotations

import base64
import shutil
import socket
import ssl
import subprocess
import time

import h2.config
import h2.connection
import h2.events
import pytest
import trustme

import greenrt
from greenrt.protocols import tls
from greenrt.protocols.http import Response
from greenrt.protocols.http2._h2c import MAX_SETTINGS, MAX_SETTINGS_FIELD, decode_settings


def version_handler(req):
    body = req.body.read_all()
    up = "up" if req.extensions.get("http2.upgraded") else "plain"
    return Response(200, [("content-type", "text/plain")],
                    f"{req.http_version} {req.method} {req.target} {len(body)} {up} "
                    f"host={req.headers.get('host')} "
                    f"upgrade={req.headers.get('upgrade')}".encode())


def _run(*args: str) -> subprocess.CompletedProcess:
    assert shutil.which(args[0]), f"{args[0]} is installed by scripts/setup.sh"
    return subprocess.run(list(args), capture_output=True, timeout=30)


def _refusals(srv) -> list:
    return [d["why"] for k, d in srv.events if k == "http2.h2c_refused"]


# -- real clients --------------------------------------------------------------------------

def test_curl_http2_upgrades_a_cleartext_get(http_server):
    srv = http_server(version_handler)
    out = _run("curl", "-sS", "-v", "--max-time", "20", "--http2",
               f"http://127.0.0.1:{srv.port}/v?x=1")
    err = out.stderr.decode()
    assert out.returncode == 0, err
    assert "< HTTP/1.1 101 Switching Protocols" in err
    assert "< HTTP/2 200" in err
    assert out.stdout == b"2 GET /v?x=1 0 up host=127.0.0.1:%d upgrade=None" % srv.port
    assert srv.server.statistics()["versions"] == {"http/1.1": 1, "h2": 0, "h2c": 1}


def test_curl_http2_post_with_a_body_is_not_upgraded_but_answered(http_server):
    srv = http_server(version_handler)
    out = _run("curl", "-sS", "-v", "--max-time", "20", "--http2", "--data-binary", "hello",
               f"http://127.0.0.1:{srv.port}/p")
    err = out.stderr.decode()
    assert out.returncode == 0, err
    assert "Upgrade: h2c" in err  # curl asked...
    assert "101" not in err and "< HTTP/1.1 200" in err  # ...and was answered in HTTP/1.1
    assert out.stdout == b"1.1 POST /p 5 plain host=127.0.0.1:%d upgrade=h2c" % srv.port
    assert _refusals(srv) == ["body"]
    assert srv.server.statistics()["versions"]["h2c"] == 0


def test_nghttp_upgrade_mode(http_server):
    srv = http_server(version_handler)
    out = _run("nghttp", "-u", "-v", f"http://127.0.0.1:{srv.port}/n")
    text = out.stdout.decode()
    assert out.returncode == 0, text + out.stderr.decode()
    assert "HTTP Upgrade response" in text and "HTTP Upgrade success" in text
    assert "recv (stream_id=1) :status: 200" in text
    assert "2 GET /n 0 up" in text
    # several requests over the upgraded connection: stream 1 plus new streams
    out = _run("nghttp", "-u", f"http://127.0.0.1:{srv.port}/a", f"http://127.0.0.1:{srv.port}/b")
    assert out.returncode == 0, out.stderr.decode()
    assert b"2 GET /a 0 up" in out.stdout and b"2 GET /b 0 plain" in out.stdout


# -- raw sockets: refusals and the bytes behind the upgrade ---------------------------------

SETTINGS = base64.urlsafe_b64encode(b"\x00\x03\x00\x00\x00\x64\x00\x04\x00\x01\x00\x00").rstrip(b"=")
HEAD = b"GET /r HTTP/1.1\r\nHost: x\r\n"
GOOD = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: " + SETTINGS + b"\r\n"


def _read_http1(s: socket.socket, buf: bytes = b"") -> tuple[bytes, bytes, bytes]:
    """(head, body, rest) of one HTTP/1.1 response with a Content-Length."""
    while b"\r\n\r\n" not in buf:
        data = s.recv(65536)
        assert data, f"closed early: {buf!r}"
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    n = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            n = int(v)
    while len(rest) < n:
        data = s.recv(65536)
        assert data
        rest += data
    return head, rest[:n], rest[n:]


REFUSALS = {
    "body": (b"POST /r HTTP/1.1\r\nHost: x\r\n" + GOOD + b"Content-Length: 3\r\n\r\nabc", "body"),
    "chunked": (b"POST /r HTTP/1.1\r\nHost: x\r\n" + GOOD
                + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "body"),
    "missing_settings": (HEAD + b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\r\n",
                         "no_settings"),
    "duplicate_settings": (HEAD + GOOD + b"HTTP2-Settings: " + SETTINGS + b"\r\n\r\n",
                           "duplicate_settings"),
    "bad_base64": (HEAD + b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                   b"HTTP2-Settings: !!notbase64\r\n\r\n", "bad_settings"),
    "bad_length": (HEAD + b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                   b"HTTP2-Settings: AAMAAABkAA\r\n\r\n", "bad_settings"),
    "bad_value": (HEAD + b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                  b"HTTP2-Settings: " + base64.urlsafe_b64encode(b"\x00\x02\x00\x00\x00\x02")
                  + b"\r\n\r\n", "bad_settings"),
    "no_connection_option": (HEAD + b"Connection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: "
                             + SETTINGS + b"\r\n\r\n", "connection_options"),
    "http10": (b"GET /r HTTP/1.0\r\nHost: x\r\n" + GOOD + b"\r\n", "http10"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refused_upgrades_are_served_as_http1_and_the_connection_stays_http1(http_server, case):
    srv = http_server(version_handler)
    request, why = REFUSALS[case]
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(request)
        head, body, rest = _read_http1(s)
        version = b"1.0" if case == "http10" else b"1.1"
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert body.startswith(version + b" ") and b" plain " in body, body
        assert rest == b""
        if case != "http10":  # keep-alive: the next request is plain HTTP/1.1 too
            s.sendall(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
            head, body, _ = _read_http1(s)
            assert head.startswith(b"HTTP/1.1 200 ") and body.startswith(b"1.1 GET /next 0 plain")
    assert _refusals(srv) == [why]
    assert srv.server.statistics()["versions"]["h2c"] == 0


def _h2_client():
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                            header_encoding=None))
    settings = c.initiate_upgrade_connection()  # stream 1 = the HTTP/1.1 request
    return c, settings


def test_preface_and_frames_in_the_same_segment_as_the_upgrade_are_http2(http_server):
    """The smuggling-relevant edge: the upgrade request, the client preface, SETTINGS
    and a second request (stream 3) in one send. Nothing behind the upgrade request
    may be read as HTTP/1.1 or lost: both streams are answered over HTTP/2."""
    srv = http_server(version_handler)
    c, settings = _h2_client()
    c.send_headers(3, [(b":method", b"GET"), (b":path", b"/three"), (b":scheme", b"http"),
                       (b":authority", b"x")], end_stream=True)
    upgrade = (b"GET /one HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
               b"Upgrade: h2c\r\nHTTP2-Settings: " + settings + b"\r\n\r\n")
    bodies: dict[int, bytes] = {1: b"", 3: b""}
    ended: set[int] = set()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(upgrade + c.data_to_send())
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(65536)
        head, _, rest = buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
        assert b"upgrade: h2c" in head.lower()
        events = c.receive_data(rest)
        while ended != {1, 3}:
            for ev in events:
                if type(ev) is h2.events.DataReceived:
                    bodies[ev.stream_id] += ev.data
                    c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif type(ev) is h2.events.StreamEnded:
                    ended.add(ev.stream_id)
                assert type(ev) is not h2.events.StreamReset, ev
                assert type(ev) is not h2.events.ConnectionTerminated, ev
            s.sendall(c.data_to_send())
            if ended != {1, 3}:
                data = s.recv(65536)
                assert data, "closed"
                events = c.receive_data(data)
    assert bodies[1] == b"2 GET /one 0 up host=x upgrade=None"
    assert bodies[3] == b"2 GET /three 0 plain host=None upgrade=None"
    assert srv.server.statistics()["versions"]["h2c"] == 1


def test_bytes_behind_a_refused_upgrade_stay_http1(http_server):
    """A refused upgrade followed at once by the preface: the preface is read as the
    next HTTP/1.1 request (and refused as one); no HTTP/2 frame is processed."""
    calls = []

    def handler(req):
        calls.append(req.target)
        return version_handler(req)

    srv = http_server(handler)
    c, _ = _h2_client()
    c.send_headers(3, [(b":method", b"GET"), (b":path", b"/three"), (b":scheme", b"http"),
                       (b":authority", b"x")], end_stream=True)
    bad = (b"GET /one HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
           b"Upgrade: h2c\r\nHTTP2-Settings: *\r\n\r\n")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(bad + c.data_to_send())
        head, body, rest = _read_http1(s)
        assert head.startswith(b"HTTP/1.1 200 ") and body.startswith(b"1.1 GET /one 0 plain")
        head2, _, _ = _read_http1(s, rest)
        assert head2.split(b" ")[1] in (b"400", b"505"), head2
    assert calls == ["/one"]
    assert _refusals(srv) == ["bad_settings"]


def test_no_upgrade_over_tls(http_server, tmp_path):
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    ctx = tls.server_context(cert_pem=b"".join(b.bytes() for b in leaf.cert_chain_pems),
                             key_pem=leaf.private_key_pem.bytes(), alpn=["h2", "http/1.1"])
    srv = http_server(version_handler, tls=ctx)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    client.set_alpn_protocols(["http/1.1"])
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw, \
            client.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(HEAD + GOOD + b"\r\n")
        head, body, _ = _read_http1(s)
    assert head.startswith(b"HTTP/1.1 200 ") and body.startswith(b"1.1 GET /r 0 plain")
    assert srv.server.statistics()["versions"]["h2c"] == 0


def test_no_upgrade_when_http2_is_off(http_server):
    srv = http_server(version_handler, http2=False)
    out = _run("curl", "-sS", "-v", "--max-time", "20", "--http2", f"http://127.0.0.1:{srv.port}/o")
    assert out.returncode == 0 and b"101" not in out.stderr
    assert out.stdout.startswith(b"1.1 GET /o 0 plain")


def test_an_upgrade_for_another_protocol_is_left_to_the_handler(http_server):
    srv = http_server(version_handler)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(HEAD + b"Connection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        head, body, _ = _read_http1(s)
    assert head.startswith(b"HTTP/1.1 200 ") and b"upgrade=echo" in body
    assert _refusals(srv) == []


# -- HTTP2-Settings decoding (sans-IO) -------------------------------------------------------

def _enc(payload: bytes, pad: bool = False) -> bytes:
    e = base64.urlsafe_b64encode(payload)
    return e if pad else e.rstrip(b"=")


@pytest.mark.parametrize("payload", [b"", b"\x00\x01\x00\x00\x10\x00",
                                     b"\x00\x05\x00\x00\x40\x00" b"\x00\x04\x7f\xff\xff\xff",
                                     b"\x00\x99\xff\xff\xff\xff",  # unknown: ignored
                                     b"\x00\x03\x00\x00\x00\x64" * MAX_SETTINGS])
def test_decode_settings_accepts_valid_payloads_padded_or_not(payload):
    assert decode_settings(_enc(payload)) == payload
    assert decode_settings(_enc(payload, pad=True)) == payload
    assert decode_settings(b" " + _enc(payload) + b"\t") == payload


@pytest.mark.parametrize("value", [
    b"AAMAAABk+A==",                      # '+' is base64, not base64url
    b"AAMAAAB",                           # 7 characters: not a multiple of 6 bytes
    b"A",                                 # an impossible length
    b"AAMAAABk=",                         # wrong padding
    b"AAMA AABk",                         # inner whitespace
    _enc(b"\x00\x02\x00\x00\x00\x02"),    # ENABLE_PUSH = 2
    _enc(b"\x00\x04\x80\x00\x00\x00"),    # INITIAL_WINDOW_SIZE > 2^31-1
    _enc(b"\x00\x05\x00\x00\x3f\xff"),    # MAX_FRAME_SIZE < 16384
    _enc(b"\x00\x05\x01\x00\x00\x00"),    # MAX_FRAME_SIZE > 2^24-1
    _enc(b"\x00\x08\x00\x00\x00\x02"),    # ENABLE_CONNECT_PROTOCOL = 2
    _enc(b"\x00\x03\x00\x00\x00\x64" * (MAX_SETTINGS + 1)),
    b"A" * (MAX_SETTINGS_FIELD + 4),
])
def test_decode_settings_refuses_bad_values(value):
    assert decode_settings(value) is None


def test_graceful_shutdown_of_an_upgraded_connection_sends_goaway_and_finishes_stream_1(
        http_server):
    """The upgraded connection takes over the drain hook: shutdown sends GOAWAY
    (NO_ERROR, last stream 1) and stream 1, in flight, still gets its response."""
    started = []

    def handler(req):
        started.append(req.target)
        greenrt.sleep(0.3)
        return version_handler(req)

    srv = http_server(handler)
    c, settings = _h2_client()
    upgrade = (b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
               b"Upgrade: h2c\r\nHTTP2-Settings: " + settings + b"\r\n\r\n")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(upgrade + c.data_to_send() + _SETTINGS_ACK)
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(65536)
        raw = buf.partition(b"\r\n\r\n")[2]
        while not started:
            time.sleep(0.01)
        srv.shutdown()
        while data := s.recv(65536):  # until the server closes (h2 the library stops
            raw += data               # at a GOAWAY: the frames are read by hand)
    frames = _frames(raw)
    goaways = [p for t, _, sid, p in frames if t == 7]
    assert [(int.from_bytes(p[:4], "big"), int.from_bytes(p[4:8], "big")) for p in goaways] \
        == [(1, 0)]
    data1 = [(f, p) for t, f, sid, p in frames if t == 0 and sid == 1]
    assert b"".join(p for _, p in data1) == b"2 GET /slow 0 up host=x upgrade=None"
    assert data1[-1][0] & 1  # END_STREAM: the response completed after the GOAWAY
    assert frames.index(next(fr for fr in frames if fr[0] == 7)) < frames.index(
        next(fr for fr in frames if fr[0] == 0 and fr[2] == 1))


_SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"


def _frames(raw: bytes) -> list[tuple[int, int, int, bytes]]:
    """``(type, flags, stream id, payload)`` of the whole frames in ``raw``."""
    out, i = [], 0
    while i + 9 <= len(raw):
        n = int.from_bytes(raw[i:i + 3], "big")
        if i + 9 + n > len(raw):
            break
        out.append((raw[i + 3], raw[i + 4], int.from_bytes(raw[i + 5:i + 9], "big") & 0x7FFFFFFF,
                    raw[i + 9:i + 9 + n]))
        i += 9 + n
    return out
