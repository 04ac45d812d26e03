"""Child processes as tasks see them: ``greenrt.run_process`` and
``greenrt.open_process`` (Trio's shape).

``open_process(command, *, stdin=None, stdout=None, stderr=None, **options)`` starts
a child with ``subprocess.Popen`` (``options`` are Popen's) and returns a
``Process``. With ``subprocess.PIPE`` for a stream, the process gets a
``PipeSendStream`` (``stdin``) or ``PipeReceiveStream`` (``stdout``/``stderr``):
non-blocking pipe ends whose ``send_all``/``receive_some`` park the task through the
hub. ``Process.wait()`` waits for the exit on a pidfd (``os.pidfd_open``), so no
thread and no ``SIGCHLD`` handler is involved, and reaps the child.

``run_process(command, *, stdin=b"", capture_stdout=False, capture_stderr=False,
check=True, grace=1.0, **options)`` runs a child to completion, feeding ``stdin``
and collecting the output concurrently (one task per pipe, in a region), and
returns a ``subprocess.CompletedProcess``; with ``check`` a non-zero exit raises
``subprocess.CalledProcessError`` carrying the captured output.

Cancellation: a cancelled ``run_process`` (any cancellation, deadline, or an
exception in the caller's region) *terminates* the child: SIGTERM, then SIGKILL if
it has not exited after ``grace`` seconds, and then reaps it, inside a masked block
so the cleanup runs to the end; every pipe is closed. No zombie and no fd is left,
and the ``Cancelled`` propagates. A cancelled ``Process.wait()`` leaves the child
running (the caller owns it): use ``with open_process(...) as p:``, whose exit
closes the pipes and, if the block is left by an exception or the child is still
running after it, terminates and reaps it the same way.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._checkpoint import _enter, sleep
from ._driver import ClosedResourceError
from ._hub import current_hub
from ._scope import masked, move_on_after

if TYPE_CHECKING:  # pragma: no cover
    from types import TracebackType

    from ._hub import Hub

#: the original ``subprocess.Popen``, whatever ``greenrt.patch`` does later
_Popen = subprocess.Popen

DEFAULT_GRACE = 1.0
#: ``receive_some`` never asks the pipe for more than this
MAX_READ = 1 << 20


class _Pipe:
    def __init__(self, fileobj: Any) -> None:
        self._file = fileobj  # keeps Popen's file object from closing the fd under us
        self._fd: int = fileobj.fileno()
        os.set_blocking(self._fd, False)
        self._closed = False
        self._busy = False

    def fileno(self) -> int:
        return self._fd

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the pipe end. Not a checkpoint; a task waiting on it wakes with
        ``ClosedResourceError``."""
        if self._closed:
            return
        self._closed = True
        hub = _hub_or_none()
        if hub is not None and hub.driver is not None:
            hub.driver.notify_closing(self._fd)
        try:
            self._file.close()
        except OSError:
            pass

    def _check(self, what: str) -> None:
        if self._closed:
            raise ClosedResourceError(f"pipe is closed ({what})")
        if self._busy:
            from ._driver import BusyResourceError

            raise BusyResourceError(f"another task is already in {what} on this pipe")


def _hub_or_none() -> Hub | None:
    from ._hub import _tls

    return getattr(_tls, "hub", None)


class PipeSendStream(_Pipe):
    """The write end of a child's stdin."""

    def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data``. A checkpoint. Cancelled after a partial write, the
        child has received a prefix: the pipe is closed (the child sees EOF), since
        a later write could not continue the message. ``BrokenPipeError`` when the
        child closed its end."""
        hub = current_hub()
        _enter(hub)
        self._check("send_all")
        view = memoryview(data).cast("B")
        total = 0
        self._busy = True
        try:
            while total < len(view):
                try:
                    total += os.write(self._fd, view[total:total + 65536])
                except BlockingIOError:
                    hub.driver.wait_writable(self._fd)
        except BaseException:
            if 0 < total < len(view):
                self._busy = False
                self.close()
            raise
        finally:
            self._busy = False


class PipeReceiveStream(_Pipe):
    """The read end of a child's stdout or stderr."""

    def receive_some(self, max_bytes: int = 65536) -> bytes:
        """Up to ``max_bytes`` bytes (at most ``MAX_READ``); ``b""`` at EOF. A
        checkpoint; a cancelled call loses no data."""
        hub = current_hub()
        _enter(hub)
        self._check("receive_some")
        if max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        n = min(max_bytes, MAX_READ)
        self._busy = True
        try:
            while True:
                try:
                    return os.read(self._fd, n)
                except BlockingIOError:
                    hub.driver.wait_readable(self._fd)
        finally:
            self._busy = False


class Process:
    """A child process started by ``open_process``. ``pid``, ``args``,
    ``returncode`` (``None`` while running), ``stdin``/``stdout``/``stderr`` (pipe
    streams or ``None``)."""

    def __init__(self, popen: subprocess.Popen[Any]) -> None:
        self._popen = popen
        self.args = popen.args
        self.pid = popen.pid
        self.stdin = PipeSendStream(popen.stdin) if popen.stdin is not None else None
        self.stdout = PipeReceiveStream(popen.stdout) if popen.stdout is not None else None
        self.stderr = PipeReceiveStream(popen.stderr) if popen.stderr is not None else None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    def poll(self) -> int | None:
        """The exit status if the child has exited (reaping it), else ``None``. Not a
        checkpoint."""
        return self._popen.poll()

    def wait(self) -> int:
        """Wait for the child to exit and reap it; return its exit status (negative:
        killed by that signal). A checkpoint; a cancelled wait leaves the child
        running and unreaped."""
        hub = current_hub()
        _enter(hub)
        p = self._popen
        if p.poll() is not None:
            return p.returncode
        try:
            fd = os.pidfd_open(p.pid)
        except (AttributeError, OSError):
            fd = None
        try:
            delay = 0.001
            while p.poll() is None:
                if fd is not None:
                    hub.driver.wait_readable(fd)
                else:
                    sleep(delay)
                    delay = min(delay * 2, 0.05)
        finally:
            if fd is not None:
                os.close(fd)
        return p.returncode

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the child (nothing if it has been reaped). Not a checkpoint."""
        self._popen.send_signal(sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def close_pipes(self) -> None:
        for s in (self.stdin, self.stdout, self.stderr):
            if s is not None:
                s.close()

    def terminate_and_reap(self, grace: float = DEFAULT_GRACE) -> None:
        """SIGTERM, SIGKILL after ``grace`` seconds if still running, then reap.
        Masked: it runs to the end even during a cancellation. A checkpoint."""
        with masked():
            if self.poll() is None:
                self.terminate()
                with move_on_after(grace):
                    self.wait()
                if self.poll() is None:
                    self.kill()
                    self.wait()

    def __enter__(self) -> Process:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close_pipes()
        if exc_type is not None or self.poll() is not None:
            if self.poll() is None:
                self.terminate_and_reap()
            return
        try:
            self.wait()
        except BaseException:
            self.terminate_and_reap()
            raise

    def __repr__(self) -> str:
        return f"<greenrt.Process pid={self.pid} returncode={self._popen.returncode}>"


def open_process(command: str | Sequence[str], *, stdin: Any = None, stdout: Any = None,
                 stderr: Any = None, **options: Any) -> Process:
    """Start ``command`` (see the module docstring) and return a ``Process``.

    A checkpoint (before the child starts: a pending cancellation starts nothing).
    Starting the child is a ``fork``/``exec``, done inline. ``options`` go to
    ``subprocess.Popen`` (``cwd``, ``env``, ``shell``...); ``bufsize``,
    ``text``/``universal_newlines`` and ``encoding`` are refused: the pipes are
    byte streams."""
    for bad in ("bufsize", "text", "universal_newlines", "encoding", "errors"):
        if options.get(bad):
            raise TypeError(f"open_process does not support {bad}=; pipes carry bytes")
    _enter(current_hub())
    options.pop("bufsize", None)
    popen = _Popen(command, stdin=stdin, stdout=stdout, stderr=stderr, bufsize=0, **options)
    try:
        return Process(popen)
    except BaseException:
        popen.kill()
        popen.wait()
        raise


def run_process(command: str | Sequence[str], *, stdin: Any = b"", capture_stdout: bool = False,
                capture_stderr: bool = False, check: bool = True, grace: float = DEFAULT_GRACE,
                **options: Any) -> subprocess.CompletedProcess[bytes]:
    """Run ``command`` to completion and return a ``subprocess.CompletedProcess``.

    ``stdin``: bytes to feed (``b""``: an empty, closed stdin), or ``None`` to
    inherit, or a file/fd as ``Popen`` takes. ``capture_stdout``/``capture_stderr``
    collect the output (else it is inherited, unless ``stdout=``/``stderr=`` say
    otherwise). ``check``: raise ``subprocess.CalledProcessError`` on a non-zero
    exit. A checkpoint; cancellation terminates and reaps the child (SIGTERM, then
    SIGKILL after ``grace`` seconds) and re-raises. See the module docstring.
    """
    from ._region import region

    if isinstance(stdin, (bytes, bytearray, memoryview)):
        feed = bytes(stdin)
        options["stdin"] = subprocess.PIPE
    else:
        feed = None
        options["stdin"] = stdin
    if capture_stdout:
        if options.get("stdout") is not None:
            raise ValueError("capture_stdout and stdout= exclude each other")
        options["stdout"] = subprocess.PIPE
    if capture_stderr:
        if options.get("stderr") is not None:
            raise ValueError("capture_stderr and stderr= exclude each other")
        options["stderr"] = subprocess.PIPE
    proc = open_process(command, **options)
    out: list[bytes] = []
    err: list[bytes] = []
    try:
        def feeder() -> None:
            try:
                if feed:
                    proc.stdin.send_all(feed)  # type: ignore[union-attr]  # spawned if set
            except BrokenPipeError:
                pass  # the child did not read it all: like subprocess.run
            except OSError as e:
                if e.errno != errno.EPIPE:
                    raise
            finally:
                proc.stdin.close()  # type: ignore[union-attr]

        def reader(stream: PipeReceiveStream, sink: list[bytes]) -> None:
            while True:
                chunk = stream.receive_some(65536)
                if not chunk:
                    return
                sink.append(chunk)

        with region(name="run_process") as r:
            if proc.stdin is not None:
                r.spawn(feeder, name="run_process.stdin")
            if proc.stdout is not None:
                r.spawn(reader, proc.stdout, out, name="run_process.stdout")
            if proc.stderr is not None:
                r.spawn(reader, proc.stderr, err, name="run_process.stderr")
            rc = proc.wait()
    except BaseException:
        proc.close_pipes()
        proc.terminate_and_reap(grace)
        raise
    proc.close_pipes()
    stdout = b"".join(out) if capture_stdout else None
    stderr = b"".join(err) if capture_stderr else None
    if check and rc != 0:
        raise subprocess.CalledProcessError(rc, proc.args, output=stdout, stderr=stderr)
    return subprocess.CompletedProcess(proc.args, rc, stdout, stderr)


__all__ = ["PipeReceiveStream", "PipeSendStream", "Process", "open_process", "run_process"]
