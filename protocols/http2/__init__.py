"""HTTP/2 on h2: ``serve_connection`` serves one connection (see ``server``)."""

from .limits import DEFAULT_H2_LIMITS, H2Limits
from .server import PREFACE, serve_connection

__all__ = ["DEFAULT_H2_LIMITS", "H2Limits", "PREFACE", "serve_connection"]
