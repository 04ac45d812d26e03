"""The HTTP/1.1 suite's server fixture, shared: ``http_server(handler, limits, **serve_kw)``
runs the unified ``protocols.http.serve`` in a thread."""

from ..http1.conftest import http_server  # noqa: F401 - re-exported fixture
