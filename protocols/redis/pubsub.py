"""Pub/sub: SUBSCRIBE / PSUBSCRIBE / SSUBSCRIBE on a dedicated connection.

A :class:`PubSub` owns one connection outside the pool (a subscribed connection
cannot run ordinary commands in RESP2, and must never be handed to another caller).
It speaks both protocols: in RESP2 messages and confirmations are arrays, in RESP3
they are push frames (``>``), routed out of band from ordinary replies such as
``PING``'s.

Flow. ``subscribe()`` writes the command and then reads until the server has
confirmed every channel, so when it returns the subscription is active. Messages that
arrive meanwhile (from earlier subscriptions) go to a *bounded backlog*;
``get_message()`` serves the backlog first, then reads the connection.

Backlog and lag. The backlog holds at most ``max_backlog`` messages. When it is full
the oldest message is dropped and counted; the next ``get_message()`` raises
``PubSubLagged(missed)`` once, so a consumer that falls behind finds out explicitly
instead of silently missing messages, and the call after that continues with the
oldest message kept. (The server has its own bound: ``client-output-buffer-limit
pubsub`` disconnects a subscriber that does not read; that surfaces as
``RedisConnectionError``.)

Cancellation: ``get_message`` is a checkpoint; a cancelled call loses no message
(``recv`` loses no data and the decoder keeps a partial frame). A cancelled
``subscribe`` leaves the subscription requested: the set of active channels is
updated from the server's confirmations, never from requests, so it stays truthful.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any, NamedTuple

import greenrt

from .connection import Connection
from .errors import PubSubLagged, RedisConnectionError, ReplyError
from .resp import encode_command

_CONFIRM = {b"subscribe", b"psubscribe", b"ssubscribe", b"unsubscribe", b"punsubscribe",
            b"sunsubscribe"}
_MESSAGES = {b"message", b"smessage"}


class Message(NamedTuple):
    """A pub/sub event. ``kind`` is ``message``, ``pmessage``, ``smessage`` or a
    confirmation (``subscribe``, ``unsubscribe``...); for confirmations ``data`` is
    the number of subscriptions left."""

    kind: str
    channel: Any
    data: Any
    pattern: Any = None


class PubSub:
    """Subscriber on its own connection (see the module docstring)."""

    def __init__(self, client, *, max_backlog: int = 1024,
                 ignore_subscribe_messages: bool = True):
        if max_backlog < 1:
            raise ValueError("max_backlog must be >= 1")
        self.client = client
        self.max_backlog = max_backlog
        self.ignore_subscribe_messages = ignore_subscribe_messages
        self.channels: set = set()
        self.patterns: set = set()
        self.shard_channels: set = set()
        self._conn: Connection | None = None
        self._backlog: deque[Message] = deque()
        self._missed = 0
        self._pongs = 0
        self._closed = False
        self.stats = {"received": 0, "dropped": 0}

    # -- connection ---------------------------------------------------------------------

    def _connection(self) -> Connection:
        if self._closed:
            raise RedisConnectionError("pub/sub is closed")
        c = self._conn
        if c is None or c.dead:
            if c is not None and (self.channels or self.patterns or self.shard_channels):
                raise RedisConnectionError("pub/sub connection lost; subscriptions are gone")
            c = self._conn = Connection.open(self.client.config)
            c.pubsub_mode = True
        return c

    @property
    def protocol(self) -> int:
        return self._connection().protocol

    # -- subscribing ----------------------------------------------------------------------

    def subscribe(self, *channels) -> None:
        """SUBSCRIBE and wait for the confirmations. A checkpoint."""
        self._request("SUBSCRIBE", channels, b"subscribe")

    def psubscribe(self, *patterns) -> None:
        self._request("PSUBSCRIBE", patterns, b"psubscribe")

    def ssubscribe(self, *channels) -> None:
        """SSUBSCRIBE (sharded pub/sub, Redis 7)."""
        self._request("SSUBSCRIBE", channels, b"ssubscribe")

    def unsubscribe(self, *channels) -> None:
        """UNSUBSCRIBE the given channels (all when none are given)."""
        self._request("UNSUBSCRIBE", channels or tuple(self.channels), b"unsubscribe")

    def punsubscribe(self, *patterns) -> None:
        self._request("PUNSUBSCRIBE", patterns or tuple(self.patterns), b"punsubscribe")

    def sunsubscribe(self, *channels) -> None:
        self._request("SUNSUBSCRIBE", channels or tuple(self.shard_channels), b"sunsubscribe")

    def _request(self, cmd: str, names, confirm: bytes) -> None:
        if not names:
            return
        conn = self._connection()
        conn.send(encode_command([cmd, *names]), 0)  # confirmations are not replies
        want = {_as_bytes(n) for n in names}
        while want:
            frame = self._read(conn)
            kind = self._handle(frame)
            if kind is not None and kind[0] == confirm:
                want.discard(kind[1])

    def ping(self) -> None:
        """PING through the subscribed connection (a liveness check); messages that
        arrive before the answer go to the backlog. A checkpoint."""
        conn = self._connection()
        expected = self._pongs + 1
        conn.send(encode_command(["PING"]), 0)
        while self._pongs < expected:
            self._handle(self._read(conn))

    # -- receiving ------------------------------------------------------------------------

    def get_message(self, timeout: float | None = None) -> Message | None:
        """The next message (backlog first), or ``None`` if ``timeout`` seconds pass.

        A checkpoint. Raises ``PubSubLagged`` once after the backlog overflowed. A
        cancelled call loses no message.
        """
        if self._missed:
            n, self._missed = self._missed, 0
            raise PubSubLagged(n)
        if self._backlog:
            greenrt.checkpoint_if_cancelled()
            return self._backlog.popleft()
        conn = self._connection()
        if timeout is None:
            return self._next_live(conn)
        with greenrt.move_on_after(timeout):
            return self._next_live(conn)
        return None

    def _next_live(self, conn: Connection) -> Message:
        while True:
            self._handle(self._read(conn))
            if self._missed:
                n, self._missed = self._missed, 0
                raise PubSubLagged(n)
            if self._backlog:
                return self._backlog.popleft()

    def listen(self) -> Iterator[Message]:
        """Yield messages forever (each step is a checkpoint)."""
        while True:
            yield self.get_message()

    def _read(self, conn: Connection):
        return conn.read_frame()

    def _handle(self, frame):
        """Account for one frame; queue messages in the backlog. Returns
        ``(confirm_kind, name)`` for confirmations, else None."""
        if isinstance(frame, ReplyError):
            raise frame
        if not isinstance(frame, list) or not frame:
            # RESP3 ordinary reply (PONG) in subscribed mode
            if frame == b"PONG":
                self._pongs += 1
            return None
        kind = frame[0]
        kind = kind.lower() if isinstance(kind, bytes) else kind
        dec = self.client._decode
        if kind in _MESSAGES and len(frame) == 3:
            ch, data = frame[1], frame[2]
            if dec is not None:
                ch, data = dec(ch), dec(data)
            self._enqueue(Message(kind.decode(), ch, data))
            return None
        if kind == b"pmessage" and len(frame) == 4:
            pat, ch, data = frame[1], frame[2], frame[3]
            if dec is not None:
                pat, ch, data = dec(pat), dec(ch), dec(data)
            self._enqueue(Message("pmessage", ch, data, pat))
            return None
        if kind in _CONFIRM and len(frame) == 3:
            name = frame[1]
            self._track(kind, name)
            if not self.ignore_subscribe_messages:
                self._enqueue(Message(kind.decode(), dec(name) if dec else name, frame[2]))
            return kind, _as_bytes(name) if name is not None else None
        if kind == b"pong":
            self._pongs += 1
        return None

    def _track(self, kind: bytes, name) -> None:
        n = _as_bytes(name) if name is not None else None
        if kind == b"subscribe":
            self.channels.add(n)
        elif kind == b"unsubscribe":
            self.channels.discard(n)
        elif kind == b"psubscribe":
            self.patterns.add(n)
        elif kind == b"punsubscribe":
            self.patterns.discard(n)
        elif kind == b"ssubscribe":
            self.shard_channels.add(n)
        elif kind == b"sunsubscribe":
            self.shard_channels.discard(n)

    def _enqueue(self, m: Message) -> None:
        self.stats["received"] += 1
        b = self._backlog
        if len(b) >= self.max_backlog:
            b.popleft()
            self._missed += 1
            self.stats["dropped"] += 1
        b.append(m)

    @property
    def backlog(self) -> int:
        """Messages received and not yet returned."""
        return len(self._backlog)

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (the server drops every subscription). Not a checkpoint."""
        self._closed = True
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.channels.clear()
        self.patterns.clear()
        self.shard_channels.clear()

    def __enter__(self) -> PubSub:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _as_bytes(x) -> bytes:
    if isinstance(x, bytes):
        return bytes(x)
    return str(x).encode()
