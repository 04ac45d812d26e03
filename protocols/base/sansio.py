"""The sans-IO convention every protocol codec follows.

A codec is a plain object that turns bytes into events and events into bytes. It
does no I/O, reads no clock and imports nothing from greenrt (a test enforces this
for every module named in ``SANSIO_MODULES`` of ``tests/test_layering.py``), so it
can be fuzzed, tested byte by byte and driven by the lab.

Receiving::

    codec.receive_data(data)     # append bytes; b"" means the peer closed (EOF)
    while True:
        ev = codec.next_event()  # one parsed event, or NEED_DATA
        if ev is NEED_DATA:
            break
        handle(ev)

Sending: methods named for what they send (``send_request(...)``, ``encode(...)``)
return ``bytes`` to write; the codec never writes itself.

Rules (each one is tested per codec, and fuzzed):

1. **Total.** Any input gives events, ``NEED_DATA`` or the protocol's
   ``ProtocolError`` (or a subclass, such as a ``LimitError``); never another
   exception.
2. **Bounded.** No allocation is sized by a number read from the peer before that
   number has been checked against a limit; the buffered, not-yet-parsed bytes are
   bounded by a limit too.
3. **Sticky errors.** After a ``ProtocolError`` every later ``next_event`` raises
   the same error again (:class:`StickyError` holds it); the codec never
   resynchronises into the next message.
4. **Segmentation independence.** The sequence of events and the verdict are the same
   however the input is split into ``receive_data`` calls (one call, or one byte at a
   time).
5. **Unread bytes are visible.** ``codec.buffered`` (bytes received and not yet
   consumed by an event) lets a pool refuse to reuse a connection with anything
   unread: a reply too many from the peer must never reach the next caller.
"""

from __future__ import annotations

__all__ = ["NEED_DATA", "NeedData", "StickyError"]


class NeedData:
    """The type of :data:`NEED_DATA`: no complete event is buffered yet."""

    _instance: NeedData | None = None

    def __new__(cls) -> NeedData:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NEED_DATA"

    def __reduce__(self) -> str:
        return "NEED_DATA"


#: returned by ``next_event`` when more bytes are needed
NEED_DATA = NeedData()


class StickyError:
    """Holds the first protocol error of a codec and re-raises it forever after.

    ::

        self._error = StickyError()
        def next_event(self):
            self._error.check()          # raises the stored error, if any
            try:
                ...parse...
            except ProtocolError as e:
                self._error.set(e)
                raise
    """

    __slots__ = ("error",)

    def __init__(self) -> None:
        self.error: BaseException | None = None

    def set(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def __bool__(self) -> bool:
        return self.error is not None
