"""The errors the NATS client raises.

* ``ProtocolError`` (and ``LimitError``): the server's byte stream is not valid NATS
  client protocol, or breaks a limit (a control line longer than ``max_control_line``,
  a payload above the server's ``max_payload``, a bad payload terminator, an INFO that
  is not a JSON object). Raised by the sans-IO codec; the connection is closed and the
  client reconnects. It never resynchronises into the next operation.
* ``NatsConnectionError``: connecting failed or the connection broke;
  ``OutcomeUnknown``: a request was sent and its reply is lost.
* ``ServerError``: the server sent ``-ERR``; ``AuthorizationError`` for an
  authentication or authorization failure.
* ``SlowConsumer``: a subscription's bounded queue overflowed and messages were
  dropped (``dropped`` says how many); raised once by the next ``next_msg``.
* ``PendingBufferFull``: a publish while disconnected did not fit in the bounded
  pending-publish buffer; nothing of it was buffered.
* ``NoResponders``, ``RequestTimeout``: a request found nobody listening, or no reply
  came within its budget.
* ``JetStreamError``: the JetStream API answered with an error (``code``,
  ``err_code``, ``description``).
* ``ObjectNotFound``: the object store has no live object of that name;
  ``ObjectCorrupt``: an object's meta or chunks do not agree (``reason``);
  ``ObjectTooLarge``: an object's declared size is above the reader's ``max_size``.
"""

from __future__ import annotations

from greenrt import LimitExceeded
from greenrt.protocols import base

__all__ = [
    "AuthorizationError", "ClientClosed", "JetStreamError", "KeyNotFound", "KeyWrongRevision",
    "LimitError", "NatsConnectionError", "NatsError", "NoResponders", "ObjectCorrupt",
    "ObjectNotFound", "ObjectTooLarge", "OutcomeUnknown",
    "PendingBufferFull", "ProtocolError", "RequestTimeout", "ServerError", "SlowConsumer",
    "UsageError",
]


class NatsError(base.Error):
    """Base class of every error raised by ``protocols.nats`` (a ``base.Error``)."""

    protocol = "nats"


class ProtocolError(NatsError, base.ProtocolError):
    """The server broke the NATS client protocol; the connection is closed (and the
    client reconnects). ``code``: ``bad_control_line``, ``bad_terminator``,
    ``bad_info``, ``bad_headers``, ``unknown_op``..."""


class LimitError(ProtocolError, base.LimitError):
    """A limit of the codec was exceeded (``limit``: ``max_control_line``,
    ``max_payload``, ``max_info_bytes``...), detected before anything sized by the
    untrusted number is allocated or waited for."""


class NatsConnectionError(NatsError, base.ConnectionLost):
    """Connecting failed, or the connection broke (EOF, reset, closed under us)."""


class OutcomeUnknown(NatsConnectionError, base.OutcomeUnknown):
    """A request was published and the connection broke before its reply arrived."""


class ClientClosed(NatsConnectionError):
    """The client is closed (or draining): no new publishes or subscriptions."""

    code = "closed"


class ServerError(NatsError):
    """The server sent ``-ERR``; ``message`` is its text."""

    code = "server_error"


class AuthorizationError(ServerError):
    """Authentication or authorization failed (``-ERR 'Authorization Violation'``,
    ``'Authentication Timeout'``...), or the configured credentials cannot be used."""

    code = "authorization"


class SlowConsumer(NatsError):
    """A subscription's bounded queue was full and ``dropped`` messages were dropped
    (counted since the last time this was raised)."""

    code = "slow_consumer"
    dropped: int = 0
    subject: str | None = None


class PendingBufferFull(NatsError, LimitExceeded):
    """Disconnected, and the publish does not fit in the pending-publish buffer
    (``limit='pending_size'``); nothing of it was buffered."""

    code = "pending_buffer_full"

    def __init__(self, message: str = "", *, value: int, maximum: int) -> None:
        self.limit = "pending_size"
        self.value = value
        self.maximum = maximum
        NatsError.__init__(self, message or f"nats: pending_size exceeded: {value} > {maximum} "
                           "(disconnected; the publish was not buffered)")


class NoResponders(NatsError):
    """The request's subject has no subscribers (the server's 503 status)."""

    code = "no_responders"


class RequestTimeout(NatsError, TimeoutError):
    """No reply within the request's budget."""

    code = "timeout"


class UsageError(NatsError, base.UsageError):
    """Local misuse of the API (bad subject, headers with CR/LF, ...)."""


#: JetStream API ``err_code`` values the client tells apart (from nats-server's
#: errors.json): no message matches a stream message get, and a publish's expected
#: last subject sequence differs.
ERR_NO_MESSAGE = 10037
ERR_WRONG_LAST_SEQ = 10071


class JetStreamError(NatsError):
    """The JetStream API answered with an error."""

    code = "jetstream"
    status: int | None = None
    err_code: int | None = None
    description: str | None = None


class KeyNotFound(JetStreamError):
    """The key-value bucket has no (live) value for the key."""

    code = "key_not_found"


class KeyWrongRevision(JetStreamError):
    """``update``/``create`` found a different last revision for the key."""

    code = "wrong_revision"


class ObjectNotFound(JetStreamError):
    """The object store has no object of that name, or it was deleted."""

    code = "object_not_found"


class ObjectCorrupt(NatsError):
    """An object's stored meta or chunks cannot be trusted: the meta is not valid
    JSON of the expected shape, or the chunks read total more or fewer bytes than its
    ``size``, are a different number than its ``chunks``, or do not match its
    ``digest``. ``reason``: ``bad_meta``, ``too_many_bytes``, ``too_few_bytes``,
    ``chunk_count``, ``digest``. Nothing read is returned."""

    code = "object_corrupt"

    def __init__(self, message: str = "", *, reason: str = "bad_meta") -> None:
        self.reason = reason
        NatsError.__init__(self, message or f"nats: object corrupt ({reason})")


class ObjectTooLarge(NatsError, LimitExceeded):
    """An object's declared size is above the reader's ``max_size``
    (``limit='max_size'``); refused before any chunk is read."""

    code = "object_too_large"

    def __init__(self, message: str = "", *, value: int, maximum: int) -> None:
        self.limit = "max_size"
        self.value = value
        self.maximum = maximum
        NatsError.__init__(self, message or f"nats: object of {value} bytes exceeds "
                           f"max_size {maximum}")
