"""A gunicorn worker class that serves WSGI applications on greenrt.

    gunicorn -k greenrt.protocols.http.gunicorn_worker.Worker -w 4 myapp:app

gunicorn (an existing, well-known process manager) forks the workers, binds the
sockets, restarts dead workers and scales the application over cores; each worker
runs one greenrt hub that serves many connections concurrently with the HTTP/1.1
server of this package and :class:`~protocols.http.wsgi.WSGIAdapter`.

Mapping of gunicorn settings: ``keepalive`` → ``Limits.keepalive_timeout``,
``graceful_timeout`` → ``drain_timeout``, ``worker_connections`` →
``max_connections``, ``limit_request_line`` / ``limit_request_fields`` →
``max_request_line`` / ``max_headers`` (0, "unlimited", keeps greenrt's default
limit), ``max_requests`` (+ jitter) → the worker retires after that many requests,
``certfile``/``keyfile`` → TLS through ``protocols.tls``. gunicorn's own request
parser, access log and ``timeout``-based request killing are not used: the budgets of
``Limits`` apply instead.

Lifecycle: a heartbeat task notifies the arbiter every ``timeout / 4`` seconds (at
most 1 s) and watches ``self.alive`` (cleared by gunicorn's SIGTERM handler, by
``max_requests`` or when the arbiter dies); then the server shuts down gracefully:
stop accepting, drain in-flight requests within ``graceful_timeout``, cancel the rest
with reason ``shutdown``.
"""

from __future__ import annotations

import os
import socket

from gunicorn.workers import base

import greenrt
from greenrt import lowlevel as ll
from greenrt import net

from .limits import Limits
from .server import HTTPServer
from .wsgi import WSGIAdapter

__all__ = ["Worker"]


class Worker(base.Worker):
    """gunicorn worker running greenrt (see the module docstring)."""

    def limits(self) -> Limits:
        cfg = self.cfg
        kw = {
            "drain_timeout": float(cfg.graceful_timeout),
            "max_connections": max(int(cfg.worker_connections), 1),
        }
        if cfg.keepalive and cfg.keepalive > 0:
            kw["keepalive_timeout"] = float(cfg.keepalive)
        if cfg.limit_request_line and cfg.limit_request_line > 0:
            kw["max_request_line"] = int(cfg.limit_request_line)
        if cfg.limit_request_fields and cfg.limit_request_fields > 0:
            kw["max_headers"] = int(cfg.limit_request_fields)
        return Limits(**kw)

    def run(self) -> None:
        # gunicorn has installed its signal handlers; greenrt must not replace them
        greenrt.run(self._main, handle_signals=False)

    def _listeners(self) -> list:
        hub = ll.current_hub()
        out = []
        for s in self.sockets:
            sock = getattr(s, "sock", s).dup()
            sock.setblocking(False)
            cls = net.UnixStream if sock.family == socket.AF_UNIX else net.TCPStream
            out.append(net.SocketListener(hub, sock, cls))
        return out

    def _tls(self):
        if not self.cfg.is_ssl:
            return None
        from greenrt.protocols import tls

        return tls.server_context(certfile=self.cfg.certfile, keyfile=self.cfg.keyfile)

    def _main(self) -> None:
        app = WSGIAdapter(self.wsgi, multiprocess=True)
        served = [0]

        def handler(req):
            served[0] += 1
            if self.max_requests and served[0] >= self.max_requests:
                self.alive = False
            return app(req)

        server = HTTPServer(handler, limits=self.limits(), tls=self._tls())
        listeners = self._listeners()
        with greenrt.region(name="gunicorn.worker") as r:
            r.spawn(self._heartbeat, server, name="gunicorn.heartbeat")
            server.serve_listeners(listeners)

    def _heartbeat(self, server: HTTPServer) -> None:
        period = max(min(self.timeout / 4.0, 1.0), 0.05)
        while self.alive:
            self.notify()
            if self.ppid != os.getppid():
                self.alive = False
                break
            greenrt.sleep(min(period, 0.2))
        server.shutdown()
