"""The errors the Redis client raises.

Two families, kept apart on purpose:

* **Reply errors** (``ReplyError`` and subclasses) are *values the server sent*
  (``-ERR ...`` / ``!...``). The connection is fine afterwards. The codec returns them
  as values (it never raises them), so a pipeline can report one error per command;
  the command layer raises them for single commands.
* **Everything else** says something about the *connection or the call*: a
  ``ProtocolError`` (the byte stream is not valid RESP or breaks a configured limit;
  the connection is closed, never reused), a ``RedisConnectionError`` (the transport
  failed), ``OutcomeUnknown`` (a command that is not safe to repeat may or may not
  have run; it is never retried), pool and cluster errors.

``greenrt.Cancelled`` is not in this module: a cancelled call raises ``Cancelled``
and the connection it was using is dealt with as the cancel-safety contract in
``protocols.redis.client`` says.
"""

from __future__ import annotations

from greenrt.protocols import base

__all__ = [
    "AskError", "AuthenticationError", "BusyError", "ClusterDownError", "ClusterError",
    "CrossSlotError", "DataError", "ExecAbortError", "FrameTooLarge", "LimitError",
    "LoadingError", "MalformedFrame", "MovedError", "NoPermissionError", "NoScriptError",
    "OutcomeUnknown", "PoolClosed", "PoolTimeout", "ProtocolError", "PubSubLagged",
    "ReadOnlyError", "RedisConnectionError", "RedisError", "ReplyError", "SlotNotCovered",
    "TooManyRedirects", "TryAgainError", "WatchError", "WrongTypeError", "reply_error",
]


class RedisError(base.Error):
    """Base class of every error raised by ``protocols.redis`` (a ``base.Error``)."""

    protocol = "redis"


# -- the byte stream ---------------------------------------------------------------------


class ProtocolError(RedisError, base.ProtocolError):
    """The peer sent bytes that are not valid RESP, or that break a configured limit.

    Raised by the sans-IO codec. After it, the decoder is dead (every later call
    raises the same error) and the client closes the connection: a stream whose
    framing is in doubt is never reused.
    """


class MalformedFrame(ProtocolError):
    """Syntactically invalid RESP (unknown type byte, bad length, missing CRLF, ...)."""

    code = "malformed_frame"


class LimitError(ProtocolError, base.LimitError):
    """A frame broke one of the codec's limits (keyword-only: ``limit`` names which,
    ``value`` is what was declared or seen, ``maximum`` the configured bound; also a
    ``greenrt.LimitExceeded``). Raised *before* anything sized by the untrusted number
    is allocated or waited for."""


class FrameTooLarge(LimitError):
    """The frame (or a bulk string, aggregate, line or nesting level in it) is too big."""

    code = "frame_too_large"


# -- transport and call outcome -----------------------------------------------------------


class RedisConnectionError(RedisError, base.ConnectionLost):
    """Connecting failed, or the connection broke (EOF, reset, closed under us)."""


class OutcomeUnknown(RedisConnectionError, base.OutcomeUnknown):
    """The connection broke after a command was sent and before its reply arrived.

    The command may or may not have run on the server. It is *not* retried when it
    is not idempotent (``SET``, ``INCR``, ``LPUSH``, ``EXEC``...): sending it twice
    could apply it twice. ``command`` names it.
    """

    def __init__(self, message: str, command: str | None = None):
        super().__init__(message)
        self.command = command
        self.operation = command


class DataError(RedisError, base.UsageError, TypeError):
    """An argument cannot be encoded as a RESP bulk string (``None``, ``bool``,
    a nested list ...). Raised before anything is sent."""


class PoolTimeout(RedisError, base.PoolTimeout):
    """No connection became available within the pool's ``acquire_timeout``."""


class PoolClosed(RedisError, base.PoolClosed):
    """The pool (or client) was closed."""


class PubSubLagged(RedisError):
    """The subscriber fell behind: its bounded backlog overflowed and ``missed``
    messages were dropped (the oldest ones). Raised once by the next receive call;
    the one after it returns the oldest message still kept."""

    def __init__(self, missed: int):
        super().__init__(f"pub/sub backlog overflowed: {missed} message(s) dropped")
        self.missed = missed


class WatchError(RedisError):
    """``EXEC`` returned a null reply: a watched key changed, nothing was executed."""


# -- cluster --------------------------------------------------------------------------------


class ClusterError(RedisError):
    """Base class of cluster routing errors."""


class TooManyRedirects(ClusterError):
    """More ``MOVED``/``ASK`` redirects than ``max_redirects`` for one command."""


class SlotNotCovered(ClusterError):
    """No node serves the slot (the slot map has a hole)."""


class CrossSlotError(ClusterError, DataError):
    """A multi-key command or a transaction touches keys in more than one slot."""


# -- reply errors ---------------------------------------------------------------------------


class ReplyError(RedisError):
    """An error reply from the server. ``code`` is its first word (``ERR``,
    ``WRONGTYPE``, ...), ``message`` the whole text. The connection stays usable."""

    code: str
    message: str

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
        self.code = message.split(" ", 1)[0] if message else ""

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.message == self.message

    def __hash__(self) -> int:
        return hash((type(self), self.message))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class WrongTypeError(ReplyError):
    """``WRONGTYPE``: the key holds another type."""


class NoScriptError(ReplyError):
    """``NOSCRIPT``: ``EVALSHA`` for a script the server does not have."""


class ExecAbortError(ReplyError):
    """``EXECABORT``: a queued command was rejected, the transaction was discarded."""


class AuthenticationError(ReplyError):
    """``NOAUTH`` / ``WRONGPASS``: authentication required or failed."""


class NoPermissionError(ReplyError):
    """``NOPERM``: the ACL user may not run this command or touch this key."""


class ReadOnlyError(ReplyError):
    """``READONLY``: a write was sent to a replica."""


class LoadingError(ReplyError):
    """``LOADING``: the server is loading its dataset."""


class BusyError(ReplyError):
    """``BUSY``: a script is running."""


class TryAgainError(ReplyError):
    """``TRYAGAIN``: a multi-key command during a slot migration; retry later."""


class ClusterDownError(ReplyError):
    """``CLUSTERDOWN``: the cluster cannot serve the request."""


class MovedError(ReplyError):
    """``MOVED slot host:port``: the slot lives on another node (permanently)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.slot, self.host, self.port = _parse_redirect(message)


class AskError(ReplyError):
    """``ASK slot host:port``: the key is being migrated; ask the target node once."""

    def __init__(self, message: str):
        super().__init__(message)
        self.slot, self.host, self.port = _parse_redirect(message)


def _parse_redirect(message: str) -> tuple[int, str, int]:
    # "MOVED 3999 127.0.0.1:6381"; IPv6 hosts contain colons, so split at the last one.
    parts = message.split(" ")
    try:
        slot = int(parts[1])
        host, _, port = parts[2].rpartition(":")
        return slot, host, int(port)
    except (IndexError, ValueError):
        return -1, "", 0


_BY_CODE: dict[str, type[ReplyError]] = {
    "WRONGTYPE": WrongTypeError,
    "NOSCRIPT": NoScriptError,
    "EXECABORT": ExecAbortError,
    "NOAUTH": AuthenticationError,
    "WRONGPASS": AuthenticationError,
    "NOPERM": NoPermissionError,
    "READONLY": ReadOnlyError,
    "LOADING": LoadingError,
    "BUSY": BusyError,
    "TRYAGAIN": TryAgainError,
    "CLUSTERDOWN": ClusterDownError,
    "MOVED": MovedError,
    "ASK": AskError,
}


def reply_error(message: str) -> ReplyError:
    """The ``ReplyError`` subclass for an error reply's text."""
    code = message.split(" ", 1)[0]
    cls = _BY_CODE.get(code, ReplyError)
    return cls(message)
