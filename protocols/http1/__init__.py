"""HTTP/1.1 for greenrt: a hardened sans-IO layer around h11, a server, a client, a
WSGI adapter and a gunicorn worker.

* :class:`H1Connection` (``_connection.py``) — h11 behind a byte-exact gatekeeper:
  limits enforced regardless of segmentation, request-smuggling defences, typed
  errors carrying the status to answer.
"""

from ._connection import CLIENT, NEED_DATA, PAUSED, SERVER, H1Connection

__all__ = ["CLIENT", "H1Connection", "NEED_DATA", "PAUSED", "SERVER"]
