"""The cooperative ``socket.socket`` and resolver functions.

The design is gevent's: a subclass of the real ``socket.socket`` whose file
descriptor is always non-blocking at the OS level, while the timeout the user set
(``settimeout``/``setblocking``/``socket.setdefaulttimeout``) is kept in Python.
Every blocking method tries the syscall; on ``EAGAIN`` it waits for readiness and
tries again, honouring the user's timeout (``TimeoutError("timed out")`` as the
original raises). *How* it waits is decided per call:

* inside a greenrt task: through the hub's driver, so other tasks run meanwhile.
  The call is a checkpoint (a pending cancellation is delivered before the
  syscall; cancel scopes, deadlines and poll/cost budgets apply to the wait);
* anywhere else (another thread, before ``greenrt.run``, a thread-pool worker, the
  hub greenlet): with a real ``poll()`` on the thread, which is what the original
  blocking call does inside the kernel. The observable behaviour is the original's.

A socket whose user timeout is 0 (``setblocking(False)``) is passed straight
through: it raises ``BlockingIOError`` as before, and is not a checkpoint.

What a cancellation leaves behind (the ``greenrt.net`` rules):

* ``recv``/``recv_into``/``recvfrom``/``recvmsg``/``accept``: cancellation can only
  interrupt the wait, never a syscall that returned data, so nothing is lost and the
  socket stays usable;
* ``send``/``sendto``/``sendmsg``: same (a single send either wrote or not);
* ``sendall``: cancelled after part of the data was written, the socket is *broken*:
  it is shut down in both directions and every later I/O call raises
  ``ConnectionAbortedError``, since the peer holds half a message; cancelled before
  any byte was written, the socket is untouched;
* ``connect``: the connection attempt is abandoned; the socket is in an unknown
  state (as after a timeout) and should be closed;
* ``getaddrinfo``/``gethostbyname*``/``getnameinfo``: run in greenrt's thread pool
  with ``abandon_on_cancel``: a cancelled lookup returns at once, the thread's
  result is discarded.

``close()`` inside a hub wakes a task waiting on the socket with
``ClosedResourceError`` rather than leaving it parked on a dead fd.
"""

from __future__ import annotations

import _socket as _csock
import errno
import os
import socket as _stdsocket
import ssl as _ssl
from typing import Any

import greenrt
from greenrt import lowlevel as _ll

from ._common import (  # type: ignore[attr-defined]  # enter_checkpoint_on: greenrt._checkpoint._enter
    enter_checkpoint_on,
    monotonic,
    real_getaddrinfo,
    real_socket_class,
    task_hub,
    wait_fd_inside,
    wait_fd_outside,
)

_Real = real_socket_class
_SSLWantRead = _ssl.SSLWantReadError
_SSLWantWrite = _ssl.SSLWantWriteError
_real_setblocking = _Real.setblocking
_real_gettimeout = _Real.gettimeout
_real_settimeout = _Real.settimeout
_CONNECT_PENDING = (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK, errno.EALREADY)

#: Immediate completions in a row before a patched call yields anyway (fairness: a
#: task reading a fast socket in a loop must not starve the others), as in
#: ``greenrt.net``.
FAIR_STREAK = 64
_streak = 0


def _timeout_of(sock: Any) -> Any:
    try:
        return sock._grt_timeout
    except AttributeError:
        return _real_gettimeout(sock)


def _set_user_timeout(sock: Any, value: Any) -> None:
    if value is not None:
        value = float(value)
        if value != value or value < 0:  # NaN or negative: let the original raise
            _real_settimeout(sock, value)
    sock._grt_timeout = value
    if _real_gettimeout(sock) != 0.0:
        _real_setblocking(sock, False)


def io_call(sock: Any, fn: Any, args: Any, writing: bool) -> Any:
    """Run ``fn(sock, *args)`` (a non-blocking syscall), waiting for readiness on
    ``EAGAIN`` (``BlockingIOError``, or the SSL module's want-read/want-write) in the
    way the caller's context asks for. See the module docstring."""
    global _streak
    broken = getattr(sock, "_grt_broken", None)
    if broken is not None:
        raise ConnectionAbortedError(errno.ECONNABORTED, broken)
    timeout = _timeout_of(sock)
    if timeout == 0.0:
        return fn(sock, *args)
    hub = task_hub()
    if hub is not None:
        enter_checkpoint_on(hub)
        _streak += 1
        if _streak > FAIR_STREAK:
            _streak = 0
            _ll.yield_now()
    deadline = None if timeout is None else monotonic() + timeout
    while True:
        try:
            return fn(sock, *args)
        except BlockingIOError:
            direction = writing
        except _SSLWantRead:
            direction = False
        except _SSLWantWrite:
            direction = True
        _streak = 0
        remaining = None if deadline is None else deadline - monotonic()
        if remaining is not None and remaining <= 0:
            raise TimeoutError("timed out")
        fd = sock.fileno()
        if fd < 0:
            raise OSError(errno.EBADF, "Bad file descriptor")
        if hub is not None:
            try:
                ok = wait_fd_inside(hub, fd, direction, remaining)
            except greenrt.ClosedResourceError:
                raise OSError(errno.EBADF, "socket closed while waiting") from None
        else:
            ok = wait_fd_outside(fd, direction, remaining)
        if not ok:
            raise TimeoutError("timed out")


def _resolve_for_connect(sock: Any, address: Any) -> Any:
    """The C ``connect`` resolves host names itself (blocking); inside a task resolve
    them first through the patched, thread-pool ``getaddrinfo``."""
    if (sock.family in (_stdsocket.AF_INET, _stdsocket.AF_INET6) and isinstance(address, tuple)
            and len(address) >= 2 and isinstance(address[0], (str, bytes))):
        host = address[0]
        try:
            real_getaddrinfo(host, None, sock.family, 0, 0, _stdsocket.AI_NUMERICHOST)
            return address
        except (_stdsocket.gaierror, UnicodeError):
            pass
        infos = getaddrinfo(host, address[1], sock.family, sock.type, sock.proto)
        if not infos:
            raise _stdsocket.gaierror(_stdsocket.EAI_NONAME, "Name or service not known")
        return infos[0][4]
    return address


def connect_ex_impl(sock: Any, address: Any) -> int:
    """``connect_ex`` with the user's timeout; a checkpoint inside a task. Returns 0 or
    an errno (``EAGAIN`` on timeout, as the original does)."""
    broken = getattr(sock, "_grt_broken", None)
    if broken is not None:
        raise ConnectionAbortedError(errno.ECONNABORTED, broken)
    timeout = _timeout_of(sock)
    if timeout == 0.0:
        return _Real.connect_ex(sock, address)
    hub = task_hub()
    if hub is not None:
        _ll.enter_checkpoint()
        address = _resolve_for_connect(sock, address)
    err = _Real.connect_ex(sock, address)
    if err not in _CONNECT_PENDING:
        return err
    fd = sock.fileno()
    if hub is not None:
        try:
            ok = wait_fd_inside(hub, fd, True, timeout)
        except greenrt.ClosedResourceError:
            return errno.EBADF
    else:
        ok = wait_fd_outside(fd, True, timeout)
    if not ok:
        return errno.EAGAIN
    return sock.getsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_ERROR)  # type: ignore[no-any-return]


def connect_impl(sock: Any, address: Any) -> None:
    err = connect_ex_impl(sock, address)
    if err == 0:
        return
    if err == errno.EAGAIN and _timeout_of(sock):
        raise TimeoutError("timed out")
    raise OSError(err, os.strerror(err))


def sendall_impl(sock: Any, data: Any, flags: int = 0, send: Any = None) -> None:
    """``sendall`` with the user's timeout for the whole call; a checkpoint inside a
    task. There, a cancellation after a partial write breaks the socket (see the
    module docstring). ``send(view)`` is the one non-blocking write (the SSL socket
    passes its own)."""
    broken = getattr(sock, "_grt_broken", None)
    if broken is not None:
        raise ConnectionAbortedError(errno.ECONNABORTED, broken)
    timeout = _timeout_of(sock)
    if send is None:
        if timeout == 0.0:
            return _Real.sendall(sock, data, flags)

        def send(v: Any) -> Any:
            return _Real.send(sock, v, flags)
    view = memoryview(data)
    if view.itemsize != 1 or view.ndim != 1:
        view = view.cast("B")
    n = view.nbytes
    hub = task_hub() if timeout != 0.0 else None
    if hub is not None:
        enter_checkpoint_on(hub)
    deadline = None if timeout is None else monotonic() + timeout
    total = 0
    try:
        while total < n:
            try:
                total += send(view[total:])
                continue
            except BlockingIOError:
                direction = True
            except _SSLWantRead:
                direction = False
            except _SSLWantWrite:
                direction = True
            if timeout == 0.0:
                raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
            remaining = None if deadline is None else deadline - monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError("timed out")
            fd = sock.fileno()
            if hub is not None:
                try:
                    ok = wait_fd_inside(hub, fd, direction, remaining)
                except greenrt.ClosedResourceError:
                    raise OSError(errno.EBADF, "socket closed while waiting") from None
            else:
                ok = wait_fd_outside(fd, direction, remaining)
            if not ok:
                raise TimeoutError("timed out")
    except Exception:
        raise
    except BaseException:
        if 0 < total < n and hub is not None:
            break_socket(sock, f"sendall was interrupted after writing {total} of {n} bytes; "
                               "the socket is broken")
        raise


def break_socket(sock: Any, why: str) -> None:
    sock._grt_broken = why
    try:
        _Real.shutdown(sock, _stdsocket.SHUT_RDWR)
    except OSError:
        pass


def notify_close(sock: Any) -> None:
    hub = _ll.current_hub_or_none()
    if hub is not None and hub.driver is not None:
        fd = _Real.fileno(sock)
        if fd >= 0:
            hub.driver.notify_closing(fd)


# a plain int: ``socket.MSG_DONTWAIT`` is an IntFlag, and ``&`` on one costs an enum call
_MSG_DONTWAIT = int(getattr(_stdsocket, "MSG_DONTWAIT", 0))


def _dontwait(flags: Any) -> bool:
    return bool(flags) and isinstance(flags, int) and bool(int(flags) & _MSG_DONTWAIT)


class socket(_Real):
    """A ``socket.socket`` whose blocking calls are cooperative inside greenrt tasks.
    See the module docstring for the rules; the API is the original's."""

    __slots__ = ("_grt_timeout", "_grt_broken")

    def __init__(self, family: Any = -1, type: Any = -1, proto: Any = -1, fileno: Any = None) -> None:
        _Real.__init__(self, family, type, proto, fileno)
        self._grt_broken = None
        self._grt_timeout = _real_gettimeout(self)
        if self._grt_timeout != 0.0:
            _real_setblocking(self, False)

    # -- the timeout lives in Python; the fd is always non-blocking ---------------

    def settimeout(self, value: Any) -> None:
        _set_user_timeout(self, value)

    def gettimeout(self) -> Any:
        return self._grt_timeout

    def setblocking(self, flag: bool) -> None:
        # one real fcntl, as the original: an invalid fd raises OSError here
        _real_setblocking(self, False)
        _set_user_timeout(self, None if flag else 0.0)

    def getblocking(self) -> bool:
        return self._grt_timeout != 0.0

    @property
    def timeout(self) -> Any:
        return self._grt_timeout

    def detach(self) -> int:
        # whoever takes the fd over expects the blocking mode the user asked for
        if self._grt_timeout != 0.0 and _Real.fileno(self) >= 0:
            try:
                _real_setblocking(self, True)
            except OSError:  # a stale fd: detach it all the same, as the original
                pass
        return _Real.detach(self)

    def _real_close(self, _ss: Any = _csock.socket) -> None:
        notify_close(self)
        _ss.close(self)

    # -- blocking calls -------------------------------------------------------------

    def connect(self, address: Any) -> None:
        connect_impl(self, address)

    def connect_ex(self, address: Any) -> int:
        return connect_ex_impl(self, address)

    def _accept(self) -> Any:
        return io_call(self, _Real._accept, (), False)  # type: ignore[attr-defined]

    def accept(self) -> Any:
        fd, addr = self._accept()
        sock = socket(self.family, self.type, self.proto, fileno=fd)
        if _stdsocket.getdefaulttimeout() is None and self.gettimeout():
            sock.setblocking(True)
        return sock, addr

    # A call whose flags hold MSG_DONTWAIT asks for one non-blocking try: it goes
    # straight to the syscall (BlockingIOError as the original), not a checkpoint.

    def recv(self, *args: Any) -> Any:
        if len(args) > 1 and _dontwait(args[1]):
            return _Real.recv(self, *args)
        return io_call(self, _Real.recv, args, False)

    def recv_into(self, *args: Any, **kw: Any) -> Any:
        if kw or len(args) > 2:
            flags = kw.get("flags", args[2] if len(args) > 2 else 0)
            if _dontwait(flags):
                return _Real.recv_into(self, *args, **kw)
            return io_call(self, lambda s, *a: _Real.recv_into(s, *a, **kw), args, False)
        return io_call(self, _Real.recv_into, args, False)

    def recvfrom(self, *args: Any) -> Any:
        if len(args) > 1 and _dontwait(args[1]):
            return _Real.recvfrom(self, *args)
        return io_call(self, _Real.recvfrom, args, False)

    def recvfrom_into(self, *args: Any, **kw: Any) -> Any:
        if kw or len(args) > 2:
            flags = kw.get("flags", args[2] if len(args) > 2 else 0)
            if _dontwait(flags):
                return _Real.recvfrom_into(self, *args, **kw)
            return io_call(self, lambda s, *a: _Real.recvfrom_into(s, *a, **kw), args, False)
        return io_call(self, _Real.recvfrom_into, args, False)

    if hasattr(_Real, "recvmsg"):
        def recvmsg(self, *args: Any) -> Any:
            if len(args) > 2 and _dontwait(args[2]):
                return _Real.recvmsg(self, *args)
            return io_call(self, _Real.recvmsg, args, False)

        def recvmsg_into(self, *args: Any) -> Any:
            if len(args) > 2 and _dontwait(args[2]):
                return _Real.recvmsg_into(self, *args)
            return io_call(self, _Real.recvmsg_into, args, False)

        def sendmsg(self, *args: Any) -> Any:
            if len(args) > 2 and _dontwait(args[2]):
                return _Real.sendmsg(self, *args)
            return io_call(self, _Real.sendmsg, args, True)

    def send(self, *args: Any) -> Any:
        if len(args) > 1 and _dontwait(args[1]):
            return _Real.send(self, *args)
        return io_call(self, _Real.send, args, True)

    def sendto(self, *args: Any) -> Any:
        if len(args) > 2 and _dontwait(args[1]):
            return _Real.sendto(self, *args)
        return io_call(self, _Real.sendto, args, True)

    def sendall(self, data: Any, flags: int = 0) -> None:
        if flags and _dontwait(flags):
            return _Real.sendall(self, data, flags)
        sendall_impl(self, data, flags)


# -- the resolver -------------------------------------------------------------------


def getaddrinfo(host: Any, port: Any, family: Any = 0, type: Any = 0, proto: Any = 0, flags: Any = 0) -> Any:
    """``socket.getaddrinfo``; inside a task a checkpoint, and a lookup that needs
    the resolver runs in greenrt's thread pool (numeric hosts are parsed inline)."""
    if task_hub() is None:
        return real_getaddrinfo(host, port, family, type, proto, flags)
    _ll.enter_checkpoint()
    try:
        return real_getaddrinfo(host, port, family, type, proto, flags | _stdsocket.AI_NUMERICHOST)
    except (_stdsocket.gaierror, UnicodeError):
        pass
    return greenrt.to_thread(real_getaddrinfo, host, port, family, type, proto, flags,
                             abandon_on_cancel=True, name="getaddrinfo")


def _threaded(real: Any) -> Any:
    def wrapper(*args: Any) -> Any:
        try:
            if task_hub() is None:
                return real(*args)
            return greenrt.to_thread(real, *args, abandon_on_cancel=True, name=real.__name__)
        except BaseException:
            # the traceback keeps this frame: it must not keep the caller's arguments
            # alive (CPython's testRefCountGetNameInfo counts their references)
            del args
            raise

    wrapper.__name__ = real.__name__
    wrapper.__qualname__ = real.__name__
    wrapper.__doc__ = (f"``socket.{real.__name__}``; inside a task a checkpoint that "
                       "runs the lookup in greenrt's thread pool.")
    wrapper.__wrapped__ = real  # type: ignore[attr-defined]
    return wrapper


_real_getnameinfo = _csock.getnameinfo  # the C function: never the patched name
_threaded_getnameinfo = _threaded(_real_getnameinfo)
_NI_NUMERIC = _stdsocket.NI_NUMERICHOST | _stdsocket.NI_NUMERICSERV


def getnameinfo(sockaddr: Any, flags: Any) -> Any:
    """``socket.getnameinfo``; inside a task a checkpoint that runs a lookup needing
    the resolver in greenrt's thread pool (numeric flags, or arguments of the wrong
    type, are served inline: no thread, the original's errors)."""
    if (not isinstance(sockaddr, tuple) or not isinstance(flags, int)
            or flags & _NI_NUMERIC == _NI_NUMERIC or task_hub() is None):
        try:
            return _real_getnameinfo(sockaddr, flags)
        except BaseException:
            del sockaddr, flags  # see _threaded
            raise
    return _threaded_getnameinfo(sockaddr, flags)


RESOLVER_NAMES = ("gethostbyname", "gethostbyname_ex", "gethostbyaddr")
resolver_replacements = {name: _threaded(getattr(_csock, name)) for name in RESOLVER_NAMES}
resolver_replacements["getaddrinfo"] = getaddrinfo
resolver_replacements["getnameinfo"] = getnameinfo
