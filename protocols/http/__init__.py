"""HTTP, whatever the version: the server, the request/response model, limits,
errors, the WSGI adapter and the gunicorn worker.

* :func:`serve` / :class:`HTTPServer` (``server.py``) — one port for HTTP/1.1 and
  HTTP/2 (ALPN over TLS, the prior-knowledge preface on cleartext), on the floor's
  accept path; see its docstring for the per-version registry.
* the model (``model.py``): the handler contract; handlers do not care which version
  carried the request. ``limits.py`` has the defaults, ``errors.py`` the status each
  error answers with.
* :class:`WSGIAdapter` (``wsgi.py``) and ``gunicorn_worker.Worker``
  (``gunicorn -k greenrt.protocols.http.gunicorn_worker.Worker``): both serve
  HTTP/1.1 and HTTP/2.

``protocols.http1`` and ``protocols.http2`` hold the version-specific connections.
"""

from ..base.errors import require_extra

require_extra("greenrt.protocols.http", "http", ("h11", "h11"))

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
from .server import HTTPServer, serve
from .wsgi import WSGIAdapter, build_environ

__all__ = [
    "BadRequest", "Body", "ClientDisconnected", "DEFAULT_LIMITS", "EmptyBody",
    "HTTPError", "HTTPVersionNotSupported", "HeaderFieldsTooLarge", "Headers", "LimitError",
    "Limits", "LocalProtocolError", "PayloadTooLarge", "ProtocolError", "Request",
    "RequestTimeout", "Response", "ResponseWriter", "ServiceUnavailable", "StreamingResponse",
    "InvalidURL", "TooManyRedirects", "URITooLong", "UnsupportedScheme", "UnsupportedTransferCoding",
    "HTTPServer", "WSGIAdapter", "build_environ", "serve",
]
