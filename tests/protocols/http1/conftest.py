"""Helpers shared by the HTTP/1 tests (fixture ``h1``): drive the sans-IO layer over
a segmentation and record a normalized transcript."""

from __future__ import annotations

import types

import h11
import pytest

from protocols.http import DEFAULT_LIMITS, HTTPError, Limits
from protocols.http1 import CLIENT, NEED_DATA, SERVER, H1Connection


def segments(data: bytes, mode: str) -> list[bytes]:
    if mode == "one":
        return [data]
    if mode == "bytes":
        return [data[i:i + 1] for i in range(len(data))]
    raise ValueError(mode)


def transcript(data_segments, limits: Limits = DEFAULT_LIMITS, *, eof: bool = True,
               role: str = SERVER, request: h11.Request | None = None) -> list:
    """Feed ``data_segments`` to a fresh connection, answering each request with an
    empty 200, and return the normalized list of what happened (body data joined)."""
    c = H1Connection(role, limits)
    out: list = []
    if role == CLIENT:
        c.send(request or h11.Request(method="GET", target="/", headers=[("host", "x")]))
        c.send(h11.EndOfMessage())

    def add_body(b):
        if out and out[-1][0] == "body":
            out[-1] = ("body", out[-1][1] + b)
        else:
            out.append(("body", b))

    def drain() -> bool:
        while True:
            try:
                ev = c.next_event()
            except HTTPError as e:
                out.append(("error", type(e).__name__, e.code, e.status))
                return False
            t = type(ev)
            if ev is NEED_DATA:
                return True
            if t is h11.Request:
                out.append(("request", ev.method, ev.target, list(ev.headers)))
            elif t in (h11.Response, h11.InformationalResponse):
                out.append(("response", ev.status_code, list(ev.headers)))
            elif t is h11.Data:
                add_body(bytes(ev.data))
            elif t is h11.EndOfMessage:
                out.append(("end", list(ev.headers)))
                if role == SERVER:
                    c.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
                    c.send(h11.EndOfMessage())
                if not c.reusable:
                    out.append(("not-reusable",))
                    return False
                if role == CLIENT:
                    return False
                c.start_next_cycle()
            elif t is h11.ConnectionClosed:
                out.append(("closed",))
                return False
            else:
                out.append(("other", repr(ev)))
                return False

    for seg in data_segments:
        c.receive_data(seg)
        if not drain():
            return out
    if eof:
        c.receive_data(b"")
        drain()
    return out


def verdict(tr: list):
    """The last entry: an error tuple or the final state."""
    return tr[-1]


@pytest.fixture(scope="session")
def h1():
    return types.SimpleNamespace(segments=segments, transcript=transcript, verdict=verdict)
