"""The cooperative ``ssl.SSLSocket``, installed as ``ssl.SSLContext.sslsocket_class``
so that ``SSLContext.wrap_socket`` (and ``ssl.wrap_socket``, and every library that
goes through them) builds it.

Like the cooperative ``socket``, its fd is non-blocking at the OS level and the
user's timeout lives in Python; the C ``_ssl`` layer then reports
``SSLWantReadError``/``SSLWantWriteError`` and the loop in ``_socket.io_call`` waits
for the direction OpenSSL asked for (a TLS read may need to write, a write may need
to read). Inside a task the waits go through the hub and the calls are checkpoints;
elsewhere they are real ``poll()`` waits: the original behaviour.

Cancellation: ``read``/``recv*`` lose nothing (the record layer keeps what it has
decrypted); ``do_handshake`` cancelled leaves the TLS session half-negotiated: close
the socket; ``sendall`` cancelled after a partial write breaks the socket as the
plain one does; ``unwrap`` cancelled leaves the socket unusable.
"""

from __future__ import annotations

import ssl as _ssl
from typing import Any

from ._socket import (
    _Real,
    _set_user_timeout,
    _timeout_of,
    connect_ex_impl,
    connect_impl,
    io_call,
    notify_close,
    sendall_impl,
)

real_sslsocket_class = _ssl.SSLContext.sslsocket_class
_Base = _ssl.SSLSocket


class SSLSocket(_Base):
    """``ssl.SSLSocket`` with cooperative blocking calls (see the module docstring)."""

    # -- the timeout lives in Python ------------------------------------------------

    def settimeout(self, value: Any) -> None:
        _set_user_timeout(self, value)

    def gettimeout(self) -> Any:
        return _timeout_of(self)

    def setblocking(self, flag: bool) -> None:
        _set_user_timeout(self, None if flag else 0.0)

    def getblocking(self) -> bool:
        return _timeout_of(self) != 0.0  # type: ignore[no-any-return]

    @property
    def timeout(self) -> Any:
        return _timeout_of(self)

    def detach(self) -> int:
        if _timeout_of(self) != 0.0 and _Real.fileno(self) >= 0:
            _Real.setblocking(self, True)
        return _Base.detach(self)

    def _real_close(self) -> None:
        notify_close(self)
        _Base._real_close(self)  # type: ignore[attr-defined]

    # -- TLS ------------------------------------------------------------------------

    def do_handshake(self, block: bool = False) -> None:
        self._check_connected()  # type: ignore[attr-defined]
        timeout = _timeout_of(self)
        try:
            if timeout == 0.0 and block:
                self._grt_timeout = None
            io_call(self, _do_handshake_raw, (), False)
        finally:
            self._grt_timeout = timeout

    # ``read``/``write`` take the TLS object once, before waiting, as the original's
    # one C call does: a ``shutdown()`` from another thread or task while this one
    # waits (it sets ``_sslobj`` to None and shuts the fd down) then ends the wait
    # with the EOF the original sees, not with "Read on closed or unwrapped SSL
    # socket" (urllib3's ``HTTPResponse.shutdown`` relies on this).

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        self._checkClosed()  # type: ignore[attr-defined]
        sslobj = self._sslobj
        if sslobj is None:
            raise ValueError("Read on closed or unwrapped SSL socket.")
        return io_call(self, _read_raw, (sslobj, len, buffer), False)

    def write(self, data: Any) -> int:
        self._checkClosed()  # type: ignore[attr-defined]
        sslobj = self._sslobj
        if sslobj is None:
            raise ValueError("Write on closed or unwrapped SSL socket.")
        return io_call(self, _write_raw, (sslobj, data), True)  # type: ignore[no-any-return]

    def recv(self, buflen: int = 1024, flags: int = 0) -> Any:
        if self._sslobj is None:
            return io_call(self, _Real.recv, (buflen, flags), False)
        return _Base.recv(self, buflen, flags)  # -> self.read: cooperative

    def recv_into(self, buffer: Any, nbytes: Any = None, flags: int = 0) -> Any:
        if self._sslobj is None:
            args = (buffer,) if nbytes is None else (buffer, nbytes, flags)
            return io_call(self, _Real.recv_into, args, False)
        return _Base.recv_into(self, buffer, nbytes, flags)

    def recvfrom(self, *args: Any) -> Any:
        if self._sslobj is None:
            return io_call(self, _Real.recvfrom, args, False)
        return _Base.recvfrom(self, *args)

    def recvfrom_into(self, *args: Any) -> Any:
        if self._sslobj is None:
            return io_call(self, _Real.recvfrom_into, args, False)
        return _Base.recvfrom_into(self, *args)

    def send(self, data: Any, flags: int = 0) -> int:
        if self._sslobj is None:
            return io_call(self, _Real.send, (data, flags), True)  # type: ignore[no-any-return]
        return io_call(self, _Base.send, (data, flags), True)  # type: ignore[no-any-return]

    def sendall(self, data: Any, flags: int = 0) -> None:
        if self._sslobj is None:
            return sendall_impl(self, data, flags, lambda v: _Real.send(self, v, flags))
        if flags != 0:
            raise ValueError(f"non-zero flags not allowed in calls to sendall() on {self.__class__}")
        return sendall_impl(self, data, 0, lambda v: _Base.send(self, v))

    def _accept(self) -> Any:
        return io_call(self, _Real._accept, (), False)  # type: ignore[attr-defined]

    def _real_connect(self, addr: Any, connect_ex: bool) -> Any:
        if self.server_side:
            raise ValueError("can't connect in server-side mode")
        if self._connected or self._sslobj is not None:  # type: ignore[has-type]
            raise ValueError("attempt to connect already-connected SSLSocket!")
        self._sslobj = self.context._wrap_socket(  # type: ignore[attr-defined]
            self, False, self.server_hostname, owner=self, session=self._session)  # type: ignore[attr-defined]
        try:
            if connect_ex:
                rc = connect_ex_impl(self, addr)
            else:
                rc = None
                connect_impl(self, addr)
            if not rc:
                self._connected = True
                if self.do_handshake_on_connect:  # type: ignore[attr-defined]
                    self.do_handshake()
            return rc
        except (OSError, ValueError):
            self._sslobj = None
            raise

    def unwrap(self) -> Any:
        if self._sslobj is None:
            raise ValueError(f"No SSL wrapper around {self}")
        s = io_call(self, _unwrap_raw, (), False)
        self._sslobj = None
        return s


def _read_raw(sock: Any, sslobj: Any, len: Any, buffer: Any) -> Any:
    """``ssl.SSLSocket.read`` on a given TLS object (one non-blocking try)."""
    try:
        if buffer is not None:
            return sslobj.read(len, buffer)
        return sslobj.read(len)
    except _ssl.SSLError as x:
        if x.args[0] == _ssl.SSL_ERROR_EOF and sock.suppress_ragged_eofs:
            return 0 if buffer is not None else b""
        raise


def _write_raw(sock: Any, sslobj: Any, data: Any) -> Any:
    return sslobj.write(data)


def _do_handshake_raw(sock: Any) -> Any:
    sock._sslobj.do_handshake()


def _unwrap_raw(sock: Any) -> Any:
    return sock._sslobj.shutdown()
