"""The own path's one-pass head parser (``fast_request``) against the byte-by-byte
gate: it takes the common request, declines everything unusual, and what it accepts
the gate accepts with the same event (the transcript fixture and the fuzz target
compare both paths on every input as well)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greenrt.protocols.http import HTTPError, Limits
from greenrt.protocols.http1 import SERVER, H1Connection
from greenrt.protocols.http1._request_parser import fast_request

LIMITS = Limits(max_head_bytes=256, max_headers=4, max_request_line=40)


def _gate(data: bytes, limits: Limits = LIMITS):
    c = H1Connection(SERVER, limits, own_send=True)
    c._fast_heads = False
    c.receive_data(data)
    try:
        ev = c.next_event()
    except HTTPError as e:
        return ("error", e.code)
    if not hasattr(ev, "headers"):
        return ("event", type(ev).__name__)
    return ("req", ev.method, ev.target, ev.http_version, ev.headers, c.body_framing,
            c.buffered, ev.upgrade)


def _fast(data: bytes, limits: Limits = LIMITS):
    buf = bytearray(data)
    r = fast_request(buf, limits)
    assert bytes(buf) == data  # it changes nothing
    if r is None:
        return None
    ev, end, head, lower = r
    assert head == data[:end] and lower == head.lower()
    return ("req", ev.method, ev.target, ev.http_version, ev.headers, "none", len(data) - end,
            ev.upgrade)


def test_takes_the_common_request():
    data = b"GET /a?b HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\nAccept: */* \r\n\r\nGET"
    assert _fast(data) == _gate(data)
    assert _fast(data)[4] == [(b"host", b"x"), (b"user-agent", b"t"), (b"accept", b"*/*")]


@pytest.mark.parametrize("field, upgrade", [(b"Upgrade: h2c", True), (b"UPGRADE:websocket", True),
                                            (b"X-Upgrade: h2c", False), (b"Upgraded: 1", False)])
def test_notes_an_upgrade_field_as_the_gate_does(field, upgrade):
    """``RequestHead.upgrade`` (what routes a request to the server's h2c hook) is the
    same on both paths."""
    data = b"GET / HTTP/1.1\r\nHost: x\r\n" + field + b"\r\n\r\n"
    assert _fast(data) == _gate(data)
    assert _fast(data)[-1] is upgrade


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\nHost: x\r\n",                                   # incomplete
    b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",                           # leading empty line
    b"GET /" + b"a" * 40 + b" HTTP/1.1\r\nHost: x\r\n\r\n",             # request line limit
    b"GET / HTTP/1.1\r\nHost: x\r\n" + b"A: b\r\n" * 4 + b"\r\n",       # field count limit
    b"GET / HTTP/1.1\r\nHost: x\r\nA: " + b"b" * 250 + b"\r\n\r\n",     # head size limit
    b"GET / HTTP/1.1\nHost: x\r\n\r\n",                                 # bare LF
    b"GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n c\r\n\r\n",                 # obs-fold
    b"GET / HTTP/1.1\r\nHost: x\r\nA: b\x01\r\n\r\n",                   # control byte
    b"GET / HTTP/1.1\r\nHost: x\r\nA : b\r\n\r\n",                      # grammar
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",          # body framing
    b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",                               # version
    b"GET x HTTP/1.1\r\nHost: x\r\n\r\n",                               # target form
    b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",                                          # no Host
    b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",                    # two Hosts
    b"GET / HTTP/1.1\r\nHost: a, b\r\n\r\n",                            # bad Host
])
def test_declines_the_unusual(data):
    assert _fast(data) is None


_LINE = st.sampled_from([
    b"Host: x", b"Host: x:80", b"host:x", b"Host: a b", b"Host: [::1]:8", b"A: b",
    b"A:", b"A: b c ", b"A:\tb", b"A : b", b"A: b\x00", b"A: b\x7f", b"A\x01: b",
    b"A: b\x0bc", b"A: b\x0cc", b"A: b\x1fc", b"A: \x80\xff", b"A: b\rc", b"A: b \t c",
    b"Content-Length: 1", b"Transfer-Encoding: chunked", b" A: b", b"\tA: b", b"",
    b"X-" + b"y" * 60 + b": z", b"Connection: close", b"Expect: 100-continue",
])
_START = st.sampled_from([b"GET / HTTP/1.1"] * 12 + [b"GET /p?q=1 HTTP/1.0"] * 4 + [
    b"GET / HTTP/1.1", b"GET / HTTP/1.0", b"HEAD /x HTTP/1.1", b"GET  / HTTP/1.1",
    b"GET / HTTP/1.2", b"GET / HTTP/2.0", b"G@T / HTTP/1.1", b"GET http://x/ HTTP/1.1",
    b"GET /" + b"a" * 40 + b" HTTP/1.1", b"OPTIONS * HTTP/1.1", b"GET /\x01 HTTP/1.1",
])
_EOL = st.sampled_from([b"\r\n"] * 12 + [b"\n", b"\r"])
_GOOD = st.sampled_from([b"A: b", b"User-Agent: t/1", b"Accept: */*", b"A:", b"A: b c "])


@settings(max_examples=400, deadline=None)
@given(_START, st.booleans(), st.lists(st.tuples(st.one_of(_GOOD, _GOOD, _GOOD, _LINE), _EOL), max_size=5),
       _EOL, st.sampled_from([b"", b"GET / HTTP/1.1\r\n", b"\r\n"]))
def test_what_it_accepts_the_gate_accepts_identically(start, host, lines, eol, rest):
    if host:
        lines = [(b"Host: x", b"\r\n"), *lines]
    data = start + eol + b"".join(a + b for a, b in lines) + b"\r\n" + rest
    fast = _fast(data)
    if fast is not None:
        assert fast == _gate(data)
