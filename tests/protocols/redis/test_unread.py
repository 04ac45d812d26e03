"""A reply too many never reaches another caller (issue 13; the server-side form of
CVE-2023-28858): a connection with anything unread — bytes in the decoder after the
last reply, bytes on the socket at check-in, bytes that arrived while it sat idle —
is closed and counted, never reused. Scripted servers over real sockets (a real
redis-server does not send unsolicited replies), one connection at a time so any
reuse would show."""

from __future__ import annotations

import time

import pytest

import greenrt
from greenrt.protocols.redis import Redis
from greenrt.protocols.redis.errors import ReplyError
from greenrt.protocols.redis.resp import NEED_DATA, Decoder

from ...scripted_peer import ScriptedPeer


def _echo(n, key):
    return b"$%d\r\n%s\r\n" % (len(key), key)


class ScriptedRedis(ScriptedPeer):
    """Answers the n-th ``GET key`` with ``reply(n, key)`` (default: the key itself,
    ``$len key``) followed by ``extra(n, key)``; ``late(n, key)`` bytes are sent after a
    pause, while the connection sits in the client's pool. Anything else gets +OK."""

    def __init__(self, extra=lambda n, key: b"", late=lambda n, key: b"", reply=_echo):
        self.extra, self.late, self.reply = extra, late, reply
        self.n = 0
        super().__init__(self._serve)

    def _serve(self, c):
        dec = Decoder()
        while True:
            data = c.recv(65536)
            if not data:
                return
            dec.receive_data(data)
            while (cmd := dec.next_event()) is not NEED_DATA:
                if bytes(cmd[0]).upper() != b"GET":
                    c.sendall(b"+OK\r\n")
                    continue
                key = bytes(cmd[1])
                n = self.n
                self.n += 1
                c.sendall(self.reply(n, key) + self.extra(n, key))
                late = self.late(n, key)
                if late:
                    time.sleep(0.1)
                    c.sendall(late)


def _gets(port, keys, *, pause=0.0):
    out = []

    def main():
        with Redis(port=port, protocol=2, max_connections=1, health_check_interval=None) as r:
            for k in keys:
                try:
                    out.append(r.get(k))
                except ReplyError as e:
                    out.append(("error", str(e)))
                if pause:
                    greenrt.sleep(pause)
            return r.pool.statistics()

    return out, greenrt.run(main)


def test_an_extra_frame_after_a_reply_is_never_delivered():
    srv = ScriptedRedis(extra=lambda n, key: b"$8\r\nINJECTED\r\n" if n == 0 else b"")
    try:
        out, st = _gets(srv.port, ["a", "b", "c", "d"])
    finally:
        srv.close()
    assert out == [b"a", b"b", b"c", b"d"]
    assert st["discard_reasons"] == {"decoder_buffered": 1}


def test_an_error_reply_followed_by_garbage_does_not_reach_the_next_caller():
    """Before the fix the first caller got ``ReplyError`` and the next ``MalformedFrame``."""
    srv = ScriptedRedis(reply=lambda n, key: b"-ERR first\r\n\x00\xffgarbage\r\n" if n == 0
                        else _echo(n, key))
    try:
        out, st = _gets(srv.port, ["a", "b", "c"])
    finally:
        srv.close()
    assert out == [("error", "ERR first"), b"b", b"c"]
    assert st["discarded"] == 1


def test_bytes_that_arrive_while_idle_in_the_pool_are_never_delivered():
    srv = ScriptedRedis(late=lambda n, key: b"$4\r\nLATE\r\n" if n == 0 else b"")
    try:
        out, st = _gets(srv.port, ["a", "b", "c"], pause=0.3)
    finally:
        srv.close()
    assert out == [b"a", b"b", b"c"]
    assert st["discard_reasons"] == {"idle_unread": 1}
    assert srv.connections == 2


@pytest.mark.parametrize("pipelined", [False, True])
def test_pipeline_with_a_reply_too_many_is_not_reused(pipelined):
    srv = ScriptedRedis(extra=lambda n, key: b"$8\r\nINJECTED\r\n" if n == 1 else b"")
    got = []

    def main():
        with Redis(port=srv.port, protocol=2, max_connections=1, health_check_interval=None) as r:
            if pipelined:
                with r.pipeline() as p:
                    p.get("a")
                    p.get("b")
                    got.append(p.execute())
            else:
                got.append([r.get("a"), r.get("b")])
            got.append(r.get("c"))
            got.append(r.get("d"))
            return r.pool.statistics()

    try:
        st = greenrt.run(main)
    finally:
        srv.close()
    assert got == [[b"a", b"b"], b"c", b"d"]
    assert st["discarded"] == 1
