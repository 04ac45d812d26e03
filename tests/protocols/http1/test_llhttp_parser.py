"""The own path's llhttp head parser (``LLHead``, httptools) against the byte-by-byte
gate and the regex parser (``fast_request``): it takes the common request, declines
everything unusual (then ``fast_request`` and the gate decide, with today's verdicts),
and what it accepts the gate accepts with the same event. The transcript fixture
and the fuzz target compare all three paths on every input as well."""

from __future__ import annotations

import httptools  # (installed by make setup: missing, this fails)
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greenrt.protocols.http import Limits  # noqa: E402
from greenrt.protocols.http1 import SERVER, H1Connection  # noqa: E402
from greenrt.protocols.http1 import _llhttp_parser as llp  # noqa: E402
from greenrt.protocols.http1._request_parser import fast_request  # noqa: E402

from . import test_fast_head  # noqa: E402
from .test_fast_head import _LINE, _START, _gate  # noqa: E402
from .test_sansio import SMUGGLING  # noqa: E402

LIMITS = Limits(max_head_bytes=256, max_headers=4, max_request_line=40)


def _result(r, data: bytes):
    if r is None:
        return None
    ev, end, head, lower = r
    assert head == data[:end] and lower == head.lower()
    return ("req", ev.method, ev.target, ev.http_version, ev.headers, "none", len(data) - end,
            ev.upgrade)


def _ll(data: bytes, limits: Limits = LIMITS, ll: llp.LLHead | None = None):
    buf = bytearray(data)
    r = (ll or llp.LLHead()).request(buf, limits)
    assert bytes(buf) == data  # it changes nothing
    return _result(r, data)


def _regex(data: bytes, limits: Limits = LIMITS):
    return _result(fast_request(bytearray(data), limits), data)


def test_available_with_a_checked_httptools():
    """httptools >= 0.9 is installed here (the bench and http-fast extras), so the
    path must be on: a failing import-time strictness probe would switch it off
    silently, and this says so."""
    assert tuple(int(x) for x in httptools.__version__.split(".")[:2]) >= llp.MIN_HTTPTOOLS
    assert llp._llhttp_is_strict()
    assert llp.AVAILABLE and H1Connection._llhttp_heads


def test_the_probe_detects_a_lenient_llhttp():
    """The import-time probe is not vacuous: an llhttp with the dangerous
    leniencies on accepts heads of ``_MUST_REFUSE``."""
    ll = llp.LLHead()
    ll._parser.set_dangerous_leniencies(lenient_headers=True,
                                        lenient_optional_cr_before_lf=True)
    accepted = 0
    for data in llp._MUST_REFUSE:
        ll._renew()
        ll._parser.set_dangerous_leniencies(lenient_headers=True,
                                            lenient_optional_cr_before_lf=True)
        try:
            ll._parser.feed_data(data)
            accepted += 1
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            pass
    assert accepted >= 3


def test_takes_the_common_request():
    data = b"GET /a?b HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\nAccept: */* \r\n\r\nGET"
    assert _ll(data) == _gate(data) == _regex(data)
    assert _ll(data)[4] == [(b"host", b"x"), (b"user-agent", b"t"), (b"accept", b"*/*")]
    data10 = b"HEAD /p HTTP/1.0\r\nA:\r\nB: \t c  d \t\r\n\r\n"
    assert _ll(data10) == _gate(data10) == _regex(data10)
    assert _ll(data10)[4] == [(b"a", b""), (b"b", b"c  d")]


@pytest.mark.parametrize("field, upgrade", [(b"Upgrade: h2c", True), (b"UPGRADE:websocket", True),
                                            (b"X-Upgrade: h2c", False), (b"Upgraded: 1", False)])
def test_notes_an_upgrade_field_as_the_gate_does(field, upgrade):
    data = b"GET / HTTP/1.1\r\nHost: x\r\n" + field + b"\r\n\r\n"
    assert _ll(data) == _gate(data)
    assert _ll(data)[-1] is upgrade


@pytest.mark.parametrize("data", test_fast_head.test_declines_the_unusual.pytestmark[0].args[1] + [
    b"GET / HTTP/1.0\r\nHost: x\r\nHost: x\r\n\r\n",                   # same field twice
    b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nA: 2\r\n\r\n",               # (the dict merges)
    b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\na: 2\r\n\r\n",               # differs in case
    b"GET /\r\nHost: x\r\n\r\n",                                        # HTTP/0.9 line
    b"\rGET / HTTP/1.1\r\nHost: x\r\n\r\n",                               # llhttp skips CR
    b"\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",                               # (found by fuzzing)
    b"GET /  HTTP/1.1\r\nHost: x\r\n\r\n",                              # two spaces
    b"GET / HTTP/0.9\r\nHost: x\r\n\r\n",                               # llhttp: 0.9 is ok
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n",  # paused
    b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n",                               # method llhttp lacks
    b"CONNECT x:1 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
])
def test_declines_the_unusual(data):
    assert _ll(data) is None


@pytest.mark.parametrize("name", sorted(SMUGGLING))
def test_declines_every_smuggling_case(name):
    """The smuggling corpus: none of it is taken here, so the gate answers each with
    the error it always gave (``test_sansio`` checks the verdicts on every path)."""
    data = SMUGGLING[name][0]
    assert _ll(data, Limits()) is None
    assert _gate(data, Limits())[0] == "error" or b"ength" in data or b"ncoding" in data


_POSITIONS = {
    "path": b"GET /a%sb HTTP/1.1\r\nHost: x\r\n\r\n",
    "query": b"GET /a?q%sb HTTP/1.1\r\nHost: x\r\n\r\n",
    "fragment": b"GET /a#q%sb HTTP/1.1\r\nHost: x\r\n\r\n",
    "method": b"G%sT / HTTP/1.1\r\nHost: x\r\n\r\n",
    "name": b"GET / HTTP/1.1\r\nHost: x\r\nA%sb: c\r\n\r\n",
    "name_start": b"GET / HTTP/1.1\r\nHost: x\r\n%sb: c\r\n\r\n",
    "value": b"GET / HTTP/1.1\r\nHost: x\r\nA: b%sc\r\n\r\n",
    "value_start": b"GET / HTTP/1.1\r\nHost: x\r\nA:%sc\r\n\r\n",
    "value_end": b"GET / HTTP/1.1\r\nHost: x\r\nA: c%s\r\n\r\n",
    "host": b"GET / HTTP/1.1\r\nHost: a%sb\r\n\r\n",
    "version": b"GET / HTTP/1.%s\r\nHost: x\r\n\r\n",
}


@pytest.mark.parametrize("pos", sorted(_POSITIONS))
def test_every_byte_in_every_position(pos):
    """All 256 bytes at each position of a common head: whatever the llhttp path
    takes, the gate takes with the same event; and it takes everything the regex
    path takes there (llhttp's byte sets are h11's, as narrowed by fast_request), except
    for methods llhttp does not know."""
    taken = 0
    for c in range(256):
        data = _POSITIONS[pos] % bytes([c])
        got = _ll(data)
        if got is not None:
            taken += 1
            assert got == _gate(data), (pos, hex(c))
        elif pos != "method":
            assert _regex(data) is None, (pos, hex(c))
    assert taken >= (1 if pos == "method" else 2)  # the position is exercised


def test_one_parser_serves_a_connection_and_recovers():
    """One LLHead per connection, reused across keep-alive requests: after a head it
    declines (an llhttp error, a pause, ``Connection: close``) the next good head is
    taken again, with the same event as the gate."""
    ll = llp.LLHead()
    good = b"GET /n HTTP/1.1\r\nHost: x\r\n\r\n"
    seq = [good, b"GET / HTTP/1.1\r\nHost: x\r\nA : b\r\n\r\n", good,
           b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: a\r\nConnection: upgrade\r\n\r\n", good,
           b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", good,
           b"GET / HTTP/1.0\r\n\r\n", good, b"FOO / HTTP/1.1\r\n\r\n", good]
    for data in seq:
        got = _ll(data, ll=ll)
        if got is None:
            continue
        assert got == _gate(data)
    for data in (good, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"):
        for _ in range(3):
            assert _ll(data, ll=ll) == _gate(data)


def test_the_connection_uses_it_and_falls_back():
    """Over an ``H1Connection``: pipelined heads, some taken by llhttp, some by the
    regex path or the gate, the same events as with the gate alone."""
    data = (b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /2 HTTP/1.1\r\nHost: x\r\nA: 1\r\nA: 2\r\n\r\n"     # llhttp declines
            b"PATCHX /3 HTTP/1.1\r\nHost: x\r\n\r\n"                  # llhttp does not know it
            b"GET /4 HTTP/1.1\r\nHost: x\r\n\r\n")

    def run(ll: bool, fast: bool):
        c = H1Connection(SERVER, LIMITS, own_send=True)
        c._llhttp_heads, c._fast_heads = ll, fast
        c.receive_data(data)
        out = []
        for _ in range(4):
            ev = c.next_event()
            out.append((ev.method, ev.target, ev.headers))
            c.next_event()
            c.response_head(200, [(b"content-length", b"0")])
            c.response_end()
            c.start_next_cycle()
        return out, c._ll is not None

    assert run(True, True)[0] == run(False, True)[0] == run(False, False)[0]
    assert run(True, True)[1] and not run(False, True)[1]


_EOL = st.sampled_from([b"\r\n"] * 12 + [b"\n", b"\r"])
_GOOD = st.sampled_from([b"A: b", b"User-Agent: t/1", b"Accept: */*", b"A:", b"A: b c ",
                         b"B: \t x \t", b"Cookie: a=b; c=d", b"X-\xff: y"])


@settings(max_examples=600, deadline=None)
@given(_START, st.booleans(), st.lists(st.tuples(st.one_of(_GOOD, _GOOD, _GOOD, _LINE), _EOL),
                                       max_size=5),
       _EOL, st.sampled_from([b"", b"GET / HTTP/1.1\r\n", b"\r\n"]))
def test_what_it_accepts_the_gate_accepts_identically(start, host, lines, eol, rest):
    if host:
        lines = [(b"Host: x", b"\r\n"), *lines]
    data = start + eol + b"".join(a + b for a, b in lines) + b"\r\n" + rest
    got = _ll(data)
    if got is not None:
        assert got == _gate(data) == _regex(data)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=120), st.sampled_from([b"", b"\r\n\r\n", b"\r\nHost: x\r\n\r\n"]))
def test_arbitrary_bytes(prefix, suffix):
    """Any bytes: nothing escapes (the path is total), and a take is the gate's."""
    data = prefix + suffix
    got = _ll(data)
    if got is not None:
        assert got == _gate(data)


def test_without_httptools_the_python_parsers_serve():
    """The http-fast extra is optional: with httptools not importable the module
    loads, the path is off, and a request is parsed by the pure-Python parsers."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['httptools'] = None\n"
        "from greenrt.protocols.http1 import SERVER, H1Connection\n"
        "from greenrt.protocols.http1 import _llhttp_parser as llp\n"
        "assert not llp.AVAILABLE and not H1Connection._llhttp_heads\n"
        "c = H1Connection(SERVER, own_send=True)\n"
        "c.receive_data(b'GET /x HTTP/1.1\\r\\nHost: h\\r\\n\\r\\n')\n"
        "ev = c.next_event()\n"
        "assert (ev.target, ev.headers) == (b'/x', [(b'host', b'h')]) and c._ll is None\n"
        "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
