"""The real I/O driver: readiness notification through ``selectors`` (epoll on Linux).

Job: park tasks until a file descriptor is readable or writable, and wake the hub
from other threads and signal handlers.

* ``wait_readable(fd)`` / ``wait_writable(fd)`` park the calling task. At most one
  task may wait for each direction of one fd at a time (a second raises
  ``BusyResourceError``): two readers of one socket would race for its bytes.
* Registrations are kept while a task waits and removed when it wakes or is
  cancelled, so a closed fd never stays in the epoll set after its waiter is gone.
  ``notify_closing(fd)`` wakes any waiter with ``ClosedResourceError`` before the
  owner closes the fd.
* Wake-ups: one socket pair. Other threads write a byte (``wakeup()``); signal
  handlers write through ``signal.set_wakeup_fd``. The hub drains it on every poll.

The lab replaces this driver with its simulated network; protocol code never talks to
the driver directly, only to greenrt streams.
"""

from __future__ import annotations

import selectors
import socket

from ._exceptions import GreenrtError

_R = selectors.EVENT_READ
_W = selectors.EVENT_WRITE


class BusyResourceError(GreenrtError):
    """Another task is already waiting for the same direction of this resource."""


class ClosedResourceError(GreenrtError):
    """The resource was closed (possibly while this task was waiting on it)."""


class SelectorDriver:
    def __init__(self, hub):
        self._hub = hub
        self._sel = selectors.DefaultSelector()
        self._waiters: dict[int, list] = {}  # fd -> [reader_task, writer_task]
        self.waiting = 0
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, _R, None)
        self._closed = False

    @property
    def wakeup_fd(self) -> int:
        return self._wake_w.fileno()

    def wakeup(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # the pipe is full or closed: the hub will wake anyway

    def _update(self, fd: int, slot: list) -> None:
        mask = (_R if slot[0] is not None else 0) | (_W if slot[1] is not None else 0)
        if mask == 0:
            del self._waiters[fd]
            try:
                self._sel.unregister(fd)
            except (KeyError, ValueError, OSError):
                pass
            return
        try:
            self._sel.modify(fd, mask, None)
        except KeyError:
            self._sel.register(fd, mask, None)

    def _wait(self, fd, direction: int) -> None:
        from ._checkpoint import park

        if not isinstance(fd, int):
            fd = fd.fileno()
        hub = self._hub
        task = hub.current
        slot = self._waiters.get(fd)
        if slot is None:
            slot = self._waiters[fd] = [None, None]
        if slot[direction] is not None:
            raise BusyResourceError(
                f"another task is already waiting to {'read' if direction == 0 else 'write'} fd {fd}")
        slot[direction] = task
        self.waiting += 1
        try:
            self._update(fd, slot)
        except BaseException:
            slot[direction] = None
            self.waiting -= 1
            if slot[0] is None and slot[1] is None:
                self._waiters.pop(fd, None)
            raise

        def abort():
            if slot[direction] is task:
                slot[direction] = None
                self.waiting -= 1
                self._update(fd, slot)
            return True

        park(abort)

    def wait_readable(self, fd) -> None:
        """Park until ``fd`` is readable. Not a checkpoint by itself (callers check first)."""
        self._wait(fd, 0)

    def wait_writable(self, fd) -> None:
        """Park until ``fd`` is writable. Not a checkpoint by itself."""
        self._wait(fd, 1)

    def notify_closing(self, fd) -> None:
        """Wake every task waiting on ``fd`` with ``ClosedResourceError``."""
        from ._hub import _Raise

        if not isinstance(fd, int):
            fd = fd.fileno()
        slot = self._waiters.get(fd)
        if slot is None:
            return
        for i in (0, 1):
            t = slot[i]
            if t is not None:
                slot[i] = None
                self.waiting -= 1
                self._hub.reschedule(t, _Raise(ClosedResourceError(f"fd {fd} was closed")))
        self._update(fd, slot)

    def poll(self, timeout: float | None) -> None:
        try:
            events = self._sel.select(timeout)
        except InterruptedError:  # pragma: no cover - PEP 475 retries, but be safe
            return
        hub = self._hub
        for key, mask in events:
            fd = key.fd
            if key.fileobj is self._wake_r:
                try:
                    while self._wake_r.recv(4096):
                        pass
                except (BlockingIOError, OSError):
                    pass
                continue
            slot = self._waiters.get(fd)
            if slot is None:
                continue
            woke = False
            if mask & _R and slot[0] is not None:
                t, slot[0] = slot[0], None
                self.waiting -= 1
                hub.reschedule(t, None)
                woke = True
            if mask & _W and slot[1] is not None:
                t, slot[1] = slot[1], None
                self.waiting -= 1
                hub.reschedule(t, None)
                woke = True
            if woke:
                self._update(fd, slot)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()
