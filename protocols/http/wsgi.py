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
writes into ``wsgi.error`` trace events (core code never prints);
``wsgi.file_wrapper`` is :class:`FileWrapper` (blocks read off the hub).
``environ["greenrt.trailers"]`` is ``None`` until ``wsgi.input`` has been read to
its end (a read returning ``b""``, or ``read()`` of the rest), then the request's
trailer fields as a list of ``(lowercase name, value)`` ``str`` pairs, empty if it
had none (``Request.trailers``; forbidden fields are dropped). ``environ
["greenrt.request"]`` is the :class:`~protocols.http.model.Request` itself.

``start_response`` semantics: headers are held until the first non-empty body
string (or the end), so an application may call ``start_response`` again with
``exc_info`` to replace them after an error; once headers were sent, ``exc_info``
re-raises the error (the server then cuts the connection). ``write()`` (the legacy
imperative API) sends immediately. A list or tuple result of up to 64 KB (the usual
``[body]``) is sent with a Content-Length (unless the application gave one), head and
body in one send; any other result is streamed, one send per non-empty string,
chunked (HTTP/1.1) unless the application gave a Content-Length. The iterable's
``close()`` is called exactly once, also when the application or the send failed,
and before the response's last bytes leave.

Cost per request: the environ is a copy of a base dict built once per connection
(the adapter's constants, the connection's addresses and scheme) with the request's
own keys set; request field names map to their ``HTTP_*`` keys through a cache, and
``PATH_INFO`` is percent-decoded only when the path has a ``%``; a status line is
parsed once per distinct string. These caches are keyed by what clients send (field
names, Host values, addresses), so each is bounded (512 entries, cleared when full).

Hazard: an application that blocks in non-greenrt calls (``time.sleep``, plain
sockets) blocks the whole hub; use greenrt's calls or ``greenrt.to_thread``.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import greenrt
from greenrt import lowlevel as ll

from .errors import LocalProtocolError
from .model import Headers, Request, Response

__all__ = ["FileWrapper", "WSGIAdapter", "build_environ"]


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


class FileWrapper:
    """``environ["wsgi.file_wrapper"]`` (PEP 3333's optional file wrapper):
    ``FileWrapper(filelike, blksize=65536)`` is an iterable of the file's blocks,
    sent as any body is (set ``Content-Length`` to avoid chunked framing); its
    ``close()`` closes the file (the adapter calls it once, when sending ends).

    Each block read is a checkpoint when the file has an OS file descriptor (it runs
    in a worker thread, ``greenrt.to_thread``, so a slow disk does not stall the
    hub; if cancelled meanwhile the read completes and the cancellation comes at the
    next checkpoint); a file object without one (``io.BytesIO``) is read in place.
    ``greenrt.fs`` files read through their own threads. Not ``sendfile(2)``: the
    blocks pass through the same writer as every body (TLS, chunked framing,
    backpressure)."""

    def __init__(self, filelike: Any, blksize: int = 65536):
        self.filelike = filelike
        self.blksize = blksize
        try:
            filelike.fileno()
            self._threaded = not isinstance(filelike, greenrt.fs.File)
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation too
            self._threaded = False

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        read = self.filelike.read
        data = (greenrt.to_thread(read, self.blksize, complete_on_cancel=True)
                if self._threaded else read(self.blksize))
        if data:
            return data
        raise StopIteration

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


# -- the environ ---------------------------------------------------------------------------

_MISSING = object()
_CACHE_MAX = 512  # entries of each cache below (names and hosts come from clients)
_ERRORS = _Errors()  # stateless: one for every request
#: lowercase field name (as parsed) -> environ key, or None for a dropped name
_KEYS: dict[bytes, str | None] = {}
#: the Host value (or absolute-form authority) -> SERVER_NAME
_SERVER_NAMES: dict[str, str] = {}
#: http_version -> SERVER_PROTOCOL
_PROTOCOLS: dict[str, str] = {}
#: WSGI status line -> (code, reason or None)
_STATUS: dict[str, tuple[int, str | None]] = {}


def _bounded_put(cache: dict, key: Any, value: Any) -> None:
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[key] = value


def _key_of(name: bytes) -> str | None:
    """The environ key of a request field (``HTTP_<NAME>``, ``CONTENT_TYPE``,
    ``CONTENT_LENGTH``), or ``None`` for a name with ``_`` (dropped); cached."""
    if b"_" in name:
        key = None
    else:
        key = name.decode("latin-1").upper().replace("-", "_")
        if key != "CONTENT_TYPE" and key != "CONTENT_LENGTH":
            key = "HTTP_" + key
    _bounded_put(_KEYS, name, key)
    return key


def _server_name(host: str) -> str:
    name = _SERVER_NAMES.get(host)
    if name is None:
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        _bounded_put(_SERVER_NAMES, host, name)
    return name


class _Environs:
    """Builds environs: the keys that are the same for every request of an adapter are
    in ``_const``; those that are the same for every request of a connection (its
    addresses and scheme) in a cached per-connection base dict; a request's environ
    is a copy of that base with the request's own keys set."""

    __slots__ = ("_const", "_bases")

    def __init__(self, multithread: bool, multiprocess: bool):
        self._const: dict[str, Any] = {
            "SCRIPT_NAME": "",
            "wsgi.version": (1, 0),
            "wsgi.errors": _ERRORS,
            "wsgi.multithread": multithread,
            "wsgi.multiprocess": multiprocess,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
            # the request's trailers: None until wsgi.input has been read to its end,
            # then a list of (lowercase name, value) str pairs (empty if none)
            "greenrt.trailers": None,
        }
        self._bases: dict[tuple, dict[str, Any]] = {}

    def _base(self, server: Any, client: Any, scheme: str) -> dict[str, Any]:
        key = (server, client, scheme)
        try:
            base = self._bases.get(key)
        except TypeError:  # unhashable addresses: build it each time
            key = None
            base = None
        if base is None:
            s = server if isinstance(server, tuple) else ("", 0)
            c = client if isinstance(client, tuple) else ("", 0)
            base = dict(self._const)
            base["SERVER_NAME"] = s[0]
            base["SERVER_PORT"] = str(s[1])
            base["REMOTE_ADDR"] = str(c[0])
            base["REMOTE_PORT"] = str(c[1])
            base["wsgi.url_scheme"] = scheme
            if key is not None:
                _bounded_put(self._bases, key, base)
        return base

    def build(self, req: Request) -> dict[str, Any]:
        env = self._base(req.server, req.client, req.scheme).copy()
        target = req.target
        absolute = "://" in target and not target.startswith("/")
        if absolute:
            u = urllib.parse.urlsplit(target)
            path, query = u.path or "/", u.query
        else:
            path, _, query = target.partition("?")
        env["REQUEST_METHOD"] = req.method
        # percent-decoded as latin-1 text; a path without "%" is that already
        env["PATH_INFO"] = path if "%" not in path and path.isascii() else \
            urllib.parse.unquote_to_bytes(path).decode("latin-1")
        env["QUERY_STRING"] = query
        version = req.http_version
        proto = _PROTOCOLS.get(version)
        if proto is None:
            proto = f"HTTP/{version}"
            _bounded_put(_PROTOCOLS, version, proto)
        env["SERVER_PROTOCOL"] = proto
        env["RAW_URI"] = target
        # the request itself, for extensions: greenrt.protocols.websocket.accept_wsgi
        # takes the connection over through it (Request.upgrade)
        env["greenrt.request"] = req
        env["wsgi.input"] = _Input(req.body, env)
        keys = _KEYS
        for name, value in req.headers._items:
            key = keys.get(name, _MISSING)
            if key is _MISSING:
                key = _key_of(name)
            if key is None:
                continue
            v = value.decode("latin-1")
            if key not in env:
                env[key] = v
            elif key[0] == "H":  # HTTP_*: a repeated field's values joined with ","
                env[key] += "," + v
            else:  # CONTENT_TYPE / CONTENT_LENGTH: the last one
                env[key] = v
        # an absolute-form target's authority wins over Host (RFC 9112 §3.2.2);
        # HTTP_HOST and SERVER_NAME are the first Host value otherwise
        host = req.host if absolute else env.get("HTTP_HOST")
        if host is not None:
            if "," in host and not absolute:
                host = req.host  # repeated Host fields: the first one
            env["HTTP_HOST"] = host
            if host:
                env["SERVER_NAME"] = _server_name(host)
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


_BUILDERS = {(mt, mp): _Environs(mt, mp) for mt in (False, True) for mp in (False, True)}


def build_environ(req: Request, *, multithread: bool = False,
                  multiprocess: bool = False) -> dict[str, Any]:
    """The PEP 3333 environ for ``req`` (see the module docstring). Not a checkpoint;
    a new dict each call (the application may change it)."""
    return _BUILDERS[bool(multithread), bool(multiprocess)].build(req)


# -- start_response and the body -----------------------------------------------------------

def _parse_status(status: Any) -> tuple[int, str | None]:
    """``(code, reason or None)`` of a WSGI status line (``"200 OK"``), cached;
    ``LocalProtocolError`` if it does not start with three digits."""
    if not isinstance(status, str) or len(status) < 3 or not status[:3].isdigit():
        raise LocalProtocolError(f"invalid WSGI status {status!r}")
    try:
        code = int(status[:3])
    except ValueError:  # digits int() does not take ("²")
        raise LocalProtocolError(f"invalid WSGI status {status!r}") from None
    parsed = (code, status[4:] if len(status) > 4 else None)
    if type(status) is str:
        _bounded_put(_STATUS, status, parsed)
    return parsed


#: an application's response header list (as a tuple) -> its validated fields
_HEADERS: dict[tuple, list[tuple[bytes, bytes]]] = {}


def _headers(headers: list) -> Headers:
    """``Headers(headers)`` (validated: ``LocalProtocolError`` for CR, LF or NUL, a
    bad name), cached for the lists an application sends again and again."""
    try:
        key = tuple(headers)
        items = _HEADERS.get(key)
    except TypeError:  # an unhashable element: validated each time
        return Headers(headers)
    if items is None:
        items = Headers(headers)._items
        # kept only for str fields (no 1 == True aliasing in the key) of a small list
        size = 0
        for k, v in key:
            if type(k) is not str or type(v) is not str:
                size = -1
                break
            size += len(k) + len(v)
        if 0 <= size <= 1024:
            _bounded_put(_HEADERS, key, items)
    return Headers._trusted(list(items))


#: a list or tuple body up to this size is joined and sent with a Content-Length
_JOIN_MAX = 65536


class _Exchange:
    """One request's ``start_response`` and ``write`` and what they hold: the
    status and headers are kept until the first non-empty body string (or the
    end), so ``exc_info`` can still replace them."""

    __slots__ = ("writer", "status", "code", "reason", "headers", "sent")

    def __init__(self, writer: Any):
        self.writer = writer
        self.status: str | None = None
        self.sent = False

    def start_response(self, status: str, headers: list, exc_info: Any = None):
        """PEP 3333's ``start_response``: not a checkpoint (nothing is sent yet)."""
        if exc_info is not None:
            try:
                if self.sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise LocalProtocolError("start_response called twice without exc_info")
        parsed = _STATUS.get(status) if type(status) is str else None
        if parsed is None:
            parsed = _parse_status(status)
        self.code, self.reason = parsed
        self.status = status
        self.headers = list(headers)  # changes the application makes later do not count
        return self.write

    def send_head(self, content_length: int | None = None) -> None:
        if self.status is None:
            raise LocalProtocolError("the application did not call start_response")
        hdrs = self.headers
        if content_length is not None and any(
                k.lower() == "content-length" for k, _ in hdrs):
            content_length = None
        self.writer.start(self.code, hdrs, reason=self.reason, content_length=content_length)
        self.sent = True

    def write(self, data: bytes) -> None:
        """PEP 3333's ``write()``: sends at once (the head first). A checkpoint."""
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"WSGI body strings must be bytes, not {type(data).__name__}")
        if not self.sent:
            self.send_head()
        if data:
            self.writer.write(bytes(data))


def _whole_body(result: Any) -> bytes | None:
    """The body of a list or tuple result as one ``bytes`` (``None`` if it is larger
    than ``_JOIN_MAX``: streamed then); ``TypeError`` for a non-bytes element."""
    n = len(result)
    if n == 1:
        data = result[0]
        if type(data) is bytes:
            return data
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError("WSGI body strings must be bytes")
        return bytes(data)
    total = 0
    for data in result:
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError("WSGI body strings must be bytes")
        total += len(data)
    return b"".join(result) if total <= _JOIN_MAX else None


class WSGIAdapter:
    """A greenrt HTTP handler that runs the WSGI application ``app``. Over HTTP/2 it
    accepts RFC 8441 extended CONNECT (``websocket.accept_wsgi`` works there too).

    Calling it (the server does, once per request) runs the application in the
    request's task: a checkpoint wherever the application reads ``wsgi.input`` or
    the body is sent. Cancelled (client gone, budget spent) while the application
    runs, the cancellation reaches the application at its next checkpoint; the
    iterable's ``close()`` is still called, once, and the response is cut short (the
    connection is not reused)."""

    #: advertise SETTINGS_ENABLE_CONNECT_PROTOCOL (see ``http2.extended_connect``)
    http2_extended_connect = True

    def __init__(self, app, *, multiprocess: bool = False):
        self.app = app
        self.multiprocess = multiprocess
        self._environs = _BUILDERS[False, bool(multiprocess)]

    def __call__(self, req: Request) -> Response | None:
        env = self._environs.build(req)
        ext = req.extensions
        ext["wsgi.environ"] = env  # for the gunicorn worker's access log
        writer = req.writer
        ex = _Exchange(writer)
        result = self.app(env, ex.start_response)
        if ext.get("upgraded"):
            # the application took the connection over (a WebSocket): no HTTP response
            close = getattr(result, "close", None)
            if close is not None:
                close()
            return None
        close = getattr(result, "close", None)
        if not ex.sent and isinstance(result, (list, tuple)):
            # the whole body is known: head and body leave in one send, with a
            # Content-Length; over HTTP/1 as a Response, so pipelined requests'
            # answers are batched
            try:
                data = _whole_body(result)  # not a checkpoint
            except BaseException:
                if close is not None:
                    close()
                raise
            if data is not None:
                if close is not None:
                    close()  # once: the streaming path below is not taken
                if ex.status is None:
                    raise LocalProtocolError("the application did not call start_response")
                if req.http_version != "2":
                    return Response(ex.code, _headers(ex.headers), data, reason=ex.reason)
                ex.send_head(content_length=len(data))
                writer.write(data)
                writer.finish()
                return None
        try:
            for data in result:
                if not isinstance(data, (bytes, bytearray)):
                    raise TypeError("WSGI body strings must be bytes")
                if not data:
                    continue
                if not ex.sent:
                    ex.send_head()
                writer.write(data if type(data) is bytes else bytes(data))
        finally:
            if close is not None:
                close()  # before the final chunk: the app is done when the client sees it
        if not ex.sent:
            ex.send_head(content_length=0)
        writer.finish()
        return None
