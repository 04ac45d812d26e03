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
parser and ``timeout``-based request killing are not used: the budgets of ``Limits``
apply instead.

Logging: errors logged on ``greenrt.http`` (a handler or application that raised,
with its traceback) go to gunicorn's error log; with ``--access-logfile`` (or any
gunicorn logging config that enables it) each request is written through gunicorn's
own access logger, so ``--access-logformat`` works as usual (response headers, the
``{name}o`` atoms, are not available and log as ``-``). A whole-body response (the
usual ``[body]``) is sent by the server after the application returned it, so its
logged request time ends there.

Lifecycle: a heartbeat task notifies the arbiter every ``timeout / 4`` seconds (at
most 1 s) and watches ``self.alive`` (cleared by gunicorn's SIGTERM handler, by
``max_requests`` or when the arbiter dies); then the server shuts down gracefully:
stop accepting, drain in-flight requests within ``graceful_timeout``, cancel the rest
with reason ``shutdown``.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import sys
import time
from types import SimpleNamespace

from gunicorn.workers import base

import greenrt
from greenrt import lowlevel as ll
from greenrt import net

from .limits import Limits
from .model import Response
from .server import HTTPServer
from .wsgi import WSGIAdapter, build_environ

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
        glog = self.log
        access = getattr(glog, "access_log_enabled", False)

        limited = self.max_requests < sys.maxsize  # gunicorn's "no max_requests"

        def handler(req):
            served[0] += 1
            if limited and served[0] >= self.max_requests and self.alive:
                self.alive = False
                server.shutdown()  # accept no more (not a checkpoint); this one finishes
            if not access:
                return app(req)
            t0 = time.monotonic()
            try:
                out = app(req)
            except Exception as e:
                # the server answers it: 500, or the status an HTTPError carries
                self._log_access(req, time.monotonic() - t0, getattr(e, "status", None) or 500)
                raise
            self._log_access(req, time.monotonic() - t0, response=out)
            return out

        # the adapter's RFC 8441 mark (websocket.accept_wsgi over HTTP/2) travels on
        handler.http2_extended_connect = app.http2_extended_connect
        if not access and not limited:
            handler = app  # nothing to count or log per request: the adapter serves
        errors = _ToGunicorn(glog)
        http_log = logging.getLogger("greenrt.http")
        http_log.addHandler(errors)
        server = HTTPServer(handler, limits=self.limits(), tls=self._tls())
        listeners = self._listeners()
        try:
            with greenrt.region(name="gunicorn.worker") as r:
                r.spawn(self._heartbeat, server, name="gunicorn.heartbeat")
                server.serve_listeners(listeners)
        finally:
            http_log.removeHandler(errors)

    def _log_access(self, req, seconds: float, status: int | None = None,
                    response: Response | None = None) -> None:
        writer = req.writer
        env = req.extensions.get("wsgi.environ") or build_environ(req)
        if response is not None:
            # a whole body the server sends after the handler returned (one send)
            status = response.status
            sent = 0 if req.method == "HEAD" or response.streaming else len(response.body)
        else:
            status = status or getattr(writer, "status", 0)
            sent = getattr(writer, "body_bytes", None)
        resp = SimpleNamespace(status=str(status or "-"), headers=[], sent=sent)
        headers = [(k.decode("latin-1").upper(), v.decode("latin-1"))
                   for k, v in req.headers.raw()]
        try:
            self.log.access(resp, SimpleNamespace(headers=headers), env,
                            datetime.timedelta(seconds=seconds))
        except Exception:  # noqa: BLE001 - a bad log format must not break serving
            self.log.exception("access log failed")

    def _heartbeat(self, server: HTTPServer) -> None:
        period = max(min(self.timeout / 4.0, 1.0), 0.05)
        while self.alive:
            self.notify()
            if self.ppid != os.getppid():
                self.alive = False
                break
            greenrt.sleep(min(period, 0.2))
        server.shutdown()


class _ToGunicorn(logging.Handler):
    """Forwards ``greenrt.http`` records to gunicorn's error log."""

    def __init__(self, glog) -> None:
        super().__init__(logging.WARNING)
        self.glog = glog

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.glog.error("%s", record.getMessage(), exc_info=record.exc_info)
        except Exception:  # noqa: BLE001 - logging must never take the worker down
            self.handleError(record)
