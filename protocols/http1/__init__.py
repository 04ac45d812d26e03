"""HTTP/1.1 for greenrt: a hardened sans-IO layer around h11, a server, a client, a
WSGI adapter and a gunicorn worker.

* :class:`H1Connection` (``_connection.py``) — h11 behind a byte-exact gatekeeper:
  limits enforced regardless of segmentation, request-smuggling defences, typed
  errors carrying the status to answer.
* :func:`serve` / :class:`HTTPServer` (``server.py``) — keep-alive, pipelining,
  chunked bodies, ``100-continue``, streaming with backpressure, timeouts from
  budgets, per-IP cap, cancellation on disconnect, graceful drain.
* :func:`request` / :class:`Client` (``client.py``) — per-host pool, redirects, TLS.
* :class:`WSGIAdapter` (``wsgi.py``) and ``gunicorn_worker.Worker``
  (``gunicorn -k greenrt.protocols.http1.gunicorn_worker.Worker``).

Needs the ``http`` extra (h11).
"""

from ._connection import CLIENT, NEED_DATA, PAUSED, SERVER, H1Connection
from .client import Client, ClientResponse, request
from .server import HTTPServer, serve
from .wsgi import WSGIAdapter, build_environ

__all__ = [
    "CLIENT", "Client", "ClientResponse", "H1Connection", "HTTPServer", "NEED_DATA", "PAUSED",
    "SERVER", "WSGIAdapter", "build_environ", "request", "serve",
]
