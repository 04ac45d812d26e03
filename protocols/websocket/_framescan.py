"""A sans-IO scanner of inbound frame headers, run on the raw bytes before wsproto
sees them.

wsproto buffers and delivers payload without any size bound; this scanner reads
only frame headers (2 to 14 bytes) and skips payload by count, so a frame's declared
length, a message's total and its fragment count are checked *before* the bytes
are handed on. Imports no greenrt (a codec module, see tests/test_layering.py).
"""

from __future__ import annotations

__all__ = ["FrameScanner", "ScanLimit"]


class ScanLimit(Exception):
    """A limit was crossed: ``limit``, ``value``, ``maximum`` as in LimitError."""

    def __init__(self, limit: str, value: int | None, maximum: int) -> None:
        super().__init__(limit, value, maximum)
        self.limit = limit
        self.value = value
        self.maximum = maximum
        #: the bytes before the offending frame's header (not yet passed on): the
        #: frames there are delivered before the error, whatever the segmentation
        self.passed = b""


class FrameScanner:
    """Feed it every inbound byte, in order, in any segmentation (``feed``).

    ``feed(data, now)`` returns the bytes to pass on to wsproto: everything except a
    frame header not yet complete, which is held back until it is (so wsproto never
    judges a header before its length has been checked here, and the first fault
    found is the same for every segmentation). It raises :class:`ScanLimit` on a
    limit, carrying in ``passed`` the bytes before the offending header. Inbound pings are charged to a token bucket
    (``ping_burst`` tokens, refilled at ``pings_per_second``, on the clock values
    passed as ``now``).
    Sticky: after a ScanLimit every further feed raises it again. Malformed frames
    (bad opcode, unmasked client frame, oversized control frame) are left for
    wsproto to reject; the scanner only needs the length fields to stay in step.
    """

    __slots__ = ("max_frame", "max_message", "max_fragments", "pings_per_second", "ping_burst",
                 "_hdr", "_remaining", "_msg_frames", "_msg_bytes", "_msg_compressed", "_error",
                 "_tokens", "_clock", "_start", "_after_close")

    def __init__(self, *, max_frame: int, max_message: int, max_fragments: int,
                 pings_per_second: float = 20, ping_burst: int = 100, now: float = 0.0) -> None:
        self.max_frame = max_frame
        self.max_message = max_message
        self.max_fragments = max_fragments
        self.pings_per_second = pings_per_second
        self.ping_burst = ping_burst
        self._tokens = float(ping_burst)
        self._clock = now
        self._start = 0              # offset in the current chunk of the header being read
        self._after_close = False    # a Close frame was seen: what follows is never parsed
        self._hdr = bytearray()
        self._remaining = 0          # payload bytes of the current frame not yet seen
        self._msg_frames = 0         # frames of the current data message so far
        self._msg_bytes = 0          # wire payload bytes of the current data message
        self._msg_compressed = False
        self._error: ScanLimit | None = None

    def feed(self, data, now: float = 0.0) -> None:
        if self._error is not None:
            raise self._error
        if self._after_close:
            return data
        if now > self._clock:
            self._tokens = min(float(self.ping_burst),
                               self._tokens + (now - self._clock) * self.pings_per_second)
            self._clock = now
        self._start = -1             # -1: the header in progress began in an earlier chunk
        carry = bytes(self._hdr)     # a held-back partial header from the last chunk
        i = 0
        n = len(data)
        hdr = self._hdr
        while i < n:
            if self._remaining:
                take = min(self._remaining, n - i)
                self._remaining -= take
                i += take
                continue
            if not hdr:
                self._start = i
            if len(hdr) < 2:
                take = min(2 - len(hdr), n - i)
                hdr += data[i:i + take]
                i += take
                if len(hdr) < 2:
                    break
            l7 = hdr[1] & 0x7F
            need = 2 + (2 if l7 == 126 else 8 if l7 == 127 else 0) + (4 if hdr[1] & 0x80 else 0)
            if len(hdr) < need:
                take = min(need - len(hdr), n - i)
                hdr += data[i:i + take]
                i += take
                if len(hdr) < need:
                    break
            if l7 == 126:
                length = int.from_bytes(hdr[2:4], "big")
            elif l7 == 127:
                length = int.from_bytes(hdr[2:10], "big")
            else:
                length = l7
            opcode = hdr[0] & 0x0F
            rsv1 = bool(hdr[0] & 0x40)
            hdr.clear()
            try:
                if opcode == 0x9:
                    self._tokens -= 1
                    if self._tokens < 0:
                        self._fail("max_pings_per_second", None, self.pings_per_second)
                self._check(opcode, rsv1, length)
            except ScanLimit as e:
                self._fail_at(e, carry, data, self._start)
                raise
            self._remaining = length
            if opcode == 0x8:
                # Nothing after a Close counts (wsproto discards it); scanning it
                # would make a limit fire or not depending on the segmentation.
                self._after_close = True
                return carry + bytes(data) if carry else data
        if hdr:
            # an incomplete header at the end: hold it (and only it) back
            return carry + bytes(data[:self._start]) if self._start >= 0 else b""
        return carry + bytes(data) if carry else data

    def _check(self, opcode: int, rsv1: bool, length: int) -> None:
        if length > self.max_frame:
            self._fail("max_frame_bytes", length, self.max_frame)
        if opcode in (0x1, 0x2):
            self._msg_frames = 1
            self._msg_bytes = length
            self._msg_compressed = rsv1
        elif opcode == 0x0:
            self._msg_frames += 1
            self._msg_bytes += length
        else:
            return
        if self._msg_frames > self.max_fragments:
            self._fail("max_fragments", self._msg_frames, self.max_fragments)
        # A compressed message's inflated size is bounded by the deflate extension;
        # its wire size is still bounded here (it can only be smaller than inflated
        # for real data, and a peer gains nothing by padding).
        if self._msg_bytes > self.max_message:
            self._fail("max_message_bytes", self._msg_bytes, self.max_message)

    def _fail(self, limit: str, value, maximum) -> None:
        self._error = ScanLimit(limit, value, maximum)
        raise self._error

    def _fail_at(self, err: ScanLimit, carry: bytes, data, start: int) -> None:
        err.passed = carry + bytes(data[:start]) if start >= 0 else b""
