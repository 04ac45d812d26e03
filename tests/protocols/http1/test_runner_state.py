"""The HTTP/1.1 connection's runner state is a transition table (``_RUNNER_TRANSITIONS``
in ``protocols/http1/server.py``): every change goes through ``_Conn._to`` and an
illegal one is an ``InvariantViolation``, not a silently confused connection."""

from __future__ import annotations

import pytest

import greenrt
from greenrt.protocols.http import Limits, Response
from greenrt.protocols.http1 import server as h1


def _conn():
    return h1._Conn(stream=type("S", (), {"peer_address": None, "local_address": None})(),
                    handler=lambda req: Response(200), limits=Limits(), scheme="http")


def test_the_table_allows_exactly_the_request_cycle():
    t = h1._RUNNER_TRANSITIONS
    assert t[h1._IDLE] == {h1._HEAD, h1._BUSY, h1._DONE}
    assert t[h1._HEAD] == {h1._BUSY, h1._DONE}
    assert t[h1._BUSY] == {h1._IDLE, h1._DONE}
    assert t[h1._DONE] == set()


@pytest.mark.parametrize("path, bad", [
    ((h1._HEAD,), h1._IDLE),          # a half-received head cannot become idle
    ((h1._BUSY,), h1._HEAD),          # a running request cannot start another head
    ((h1._BUSY, h1._IDLE), h1._IDLE),  # (staying is allowed: no error) ...
])
def test_illegal_transitions_raise(path, bad):
    def main():
        c = _conn()
        for s in path:
            c._to(s)
        if c.state == bad:
            c._to(bad)  # a no-op
            return
        with pytest.raises(greenrt.InvariantViolation, match="illegal transition"):
            c._to(bad)

    greenrt.run(main)


def test_done_is_final():
    def main():
        c = _conn()
        c._to(h1._BUSY)
        c.state = h1._DONE
        for s in (h1._IDLE, h1._HEAD, h1._BUSY):
            with pytest.raises(greenrt.InvariantViolation):
                c._to(s)

    greenrt.run(main)
