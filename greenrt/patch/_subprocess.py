"""The cooperative ``subprocess.Popen``: ``wait``/``communicate`` park the task, not
the hub.

``wait`` waits for the child's exit on a pidfd (``os.pidfd_open``, Linux 5.3+)
through the hub's driver, then reaps it with the original's ``poll()``; without
pidfds it polls with a backoff sleep (1 ms doubling to 50 ms). ``communicate``
always takes the multi-pipe path (``_communicate``), which waits with
``subprocess._PopenSelector``, pointed at the cooperative ``PollSelector`` by the
patch. Both are checkpoints inside a task; elsewhere they are the originals.

Cancellation: a cancelled ``wait`` or ``communicate`` leaves the child running and
unreaped (as a ``TimeoutExpired`` does): output read so far is kept for the next
``communicate``, as the original keeps it. Leaving ``with Popen(...)`` because of
a greenrt cancellation terminates the child (SIGTERM, SIGKILL after ``GRACE``
seconds) and reaps it, so no zombie is left; ``subprocess.run`` goes through that
path too. ``greenrt.run_process`` is the structured alternative.
"""

from __future__ import annotations

import os
import subprocess as _subprocess
from typing import Any

import greenrt
from greenrt import lowlevel as _ll

from ._common import real_popen, task_hub

#: seconds between SIGTERM and SIGKILL when a task is cancelled inside ``with Popen``
GRACE = 1.0


def wait_child(popen: Any, timeout: float | None) -> int:
    """Park until ``popen`` has exited and reap it; raise ``TimeoutExpired`` after
    ``timeout`` seconds. A checkpoint; cancellation leaves the child unreaped."""
    hub = task_hub()
    _ll.enter_checkpoint()
    if popen.returncode is not None:
        return popen.returncode  # type: ignore[no-any-return]
    if timeout is None:
        _wait_exit(hub, popen)
    else:
        # subprocess's own remaining-time arithmetic may hand a negative timeout in:
        # like the stdlib, that means "already expired", not an error
        with greenrt.move_on_after(max(timeout, 0)) as scope:
            _wait_exit(hub, popen)
        if scope.cancelled_caught:
            raise _subprocess.TimeoutExpired(popen.args, timeout)
    return popen.returncode  # type: ignore[return-value]


def _wait_exit(hub: Any, popen: Any) -> None:
    try:
        fd = os.pidfd_open(popen.pid)
    except (AttributeError, OSError):
        fd = None
    try:
        delay = 0.001
        while popen.poll() is None:
            if fd is not None:
                hub.driver.wait_readable(fd)
            else:
                greenrt.sleep(delay)
                delay = min(delay * 2, 0.05)
    finally:
        if fd is not None:
            os.close(fd)


def terminate_and_reap(popen: Any, grace: float) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds, and reap; masked (runs during
    a cancellation). Inside a task only."""
    with greenrt.masked():
        if popen.poll() is None:
            try:
                popen.terminate()
            except ProcessLookupError:
                pass
            with greenrt.move_on_after(grace):
                wait_child(popen, None)
            if popen.poll() is None:
                try:
                    popen.kill()
                except ProcessLookupError:
                    pass
                wait_child(popen, None)


class Popen(real_popen):  # type: ignore[type-arg]
    """``subprocess.Popen`` whose waits are cooperative inside tasks."""

    def wait(self, timeout: Any = None) -> Any:
        if task_hub() is None:
            return real_popen.wait(self, timeout)
        return wait_child(self, timeout)

    def communicate(self, input: Any = None, timeout: Any = None) -> Any:
        if task_hub() is None:
            return real_popen.communicate(self, input, timeout)
        if self._communication_started and input:  # type: ignore[has-type]
            raise ValueError("Cannot send input after starting communication")
        _ll.enter_checkpoint()
        endtime = None if timeout is None else _subprocess._time() + timeout  # type: ignore[attr-defined]
        try:
            stdout, stderr = self._communicate(input, endtime, timeout)  # type: ignore[attr-defined]
        finally:
            self._communication_started = True
        sts = self.wait(timeout=self._remaining_time(endtime))  # type: ignore[attr-defined]
        del sts
        return stdout, stderr

    def __exit__(self, exc_type: Any, value: Any, traceback: Any) -> Any:
        if task_hub() is not None and exc_type is not None and issubclass(exc_type, greenrt.Cancelled):
            for f in (self.stdout, self.stderr, self.stdin):
                if f is not None:
                    try:
                        f.close()
                    except OSError:
                        pass
            terminate_and_reap(self, GRACE)
            return None
        return real_popen.__exit__(self, exc_type, value, traceback)
