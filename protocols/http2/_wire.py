"""What both ends of an HTTP/2 connection need below h2: the frame gate and the
outbound writer.

* :class:`FrameGate` walks the 9-byte frame headers of the inbound byte stream
  before h2 sees them. It rejects a frame announcing more than ``max_frame_size``
  after its header (h2 would buffer the whole payload first), counts flood frames
  over a sliding window, caps a header block's CONTINUATION fragments, remembers
  when an unfinished header block started (the CONTINUATION deadline) and takes
  GOAWAY frames out of the stream: h2 moves its whole connection to CLOSED on any
  GOAWAY, sent or received, after which the in-flight streams a graceful shutdown
  must finish could not send or receive another frame. So GOAWAY is ours: parsed
  here, built with hyperframe, and never shown to h2.
* :class:`Writer` owns the outbound bytes. Whoever queues bytes while nobody is
  sending becomes the sender and writes until the queue is empty; the rest only
  queue. The sender first offers the queue to the transport without waiting
  (``send_nowait``, where the stream has it): when it all fits, as it mostly does,
  that is the whole write, with no scope and no timer. Whatever does not fit is
  written masked, bounded by ``send_timeout``: a cancelled caller never leaves half
  a frame on the wire, which would break the connection for every other stream.
  Its cancellation is delivered at its next checkpoint.

Neither imports h2; both are total over any segmentation of the input.
"""

from __future__ import annotations

import collections
from typing import Any

import greenrt
from greenrt import lowlevel as ll
from greenrt import net

from .limits import H2Limits

__all__ = ["FrameGate", "GateError", "HeaderBlock", "Writer", "PREFACE", "frame_header",
           "goaway_frame"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY = range(8)
WINDOW_UPDATE, CONTINUATION = 8, 9
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4

# RFC 9113 section 7 error codes (h2.errors.ErrorCodes has the same values)
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0, 1, 2, 3
FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = 6, 7, 8, 9
ENHANCE_YOUR_CALM = 11


#: the H2Limits field behind each flood counter (``count(what, maximum)``)
_FLOOD_LIMITS = {
    "empty_frame": "empty_frames_per_window", "ping": "pings_per_window",
    "settings": "settings_per_window", "rst_stream": "resets_per_window",
    "priority": "priority_per_window", "window_update": "window_updates_per_window",
}


class GateError(Exception):
    """The gate's verdict: end the connection with GOAWAY(``code``); ``why`` is the
    trace code (``ping_flood``, ``frame_too_large``...)."""

    def __init__(self, code: int, why: str, *, limit: str | None = None, value: Any = None,
                 maximum: Any = None):
        super().__init__(why)
        self.code = code
        self.why = why
        #: for a limit verdict: the H2Limits field, what was seen and its configured value
        self.limit = limit
        self.value = value
        self.maximum = maximum


def frame_header(length: int, ftype: int, flags: int, stream_id: int) -> bytes:
    """The 9-byte header of a frame (RFC 9113 4.1)."""
    return (length.to_bytes(3, "big") + bytes((ftype, flags))
            + (stream_id & 0x7FFFFFFF).to_bytes(4, "big"))


def _hpack_int(value: int, prefix_bits: int, first: int) -> bytes:
    """RFC 7541 5.1: ``value`` with an N-bit prefix; ``first`` holds the pattern bits."""
    top = (1 << prefix_bits) - 1
    if value < top:
        return bytes((first | value,))
    out = [first | top]
    value -= top
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def _static_table() -> tuple[dict, dict]:
    from hpack.table import HeaderTable

    full: dict = {}
    names: dict = {}
    for i, (n, v) in enumerate(HeaderTable.STATIC_TABLE, 1):
        full.setdefault((n, v), i)
        names.setdefault(n, i)
    return full, names


class HeaderBlock:
    """A header list encoded once, in a form that does not depend on the HPACK
    state of a connection: static-table indexes and literals *without indexing*
    (RFC 7541 6.1 and 6.2.2; no Huffman), so the same bytes are valid in every
    header block of every connection and leave both dynamic tables untouched.
    For constant responses (gRPC's head and its OK trailers): no per-call
    encoding or validation. ``fields`` are the pairs (lower-case names, values
    of visible ASCII and spaces, checked here once); ``block`` the encoding."""

    __slots__ = ("fields", "block")

    def __init__(self, fields) -> None:
        full, names = _static_table()
        out = bytearray()
        self.fields = []
        for name, value in fields:
            name = name.encode("ascii") if isinstance(name, str) else bytes(name)
            value = value.encode("ascii") if isinstance(value, str) else bytes(value)
            if (not name or name != name.lower() or any(c <= 0x20 or c >= 0x7F for c in name)
                    or any(c < 0x20 or c >= 0x7F for c in value)):
                raise ValueError(f"not a constant header field: {name!r}: {value!r}")
            self.fields.append((name, value))
            i = full.get((name, value))
            if i is not None:
                out += _hpack_int(i, 7, 0x80)          # indexed (static)
                continue
            i = names.get(name)
            if i is not None:
                out += _hpack_int(i, 4, 0x00)          # literal, indexed name, no indexing
            else:
                out += b"\x00" + _hpack_int(len(name), 7, 0) + name
            out += _hpack_int(len(value), 7, 0) + value
        self.block = bytes(out)


def goaway_frame(last_stream_id: int, code: int, debug: bytes = b"") -> bytes:
    """One serialized GOAWAY frame (built by hand: 17 bytes plus debug data)."""
    payload = (last_stream_id & 0x7FFFFFFF).to_bytes(4, "big") + code.to_bytes(4, "big") + debug
    return len(payload).to_bytes(3, "big") + bytes((GOAWAY, 0)) + b"\0\0\0\0" + payload


class FrameGate:
    """The inbound pre-check (see the module docstring).

    ``feed(data)`` returns the pieces in order: ``bytes`` to hand to h2, and
    ``(last_stream_id, error_code)`` tuples for each GOAWAY received. Raises
    :class:`GateError`. ``block_started`` is the hub time the current unfinished
    header block began (``None`` when no block is open)."""

    __slots__ = ("limits", "_pre", "_hdr", "_skip", "_counts", "_now", "_goaway",
                 "_block_bytes", "block_started", "_in_block")

    def __init__(self, limits: H2Limits, now, *, preface: bool):
        self.limits = limits
        self._pre = len(PREFACE) if preface else 0
        self._hdr = b""
        self._skip = 0
        self._counts: dict[str, collections.deque] = {}
        self._now = now
        self._goaway: bytearray | None = None  # payload being collected
        self._block_bytes = 0
        self._in_block = False
        self.block_started: float | None = None

    def count(self, what: str, maximum: int) -> None:
        """Count one ``what`` event; more than ``maximum`` in the window is a flood."""
        now = self._now()
        q = self._counts.get(what)
        if q is None:
            q = self._counts[what] = collections.deque()
        q.append(now)
        horizon = now - self.limits.flood_window
        while q and q[0] < horizon:
            q.popleft()
        if len(q) > maximum:
            raise GateError(ENHANCE_YOUR_CALM, f"{what}_flood", limit=_FLOOD_LIMITS.get(what, what),
                            value=len(q), maximum=maximum)

    def feed(self, data: bytes) -> list[Any]:
        out: list[Any] = []
        i, n = 0, len(data)
        if self._pre:
            k = min(self._pre, n)
            start = len(PREFACE) - self._pre
            if data[:k] != PREFACE[start:start + k]:
                raise GateError(PROTOCOL_ERROR, "bad_preface")
            self._pre -= k
            i = k
        lim = self.limits
        # The pass-through run is ``prefix + data[run:]``; ``prefix`` holds the bytes
        # of a frame header that began in the previous feed (never shown to h2 before
        # we know the frame is not a GOAWAY).
        prefix = b""
        run = 0  # the preface goes to h2 too (the server side checks it again)
        while i < n:
            if self._skip:
                k = min(self._skip, n - i)
                self._skip -= k
                if self._goaway is not None:
                    self._goaway += data[i:i + k]
                    i += k
                    if not self._skip:
                        self._goaway_done(out)
                        run = i
                    continue
                i += k
                continue
            if not self._hdr and i + 9 <= n and data[i + 3] != GOAWAY:
                # the common case: a whole header in place, not a GOAWAY (the path
                # below, without its copies)
                length = int.from_bytes(data[i:i + 3], "big")
                if length > lim.max_frame_size:
                    raise GateError(FRAME_SIZE_ERROR, "frame_too_large", limit="max_frame_size",
                                    value=length, maximum=lim.max_frame_size)
                ftype = data[i + 3]
                if ftype or not length:  # a DATA frame with a payload counts nothing
                    self._frame(ftype, data[i + 4], length)
                i += 9
                k = n - i
                if length <= k:
                    i += length
                else:
                    self._skip = length - k
                    i = n
                continue
            held = self._hdr
            hbeg = i
            need = 9 - len(held)
            h = held + data[i:i + need]
            i = min(i + need, n)
            if len(h) < 9:
                self._hdr = h
                if hbeg > run or prefix:
                    out.append(prefix + data[run:hbeg])
                return [p for p in out if p]
            self._hdr = b""
            length = int.from_bytes(h[:3], "big")
            ftype, flags = h[3], h[4]
            if length > lim.max_frame_size:
                raise GateError(FRAME_SIZE_ERROR, "frame_too_large", limit="max_frame_size",
                                value=length, maximum=lim.max_frame_size)
            if ftype == GOAWAY:
                if length < 8:
                    raise GateError(FRAME_SIZE_ERROR, "bad_goaway")
                # hand h2 what came before; this frame is ours alone
                if hbeg > run or prefix:
                    out.append(prefix + data[run:hbeg])
                prefix = b""
                self._goaway = bytearray()
                self._skip = length
                continue
            if held:
                prefix = held
            self._frame(ftype, flags, length)
            self._skip = length
        if self._goaway is None and (n > run or prefix):
            if not out and not prefix and not run:
                return [data] if data else []
            out.append(prefix + data[run:] if prefix or run else data)
        return [p for p in out if p]

    def _goaway_done(self, out: list) -> None:
        p = bytes(self._goaway)
        self._goaway = None
        out.append((int.from_bytes(p[:4], "big") & 0x7FFFFFFF, int.from_bytes(p[4:8], "big")))

    def _frame(self, ftype: int, flags: int, length: int) -> None:
        lim = self.limits
        if ftype == DATA:
            if length == 0 and not flags & END_STREAM:
                self.count("empty_frame", lim.empty_frames_per_window)
        elif ftype == HEADERS or ftype == PUSH_PROMISE:
            if length == 0 and not flags & END_STREAM:
                self.count("empty_frame", lim.empty_frames_per_window)
            if not flags & END_HEADERS:
                self._in_block = True
                self._block_bytes = length
                self.block_started = self._now()
                self._check_block()
        elif ftype == CONTINUATION:
            if self._in_block:
                self._block_bytes += length
                self._check_block()
                if length == 0 and not flags & END_HEADERS:
                    self.count("empty_frame", lim.empty_frames_per_window)
                if flags & END_HEADERS:
                    self._in_block = False
                    self.block_started = None
        elif ftype == PING:
            if not flags & ACK:
                self.count("ping", lim.pings_per_window)
        elif ftype == SETTINGS:
            if not flags & ACK:
                self.count("settings", lim.settings_per_window)
        elif ftype == RST_STREAM:
            self.count("rst_stream", lim.resets_per_window)
        elif ftype == PRIORITY:
            self.count("priority", lim.priority_per_window)
        elif ftype == WINDOW_UPDATE:
            self.count("window_update", lim.window_updates_per_window)

    def _check_block(self) -> None:
        cap = 4 * self.limits.max_header_list_size
        if self._block_bytes > cap:
            raise GateError(ENHANCE_YOUR_CALM, "continuation_flood",
                            limit="max_header_list_size (x4 for a header block)",
                            value=self._block_bytes, maximum=cap)


class Writer:
    """The outbound queue (see the module docstring). ``broken`` is set (with the
    reason) once a write failed or timed out; later writes are dropped."""

    __slots__ = ("stream", "send_timeout", "buf", "sending", "broken", "drained",
                 "bytes_queued", "_nowait", "_streak")

    #: writes completed by ``send_nowait`` in a row before the writer yields once
    #: (the fairness ``send_all`` keeps for a transport that is always ready)
    FAIR_STREAK = 64

    def __init__(self, stream: Any, send_timeout: float):
        self.stream = stream
        self.send_timeout = send_timeout
        self.buf = bytearray()
        self.sending = False
        self.broken: str | None = None
        self.drained = ll.WaitQueue()
        self.bytes_queued = 0
        #: the transport's never-blocking write: only from a stream whose class has
        #: one (``None`` for TLS). A wrapper that forwards unknown attributes to the
        #: stream it wraps (``__getattr__``) would hand out the inner stream's, and
        #: bytes written through it would bypass the wrapper's ``send_all``.
        self._nowait = (getattr(stream, "send_nowait", None)
                        if getattr(type(stream), "send_nowait", None) is not None else None)
        self._streak = 0

    @property
    def pending(self) -> int:
        """Bytes queued and not yet handed to the transport."""
        return len(self.buf)

    def queue(self, data: bytes) -> None:
        """Queue ``data`` without sending it (the next ``write`` sends it). Not a
        checkpoint: for callers that must not block (drain hooks, close paths)."""
        if self.broken is None and data:
            self.buf += data
            self.bytes_queued += len(data)

    def write(self, data: bytes) -> None:
        """Queue ``data`` and, unless another task is already sending, send the queue.

        When this call sends: what the transport takes at once (``send_nowait``) is
        sent without blocking, and every ``FAIR_STREAK``-th such write yields to the
        other tasks (no cancellation is delivered there); the rest is sent masked,
        bounded by ``send_timeout``, a checkpoint. Either way a cancellation is
        delivered at the caller's next checkpoint and the wire never carries half a
        frame."""
        if self.broken is not None:
            return
        if data:
            self.buf += data
            self.bytes_queued += len(data)
        if self.sending or not self.buf:
            return
        self.sending = True
        fair = False
        try:
            nowait = self._nowait
            if nowait is not None:
                out = bytes(self.buf)
                try:
                    n = nowait(out)
                except greenrt.WouldBlock:
                    n = 0
                if n == len(out):
                    self.buf.clear()
                    self._streak += 1
                    fair = self._streak >= self.FAIR_STREAK
                else:
                    del self.buf[:n]
            if self.buf:
                self._streak = 0
                with greenrt.masked(name="http2.send"):
                    with greenrt.move_on_after(self.send_timeout,
                                               name="http2.send_timeout") as sc:
                        while self.buf:
                            out = bytes(self.buf)
                            self.buf.clear()
                            self.stream.send_all(out)
                if sc.cancelled_caught:
                    self.broken = "send_timeout"
        except (net.StreamError, greenrt.ClosedResourceError, OSError) as e:
            self.broken = f"send failed: {type(e).__name__}"
        finally:
            self.sending = False
            self.drained.wake_all()
        if self.broken is not None:
            self.buf.clear()
        elif fair:
            self._streak = 0
            ll.yield_now()

    def wait_drained(self, below: int) -> None:
        """Block until fewer than ``below`` bytes are queued (or the writer broke).
        A checkpoint; cancellation leaves the queue as it was."""
        while self.buf and len(self.buf) >= below and self.broken is None:
            if not self.sending:
                self.write(b"")
                continue
            self.drained.park(what="http2.send_queue")
