"""The real network: non-blocking sockets driven by the hub's epoll driver.

This is the only module of ``greenrt.net`` that touches the ``socket`` module's
sockets. Everything here is one primitive action (connect to one numeric address,
bind one listener, one ``getaddrinfo``); policies live in network-independent code.

Every method that creates a real socket calls ``hub.check_nondeterminism`` first, so
a lab hub in strict mode refuses to let a real socket into a deterministic run.

Streams register their fd with the driver *persistently* (edge-triggered, see
``greenrt._driver``): the stream code waits only after a syscall returned
``EAGAIN``, which is exactly the edge-triggered contract, and ``close()`` calls
``notify_closing`` before closing the fd, which removes the registration. So the
hot path (``recv`` -> ``EAGAIN`` -> wait -> ``recv``) makes no ``epoll_ctl`` calls.

Hazards:
* ``connect`` on a non-blocking socket: TCP returns ``EINPROGRESS`` and completion
  is signalled by writability plus ``SO_ERROR``; a Unix socket with a full backlog
  returns ``EAGAIN`` and has *not* started connecting, so it is retried with backoff.
* A cancelled or failed connect closes its socket before the exception leaves.
* ``listen_unix`` replaces a stale socket file only after checking that nobody
  accepts on it, and never unlinks anything that is not a socket.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat
import termios
from functools import partial
from typing import TYPE_CHECKING, Any

from .._checkpoint import _enter, sleep
from ._abc import Network
from ._stream import TransportListener, TransportStream, TransportUDPSocket

if TYPE_CHECKING:  # pragma: no cover
    from .._hub import Hub
    from ._abc import Address, AddrInfo

_SOL_SOCKET = socket.SOL_SOCKET
_SO_ERROR = socket.SO_ERROR


def _family_of(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


_PEEK_FLAGS = socket.MSG_PEEK | socket.MSG_DONTWAIT


class SocketStream(TransportStream):
    """A stream over a connected, non-blocking stream socket."""

    #: Let ``recv`` skip the syscall while the driver saw no readiness since a short
    #: read (see ``greenrt._driver``). Only where a short read is known to mean "the
    #: receive queue was empty": TCP (an urgent-data mark also ends a read early, but
    #: raises ``EPOLLPRI``, which the driver treats as sticky readiness). Not Unix
    #: streams: with ``SO_PASSCRED`` a read stops at a change of writer with data left.
    _track_readiness = False

    def __init__(self, hub: Hub, sock: socket.socket, handle: Any = None) -> None:
        TransportStream.__init__(self, hub)
        self._sock = sock
        fd = sock.fileno()
        self._fd = fd
        driver = hub.driver
        self._driver = driver
        # (ignores: the primitives are instance attributes, bound socket methods)
        self._t_recv = sock.recv  # type: ignore[method-assign, assignment]
        self._t_send = sock.send  # type: ignore[method-assign, assignment]
        if handle is None:
            handle = _register(driver, fd)
        if handle is not None:
            self._t_wait_readable = handle.wait_readable  # type: ignore[method-assign]
            self._t_wait_writable = handle.wait_writable  # type: ignore[method-assign]
            if self._track_readiness and hasattr(handle, "rready"):
                self._rslot = handle
        else:
            self._t_wait_readable = partial(driver.wait_readable, fd)  # type: ignore[method-assign]
            self._t_wait_writable = partial(driver.wait_writable, fd)  # type: ignore[method-assign]
        self._peer: Address | None = None
        self._local: Address | None = None

    @property
    def socket(self) -> socket.socket:
        """The underlying socket (for options; do not read or write it directly)."""
        return self._sock

    def has_unread(self) -> bool:
        """See ``Stream.has_unread``. ``FIONREAD`` first (bytes queued: True, no
        exception path); with none queued, a ``recv(1, MSG_PEEK | MSG_DONTWAIT)`` tells
        EOF or a pending error from "empty" — skipped when the driver tracks read
        readiness and has seen none since the last short read (nothing, not even a
        FIN, has arrived that it knows of)."""
        if self.closed or self.broken:
            return True
        try:
            queued = fcntl.ioctl(self._fd, termios.FIONREAD, b"\0\0\0\0")
        except OSError:
            return True
        if queued != b"\0\0\0\0":
            return True
        rs = self._rslot
        if rs is not None and not rs.rready:
            return False
        try:
            self._sock.recv(1, _PEEK_FLAGS)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True  # a pending error (reset): not reusable
        return True  # one byte, or b"" (EOF): either way something is unread

    def _t_send_eof(self) -> None:
        self._sock.shutdown(socket.SHUT_WR)

    def _t_close(self) -> None:
        self._driver.notify_closing(self._fd)
        self._sock.close()

    @property
    def local_address(self) -> Address:
        if self._local is None:
            self._local = self._sock.getsockname()
        return self._local

    @property
    def peer_address(self) -> Address:
        if self._peer is None:
            self._peer = self._sock.getpeername()
        return self._peer

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        self._sock.setsockopt(level, option, value)

    def getsockopt(self, level: int, option: int, buflen: int = 0) -> int | bytes:
        if buflen:
            return self._sock.getsockopt(level, option, buflen)
        return self._sock.getsockopt(level, option)

    def abort(self) -> None:
        """Close with a TCP reset (``SO_LINGER`` 0) instead of an orderly FIN.
        Not a checkpoint; idempotent like ``close``."""
        if not self._closed:
            try:
                self._sock.setsockopt(_SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            except OSError:
                pass
        self.close()


class TCPStream(SocketStream):
    """A TCP connection (``TCP_NODELAY`` is on by default)."""

    _track_readiness = True


class UnixStream(SocketStream):
    """A Unix-domain stream connection."""


class SocketListener(TransportListener):
    """A listening socket; ``accept`` returns ``stream_class`` instances."""

    def __init__(self, hub: Hub, sock: socket.socket, stream_class: type[SocketStream], *,
                 unix_path: str | None = None, unix_ident: tuple[int, int] | None = None) -> None:
        TransportListener.__init__(self, hub)
        self._sock = sock
        self._fd = sock.fileno()
        self._driver = hub.driver
        self._stream_class = stream_class
        self._tcp = stream_class is TCPStream
        self._unix_path = unix_path
        self._unix_ident = unix_ident
        self._address = sock.getsockname()
        handle = _register(self._driver, self._fd)
        if handle is not None:
            self._t_wait_accept = handle.wait_readable  # type: ignore[method-assign]
        else:
            self._t_wait_accept = partial(  # type: ignore[method-assign]
                self._driver.wait_readable, self._fd)

    @property
    def socket(self) -> socket.socket:
        return self._sock

    @property
    def address(self) -> Address:
        return self._address

    def _t_accept(self) -> SocketStream:
        s, _ = self._sock.accept()
        try:
            s.setblocking(False)
            if self._tcp:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return self._stream_class(self._hub, s)
        except BaseException:
            s.close()
            raise

    def _t_close(self) -> None:
        self._driver.notify_closing(self._fd)
        self._sock.close()
        if self._unix_path is not None:
            try:
                st = os.lstat(self._unix_path)
                if (st.st_dev, st.st_ino) == self._unix_ident:
                    os.unlink(self._unix_path)
            except OSError:
                pass


class RealUDPSocket(TransportUDPSocket):
    def __init__(self, hub: Hub, sock: socket.socket) -> None:
        TransportUDPSocket.__init__(self, hub)
        self._sock = sock
        self._fd = sock.fileno()
        driver = self._driver = hub.driver
        self._t_sendto = sock.sendto  # type: ignore[method-assign, assignment]
        self._t_recvfrom = sock.recvfrom  # type: ignore[method-assign, assignment]
        self._t_wait_readable = partial(driver.wait_readable, self._fd)  # type: ignore[method-assign]
        self._t_wait_writable = partial(driver.wait_writable, self._fd)  # type: ignore[method-assign]
        self._local = sock.getsockname()

    @property
    def socket(self) -> socket.socket:
        return self._sock

    @property
    def local_address(self) -> Address:
        return self._local

    def _t_close(self) -> None:
        self._driver.notify_closing(self._fd)
        self._sock.close()


def _register(driver: Any, fd: int) -> Any:
    """The driver's persistent handle for ``fd`` (``None`` if the driver has none).
    Registering also resets any stale state a leaked fd with this number left."""
    reg = getattr(driver, "register_persistent", None)
    return reg(fd) if reg is not None else None


def _close_quietly(sock: socket.socket, driver: Any) -> None:
    try:
        driver.notify_closing(sock.fileno())
    except (OSError, ValueError):
        pass
    sock.close()


class RealNetwork(Network):
    """``hub.network`` of the real hub. See the module docstring."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._driver = hub.driver

    # -- streams ---------------------------------------------------------------------

    def open_tcp(self, host: str, port: int, *, local_address: Address | None = None) -> TCPStream:
        """Connect to numeric ``host``:``port``. A checkpoint; a cancelled or failed
        connect closes its socket."""
        hub = self._hub
        hub.check_nondeterminism("real socket: connect tcp")
        _enter(hub)
        sock = socket.socket(_family_of(host), socket.SOCK_STREAM)
        try:
            handle = _register(self._driver, sock.fileno())
            sock.setblocking(False)
            if local_address is not None:
                sock.bind(local_address)
            try:
                sock.connect((host, port))
            except BlockingIOError:
                # EINPROGRESS: the first wait arms the edge-triggered registration
                # now, in SYN_SENT, so it cannot see a stale "writable" state.
                if handle is not None:
                    handle.wait_writable()
                else:
                    self._driver.wait_writable(sock.fileno())
                err = sock.getsockopt(_SOL_SOCKET, _SO_ERROR)
                if err:
                    raise OSError(err, f"connect to {host}:{port}: {os.strerror(err)}") from None
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return TCPStream(hub, sock, handle)
        except BaseException:
            _close_quietly(sock, self._driver)
            raise

    def open_unix(self, path: str) -> UnixStream:
        """Connect to the Unix socket ``path``. A checkpoint; a cancelled or failed
        connect closes its socket."""
        hub = self._hub
        hub.check_nondeterminism("real socket: connect unix")
        _enter(hub)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            delay = 0.001
            while True:
                try:
                    sock.connect(path)
                    break
                except BlockingIOError:
                    # Unix sockets: EAGAIN means the backlog is full; nothing started.
                    sleep(delay)
                    delay = min(delay * 2, 0.05)
            return UnixStream(hub, sock)
        except BaseException:
            _close_quietly(sock, self._driver)
            raise

    # -- listeners -------------------------------------------------------------------

    def listen_tcp(self, host: str | None, port: int, *, backlog: int = 128) -> SocketListener:
        hub = self._hub
        hub.check_nondeterminism("real socket: listen tcp")
        if host in (None, ""):
            host = "0.0.0.0"
        family = _family_of(host)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(_SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((host, port))
            sock.listen(backlog)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return SocketListener(hub, sock, TCPStream)

    def listen_unix(self, path: str, *, backlog: int = 128, mode: int | None = None) -> SocketListener:
        hub = self._hub
        hub.check_nondeterminism("real socket: listen unix")
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        if st is not None:
            if not stat.S_ISSOCK(st.st_mode):
                raise FileExistsError(errno.EEXIST, "refusing to replace a file that is not a "
                                      "socket", path)
            if _unix_socket_alive(path):
                raise OSError(errno.EADDRINUSE, "a server is accepting on this socket", path)
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            st = os.lstat(path)
            ident = (st.st_dev, st.st_ino)
            if mode is not None:
                os.chmod(path, mode)  # before listen(): nobody can connect yet
            sock.listen(backlog)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return SocketListener(hub, sock, UnixStream, unix_path=path, unix_ident=ident)

    # -- datagrams -------------------------------------------------------------------

    def udp_socket(self, family: int, local_address: Address | None = None) -> RealUDPSocket:
        hub = self._hub
        hub.check_nondeterminism("real socket: udp")
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            if local_address is not None:
                sock.bind(local_address)
            else:
                sock.bind(("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0))
        except BaseException:
            sock.close()
            raise
        return RealUDPSocket(hub, sock)

    # -- names -----------------------------------------------------------------------

    def resolve(self, host: str, port: int, family: int = 0, type: int = 0) -> list[AddrInfo]:
        """``getaddrinfo`` in a worker thread (numeric hosts without one). A
        checkpoint; a cancelled lookup is abandoned (its thread finishes alone)."""
        hub = self._hub
        _enter(hub)
        if isinstance(host, str):
            host_enc = host
        else:
            host_enc = host.decode("ascii") if isinstance(host, bytes) else host
        try:
            return socket.getaddrinfo(host_enc, port, family, type, 0, socket.AI_NUMERICHOST)
        except socket.gaierror as e:
            if e.errno != socket.EAI_NONAME:
                raise
        hub.check_nondeterminism("real dns lookup")
        from ..threads import to_thread

        return to_thread(socket.getaddrinfo, host_enc, port, family, type, 0, 0,
                         abandon_on_cancel=True)


def _unix_socket_alive(path: str) -> bool:
    """Is somebody accepting on the Unix socket file ``path``? Never blocks."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.setblocking(False)
        s.connect(path)
    except BlockingIOError:
        return True  # backlog full: very much alive
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError:
        return True  # unknown: do not take it over
    else:
        return True
    finally:
        s.close()
