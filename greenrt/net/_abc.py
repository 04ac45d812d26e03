"""The network seam: the interfaces a network implementation provides.

``greenrt.net``'s public functions never create sockets themselves. They ask
``current_hub().network`` for an implementation of :class:`Network` and work with the
:class:`Stream`, :class:`Listener` and :class:`UDPSocket` objects it returns. On the
real hub that is ``greenrt.net._real.RealNetwork`` (non-blocking sockets driven by the
epoll driver); under the lab it is the simulated network. Protocol code depends only
on these interfaces, so the same HTTP or TLS code runs over real and simulated wires.

Division of labour:

* A ``Network`` does *one* thing per call: connect to one **numeric** address, bind
  one listener, resolve one name. Name resolution policy, happy eyeballs (RFC 8305),
  deadlines and servers (``serve_tcp``: one task per connection, connection cap,
  graceful shutdown) live in network-independent code in ``greenrt.net`` and work on
  top of any ``Network``.
* Stream semantics that must be identical everywhere (every call is a checkpoint, a
  cancelled ``recv`` loses no data, a ``send_all`` cancelled after writing part of
  its data breaks the stream, statistics counters, the closed/broken state machine)
  are implemented once in :class:`greenrt.net._stream.TransportStream`. A network
  implementation normally subclasses it and supplies six transport primitives
  (non-blocking recv/send that raise ``BlockingIOError``, two waits, shutdown, close).

Addresses: TCP/UDP addresses are ``(host, port)`` tuples (IPv6 may carry
``flowinfo, scope_id``), with ``host`` numeric; Unix addresses are path strings.
Address families and socket types use the ``socket`` module's integer constants
(``AF_INET``, ``AF_INET6``, ``AF_UNIX``, ``SOCK_STREAM``, ``SOCK_DGRAM``).

Errors (all in ``greenrt.net``): ``BrokenStreamError`` (the connection failed or was
reset, or a cancelled ``send_all`` left it in an unknown state; also a
``ConnectionError``), ``ClosedResourceError`` (used after ``close()``, or closed while
waiting), ``BusyResourceError`` (two tasks receiving, or two sending, on one stream at
the same time). Connection failures of ``open_*`` raise ``OSError`` subclasses
(``ConnectionRefusedError``...), as the platform reports them.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, Self

from .._driver import BusyResourceError, ClosedResourceError
from .._exceptions import GreenrtError

Address = Any  # (host, port[, flowinfo, scope_id]) for IP, a path string for Unix
if TYPE_CHECKING:  # pragma: no cover
    from typing import TypeAlias

    #: what ``send_all``/``sendto`` take: anything ``len()`` and ``memoryview`` accept
    BytesLike: TypeAlias = bytes | bytearray | memoryview
    AddrInfo = tuple[Any, ...]
else:
    AddrInfo = tuple  # (family, type, proto, canonname, sockaddr), as socket.getaddrinfo


class StreamError(GreenrtError):
    """Base class of stream errors raised by ``greenrt.net`` and ``protocols``."""


class BrokenStreamError(StreamError, ConnectionError):
    """The stream cannot be used any more: the peer reset it, a send failed, or a
    ``send_all`` was cancelled after writing part of its data. The original error, if
    any, is the ``__cause__``. Only ``close()`` is allowed on a broken stream."""


__all__ = [
    "Address", "AddrInfo", "BrokenStreamError", "BusyResourceError", "ClosedResourceError",
    "Listener", "Network", "Stream", "StreamError", "UDPSocket",
]


class Stream(abc.ABC):
    """A reliable, ordered, bidirectional byte stream (TCP, Unix, TLS, simulated).

    Concurrency: one task may receive while another sends; two concurrent receivers
    (or two concurrent senders) raise ``BusyResourceError``. Every blocking method is
    a checkpoint. A stream is a context manager that closes it on exit.
    """

    @abc.abstractmethod
    def recv(self, max_bytes: int = 65536) -> bytes:
        """Receive up to ``max_bytes`` (> 0) bytes; ``b""`` means the peer sent EOF.

        A checkpoint. A cancelled ``recv`` loses no data: bytes not returned stay in
        the stream for the next call. Raises ``BrokenStreamError`` if the connection
        was reset, ``ClosedResourceError`` after ``close()``.
        """

    @abc.abstractmethod
    def send_all(self, data: BytesLike) -> None:
        """Send every byte of ``data`` (bytes-like).

        A checkpoint. If cancelled (or failing) after writing part of ``data``, the
        stream is marked broken and every later call except ``close()`` raises
        ``BrokenStreamError``; a ``send_all`` cancelled before it wrote anything
        leaves the stream usable.
        """

    @abc.abstractmethod
    def send_eof(self) -> None:
        """Half-close: tell the peer no more data follows; receiving still works.

        A checkpoint. Idempotent. Streams that cannot half-close raise ``StreamError``.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Close the stream and release its resources. Idempotent, never blocks, not a
        checkpoint. Tasks blocked on the stream wake with ``ClosedResourceError``."""

    def has_unread(self) -> bool:
        """True if anything is waiting to be read: bytes, the peer's EOF, a reset.

        A non-blocking peek, not a checkpoint, and it consumes nothing. Connection
        pools call it before reusing a connection (at check-in and again at checkout):
        a connection with bytes the last exchange did not read — a reply too many from
        a faulty or hostile peer — must be closed, never handed to the next caller.
        A closed or broken stream reports True (it must not be reused either)."""
        raise NotImplementedError(f"{type(self).__name__} cannot tell whether bytes are unread")

    @abc.abstractmethod
    def statistics(self) -> dict[str, Any]:
        """Counters: ``bytes_sent``, ``bytes_received``, ``send_calls``, ``recv_calls``,
        ``send_waits``, ``recv_waits`` and the ``broken``/``closed``/``eof_sent``/
        ``eof_received`` flags."""

    @property
    @abc.abstractmethod
    def broken(self) -> bool:
        """True once the stream is unusable (see ``BrokenStreamError``)."""

    @property
    @abc.abstractmethod
    def closed(self) -> bool:
        """True after ``close()``."""

    @property
    @abc.abstractmethod
    def local_address(self) -> Address:
        """This end's address."""

    @property
    @abc.abstractmethod
    def peer_address(self) -> Address:
        """The other end's address."""

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        """Set a socket option where the transport has one (``TCP_NODELAY``...).
        Streams without sockets raise ``StreamError``."""
        raise StreamError(f"{type(self).__name__} has no socket options")

    def getsockopt(self, level: int, option: int, buflen: int = 0) -> int | bytes:
        """Read a socket option (see ``setsockopt``)."""
        raise StreamError(f"{type(self).__name__} has no socket options")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Listener(abc.ABC):
    """A bound, listening endpoint that yields one :class:`Stream` per connection."""

    @abc.abstractmethod
    def accept(self) -> Stream:
        """Wait for the next connection and return its stream.

        A checkpoint. A cancelled ``accept`` loses no connection (it stays queued for
        the next call). Raises ``ClosedResourceError`` if the listener is closed,
        also while waiting.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Stop listening. Idempotent, not a checkpoint; wakes a blocked ``accept``
        with ``ClosedResourceError``. A Unix listener removes its socket file."""

    @property
    @abc.abstractmethod
    def address(self) -> Address:
        """The bound address (with the real port when bound to port 0)."""

    @property
    @abc.abstractmethod
    def closed(self) -> bool:
        """True after ``close()``."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class UDPSocket(abc.ABC):
    """A datagram socket."""

    @abc.abstractmethod
    def sendto(self, data: BytesLike, address: Address) -> int:
        """Send one datagram; return the number of bytes sent.

        A checkpoint. A datagram is sent whole or not at all; cancellation before the
        send leaves nothing sent."""

    @abc.abstractmethod
    def recvfrom(self, max_bytes: int = 65536) -> tuple[bytes, Address]:
        """Receive one datagram (truncated to ``max_bytes``) and its sender's address.

        A checkpoint. A cancelled ``recvfrom`` loses no datagram."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the socket; idempotent, not a checkpoint."""

    @property
    @abc.abstractmethod
    def local_address(self) -> Address:
        """The bound address."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Network(abc.ABC):
    """What a hub provides as ``hub.network``. Each method is one primitive action;
    policies (DNS, happy eyeballs, servers) are layered on top in ``greenrt.net``."""

    @abc.abstractmethod
    def open_tcp(self, host: str, port: int, *, local_address: Address | None = None) -> Stream:
        """Connect to one **numeric** address ``host:port``; return the stream.

        A checkpoint. A cancelled connect closes its socket (nothing leaks). Failure
        raises ``OSError`` (``ConnectionRefusedError``...)."""

    @abc.abstractmethod
    def listen_tcp(self, host: str | None, port: int, *, backlog: int = 128) -> Listener:
        """Bind and listen on **numeric** ``host``:``port`` (``None`` or ``""``: every
        IPv4 interface; port 0: an ephemeral port, see ``Listener.address``). Not a
        checkpoint. ``backlog`` bounds the kernel's queue of unaccepted connections."""

    @abc.abstractmethod
    def open_unix(self, path: str) -> Stream:
        """Connect to the Unix socket at ``path``. A checkpoint; see ``open_tcp``."""

    @abc.abstractmethod
    def listen_unix(self, path: str, *, backlog: int = 128, mode: int | None = None) -> Listener:
        """Bind a Unix socket at ``path`` and listen. Not a checkpoint.

        A stale *socket* file at ``path`` is replaced; any other kind of file is left
        alone and ``FileExistsError`` is raised. ``mode`` sets the socket file's
        permission bits (default: left to the umask)."""

    @abc.abstractmethod
    def udp_socket(self, family: int, local_address: Address | None = None) -> UDPSocket:
        """A UDP socket of ``family`` bound to ``local_address`` (numeric), or to an
        ephemeral port when ``None``. Not a checkpoint."""

    @abc.abstractmethod
    def resolve(self, host: str, port: int, family: int = 0, type: int = 0) -> list[AddrInfo]:
        """Resolve ``host`` to ``getaddrinfo``-style tuples
        ``(family, type, proto, canonname, sockaddr)``.

        A checkpoint. Numeric hosts resolve without any lookup. Name lookups respect
        the caller's deadline and cancellation (a cancelled lookup is abandoned).
        Failure raises ``socket.gaierror`` (an ``OSError``)."""
