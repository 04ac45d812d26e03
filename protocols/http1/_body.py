"""The part of a streamed HTTP/1 body that the server's request body and the client's
response body share: the bookkeeping of a body pulled from a connection's parser in
``h11.Data`` pieces, handed out in reads of at most ``max_bytes``.

A piece larger than the caller asked for is split, and the rest is kept in
``_pending`` for the next read, so a read that is cancelled after its piece arrived
loses nothing. ``complete`` is true once the end of the message was seen and nothing is
left pending; ``trailers`` is then the trailer section of a chunked body (what the
subclass stored in ``_trailers``). Subclasses implement ``read``: they serve ``_take_pending`` first, then
pull the next piece from their connection and pass it through ``_split``.
"""

from __future__ import annotations

from ..http.model import Body, Headers


class PulledBody(Body):
    __slots__ = ("_pending", "_done", "_length", "_trailers")

    def __init__(self, length: int | None, empty: bool):
        self._pending = b""
        self._done = empty
        self._length = length
        self._trailers: Headers | None = None  # set at the end of a chunked body

    @property
    def trailers(self) -> Headers | None:
        """``None`` until the body is read to its end, then the trailer fields (empty
        ``Headers`` if none). Not a checkpoint."""
        if not (self._done and not self._pending):
            return None
        t = self._trailers
        return t if t is not None else Headers()

    @property
    def complete(self) -> bool:
        return self._done and not self._pending

    @property
    def content_length(self) -> int | None:
        return self._length

    def _take_pending(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` of what an earlier piece left over (``b""`` if none)."""
        p = self._pending
        if len(p) <= max_bytes:
            self._pending = b""
            return p
        self._pending = p[max_bytes:]
        return p[:max_bytes]

    def _split(self, data: bytes, max_bytes: int) -> bytes:
        """The first ``max_bytes`` of a new piece; the rest is kept for the next read."""
        if len(data) > max_bytes:
            self._pending = data[max_bytes:]
            return data[:max_bytes]
        return data
