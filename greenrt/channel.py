"""Channels: bounded mpsc with two-phase send, oneshot, broadcast and watch.

``tx, rx = greenrt.channel(capacity)`` makes a bounded multi-producer,
single-consumer queue. Sending has two phases::

    permit = tx.reserve()   # blocks until there is capacity: a checkpoint
    permit.send(value)      # cannot block, cannot be interrupted
    # or permit.abort()     # gives the capacity back

The permit is an obligation of kind ``send_permit`` reserved at the caller's line: a
task that completes while holding one has leaked it; the runtime gives the capacity
back and reports the leak with that site. ``tx.send(value)`` is reserve+send in one
call (no obligation is created, because nothing can happen between the two).

Why two phases: the only place a sender can be cancelled is while it waits for
capacity, and at that point nothing has been sent. Once it holds a permit, delivering
is a plain function call. So a cancelled sender never loses a message it believes it
sent and never sends one twice (``test_channel.py`` has the property test).

Capacity accounting: ``buffered + reserved <= capacity`` always, where ``reserved``
counts outstanding permits. Capacity that frees up goes straight to the first waiting
sender (FIFO hand-off, see ``greenrt.sync``), and a value sent while the receiver
waits goes straight to it, so a cancelled ``reserve`` or ``recv`` loses nothing and a
hand-off that coincides with a cancellation is kept (the call returns normally; the
cancellation comes at the next checkpoint). ``capacity`` must be at least 1 (there is
no rendezvous channel: a permit *is* a slot) and is never used to pre-allocate.

Closing:

* ``tx.close()`` closes one sender handle (``tx.clone()`` makes more). Tasks blocked
  in ``reserve``/``send`` on *that handle* get ``ClosedResourceError``. When every
  handle is closed and every permit resolved, the receiver drains what is buffered
  and then gets ``EndOfChannel`` (iteration stops).
* ``rx.close()`` closes the receiving end. Blocked senders get
  ``BrokenChannelError``, later sends too, ``permit.send`` raises it (and resolves the
  permit as aborted). Blocked receivers get ``ClosedResourceError``. Messages still
  buffered are not thrown away silently: ``close()`` returns them.

Other channels here: ``oneshot()`` (one value, once), ``broadcast(capacity)`` (every
receiver sees every message; senders never block, a receiver that falls more than
``capacity`` behind gets ``Lagged`` saying how many it missed, then resumes at the
oldest retained message) and ``watch(initial)`` (receivers see the latest value and
wait for changes).

None of these is thread-safe; from a worker thread use ``greenrt.from_thread``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._checkpoint import _enter
from ._driver import ClosedResourceError
from ._exceptions import GreenrtError, InvalidStateError, NoHubError, WouldBlock
from ._hub import _tls as _hub_tls
from ._obligation import Obligation, reserve

if TYPE_CHECKING:  # pragma: no cover
    from types import TracebackType

    from ._hub import Hub
    from ._task import Task
from .sync import COOP_BUDGET, _checkpoint_task, _coop, _note, _WaitQueue, _yield

__all__ = [
    "BroadcastReceiver", "BroadcastSender", "BrokenChannelError", "EndOfChannel", "Lagged",
    "OneshotReceiver", "OneshotSender", "Permit", "Receiver", "Sender", "WatchReceiver",
    "WatchSender", "broadcast", "channel", "oneshot", "watch",
]

T = TypeVar("T")


class EndOfChannel(GreenrtError):
    """Every sender is closed and nothing is left to receive."""


class BrokenChannelError(GreenrtError):
    """The receiving end is closed: nobody will ever receive what you send."""


class Lagged(GreenrtError):
    """A broadcast receiver fell behind by more than the channel's capacity.

    ``missed`` is how many messages it lost; the next ``recv`` returns the oldest
    message still retained.
    """

    def __init__(self, missed: int, capacity: int):
        self.missed = missed
        self.capacity = capacity
        super().__init__(f"broadcast receiver lagged: missed {missed} message(s) "
                         f"(capacity {capacity}); resuming at the oldest retained message")


def _check_capacity(capacity: Any) -> int:
    if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
        raise ValueError(f"capacity must be an int >= 1, not {capacity!r}")
    return capacity


# -- mpsc ------------------------------------------------------------------------------


class _Chan(Generic[T]):
    __slots__ = ("buf", "cap", "reserved", "senders_open", "rx_closed", "send_waiters",
                 "recv_waiters", "sent", "received", "dropped", "permits", "_coop")

    def __init__(self, capacity: int):
        self._coop = 0
        self.buf: deque[T] = deque()
        self.cap = capacity
        self.reserved = 0
        self.senders_open = 1
        self.rx_closed = False
        self.send_waiters = _WaitQueue()
        self.recv_waiters = _WaitQueue()
        self.sent = 0
        self.received = 0
        self.dropped = 0
        self.permits = 0

    def deliver(self, value: Any) -> None:
        """Put a value whose slot is already reserved into the channel."""
        self.sent += 1
        if self.recv_waiters:
            self.reserved -= 1
            self.received += 1
            self.recv_waiters.wake_first(value)
            self.free_slot()
        else:
            self.reserved -= 1
            self.buf.append(value)

    def free_slot(self) -> None:
        """A slot became free: hand it to the first waiting sender, if any."""
        if self.send_waiters and not self.rx_closed:
            self.reserved += 1
            self.send_waiters.wake_first(None)

    def unreserve(self) -> None:
        self.reserved -= 1
        self.free_slot()
        self.check_eof()

    def check_eof(self) -> None:
        if self.senders_open == 0 and self.reserved == 0 and not self.buf:
            self.recv_waiters.wake_all_error(lambda: EndOfChannel("all senders are closed"))


class Permit:
    """The right to put one value into a channel without blocking.

    An obligation (``.obligation``, kind ``send_permit``): resolve it with ``send`` or
    ``abort``. ``with tx.reserve() as permit:`` aborts it if the block raises.
    """

    __slots__ = ("_ch", "_ob", "_hub")

    def __init__(self, ch: _Chan[Any], hub: Hub, stacklevel: int) -> None:
        self._ch = ch
        self._hub = hub
        if hub.wants_access:
            hub.note_access(ch)
        ch.permits += 1
        self._ob = reserve("send_permit", on_abort=self._on_abort, stacklevel=stacklevel + 1)

    def _on_abort(self, reason: Any) -> None:
        _note(self._ch)
        self._ch.unreserve()

    @property
    def obligation(self) -> Obligation:
        return self._ob

    @property
    def state(self) -> str:
        """``reserved``, ``committed`` (sent), ``aborted`` or ``leaked``."""
        return self._ob.state

    def send(self, value: Any) -> None:
        """Deliver ``value``. Not a checkpoint; never blocks. Raises
        ``InvalidStateError`` if the permit was already used and
        ``BrokenChannelError`` if the receiver is closed (the permit is then aborted)."""
        ob = self._ob
        if ob.state != "reserved":
            raise InvalidStateError(f"permit already {ob.state}")
        ch = self._ch
        hub = self._hub
        if hub.wants_access:
            hub.note_access(ch)
        if ch.rx_closed:
            ob.abort("receiver closed")
            raise BrokenChannelError("the receiver is closed")
        # ``ch.deliver(value)`` inlined
        ch.sent += 1
        ch.reserved -= 1
        rw = ch.recv_waiters._q
        if rw:
            ch.received += 1
            t, _ = rw.popitem(last=False)
            t._hub.reschedule(t, value)
            ch.free_slot()
        else:
            ch.buf.append(value)
        ob.commit()
        if ch.senders_open == 0:
            ch.check_eof()

    def abort(self, reason: Any = None) -> None:
        """Give the capacity back without sending. Not a checkpoint; idempotent."""
        self._ob.abort(reason)

    def __enter__(self) -> Permit:
        return self

    def __exit__(self, etype: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is not None and self._ob.state == "reserved":
            self._ob.abort(exc)

    def __repr__(self) -> str:
        return f"<Permit {self._ob.state} reserved at {self._ob.site}>"


class Sender(Generic[T]):
    """A sending handle of a bounded channel. Clone it for more producers; close
    every clone to end the stream."""

    __slots__ = ("_ch", "_closed")

    def __init__(self, ch: _Chan[T]):
        self._ch = ch
        self._closed = False

    def _check(self) -> _Chan[T]:
        if self._closed:
            raise ClosedResourceError("this sender is closed")
        ch = self._ch
        if ch.rx_closed:
            raise BrokenChannelError("the receiver is closed")
        return ch

    def _wait_slot(self, task: Task[Any], ch: _Chan[T]) -> None:
        """Get a reserved slot (counted in ``ch.reserved``) for ``task``."""
        _note(ch)
        if not ch.send_waiters and len(ch.buf) + ch.reserved < ch.cap:
            ch.reserved += 1
            _coop(ch, task)
            return
        ch.send_waiters.wait(task, self, what="channel Sender.reserve")  # the waker counted the slot as reserved
        if ch.rx_closed:  # closed after the slot was handed to us, before we ran
            ch.reserved -= 1
            raise BrokenChannelError("the receiver was closed")

    def reserve(self, *, _stacklevel: int = 1) -> Permit:
        """Wait for capacity and return a ``Permit`` for one value.

        A checkpoint. A cancelled ``reserve`` holds no capacity and sent nothing; if
        capacity was handed over at the moment of cancellation, the permit is
        returned normally and the cancellation comes at the next checkpoint.
        Raises ``ClosedResourceError`` (this handle closed, also while waiting) or
        ``BrokenChannelError`` (receiver closed, also while waiting).
        """
        try:
            hub = _hub_tls.hub
        except AttributeError:
            raise NoHubError() from None
        # fastpath enter: copied from greenrt/_fastpath.py (python -m greenrt._fastpath --write)
        task = hub.current
        if task is None or task._drains or task._pending or task._scope._quota_chain or hub._tracing:
            task = _enter(hub)
        # end fastpath enter
        ch = self._ch
        if self._closed or ch.rx_closed:
            self._check()
        if not ch.send_waiters._q and len(ch.buf) + ch.reserved < ch.cap:
            ch.reserved += 1
            permit = Permit(ch, hub, _stacklevel + 1)
            n = ch._coop + 1
            if n >= COOP_BUDGET:
                ch._coop = 0
                _yield(task)
            else:
                ch._coop = n
            return permit
        self._wait_slot(task, ch)
        return Permit(ch, hub, _stacklevel + 1)

    def reserve_nowait(self) -> Permit:
        """A permit if there is capacity now, else ``WouldBlock``. Not a checkpoint."""
        ch = self._check()
        try:
            hub = _hub_tls.hub
        except AttributeError:
            raise NoHubError() from None
        if ch.send_waiters or len(ch.buf) + ch.reserved >= ch.cap:
            raise WouldBlock("channel is full")
        ch.reserved += 1
        return Permit(ch, hub, 2)

    def send(self, value: T) -> None:
        """Send ``value``, waiting for capacity. A checkpoint. A cancelled send sent
        nothing; a send that returns has delivered exactly once."""
        try:
            hub = _hub_tls.hub
        except AttributeError:
            raise NoHubError() from None
        # fastpath enter: copied from greenrt/_fastpath.py (python -m greenrt._fastpath --write)
        task = hub.current
        if task is None or task._drains or task._pending or task._scope._quota_chain or hub._tracing:
            task = _enter(hub)
        # end fastpath enter
        ch = self._ch
        if self._closed or ch.rx_closed:
            self._check()
        if hub.wants_access:
            hub.note_access(ch)
        if not ch.send_waiters._q and len(ch.buf) + ch.reserved < ch.cap:
            ch.sent += 1
            rw = ch.recv_waiters
            if rw._q:
                ch.received += 1
                rw.wake_first(value)
            else:
                ch.buf.append(value)
            n = ch._coop + 1
            if n >= COOP_BUDGET:
                ch._coop = 0
                _yield(task)
            else:
                ch._coop = n
            return
        # The channel is full or others wait first: queue for a slot (FIFO hand-off).
        ch.send_waiters.wait(task, self, what="channel Sender.reserve")  # name kept: tests and reports use it
        # The waker counted the slot as reserved for us; ``deliver`` inlined.
        ch.reserved -= 1
        if ch.rx_closed:  # closed after the slot was handed to us, before we ran
            raise BrokenChannelError("the receiver was closed")
        ch.sent += 1
        rw = ch.recv_waiters
        if rw._q:
            ch.received += 1
            rw.wake_first(value)
            ch.free_slot()
        else:
            ch.buf.append(value)

    def send_nowait(self, value: T) -> None:
        """Send now or raise ``WouldBlock``. Not a checkpoint."""
        ch = self._check()
        if ch.send_waiters or len(ch.buf) + ch.reserved >= ch.cap:
            raise WouldBlock("channel is full")
        ch.reserved += 1
        _note(ch)
        ch.deliver(value)

    def clone(self) -> Sender[T]:
        """Another handle on the same channel. Not a checkpoint."""
        if self._closed:
            raise ClosedResourceError("cannot clone a closed sender")
        self._ch.senders_open += 1
        return Sender(self._ch)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close this handle (idempotent). Not a checkpoint."""
        if self._closed:
            return
        self._closed = True
        ch = self._ch
        _note(ch)
        ch.senders_open -= 1
        ch.send_waiters.wake_matching_error(
            lambda h: h is self, lambda: ClosedResourceError("sender closed while waiting"))
        ch.check_eof()

    def __enter__(self) -> Sender[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def statistics(self) -> dict[str, Any]:
        return _chan_stats(self._ch)

    def __repr__(self) -> str:
        return f"<Sender closed={self._closed} {_chan_stats(self._ch)}>"


class Receiver(Generic[T]):
    """The receiving end of a bounded channel. Iterating receives until
    ``EndOfChannel``."""

    __slots__ = ("_ch", "_closed")

    def __init__(self, ch: _Chan[T]):
        self._ch = ch
        self._closed = False

    def recv(self) -> T:
        """Receive the next value, waiting if there is none.

        A checkpoint. A cancelled ``recv`` loses no data (a value handed over at the
        moment of cancellation is returned; the cancellation comes at the next
        checkpoint). Raises ``EndOfChannel`` when every sender is closed and the
        buffer is empty, ``ClosedResourceError`` after ``close()``.
        """
        try:
            hub = _hub_tls.hub
        except AttributeError:
            raise NoHubError() from None
        # fastpath enter: copied from greenrt/_fastpath.py (python -m greenrt._fastpath --write)
        task = hub.current
        if task is None or task._drains or task._pending or task._scope._quota_chain or hub._tracing:
            task = _enter(hub)
        # end fastpath enter
        if self._closed:
            raise ClosedResourceError("this receiver is closed")
        ch = self._ch
        if hub.wants_access:
            hub.note_access(ch)
        buf = ch.buf
        if buf:
            v = buf.popleft()
            ch.received += 1
            sw = ch.send_waiters._q
            if sw:  # ``free_slot`` inlined (rx_closed is False: this receiver is open)
                ch.reserved += 1
                t, _ = sw.popitem(last=False)
                t._hub.reschedule(t, None)
            elif not buf and ch.senders_open == 0:
                ch.check_eof()
            n = ch._coop + 1
            if n >= COOP_BUDGET:
                ch._coop = 0
                _yield(task)
            else:
                ch._coop = n
            return v
        if ch.senders_open == 0 and ch.reserved == 0:
            raise EndOfChannel("all senders are closed")
        return ch.recv_waiters.wait(task, self, what="channel Receiver.recv")  # type: ignore[no-any-return]  # a sent T

    def recv_nowait(self) -> T:
        """The next value or ``WouldBlock``. Not a checkpoint."""
        if self._closed:
            raise ClosedResourceError("this receiver is closed")
        ch = self._ch
        _note(ch)
        if ch.buf:
            v = ch.buf.popleft()
            ch.received += 1
            ch.free_slot()
            ch.check_eof()
            return v
        if ch.senders_open == 0 and ch.reserved == 0:
            raise EndOfChannel("all senders are closed")
        raise WouldBlock("channel is empty")

    def __iter__(self) -> Iterator[T]:
        while True:
            try:
                yield self.recv()
            except EndOfChannel:
                return

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> list[T]:
        """Close the receiving end (idempotent). Not a checkpoint. Returns the values
        that were still buffered (they will not be received by anyone); blocked
        senders get ``BrokenChannelError``, blocked receivers ``ClosedResourceError``.
        """
        if self._closed:
            return []
        self._closed = True
        ch = self._ch
        _note(ch)
        ch.rx_closed = True
        left = list(ch.buf)
        ch.buf.clear()
        ch.dropped += len(left)
        # Slots already handed to woken senders are theirs; they see rx_closed on use.
        ch.send_waiters.wake_all_error(lambda: BrokenChannelError("the receiver was closed"))
        ch.recv_waiters.wake_all_error(lambda: ClosedResourceError("receiver closed while waiting"))
        return left

    def __enter__(self) -> Receiver[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def statistics(self) -> dict[str, Any]:
        return _chan_stats(self._ch)

    def __repr__(self) -> str:
        return f"<Receiver closed={self._closed} {_chan_stats(self._ch)}>"


def _chan_stats(ch: _Chan[Any]) -> dict[str, Any]:
    return {"capacity": ch.cap, "buffered": len(ch.buf), "reserved": ch.reserved,
            "senders_open": ch.senders_open, "receiver_closed": ch.rx_closed,
            "tasks_waiting_send": len(ch.send_waiters),
            "tasks_waiting_recv": len(ch.recv_waiters), "sent": ch.sent,
            "received": ch.received, "dropped": ch.dropped, "permits": ch.permits}


def channel(capacity: int) -> tuple[Sender[T], Receiver[T]]:
    """A bounded mpsc channel: ``(sender, receiver)``. ``capacity >= 1``."""
    ch: _Chan[T] = _Chan(_check_capacity(capacity))
    return Sender(ch), Receiver(ch)


# -- oneshot ---------------------------------------------------------------------------


class _Oneshot(Generic[T]):
    __slots__ = ("state", "value", "waiters")

    def __init__(self) -> None:
        self.state = "empty"  # empty | sent | taken | tx_closed | rx_closed
        self.value: T | None = None
        self.waiters = _WaitQueue()


class OneshotSender(Generic[T]):
    """Sends exactly one value. ``send`` never blocks and is not a checkpoint."""

    __slots__ = ("_s",)

    def __init__(self, s: _Oneshot[T]):
        self._s = s

    def send(self, value: T) -> None:
        """Deliver the value. Raises ``InvalidStateError`` on a second send or after
        ``close``, ``BrokenChannelError`` if the receiver is closed."""
        s = self._s
        _note(s)
        if s.state == "rx_closed":
            raise BrokenChannelError("the receiver is closed")
        if s.state != "empty":
            raise InvalidStateError(f"oneshot already {s.state}")
        if s.waiters:
            s.state = "taken"
            s.waiters.wake_first(value)
            return
        s.state = "sent"
        s.value = value

    def close(self) -> None:
        """Close without sending (no-op after a send): the receiver gets
        ``EndOfChannel``."""
        s = self._s
        _note(s)
        if s.state == "empty":
            s.state = "tx_closed"
            s.waiters.wake_all_error(lambda: EndOfChannel("oneshot sender closed without a value"))

    def __enter__(self) -> OneshotSender[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def statistics(self) -> dict[str, Any]:
        return {"state": self._s.state, "tasks_waiting": len(self._s.waiters)}


class OneshotReceiver(Generic[T]):
    __slots__ = ("_s",)

    def __init__(self, s: _Oneshot[T]):
        self._s = s

    def _take(self) -> tuple[bool, T]:
        s = self._s
        st = s.state
        if st == "sent":
            s.state = "taken"
            v, s.value = s.value, None
            return True, v  # type: ignore[return-value]  # sent: the value is a T
        if st == "tx_closed":
            raise EndOfChannel("oneshot sender closed without a value")
        if st == "taken":
            raise EndOfChannel("the oneshot value was already received")
        if st == "rx_closed":
            raise ClosedResourceError("this receiver is closed")
        return False, None  # type: ignore[return-value]  # (False, no value)

    def recv(self) -> T:
        """Wait for the value. A checkpoint; a cancelled ``recv`` loses nothing (the
        value stays for the next call, or was handed over and is returned)."""
        task = _checkpoint_task()
        _note(self._s)
        ok, v = self._take()
        if ok:
            return v
        return self._s.waiters.wait(task, what="oneshot recv")  # type: ignore[no-any-return]  # the sent T

    def recv_nowait(self) -> T:
        _note(self._s)
        ok, v = self._take()
        if ok:
            return v
        raise WouldBlock("no value yet")

    def close(self) -> None:
        s = self._s
        _note(s)
        if s.state in ("empty", "sent"):
            s.state = "rx_closed"
            s.value = None
            s.waiters.wake_all_error(lambda: ClosedResourceError("receiver closed while waiting"))

    def statistics(self) -> dict[str, Any]:
        return {"state": self._s.state, "tasks_waiting": len(self._s.waiters)}


def oneshot() -> tuple[OneshotSender[T], OneshotReceiver[T]]:
    """A single-use channel for one value: ``(sender, receiver)``."""
    s: _Oneshot[T] = _Oneshot()
    return OneshotSender(s), OneshotReceiver(s)


# -- broadcast -------------------------------------------------------------------------


class _Bcast(Generic[T]):
    __slots__ = ("ring", "cap", "seq", "senders_open", "receivers", "waiters", "sent", "lagged")

    def __init__(self, capacity: int):
        self.ring: deque[T] = deque(maxlen=capacity)
        self.cap = capacity
        self.seq = 0  # sequence number of the next message
        self.senders_open = 1
        self.receivers = 0
        self.waiters = _WaitQueue()
        self.sent = 0
        self.lagged = 0


class BroadcastSender(Generic[T]):
    """Sends to every receiver. ``send`` never blocks (the oldest message is
    overwritten when the ring is full) and is not a checkpoint."""

    __slots__ = ("_b", "_closed")

    def __init__(self, b: _Bcast[T]):
        self._b = b
        self._closed = False

    def send(self, value: T) -> int:
        """Publish ``value``; return how many receivers will see it (0: dropped)."""
        if self._closed:
            raise ClosedResourceError("this sender is closed")
        b = self._b
        _note(b)
        if b.receivers == 0:
            return 0
        b.ring.append(value)
        b.seq += 1
        b.sent += 1
        b.waiters.wake_all(None)
        return b.receivers

    def subscribe(self) -> BroadcastReceiver[T]:
        """A new receiver that sees messages sent from now on."""
        return BroadcastReceiver(self._b, self._b.seq)

    def clone(self) -> BroadcastSender[T]:
        if self._closed:
            raise ClosedResourceError("cannot clone a closed sender")
        self._b.senders_open += 1
        return BroadcastSender(self._b)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        b = self._b
        b.senders_open -= 1
        if b.senders_open == 0:
            b.waiters.wake_all(None)

    def __enter__(self) -> BroadcastSender[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def statistics(self) -> dict[str, Any]:
        return _bcast_stats(self._b)


class BroadcastReceiver(Generic[T]):
    """One subscriber's cursor into a broadcast channel."""

    __slots__ = ("_b", "_next", "_closed")

    def __init__(self, b: _Bcast[T], start: int):
        self._b = b
        self._next = start
        self._closed = False
        b.receivers += 1

    def _poll(self) -> tuple[bool, T]:
        if self._closed:
            raise ClosedResourceError("this receiver is closed")
        b = self._b
        base = b.seq - len(b.ring)
        if self._next < base:
            missed = base - self._next
            self._next = base
            b.lagged += 1
            raise Lagged(missed, b.cap)
        if self._next < b.seq:
            v = b.ring[self._next - base]
            self._next += 1
            return True, v
        if b.senders_open == 0:
            raise EndOfChannel("all broadcast senders are closed")
        return False, None  # type: ignore[return-value]  # (False, no value)

    def recv(self) -> T:
        """The next message. A checkpoint; cancel-safe (the cursor advances only when
        a message is returned). Raises ``Lagged`` once after falling behind,
        ``EndOfChannel`` when the senders are closed and everything was read."""
        task = _checkpoint_task()
        _note(self._b, False)
        while True:
            ok, v = self._poll()
            if ok:
                return v
            self._b.waiters.wait(task, self, what="broadcast recv")

    def recv_nowait(self) -> T:
        ok, v = self._poll()
        if ok:
            return v
        raise WouldBlock("no new message")

    def __iter__(self) -> Iterator[T]:
        """Receive until ``EndOfChannel`` (``Lagged`` propagates)."""
        while True:
            try:
                yield self.recv()
            except EndOfChannel:
                return

    def clone(self) -> BroadcastReceiver[T]:
        """A receiver at the same position."""
        return BroadcastReceiver(self._b, self._next)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._b.receivers -= 1
            self._b.waiters.wake_matching_error(
                lambda r: r is self, lambda: ClosedResourceError("receiver closed while waiting"))

    def __enter__(self) -> BroadcastReceiver[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def statistics(self) -> dict[str, Any]:
        st = _bcast_stats(self._b)
        st["pending"] = max(0, self._b.seq - self._next)
        return st


def _bcast_stats(b: _Bcast[Any]) -> dict[str, Any]:
    return {"capacity": b.cap, "retained": len(b.ring), "sent": b.sent,
            "receivers": b.receivers, "senders_open": b.senders_open,
            "tasks_waiting": len(b.waiters), "lag_errors": b.lagged}


def broadcast(capacity: int) -> tuple[BroadcastSender[T], BroadcastReceiver[T]]:
    """A bounded broadcast channel: ``(sender, first receiver)``; more receivers with
    ``sender.subscribe()`` or ``receiver.clone()``."""
    b: _Bcast[T] = _Bcast(_check_capacity(capacity))
    return BroadcastSender(b), BroadcastReceiver(b, 0)


# -- watch -----------------------------------------------------------------------------


class _Watch(Generic[T]):
    __slots__ = ("value", "version", "senders_open", "waiters")

    def __init__(self, initial: T) -> None:
        self.value = initial
        self.version = 0
        self.senders_open = 1
        self.waiters = _WaitQueue()


class WatchSender(Generic[T]):
    """Publishes the latest value. ``send`` never blocks and is not a checkpoint."""

    __slots__ = ("_w", "_closed")

    def __init__(self, w: _Watch[T]):
        self._w = w
        self._closed = False

    def send(self, value: T) -> None:
        if self._closed:
            raise ClosedResourceError("this sender is closed")
        w = self._w
        _note(w)
        w.value = value
        w.version += 1
        w.waiters.wake_all(None)

    def subscribe(self) -> WatchReceiver[T]:
        """A receiver that has seen the current value."""
        return WatchReceiver(self._w, self._w.version)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._w.senders_open -= 1
            if self._w.senders_open == 0:
                self._w.waiters.wake_all(None)

    def __enter__(self) -> WatchSender[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def statistics(self) -> dict[str, Any]:
        return _watch_stats(self._w)


class WatchReceiver(Generic[T]):
    __slots__ = ("_w", "_seen")

    def __init__(self, w: _Watch[T], seen: int):
        self._w = w
        self._seen = seen

    def get(self) -> T:
        """The latest value (does not mark it seen). Not a checkpoint."""
        return self._w.value

    def has_changed(self) -> bool:
        return self._w.version != self._seen

    def changed(self) -> T:
        """Wait for a value newer than the last one this receiver returned, mark it
        seen and return it. A checkpoint; cancel-safe (nothing is marked seen unless
        returned). Raises ``EndOfChannel`` once the sender is closed and the latest
        value was seen."""
        task = _checkpoint_task()
        w = self._w
        _note(w, False)
        while True:
            if w.version != self._seen:
                self._seen = w.version
                return w.value
            if w.senders_open == 0:
                raise EndOfChannel("the watch sender is closed")
            w.waiters.wait(task, self, what="watch changed")

    recv = changed

    def __iter__(self) -> Iterator[T]:
        while True:
            try:
                yield self.changed()
            except EndOfChannel:
                return

    def clone(self) -> WatchReceiver[T]:
        return WatchReceiver(self._w, self._seen)

    def statistics(self) -> dict[str, Any]:
        st = _watch_stats(self._w)
        st["seen_version"] = self._seen
        return st


def _watch_stats(w: _Watch[Any]) -> dict[str, Any]:
    return {"version": w.version, "senders_open": w.senders_open, "tasks_waiting": len(w.waiters)}


def watch(initial: T) -> tuple[WatchSender[T], WatchReceiver[T]]:
    """A latest-value channel: ``(sender, receiver)``; the receiver starts having
    seen ``initial``."""
    w: _Watch[T] = _Watch(initial)
    return WatchSender(w), WatchReceiver(w, 0)
