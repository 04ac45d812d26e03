"""The server's own response writer (``H1Connection(own_send=True)``) against h11's send
path: for every request shape x response shape, both refuse the same responses, and
the accepted ones have the same status line, the same header fields (order aside,
plus our ``Date``), the same body bytes and the same keep-alive verdict. Header
fields are refused by h11's grammar exactly (CR, LF, NUL, surrounding whitespace, bad names)."""

from __future__ import annotations

import email.utils
import itertools

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greenrt.protocols.http import Limits, LocalProtocolError
from greenrt.protocols.http1 import SERVER, H1Connection
from greenrt.protocols.http1._connection import RequestHead

REQUESTS = {
    "get11": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "get10": b"GET / HTTP/1.0\r\n\r\n",
    "head11": b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
    "head10": b"HEAD / HTTP/1.0\r\n\r\n",
    "close11": b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close\r\n\r\n",
    "post_cl": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab",
    "connect": b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n",
    "upgrade": b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
}
HEADERS = {
    "none": [],
    "ct": [(b"content-type", b"text/plain")],
    "cl": [(b"content-length", b"5")],
    "cl_dup_same": [(b"content-length", b"5"), (b"content-length", b"5, 5")],
    "cl_conflict": [(b"content-length", b"5"), (b"content-length", b"6")],
    "cl_bad": [(b"content-length", b"5x")],
    "te": [(b"transfer-encoding", b"Chunked"), (b"content-length", b"5")],
    "te_gzip": [(b"transfer-encoding", b"gzip")],
    "te_twice": [(b"transfer-encoding", b"chunked"), (b"transfer-encoding", b"chunked")],
    "conn_close": [(b"connection", b"close"), (b"content-length", b"5")],
    "conn_ka": [(b"connection", b"keep-alive"), (b"content-length", b"5")],
    "bad_cr": [(b"x-a", b"1\r\nx-b: 2")],
    "bad_lf": [(b"x-a", b"1\nx")],
    "bad_nul": [(b"x-a", b"1\x00")],
    "ctl_x01": [(b"x-a", b"1\x01")],  # h11 allows other controls; so do we
    "bad_lead_ws": [(b"x-a", b" 1")],
    "bad_name_sp": [(b"x a", b"1")],
    "bad_name_colon": [(b"x:a", b"1")],
    "bad_name_cr": [(b"x\ra", b"1")],
}
STATUSES = [200, 204, 304, 404]
BODIES = [b"", b"hello", b"hello!"]


def _run(req: bytes, status: int, headers, body: bytes, own: bool, limits=None):
    c = H1Connection(SERVER, limits or Limits(), own_send=own)
    c.receive_data(req)
    assert type(c.next_event()) in (h11.Request, RequestHead)
    while type(c.next_event()) is not h11.EndOfMessage:
        pass
    try:
        if own:  # the raw pairs, as the server passes them
            out = c.response_head(status, headers, b"R")
            if body:
                out += c.response_data(body)
            out += c.response_end()
        else:
            out = c.send(h11.Response(status_code=status, headers=headers, reason=b"R"))
            if body:
                out += c.send(h11.Data(data=body))
            out += c.send(h11.EndOfMessage())
    except (LocalProtocolError, h11.LocalProtocolError):
        return ("refused", c.reusable)
    head, _, rest = out.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    fields = sorted((n.lower(), v) for n, _, v in (ln.partition(b": ") for ln in lines[1:]))
    fields = [f for f in fields if f[0] != b"date"]
    return ("sent", lines[0], fields, rest, c.reusable, c.our_state)


def _h11_refuses_headers(headers) -> bool:
    try:
        h11.Response(status_code=200, headers=headers)
    except h11.LocalProtocolError:
        return True
    return False


@pytest.mark.parametrize("req", sorted(REQUESTS))
def test_own_writer_matches_h11(req):
    for (hname, headers), status, body in itertools.product(HEADERS.items(), STATUSES, BODIES):
        ref = _run(REQUESTS[req], status, headers, body, own=False)
        own = _run(REQUESTS[req], status, headers, body, own=True)
        assert own == ref, (req, hname, status, body, own, ref)
        if hname.startswith("bad_"):
            assert ref[0] == "refused" and _h11_refuses_headers(headers)


def test_bad_header_fields_are_refused_and_break_the_response():
    for hname in (h for h in HEADERS if h.startswith("bad_")):
        c = H1Connection(SERVER, own_send=True)
        c.receive_data(REQUESTS["get11"])
        c.next_event()
        c.next_event()
        with pytest.raises(LocalProtocolError):
            c.response_head(200, HEADERS[hname], b"OK")
        assert not c.reusable
        with pytest.raises(LocalProtocolError):  # nothing can be sent after it
            c.response_head(200, [(b"content-length", b"0")], b"OK")


def test_refusal_is_not_cached_as_acceptance():
    # the same bad field twice: refused both times (the cache holds valid fields only)
    for _ in range(2):
        c = H1Connection(SERVER, own_send=True)
        c.receive_data(REQUESTS["get11"])
        c.next_event()
        c.next_event()
        with pytest.raises(LocalProtocolError):
            c.response_head(200, [(b"x-a", b"v\r\nset-cookie: a=b")], b"OK")


def test_date_header_and_keep_alive_cycles():
    c = H1Connection(SERVER, Limits(max_requests_per_connection=3), own_send=True,
                     wall_clock=lambda: 784111777.0)
    c.receive_data(REQUESTS["get11"] * 3)
    closes = []
    for _ in range(3):
        assert type(c.next_event()) is RequestHead
        assert type(c.next_event()) is h11.EndOfMessage
        out = c.response_head(200, [(b"content-length", b"2")], b"OK")
        assert b"\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\n" in out
        out += c.response_data(b"ok") + c.response_end()
        closes.append(b"connection: close" in out.lower())
        if c.reusable:
            c.start_next_cycle()
    assert closes == [False, False, True] and not c.reusable
    # a handler-provided Date is kept, not duplicated
    c = H1Connection(SERVER, own_send=True, wall_clock=lambda: 0.0)
    c.receive_data(REQUESTS["get11"])
    c.next_event()
    c.next_event()
    out = c.response_head(200, [(b"date", b"x"), (b"content-length", b"0")], b"")
    assert out.lower().count(b"\r\ndate:") == 1 and b"\r\ndate: x\r\n" in out
    assert email.utils.parsedate_to_datetime("Sun, 06 Nov 1994 08:49:37 GMT").year == 1994


def test_content_length_is_enforced_and_chunked_framing():
    c = H1Connection(SERVER, own_send=True)
    c.receive_data(REQUESTS["get11"])
    c.next_event()
    c.next_event()
    c.response_head(200, [(b"content-length", b"3")], b"")
    c.response_data(b"ab")
    with pytest.raises(LocalProtocolError):
        c.response_data(b"cd")
    assert not c.reusable
    c = H1Connection(SERVER, own_send=True)
    c.receive_data(REQUESTS["get11"])
    c.next_event()
    c.next_event()
    head = c.response_head(200, [], b"")
    assert b"Transfer-Encoding: chunked\r\n" in head
    assert c.response_data(b"abc") == b"3\r\nabc\r\n" and c.response_data(b"") == b""
    assert c.response_end() == b"0\r\n\r\n" and c.reusable


def test_100_continue_only_before_the_head():
    c = H1Connection(SERVER, own_send=True)
    c.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert type(c.next_event()) is RequestHead
    assert c.they_are_waiting_for_100_continue
    assert c.response_continue() == b"HTTP/1.1 100 \r\n\r\n"
    assert not c.they_are_waiting_for_100_continue
    c.receive_data(b"ab")
    assert bytes(c.next_event().data) == b"ab"
    assert type(c.next_event()) is h11.EndOfMessage
    c.response_head(200, [(b"content-length", b"0")], b"")
    with pytest.raises(LocalProtocolError):
        c.response_continue()


def test_request_grammar_is_h11s():
    import h11._abnf as abnf

    from greenrt.protocols.http1._request_parser import HEADER_FIELD, REQUEST_LINE

    assert HEADER_FIELD == abnf.header_field and REQUEST_LINE == abnf.request_line


_PIECES = [b"GET", b"POST", b"HEAD", b"G@T", b" ", b"/", b"/a?b", b"HTTP/1.1", b"HTTP/1.0",
           b"\r\n", b"\r", b"\n", b"\x00", b"\x01", b"\t", b"Host: x", b"host:", b"X-A: ",
           b"x a:", b": v", b"Content-Length: 0", b"Connection: close", b"\xff", b"\x7f",
           b"Expect: 100-continue", b"Transfer-Encoding: Chunked", b"0\r\n\r\n", b"v "]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=14),
       st.sampled_from([b"GET / HTTP/1.1\r\n", b"GET / HTTP/1.0\r\n", b""]))
def test_own_request_parser_agrees_with_h11(h1, pieces, start):
    # h1.transcript runs h11's parser and ours on the same bytes and asserts that the
    # events and verdicts (error type, code, status) are identical
    data = start + b"".join(pieces) + b"\r\n\r\n"
    h1.transcript([data])
    h1.transcript(h1.segments(data, "bytes"))


def test_header_model_cache_never_admits_a_bad_field():
    from greenrt.protocols.http import Headers

    for _ in range(2):  # the second time would come from the cache if it were cached
        for bad in [("x-a", "v\r\nset-cookie: a=b"), (b"x-a", b"v\x00"), ("x a", "1"), ("", "1")]:
            with pytest.raises(LocalProtocolError):
                Headers([bad])
    assert Headers([("x-n", "1")]).raw() == [(b"x-n", b"1")]
    with pytest.raises(TypeError):
        Headers([("x-n", True)])  # not aliased to the cached ("x-n", 1)-like entry
    assert Headers([("X-Up", b"v"), (b"X-Up", "v")]).raw() == [(b"x-up", b"v")] * 2


def test_content_length_argument_replaces_or_defaults():
    def head(headers, length, replace):
        c = H1Connection(SERVER, own_send=True)
        c.receive_data(REQUESTS["get11"])
        c.next_event()
        c.next_event()
        out = c.response_head(200, headers, b"", length, replace_length=replace)
        return [ln for ln in out.split(b"\r\n") if ln.startswith(b"content-length")]

    assert head([(b"content-length", b"9")], 3, True) == [b"content-length: 3"]
    assert head([(b"content-length", b"9")], 3, False) == [b"content-length: 9"]
    assert head([], 3, False) == [b"content-length: 3"]
    assert head([(b"content-length", b"x")], 3, True) == [b"content-length: 3"]


@pytest.mark.parametrize("req", sorted(REQUESTS))
def test_fast_response_head_matches_the_general_path(req, monkeypatch):
    # the one-format head (keep-alive HTTP/1.1, a known length, no framing fields)
    # gives exactly the general path's bytes and state, for every request x header
    # shape x status x length argument, and refuses what it refuses
    from greenrt.protocols.http1 import _response_writer as rw

    def run(fast, status, headers, length, replace, close):
        monkeypatch.setattr(rw, "_FAST_HEAD", fast)
        c = H1Connection(SERVER, own_send=True, wall_clock=lambda: 1_700_000_000.0)
        c.receive_data(REQUESTS[req])
        while type(c.next_event()) is not h11.EndOfMessage:
            pass
        c.close_after_cycle = close
        try:
            out = c.response_head(status, headers, b"R", length, replace_length=replace)
            out += c.response_data(b"x" * (length or 0)) if length else b""
            out += c.response_end()
        except LocalProtocolError as e:
            return ("refused", str(e))
        return (out, c.reusable, c.our_state)

    for hname, status, length, replace, close in itertools.product(
            sorted(HEADERS), (200, 204, 304, 404, 999), (None, 0, 5), (True, False),
            (False, True)):
        headers = HEADERS[hname]
        assert run(True, status, headers, length, replace, close) == \
            run(False, status, headers, length, replace, close), (hname, status, length)


def test_response_trailers_in_the_sans_io_writer():
    c = H1Connection(SERVER, own_send=True)
    c.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n")
    while type(c.next_event()) is not h11.EndOfMessage:
        pass
    assert b"Transfer-Encoding: chunked" in c.response_head(200, [], b"OK")
    assert c.response_chunked
    assert c.response_data(b"ab") == b"2\r\nab\r\n"
    with pytest.raises(LocalProtocolError):  # h11's field grammar: nothing consumed
        c.response_end([(b"x-a", b"v\r\nset-cookie: a=b")])
    assert c.response_end([(b"x-a", b"1"), (b"x-b", b"2")]) == b"0\r\nx-a: 1\r\nx-b: 2\r\n\r\n"
    assert c.reusable
    c.start_next_cycle()
    c.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    while type(c.next_event()) is not h11.EndOfMessage:
        pass
    c.response_head(200, [], b"OK", 2)
    assert not c.response_chunked
    c.response_data(b"ab")
    with pytest.raises(LocalProtocolError, match="chunked"):
        c.response_end([(b"x-a", b"1")])
