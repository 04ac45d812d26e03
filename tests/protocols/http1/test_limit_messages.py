"""Limit errors say which limit, its configured value and what was seen (issue 21):
never ``limit '...' exceeded: None > None``, over a real socket and for every limit
error class of every protocol."""

from __future__ import annotations

import pytest

import greenrt
from greenrt.protocols.http import Limits, Response


def _post(net_helpers, port: int, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    s = net_helpers.connect(port)
    try:
        s.sendall(head + body)
        status, _, payload = net_helpers.read_response(s)
    finally:
        s.close()
    return status, payload


def test_413_for_a_declared_length_names_limit_maximum_and_length(http_server, net_helpers):
    srv = http_server(lambda req: Response(200, body=req.body.read_all()),
                      Limits(max_body_bytes=10))
    status, body = _post(net_helpers, srv.port,
                         b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 25\r\n\r\n", b"a" * 25)
    assert status == 413
    assert b"None" not in body
    assert b"max_body_bytes" in body and b"25" in body and b"10" in body


def test_413_for_a_chunked_body_names_limit_and_maximum(http_server, net_helpers):
    srv = http_server(lambda req: Response(200, body=req.body.read_all()),
                      Limits(max_body_bytes=10))
    chunk = b"a" * 30
    status, body = _post(net_helpers, srv.port,
                         b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                         b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunk), chunk))
    assert status == 413
    assert b"None" not in body
    assert b"max_body_bytes" in body and b"10" in body


def test_413_from_a_handlers_read_all_limit(http_server, net_helpers):
    srv = http_server(lambda req: Response(200, body=req.body.read_all(limit=5)))
    status, body = _post(net_helpers, srv.port,
                         b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n", b"12345678")
    assert status == 413
    assert b"None" not in body
    assert b"read_all" in body and b"5" in body


def _limit_classes() -> list[type]:
    import importlib

    for name in ("base", "http", "http1", "http2", "grpc", "redis", "nats", "kafka", "websocket"):
        importlib.import_module(f"greenrt.protocols.{name}")
    out, todo = [], [greenrt.LimitExceeded]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(set(out), key=lambda c: f"{c.__module__}.{c.__qualname__}")


def _make(cls, value, maximum):
    if cls is greenrt.LimitExceeded:
        return cls("max_things", value, maximum)
    try:
        return cls(limit="max_things", value=value, maximum=maximum)
    except TypeError:  # a class whose limit is fixed (nats' PendingBufferFull, ObjectTooLarge)
        return cls(value=value, maximum=maximum)


def _fixed_limit(cls) -> bool:
    """A class whose limit is fixed and whose value and maximum are required."""
    try:
        cls(limit="max_things", value=1, maximum=1)
    except TypeError:
        return True
    return False


@pytest.mark.parametrize("cls", _limit_classes(), ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_every_limit_error_message_says_limit_maximum_and_value(cls):
    full = _make(cls, 12, 10)
    assert "None" not in str(full)
    assert full.limit in str(full) and "12" in str(full) and "10" in str(full)
    if cls is greenrt.LimitExceeded or not _fixed_limit(cls):  # else both are required
        only_max = _make(cls, None, 10)
        assert "None" not in str(only_max), str(only_max)
        assert "max_things" in str(only_max) and "10" in str(only_max)
        only_value = _make(cls, 12, None)
        assert "None" not in str(only_value) and "12" in str(only_value), str(only_value)
        nothing = _make(cls, None, None)
        assert "None" not in str(nothing) and "max_things" in str(nothing), str(nothing)
