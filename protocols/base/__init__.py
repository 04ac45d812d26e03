"""The protocol floor: what every protocol in ``greenrt.protocols`` stands on.

One error hierarchy (:mod:`.errors`), one sans-IO convention (:mod:`.sansio`), one
limits base (:mod:`.limits`), one trace-event naming scheme (:mod:`.events`), one
connection pool with the unread-bytes rule (:mod:`.pool`) and one way to connect
(:mod:`.connect`: TCP + TLS + SNI + ALPN under one budget). See
``docs/architecture.md``.

Rules for a protocol module that uses the floor:

* its errors subclass the floor's (``class RedisError(base.Error)``, and a
  protocol's ``ProtocolError`` also derives ``base.ProtocolError``), so generic code
  can catch "any peer fault" or "any limit" without knowing the protocol;
* its sans-IO codec follows :mod:`.sansio` and imports no greenrt;
* its limits are a frozen dataclass deriving :class:`.Limits`;
* its trace events are named by :func:`.events.protocol_error` and
  ``<protocol>.<event>``.
"""

from .connect import Connected, connect
from .errors import (
    ConnectionLost,
    Error,
    LimitError,
    MissingDependency,
    OutcomeUnknown,
    PoolClosed,
    PoolTimeout,
    ProtocolError,
    UsageError,
)
from .events import emit_event, emit_protocol_error
from .limits import Limits
from .pool import Lease, Pool, PooledConnection, unread_reason
from .sansio import NEED_DATA, NeedData, StickyError

__all__ = [
    "NEED_DATA", "Connected", "ConnectionLost", "Error", "Lease", "LimitError", "Limits",
    "MissingDependency", "NeedData", "OutcomeUnknown", "Pool", "PoolClosed", "PoolTimeout", "PooledConnection",
    "ProtocolError", "StickyError", "UsageError", "connect", "emit_event",
    "emit_protocol_error", "unread_reason",
]
