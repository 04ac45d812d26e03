"""Run existing blocking code cooperatively: ``greenrt.patch.patch_all()``.

After ``patch_all()`` the blocking parts of ``socket``, ``ssl``, ``select``,
``selectors``, ``time.sleep``, ``threading`` (locks, and so ``Condition``, ``Event``,
``Semaphore``, ``Barrier``, ``queue.Queue``) and ``subprocess`` (``Popen.wait`` and
``communicate``) park the calling *task* instead of the whole hub (and a Python
signal handler that raises interrupts the task's call, as it interrupts the main
thread's call unpatched: ``signal``), so unmodified
libraries (``requests``, ``urllib3``, ``redis``, ``http.client``, ``smtplib``...)
overlap inside ``greenrt.run``.

Beyond gevent's ``monkey.patch_all()``:

* inside a greenrt task every patched blocking call is a **checkpoint**: a pending
  cancellation is delivered, cancel scopes and deadlines (``fail_after``,
  ``move_on_after``, region budgets) and poll/cost budgets apply, so
  ``with greenrt.fail_after(1): requests.get(url)`` ends after one second with
  ``TooSlowError``, and ``region.cancel()`` stops a task stuck in redis-py's
  ``BLPOP``. (An uncontended lock ``acquire`` is the exception: see
  ``greenrt.patch._threading``.)
* **outside any greenrt task** (another thread, before ``greenrt.run``, a pool
  worker) a patched call behaves like the original, so patching is safe for
  programs that also run threads.
* what a cancelled call leaves behind follows ``greenrt.net``'s rules, documented
  per call in ``docs/patch.md`` and in the modules ``_socket``, ``_ssl``,
  ``_select``, ``_threading``, ``_subprocess``.

Patch early (before the libraries create their sockets, locks and selectors):
objects created before patching keep the original, blocking behaviour. Patching
and unpatching are not thread-safe; do them from the main thread while nothing
else runs. Every function here is idempotent.
"""

from __future__ import annotations

import _thread as _std_thread
import queue as _std_queue
import select as _std_select
import selectors as _std_selectors
import signal as _std_signal
import socket as _std_socket
import socketserver as _std_socketserver
import ssl as _std_ssl
import subprocess as _std_subprocess
import threading as _std_threading
import time as _std_time
from typing import Any

from . import _common  # noqa: F401  (captures the originals first)
from . import _select as _cselect
from . import _signal as _csignal
from . import _socket as _csocket
from . import _ssl as _cssl
from . import _subprocess as _csubprocess
from . import _threading as _cthreading

__all__ = [
    "MODULES", "is_patched", "patch_all", "patch_select", "patch_signal", "patch_socket",
    "patch_ssl", "patch_subprocess", "patch_threading", "patch_time", "patched", "unpatch",
]

_MISSING = object()


def _sleep(secs: Any) -> Any:
    """``time.sleep``; inside a task ``greenrt.sleep`` (a checkpoint; a cancelled
    sleep leaves nothing behind)."""
    if _common.task_hub() is None:
        return _common.real_sleep(secs)
    import greenrt

    secs = float(secs)
    if secs < 0:
        raise ValueError("sleep length must be non-negative")
    greenrt.sleep(secs)


def _fn(f: Any) -> Any:
    """A replacement *function* as the originals are: builtins, which do not bind
    as methods. Libraries keep them as class attributes (werkzeug's ``lock_class =
    threading.Lock``, ``sleep = time.sleep``) and call them through ``self``; a plain
    Python function would receive ``self`` as its first argument there. A
    ``staticmethod`` is callable as it is (3.10+) and never binds."""
    return staticmethod(f)


_sleep.__name__ = _sleep.__qualname__ = "sleep"


def _socket_items() -> Any:
    # ``socket.SocketType`` stays the C type (``_socket.socket``), as CPython's
    # test_socket checks: every patched socket is still an instance of it
    items = [(_std_socket, "socket", _csocket.socket)]
    items += [(_std_socket, name, _fn(fn)) for name, fn in _csocket.resolver_replacements.items()]
    return items


# module name -> list of (namespace, attribute, replacement)
_TABLE = {
    "socket": _socket_items,
    # only the class wrap_socket builds: ``ssl.SSLSocket`` itself stays (ssl.py's
    # ``super(SSLSocket, self)`` must name the original; isinstance checks still hold)
    "ssl": lambda: [(_std_ssl.SSLContext, "sslsocket_class", _cssl.SSLSocket)],
    "select": lambda: [(_std_select, "select", _fn(_cselect.select)),
                       (_std_select, "poll", _cselect.poll),
                       (_std_select, "epoll", _cselect.epoll),
                       (_std_selectors, "SelectSelector", _cselect.SelectSelector),
                       (_std_selectors, "PollSelector", _cselect.PollSelector),
                       (_std_selectors, "EpollSelector", _cselect.EpollSelector),
                       (_std_selectors, "DefaultSelector", _cselect.DefaultSelector),
                       # bound at import time by socketserver (serve_forever waits on it)
                       (_std_socketserver, "_ServerSelector", _cselect.PollSelector)],
    "time": lambda: [(_std_time, "sleep", _fn(_sleep))],
    # the class itself (``allocate_lock()`` is ``Lock()``): a class does not bind
    "threading": lambda: [(_std_threading, "Lock", _cthreading.Lock),
                          (_std_threading, "_allocate_lock", _cthreading.Lock),
                          (_std_threading, "RLock", _cthreading.RLock),
                          (_std_threading.Thread, "start", _cthreading.thread_start),
                          (_std_threading.Thread, "join", _cthreading.thread_join),
                          (_std_queue, "SimpleQueue", _std_queue._PySimpleQueue),  # type: ignore[attr-defined]
                          (_std_thread, "start_new_thread", _fn(_cthreading.start_new_thread))],
    "subprocess": lambda: [(_std_subprocess, "Popen", _csubprocess.Popen),
                           (_std_subprocess, "_PopenSelector", _cselect.PollSelector)],
    "signal": lambda: [(_std_signal, "signal", _fn(_csignal.signal)),
                       (_std_signal, "getsignal", _fn(_csignal.getsignal))],
}

#: the names ``patch_all``/``is_patched``/``unpatch`` accept, in patching order
MODULES = tuple(_TABLE)

# module name -> saved originals [(namespace, attribute, original or _MISSING)]
_saved: dict[str, list[tuple[Any, str, Any]]] = {}


def _patch(name: str) -> None:
    if name not in _TABLE:
        raise ValueError(f"unknown module {name!r}; expected one of {MODULES}")
    if name in _saved:
        return
    saved = []
    for ns, attr, repl in _TABLE[name]():  # type: ignore[no-untyped-call]
        saved.append((ns, attr, ns.__dict__.get(attr, _MISSING) if isinstance(ns, type)
                      else getattr(ns, attr, _MISSING)))
        setattr(ns, attr, repl)
    _saved[name] = saved


def patch_socket() -> None:
    """Patch ``socket.socket`` and the resolver functions. Idempotent."""
    _patch("socket")


def patch_ssl() -> None:
    """Patch ``ssl.SSLContext.sslsocket_class`` (what ``wrap_socket`` builds). Idempotent."""
    _patch("ssl")


def patch_select() -> None:
    """Patch ``select.select``/``poll``/``epoll`` and the ``selectors`` classes. Idempotent."""
    _patch("select")


def patch_time() -> None:
    """Patch ``time.sleep``. Idempotent."""
    _patch("time")


def patch_threading() -> None:
    """Patch ``threading.Lock``/``RLock``/``_allocate_lock`` (and so ``Condition``,
    ``Event``, ``Semaphore``, ``Barrier``, ``queue.Queue``), ``Thread.start``/``join``
    and ``queue.SimpleQueue``. Idempotent."""
    _patch("threading")


def patch_subprocess() -> None:
    """Patch ``subprocess.Popen`` (cooperative ``wait``/``communicate``). Idempotent."""
    _patch("subprocess")


def patch_signal() -> None:
    """Patch ``signal.signal``/``getsignal``: a Python handler that raises while the
    hub waits interrupts the task's blocking call instead of ending ``run`` (see
    ``greenrt.patch._signal``). Idempotent."""
    _patch("signal")


def patch_all(*, socket: bool = True, ssl: bool = True, select: bool = True, time: bool = True,
              threading: bool = True, subprocess: bool = True, signal: bool = True) -> None:
    """Patch every module (or those left true). Idempotent; not a checkpoint."""
    wanted = {"socket": socket, "ssl": ssl, "select": select, "time": time,
              "threading": threading, "subprocess": subprocess, "signal": signal}
    for name in MODULES:
        if wanted[name]:
            _patch(name)


def is_patched(name: str | None = None) -> bool:
    """Whether module ``name`` (one of ``MODULES``) is patched; with no name, whether
    any is."""
    if name is None:
        return bool(_saved)
    if name not in _TABLE:
        raise ValueError(f"unknown module {name!r}; expected one of {MODULES}")
    return name in _saved


def unpatch(*names: str) -> None:
    """Restore the originals of ``names`` (all patched modules if none). For tests.
    Objects created while patched keep their cooperative classes."""
    for name in reversed(names or MODULES):
        saved = _saved.pop(name, None)
        if saved is None:
            continue
        for ns, attr, orig in reversed(saved):
            if orig is _MISSING:
                delattr(ns, attr)
            else:
                setattr(ns, attr, orig)


class patched:
    """``with greenrt.patch.patched():`` patch_all() for the block, then unpatch what
    this block patched (for tests and scripts)."""

    def __init__(self, **modules: bool) -> None:
        self._modules = modules
        self._mine: list[str] = []

    def __enter__(self) -> Any:
        before = set(_saved)
        patch_all(**self._modules)
        self._mine = [n for n in MODULES if n in _saved and n not in before]
        return self

    def __exit__(self, *exc: object) -> None:
        unpatch(*self._mine)
