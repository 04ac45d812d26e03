"""The simulated network: ``greenrt.net`` on virtual wires, driven by the choice stream.

``SimNetwork`` implements ``greenrt.net.Network`` for the lab hub, so
``greenrt.net.open_tcp/listen_tcp/serve_tcp/open_unix/udp_socket/resolve`` and every
protocol built on ``greenrt.net.Stream`` run unchanged under the lab. Streams,
listeners and UDP sockets subclass greenrt's ``TransportStream``/``TransportListener``
/``TransportUDPSocket`` and supply only the transport primitives, so checkpoint,
cancellation, broken-stream and statistics semantics are exactly the real ones.

Model
-----
* **Hosts.** Addresses are virtual IPv4 strings. Code runs "on" the default host
  (``NetConfig.default_host``, ``10.0.0.1``) unless it runs inside
  ``with lab.net.host("10.0.0.2"):``; tasks spawned inside inherit the host (it is a
  context variable, copied at spawn). ``127.0.0.1``/``::1``/``localhost`` mean the
  current host; binding to ``None``/``""``/``0.0.0.0`` binds the current host.
  Ephemeral ports count up from 49152 per host. Names resolve through
  ``NetConfig.names`` (``{"db": "10.0.0.2"}``); anything else is ``gaierror``.
* **TCP.** A connect sends a SYN that reaches the listener after one one-way delay
  (``ConnectionRefusedError`` comes back if nobody listens or the backlog is full) and
  the client learns the result one delay later. Each direction of a connection is a
  FIFO of segments (data, FIN, RST) with delivery times
  ``max(now + latency + jitter, previous delivery)``: in order, like TCP, whatever the
  jitter. A sender may have at most ``buffer`` bytes in flight plus unread at the peer
  (flow control); it blocks until the peer reads. ``close()`` sends FIN, or RST if it
  leaves unread data behind; data that reaches a closed end is answered with RST,
  which breaks the sender's stream (``ConnectionResetError`` ->
  ``BrokenStreamError``).
* **UDP.** A datagram arrives after one delay, or not at all: dropped with
  probability ``udp_drop``, when partitioned, or when nobody is bound. Receive queues
  hold ``udp_queue`` datagrams; more are dropped.
* **Faults.** ``partition(a, b)`` cuts every path between two hosts (or two groups of
  hosts): TCP segments and SYNs wait (TCP retransmits) and flow again after
  ``heal()``; a connect that cannot get through within ``connect_timeout`` fails with
  ``TimeoutError``; datagrams are lost. ``reset(a, b)`` resets every connection
  between two hosts at once, and ``reset_rate`` resets a connection at a data
  delivery with that probability.

Determinism: every delay, drop and reset comes from the hub's choice stream
(``net.delay``, ``net.drop``, ``net.reset``; asked only when jitter or a rate is
configured), every timer is created in a deterministic order, and nothing iterates a
set. Network timers belong to the lab (``call_at_unowned``), so a packet in flight
does not count against the quiescence of the region that sent it.

Trace events: ``lab.net.listen``, ``lab.net.connect`` (with its outcome),
``lab.net.send``/``lab.net.deliver`` (connection id, direction, bytes, kind),
``lab.net.reset``, ``lab.net.partition``/``lab.net.heal``, ``lab.net.udp``.
"""

from __future__ import annotations

import contextvars
import errno
import socket
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from greenrt import ClosedResourceError
from greenrt.lowlevel import current_hub, enter_checkpoint, park, reschedule, reschedule_with_error
from greenrt.net import Network, TransportListener, TransportStream, TransportUDPSocket

_LOOPBACK = ("127.0.0.1", "::1", "localhost")
_WILDCARD = (None, "", "0.0.0.0", "::")
EPHEMERAL_START = 49152
_PROB_SCALE = 1_000_000

_current_host: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "lab_net_host", default=None)


@dataclass
class NetConfig:
    """Simulated network parameters (all times in virtual seconds)."""

    latency: float = 0.001
    jitter: float = 0.0
    udp_drop: float = 0.0
    reset_rate: float = 0.0
    connect_timeout: float = 75.0
    buffer: int = 65536
    udp_queue: int = 256
    default_host: str = "10.0.0.1"
    names: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.latency < 0 or self.jitter < 0 or self.connect_timeout <= 0:
            raise ValueError("latency, jitter must be >= 0 and connect_timeout > 0")
        for r in (self.udp_drop, self.reset_rate):
            if not 0.0 <= r <= 1.0:
                raise ValueError("udp_drop and reset_rate are probabilities in [0, 1]")
        if self.buffer < 1 or self.udp_queue < 1:
            raise ValueError("buffer and udp_queue must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetConfig:
        return cls(**d)


def _as_config(c: Any) -> NetConfig:
    if c is None:
        return NetConfig()
    if isinstance(c, NetConfig):
        return c
    return NetConfig.from_dict(dict(c))


# -- the network -----------------------------------------------------------------------


class SimNetwork(Network):
    """``hub.network`` under the lab. See the module docstring."""

    def __init__(self, hub, config: Any = None):
        self.hub = hub
        self.config = _as_config(config)
        self._listeners: dict[tuple, SimListener] = {}
        self._udp: dict[tuple, SimUDPSocket] = {}
        self.udp_hosts: set[str] = set()  # hosts that bound or were sent a datagram
        self._next_port: dict[str, int] = {}
        self._cuts: list[tuple[frozenset, frozenset]] = []
        self._held: list = []  # directions and connects waiting for a heal
        self._conns: list[_Conn] = []
        self._conn_ids = 0
        self.extra_delay = 0.0  # lab.faults: a latency spike in progress
        self.drop_boost = 0.0  # lab.faults: a datagram-loss burst in progress
        self.stats = {"connects": 0, "refused": 0, "segments": 0, "bytes": 0, "resets": 0,
                      "udp_sent": 0, "udp_dropped": 0}

    # -- helpers ------------------------------------------------------------------------

    def current_host(self) -> str:
        return _current_host.get() or self.config.default_host

    def _host_of(self, host: str | None) -> str:
        if host in _WILDCARD or host in _LOOPBACK:
            return self.current_host()
        return self.config.names.get(host, host)

    def _ephemeral(self, host: str) -> int:
        p = self._next_port.get(host, EPHEMERAL_START)
        while (host, p) in self._listeners or (host, p) in self._udp or \
                any(c.uses(host, p) for c in self._conns):
            p += 1
        self._next_port[host] = p + 1
        return p

    def _emit(self, kind: str, /, **data: Any) -> None:
        hub = self.hub
        if hub._tracing:
            cur = hub.current
            hub._emit(kind, cur.id if cur is not None else None, None, **data)

    def _delay(self) -> float:
        c = self.config
        d = c.latency + self.extra_delay
        if c.jitter > 0:
            d += c.jitter * self.hub.choose("net.delay", 1024) / 1024.0
        return d

    def _chance(self, what: str, p: float) -> bool:
        if p <= 0:
            return False
        if p >= 1:
            return True
        return self.hub.choose(what, _PROB_SCALE) < int(p * _PROB_SCALE)

    def _at(self, delay: float, fn, *args):
        return self.hub.call_at_unowned(self.hub.now() + delay, fn, *args)

    # -- faults -------------------------------------------------------------------------

    def partitioned(self, a: str, b: str) -> bool:
        for x, y in self._cuts:
            if (a in x and b in y) or (a in y and b in x):
                return True
        return False

    def partition(self, a, b) -> None:
        """Cut every path between host(s) ``a`` and host(s) ``b``."""
        ga, gb = _group(a), _group(b)
        self._cuts.append((ga, gb))
        self._emit("lab.net.partition", a=sorted(ga), b=sorted(gb))

    def heal(self, a=None, b=None) -> None:
        """Remove the cuts between ``a`` and ``b`` (every cut when both are omitted);
        held segments and connects flow again."""
        if a is None and b is None:
            self._cuts = []
        else:
            ga, gb = _group(a), _group(b)
            self._cuts = [(x, y) for x, y in self._cuts
                          if not ((ga & x and gb & y) or (ga & y and gb & x))]
        self._emit("lab.net.heal", a=sorted(_group(a)) if a is not None else None,
                   b=sorted(_group(b)) if b is not None else None)
        held, self._held = self._held, []
        for item in held:
            item.resume()

    def reset(self, a, b) -> int:
        """Reset every open connection between host(s) ``a`` and ``b``; return how many."""
        ga, gb = _group(a), _group(b)
        n = 0
        for c in list(self._conns):
            x, y = c.client.host, c.server.host
            if (x in ga and y in gb) or (x in gb and y in ga):
                c.reset_both("injected reset")
                n += 1
        return n

    # -- Network ------------------------------------------------------------------------

    def listen_tcp(self, host: str | None, port: int, *, backlog: int = 128) -> SimListener:
        h = self._host_of(host)
        return self._listen(("tcp", h, port), h, port, backlog)

    def listen_unix(self, path: str, *, backlog: int = 128, mode: int | None = None) -> SimListener:
        return self._listen(("unix", path), None, path, backlog)

    def _listen(self, key0, host, port, backlog: int) -> SimListener:
        if key0[0] == "tcp":
            if port == 0:
                port = self._ephemeral(host)
            key = ("tcp", host, port)
            if (host, port) in self._listeners:
                raise OSError(errno.EADDRINUSE, f"address {host}:{port} already in use")
            address: Any = (host, port)
            reg = (host, port)
        else:
            key = key0
            reg = key0
            if reg in self._listeners:
                raise OSError(errno.EADDRINUSE, f"{port} already in use")
            address = port
        lst = SimListener(self, address, reg, max(1, backlog))
        self._listeners[reg] = lst
        self._emit("lab.net.listen", address=list(key[1:]))
        return lst

    def open_tcp(self, host: str, port: int, *, local_address=None) -> SimStream:
        """Connect (see the module docstring). A checkpoint; a cancelled connect
        leaves nothing behind."""
        enter_checkpoint()
        src = self.current_host()
        dst = self._host_of(host)
        if local_address is not None:
            src = self._host_of(local_address[0])
        return _Connect(self, src, dst, ("tcp", dst, port), (dst, port)).run()

    def open_unix(self, path: str) -> SimStream:
        enter_checkpoint()
        h = self.current_host()
        return _Connect(self, h, h, ("unix", path), path).run()

    def udp_socket(self, family: int, local_address=None) -> SimUDPSocket:
        if local_address is None:
            h = self.current_host()
            port = 0
        else:
            h = self._host_of(local_address[0])
            port = local_address[1]
        if port == 0:
            port = self._ephemeral(h)
        if (h, port) in self._udp:
            raise OSError(errno.EADDRINUSE, f"udp {h}:{port} already in use")
        s = SimUDPSocket(self, (h, port), family)
        self._udp[(h, port)] = s
        self.udp_hosts.add(h)
        return s

    def resolve(self, host: str, port: int, family: int = 0, type: int = 0) -> list[tuple]:
        """Resolve through ``NetConfig.names``. A checkpoint; unknown names raise
        ``socket.gaierror``."""
        enter_checkpoint()
        if isinstance(host, bytes):
            host = host.decode("ascii")
        if host == "localhost":
            addr = "127.0.0.1"
        elif host in self.config.names:
            addr = self.config.names[host]
        else:
            from greenrt.net import _connect

            if not _connect.is_numeric_host(host):
                raise socket.gaierror(socket.EAI_NONAME, f"lab.net: unknown host {host!r}")
            addr = host
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        if family not in (0, fam):
            return []
        types = [type] if type else [socket.SOCK_STREAM, socket.SOCK_DGRAM]
        return [(fam, t, 6 if t == socket.SOCK_STREAM else 17, "", (addr, port))
                for t in types]

    def statistics(self) -> dict:
        return dict(self.stats, connections=len(self._conns), listeners=len(self._listeners))


def _group(x) -> frozenset:
    if isinstance(x, str):
        return frozenset((x,))
    return frozenset(x)


# -- connecting --------------------------------------------------------------------------


class _Connect:
    """One connection attempt: SYN -> listener -> result back to the client."""

    def __init__(self, net: SimNetwork, src: str, dst: str, key, address):
        self.net = net
        self.src = src
        self.dst = dst
        self.key = key
        self.address = address
        self.task = None
        self.timer = None
        self.deadline_timer = None
        self.result = None
        self.done = False

    def run(self) -> SimStream:
        net = self.net
        self.task = current_hub().current
        net.stats["connects"] += 1
        self.deadline_timer = net._at(net.config.connect_timeout, self._timeout)
        self.send_syn()

        def abort() -> bool:
            self.done = True
            self._cancel_timers()
            if self in net._held:
                net._held.remove(self)
            s = self.result
            if s is not None:  # the server already has its end: tell it we are gone
                self.result = None
                s.close()
            return True

        return park(abort)

    def _cancel_timers(self) -> None:
        for t in (self.timer, self.deadline_timer):
            if t is not None:
                t.cancel()
        self.timer = self.deadline_timer = None

    def send_syn(self) -> None:
        net = self.net
        if net.partitioned(self.src, self.dst):
            net._held.append(self)  # TCP retransmits the SYN once the path is back
            return
        self.timer = net._at(net._delay(), self._syn_arrives)

    resume = send_syn

    def _finish(self, value=None, error: BaseException | None = None) -> None:
        if self.done:
            return
        self.done = True
        self._cancel_timers()
        if error is not None:
            reschedule_with_error(self.task, error)
        else:
            reschedule(self.task, value)

    def _timeout(self) -> None:
        self.deadline_timer = None
        if self in self.net._held:
            self.net._held.remove(self)
        self.net._emit("lab.net.connect", to=_addr(self.address), result="timeout")
        self._finish(error=TimeoutError(errno.ETIMEDOUT, f"connect to {_addr(self.address)} "
                                                         "timed out (lab.net)"))

    def _syn_arrives(self) -> None:
        self.timer = None
        net = self.net
        lst = net._listeners.get(self.address if self.key[0] == "tcp" else self.key)
        if lst is None or lst.closed or len(lst._backlog) >= lst._backlog_max:
            net.stats["refused"] += 1
            net._emit("lab.net.connect", to=_addr(self.address), result="refused")
            err = ConnectionRefusedError(errno.ECONNREFUSED,
                                         f"connection to {_addr(self.address)} refused (lab.net)")
            self.timer = net._at(net._delay(), self._finish, None, err)
            return
        client, server = _Conn.make(net, self.src, self.dst, self.key, self.address)
        lst._enqueue(server)
        self.result = client
        net._emit("lab.net.connect", to=_addr(self.address), result="ok", conn=client._conn.id,
                  local=_addr(client.local_address))
        self.timer = net._at(net._delay(), self._established)

    def _established(self) -> None:
        self.timer = None
        s, self.result = self.result, None
        self._finish(s)


def _addr(a) -> Any:
    return list(a) if isinstance(a, tuple) else a


# -- connections --------------------------------------------------------------------------


class _Direction:
    """One direction of a connection: an ordered queue of segments in flight."""

    __slots__ = ("conn", "src", "dst", "queue", "timer", "last_at", "inflight", "held", "name")

    def __init__(self, conn: _Conn, src: SimStream, dst: SimStream, name: str):
        self.conn = conn
        self.src = src
        self.dst = dst
        self.queue: deque = deque()  # (deliver_at, kind, payload)
        self.timer = None
        self.last_at = 0.0
        self.inflight = 0
        self.held = False
        self.name = name

    def push(self, kind: str, payload: bytes = b"") -> None:
        net = self.conn.net
        at = max(net.hub.now() + net._delay(), self.last_at)
        self.last_at = at
        self.queue.append((at, kind, payload))
        self.inflight += len(payload)
        net.stats["segments"] += 1
        net._emit("lab.net.send", conn=self.conn.id, dir=self.name, kind=kind, n=len(payload),
                  at=at)
        if self.timer is None and not self.held:
            self.timer = net.hub.call_at_unowned(at, self.deliver)

    def resume(self) -> None:
        self.held = False
        if self.queue and self.timer is None:
            net = self.conn.net
            at = max(net.hub.now() + net._delay(), self.queue[0][0])
            self.timer = net.hub.call_at_unowned(at, self.deliver)

    def clear(self) -> None:
        self.queue.clear()
        self.inflight = 0
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def deliver(self) -> None:
        self.timer = None
        conn = self.conn
        net = conn.net
        now = net.hub.now()
        while self.queue and self.queue[0][0] <= now:
            if net.partitioned(self.src.host, self.dst.host):
                if not self.held:
                    self.held = True
                    net._held.append(self)
                return
            _, kind, payload = self.queue.popleft()
            self.inflight -= len(payload)
            net._emit("lab.net.deliver", conn=conn.id, dir=self.name, kind=kind, n=len(payload))
            if kind == "data" and net._chance("net.reset", net.config.reset_rate):
                conn.reset_both("random reset (reset_rate)")
                return
            self.dst._receive(kind, payload, self)
            if conn.dead:
                return
        if self.queue:
            self.timer = net.hub.call_at_unowned(self.queue[0][0], self.deliver)


class _Conn:
    """A connection: two ``SimStream`` ends and a ``_Direction`` each way."""

    def __init__(self, net: SimNetwork, cid: int):
        self.net = net
        self.id = cid
        self.client: SimStream
        self.server: SimStream
        self.dead = False

    @classmethod
    def make(cls, net: SimNetwork, src: str, dst: str, key, address):
        net._conn_ids += 1
        conn = cls(net, net._conn_ids)
        if key[0] == "tcp":
            local = (src, net._ephemeral(src))
            remote = address
        else:
            local = ""
            remote = address
        c = SimStream(net, conn, src, local, remote)
        s = SimStream(net, conn, dst, remote, local)
        conn.client, conn.server = c, s
        c._out = _Direction(conn, c, s, "c2s")
        s._out = _Direction(conn, s, c, "s2c")
        net._conns.append(conn)
        return c, s

    def uses(self, host: str, port: int) -> bool:
        a = self.client.local_address
        return isinstance(a, tuple) and a[0] == host and a[1] == port

    def forget(self) -> None:
        if self.client._closed and self.server._closed or self.dead:
            try:
                self.net._conns.remove(self)
            except ValueError:
                pass

    def reset_both(self, why: str) -> None:
        if self.dead:
            return
        self.dead = True
        self.net.stats["resets"] += 1
        self.net._emit("lab.net.reset", conn=self.id, why=why)
        for end in (self.client, self.server):
            end._out.clear()
            end._set_reset(why)
        self.forget()


class SimStream(TransportStream):
    """One end of a simulated connection (a ``greenrt.net.Stream``).

    Under ``lab.explore`` every transport operation reports an access to the
    connection (``hub.note_access``), so DPOR orders sends, receives and closes of
    one connection; ``_io_error`` (set by ``lab.faults``) makes the next send or
    receive fail with ``EIO``."""

    _io_error: str | None = None

    def _note(self, write: bool = True) -> None:
        hub = self._net.hub
        if hub.wants_access:
            hub.note_access(self._conn, write)

    def _check_io_error(self) -> None:
        why = self._io_error
        if why is not None:
            self._io_error = None
            raise OSError(errno.EIO, f"injected I/O error ({why})")

    def __init__(self, net: SimNetwork, conn: _Conn, host: str, local, peer):
        TransportStream.__init__(self, net.hub)
        self._net = net
        self._conn = conn
        self.host = host
        self._local = local
        self._peer = peer
        self._rbuf = bytearray()
        self._eof_in = False
        self._reset: str | None = None
        self._rwaiter = None
        self._wwaiter = None
        self._fin_sent = False
        self._rst_sent = False
        self._out: _Direction

    @property
    def local_address(self):
        return self._local

    @property
    def peer_address(self):
        return self._peer

    def _lab_label(self) -> str:
        return f"stream #{self._conn.id} {_fmt(self._local)}->{_fmt(self._peer)}"

    # -- arrivals (on the hub) ----------------------------------------------------------

    def _receive(self, kind: str, payload: bytes, direction: _Direction) -> None:
        if kind == "rst":
            self._conn.reset_both("reset by peer")
            return
        if self._closed:
            if kind == "data" and not self._rst_sent:  # data for a closed socket: RST
                self._rst_sent = True
                self._out.push("rst")
            return
        if kind == "data":
            self._rbuf += payload
        elif kind == "fin":
            self._eof_in = True
        self._wake_reader()

    def _set_reset(self, why: str) -> None:
        self._reset = why
        self._wake_reader()
        self._wake_writer()

    def _wake_reader(self) -> None:
        t = self._rwaiter
        if t is not None:
            self._rwaiter = None
            reschedule(t, None)

    def _wake_writer(self) -> None:
        t = self._wwaiter
        if t is not None:
            self._wwaiter = None
            reschedule(t, None)

    def has_unread(self) -> bool:
        """See ``greenrt.net.Stream.has_unread``: bytes already delivered to this end,
        its EOF or a reset. Bytes still in flight on the simulated link are not seen
        (as on a real network); a pool checks again at checkout."""
        self._note(write=False)
        return bool(self._rbuf) or self._eof_in or self._reset is not None or self.closed \
            or self.broken

    # -- transport primitives --------------------------------------------------------

    def _t_recv(self, max_bytes: int) -> bytes:
        self._note()
        self._check_io_error()
        if self._rbuf:
            data = bytes(self._rbuf[:max_bytes])
            del self._rbuf[:max_bytes]
            peer = self._conn.server if self is self._conn.client else self._conn.client
            peer._wake_writer()  # flow control: the window opened
            return data
        if self._reset is not None:
            raise ConnectionResetError(errno.ECONNRESET, f"connection reset ({self._reset})")
        if self._eof_in:
            return b""
        raise BlockingIOError

    def _window(self) -> int:
        peer = self._out.dst
        return self._net.config.buffer - self._out.inflight - len(peer._rbuf)

    def _t_send(self, data) -> int:
        self._note()
        self._check_io_error()
        if self._reset is not None:
            raise ConnectionResetError(errno.ECONNRESET, f"connection reset ({self._reset})")
        room = self._window()
        if room <= 0:
            raise BlockingIOError
        chunk = bytes(data[:room])
        self._net.stats["bytes"] += len(chunk)
        self._out.push("data", chunk)
        return len(chunk)

    def _wait(self, slot: str) -> None:
        task = current_hub().current
        setattr(self, slot, task)

        def abort() -> bool:
            if getattr(self, slot) is task:
                setattr(self, slot, None)
            return True

        park(abort)
        if self._closed:
            raise ClosedResourceError("the stream was closed while waiting")

    def _t_wait_readable(self) -> None:
        self._note(False)
        if self._rbuf or self._eof_in or self._reset is not None:
            return
        self._wait("_rwaiter")

    def _t_wait_writable(self) -> None:
        if self._reset is not None or self._window() > 0:
            return
        self._wait("_wwaiter")

    def _t_send_eof(self) -> None:
        self._note()
        if self._reset is not None:
            raise ConnectionResetError(errno.ECONNRESET, f"connection reset ({self._reset})")
        if not self._fin_sent:
            self._fin_sent = True
            self._out.push("fin")

    def _t_close(self) -> None:
        self._note()
        for slot in ("_rwaiter", "_wwaiter"):
            t = getattr(self, slot)
            if t is not None:
                setattr(self, slot, None)
                reschedule_with_error(t, ClosedResourceError("stream closed while waiting"))
        if self._reset is None and not self._conn.dead:
            if self._rbuf:  # closing with unread data: TCP sends RST
                self._rst_sent = True
                self._out.push("rst")
            elif not self._fin_sent:
                self._fin_sent = True
                self._out.push("fin")
        self._rbuf.clear()
        self._conn.forget()


class SimListener(TransportListener):
    """A simulated listening socket (TCP or Unix)."""

    def __init__(self, net: SimNetwork, address, reg, backlog: int):
        TransportListener.__init__(self, net.hub)
        self._net = net
        self._address = address
        self._reg = reg
        self._backlog: deque = deque()
        self._backlog_max = backlog
        self._waiter = None

    @property
    def address(self):
        return self._address

    def _lab_label(self) -> str:
        return f"listener {_fmt(self._address)}"

    def _enqueue(self, s: SimStream) -> None:
        self._backlog.append(s)
        t = self._waiter
        if t is not None:
            self._waiter = None
            reschedule(t, None)

    def _t_accept(self) -> SimStream:
        if self._backlog:
            return self._backlog.popleft()
        raise BlockingIOError

    def _t_wait_accept(self) -> None:
        task = current_hub().current
        self._waiter = task

        def abort() -> bool:
            if self._waiter is task:
                self._waiter = None
            return True

        park(abort)
        if self._closed:
            raise ClosedResourceError("listener closed while accepting")

    def _t_close(self) -> None:
        self._net._listeners.pop(self._reg, None)
        t = self._waiter
        if t is not None:
            self._waiter = None
            reschedule_with_error(t, ClosedResourceError("listener closed while accepting"))
        while self._backlog:  # connections nobody accepted are reset
            self._backlog.popleft()._conn.reset_both("listener closed before accept")


class SimUDPSocket(TransportUDPSocket):
    """A simulated UDP socket."""

    def __init__(self, net: SimNetwork, address: tuple, family: int):
        TransportUDPSocket.__init__(self, net.hub)
        self._net = net
        self._address = address
        self.family = family
        self._queue: deque = deque()
        self._waiter = None
        self.dropped = 0

    @property
    def local_address(self):
        return self._address

    def _lab_label(self) -> str:
        return f"udp {_fmt(self._address)}"

    def _t_sendto(self, data, address) -> int:
        net = self._net
        payload = bytes(data)
        dst = (net._host_of(address[0]), address[1])
        net.udp_hosts.add(dst[0])
        net.stats["udp_sent"] += 1
        lost = net.partitioned(self._address[0], dst[0]) or \
            net._chance("net.drop", max(net.config.udp_drop, net.drop_boost))
        net._emit("lab.net.udp", src=list(self._address), dst=list(dst), n=len(payload),
                  dropped=lost)
        if lost:
            net.stats["udp_dropped"] += 1
        else:
            net._at(net._delay(), self._arrive, dst, payload, self._address)
        return len(payload)

    def _arrive(self, dst, payload: bytes, src) -> None:
        net = self._net
        s = net._udp.get(dst)
        if s is None or s._closed or len(s._queue) >= net.config.udp_queue:
            net.stats["udp_dropped"] += 1
            return
        s._queue.append((payload, src))
        t = s._waiter
        if t is not None:
            s._waiter = None
            reschedule(t, None)

    def _t_recvfrom(self, max_bytes: int):
        if self._queue:
            payload, src = self._queue.popleft()
            return payload[:max_bytes], src
        raise BlockingIOError

    def _t_wait_readable(self) -> None:
        task = current_hub().current
        self._waiter = task

        def abort() -> bool:
            if self._waiter is task:
                self._waiter = None
            return True

        park(abort)
        if self._closed:
            raise ClosedResourceError("socket closed while receiving")

    def _t_wait_writable(self) -> None:  # pragma: no cover - sendto never blocks here
        return

    def _t_close(self) -> None:
        self._net._udp.pop(self._address, None)
        t = self._waiter
        if t is not None:
            self._waiter = None
            reschedule_with_error(t, ClosedResourceError("socket closed while receiving"))


def _fmt(a) -> str:
    if isinstance(a, tuple):
        return f"{a[0]}:{a[1]}"
    return str(a) or "<unnamed>"


# -- the module-level API (for programs under the lab) -------------------------------------


def network() -> SimNetwork:
    """The running lab's simulated network."""
    net = current_hub().network
    if not isinstance(net, SimNetwork):
        raise RuntimeError("lab.net is only available inside lab.run()")
    return net


def partition(a: str | Iterable[str], b: str | Iterable[str]) -> None:
    """Cut the network between host(s) ``a`` and host(s) ``b`` (not a checkpoint)."""
    network().partition(a, b)


def heal(a: str | Iterable[str] | None = None, b: str | Iterable[str] | None = None) -> None:
    """Heal the cut between ``a`` and ``b``, or every cut (not a checkpoint)."""
    network().heal(a, b)


def reset(a: str | Iterable[str], b: str | Iterable[str]) -> int:
    """Reset every connection between ``a`` and ``b`` now; return how many."""
    return network().reset(a, b)


@contextmanager
def host(address: str) -> Iterator[str]:
    """Run the block (and every task spawned in it) on virtual host ``address``."""
    tok = _current_host.set(address)
    try:
        yield address
    finally:
        _current_host.reset(tok)


def current_host() -> str:
    """The virtual host the current code runs on."""
    return network().current_host()
