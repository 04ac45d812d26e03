"""The server's keepalive ping policy (sans-IO: no greenrt; the caller passes the
time).

grpc-core's rule (doc/keepalive.md, ``GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS``
and ``GRPC_ARG_HTTP2_MAX_PING_STRIKES``): a PING received sooner than
``min_ping_interval`` after the previous one, while the server has sent no HEADERS or
DATA since, is a *strike*; sending HEADERS or DATA clears the strikes; more than
``max_ping_strikes`` strikes and the server sends GOAWAY(ENHANCE_YOUR_CALM) with debug
data ``too_many_pings`` and closes the connection.

:class:`PingPolicy` walks frame headers of both directions without buffering
payloads (total over any segmentation): ``inbound(data, now)`` returns ``True`` when
the connection must end; ``outbound(data)`` notes HEADERS/DATA we send;
``goaway()`` is the frame to send, naming the highest stream id the peer opened.
An HTTP/2 server that sees the PINGs itself calls ``on_ping(now, sends)`` instead
(``sends``: a count of the HEADERS and DATA it has sent), with no byte walking.
"""

from __future__ import annotations

__all__ = ["PingPolicy", "goaway_frame"]

_DATA, _HEADERS, _PING, _GOAWAY = 0, 1, 6, 7
_PREFACE_LEN = 24
ENHANCE_YOUR_CALM = 0xB


def goaway_frame(last_stream_id: int, error_code: int, debug: bytes = b"") -> bytes:
    payload = (last_stream_id & 0x7FFFFFFF).to_bytes(4, "big") + error_code.to_bytes(4, "big") \
        + debug
    return len(payload).to_bytes(3, "big") + bytes((_GOAWAY, 0)) + b"\0\0\0\0" + payload


class _Walker:
    """Frame headers of one direction: calls ``on_frame(type, flags, stream_id)``."""

    __slots__ = ("_skip", "_hdr", "_pre")

    def __init__(self, preface: int = 0):
        self._pre = preface
        self._skip = 0
        self._hdr = b""

    def feed(self, data, on_frame) -> None:
        i, n = 0, len(data)
        if self._pre:
            i = min(self._pre, n)
            self._pre -= i
        if self._skip and i < n:
            k = min(self._skip, n - i)
            self._skip -= k
            i += k
        if self._hdr and i < n:
            # complete a header split across calls
            need = 9 - len(self._hdr)
            self._hdr += bytes(data[i:i + need])
            i += need
            if len(self._hdr) < 9:
                return
            h, self._hdr = self._hdr, b""
            length = int.from_bytes(h[:3], "big")
            on_frame(h[3], h[4], int.from_bytes(h[5:9], "big") & 0x7FFFFFFF)
            k = min(length, n - i)
            i += k
            self._skip = length - k
        # whole headers in place, no copies: the common case of one read = whole frames
        while i + 9 <= n:
            length = int.from_bytes(data[i:i + 3], "big")
            on_frame(data[i + 3], data[i + 4], int.from_bytes(data[i + 5:i + 9], "big") & 0x7FFFFFFF)
            i += 9 + length
        if i > n:
            self._skip = i - n
        elif i < n:
            self._hdr = bytes(data[i:])


class PingPolicy:
    """See the module docstring. ``min_ping_interval`` in seconds (``None``: pings are
    never strikes)."""

    __slots__ = ("min_ping_interval", "max_ping_strikes", "strikes", "last_ping",
                 "last_stream_id", "tripped", "_in", "_out", "_now", "_sends")

    def __init__(self, min_ping_interval: float | None = 300.0, max_ping_strikes: int = 2):
        self.min_ping_interval = min_ping_interval
        self.max_ping_strikes = max_ping_strikes
        self.strikes = 0
        self.last_ping: float | None = None
        self.last_stream_id = 0
        self.tripped = False
        self._in = _Walker(_PREFACE_LEN)
        self._out = _Walker()
        self._now = 0.0
        self._sends = 0

    def inbound(self, data, now: float) -> bool:
        """Note received bytes; True once the policy says: GOAWAY and close."""
        self._now = now
        self._in.feed(data, self._on_in)
        return self.tripped

    def _on_in(self, ftype: int, flags: int, sid: int) -> None:
        if ftype == _HEADERS and sid > self.last_stream_id:
            self.last_stream_id = sid
        elif ftype == _PING and not flags & 1:
            self._ping(self._now)

    def on_ping(self, now: float, sends: int) -> bool:
        """A PING (not an ACK) received at ``now``, the server having sent ``sends``
        HEADERS/DATA so far (a change since the last PING clears the strikes, as
        ``outbound`` does). True once the policy says: GOAWAY and close."""
        if sends != self._sends:
            self._sends = sends
            self.strikes = 0
            self.last_ping = None
        self._ping(now)
        return self.tripped

    def _ping(self, now: float) -> None:
        if (self.min_ping_interval is not None and self.last_ping is not None
                and now - self.last_ping < self.min_ping_interval):
            self.strikes += 1
            if self.strikes > self.max_ping_strikes:
                self.tripped = True
        self.last_ping = now

    def outbound(self, data) -> None:
        """Note bytes we send (whole frames, as an HTTP/2 connection writes them)."""
        out = self._out
        if self.strikes == 0 and self.last_ping is None and not out._skip and not out._hdr:
            return  # nothing to clear, and whole frames leave the walker where it is
        out.feed(data, self._on_out)

    def _on_out(self, ftype: int, flags: int, sid: int) -> None:
        if ftype in (_DATA, _HEADERS):
            self.strikes = 0
            self.last_ping = None

    def goaway(self) -> bytes:
        return goaway_frame(self.last_stream_id, ENHANCE_YOUR_CALM, b"too_many_pings")
