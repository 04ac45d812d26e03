"""Fuzz target: HTTP/1.1 request parsing through greenrt's hardened layer
(``protocols.http1.H1Connection``, server role) — not h11 alone. Both request paths
run: the one with h11 behind the gate, and the server's own head parser
(``own_send=True``, what ``serve()`` uses), and they must agree exactly.

Run with atheris::

    .venv/bin/python fuzz/fuzz_http1_request.py /tmp/h1req-scratch fuzz/corpus/http1_request \
        -max_total_time=60

What one input checks, beyond "no unexpected exception":

* the parser is total: the only exceptions are ``protocols.http.HTTPError``
  subclasses, each carrying a status in {400, 408, 413, 414, 431, 501, 505} or
  ``None`` (peer gone), with small limits so every limit path runs;
* segmentation independence: the input fed whole, in pieces (cut points derived from
  the input), and one byte at a time (for short inputs) gives the same requests, the
  same body bytes and the same verdict;
* limits hold: no request is accepted with a head, field count, trailer count or
  body beyond them, and the bytes buffered stay bounded; ``split_trailers`` keeps no
  forbidden trailer field;
* after any error nothing more is parsed (sticky errors: no smuggled request);
* differential: the server's own parser (``own_send``) accepts, refuses and reports
  exactly what the h11 path does, with its llhttp head parser (``LLHead``, when
  httptools is installed), with only its one-pass regex head parser
  (``fast_request``), and with the gate alone; and ``LLHead`` on the raw input, when
  it takes a head, takes it as the gate does.
"""

from __future__ import annotations

import sys
import zlib

CORPUS = "corpus/http1_request"

try:  # pragma: no cover - only when running under atheris
    import atheris

    with atheris.instrument_imports():
        import h11

        from greenrt.protocols.http import HTTPError, Limits
        from greenrt.protocols.http.model import FORBIDDEN_TRAILERS, split_trailers
        from greenrt.protocols.http1 import NEED_DATA, SERVER, H1Connection
        from greenrt.protocols.http1._connection import RequestHead
except ImportError:
    atheris = None
    import h11

    from greenrt.protocols.http import HTTPError, Limits
    from greenrt.protocols.http.model import FORBIDDEN_TRAILERS, split_trailers
    from greenrt.protocols.http1 import NEED_DATA, SERVER, H1Connection
    from greenrt.protocols.http1._connection import RequestHead

#: The documented errors of the request parser: nothing else may escape it.
EXPECTED_ERRORS = (HTTPError,)

LIMITS = Limits(max_head_bytes=1024, max_headers=12, max_request_line=200, max_body_bytes=2048,
                max_chunk_line=64, max_requests_per_connection=8)
_STATUSES = {None, 400, 408, 413, 414, 431, 501, 505}


class Finding(AssertionError):
    """An invariant of the parser broke (not an expected error)."""


def _parse(chunks, own_send: bool = False, fast: bool = True,
           llhttp: bool = True) -> tuple[list, object]:
    c = H1Connection(SERVER, LIMITS, own_send=own_send)
    c._fast_heads = fast  # the own path's one-pass head parsers (LLHead, fast_request)
    if not llhttp:
        c._llhttp_heads = False
    out: list = []
    verdict: object = None
    body = bytearray()

    def drain() -> bool:
        nonlocal body
        while True:
            try:
                ev = c.next_event()
            except HTTPError as e:
                if e.status not in _STATUSES:
                    raise Finding(f"unexpected status {e.status} for {e!r}") from None
                try:
                    c.next_event()
                except HTTPError as again:
                    if again is not e:
                        raise Finding("error is not sticky") from None
                else:
                    raise Finding("parser continued after an error")
                return_err.append((type(e).__name__, e.code, e.status))
                return False
            t = type(ev)
            if ev is NEED_DATA:
                if c.buffered > LIMITS.max_head_bytes:
                    raise Finding(f"{c.buffered} bytes buffered while waiting for more")
                return True
            if t is h11.Request or t is RequestHead:
                if len(ev.headers) > LIMITS.max_headers:
                    raise Finding(f"{len(ev.headers)} fields accepted")
                out.append(("req", ev.method, ev.target, tuple(map(tuple, ev.headers))))
            elif t is h11.Data:
                body += ev.data
                if len(body) > LIMITS.max_body_bytes:
                    raise Finding(f"body of {len(body)} bytes accepted")
            elif t is h11.EndOfMessage:
                if len(ev.headers) > LIMITS.max_headers:
                    raise Finding(f"{len(ev.headers)} trailer fields accepted")
                kept, _ = split_trailers(ev.headers)
                if any(k in FORBIDDEN_TRAILERS for k, _ in kept.raw()):
                    raise Finding("a forbidden trailer field was kept")
                out.append(("body", bytes(body), tuple(ev.headers)))
                body = bytearray()
                c.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
                c.send(h11.EndOfMessage())
                if not c.reusable:
                    out.append(("close",))
                    return False
                c.start_next_cycle()
            else:
                out.append((t.__name__,))
                return False

    return_err: list = []
    for ch in chunks:
        c.receive_data(ch)
        if not drain():
            break
    else:
        c.receive_data(b"")
        drain()
    if return_err:
        verdict = return_err[0]
    return out, verdict


def _check_llhead(data: bytes, gate_only: tuple[list, object]) -> None:
    """``LLHead`` on the raw input: it changes nothing, and a head it takes is the
    gate's first request (method, target, fields)."""
    from greenrt.protocols.http1._llhttp_parser import LLHead

    buf = bytearray(data)
    got = LLHead().request(buf, LIMITS)
    if bytes(buf) != data:
        raise Finding("LLHead changed the buffer")
    if got is None:
        return
    ev = got[0]
    mine = ("req", ev.method, ev.target, tuple(map(tuple, ev.headers)))
    if not gate_only[0] or gate_only[0][0] != mine:
        raise Finding(f"LLHead took {mine} where the gate gives {gate_only}")


def _cuts(data: bytes) -> list[bytes]:
    h = zlib.crc32(data)
    parts, i = [], 0
    while i < len(data):
        step = 1 + (h % 13)
        h = (h * 1103515245 + 12345) & 0x7FFFFFFF
        parts.append(data[i:i + step])
        i += step
    return parts


def TestOneInput(data: bytes) -> None:
    whole = _parse([data])
    own = _parse([data], own_send=True)
    if own != whole:
        raise Finding(f"own parser differs from the h11 path: {own} vs {whole}")
    gate_only = _parse([data], own_send=True, fast=False)
    if gate_only != whole:
        raise Finding(f"own parser without fast_request differs: {gate_only} vs {whole}")
    if H1Connection._llhttp_heads:
        regex_only = _parse([data], own_send=True, llhttp=False)
        if regex_only != whole:
            raise Finding(f"own parser without llhttp differs: {regex_only} vs {whole}")
        _check_llhead(data, gate_only)
    for own_send in (False, True):
        pieces = _parse(_cuts(data), own_send)
        if whole != pieces:
            raise Finding(f"split input parsed differently (own_send={own_send}): "
                          f"{whole[1]} vs {pieces[1]}")
    if len(data) <= 512:
        single = _parse([data[i:i + 1] for i in range(len(data))], own_send=True)
        if whole != single:
            raise Finding(f"byte-by-byte input parsed differently: {whole[1]} vs {single[1]}")


if __name__ == "__main__":  # pragma: no cover
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
