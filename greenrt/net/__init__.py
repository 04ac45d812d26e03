"""greenrt.net: streams, listeners, servers and datagrams.

Blocking-style networking on top of the hub's network (``current_hub().network``):
real non-blocking sockets on the real hub, the simulated network under the lab. Every
function here goes through that seam, so protocol code written against these
functions and the :class:`Stream` interface runs unchanged on both.

Quick tour::

    from greenrt import net

    s = net.open_tcp("example.com", 80, timeout=10)   # DNS + happy eyeballs
    s.send_all(b"GET / HTTP/1.0\\r\\n\\r\\n")
    data = s.recv(65536)                              # b"" at EOF
    s.close()

    net.serve_tcp(handler, "127.0.0.1", 8080)         # one task per connection

Cancellation (every blocking call is a checkpoint): a cancelled ``recv`` loses no
data; a ``send_all`` cancelled after writing part of its data leaves the stream
broken (``BrokenStreamError`` on further use); a cancelled connect closes its socket.
"""

from __future__ import annotations

import socket as _socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._hub import current_hub
from ._abc import (
    Address,
    BrokenStreamError,
    BusyResourceError,
    ClosedResourceError,
    Listener,
    Network,
    Stream,
    StreamError,
    UDPSocket,
)
from ._connect import is_numeric_host, open_tcp
from ._serve import Server, serve_listeners
from ._stream import TransportListener, TransportStream, TransportUDPSocket

if TYPE_CHECKING:  # pragma: no cover
    from ._abc import AddrInfo

AF_INET = _socket.AF_INET
AF_INET6 = _socket.AF_INET6


def current_network() -> Network:
    """The network of the running hub."""
    return current_hub().network


def open_unix(path: str) -> Stream:
    """Connect to the Unix socket at ``path``. A checkpoint; a cancelled connect
    closes its socket."""
    return current_hub().network.open_unix(path)


def _numeric(host: str | None, port: int) -> str | None:
    if host in (None, "") or is_numeric_host(host):
        return host
    infos = current_hub().network.resolve(host, port, 0, _socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"no addresses for {host!r}")
    return infos[0][4][0]  # type: ignore[no-any-return]  # a sockaddr's host


def listen_tcp(host: str | None, port: int, *, backlog: int = 128) -> Listener:
    """Listen on ``host``:``port`` (``None``/``""``: every IPv4 interface; a name is
    resolved and its first address used; port 0 picks a free port, see
    ``Listener.address``). A checkpoint only if a name must be resolved."""
    return current_hub().network.listen_tcp(_numeric(host, port), port, backlog=backlog)


def listen_unix(path: str, *, backlog: int = 128, mode: int | None = None) -> Listener:
    """Listen on the Unix socket ``path``. A stale socket file (nobody accepting) is
    replaced; a live one raises ``OSError(EADDRINUSE)``; a file that is not a socket
    is never removed (``FileExistsError``). ``mode`` sets the socket file's
    permissions before anyone can connect. Closing the listener removes the file."""
    return current_hub().network.listen_unix(path, backlog=backlog, mode=mode)


def udp_socket(family: int = AF_INET, local_address: Address | None = None) -> UDPSocket:
    """A UDP socket bound to ``local_address`` (numeric) or an ephemeral port."""
    return current_hub().network.udp_socket(family, local_address)


def resolve(host: str, port: int, family: int = 0, type: int = 0) -> list[AddrInfo]:
    """``getaddrinfo``-style resolution through the hub's network. A checkpoint;
    respects the caller's deadline; numeric hosts are never looked up."""
    return current_hub().network.resolve(host, port, family, type)


def serve_tcp(handler: Callable[[Stream], object], host: str | None, port: int, *,
              backlog: int = 128, max_connections: int = 1024, shutdown_budget: float = 5.0,
              on_ready: Callable[[Server], object] | None = None, **kw: Any) -> None:
    """Listen on ``host``:``port`` and run ``handler(stream)`` in its own task for every
    connection, until ``Server.shutdown()`` or cancellation, then shut down
    gracefully (stop accepting, cancel handlers with reason ``shutdown``, close what
    is left after ``shutdown_budget`` seconds). ``on_ready(server)`` receives the
    :class:`Server` (its ``addresses``, ``shutdown()``, ``statistics()``). At most
    ``max_connections`` handlers run at once; ``backlog`` bounds the kernel's queue.
    A checkpoint; blocks until the server has shut down."""
    listener = listen_tcp(host, port, backlog=backlog)
    serve_listeners(handler, [listener], max_connections=max_connections,
                    shutdown_budget=shutdown_budget, on_ready=on_ready, name="serve_tcp", **kw)


def serve_unix(handler: Callable[[Stream], object], path: str, *, backlog: int = 128,
               mode: int | None = None, max_connections: int = 1024,
               shutdown_budget: float = 5.0, on_ready: Callable[[Server], object] | None = None,
               **kw: Any) -> None:
    """Like :func:`serve_tcp` on the Unix socket ``path`` (see :func:`listen_unix`)."""
    listener = listen_unix(path, backlog=backlog, mode=mode)
    serve_listeners(handler, [listener], max_connections=max_connections,
                    shutdown_budget=shutdown_budget, on_ready=on_ready, name="serve_unix", **kw)


def __getattr__(name: str) -> Any:
    # The real stream classes live in _real (which imports socket machinery); expose
    # them lazily so importing greenrt.net stays cheap and network-neutral.
    if name in ("TCPStream", "UnixStream", "SocketStream", "SocketListener", "RealNetwork"):
        from . import _real

        return getattr(_real, name)
    raise AttributeError(f"module 'greenrt.net' has no attribute {name!r}")


__all__ = [
    "AF_INET", "AF_INET6", "Address", "BrokenStreamError", "BusyResourceError",
    "ClosedResourceError", "Listener", "Network", "RealNetwork", "Server", "SocketListener",
    "SocketStream", "Stream", "StreamError", "TCPStream", "TransportListener",
    "TransportStream", "TransportUDPSocket", "UDPSocket", "UnixStream", "current_network",
    "listen_tcp", "listen_unix", "open_tcp", "open_unix", "resolve", "serve_listeners",
    "serve_tcp", "serve_unix", "udp_socket",
]
