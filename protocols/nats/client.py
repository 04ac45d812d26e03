"""The NATS client: one connection at a time to one of a list of servers, with
reconnect, subscriptions, request/reply, headers, flush and drain.

::

    from greenrt.protocols import nats

    with nats.connect("nats://127.0.0.1:4222") as nc:
        sub = nc.subscribe("greet.*")
        nc.publish("greet.joe", b"hello")
        msg = sub.next_msg(timeout=1)
        reply = nc.request("svc.echo", b"ping", timeout=2)

Tasks. ``with nats.connect(...)`` connects in the caller (the first connect error is
raised there) and opens a region that owns the client's tasks: a *supervisor* that
runs, per connection, a *reader* (parses the server's bytes, dispatches messages,
answers PINGs), a *flusher* (writes the outgoing buffer) and a *pinger* (detects a
stale connection), and on loss reconnects. Leaving the block closes the client and
joins those tasks: nothing outlives it.

Writes. ``publish`` appends one whole encoded frame (PUB/HPUB) to the outgoing buffer
and the flusher writes it; a frame is never split between two connections. While
disconnected the buffer is the *pending-publish buffer*, bounded by ``pending_size``:
a publish that does not fit raises ``PendingBufferFull`` and buffers nothing. On
reconnect the subscriptions are replayed first (``SUB`` and, for auto-unsubscribe, an
``UNSUB`` with the *remaining* count), then the pending publishes. Publishes written
to a connection that then broke are lost (core NATS is at-most-once); JetStream
publishes are acknowledged.

Cancellation. ``publish`` is a checkpoint (it waits only when the buffer is above its
high-water mark); a cancelled publish has buffered nothing. ``request`` is a
checkpoint; each request has its own reply subject token that is never reused, so a
cancelled (or timed-out) request's late reply is dropped and can never be returned to
another request. ``flush``, ``next_msg`` and ``drain`` are checkpoints; a cancelled
``next_msg`` loses no message.
"""

from __future__ import annotations

import functools
import logging
import random
import secrets
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import greenrt
from greenrt import lowlevel
from greenrt.protocols.base.connect import connect as _floor_connect
from greenrt.protocols.base.events import emit_event, emit_protocol_error

from . import codec
from .codec import NEED_DATA, Err, Info, Limits, Ping, Pong
from .errors import (
    AuthorizationError,
    ClientClosed,
    NatsConnectionError,
    NoResponders,
    OutcomeUnknown,
    PendingBufferFull,
    ProtocolError,
    RequestTimeout,
    ServerError,
    SlowConsumer,
    UsageError,
)

__all__ = ["Client", "Message", "Options", "Server", "Subscription", "connect"]

log = logging.getLogger("greenrt.nats")
_checkpoint_if_cancelled = greenrt.checkpoint_if_cancelled
#: how many subjects' validated ``PUB <subject> `` prefixes a client keeps
_PUB_PREFIX_CACHE = 4096
_enter_checkpoint = lowlevel.enter_checkpoint
_INF = float("inf")
_yield_now = lowlevel.yield_now

RECV_SIZE = 65536
#: operations the reader parses and delivers between two looks at its consumers
_BATCH = 256
VERSION = "0.1.0"
#: the server list never grows past this (INFO connect_urls come from the network)
_MAX_SERVERS = 256


class _Future:
    """A one-shot result a task can wait for (on a ``lowlevel.WaitQueue``)."""

    __slots__ = ("value", "error", "done", "_wq")

    def __init__(self) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self.done = False
        self._wq = lowlevel.WaitQueue()

    def set(self, value: Any) -> None:
        if not self.done:
            self.value = value
            self.done = True
            self._wq.wake_all()

    def fail(self, exc: BaseException) -> None:
        if not self.done:
            self.error = exc
            self.done = True
            self._wq.wake_all()

    def wait(self, what: str) -> Any:
        while not self.done:
            self._wq.park(what=what)
        if self.error is not None:
            raise self.error
        return self.value


@dataclass
class Server:
    """One server of the list. ``discovered``: learned from INFO ``connect_urls``."""

    host: str
    port: int
    scheme: str = "nats"
    user: str | None = None
    password: str | None = None
    token: str | None = None
    discovered: bool = False
    attempts: int = 0
    last_attempt: float | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, url: str, discovered: bool = False) -> Server:
        if "://" not in url:
            url = "nats://" + url
        u = urlsplit(url)
        if u.scheme not in ("nats", "tls"):
            raise UsageError(f"nats: unsupported URL scheme {u.scheme!r} in {url!r}")
        user = password = token = None
        if u.username is not None and u.password is not None:
            user, password = unquote(u.username), unquote(u.password)
        elif u.username is not None:
            token = unquote(u.username)
        host = u.hostname or "127.0.0.1"
        return cls(host, u.port or 4222, u.scheme, user, password, token, discovered)


@dataclass
class Options:
    """Client options (see :func:`connect`)."""

    servers: list[Server] = field(default_factory=list)
    name: str | None = None
    user: str | None = None
    password: str | None = None
    token: str | None = None
    nkey_seed: str | None = None
    creds: str | None = None
    tls: Any = None  # None, True or a protocols.tls client context
    tls_hostname: str | None = None
    connect_timeout: float = 5.0
    allow_reconnect: bool = True
    max_reconnect_attempts: int = 60  # per server; -1: forever
    reconnect_wait: float = 0.5
    max_reconnect_wait: float = 4.0
    reconnect_jitter: float = 0.1
    pending_size: int = 2 * 1024 * 1024
    flush_high_water: int = 256 * 1024
    ping_interval: float = 120.0
    max_outstanding_pings: int = 2
    no_echo: bool = False
    verbose: bool = False
    randomize: bool = False
    inbox_prefix: str = "_INBOX"
    max_pending_msgs: int = 65536
    max_pending_bytes: int = 64 * 1024 * 1024
    drain_timeout: float = 30.0
    limits: Limits = field(default_factory=Limits)
    on_disconnect: Callable[[], Any] | None = None
    on_reconnect: Callable[[], Any] | None = None
    on_error: Callable[[BaseException], Any] | None = None
    on_lame_duck: Callable[[], Any] | None = None
    #: the source of reconnect jitter and inbox names (a ``random.Random``; the lab
    #: passes its seeded one so runs replay exactly); default: seeded from ``secrets``
    rng: Any = None


class Message:
    """A received message. ``headers`` is a dict (or ``None``); ``status`` is the
    ``NATS/1.0`` status code of a status message (503 no responders, 100 flow
    control, 404/408/409 JetStream pull statuses).

    Messages are made by the client, not by applications. A plain MSG is an
    instance of the client's own subclass (its ``_client`` is a class attribute),
    made by the parser without an ``__init__`` call and with only ``subject``,
    ``sid``, ``reply``, ``data`` stored: the other fields are the class's ``None``,
    so creating one costs four attribute stores, and the cyclic GC has little to
    traverse. A message with headers (HMSG) is a ``_HeaderedMessage`` that stores
    them."""

    __slots__ = ("subject", "reply", "data", "sid", "__weakref__")

    headers: dict | None = None
    status: int | None = None
    description: str | None = None
    _client: Client | None = None

    def respond(self, data: bytes = b"", *, headers: dict | None = None) -> None:
        """Publish ``data`` to this message's reply subject (a checkpoint, see
        ``Client.publish``). A message without a reply subject is a ``UsageError``."""
        if not self.reply:
            raise UsageError("nats: message has no reply subject")
        self._client.publish(self.reply, data, headers=headers)

    def __repr__(self) -> str:
        return f"<nats.Message {self.subject!r} {len(self.data)} bytes reply={self.reply!r}>"


class _HeaderedMessage(Message):
    """A message that stores its headers, status, description and client (HMSG, and
    JetStream's messages)."""

    __slots__ = ("headers", "status", "description", "_client")

    # The parameter order after ``client`` is the codec's message-factory order (the
    # parser builds HMSGs through ``functools.partial(_HeaderedMessage, client)``).
    def __init__(self, client: Client | None, subject: str, sid: int, reply: str | None,
                 data: bytes, headers: dict | None = None, status: int | None = None,
                 description: str | None = None):
        self._client = client
        self.subject = subject
        self.reply = reply
        self.data = data
        self.headers = headers
        self.status = status
        self.description = description
        self.sid = sid


def _message_class(client: Client) -> type:
    """``client``'s own ``Message`` subclass (its messages' ``_client``)."""
    return type("Message", (Message,), {"__slots__": (), "_client": client,
                                        "__module__": Message.__module__,
                                        "__qualname__": "Message"})


class EndOfSubscription(Exception):
    """Raised by ``next_msg`` once a subscription is over (unsubscribed, auto-
    unsubscribe reached, drained, or the client closed) and its queue is empty."""


class Subscription:
    """A subscription: an iterator (``for msg in sub``) and a channel
    (``sub.recv()``/``next_msg(timeout=)``), over a bounded queue.

    The queue holds at most ``max_pending_msgs`` messages and ``max_pending_bytes``
    payload bytes. A message that does not fit is dropped and counted; the next
    ``next_msg`` raises ``SlowConsumer(dropped=n)`` once (and a ``nats.slow_consumer``
    trace event is emitted at the first drop), then continues with the queued messages.
    With ``callback=``, a task of the client calls it for each message instead.
    """

    __slots__ = ("sid", "subject", "queue", "_client", "_max_msgs", "delivered", "_q", "_bytes",
                 "max_pending_msgs", "max_pending_bytes", "_wq", "_dropped_unreported",
                 "dropped", "_ended", "_route_fn", "_plain", "_what", "__weakref__")

    def __init__(self, client: Client, sid: int, subject: str, queue: str | None,
                 max_pending_msgs: int, max_pending_bytes: int):
        self._client = client
        self.sid = sid
        self.subject = subject
        self.queue = queue
        self._max_msgs = 0
        self.delivered = 0
        self._q: deque[Message] = deque()
        self._bytes = 0
        self.max_pending_msgs = max_pending_msgs
        self.max_pending_bytes = max_pending_bytes
        self._wq = lowlevel.WaitQueue()
        self._dropped_unreported = 0
        self.dropped = 0
        self._ended = False
        self._route_fn: Callable[[Message], None] | None = None
        #: no route, no auto-unsubscribe, not ended: the reader's inlined delivery
        self._plain = True
        self._what = f"nats subscription {subject!r}"  # (what a parked reader waits for)

    @property
    def max_msgs(self) -> int:
        """Auto-unsubscribe after this many deliveries in total (0: never)."""
        return self._max_msgs

    @max_msgs.setter
    def max_msgs(self, n: int) -> None:
        self._max_msgs = n
        self._plain = not n and self._route_fn is None and not self._ended

    @property
    def _route(self) -> Callable[[Message], None] | None:
        """Internal subscriptions: a function the reader hands each message to."""
        return self._route_fn

    @_route.setter
    def _route(self, fn: Callable[[Message], None] | None) -> None:
        self._route_fn = fn
        self._plain = fn is None and not self._max_msgs and not self._ended

    # -- the reader's side ---------------------------------------------------------------

    def _deliver(self, m: Message) -> None:
        if self._ended:
            return
        self.delivered += 1
        route = self._route
        if route is not None:
            route(m)
        elif len(self._q) >= self.max_pending_msgs or \
                self._bytes + len(m.data) > self.max_pending_bytes:
            if not self._dropped_unreported:
                emit_event("nats.slow_consumer", subject=self.subject, sid=self.sid,
                           pending=len(self._q), pending_bytes=self._bytes)
            self._dropped_unreported += 1
            self.dropped += 1
            self._client._stats["slow_consumer_drops"] += 1
            self._wq.wake_one()
        else:
            self._q.append(m)
            self._bytes += len(m.data)
            if self._wq._q:
                self._wq.wake_one()
        if self.max_msgs and self.delivered >= self.max_msgs:
            self._finish()

    def _finish(self) -> None:
        """No more messages will be queued (the queued ones can still be read)."""
        if not self._ended:
            self._ended = True
            self._plain = False
            self._client._subs.pop(self.sid, None)
            self._wq.wake_all()

    # -- the consumer's side -------------------------------------------------------------

    @property
    def pending(self) -> tuple[int, int]:
        """``(messages, bytes)`` queued."""
        return len(self._q), self._bytes

    def next_msg(self, timeout: float | None = None) -> Message:
        """The next message; a checkpoint. Raises ``SlowConsumer`` once after drops,
        ``RequestTimeout`` after ``timeout`` seconds without a message,
        ``EndOfSubscription`` when the subscription is over and drained. A cancelled
        call loses no message."""
        greenrt.checkpoint_if_cancelled()
        if self._q and not self._dropped_unreported:
            m = self._q.popleft()
            self._bytes -= len(m.data)
            return m
        if timeout is None:
            return self._wait()
        with greenrt.move_on_after(timeout):
            return self._wait()
        raise RequestTimeout(f"nats: no message on {self.subject!r} within {timeout} s")

    def _wait(self) -> Message:
        while True:
            if self._dropped_unreported:
                n, self._dropped_unreported = self._dropped_unreported, 0
                raise SlowConsumer(f"nats: slow consumer on {self.subject!r}: {n} message(s) "
                                   "dropped", dropped=n, subject=self.subject)
            if self._q:
                m = self._q.popleft()
                self._bytes -= len(m.data)
                return m
            if self._ended:
                raise EndOfSubscription(self.subject)
            self._wq.park(what=self._what)

    recv = next_msg

    def __iter__(self) -> Iterator[Message]:
        # next_msg() inlined (one frame less per message); same checkpoint, same order
        q = self._q
        check = greenrt.checkpoint_if_cancelled
        while True:
            check()
            if q and not self._dropped_unreported:
                m = q.popleft()
                self._bytes -= len(m.data)
            else:
                try:
                    m = self._wait()
                except EndOfSubscription:
                    return
            yield m

    def unsubscribe(self, max_msgs: int = 0) -> None:
        """``UNSUB``: at once, or (``max_msgs`` > 0) after ``max_msgs`` deliveries in
        total. Not a checkpoint (the frame is buffered). Messages already queued can
        still be read."""
        self._client._unsubscribe(self, max_msgs)

    def auto_unsubscribe(self, max_msgs: int) -> None:
        if max_msgs <= 0:
            raise UsageError("nats: auto_unsubscribe needs max_msgs >= 1")
        self.unsubscribe(max_msgs)

    def statistics(self) -> dict:
        return {"subject": self.subject, "sid": self.sid, "delivered": self.delivered,
                "pending_msgs": len(self._q), "pending_bytes": self._bytes,
                "dropped": self.dropped, "max_msgs": self.max_msgs, "ended": self._ended}

    def __repr__(self) -> str:
        return f"<nats.Subscription {self.sid} {self.subject!r} queue={self.queue!r}>"


class _Conn:
    """One transport and its parser."""

    __slots__ = ("stream", "parser", "server", "info", "closed", "send_nowait")

    def __init__(self, stream, parser: codec.Parser, server: Server, info: dict):
        self.stream = stream
        self.send_nowait = getattr(stream, "send_nowait", None)  # (TLS streams have none)
        self.parser = parser
        self.server = server
        self.info = info
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.stream.close()


_STATES = ("connecting", "connected", "reconnecting", "draining", "closed")


class Client:
    """A NATS client; make one with :func:`connect`. States: ``connecting`` →
    ``connected`` ⇄ ``reconnecting`` → (``draining`` →) ``closed``."""

    def __init__(self, options: Options):
        if not options.servers:
            options.servers = [Server("127.0.0.1", 4222)]
        if options.pending_size <= 0 or options.flush_high_water <= 0:
            raise UsageError("nats: pending_size and flush_high_water must be positive")
        self.options = options
        self.state = "connecting"
        self._servers: list[Server] = list(options.servers)
        self._conn: _Conn | None = None
        self._out = bytearray()
        self._pings_in_out = 0
        self._pongs: deque[_Future | None] = deque()
        self._out_wq = lowlevel.WaitQueue()
        self._hw_wq = lowlevel.WaitQueue()
        self._state_wq = lowlevel.WaitQueue()
        self._subs: dict[int, Subscription] = {}
        self._sid = 0
        self._resp_sub: Subscription | None = None
        self._resp_prefix = ""
        self._resp_prefix_b = b""
        #: outstanding requests: each parked under its reply token
        self._resp_map = lowlevel.WaitMap()
        self._resp_tokens = self._resp_map.keys()  # (a live view: `in` at dict speed)
        self._resp_n = 0
        self._req_deadlines: dict[float, deque] = {}  # timeout -> (when, token, subject)
        self._keeper = None  # the deadline keeper task, started by the first timed request
        self._keeper_when = _INF  # the deadline it sleeps until
        self._keeper_wq = lowlevel.WaitQueue()
        self._pub_prefixes: dict = {}
        self._msg_class = _message_class(self)
        self._region = None
        self._region_cm = None
        self._supervisor = None
        self._conn_region = None
        self._lost: BaseException | None = None
        self._lame_duck = False
        self.last_error: BaseException | None = None
        self.server_info: dict = {}
        self.max_payload = 1024 * 1024
        self._rng = options.rng if options.rng is not None else \
            random.Random(secrets.randbits(64))
        self._stats = {"in_msgs": 0, "out_msgs": 0, "in_bytes": 0, "out_bytes": 0,
                       "reconnects": 0, "disconnects": 0, "protocol_errors": 0,
                       "slow_consumer_drops": 0, "late_replies": 0, "unknown_sid": 0,
                       "pending_rejected": 0, "lame_duck": 0}

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Client:
        self._region_cm = greenrt.region(name="nats.client")
        self._region = self._region_cm.__enter__()
        try:
            self._connect_initial()
            self._supervisor = self._region.spawn(self._supervise, name="nats.supervisor")
        except BaseException as e:  # noqa: B036
            self.state = "closed"
            self._region_cm.__exit__(None, None, None)  # no child was started
            raise e from e.__cause__
        return self

    def __exit__(self, etype, exc, tb) -> None:
        try:
            if etype is None and self.state not in ("closed",):
                self.close()
        finally:
            self._shutdown()
            self._region_cm.__exit__(None, None, None)

    def _shutdown(self) -> None:
        self.state = "closed"
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        err = ClientClosed("nats: client closed")
        self._fail_waiters(err)
        for sub in list(self._subs.values()):
            sub._finish()
        self._out_wq.wake_all()
        self._hw_wq.wake_all()
        self._state_wq.wake_all()
        # Not self._region.cancel(): that would cancel the caller's own block too.
        for t in self._tasks():
            t.cancel("nats client closed")

    def _tasks(self):
        if self._region is None:
            return []
        return [t for t in self._region.children() if t is not greenrt.current_task()]

    def close(self) -> None:
        """Flush what is buffered (briefly, best effort) and close. A checkpoint.
        Messages still queued in subscriptions can be read afterwards."""
        if self.state == "closed":
            return
        if self.state == "connected" and self._out:
            with greenrt.move_on_after(min(2.0, self.options.drain_timeout)):
                try:
                    self.flush()
                except Exception:
                    pass
        self._shutdown()

    @property
    def is_connected(self) -> bool:
        return self.state == "connected"

    @property
    def connected_server(self) -> Server | None:
        return self._conn.server if self._conn is not None else None

    @property
    def servers(self) -> list[Server]:
        """The server list, discovered servers included."""
        return list(self._servers)

    # -- connecting --------------------------------------------------------------------------

    def _connect_initial(self) -> None:
        errors = []
        for srv in list(self._servers):
            try:
                self._conn = self._open(srv)
            except (NatsConnectionError, ProtocolError, OSError) as e:
                errors.append(f"{srv.address}: {e}")
                continue
            except AuthorizationError:
                raise
            self.state = "connected"
            return
        raise NatsConnectionError("nats: could not connect to any server: " + "; ".join(errors))

    def _transport(self, srv: Server):
        """TCP to ``srv`` through the floor's connect (TLS cannot be set up there:
        a NATS server sends its INFO in cleartext first, then the client upgrades)."""
        try:
            return _floor_connect(srv.host, srv.port, timeout=self.options.connect_timeout).stream
        except (OSError, greenrt.TooSlowError) as e:
            raise NatsConnectionError(f"nats: cannot connect to {srv.address}: {e}") from e

    def _upgrade_tls(self, tcp, srv: Server):
        from greenrt.protocols import tls as _tls
        from greenrt.protocols.base.connect import default_client_context

        ctx = self.options.tls
        if ctx is None or ctx is True:
            ctx = default_client_context()
        s = _tls.TLSStream(tcp, ctx, server_hostname=self.options.tls_hostname or srv.host)
        try:
            s.handshake(None)
        except _tls.TLSError as e:
            raise NatsConnectionError(f"nats: TLS handshake with {srv.address} failed: {e}") from e
        return s

    def _read_op(self, conn_stream, parser: codec.Parser):
        while True:
            ev = parser.next_event()
            if ev is not NEED_DATA:
                return ev
            data = conn_stream.recv(RECV_SIZE)
            if not data:
                raise NatsConnectionError("nats: server closed the connection during the handshake")
            parser.receive_data(data)

    def _open(self, srv: Server) -> _Conn:
        """Connect to ``srv`` and run the handshake (INFO, TLS if needed, CONNECT,
        PING/PONG). A checkpoint, bounded by ``connect_timeout``; on any failure or
        cancellation the socket is closed."""
        srv.attempts += 1
        srv.last_attempt = greenrt.now()
        stream = self._transport(srv)
        try:
            with greenrt.fail_after(self.options.connect_timeout):
                parser = codec.Parser(self.options.limits,
                                      functools.partial(_HeaderedMessage, self), self._msg_class)
                ev = self._read_op(stream, parser)
                if type(ev) is not Info:
                    raise ProtocolError(f"nats: expected INFO first, got {type(ev).__name__}",
                                        code="no_info")
                info = ev.info
                want_tls = self.options.tls is not None or srv.scheme == "tls"
                if info.get("tls_required") or want_tls:
                    if not want_tls:
                        raise NatsConnectionError(f"nats: {srv.address} requires TLS; "
                                                  "pass tls=True or a context")
                    if parser.buffered:
                        raise ProtocolError("nats: bytes after INFO before the TLS handshake",
                                            code="bad_tls_upgrade")
                    stream = self._upgrade_tls(stream, srv)
                stream.send_all(codec.encode_connect(self._connect_options(srv, info)) + codec.PING)
                while True:
                    ev = self._read_op(stream, parser)
                    t = type(ev)
                    if t is Pong:
                        break
                    if t is Err:
                        raise _server_error(ev.message)
                    if t is Info:
                        info = ev.info
                    elif t is Ping:
                        stream.send_all(codec.PONG)
                    # +OK (verbose) is ignored
        except greenrt.TooSlowError as e:
            stream.close()
            raise NatsConnectionError(f"nats: handshake with {srv.address} timed out") from e
        except ProtocolError as e:
            stream.close()
            self._stats["protocol_errors"] += 1
            emit_protocol_error("nats", e.code, error=str(e), peer=srv.address)
            raise
        except (OSError, greenrt.ClosedResourceError) as e:
            stream.close()
            raise NatsConnectionError(f"nats: connection to {srv.address} lost in the handshake: "
                                      f"{e}") from e
        except BaseException:
            stream.close()
            raise
        try:
            import socket as _socket

            stream.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        except Exception:
            pass
        srv.attempts = 0
        self._apply_info(info, initial=True)
        return _Conn(stream, parser, srv, info)

    def _connect_options(self, srv: Server, info: dict) -> dict:
        o = self.options
        opts: dict[str, Any] = {"verbose": o.verbose, "pedantic": False, "lang": "python-greenrt",
                                "version": VERSION, "protocol": 1, "headers": True,
                                "no_responders": True, "echo": not o.no_echo,
                                "tls_required": bool(info.get("tls_required"))}
        if o.name:
            opts["name"] = o.name
        user = srv.user or o.user
        password = srv.password or o.password
        token = srv.token or o.token
        if user is not None:
            opts["user"] = user
            opts["pass"] = password or ""
        if token is not None:
            opts["auth_token"] = token
        if o.nkey_seed or o.creds:
            from . import nkeys

            nonce = info.get("nonce")
            if o.creds:
                jwt, kp = nkeys.load_creds(o.creds)
                opts["jwt"] = jwt
            else:
                kp = nkeys.from_seed(o.nkey_seed)
                opts["nkey"] = kp.public_key
            if isinstance(nonce, str):
                opts["sig"] = nkeys.sign_nonce(kp, nonce)
        return opts

    def _apply_info(self, info: dict, initial: bool = False) -> None:
        self.server_info = info
        mp = info.get("max_payload")
        if isinstance(mp, int) and not isinstance(mp, bool) and mp > 0:
            self.max_payload = mp
        urls = info.get("connect_urls")
        if isinstance(urls, list):
            known = {(s.host, s.port) for s in self._servers}
            for u in urls[:64]:
                if not isinstance(u, str):
                    continue
                try:
                    s = Server.parse(u, discovered=True)
                except (UsageError, ValueError):
                    continue
                if (s.host, s.port) not in known and len(self._servers) < _MAX_SERVERS:
                    self._servers.append(s)
                    known.add((s.host, s.port))
                    emit_event("nats.server_discovered", server=s.address)
        if info.get("ldm") and not initial:
            self._lame_duck = True
            self._stats["lame_duck"] += 1
            emit_event("nats.lame_duck", server=self._conn.server.address if self._conn else None)
            _callback(self.options.on_lame_duck)

    # -- the supervisor and the per-connection tasks -----------------------------------------

    def _supervise(self) -> None:
        while self.state != "closed":
            conn = self._conn
            if conn is None:
                break
            self._lost = None
            with greenrt.region(name="nats.connection") as cr:
                self._conn_region = cr
                cr.spawn(self._reader, conn, cr, name="nats.reader")
                cr.spawn(self._flusher, conn, cr, name="nats.flusher")
                if self.options.ping_interval:
                    cr.spawn(self._pinger, conn, cr, name="nats.pinger")
            self._conn_region = None
            conn.close()
            if self.state in ("closed",):
                break
            self._conn = None
            lost = self._lost or NatsConnectionError("nats: connection lost")
            self.last_error = lost
            self._stats["disconnects"] += 1
            emit_event("nats.disconnected", server=conn.server.address, error=str(lost))
            self._connection_lost(lost)
            _callback(self.options.on_disconnect)
            if not self.options.allow_reconnect or self.state == "draining":
                break
            self.state = "reconnecting"
            self._conn = self._reconnect(conn.server)
            if self._conn is None:
                break
            self._stats["reconnects"] += 1
            self._lame_duck = False
            self._replay_subscriptions()
            self.state = "connected"
            self._state_wq.wake_all()
            emit_event("nats.reconnected", server=self._conn.server.address)
            _callback(self.options.on_reconnect)
        if self.state != "closed":
            self._shutdown()

    def _lose(self, conn: _Conn, cr, exc: BaseException) -> None:
        if self._lost is None:
            self._lost = exc
        conn.closed = True
        cr.cancel("nats connection lost")

    def _reader(self, conn: _Conn, cr) -> None:
        parser = conn.parser
        recv = conn.stream.recv
        stats = self._stats
        resp_wake = self._resp_map.wake
        next_events = parser.next_events
        subs_get = self._subs.get
        msg_class = self._msg_class
        try:
            while True:
                evs = next_events(_BATCH)
                if not evs:
                    data = recv(RECV_SIZE)
                    if not data:
                        raise NatsConnectionError(f"nats: {conn.server.address} closed the connection")
                    parser.receive_data(data)
                    continue
                nbytes = nctl = 0
                woke = False
                try:
                    for ev in evs:
                        if type(ev) is not msg_class and not isinstance(ev, Message):
                            nctl += 1
                            self._control(ev, conn)
                            continue
                        n = len(ev.data)
                        nbytes += n
                        sub = subs_get(ev.sid)
                        if sub is None:
                            stats["unknown_sid"] += 1
                        elif sub._plain:
                            # Subscription._deliver's common case, inlined
                            q = sub._q
                            if len(q) < sub.max_pending_msgs and \
                                    sub._bytes + n <= sub.max_pending_bytes:
                                sub.delivered += 1
                                q.append(ev)
                                sub._bytes += n
                                if sub._wq._q:
                                    sub._wq.wake_one()
                                    woke = True
                            else:
                                sub._deliver(ev)
                        elif sub is self._resp_sub and not sub._ended:
                            # a reply on the muxed inbox (_route_reply inlined): one wake by token
                            sub.delivered += 1
                            if not resp_wake(ev.subject[len(self._resp_prefix):], ev):
                                self._late_reply(ev)
                        else:
                            sub._deliver(ev)
                finally:
                    stats["in_msgs"] += len(evs) - nctl
                    stats["in_bytes"] += nbytes
                if woke:
                    # Let the consumers this batch woke drain their queues before the
                    # next batch (more may be buffered, and recv() does not wait when
                    # data is there). Messages then die young, before the cyclic GC's
                    # first generation fills up and traverses them (measured: 1.9k
                    # instructions per message), and queues stay short.
                    _yield_now()
                    if self._out:
                        # What they published in reply (a responder's answers) leaves
                        # now, in one write, instead of after this task's next recv()
                        # and a pass through the flusher: the round trip's latency.
                        self._send_now(conn)
        except ProtocolError as e:
            stats["protocol_errors"] += 1
            emit_protocol_error("nats", e.code, error=str(e), peer=conn.server.address)
            self._lose(conn, cr, e)
        except (NatsConnectionError, ServerError) as e:
            self._lose(conn, cr, e)
        except (OSError, greenrt.ClosedResourceError) as e:
            self._lose(conn, cr, NatsConnectionError(f"nats: connection to "
                                                     f"{conn.server.address} lost: {e}"))

    def _control(self, ev: Any, conn: _Conn) -> None:
        """The reader's handling of an operation other than MSG/HMSG."""
        t = type(ev)
        if t is Ping:
            self._out += codec.PONG
            self._out_wq.wake_one()
        elif t is Pong:
            if self._pongs:
                fut = self._pongs.popleft()
                if fut is not None:
                    fut.set(True)
        elif t is Info:
            self._apply_info(ev.info)
            if self._lame_duck and self._other_servers(conn.server):
                raise NatsConnectionError("nats: server entered lame-duck mode")
        elif t is Err:
            err = _server_error(ev.message)
            self.last_error = err
            emit_event("nats.server_error", message=ev.message)
            _callback(self.options.on_error, err)
            if "permissions violation" not in ev.message.lower():
                raise err  # the server closes the connection after any other -ERR

    def _flusher(self, conn: _Conn, cr) -> None:
        send = conn.stream.send_all
        try:
            while True:
                while not self._out:
                    self._out_wq.park(what="nats flusher: nothing to write")
                data = self._out
                self._out = bytearray()
                self._pings_in_out = 0
                if self._hw_wq._q:
                    self._hw_wq.wake_all()
                send(data)
        except (OSError, greenrt.ClosedResourceError) as e:
            self._lose(conn, cr, NatsConnectionError(f"nats: write to {conn.server.address} "
                                                     f"failed: {e}"))

    def _pinger(self, conn: _Conn, cr) -> None:
        outstanding = [0]
        while True:
            greenrt.sleep(self.options.ping_interval)
            if outstanding[0] >= self.options.max_outstanding_pings:
                self._lose(conn, cr, NatsConnectionError("nats: stale connection (no PONG)"))
                return
            outstanding[0] += 1
            fut = _Future()
            self._queue_ping(fut)
            cr.spawn(self._await_pong, fut, outstanding, name="nats.pong")

    @staticmethod
    def _await_pong(fut: _Future, outstanding: list) -> None:
        try:
            fut.wait("nats PONG")
        except Exception:
            return
        outstanding[0] = 0

    def _queue_ping(self, fut: _Future | None) -> None:
        self._pongs.append(fut)
        self._out += codec.PING
        self._pings_in_out += 1
        self._out_wq.wake_one()

    def _other_servers(self, current: Server) -> bool:
        return any(s is not current for s in self._servers)

    def _connection_lost(self, exc: BaseException) -> None:
        # PINGs already written went to the dead connection: their waiters fail. PINGs
        # still in the buffer will be written to the next connection, in order.
        written = len(self._pongs) - self._pings_in_out
        for _ in range(written):
            fut = self._pongs.popleft()
            if fut is not None:
                fut.fail(NatsConnectionError(f"nats: connection lost before PONG: {exc}"))
        self._fail_requests(lambda: OutcomeUnknown(
            f"nats: connection lost while awaiting a reply: {exc}", operation="request"))
        self._hw_wq.wake_all()

    def _fail_waiters(self, err: BaseException) -> None:
        while self._pongs:
            fut = self._pongs.popleft()
            if fut is not None:
                fut.fail(err)
        self._fail_requests(lambda: err)
        self._req_deadlines.clear()

    def _fail_requests(self, make_exc) -> None:
        """Wake every outstanding request with ``make_exc()`` (each token popped first:
        a reply arriving later is a late reply)."""
        self._resp_map.wake_all_error(make_exc)

    def _reconnect(self, last: Server) -> _Conn | None:
        o = self.options
        rounds = 0
        while self.state == "reconnecting":
            candidates = [s for s in self._servers
                          if o.max_reconnect_attempts < 0 or s.attempts < o.max_reconnect_attempts]
            if not candidates:
                emit_event("nats.reconnect_exhausted")
                return None
            if o.randomize:
                self._rng.shuffle(candidates)
            # the server just lost goes last
            candidates.sort(key=lambda s: s is last)
            for srv in candidates:
                if self.state != "reconnecting":
                    return None
                if srv.last_attempt is not None:
                    wait = min(o.reconnect_wait * (2 ** min(rounds, 16)), o.max_reconnect_wait)
                    wait += self._rng.uniform(0, o.reconnect_jitter)
                    until = srv.last_attempt + wait
                    if until > greenrt.now():
                        greenrt.sleep_until(until)
                try:
                    return self._open(srv)
                except AuthorizationError as e:
                    self.last_error = e
                except (NatsConnectionError, ProtocolError, OSError) as e:
                    self.last_error = e
            rounds += 1
        return None

    def _replay_subscriptions(self) -> None:
        """SUB (and UNSUB with the remaining count) for every live subscription, put
        before the pending publishes."""
        head = bytearray()
        for sub in list(self._subs.values()):
            head += codec.encode_sub(sub.subject, sub.sid, sub.queue)
            if sub.max_msgs:
                left = sub.max_msgs - sub.delivered
                if left <= 0:
                    sub._finish()
                    head += codec.encode_unsub(sub.sid)
                    continue
                head += codec.encode_unsub(sub.sid, left)
        if head:
            self._out[:0] = head
            self._out_wq.wake_one()

    # -- publishing --------------------------------------------------------------------------

    def _check_open(self) -> None:
        st = self.state
        if st == "closed" or st == "draining":
            raise ClientClosed(f"nats: client is {st}")

    def _append(self, frame: bytes, n_payload: int) -> None:
        if self.state != "connected":
            self._check_open()
            if len(self._out) + len(frame) > self.options.pending_size:
                self._stats["pending_rejected"] += 1
                raise PendingBufferFull(value=len(self._out) + len(frame),
                                        maximum=self.options.pending_size)
        else:
            while len(self._out) >= self.options.flush_high_water and self.state == "connected":
                self._hw_wq.park(what="nats publish: outgoing buffer above high water")
        self._out += frame
        st = self._stats
        st["out_msgs"] += 1
        st["out_bytes"] += n_payload
        if self._out_wq._q:
            self._out_wq.wake_one()

    def _append_nowait(self, frame: bytes) -> None:
        """Buffer a frame without a checkpoint or back-pressure (leak and
        cancellation paths); dropped when closed or when the pending buffer is full."""
        if self.state in ("closed",):
            return
        if self.state != "connected" and len(self._out) + len(frame) > self.options.pending_size:
            return
        self._out += frame
        if self._out_wq._q:
            self._out_wq.wake_one()

    def publish_nowait(self, subject: str, payload: bytes = b"") -> None:
        """Buffer a PUB without a checkpoint and without waiting for the high-water
        mark (for acks, which resolve obligations and must not be interrupted by a
        cancellation). Raises ``PendingBufferFull``/``ClientClosed`` as ``publish``."""
        if len(payload) > self.max_payload:
            raise UsageError(f"nats: payload of {len(payload)} bytes exceeds the server's "
                             f"max_payload {self.max_payload}")
        frame = codec.encode_pub(subject, payload)
        if self.state != "connected":
            self._check_open()
            if len(self._out) + len(frame) > self.options.pending_size:
                self._stats["pending_rejected"] += 1
                raise PendingBufferFull(value=len(self._out) + len(frame),
                                        maximum=self.options.pending_size)
        self._out += frame
        self._stats["out_msgs"] += 1
        self._stats["out_bytes"] += len(payload)
        if self._out_wq._q:
            self._out_wq.wake_one()

    def publish(self, subject: str, payload: bytes = b"", *, reply: str | None = None,
                headers: dict | None = None) -> None:
        """Publish ``payload`` on ``subject``. A checkpoint: it checks for cancellation,
        and waits only while the outgoing buffer is above ``flush_high_water``; a
        cancelled publish buffered nothing. While reconnecting the frame goes to the
        pending-publish buffer, or ``PendingBufferFull`` is raised (nothing buffered).
        A payload above the server's ``max_payload`` is a ``UsageError``."""
        _checkpoint_if_cancelled()
        n = len(payload)
        if n > self.max_payload:
            raise UsageError(f"nats: payload of {n} bytes exceeds the server's "
                             f"max_payload {self.max_payload}")
        if headers is None and reply is None and self.state == "connected":
            # Fast path: the frame goes straight into the buffer (same bytes as
            # encode_pub; the subject's validated "PUB <subject> " prefix is cached).
            out = self._out
            if len(out) < self.options.flush_high_water:
                prefix = self._pub_prefixes.get(subject)
                if prefix is None:
                    prefix = self._pub_prefix(subject)
                out += prefix
                out += b"%d\r\n" % n
                out += payload
                out += b"\r\n"
                st = self._stats
                st["out_msgs"] += 1
                st["out_bytes"] += n
                if self._out_wq._q:
                    self._out_wq.wake_one()
                return
        if headers:
            frame = codec.encode_hpub(subject, payload, headers, reply)
        else:
            frame = codec.encode_pub(subject, payload, reply)
        self._append(frame, n)

    def _write_through(self, hub) -> bool:
        """Write the buffer (a frame just appended to an otherwise empty one: the
        flusher is parked with nothing to write) to the socket now, when no other
        task can run before the flusher would: a lone request then costs two task
        switches less per round trip, and there is nothing to batch it with. True if
        all of it was written; otherwise the flusher writes the rest (and meets any
        error). ``hub`` is the running task's. Never blocks; not a checkpoint."""
        if hub.runnable_count():
            return False  # others may publish before the flusher runs: let it batch
        return self._send_now(self._conn)

    def _send_now(self, conn: _Conn | None) -> bool:
        """Write what is buffered to ``conn`` now, as far as the socket takes it
        without waiting; True if all of it went. Never blocks; not a checkpoint.
        Does nothing while PINGs are buffered (the flusher counts them out), while
        the flusher is in a send (its bytes go first), or on a stream without
        ``send_nowait`` (TLS). Errors are the flusher's to meet and report.

        A write that stops inside a frame leaves the rest at the head of the buffer,
        and that rest must go to this connection or nowhere (the next connection
        must never see the tail of a frame). It does: the flusher is woken whenever
        bytes are buffered (by whoever buffers them; ``request`` wakes it right
        after a write-through that fell short, with no task switch in between), a
        woken task runs before its connection's region can end, and the flusher takes the
        whole buffer at once: it writes it to this connection or, the connection
        lost (its send is a checkpoint of the cancelled region), drops it.
        ``test_a_frame_torn_by_a_lost_connection_never_reaches_the_next_one``."""
        out = self._out
        if conn is None or conn.send_nowait is None or self._pings_in_out or \
                conn is not self._conn or conn.closed:
            return False
        try:
            sent = conn.send_nowait(out)
        except Exception:  # WouldBlock, or a broken stream the flusher will report
            return False
        del out[:sent]
        if self._hw_wq._q:
            self._hw_wq.wake_all()
        return not out

    def _pub_prefix(self, subject: str) -> bytes:
        prefix = b"PUB " + codec.validate_token(subject, "subject") + b" "
        cache = self._pub_prefixes
        # Bounded: dropped whole when full. A responder replies to a new inbox each
        # time, and a cache that kept its first 4096 subjects would hold those
        # one-offs for good and never take a hot subject published after them; the
        # hot ones come back at their next publish.
        if len(cache) >= _PUB_PREFIX_CACHE:
            cache.clear()
        cache[subject] = prefix
        return prefix

    def flush(self, timeout: float | None = 10.0) -> None:
        """Wait until the server has processed everything sent so far (a PING/PONG
        round trip). A checkpoint; ``RequestTimeout`` after ``timeout`` seconds;
        ``NatsConnectionError`` if disconnected (or if the connection breaks first)."""
        greenrt.checkpoint_if_cancelled()
        self._check_open()
        if self.state != "connected":
            raise NatsConnectionError(f"nats: cannot flush while {self.state}")
        fut = _Future()
        self._queue_ping(fut)
        if timeout is None:
            fut.wait("nats flush")
            return
        with greenrt.move_on_after(timeout):
            fut.wait("nats flush")
            return
        raise RequestTimeout(f"nats: flush not answered within {timeout} s")

    # -- subscribing -------------------------------------------------------------------------

    def subscribe(self, subject: str, queue: str | None = None, *, max_msgs: int = 0,
                  max_pending_msgs: int | None = None, max_pending_bytes: int | None = None,
                  callback: Callable[[Message], Any] | None = None) -> Subscription:
        """Subscribe to ``subject`` (in queue group ``queue``), auto-unsubscribing after
        ``max_msgs`` messages if given. Not a checkpoint (the SUB is buffered; call
        ``flush()`` to know the server has it). With ``callback``, a task of the client
        calls ``callback(msg)`` for each message (an exception in it is logged and
        passed to ``on_error``)."""
        self._check_open()
        o = self.options
        self._sid += 1
        sub = Subscription(self, self._sid, subject, queue,
                           max_pending_msgs or o.max_pending_msgs,
                           max_pending_bytes or o.max_pending_bytes)
        frame = codec.encode_sub(subject, sub.sid, queue)
        if max_msgs:
            sub.max_msgs = max_msgs
            frame += codec.encode_unsub(sub.sid, max_msgs)
        self._subs[sub.sid] = sub
        if self.state == "connected":
            # (while reconnecting, the replay after the handshake sends it, once)
            self._out += frame
            self._out_wq.wake_one()
        if callback is not None:
            self._region.spawn(self._run_callback, sub, callback, name=f"nats.callback {subject}")
        return sub

    def _run_callback(self, sub: Subscription, callback) -> None:
        while True:
            try:
                m = sub.next_msg()
            except EndOfSubscription:
                return
            except SlowConsumer as e:
                _callback(self.options.on_error, e)
                continue
            try:
                callback(m)
            except Exception as e:
                log.exception("nats: subscription callback for %r failed", sub.subject)
                _callback(self.options.on_error, e)

    def _unsubscribe(self, sub: Subscription, max_msgs: int = 0) -> None:
        if sub._ended or sub.sid not in self._subs:
            return
        if max_msgs and sub.delivered < max_msgs:
            sub.max_msgs = max_msgs
            frame = codec.encode_unsub(sub.sid, max_msgs)
        else:
            sub._finish()
            frame = codec.encode_unsub(sub.sid)
        if self.state == "connected":
            # (while reconnecting, the replay sends the remaining count, or nothing
            # for a finished subscription)
            self._out += frame
            self._out_wq.wake_one()

    # -- request/reply ------------------------------------------------------------------------

    def new_inbox(self) -> str:
        """A fresh inbox subject (``<inbox_prefix>.<22 hex digits>``)."""
        return f"{self.options.inbox_prefix}.{self._rng.getrandbits(88):022x}"

    def _ensure_resp_sub(self) -> None:
        if self._resp_sub is None or self._resp_sub._ended:
            self._resp_prefix = self.new_inbox() + "."
            self._resp_prefix_b = self._resp_prefix.encode()
            sub = self.subscribe(self._resp_prefix + "*")
            sub._route = self._route_reply
            self._resp_sub = sub

    def _route_reply(self, m: Message) -> None:
        """A reply on the muxed inbox: one wake by its token (the reader inlines
        this for the current inbox subscription)."""
        if not self._resp_map.wake(m.subject[len(self._resp_prefix):], m):
            self._late_reply(m)

    def _late_reply(self, m: Message) -> None:
        self._stats["late_replies"] += 1
        emit_event("nats.late_reply", subject=m.subject)

    def request(self, subject: str, payload: bytes = b"", *, timeout: float | None = 2.0,
                headers: dict | None = None) -> Message:
        """Publish a request and wait for its first reply, within ``timeout`` seconds
        (the request's own budget; the caller's deadline applies too). A checkpoint.

        Raises ``RequestTimeout``, ``NoResponders`` (nobody subscribed),
        ``OutcomeUnknown`` (the connection broke with the request in flight). A
        cancelled or timed-out request's reply token is retired: its late reply is
        dropped (``statistics()['late_replies']``), never given to another request.
        On cancellation the request's PUB may already have been sent (core NATS
        cannot take it back); nothing else is left behind.

        Cost: the replies of all requests arrive on one wildcard subscription (a
        token per request); the reader hands a reply to its waiting task with one
        wake by token (``lowlevel.WaitMap``). A ``timeout`` is an entry in a
        per-client deadline queue served by one task of the client (no cancel scope
        or timer per request)."""
        task = _enter_checkpoint()
        st = self.state
        if st != "connected":
            self._check_open()
        rs = self._resp_sub
        if rs is None or rs._ended:
            self._ensure_resp_sub()
        self._resp_n += 1
        rn = self._resp_n
        token = f"{rn:x}"
        out = self._out
        n = len(payload)
        if headers is None and st == "connected" and n <= self.max_payload and \
                len(out) < self.options.flush_high_water:
            # publish()'s fast path with our own (valid) reply subject
            prefix = self._pub_prefixes.get(subject)
            if prefix is None:
                prefix = self._pub_prefix(subject)
            out += prefix
            out += b"%s%x %d\r\n" % (self._resp_prefix_b, rn, n)
            out += payload
            out += b"\r\n"
            stats = self._stats
            stats["out_msgs"] += 1
            stats["out_bytes"] += n
            if self._out_wq._q and not self._write_through(task._hub):
                self._out_wq.wake_one()
        else:
            # may wait (high water) or raise (buffer full, closed): nothing registered yet
            self.publish(subject, payload, reply=self._resp_prefix + token, headers=headers)
        # From here to the park nothing switches: the reply cannot be handled before
        # the task waits for it, and every waker pops the token before waking.
        resp_map = self._resp_map
        if timeout is not None:
            # (queued even under an earlier enclosing deadline: the entry is cheaper
            # than finding that out, and that deadline's cancellation comes first)
            when = task._hub.now() + timeout  # (the running task's hub: no thread-local look-up)
            q = self._req_deadlines.get(timeout)
            if q is None or when < self._keeper_when:
                self._add_request_deadline(timeout, when, token, subject)
            else:
                # _add_request_deadline's common case, inlined; the answered entries
                # at the head are dropped every 64th request, not at each one
                if not rn & 63:
                    tokens = self._resp_tokens
                    while q and q[0][1] not in tokens:
                        q.popleft()
                q.append((when, token, subject))
        m = resp_map.wait(task, token, "nats request")
        if m.status == 503 and not m.data:
            raise NoResponders(f"nats: no responders on {subject!r}")
        return m

    def _add_request_deadline(self, timeout: float, when: float, token: str,
                              subject: str) -> None:
        """Queue ``token``'s deadline for the deadline keeper. One deque per distinct
        ``timeout`` value (so each is in deadline order: hub time only grows); the
        keeper (a task of the client, started at the first timed request) sleeps
        until the earliest head and is woken only when a deadline earlier than the
        one it sleeps for arrives. Entries of finished requests are dropped lazily
        (here, from the head, and by the keeper); a deque holds at most what was
        issued within one ``timeout``."""
        queues = self._req_deadlines
        q = queues.get(timeout)
        if q is None:
            q = queues[timeout] = deque()
        else:
            tokens = self._resp_tokens
            while q and q[0][1] not in tokens:
                q.popleft()
        q.append((when, token, subject))
        if when < self._keeper_when:
            self._keeper_when = when
            if self._keeper is None:
                self._keeper = self._region.spawn(self._deadline_keeper,
                                                  name="nats.request-deadlines")
            else:
                self._keeper_wq.wake_one()

    def _deadline_keeper(self) -> None:
        wq = self._keeper_wq
        while True:
            nxt = self._expire_requests()
            if nxt is None:
                self._keeper_when = _INF
                wq.park(what="nats request deadlines (none)")
            else:
                self._keeper_when = nxt
                with greenrt.move_on_at(nxt):
                    wq.park(what="nats request deadlines")

    def _expire_requests(self) -> float | None:
        """Wake every request past its deadline with ``RequestTimeout``; the next
        deadline (or ``None``)."""
        now = greenrt.now()
        rm = self._resp_map
        tokens = self._resp_tokens
        nxt = None
        for key, q in list(self._req_deadlines.items()):
            while q:
                when, token, subject = q[0]
                if token not in tokens:
                    q.popleft()
                    continue
                if when > now:
                    break
                q.popleft()
                rm.wake_error(token, RequestTimeout(f"nats: no reply to {subject!r} within {key} s"))
            if q:
                if nxt is None or q[0][0] < nxt:
                    nxt = q[0][0]
            else:
                del self._req_deadlines[key]
        return nxt

    # -- drain, statistics ------------------------------------------------------------------

    def drain(self, timeout: float | None = None) -> None:
        """Graceful close: unsubscribe everything, let the server deliver what it has
        already routed (a PING round trip), wait until the subscriptions' queues are
        consumed, flush the publishes, close. Bounded by ``timeout`` (default
        ``drain_timeout``); on expiry the client is closed anyway. A checkpoint; the
        client is closed afterwards whatever happened (cancellation included)."""
        if self.state in ("closed", "draining"):
            return
        timeout = self.options.drain_timeout if timeout is None else timeout
        try:
            with greenrt.move_on_after(timeout):
                if self.state == "connected":
                    subs = [s for s in self._subs.values() if s._route is None]
                    for sub in subs:
                        self._out += codec.encode_unsub(sub.sid)
                    self.flush(timeout=None)  # the server has routed all it will route
                    for sub in subs:
                        sub._finish()
                    self.state = "draining"
                    for sub in subs:
                        while sub._q:
                            greenrt.sleep(0.001)
                    if self._out:
                        fut = _Future()
                        self._queue_ping(fut)
                        fut.wait("nats drain flush")
        except NatsConnectionError:
            pass
        finally:
            self._shutdown()

    def statistics(self) -> dict:
        """Counters: messages/bytes in and out, reconnects, disconnects, protocol
        errors, slow-consumer drops, late replies, pending (buffered) bytes, live
        subscriptions, outstanding requests, the state and the server."""
        return {**self._stats, "pending_bytes": len(self._out), "subscriptions": len(self._subs),
                "outstanding_requests": len(self._resp_map), "state": self.state,
                "server": self._conn.server.address if self._conn else None,
                "servers": [s.address for s in self._servers]}

    def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until the client is connected (after a reconnect); a checkpoint.
        ``ClientClosed`` if it closes instead."""
        with greenrt.fail_after(timeout) if timeout is not None else _nullcontext():
            while self.state != "connected":
                self._check_open()
                self._state_wq.park(what="nats: waiting for a connection")

    def jetstream(self, **kw):
        """A JetStream context (``protocols.nats.jetstream.JetStream``)."""
        from .jetstream import JetStream

        return JetStream(self, **kw)


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _callback(cb, *args) -> None:
    """Run a user callback; its exception is logged, never allowed to kill the
    client's task that called it."""
    if cb is None:
        return
    try:
        cb(*args)
    except Exception:
        log.exception("nats: callback %r failed", cb)


def _server_error(text: str) -> ServerError:
    low = text.lower()
    if "authorization" in low or "authentication" in low or "user authentication" in low:
        return AuthorizationError(f"nats: server: {text}")
    return ServerError(f"nats: server: {text}")


def connect(servers: str | Sequence[str] = "nats://127.0.0.1:4222", **options: Any) -> Client:
    """A client for ``servers`` (a URL, a comma-separated list or a sequence of URLs
    ``nats://[user:pass@|token@]host:port``). Use it as a context manager: ``with
    connect(...) as nc``; entering connects (a checkpoint; the first server that
    accepts wins, else ``NatsConnectionError``; bad credentials raise
    ``AuthorizationError``) and leaving closes and joins the client's tasks.

    Options (see :class:`Options`): ``name``, ``user``/``password``, ``token``,
    ``nkey_seed``, ``creds`` (a ``.creds`` file), ``tls`` (``True`` or a
    ``protocols.tls.client_context``), ``tls_hostname``, ``connect_timeout``,
    ``allow_reconnect``, ``max_reconnect_attempts``, ``reconnect_wait``,
    ``max_reconnect_wait``, ``reconnect_jitter``, ``pending_size``,
    ``flush_high_water``, ``ping_interval``, ``max_outstanding_pings``, ``no_echo``,
    ``max_pending_msgs``/``max_pending_bytes`` (per-subscription queue bounds),
    ``drain_timeout``, ``limits`` (codec limits), ``on_disconnect``,
    ``on_reconnect``, ``on_error``, ``on_lame_duck`` (callbacks run in the client's own
    tasks: they must not block; an exception in one is logged on
    ``greenrt.protocols.nats`` and ignored), ``rng``.
    """
    if isinstance(servers, str):
        servers = [s.strip() for s in servers.split(",") if s.strip()]
    opts = Options(servers=[Server.parse(s) for s in servers], **options)
    return Client(opts)

