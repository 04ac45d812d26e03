"""The real I/O driver: readiness notification through ``select.epoll``.

Job: park tasks until a file descriptor is readable or writable, and wake the hub
from other threads and signal handlers.

* ``wait_readable(fd)`` / ``wait_writable(fd)`` park the calling task. At most one
  task may wait for each direction of one fd at a time (a second raises
  ``BusyResourceError``): two readers of one socket would race for its bytes.
* Two registration modes per fd:

  - *per wait* (the default, level-triggered): the fd is in the epoll set only while
    a task waits on it and is removed when the waiter wakes or is cancelled, so a
    closed fd never stays in the epoll set after its waiter is gone. Safe for any fd.
  - *persistent* (``register_persistent(fd)``, edge-triggered): the fd is added once,
    at its first wait, for both directions, and stays until ``notify_closing(fd)``.
    The hot path (syscall -> ``EAGAIN`` -> wait -> syscall) then costs no
    ``epoll_ctl`` at all. The owner promises two things: it waits only after a
    syscall reported ``EAGAIN`` (the edge-triggered contract: an edge is only
    guaranteed for readiness that appears after that), and it calls
    ``notify_closing(fd)`` before closing the fd (which removes the registration;
    a stale registration would otherwise hide a reused fd number from epoll).
    ``register_persistent`` on an fd number the driver already knows resets it, so
    an owner that forgot ``notify_closing`` cannot poison the next user of the number.

    A persistent handle also tracks *read readiness* (``rready``): every harvested
    read event sets it, a hang-up or error sets it for good. An owner may clear it
    (from 1 to 0) after ``EAGAIN`` or after a read that returned less than it asked
    for (the receive queue was empty then, so any later data raises a new edge), and
    while it is 0 may wait *without* trying the syscall first. In a request/response
    exchange that saves the ``recv`` that would only return ``EAGAIN`` (about 1 us of
    a 7 us round trip). The hang-up state is sticky because a FIN or a reset that was
    harvested before that short read raises no further edge: clearing it would
    leave ``recv`` waiting for an EOF it will never hear about. An aborted read wait
    (cancellation) resets 0 to 1: the hub polls epoll only while some task waits, so
    readiness may have arrived unharvested while the owner was not parked.

* ``notify_closing(fd)`` wakes any waiter with ``ClosedResourceError`` and forgets
  the fd; owners call it before closing.
* Wake-ups: one socket pair. Other threads write a byte (``wakeup()``); signal
  handlers write through ``signal.set_wakeup_fd``. The hub drains it on every poll.

The lab replaces this driver with its simulated network; protocol code never talks to
the driver directly, only to greenrt streams.
"""

from __future__ import annotations

import select
import socket
from heapq import heappop as _heappop
from heapq import heappush as _heappush
from typing import TYPE_CHECKING, Any

from ._checkpoint import _park_slow, _raise_resume, park
from ._exceptions import GreenrtError, InvariantViolation
from ._hub import _CANCEL, _Raise

if TYPE_CHECKING:  # pragma: no cover
    from _typeshed import FileDescriptorLike

    from ._hub import Hub

_IN = select.EPOLLIN
_OUT = select.EPOLLOUT
_ET = select.EPOLLET
_RDHUP = getattr(select, "EPOLLRDHUP", 0x2000)
_ERR = select.EPOLLERR | select.EPOLLHUP
_READ_EVENTS = _IN | _RDHUP | _ERR | select.EPOLLPRI
_PRI = select.EPOLLPRI
# Read readiness that raises no second edge once harvested (EOF, errors) or that
# ends a read early with data left (TCP urgent data): sticky, see ``_Slot.rready``.
_HANGUP = _RDHUP | _ERR | _PRI
_WRITE_EVENTS = _OUT | _ERR
_PERSISTENT_MASK = _IN | _OUT | _RDHUP | _PRI | _ET


class BusyResourceError(GreenrtError):
    """Another task is already waiting for the same direction of this resource."""


class ClosedResourceError(GreenrtError):
    """The resource was closed (possibly while this task was waiting on it)."""


class _Slot:
    """Waiters and registration state of one fd. For persistent registrations it is
    also the handle returned by ``register_persistent``: its ``wait_readable`` /
    ``wait_writable`` are the hot-path waits (no dict lookup, no closure per wait)."""

    __slots__ = ("reader", "writer", "mask", "persistent", "fd", "driver", "_abort_r",
                 "_abort_w", "rready")

    reader: Any  # the waiting Task, or None
    writer: Any

    def __init__(self, persistent: bool, fd: int = -1, driver: Any = None) -> None:
        self.reader = None
        self.writer = None
        # Read readiness as far as the driver knows (persistent handles): 1 = may be
        # readable (the initial state: nothing is known before the first wait arms
        # the registration), 0 = the owner saw EAGAIN or a short read and no event
        # came since, 2 = hang-up/error/urgent data seen (sticky: EOF and errors raise
        # no second edge, and a TCP read stops early at an urgent mark, so an owner
        # must never skip a read after that).
        self.rready = 1
        self.mask = 0  # what is registered with epoll now (0: not registered)
        self.persistent = persistent
        self.fd = fd
        self.driver = driver
        if persistent:
            self._abort_r = self._abort_read
            self._abort_w = self._abort_write

    def _abort_read(self) -> bool:
        if self.reader is not None:
            self.reader = None
            self.driver.waiting -= 1
        # The wait ended without an event, and the hub harvests events only while
        # somebody waits: readiness may have come and gone unrecorded, so the next
        # read must try the syscall (else cancel/retry loops can livelock).
        if self.rready == 0:
            self.rready = 1
        return True

    def _abort_write(self) -> bool:
        if self.writer is not None:
            self.writer = None
            self.driver.waiting -= 1
        return True

    def _arm(self) -> None:
        ep = self.driver._ep
        try:
            ep.register(self.fd, _PERSISTENT_MASK)
        except FileExistsError:  # a dup of a closed fd kept it registered
            ep.modify(self.fd, _PERSISTENT_MASK)
        self.mask = _PERSISTENT_MASK

    def wait_readable(self) -> None:
        """Park until the fd may be readable (persistent handles only; call only after
        ``EAGAIN``). Not a checkpoint."""
        if self.reader is not None:
            raise BusyResourceError(f"another task is already waiting to read fd {self.fd}")
        drv = self.driver
        if not self.mask:
            if drv._slots.get(self.fd) is not self:
                raise ClosedResourceError(f"fd {self.fd} was closed")
            self._arm()
        hub = drv._hub
        task = self.reader = hub.current
        drv.waiting += 1
        abort = self._abort_r
        what = self
        # fastpath park: copied from greenrt/_fastpath.py (python -m greenrt._fastpath --write)
        if task._pending:
            r = _park_slow(abort, what)  # may have to abort at once: the general path
        else:
            task._abort_fn = abort
            task.waiting_for = what
            nxt = None
            if hub._plain and not hub._cancel_lane:
                cd = hub._poll_countdown - 1
                if cd > 0:
                    timed = hub._timed
                    ready = hub._ready
                    if timed:
                        if hub._timed_streak < hub.streak_limit or not ready:
                            nxt = timed[0][3]
                            if nxt._glet is None:
                                nxt = None
                            else:
                                _heappop(timed)
                                hub._cancel_streak = 0
                                hub._timed_streak += 1
                    elif ready and ready[0]._glet is not None:
                        nxt = ready.popleft()
                        hub._cancel_streak = hub._timed_streak = 0
                    if nxt is not None:
                        hub._poll_countdown = cd
                        nxt._queued = False
                        hub.current = nxt
                        nxt._glet.switch()
            if nxt is None:
                hub._handoff()
            r = task._resume
            if r is not None:
                task._resume = None
                if r is _CANCEL or type(r) is _Raise:
                    _raise_resume(task, r)
        # end fastpath park

    def wait_writable(self) -> None:
        """Park until the fd may be writable (see ``wait_readable``)."""
        if self.writer is not None:
            raise BusyResourceError(f"another task is already waiting to write fd {self.fd}")
        drv = self.driver
        if not self.mask:
            if drv._slots.get(self.fd) is not self:
                raise ClosedResourceError(f"fd {self.fd} was closed")
            self._arm()
        hub = drv._hub
        task = self.writer = hub.current
        drv.waiting += 1
        abort = self._abort_w
        what = self
        # fastpath park: copied from greenrt/_fastpath.py (python -m greenrt._fastpath --write)
        if task._pending:
            r = _park_slow(abort, what)  # may have to abort at once: the general path
        else:
            task._abort_fn = abort
            task.waiting_for = what
            nxt = None
            if hub._plain and not hub._cancel_lane:
                cd = hub._poll_countdown - 1
                if cd > 0:
                    timed = hub._timed
                    ready = hub._ready
                    if timed:
                        if hub._timed_streak < hub.streak_limit or not ready:
                            nxt = timed[0][3]
                            if nxt._glet is None:
                                nxt = None
                            else:
                                _heappop(timed)
                                hub._cancel_streak = 0
                                hub._timed_streak += 1
                    elif ready and ready[0]._glet is not None:
                        nxt = ready.popleft()
                        hub._cancel_streak = hub._timed_streak = 0
                    if nxt is not None:
                        hub._poll_countdown = cd
                        nxt._queued = False
                        hub.current = nxt
                        nxt._glet.switch()
            if nxt is None:
                hub._handoff()
            r = task._resume
            if r is not None:
                task._resume = None
                if r is _CANCEL or type(r) is _Raise:
                    _raise_resume(task, r)
        # end fastpath park


class EpollDriver:
    """See the module docstring."""

    maxevents = 1024

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._ep = select.epoll()
        self._slots: dict[int, _Slot] = {}
        self.waiting = 0
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake_rfd = self._wake_r.fileno()
        self._ep.register(self._wake_rfd, _IN)
        self._closed = False

    @property
    def wakeup_fd(self) -> int:
        return self._wake_w.fileno()

    def wakeup(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # the pipe is full or closed: the hub will wake anyway

    # -- registration -------------------------------------------------------------

    def register_persistent(self, fd: FileDescriptorLike) -> _Slot:
        """Opt ``fd`` into persistent edge-triggered registration (see the module
        docstring for the owner's two promises) and return its handle, whose
        ``wait_readable()``/``wait_writable()`` are the fast waits. Not a checkpoint."""
        if not isinstance(fd, int):
            fd = fd.fileno()
        old = self._slots.get(fd)
        if old is not None:
            if old.reader is not None or old.writer is not None:
                raise BusyResourceError(f"fd {fd} has waiters; it cannot be re-registered")
            if old.mask:
                old.mask = 0
                try:
                    self._ep.unregister(fd)
                except OSError:
                    pass
        slot = self._slots[fd] = _Slot(True, fd, self)
        return slot

    def _update(self, fd: int, slot: _Slot) -> None:
        """Per-wait mode: make the epoll registration match the waiters."""
        want = (_IN if slot.reader is not None else 0) | (_OUT if slot.writer is not None else 0)
        if want == slot.mask:
            return
        ep = self._ep
        if want == 0:
            del self._slots[fd]
            slot.mask = 0
            try:
                ep.unregister(fd)
            except (OSError, ValueError):
                pass
            return
        if slot.mask == 0:
            try:
                ep.register(fd, want)
            except FileExistsError:
                ep.modify(fd, want)
        else:
            ep.modify(fd, want)
        slot.mask = want

    def _wait(self, fd: FileDescriptorLike, writing: bool) -> None:
        if type(fd) is not int:
            fd = fd.fileno()  # type: ignore[union-attr]  # not an int
        task = self._hub.current
        slot = self._slots.get(fd)
        if slot is None:
            slot = self._slots[fd] = _Slot(False)
        elif slot.persistent:
            stale = False
            if slot.mask and slot.reader is None and slot.writer is None:
                # A generic wait on a persistent fd: check that epoll still knows it
                # (the owner may have closed it without notify_closing, and this fd
                # number now belongs to someone else). MOD also re-arms the edge.
                try:
                    self._ep.modify(fd, _PERSISTENT_MASK)
                except FileNotFoundError:
                    stale = True
            if not stale:
                if writing:
                    slot.wait_writable()
                else:
                    slot.wait_readable()
                return
            slot = self._slots[fd] = _Slot(False)
        if (slot.writer if writing else slot.reader) is not None:
            raise BusyResourceError(
                f"another task is already waiting to {'write' if writing else 'read'} fd {fd}")
        if writing:
            slot.writer = task
        else:
            slot.reader = task
        self.waiting += 1
        try:
            self._update(fd, slot)
        except BaseException:
            if writing:
                slot.writer = None
            else:
                slot.reader = None
            self.waiting -= 1
            if slot.reader is None and slot.writer is None:
                self._slots.pop(fd, None)
            raise

        def abort() -> bool:
            if writing:
                if slot.writer is task:
                    slot.writer = None
                    self.waiting -= 1
            elif slot.reader is task:
                slot.reader = None
                self.waiting -= 1
            if self._slots.get(fd) is slot:
                self._update(fd, slot)
            return True

        park(abort)

    def wait_readable(self, fd: FileDescriptorLike) -> None:
        """Park until ``fd`` is readable. Not a checkpoint by itself (callers check first)."""
        self._wait(fd, False)

    def wait_writable(self, fd: FileDescriptorLike) -> None:
        """Park until ``fd`` is writable. Not a checkpoint by itself."""
        self._wait(fd, True)

    def notify_closing(self, fd: FileDescriptorLike) -> None:
        """Wake every task waiting on ``fd`` with ``ClosedResourceError`` and forget
        the fd (removing it from epoll). Call it before closing ``fd``."""
        if not isinstance(fd, int):
            fd = fd.fileno()
        slot = self._slots.pop(fd, None)
        if slot is None:
            return
        for t in (slot.reader, slot.writer):
            if t is not None:
                self.waiting -= 1
                self._hub.reschedule(t, _Raise(ClosedResourceError(f"fd {fd} was closed")))
        slot.reader = slot.writer = None
        if slot.mask:
            slot.mask = 0
            try:
                self._ep.unregister(fd)
            except (OSError, ValueError):
                pass

    def poll(self, timeout: float | None) -> None:
        try:
            events = self._ep.poll(-1 if timeout is None else timeout, self.maxevents)
        except InterruptedError:  # pragma: no cover - PEP 475 retries, but be safe
            return
        slots = self._slots
        hub = self._hub
        reschedule = hub.reschedule
        # A woken reader is rescheduled by an inlined copy of the hub's fast path (see
        # ``greenrt._fastpath``): readers are the common wake-up, one per event.
        value = None
        wake_rfd = self._wake_rfd
        woken = 0
        for fd, ev in events:
            slot = slots.get(fd)
            if slot is None:
                if fd == wake_rfd:
                    try:
                        while self._wake_r.recv(4096):
                            pass
                    except (BlockingIOError, OSError):
                        pass
                continue
            woke = False
            if ev & _READ_EVENTS:
                if ev & _HANGUP:
                    slot.rready = 2
                elif slot.rready == 0:
                    slot.rready = 1
                task = slot.reader
                if task is not None:
                    slot.reader = None
                    woken += 1
                    # fastpath reschedule: copied from greenrt/_fastpath.py (python -m greenrt._fastpath --write)
                    if task._abort_fn is None:
                        raise InvariantViolation(f"task {task.id} ({task.name}) woken but not parked")
                    task._abort_fn = None
                    task._resume = value
                    if hub._plain and not (task._queued or task._pending or task._drains):
                        task._queued = True
                        sc = task._scope
                        d = sc._deadline_eff
                        if d is None:
                            hub._ready.append(task)
                        else:
                            hub._timed_seq = tq = hub._timed_seq + 1
                            _heappush(hub._timed, (d, -(sc._priority or 0), tq, task))
                    else:
                        hub._schedule(task)
                    # end fastpath reschedule
                    woke = True
            t = slot.writer
            if t is not None and ev & _WRITE_EVENTS:
                slot.writer = None
                woken += 1
                reschedule(t, None)
                woke = True
            if woke and not slot.persistent:
                self._update(fd, slot)
        self.waiting -= woken

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ep.close()
        self._wake_r.close()
        self._wake_w.close()


# The name the rest of the runtime (and ``greenrt.lowlevel``) knows the driver by.
SelectorDriver = EpollDriver
