"""One Redis connection: a greenrt stream, a RESP decoder and a count of owed replies.

Job: open the transport (TCP, Unix, TLS), run the handshake (``HELLO 3`` with
``AUTH``/``SETNAME``, falling back to RESP2 ``AUTH``/``CLIENT SETNAME``; then
``SELECT``), send encoded commands and read their replies in order, routing RESP3
push frames out of band.

The invariant that makes the client cancel-safe
-----------------------------------------------
``pending`` counts the replies the server owes this connection: it is raised *before*
a command is written and lowered when its reply has been read. A connection can only
be given a new command when ``pending == 0`` (``send`` raises ``InvalidStateError``
otherwise), and the pool only takes back connections with ``pending == 0`` that are
not broken. So if a caller is cancelled (or times out, or fails) after sending and
before reading its reply, that reply can never be read by anybody else as the answer
to *their* command: the connection is either drained (its owed replies read and
dropped, under a small budget) or closed. This is the bug class of CVE-2023-28858/
28859, excluded by construction rather than by careful callers.

Cancellation states:

* cancelled inside ``send``: if the stream reports it is *not* broken, nothing was
  written (greenrt's ``send_all`` contract) and ``pending`` is restored, so the
  connection stays usable; otherwise the stream is broken and the connection is dead.
* cancelled inside ``read_reply``: ``recv`` loses no data and the decoder keeps any
  partial frame, so the connection is consistent but still owes ``pending`` replies;
  only ``drain`` (or closing) makes it reusable.
* a ``ProtocolError`` kills the connection (the framing can no longer be trusted).

Hazards: a connection is used by one task at a time (the pool hands it out under a
lease). Push frames (RESP3 ``>``) never count as replies; on a connection that is not
in pub/sub mode they go to ``push_handler`` (default: dropped with a trace event).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import greenrt
from greenrt import net
from greenrt.lowlevel import current_hub
from greenrt.protocols.base.connect import connect
from greenrt.protocols.base.events import emit_protocol_error

from .errors import (
    AuthenticationError,
    ProtocolError,
    RedisConnectionError,
    ReplyError,
)
from .resp import NEED_DATA, Decoder, Limits, Push, encode_command

RECV_SIZE = 65536


@dataclass
class ConnectionConfig:
    """Everything needed to open and set up one connection.

    ``protocol``: 3 (default) sends ``HELLO 3`` and falls back to RESP2 when the
    server does not know HELLO/RESP3; 2 never sends HELLO. ``tls``: a client TLS
    configuration for ``protocols.tls`` (``rediss://``), or ``None``.
    """

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None
    username: str | None = None
    password: str | None = None
    db: int = 0
    client_name: str | None = None
    protocol: int = 3
    connect_timeout: float | None = 10.0
    tls: Any = None
    server_hostname: str | None = None
    limits: Limits = field(default_factory=Limits)

    def address(self) -> str:
        return f"unix:{self.path}" if self.path else f"{self.host}:{self.port}"


def open_stream(cfg: ConnectionConfig):
    """Open the transport for ``cfg``: a Unix socket, or TCP (and TLS for ``cfg.tls``,
    SNI and certificate host name ``cfg.server_hostname`` or ``cfg.host``) through the
    floor's ``connect``, all under one ``connect_timeout`` budget. A checkpoint; a
    cancelled open leaves nothing open. Failures raise ``RedisConnectionError`` (cause
    attached)."""
    try:
        if cfg.path:
            if cfg.connect_timeout is None:
                return net.open_unix(cfg.path)
            with greenrt.fail_after(cfg.connect_timeout):
                return net.open_unix(cfg.path)
        return connect(cfg.host, cfg.port, tls=cfg.tls, server_hostname=cfg.server_hostname,
                       timeout=cfg.connect_timeout).stream
    except (OSError, greenrt.TooSlowError, net.StreamError) as e:
        # (TLS failures are StreamErrors: protocols.tls.TLSError and its subclasses)
        what = "TLS connection to" if cfg.tls is not None else "cannot connect to"
        raise RedisConnectionError(f"{what} {cfg.address()} failed: {e}"
                                   if cfg.tls is not None else
                                   f"{what} {cfg.address()}: {e}") from e


class Connection:
    """A connection to one server. Normally owned by a pool; see the module docstring
    for the ``pending`` invariant."""

    __slots__ = ("stream", "decoder", "config", "protocol", "pending", "created_at",
                 "last_used", "push_handler", "server_info", "_dead", "_recv", "_send",
                 "id", "pubsub_mode", "watching", "__weakref__")

    _ids = 0

    def __init__(self, stream, config: ConnectionConfig | None = None):
        Connection._ids += 1
        self.id = Connection._ids
        self.stream = stream
        self.config = config or ConnectionConfig()
        self.decoder = Decoder(self.config.limits)
        self.protocol = 2
        self.pending = 0
        now = greenrt.now()
        self.created_at = now
        self.last_used = now
        self.push_handler: Callable[[Push], None] | None = None
        self.server_info: dict | None = None
        self._dead: BaseException | None = None
        self._recv = stream.recv
        self._send = stream.send_all
        self.pubsub_mode = False
        self.watching = False

    # -- opening ------------------------------------------------------------------------

    @classmethod
    def open(cls, config: ConnectionConfig) -> Connection:
        """Connect and run the handshake. A checkpoint; if cancelled or failing, the
        half-open connection is closed."""
        stream = open_stream(config)
        conn = cls(stream, config)
        try:
            conn._handshake()
        except BaseException:
            conn.close()
            raise
        return conn

    def _handshake(self) -> None:
        cfg = self.config
        if cfg.protocol == 3:
            args: list = ["HELLO", "3"]
            if cfg.password is not None:
                args += ["AUTH", cfg.username or "default", cfg.password]
            if cfg.client_name:
                args += ["SETNAME", cfg.client_name]
            reply = self.call(args)
            if isinstance(reply, ReplyError):
                # NOPROTO: the server speaks RESP2 only; "unknown command": Redis < 6.
                if reply.code == "NOPROTO" or "unknown command" in reply.message.lower():
                    self._handshake_resp2()
                elif isinstance(reply, AuthenticationError):
                    raise reply
                else:
                    raise reply
            else:
                self.protocol = 3
                if isinstance(reply, dict):
                    self.server_info = reply
        elif cfg.protocol == 2:
            self._handshake_resp2()
        else:
            raise ValueError(f"protocol must be 2 or 3, not {cfg.protocol!r}")
        if cfg.db:
            self._check_ok(self.call(["SELECT", cfg.db]), "SELECT")

    def _handshake_resp2(self) -> None:
        cfg = self.config
        self.protocol = 2
        if cfg.password is not None:
            args = ["AUTH", cfg.username, cfg.password] if cfg.username else ["AUTH", cfg.password]
            self._check_ok(self.call(args), "AUTH")
        if cfg.client_name:
            self._check_ok(self.call(["CLIENT", "SETNAME", cfg.client_name]), "CLIENT SETNAME")

    @staticmethod
    def _check_ok(reply, what: str) -> None:
        if isinstance(reply, ReplyError):
            raise reply
        if reply != b"OK":
            raise ProtocolError(f"unexpected reply to {what}: {reply!r}")

    # -- state ----------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """Open, not broken, and owing no replies: safe to give a new command."""
        return self._dead is None and self.pending == 0 and not self.stream.broken \
            and not self.stream.closed

    def reusable(self) -> bool:
        """Between commands with nothing owed, open, and in plain command mode (the
        pool's condition for taking it back; see ``protocols.base.pool``)."""
        return (self.pending == 0 and self._dead is None and not self.pubsub_mode
                and not self.watching and not self.stream.broken)

    def unread(self) -> str | None:
        """Why this connection must not be reused because of bytes nobody asked for, or
        ``None``: ``"decoder_buffered"`` (the decoder holds bytes past the last reply),
        ``"socket_readable"`` (the socket has bytes, EOF or an error waiting). RESP has
        no request ids, so a reply too many from the server would otherwise reach the
        next caller as its own. Not a checkpoint."""
        if self.decoder.buffered:
            return "decoder_buffered"
        if self.stream.has_unread():
            return "socket_readable"
        return None

    @property
    def dead(self) -> bool:
        return self._dead is not None or self.stream.broken or self.stream.closed

    def kill(self, why: BaseException | str) -> None:
        """Mark the connection unusable and close it. Not a checkpoint."""
        if self._dead is None:
            self._dead = why if isinstance(why, BaseException) else RedisConnectionError(why)
        self.stream.close()

    def close(self) -> None:
        """Close the connection. Idempotent, not a checkpoint."""
        if self._dead is None:
            self._dead = RedisConnectionError("connection closed")
        self.stream.close()

    # -- I/O ------------------------------------------------------------------------------

    def send(self, data: bytes, replies: int) -> None:
        """Write ``data`` (already encoded commands) that will produce ``replies``
        replies. A checkpoint.

        Raises ``InvalidStateError`` if the connection still owes replies (it would
        mix them up). Cancelled before anything was written: ``pending`` is restored
        and the connection stays usable. Cancelled or failing after writing part of
        ``data``: the stream is broken and the connection is dead.
        """
        if self._dead is not None:
            raise RedisConnectionError(f"connection is closed: {self._dead}")
        if self.pending:
            raise greenrt.InvalidStateError(
                f"connection {self.id} still owes {self.pending} repl(ies); it must be "
                "drained or closed before another command is sent")
        self.pending = replies
        try:
            self._send(data)
        except BaseException as e:
            if self.stream.broken or self.stream.closed:
                self.kill(e)
                if isinstance(e, (OSError, greenrt.ClosedResourceError)):
                    raise RedisConnectionError(f"send to {self.config.address()} failed: {e}") from e
            else:
                self.pending = 0  # nothing was written
            raise

    def send_command(self, args) -> None:
        """Encode and send one command (one reply owed). A checkpoint, see ``send``."""
        self.send(encode_command(args), 1)

    def read_reply(self) -> Any:
        """Read the next reply (push frames are routed out of band). A checkpoint.

        A cancelled ``read_reply`` loses no data, but the reply stays owed
        (``pending`` unchanged): the connection must be drained or closed. EOF or a
        transport error kills the connection and raises ``RedisConnectionError``; a
        ``ProtocolError`` kills it and propagates.
        """
        dec = self.decoder
        while True:
            try:
                v = dec.next_event()
            except ProtocolError as e:
                self.kill(e)
                emit_protocol_error("redis", e.code, error=str(e), kind=type(e).__name__,
                                    peer=self.config.address())
                raise
            if v is NEED_DATA:
                self._fill()
                continue
            if type(v) is Push and not self.pubsub_mode:
                self._route_push(v)
                continue
            self.pending -= 1
            self.last_used = greenrt.now()
            return v

    def read_frame(self) -> Any:
        """Read the next frame of any kind, push frames included, without touching
        ``pending`` (for pub/sub). A checkpoint; a cancelled call loses no data."""
        dec = self.decoder
        while True:
            try:
                v = dec.next_event()
            except ProtocolError as e:
                self.kill(e)
                raise
            if v is NEED_DATA:
                self._fill()
                continue
            return v

    def frame_buffered(self) -> bool:
        """True if a frame may be decodable without reading (not a checkpoint)."""
        return self.decoder.buffered > 0

    def _fill(self) -> None:
        if self._dead is not None:
            raise RedisConnectionError(f"connection is closed: {self._dead}")
        try:
            data = self._recv(RECV_SIZE)
        except (OSError, greenrt.ClosedResourceError) as e:
            self.kill(e)
            raise RedisConnectionError(f"connection to {self.config.address()} lost: {e}") from e
        if not data:
            self.kill("EOF")
            raise RedisConnectionError(f"connection to {self.config.address()} closed by the server")
        self.decoder.receive_data(data)

    def _route_push(self, frame: Push) -> None:
        h = self.push_handler
        if h is not None:
            h(frame)
        else:
            current_hub().emit("redis.push_dropped", kind=_push_kind(frame))

    def call(self, args) -> Any:
        """Send one command and read its reply (error replies are returned, not
        raised). A checkpoint; see ``send`` and ``read_reply`` for cancellation."""
        self.send_command(args)
        return self.read_reply()

    def drain(self, timeout: float) -> bool:
        """Read and drop every owed reply within ``timeout`` seconds. A checkpoint.

        Returns True if the connection is usable again; otherwise (timeout, error,
        cancellation) it has been closed. Used after a caller was cancelled between
        sending and reading. Safe inside cancellation cleanup (it runs under the
        cleanup budget; if that is exhausted the connection is closed).
        """
        if self._dead is not None:
            return False
        try:
            with greenrt.move_on_after(timeout):
                while self.pending:
                    self.read_reply()
        except BaseException as e:
            self.kill(e)
            if not isinstance(e, Exception):
                raise
            return False
        if self.pending:
            self.kill("drain timed out")
            return False
        return True

    def set_nodelay(self) -> None:
        try:
            self.stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "dead" if self.dead else f"pending={self.pending}"
        return f"<redis.Connection {self.id} {self.config.address()} resp{self.protocol} {state}>"


def _push_kind(frame: Push) -> str:
    if frame and isinstance(frame[0], bytes):
        return frame[0].decode("ascii", "replace")
    return "?"
