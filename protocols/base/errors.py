"""One error hierarchy for every protocol.

::

    Error                              any error raised by greenrt.protocols
    ├── ProtocolError                  the peer broke the protocol; the connection is done
    │   └── LimitError                 ... by exceeding a configured limit
    │                                  (also greenrt.LimitExceeded)
    ├── ConnectionLost                 the transport failed or closed (also ConnectionError)
    │   └── OutcomeUnknown             a request was sent and its reply is lost: it may or
    │                                  may not have taken effect; never retried blindly
    ├── PoolTimeout                    no pooled connection within the budget (also TimeoutError)
    ├── PoolClosed                     the pool was closed
    └── UsageError                     local misuse of an API (also RuntimeError), never a
                                       peer fault

Each protocol subclasses these once, under its own base (``RedisError(Error)``,
``HTTPError(Error)``…), setting ``protocol``; a protocol's ``ProtocolError`` derives
both its own base and :class:`ProtocolError`, so ``except base.ProtocolError`` catches
a peer fault of any protocol.

Every instance carries ``protocol`` (``"redis"``, ``"http1"``…), ``code`` (a short
stable reason code that trace events and tests use: ``frame_too_large``,
``cl_te_conflict``…) and ``message`` (for humans; it never contains more of the
offending bytes than a short escaped excerpt). Keyword arguments to the constructor
set attributes the class declares (``HTTPError(status=413)``); an unknown keyword is a
``TypeError``, so a typo cannot pass silently.
"""

from __future__ import annotations

from typing import Any

from greenrt import LimitExceeded

__all__ = [
    "ConnectionLost", "Error", "LimitError", "MissingDependency", "OutcomeUnknown", "PoolClosed",
    "PoolTimeout", "ProtocolError", "UsageError", "require_extra",
]


class Error(Exception):
    """Base of every error raised by ``greenrt.protocols``."""

    #: the protocol's short name; each protocol's base class sets it
    protocol: str = "protocol"
    #: a short, stable reason code
    code: str = "error"

    def __init__(self, message: str = "", *, code: str | None = None, **attrs: Any) -> None:
        if not message:
            doc = type(self).__doc__ or type(self).__name__
            message = doc.strip().split("\n")[0].strip()
        # Exception.__init__ directly, not super(): in a diamond with
        # greenrt.LimitExceeded the next __init__ would take ``message`` for ``limit``.
        Exception.__init__(self, message)
        self.message = message
        if code is not None:
            self.code = code
        for name, value in attrs.items():
            if not hasattr(type(self), name):
                raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument {name!r}")
            setattr(self, name, value)

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r})"


class ProtocolError(Error):
    """The peer violated the protocol. The connection cannot be used again."""

    code = "protocol_error"


class LimitError(ProtocolError, LimitExceeded):
    """A configured limit was exceeded by the peer.

    ``limit`` names the limit (the field of the protocol's ``Limits``: ``max_head_bytes``),
    ``value`` is what was seen (``None`` when only "more than the maximum" is known, as
    when a read stops at the limit) and ``maximum`` the configured bound. The default
    message says all three: ``redis: max_bulk_bytes exceeded: 70000000 > 67108864``.
    """

    code = "limit_exceeded"

    def __init__(self, message: str = "", *, limit: str, value: Any = None, maximum: Any = None,
                 code: str | None = None, **attrs: Any) -> None:
        self.limit = limit
        self.value = value
        self.maximum = maximum
        if not message:
            message = limit_message(self.protocol, limit, value, maximum)
        Error.__init__(self, message, code=code, **attrs)


def limit_message(protocol: str, limit: str, value: Any, maximum: Any) -> str:
    """``"<protocol>: <limit> exceeded: <value> > <maximum>"``, or ``"... exceeded (more
    than <maximum>)"`` when the observed value is not known (``": <value>"`` when the
    maximum is not); never ``None``."""
    if value is None:
        seen = "" if maximum is None else f" (more than {maximum})"
    else:
        seen = f": {value}" if maximum is None else f": {value} > {maximum}"
    return f"{protocol}: {limit} exceeded{seen}"


class ConnectionLost(Error, ConnectionError):
    """The connection failed or was closed before the exchange completed."""

    code = "connection_lost"


class OutcomeUnknown(ConnectionLost):
    """A request was written, and its reply was lost (the connection broke, or the
    caller was cancelled while the reply was in flight). The request may or may not
    have taken effect; the client never re-sends it on its own. ``operation`` names it."""

    code = "outcome_unknown"
    operation: str | None = None


class PoolTimeout(Error, TimeoutError):
    """No pooled connection became available within the caller's budget."""

    code = "pool_timeout"


class PoolClosed(Error):
    """The pool is closed: no new leases."""

    code = "pool_closed"


class UsageError(Error, RuntimeError):
    """The application misused the API (a bug in local code, not a peer fault)."""

    code = "usage_error"


class MissingDependency(ImportError):
    """A protocol needs an optional package that is not installed. ``name`` is the
    missing module, ``package`` its distribution, ``extra`` the greenrt extra that
    installs it; the message says ``pip install 'greenrt[<extra>]'``."""

    def __init__(self, feature: str, module: str, package: str, extra: str) -> None:
        super().__init__(f"{feature} needs the {package!r} package, which is not installed: "
                         f"pip install 'greenrt[{extra}]' (or pip install {package})",
                         name=module)
        self.feature = feature
        self.package = package
        self.extra = extra


def require_extra(feature: str, extra: str, *packages: tuple[str, str]) -> None:
    """Check, at the import of ``feature`` (a protocol package), that every
    ``(module, distribution)`` in ``packages`` can be imported; raise
    :class:`MissingDependency` naming ``extra`` for the first that cannot. Uses
    ``importlib.util.find_spec``: nothing is imported here."""
    import importlib.util

    for module, package in packages:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a parent package missing, or blocked
            found = False
        if not found:
            raise MissingDependency(feature, module, package, extra)
