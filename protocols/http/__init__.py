"""HTTP semantics shared by every HTTP version: requests, responses, limits, errors.

``protocols.http1`` (and later HTTP/2) build on this model; application handlers are
written against it and do not care which version carried the request. See
``model.py`` for the handler contract, ``limits.py`` for the defaults and
``errors.py`` for the status each error answers with.
"""

from .errors import (
    BadRequest,
    ClientDisconnected,
    HeaderFieldsTooLarge,
    HTTPError,
    HTTPVersionNotSupported,
    InvalidURL,
    LimitError,
    LocalProtocolError,
    PayloadTooLarge,
    ProtocolError,
    RequestTimeout,
    ServiceUnavailable,
    TooManyRedirects,
    UnsupportedScheme,
    UnsupportedTransferCoding,
    URITooLong,
)
from .limits import DEFAULT_LIMITS, Limits
from .model import Body, EmptyBody, Headers, Request, Response, ResponseWriter, StreamingResponse

__all__ = [
    "BadRequest", "Body", "ClientDisconnected", "DEFAULT_LIMITS", "EmptyBody",
    "HTTPError", "HTTPVersionNotSupported", "HeaderFieldsTooLarge", "Headers", "LimitError",
    "Limits", "LocalProtocolError", "PayloadTooLarge", "ProtocolError", "Request",
    "RequestTimeout", "Response", "ResponseWriter", "ServiceUnavailable", "StreamingResponse",
    "InvalidURL", "TooManyRedirects", "URITooLong", "UnsupportedScheme", "UnsupportedTransferCoding",
]
