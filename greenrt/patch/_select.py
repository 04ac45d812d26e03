"""Cooperative ``select.select``, ``select.poll``, ``select.epoll`` and selectors.

One trick covers all of them: an epoll instance is itself a file descriptor that is
readable when any fd registered in it is ready. A blocking wait inside a task first
asks the real call with a zero timeout (which is also what makes regular files,
always ready and refused by epoll, work); if nothing is ready it parks on the epoll
fd through the hub's driver (one wait, however many fds), then asks again with a
zero timeout for the answer. The user's timeout is a ``move_on_after`` around the
park. Inside a task the call is a checkpoint; a cancelled wait leaves nothing
registered and consumes no readiness (the fds are only looked at, never read).
Outside a task every call is the original.

``select.poll`` and ``select.epoll`` are replaced by small wrappers around real
poll/epoll objects (neither type can be subclassed). The selectors that
``selectors.DefaultSelector`` may be are subclassed with the patched primitives, and
``subprocess``' private ``_PopenSelector`` (what ``communicate()`` waits with) is
pointed at the cooperative ``PollSelector``.
"""

from __future__ import annotations

import select as _select
import selectors as _selectors
import sys
from typing import Any

from greenrt import lowlevel as _ll

from ._common import real_epoll, real_poll, real_select, task_hub, wait_fd_inside

_EPOLLIN = _select.EPOLLIN
_EPOLLOUT = _select.EPOLLOUT
_EPOLLPRI = _select.EPOLLPRI


def _park_on_epoll(hub: Any, ep_fd: int, timeout: float | None) -> None:
    wait_fd_inside(hub, ep_fd, False, timeout)


def _fd_of(obj: Any) -> int:
    if isinstance(obj, int):
        return obj
    return obj.fileno()  # type: ignore[no-any-return]


def select(rlist: Any, wlist: Any, xlist: Any, timeout: Any = None) -> Any:
    """``select.select``; cooperative inside a task (see the module docstring)."""
    hub = task_hub()
    if hub is None:
        return real_select(rlist, wlist, xlist, timeout)
    if timeout is not None:
        timeout = float(timeout)
        if timeout < 0:
            raise ValueError("timeout must be non-negative")
    _ll.enter_checkpoint()
    r, w, x = real_select(rlist, wlist, xlist, 0)
    if r or w or x or timeout == 0:
        return r, w, x
    ep = real_epoll()
    try:
        masks: dict[int, int] = {}
        for objs, bit in ((rlist, _EPOLLIN), (wlist, _EPOLLOUT), (xlist, _EPOLLPRI)):
            for o in objs:
                fd = _fd_of(o)
                masks[fd] = masks.get(fd, 0) | bit
        for fd, m in masks.items():
            try:
                ep.register(fd, m)
            except PermissionError:
                pass  # regular files: always ready, already answered above
        _park_on_epoll(hub, ep.fileno(), timeout)
    finally:
        ep.close()
    return real_select(rlist, wlist, xlist, 0)


class epoll:
    """``select.epoll`` with a cooperative ``poll()`` inside tasks (a wrapper around a
    real epoll object: the type is final)."""

    __slots__ = ("_ep",)

    def __new__(cls, sizehint: int = -1, flags: int = 0, *, _ep: Any = None) -> Any:
        # greenrt's own I/O driver polls its epoll on the hub greenlet, where the
        # wrapper would only add a Python call to every epoll_ctl and poll: it gets
        # the real object
        if _ep is None and sys._getframe(1).f_globals.get("__name__") == "greenrt._driver":
            return real_epoll(sizehint, flags)
        return object.__new__(cls)

    def __init__(self, sizehint: int = -1, flags: int = 0, *, _ep: Any = None) -> None:
        self._ep = real_epoll(sizehint, flags) if _ep is None else _ep

    @classmethod
    def fromfd(cls, fd: int) -> epoll:
        return cls(_ep=real_epoll.fromfd(fd))

    def fileno(self) -> int:
        return self._ep.fileno()

    @property
    def closed(self) -> bool:
        return self._ep.closed

    def close(self) -> None:
        self._ep.close()

    def register(self, fd: Any, eventmask: Any = _EPOLLIN | _EPOLLOUT | _EPOLLPRI) -> None:
        self._ep.register(fd, eventmask)

    def modify(self, fd: Any, eventmask: Any) -> None:
        self._ep.modify(fd, eventmask)

    def unregister(self, fd: Any) -> None:
        self._ep.unregister(fd)

    def __enter__(self) -> Any:
        self._ep.__enter__()
        return self

    def __exit__(self, *exc: object) -> Any:
        return self._ep.__exit__(*exc)  # type: ignore[arg-type]

    def poll(self, timeout: Any = None, maxevents: Any = -1) -> Any:
        hub = task_hub()
        ep = self._ep
        if hub is None:
            return ep.poll(timeout, maxevents)
        if timeout is not None and timeout < 0:
            timeout = None
        _ll.enter_checkpoint()
        ready = ep.poll(0, maxevents)
        if ready or timeout == 0:
            return ready
        _park_on_epoll(hub, ep.fileno(), timeout)
        return ep.poll(0, maxevents)


class poll:
    """``select.poll`` with a cooperative ``poll()`` inside tasks (a wrapper: the real
    type is final)."""

    __slots__ = ("_p", "_fds")

    def __init__(self) -> None:
        self._p = real_poll()
        self._fds: dict[int, int] = {}

    def register(self, fd: Any, eventmask: Any = _select.POLLIN | _select.POLLPRI | _select.POLLOUT) -> None:
        fd = _fd_of(fd)
        self._p.register(fd, eventmask)
        self._fds[fd] = eventmask

    def modify(self, fd: Any, eventmask: Any) -> None:
        fd = _fd_of(fd)
        self._p.modify(fd, eventmask)
        self._fds[fd] = eventmask

    def unregister(self, fd: Any) -> None:
        fd = _fd_of(fd)
        self._p.unregister(fd)
        del self._fds[fd]

    def poll(self, timeout: Any = None) -> Any:
        hub = task_hub()
        if hub is None:
            return self._p.poll(timeout)
        if timeout is not None:
            timeout = float(timeout)
            timeout = None if timeout < 0 else timeout / 1000.0
        _ll.enter_checkpoint()
        ready = self._p.poll(0)
        if ready or timeout == 0:
            return ready
        ep = real_epoll()
        try:
            for fd, m in self._fds.items():
                em = ((_EPOLLIN if m & _select.POLLIN else 0) | (_EPOLLOUT if m & _select.POLLOUT else 0)
                      | (_EPOLLPRI if m & _select.POLLPRI else 0))
                try:
                    ep.register(fd, em)
                except (PermissionError, OSError):
                    pass
            _park_on_epoll(hub, ep.fileno(), timeout)
        finally:
            ep.close()
        return self._p.poll(0)


# -- selectors ---------------------------------------------------------------------


class SelectSelector(_selectors.SelectSelector):
    """``selectors.SelectSelector`` over the cooperative ``select``."""

    def _select(self, r: Any, w: Any, _: Any, timeout: Any = None) -> Any:
        r, w, x = select(r, w, w, timeout)
        return r, w + x, []


class PollSelector(_selectors.PollSelector):
    """``selectors.PollSelector`` over the cooperative ``poll``."""

    _selector_cls = poll


class EpollSelector(_selectors.EpollSelector):
    """``selectors.EpollSelector`` over the cooperative ``epoll``."""

    _selector_cls = epoll


DefaultSelector = EpollSelector
