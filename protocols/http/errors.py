"""Typed HTTP errors, each carrying the status a server answers with.

Every way a peer can break the protocol or exceed a limit maps to one class here.
A server catches :class:`HTTPError`, answers ``exc.status`` (when it still can: no
response head has been sent yet) and closes the connection; a client raises the same
classes for a malformed response, where ``status`` only classifies the fault.
``code`` is a short stable reason code (``head_too_large``, ``cl_te_conflict``...)
that goes into ``protocol.error`` trace events and tests; ``message`` is for humans
and never contains the offending bytes beyond a short, escaped excerpt.

The limit errors also derive from ``greenrt.LimitExceeded`` so generic code that
handles "a configured limit was exceeded" catches them; their ``limit``, ``value`` and
``maximum`` attributes say which limit and by how much.

Invariant: an ``HTTPError`` raised by the parser leaves the connection unusable; the
only correct reaction is to answer (if possible) and close. Nothing here is ever
raised for a *local* programming error: those are ``LocalProtocolError`` (a
``ValueError``/``RuntimeError``-like misuse of the API by the application).
"""

from __future__ import annotations

from greenrt.protocols import base
from greenrt.protocols.base.errors import limit_message

__all__ = [
    "BadRequest", "ClientDisconnected", "HTTPError", "HTTPVersionNotSupported", "InvalidURL",
    "UnsupportedScheme",
    "HeaderFieldsTooLarge", "LimitError", "LocalProtocolError", "PayloadTooLarge",
    "ProtocolError", "RequestTimeout", "ServiceUnavailable", "TooManyRedirects",
    "URITooLong", "UnsupportedTransferCoding",
]


class HTTPError(base.Error):
    """Base class. ``status`` is the status code a server answers with (``None`` when
    there is nothing to answer, e.g. the peer is gone); ``code`` a short reason code.
    Part of the protocol floor's hierarchy: ``except greenrt.protocols.base.Error``
    catches it."""

    protocol = "http1"

    status: int | None = 400
    code: str = "http_error"

    def __init__(self, message: str = "", *, code: str | None = None, status: int | None = None):
        # Exception.__init__ directly, not super(): for the limit errors the next
        # __init__ in the MRO is greenrt.LimitExceeded's, which would take the message
        # for the limit's name ("limit 'head exceeds 65536 bytes' exceeded: None > None").
        Exception.__init__(self, message or self.__class__.__doc__.split("\n")[0].strip())
        self.message = str(self.args[0])
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r}, status={self.status})"


class ProtocolError(HTTPError, base.ProtocolError):
    """The peer violated HTTP syntax or framing rules."""

    status = 400
    code = "protocol_error"


class BadRequest(ProtocolError):
    """Malformed request or response (400)."""

    status = 400
    code = "bad_request"


class LimitError(ProtocolError, base.LimitError):
    """A configured HTTP limit was exceeded (``limit``, ``value``, ``maximum``)."""

    def __init__(self, message: str = "", *, limit: str, value=None, maximum=None,
                 code: str | None = None, status: int | None = None):
        if not message:
            message = limit_message(self.protocol, limit, value, maximum)
        HTTPError.__init__(self, message, code=code, status=status)
        self.limit = limit
        self.value = value
        self.maximum = maximum


class PayloadTooLarge(LimitError):
    """The message body exceeds ``max_body_bytes`` (413)."""

    status = 413
    code = "body_too_large"


class URITooLong(LimitError):
    """The request line exceeds ``max_request_line`` (414)."""

    status = 414
    code = "request_line_too_long"


class HeaderFieldsTooLarge(LimitError):
    """The head exceeds ``max_head_bytes`` or has more than ``max_headers`` fields (431)."""

    status = 431
    code = "head_too_large"


class UnsupportedTransferCoding(ProtocolError):
    """A transfer coding other than ``chunked`` (501)."""

    status = 501
    code = "unsupported_transfer_coding"


class HTTPVersionNotSupported(ProtocolError):
    """An HTTP version other than 1.0 or 1.1 (505)."""

    status = 505
    code = "version_not_supported"


class RequestTimeout(HTTPError, TimeoutError):
    """The peer was too slow sending a head or a body (408)."""

    status = 408
    code = "timeout"


class ServiceUnavailable(HTTPError):
    """The handler exceeded its budget or the server is shutting down (503)."""

    status = 503
    code = "unavailable"


class ClientDisconnected(HTTPError, base.ConnectionLost):
    """The peer closed or reset the connection before the exchange was complete."""

    status = None
    code = "disconnected"


class TooManyRedirects(HTTPError):
    """The client followed ``max_redirects`` redirects without reaching a final response."""

    status = None
    code = "too_many_redirects"


class InvalidURL(HTTPError, ValueError):
    """The client was given a URL it cannot request: no host, characters that would
    change the request line (CR, LF, TAB, NUL, space), an invalid port."""

    status = None
    code = "invalid_url"


class UnsupportedScheme(InvalidURL):
    """A URL scheme other than ``http`` or ``https`` (also in a redirect's Location)."""

    code = "unsupported_scheme"


class LocalProtocolError(HTTPError, base.UsageError):
    """The application misused the API (sent a second response head, wrote more body
    than it declared, wrote a body for HEAD...). A bug in local code, not a peer fault."""

    status = None
    code = "usage_error"
