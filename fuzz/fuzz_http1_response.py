"""Fuzz target: HTTP/1.1 response parsing through greenrt's hardened layer
(``protocols.http1.H1Connection``, client role, h11 behind it) — not h11 alone.

Run with atheris::

    .venv/bin/python fuzz/fuzz_http1_response.py /tmp/h1resp-scratch fuzz/corpus/http1_response \
        -max_total_time=60

The first input byte picks the request the response answers (GET, HEAD, POST,
CONNECT), so HEAD/204/304/1xx framing paths run. Each input checks totality (only
``HTTPError`` subclasses escape), segmentation independence (whole vs pieces vs byte
by byte for short inputs: same responses, same body, same verdict) and the limits
(no body or field count beyond them is ever delivered).
"""

from __future__ import annotations

import sys
import zlib

CORPUS = "corpus/http1_response"

try:  # pragma: no cover - only when running under atheris
    import atheris

    with atheris.instrument_imports():
        import h11

        from greenrt.protocols.http import HTTPError, Limits
        from greenrt.protocols.http1 import CLIENT, NEED_DATA, H1Connection
except ImportError:
    atheris = None
    import h11

    from greenrt.protocols.http import HTTPError, Limits
    from greenrt.protocols.http1 import CLIENT, NEED_DATA, H1Connection

#: The documented errors of the response parser: nothing else may escape it.
EXPECTED_ERRORS = (HTTPError,)

LIMITS = Limits(max_head_bytes=1024, max_headers=12, max_request_line=200, max_body_bytes=2048,
                max_chunk_line=64)
_METHODS = ("GET", "HEAD", "POST", "CONNECT")


class Finding(AssertionError):
    """An invariant of the parser broke (not an expected error)."""


def _parse(method: str, chunks) -> tuple[list, object]:
    c = H1Connection(CLIENT, LIMITS)
    target = "example.com:443" if method == "CONNECT" else "/"
    c.send(h11.Request(method=method, target=target, headers=[("host", "example.com"),
                                                               ("content-length", "0")]))
    c.send(h11.EndOfMessage())
    out: list = []
    body = bytearray()
    verdict = None
    done = False
    for ch in list(chunks) + [b""]:
        c.receive_data(ch)
        while not done:
            try:
                ev = c.next_event()
            except HTTPError as e:
                verdict = (type(e).__name__, e.code)
                done = True
                break
            t = type(ev)
            if ev is NEED_DATA:
                break
            if t in (h11.Response, h11.InformationalResponse):
                if len(ev.headers) > LIMITS.max_headers:
                    raise Finding(f"{len(ev.headers)} fields accepted")
                out.append((t.__name__, ev.status_code, tuple(ev.headers)))
            elif t is h11.Data:
                body += ev.data
                if len(body) > LIMITS.max_body_bytes:
                    raise Finding(f"body of {len(body)} bytes accepted")
            else:
                out.append((t.__name__, bytes(body)))
                done = True
        if done:
            break
    return out, verdict


def _cuts(data: bytes) -> list[bytes]:
    h = zlib.crc32(data)
    parts, i = [], 0
    while i < len(data):
        step = 1 + (h % 11)
        h = (h * 1103515245 + 12345) & 0x7FFFFFFF
        parts.append(data[i:i + step])
        i += step
    return parts


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    method = _METHODS[data[0] % len(_METHODS)]
    data = data[1:]
    whole = _parse(method, [data])
    pieces = _parse(method, _cuts(data))
    if whole != pieces:
        raise Finding(f"split input parsed differently: {whole[1]} vs {pieces[1]}")
    if len(data) <= 512:
        single = _parse(method, [data[i:i + 1] for i in range(len(data))])
        if whole != single:
            raise Finding(f"byte-by-byte input parsed differently: {whole[1]} vs {single[1]}")


if __name__ == "__main__":  # pragma: no cover
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
