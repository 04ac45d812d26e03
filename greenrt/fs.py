"""Files without blocking the hub: every blocking file operation runs in a worker thread.

``greenrt.fs.open_file(path, mode, ...)`` opens a file (in a thread) and returns a
:class:`File` whose blocking methods (``read``, ``write``, ``readline``, ``seek``,
``flush``, ``close``...) each run through ``greenrt.to_thread``. ``greenrt.fs.Path``
is a ``pathlib.Path`` look-alike: pure path arithmetic runs inline, everything that
touches the file system runs in a thread.

Every blocking method here is a checkpoint with these cancellation rules:

* cancelled *before* the operation starts (while the task checks in, waits for the
  file's turn, see below, or waits for a worker-thread token): nothing was done;
* cancelled *while* the thread runs: the operation completes and its result is
  returned normally (``to_thread(..., complete_on_cancel=True)``), and the
  cancellation is delivered at the caller's next checkpoint. So a cancelled
  ``read`` loses no data and a cancelled ``write`` never leaves the caller unsure
  whether it happened.

One file, one operation at a time: a ``File`` serializes its operations with a FIFO
``greenrt.Lock``, so calls from several tasks run in the order they were made and
never overlap in two threads (the file position stays meaningful).

Hazards: ``to_thread``'s pool bound applies (40 threads per hub by default), so
thousands of concurrent file operations queue rather than spawn threads. Nothing here
sandboxes paths: callers that take paths from untrusted input must validate them
(resolve and check containment) themselves.
"""

# File forwards to a wrapped file object of any kind (typed Any): its methods return
# what that object's do, which mypy's warn_return_any would flag on every one.
# mypy: disable-error-code="no-any-return"

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

from ._scope import masked
from .sync import Lock
from .threads import to_thread

__all__ = ["File", "Path", "open_file", "wrap_file"]


def _run(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` in a thread; once started it completes and its result is
    returned even if the task is cancelled meanwhile (delivered at the next
    checkpoint)."""
    return to_thread(fn, *args, complete_on_cancel=True)


class File:
    """A file object whose blocking methods run in worker threads.

    ``wrapped`` is the underlying file object. Attributes that do not block
    (``name``, ``mode``, ``closed``, ``encoding``, ``fileno()``...) are read
    directly. Iterating yields lines (each ``readline`` in a thread).
    """

    __slots__ = ("_f", "_lock")

    def __init__(self, f: Any):
        self._f = f
        self._lock = Lock()

    @property
    def wrapped(self) -> Any:
        return self._f

    def _call(self, method: str, *args: Any) -> Any:
        with self._lock:  # FIFO turn; a cancelled wait did nothing
            return _run(getattr(self._f, method), *args)

    # -- blocking methods (each a checkpoint, see the module docstring) -----------

    def read(self, size: int = -1) -> Any:
        return self._call("read", size)

    def read1(self, size: int = -1) -> Any:
        return self._call("read1", size)

    def readinto(self, buffer: Any) -> int:
        return self._call("readinto", buffer)

    def readline(self, size: int = -1) -> Any:
        return self._call("readline", size)

    def readlines(self, hint: int = -1) -> list[Any]:
        return self._call("readlines", hint)

    def write(self, data: Any) -> int:
        return self._call("write", data)

    def writelines(self, lines: Any) -> None:
        return self._call("writelines", list(lines))

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._call("seek", offset, whence)

    def tell(self) -> int:
        return self._call("tell")

    def truncate(self, size: int | None = None) -> int:
        return self._call("truncate", size)

    def flush(self) -> None:
        return self._call("flush")

    def peek(self, size: int = 0) -> bytes:
        return self._call("peek", size)

    def close(self) -> None:
        """Close the file (in a thread; idempotent). A checkpoint; once started it
        completes even if the task is cancelled."""
        if self._f.closed:
            return
        with masked(), self._lock:  # closing is never skipped, even by a cancellation
            to_thread(self._f.close)

    # -- non-blocking ------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._f.closed

    @property
    def name(self) -> Any:
        return self._f.name

    @property
    def mode(self) -> str:
        return self._f.mode

    @property
    def encoding(self) -> str | None:
        return getattr(self._f, "encoding", None)

    def fileno(self) -> int:
        return self._f.fileno()

    def readable(self) -> bool:
        return self._f.readable()

    def writable(self) -> bool:
        return self._f.writable()

    def seekable(self) -> bool:
        return self._f.seekable()

    def statistics(self) -> dict[str, Any]:
        return {"closed": self._f.closed, "lock": self._lock.statistics()}

    def __iter__(self) -> Iterator[Any]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line

    def __enter__(self) -> File:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<greenrt.fs.File {self._f!r}>"


def wrap_file(f: Any) -> File:
    """Wrap an already open file object."""
    return File(f)


def open_file(file: Any, mode: str = "r", buffering: int = -1, encoding: str | None = None,
              errors: str | None = None, newline: str | None = None, closefd: bool = True,
              opener: Callable[[str, int], int] | None = None) -> File:
    """``open()`` in a worker thread; returns a :class:`File`. A checkpoint: cancelled
    before the open starts, nothing is opened; once started, the open completes and
    the file is returned (the cancellation comes at the next checkpoint, so close it
    with ``with``)."""
    f = _run(lambda: open(file, mode, buffering, encoding, errors, newline, closefd, opener))
    return File(f)


def _io(name: str, wrap: str | None = None) -> Callable[..., Any]:
    """A ``Path`` method that runs ``pathlib.Path.<name>`` in a thread."""
    def method(self: Path, *args: Any, **kwargs: Any) -> Any:
        fn = getattr(self._p, name)
        result = _run(lambda: fn(*args, **kwargs))
        if wrap == "path":
            return Path(result)
        if wrap == "paths":
            return [Path(p) for p in result]
        return result

    method.__name__ = name
    method.__qualname__ = f"Path.{name}"
    method.__doc__ = (f"``pathlib.Path.{name}`` in a worker thread. A checkpoint; see the "
                      "module docstring for cancellation.")
    return method


class Path:
    """A ``pathlib.Path`` whose file-system operations run in worker threads.

    Pure operations (``/``, ``name``, ``parent``, ``with_suffix``...) run inline;
    ``exists``, ``stat``, ``read_text``, ``write_bytes``, ``mkdir``, ``iterdir``
    (returns a list), ``glob`` (list) and the rest run in a thread, each a
    checkpoint. ``open()`` returns a :class:`File`.
    """

    __slots__ = ("_p",)
    _p: pathlib.Path

    def __init__(self, *parts: Any) -> None:
        self._p = pathlib.Path(*[p._p if isinstance(p, Path) else p for p in parts])

    # pure ------------------------------------------------------------------------------

    def __fspath__(self) -> str:
        return os.fspath(self._p)

    def __str__(self) -> str:
        return str(self._p)

    def __repr__(self) -> str:
        return f"greenrt.fs.Path({str(self._p)!r})"

    def __truediv__(self, other: Any) -> Path:
        return Path(self._p / (other._p if isinstance(other, Path) else other))

    def __rtruediv__(self, other: Any) -> Path:
        return Path(other / self._p)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Path):
            return self._p == other._p
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._p)

    def __lt__(self, other: Path) -> bool:
        return self._p < other._p

    @property
    def path(self) -> pathlib.Path:
        """The underlying ``pathlib.Path``."""
        return self._p

    name = property(lambda self: self._p.name)
    suffix = property(lambda self: self._p.suffix)
    suffixes = property(lambda self: self._p.suffixes)
    stem = property(lambda self: self._p.stem)
    parts = property(lambda self: self._p.parts)
    anchor = property(lambda self: self._p.anchor)
    parent = property(lambda self: Path(self._p.parent))
    parents = property(lambda self: [Path(p) for p in self._p.parents])

    def joinpath(self, *other: Any) -> Path:
        return Path(self._p.joinpath(*other))

    def with_name(self, name: str) -> Path:
        return Path(self._p.with_name(name))

    def with_suffix(self, suffix: str) -> Path:
        return Path(self._p.with_suffix(suffix))

    def with_stem(self, stem: str) -> Path:
        return Path(self._p.with_stem(stem))

    def relative_to(self, *other: Any) -> Path:
        return Path(self._p.relative_to(*[o._p if isinstance(o, Path) else o for o in other]))

    def is_relative_to(self, other: Any) -> bool:
        return self._p.is_relative_to(other._p if isinstance(other, Path) else other)

    def is_absolute(self) -> bool:
        return self._p.is_absolute()

    def as_posix(self) -> str:
        return self._p.as_posix()

    def match(self, pattern: str) -> bool:
        return self._p.match(pattern)

    # blocking (threads) -----------------------------------------------------------------

    exists = _io("exists")
    is_file = _io("is_file")
    is_dir = _io("is_dir")
    is_symlink = _io("is_symlink")
    stat = _io("stat")
    lstat = _io("lstat")
    read_text = _io("read_text")
    read_bytes = _io("read_bytes")
    write_text = _io("write_text")
    write_bytes = _io("write_bytes")
    mkdir = _io("mkdir")
    rmdir = _io("rmdir")
    unlink = _io("unlink")
    touch = _io("touch")
    chmod = _io("chmod")
    symlink_to = _io("symlink_to")
    hardlink_to = _io("hardlink_to")
    samefile = _io("samefile")
    rename = _io("rename", "path")
    replace = _io("replace", "path")
    resolve = _io("resolve", "path")
    absolute = _io("absolute", "path")
    expanduser = _io("expanduser", "path")
    readlink = _io("readlink", "path")

    def iterdir(self) -> list[Path]:
        """The directory's entries as a list (read in a thread). A checkpoint."""
        p = self._p
        return [Path(x) for x in _run(lambda: list(p.iterdir()))]

    def glob(self, pattern: str) -> list[Path]:
        """Matches as a list (in a thread). A checkpoint."""
        p = self._p
        return [Path(x) for x in _run(lambda: list(p.glob(pattern)))]

    def rglob(self, pattern: str) -> list[Path]:
        p = self._p
        return [Path(x) for x in _run(lambda: list(p.rglob(pattern)))]

    def open(self, mode: str = "r", buffering: int = -1, encoding: str | None = None,
             errors: str | None = None, newline: str | None = None) -> File:
        """``open_file(self, ...)``. A checkpoint."""
        return open_file(self._p, mode, buffering, encoding, errors, newline)

    @classmethod
    def cwd(cls) -> Path:
        return cls(_run(pathlib.Path.cwd))

    @classmethod
    def home(cls) -> Path:
        return cls(_run(pathlib.Path.home))
