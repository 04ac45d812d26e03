"""The hardened sans-IO layer: limits, smuggling defences and typed errors, each
checked with the whole input in one read AND byte by byte (and with random splits by
a property test), plus the h11 gaps it closes shown against bare h11."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greenrt.protocols.http import (
    BadRequest,
    ClientDisconnected,
    HeaderFieldsTooLarge,
    HTTPError,
    HTTPVersionNotSupported,
    Limits,
    PayloadTooLarge,
    UnsupportedTransferCoding,
    URITooLong,
)
from greenrt.protocols.http1 import CLIENT, SERVER, H1Connection

MODES = ["one", "bytes"]
KiB = 1024


def head_of_size(total: int, *, target: str = "/", nfields: int = 1) -> bytes:
    """A GET head of exactly ``total`` bytes (CRLFCRLF included) with ``nfields``
    fields, padding spread over ``X-Pad-*`` fields."""
    start = f"GET {target} HTTP/1.1\r\nHost: x\r\n".encode()
    fixed = len(start) + 2
    lines = []
    n_pad = max(nfields - 1, 0)
    if n_pad:
        per = (total - fixed) // n_pad
        for i in range(n_pad):
            name = f"X-Pad-{i}: ".encode()
            size = per if i < n_pad - 1 else total - fixed - per * (n_pad - 1)
            lines.append(name + b"a" * (size - len(name) - 2) + b"\r\n")
    head = start + b"".join(lines) + b"\r\n"
    assert len(head) == total, (len(head), total)
    return head


# -- limits, regardless of segmentation -------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_head_at_limit_is_accepted(h1, mode):
    head = head_of_size(64 * KiB, nfields=100)
    tr = h1.transcript(h1.segments(head, mode), eof=False)
    assert tr[0][0] == "request" and tr[1] == ("end", [])


@pytest.mark.parametrize("mode", MODES)
def test_head_one_byte_over_limit_is_431(h1, mode):
    head = head_of_size(64 * KiB + 1, nfields=100)
    tr = h1.transcript(h1.segments(head, mode), eof=False)
    assert tr == [("error", "HeaderFieldsTooLarge", "head_too_large", 431)]


def test_bare_h11_skips_its_limit_for_a_whole_oversized_head(h1):
    """The gap: h11 accepts a 1 MiB head that arrives in one read, although it
    rejects the same bytes fed one at a time. Ours rejects both (tests above)."""
    head = head_of_size(1024 * KiB, nfields=200)
    c = h11.Connection(h11.SERVER)
    c.receive_data(head)
    assert type(c.next_event()) is h11.Request
    c = h11.Connection(h11.SERVER)
    with pytest.raises(h11.RemoteProtocolError):
        for i in range(len(head)):
            c.receive_data(head[i:i + 1])
            if c.next_event() is not h11.NEED_DATA:
                break
    for mode in MODES:
        tr = h1.transcript(h1.segments(head, mode) if mode == "one" else
                           h1.segments(head[:70 * KiB], mode), eof=False)
        assert tr == [("error", "HeaderFieldsTooLarge", "head_too_large", 431)]


@pytest.mark.parametrize("mode", MODES)
def test_128_fields_accepted_129_rejected(h1, mode):
    ok = head_of_size(4000, nfields=128)
    tr = h1.transcript(h1.segments(ok, mode), eof=False)
    assert tr[0][0] == "request" and len(tr[0][3]) == 128
    bad = head_of_size(4000, nfields=129)
    tr = h1.transcript(h1.segments(bad, mode), eof=False)
    assert tr == [("error", "HeaderFieldsTooLarge", "too_many_headers", 431)]


@pytest.mark.parametrize("mode", MODES)
def test_request_line_limit_is_414(h1, mode):
    base = len("GET  HTTP/1.1")
    ok = b"GET /" + b"a" * (8192 - base - 1) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert len(ok.split(b"\r\n")[0]) == 8192
    tr = h1.transcript(h1.segments(ok, mode), eof=False)
    assert tr[0][0] == "request"
    bad = b"GET /" + b"a" * (8192 - base) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    tr = h1.transcript(h1.segments(bad, mode), eof=False)
    assert tr == [("error", "URITooLong", "request_line_too_long", 414)]


@pytest.mark.parametrize("mode", MODES)
def test_unterminated_request_line_is_414_early(h1, mode):
    """A request line that never ends is refused after max_request_line+1 bytes,
    without waiting for more (and without buffering up to the head limit)."""
    data = b"GET /" + b"a" * 8200
    tr = h1.transcript(h1.segments(data, mode), eof=False)
    assert tr == [("error", "URITooLong", "request_line_too_long", 414)]


@pytest.mark.parametrize("mode", MODES)
def test_declared_body_over_limit_is_413_before_any_body_byte(h1, mode):
    data = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (16 * 1024 * 1024 + 1)
    tr = h1.transcript(h1.segments(data, mode), eof=False)
    assert tr == [("error", "PayloadTooLarge", "body_too_large", 413)]


@pytest.mark.parametrize("mode", MODES)
def test_body_at_limit_is_accepted(h1, mode):
    lim = Limits(max_body_bytes=1000)
    data = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"z" * 1000
    tr = h1.transcript(h1.segments(data, mode), lim, eof=False)
    assert tr[1] == ("body", b"z" * 1000) and tr[2] == ("end", [])


@pytest.mark.parametrize("mode", MODES)
def test_chunked_body_over_limit_is_413(h1, mode):
    lim = Limits(max_body_bytes=1000)
    chunks = b"".join(b"64\r\n" + b"y" * 100 + b"\r\n" for _ in range(10))
    ok = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    tr = h1.transcript(h1.segments(ok, mode), lim, eof=False)
    assert tr[1] == ("body", b"y" * 1000) and tr[2] == ("end", [])
    bad = (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks
           + b"1\r\ny\r\n0\r\n\r\n")
    tr = h1.transcript(h1.segments(bad, mode), lim, eof=False)
    assert tr[-1] == ("error", "PayloadTooLarge", "body_too_large", 413)
    # the body handed on before the verdict never exceeds the limit
    assert sum(len(e[1]) for e in tr if e[0] == "body") <= 1000


@pytest.mark.parametrize("mode", MODES)
def test_huge_chunk_size_is_refused_at_the_size_line(h1, mode):
    data = (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"ffffffffffff\r\nabc")
    tr = h1.transcript(h1.segments(data, mode), eof=False)
    assert tr[-1] == ("error", "PayloadTooLarge", "body_too_large", 413)
    assert not any(e[0] == "body" for e in tr)


@pytest.mark.parametrize("mode", MODES)
def test_chunk_line_limit_is_exact(h1, mode):
    lim = Limits(max_chunk_line=100)
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    ok_line = b"3;" + b"e" * 98  # exactly 100 bytes
    ok = head + ok_line + b"\r\nabc\r\n0\r\n\r\n"
    tr = h1.transcript(h1.segments(ok, mode), lim, eof=False)
    assert tr[1] == ("body", b"abc")
    bad = head + ok_line + b"e\r\nabc\r\n0\r\n\r\n"
    tr = h1.transcript(h1.segments(bad, mode), lim, eof=False)
    assert tr[-1] == ("error", "BadRequest", "chunk_line_too_long", 400)


@pytest.mark.parametrize("mode", MODES)
def test_trailers_limits(h1, mode):
    lim = Limits(max_chunk_line=200, max_headers=3)
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nq\r\n0\r\n"
    ok = head + b"A: 1\r\nB: 2\r\n\r\n"
    tr = h1.transcript(h1.segments(ok, mode), lim, eof=False)
    assert tr[2] == ("end", [(b"a", b"1"), (b"b", b"2")])
    big = head + b"A: " + b"v" * 300 + b"\r\n\r\n"
    tr = h1.transcript(h1.segments(big, mode), lim, eof=False)
    assert tr[-1] == ("error", "HeaderFieldsTooLarge", "trailers_too_large", 431)
    many = head + b"".join(b"T%d: 1\r\n" % i for i in range(4)) + b"\r\n"
    tr = h1.transcript(h1.segments(many, mode), lim, eof=False)
    assert tr[-1] == ("error", "HeaderFieldsTooLarge", "too_many_trailers", 431)
    lf = head + b"A: 1\nB: 2\r\n\r\n"
    tr = h1.transcript(h1.segments(lf, mode), lim, eof=False)
    assert tr[-1] == ("error", "BadRequest", "bare_lf", 400)


def test_requests_per_connection_limit_closes_after_the_last(h1):
    lim = Limits(max_requests_per_connection=3)
    data = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 5
    c = H1Connection(SERVER, lim)
    c.receive_data(data)
    closes = []
    for _ in range(3):
        assert type(c.next_event()) is h11.Request
        assert type(c.next_event()) is h11.EndOfMessage
        out = c.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
        c.send(h11.EndOfMessage())
        closes.append(b"connection: close" in out.lower())
        if c.reusable:
            c.start_next_cycle()
    assert closes == [False, False, True]
    assert not c.reusable


# -- request smuggling ---------------------------------------------------------------

SMUGGLING = {
    "cl_te": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n",
              ("BadRequest", "cl_te_conflict", 400)),
    "te_cl": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
              b"Content-Length: 5\r\n\r\n0\r\n\r\n", ("BadRequest", "cl_te_conflict", 400)),
    "duplicate_cl_same": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                          b"Content-Length: 3\r\n\r\nabc", ("BadRequest", "duplicate_cl", 400)),
    "duplicate_cl_diff": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                          b"content-length: 30\r\n\r\nabc", ("BadRequest", "duplicate_cl", 400)),
    "cl_list": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc",
                ("BadRequest", "bad_cl", 400)),
    "cl_plus": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc",
                ("BadRequest", "bad_cl", 400)),
    "cl_negative": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
                    ("BadRequest", "bad_cl", 400)),
    "cl_hex": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x3\r\n\r\nabc",
               ("BadRequest", "bad_cl", 400)),
    "cl_huge": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + b"9" * 40 + b"\r\n\r\n",
                ("BadRequest", "bad_cl", 400)),
    "cl_unicode_digit": ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ³\r\n\r\n"
                         .encode(), ("BadRequest", "bad_cl", 400)),
    "cl_empty": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n",
                 ("BadRequest", "bad_cl", 400)),
    "te_gzip": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
                ("UnsupportedTransferCoding", "unsupported_transfer_coding", 501)),
    "te_gzip_chunked": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                        ("UnsupportedTransferCoding", "unsupported_transfer_coding", 501)),
    "te_chunked_twice": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n",
                         ("UnsupportedTransferCoding", "unsupported_transfer_coding", 501)),
    "te_identity": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n",
                    ("UnsupportedTransferCoding", "unsupported_transfer_coding", 501)),
    "te_xchunked": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n",
                    ("UnsupportedTransferCoding", "unsupported_transfer_coding", 501)),
    "te_empty": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\n\r\n",
                 ("BadRequest", "bad_te", 400)),
    "te_http10": (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                  ("BadRequest", "te_http10", 400)),
    "obs_fold": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  continued\r\n\r\n",
                 ("BadRequest", "obs_fold", 400)),
    "obs_fold_tab": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\tcontinued\r\n\r\n",
                     ("BadRequest", "obs_fold", 400)),
    "bare_lf_request_line": (b"GET / HTTP/1.1\nHost: x\r\n\r\n", ("BadRequest", "bare_lf", 400)),
    "bare_lf_field": (b"GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n", ("BadRequest", "bare_lf", 400)),
    "bare_lf_end": (b"GET / HTTP/1.1\r\nHost: x\r\n\n", ("BadRequest", "bare_lf", 400)),
    "bare_lf_chunk_line": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"3\nabc\r\n0\r\n\r\n", ("BadRequest", "bare_lf", 400)),
    "chunk_no_crlf": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"3\r\nabcX\r\n0\r\n\r\n", ("BadRequest", "bad_chunk", 400)),
    "chunk_size_space": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b" 3\r\nabc\r\n0\r\n\r\n", ("BadRequest", "bad_chunk", 400)),
    "space_before_colon": (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\n",
                           ("BadRequest", "malformed", 400)),
    "duplicate_host": (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
                       ("BadRequest", "duplicate_host", 400)),
    "missing_host": (b"GET / HTTP/1.1\r\nX: y\r\n\r\n", ("BadRequest", "malformed", 400)),
    "http2_preface_version": (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
                              ("HTTPVersionNotSupported", "version_not_supported", 505)),
    "http12": (b"GET / HTTP/1.2\r\nHost: x\r\n\r\n",
               ("HTTPVersionNotSupported", "version_not_supported", 505)),
    "bad_version": (b"GET / HTTX/1.1\r\nHost: x\r\n\r\n", ("BadRequest", "bad_version", 400)),
    "two_spaces": (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
                   ("BadRequest", "bad_request_line", 400)),
    "nul_in_value": (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
                     ("BadRequest", "malformed", 400)),
    "cr_in_value": (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n",
                    ("BadRequest", "malformed", 400)),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(SMUGGLING))
def test_smuggling_and_malformed_requests_are_refused(h1, name, mode):
    data, (cls, code, status) = SMUGGLING[name]
    tr = h1.transcript(h1.segments(data, mode), eof=False)
    assert tr[-1] == ("error", cls, code, status), tr
    # nothing after the bad message is ever parsed: no second request
    assert sum(1 for e in tr if e[0] == "request") <= 1


def test_errors_are_sticky_and_typed():
    c = H1Connection(SERVER)
    c.receive_data(SMUGGLING["cl_te"][0])
    with pytest.raises(BadRequest) as ei:
        c.next_event()
    assert ei.value.status == 400 and ei.value.code == "cl_te_conflict"
    with pytest.raises(BadRequest):
        c.next_event()
    assert c.error is ei.value and not c.reusable
    # the limit errors are also greenrt.LimitExceeded
    from greenrt import LimitExceeded
    for cls in (HeaderFieldsTooLarge, URITooLong, PayloadTooLarge):
        assert issubclass(cls, LimitExceeded) and issubclass(cls, HTTPError)
    for cls, status in ((UnsupportedTransferCoding, 501), (HTTPVersionNotSupported, 505)):
        assert cls.status == status


def test_bare_h11_keeps_a_cl_te_connection_open():
    """The gap: h11 serves CL+TE with keep-alive (RFC 9112 §6.1 says close)."""
    c = h11.Connection(h11.SERVER)
    c.receive_data(SMUGGLING["cl_te"][0])
    assert type(c.next_event()) is h11.Request
    assert type(c.next_event()) is h11.EndOfMessage
    c.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
    c.send(h11.EndOfMessage())
    assert c.our_state is h11.DONE and c.their_state is h11.DONE  # reusable: smuggled GET next


def test_lenient_mode_accepts_bare_lf_and_obs_fold(h1):
    lim = Limits(strict=False)
    tr = h1.transcript([b"GET / HTTP/1.1\nHost: x\nX-A: 1\r\n  more\n\n"], lim, eof=False)
    assert tr[0] == ("request", b"GET", b"/", [(b"host", b"x"), (b"x-a", b"1 more")])


# -- framing, pipelining, EOF -----------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_pipelined_requests_and_bodies(h1, mode):
    data = (b"\r\nGET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            b"POST /3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2;x=y\r\nab\r\n3\r\ncde\r\n0\r\nT: v\r\n\r\n"
            b"GET /4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            b"GET /never HTTP/1.1\r\nHost: x\r\n\r\n")
    tr = h1.transcript(h1.segments(data, mode))
    targets = [e[2] for e in tr if e[0] == "request"]
    assert targets == [b"/1", b"/2", b"/3", b"/4"]
    assert [e[1] for e in tr if e[0] == "body"] == [b"hello", b"abcde"]
    assert tr[-1] == ("not-reusable",)


@pytest.mark.parametrize("mode", MODES)
def test_eof_cases(h1, mode):
    assert h1.transcript([]) == [("closed",)]
    tr = h1.transcript(h1.segments(b"GET / HTTP/1.1\r\nHo", mode))
    assert tr == [("error", "ClientDisconnected", "incomplete_head", None)]
    tr = h1.transcript(h1.segments(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc", mode))
    assert tr[-1] == ("error", "ClientDisconnected", "incomplete_body", None)
    assert ClientDisconnected.status is None


# -- the client side (response parsing) ----------------------------------------------------

RESP = {
    "length": (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello"),
    "chunked": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                b"hello"),
    "eof": (b"HTTP/1.1 200 OK\r\n\r\nuntil close", b"until close"),
    "continue": (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                 b"ok"),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(RESP))
def test_client_parses_responses(h1, name, mode):
    data, body = RESP[name]
    tr = h1.transcript(h1.segments(data, mode), role=CLIENT)
    assert [e for e in tr if e[0] == "body"] == [("body", body)]
    assert any(e[0] == "end" for e in tr)


BAD_RESP = {
    "cl_te": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    "dup_cl": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    "bad_cl": b"HTTP/1.1 200 OK\r\nContent-Length: 3x\r\n\r\nabc",
    "te_gzip": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
    "obs_fold": b"HTTP/1.1 200 OK\r\nX: 1\r\n 2\r\nContent-Length: 0\r\n\r\n",
    "bare_lf": b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
    "version": b"HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n",
    "garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    "status_line_long": b"HTTP/1.1 200 " + b"x" * 9000 + b"\r\n\r\n",
    "truncated_body": b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\nabc",
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(BAD_RESP))
def test_client_refuses_bad_responses(h1, name, mode):
    tr = h1.transcript(h1.segments(BAD_RESP[name], mode), role=CLIENT)
    assert tr[-1][0] == "error", tr


def test_client_head_and_204_have_no_body(h1):
    req = h11.Request(method="HEAD", target="/", headers=[("host", "x")])
    tr = h1.transcript([b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n"],
                       role=CLIENT, request=req)
    assert tr[-1] == ("end", [])
    tr = h1.transcript([b"HTTP/1.1 204 No Content\r\n\r\n"], role=CLIENT)
    assert tr[-1] == ("end", [])


# -- segmentation independence as a property ---------------------------------------------

_pieces = st.sampled_from([
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody",
    b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4;e\r\nabcd\r\n0\r\n\r\n",
    b"GET /long HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 300 + b"\r\n\r\n",
    b"\r\n", b"\n", b" ", b"\r\n\r\n", b"Content-Length: 3\r\n", b"Transfer-Encoding: chunked\r\n",
    b"X: a\r\n b\r\n", b"HTTP/2.0", b"0\r\n\r\n", b"ff\r\n", b"GET /x HTTP/1.1\r\n",
    b"v" * 130, b"X-Long: " + b"w" * 150 + b"\n", b"3;" + b"e" * 45 + b"\r\nabc\r\n",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(_pieces, min_size=1, max_size=8), st.data())
def test_verdict_does_not_depend_on_segmentation(h1, pieces, data):
    lim = Limits(max_head_bytes=400, max_headers=4, max_request_line=120, max_body_bytes=200,
                 max_chunk_line=40)
    stream = b"".join(pieces)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(len(stream) - 1, 1)), max_size=12)))
    segs = [stream[a:b] for a, b in zip([0] + cuts, cuts + [len(stream)], strict=True) if a < b]
    whole = h1.transcript([stream], lim)
    split = h1.transcript(segs, lim)
    byte = h1.transcript(h1.segments(stream, "bytes"), lim)
    assert whole == split == byte


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_parser_is_total_on_random_bytes(h1, blob):
    """Arbitrary bytes never raise anything but our typed errors."""
    for role in (SERVER, CLIENT):
        tr = h1.transcript([blob], Limits(max_head_bytes=200, max_body_bytes=100), role=role)
        assert tr[-1][0] in ("error", "closed", "not-reusable", "end") or tr[-1][0] == "body" \
            or tr[-1][0] in ("request", "response")
    with pytest.raises(BadRequest):
        c = H1Connection(SERVER)
        c.receive_data(b"\x00\x01 / HTTP/1.1\r\n\r\n")
        c.next_event()
