"""HTTP/1.1 for greenrt: a hardened sans-IO layer around h11, a server, a client, a
WSGI adapter and a gunicorn worker.

* :class:`H1Connection` (``_connection.py``) — h11 behind a byte-exact gatekeeper:
  limits enforced regardless of segmentation, request-smuggling defences, typed
  errors carrying the status to answer.
* :func:`serve_connection` (``server.py``) — one server connection: keep-alive,
  pipelining, chunked bodies, ``100-continue``, streaming with backpressure, timeouts
  from budgets, cancellation on disconnect, graceful drain. The server that accepts
  connections and dispatches them by version is ``greenrt.protocols.http.serve`` /
  ``HTTPServer`` (with the WSGI adapter and the gunicorn worker).
* :func:`request` / :class:`Client` (``client.py``) — per-host pool, redirects, TLS.

Needs the ``http`` extra (h11).
"""

from ..base.errors import require_extra

require_extra("greenrt.protocols.http1", "http", ("h11", "h11"))

from ._connection import CLIENT, NEED_DATA, PAUSED, SERVER, H1Connection
from .client import Client, ClientResponse, request
from .server import serve_connection

__all__ = [
    "CLIENT", "Client", "ClientResponse", "H1Connection", "NEED_DATA", "PAUSED", "SERVER",
    "request", "serve_connection",
]
