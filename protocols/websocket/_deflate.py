"""permessage-deflate (RFC 7692) with a bound on the inflated size.

wsproto's ``PerMessageDeflate`` inflates without a limit (a 200 kB frame becomes a
200 MB message). This subclass inflates with ``decompress(data, max_length)`` where
``max_length`` is the room left in the message plus one: zlib never produces more,
so a bomb costs at most ``max_message_bytes + 1`` bytes before we close 1009.
Imports no greenrt (a codec module).
"""

from __future__ import annotations

import zlib

from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason

__all__ = ["BoundedPerMessageDeflate"]


class BoundedPerMessageDeflate(PerMessageDeflate):
    """``PerMessageDeflate`` whose inbound messages inflate to at most
    ``max_message_bytes``; ``overflowed`` is set when that closed the connection."""

    def __init__(self, *, max_message_bytes: int, **kw) -> None:
        super().__init__(**kw)
        self.max_message_bytes = max_message_bytes
        self.overflowed = False
        self.inflated = 0              # inflated bytes of the current message

    def _inflate(self, data: bytes) -> bytes | CloseReason:
        room = self.max_message_bytes - self.inflated
        try:
            out = self._decompressor.decompress(data, room + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self.inflated += len(out)
        if self.inflated > self.max_message_bytes:
            # unconsumed_tail is left in the decompressor; the connection is done.
            self.overflowed = True
            return CloseReason.MESSAGE_TOO_BIG
        return out

    def frame_inbound_payload_data(self, proto, data):
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        return self._inflate(bytes(data))

    def frame_inbound_complete(self, proto, fin):
        if not fin:
            return None
        if not self._inbound_is_compressible or not self._inbound_compressed:
            self._inbound_compressed = None
            return None
        data = self._inflate(b"\x00\x00\xff\xff")
        if isinstance(data, CloseReason):
            return data
        self.inflated = 0
        if proto.client:
            no_context_takeover = self.server_no_context_takeover
        else:
            no_context_takeover = self.client_no_context_takeover
        if no_context_takeover:
            self._decompressor = None
        self._inbound_compressed = None
        return data
