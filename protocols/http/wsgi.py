"""Run a WSGI application (PEP 3333) on greenrt's HTTP server.

``WSGIAdapter(app)`` is a handler: ``serve(WSGIAdapter(flask_app), host, port)``.
The application runs in the request's task, in blocking style, under the request's
budget; every body read and write is a greenrt checkpoint, so a client disconnect or
an exhausted budget cancels the application at its next read or write.

The environ follows PEP 3333: ``PATH_INFO`` is the percent-decoded path as latin-1
text, ``QUERY_STRING`` is raw, ``CONTENT_TYPE``/``CONTENT_LENGTH`` come from their
headers, every other header becomes ``HTTP_<NAME>`` (repeated fields joined with
``,``). Header names containing ``_`` are dropped, as gunicorn and nginx do, so a
client cannot spoof ``X-Forwarded-For`` as ``X_Forwarded_For``. ``wsgi.input``
streams the request body (``read``, ``readline``, ``readlines``, iteration;
``wsgi.input_terminated`` is true, chunked bodies work); ``wsgi.errors`` turns
writes into ``wsgi.error`` trace events (core code never prints).
``environ["greenrt.trailers"]`` is ``None`` until ``wsgi.input`` has been read to
its end (a read returning ``b""``, or ``read()`` of the rest), then the request's
trailer fields as a list of ``(lowercase name, value)`` ``str`` pairs, empty if it
had none (``Request.trailers``; forbidden fields are dropped). ``environ
["greenrt.request"]`` is the :class:`~protocols.http.model.Request` itself.

``start_response`` semantics: headers are held until the first non-empty body
string (or the end), so an application may call ``start_response`` again with
``exc_info`` to replace them after an error; once headers were sent, ``exc_info``
re-raises the error (the server then cuts the connection). ``write()`` (the legacy
imperative API) sends immediately. A response with exactly one body string and no
Content-Length gets one; otherwise the body is sent chunked (HTTP/1.1). The
iterable's ``close()`` is always called.

Hazard: an application that blocks in non-greenrt calls (``time.sleep``, plain
sockets) blocks the whole hub; use greenrt's calls or ``greenrt.to_thread``.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from greenrt import lowlevel as ll

from .errors import LocalProtocolError
from .model import Request

__all__ = ["WSGIAdapter", "build_environ"]


class _Errors:
    """``wsgi.errors``: a text stream whose lines become trace events."""

    def write(self, s: str) -> int:
        try:
            ll.current_hub().emit("wsgi.error", message=str(s)[:1000])
        except Exception:  # outside a hub (tests calling the app directly)
            pass
        return len(s)

    def writelines(self, lines) -> None:
        for s in lines:
            self.write(s)

    def flush(self) -> None:
        pass


class _Input:
    """``wsgi.input``: the streaming request body as a binary file. Once the body has
    been read to its end it stores the request's trailers in ``environ``
    (``greenrt.trailers``)."""

    def __init__(self, body, env: dict | None = None):
        self._body = body
        self._buf = b""
        self._env = env

    def _ended(self) -> None:
        env = self._env
        if env is not None and env.get("greenrt.trailers") is None:
            t = self._body.trailers
            if t is not None:
                env["greenrt.trailers"] = list(t)

    def _fill(self) -> bool:
        chunk = self._body.read(65536)
        if not chunk:
            self._ended()
            return False
        self._buf += chunk
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            parts = [self._buf]
            self._buf = b""
            parts.append(self._body.read_all())
            self._ended()
            return b"".join(parts)
        while len(self._buf) < size and self._fill():
            pass
        out, self._buf = self._buf[:size], self._buf[size:]
        return out

    def readline(self, size: int | None = -1) -> bytes:
        while True:
            i = self._buf.find(b"\n")
            if i >= 0 and (size is None or size < 0 or i < size):
                out, self._buf = self._buf[:i + 1], self._buf[i + 1:]
                return out
            if size is not None and 0 <= size <= len(self._buf):
                out, self._buf = self._buf[:size], self._buf[size:]
                return out
            if not self._fill():
                out, self._buf = self._buf, b""
                return out

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines, n = [], 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            n += len(line)
            if 0 < hint <= n:
                return lines

    def __iter__(self):
        while True:
            line = self.readline()
            if not line:
                return
            yield line


def build_environ(req: Request, *, multithread: bool = False,
                  multiprocess: bool = False) -> dict[str, Any]:
    """The PEP 3333 environ for ``req`` (see the module docstring)."""
    target = req.target
    if "://" in target and not target.startswith("/"):  # absolute-form
        u = urllib.parse.urlsplit(target)
        path, query = u.path or "/", u.query
    else:
        path, _, query = target.partition("?")
    server = req.server if isinstance(req.server, tuple) else ("", 0)
    client = req.client if isinstance(req.client, tuple) else ("", 0)
    host = req.host  # an absolute-form target's authority wins over Host
    server_name = server[0]
    if host:
        server_name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    env: dict[str, Any] = {
        "REQUEST_METHOD": req.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": urllib.parse.unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query,
        "SERVER_NAME": server_name,
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{req.http_version}",
        "REMOTE_ADDR": str(client[0]),
        "REMOTE_PORT": str(client[1]),
        "RAW_URI": target,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": req.scheme,
        # the request's trailers: None until wsgi.input has been read to its end,
        # then a list of (lowercase name, value) str pairs (empty if none)
        "greenrt.trailers": None,
        # the request itself, for extensions: greenrt.protocols.websocket.accept_wsgi
        # takes the connection over through it (Request.upgrade)
        "greenrt.request": req,
        "wsgi.errors": _Errors(),
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
    }
    env["wsgi.input"] = _Input(req.body, env)
    for name, value in req.headers.raw():
        if b"_" in name:
            continue
        key = name.decode("latin-1").upper().replace("-", "_")
        v = value.decode("latin-1")
        if key == "CONTENT_TYPE" or key == "CONTENT_LENGTH":
            env[key] = v
            continue
        key = "HTTP_" + key
        if key in env:
            env[key] += "," + v
        else:
            env[key] = v
    if host is not None:
        env["HTTP_HOST"] = host
    connect = req.extensions.get("http2.connect")
    if connect is not None and connect.protocol == "websocket":
        # RFC 8441: a WebSocket over HTTP/2 arrives as an extended CONNECT; WSGI
        # frameworks know a WebSocket request as an upgrading GET (werkzeug routes
        # websocket=True rules by HTTP_UPGRADE), so it is shown as one; accept_wsgi
        # answers it on the HTTP/2 stream
        env["REQUEST_METHOD"] = "GET"
        env.setdefault("HTTP_UPGRADE", "websocket")
        env.setdefault("HTTP_CONNECTION", "Upgrade")
        env["greenrt.http2.connect"] = True
    return env


class WSGIAdapter:
    """A greenrt HTTP handler that runs the WSGI application ``app``. Over HTTP/2 it
    accepts RFC 8441 extended CONNECT (``websocket.accept_wsgi`` works there too)."""

    #: advertise SETTINGS_ENABLE_CONNECT_PROTOCOL (see ``http2.extended_connect``)
    http2_extended_connect = True

    def __init__(self, app, *, multiprocess: bool = False):
        self.app = app
        self.multiprocess = multiprocess

    def __call__(self, req: Request) -> None:
        writer = req.writer
        env = build_environ(req, multiprocess=self.multiprocess)
        req.extensions["wsgi.environ"] = env  # for the gunicorn worker's access log
        state: dict[str, Any] = {"status": None, "headers": None, "sent": False}

        def start_response(status: str, headers: list, exc_info=None):
            if exc_info is not None:
                try:
                    if state["sent"]:
                        raise exc_info[1].with_traceback(exc_info[2])
                finally:
                    exc_info = None
            elif state["status"] is not None:
                raise LocalProtocolError("start_response called twice without exc_info")
            if not isinstance(status, str) or len(status) < 3 or not status[:3].isdigit():
                raise LocalProtocolError(f"invalid WSGI status {status!r}")
            state["status"] = status
            state["headers"] = list(headers)
            return write

        def send_head(content_length: int | None = None) -> None:
            status = state["status"]
            if status is None:
                raise LocalProtocolError("the application did not call start_response")
            code = int(status[:3])
            reason = status[4:] if len(status) > 4 else None
            hdrs = state["headers"]
            if content_length is not None and any(
                    k.lower() == "content-length" for k, _ in hdrs):
                content_length = None
            writer.start(code, hdrs, reason=reason, content_length=content_length)
            state["sent"] = True

        def write(data: bytes) -> None:
            if not isinstance(data, (bytes, bytearray)):
                raise TypeError(f"WSGI body strings must be bytes, not {type(data).__name__}")
            if not state["sent"]:
                send_head()
            if data:
                writer.write(bytes(data))

        result = self.app(env, start_response)
        if req.extensions.get("upgraded"):
            # the application took the connection over (a WebSocket): no HTTP response
            close = getattr(result, "close", None)
            if close is not None:
                close()
            return None
        try:
            if isinstance(result, (list, tuple)) and len(result) == 1 and not state["sent"]:
                data = result[0]
                if not isinstance(data, (bytes, bytearray)):
                    raise TypeError("WSGI body strings must be bytes")
                send_head(content_length=len(data))
                writer.write(bytes(data))
            else:
                for data in result:
                    if not isinstance(data, (bytes, bytearray)):
                        raise TypeError("WSGI body strings must be bytes")
                    if not data:
                        continue
                    if not state["sent"]:
                        send_head()
                    writer.write(bytes(data))
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()  # before the final chunk: the app is done when the client sees it
        if not state["sent"]:
            send_head(content_length=0)
        writer.finish()
        return None

