"""What every patched call shares: "am I inside a greenrt task?", and the two ways
of waiting for an fd (through the hub's driver inside a task, through a real
``poll`` outside one).

The originals of everything the patch replaces are captured here, at import time,
before any patching can have happened (``greenrt.patch`` imports this module first),
so the fall-through paths and ``unpatch`` always reach the real calls.
"""

from __future__ import annotations

import math
import select as _select
import socket as _socket
import subprocess as _subprocess
import threading as _threading
import time as _time
from typing import TYPE_CHECKING

from greenrt._checkpoint import _enter as enter_checkpoint_on  # noqa: F401  (hot path)
from greenrt._hub import _tls as _tls
from greenrt.lowlevel import current_hub_or_none  # noqa: F401

if TYPE_CHECKING:  # pragma: no cover
    from greenrt.lowlevel import Hub

#: originals, captured before any patch
real_socket_class = _socket.socket
real_getaddrinfo = _socket.getaddrinfo
real_poll = _select.poll
real_select = _select.select
real_epoll = _select.epoll
real_sleep = _time.sleep
real_allocate_lock = _threading._allocate_lock  # type: ignore[attr-defined]
real_popen = _subprocess.Popen
monotonic = _time.monotonic

_POLLIN = _select.POLLIN
_POLLOUT = _select.POLLOUT


def task_hub() -> Hub | None:
    """The hub if the caller is a greenrt task on a hub with a real I/O driver, else
    ``None`` (outside ``run()``, on the hub greenlet itself, in another thread, under
    a hub without a driver): the test every patched call starts with."""
    hub: Hub | None = getattr(_tls, "hub", None)  # current_hub_or_none(), one call less: hot path
    if hub is None or hub.current is None or hub.driver is None:
        return None
    return hub


def wait_fd_outside(fd: int, writing: bool, timeout: float | None) -> bool:
    """Block the thread until ``fd`` is ready or ``timeout`` passes (False then)."""
    p = real_poll()
    p.register(fd, _POLLOUT if writing else _POLLIN)
    ms = -1 if timeout is None else max(0, math.ceil(timeout * 1000))
    return bool(p.poll(ms))


def wait_fd_inside(hub: Hub, fd: int, writing: bool, timeout: float | None) -> bool:
    """Park the current task until ``fd`` is ready or ``timeout`` passes (False then).

    The caller has already run the check half of the checkpoint. Cancellation
    leaves no registration behind (the driver's abort)."""
    drv = hub.driver
    wait = drv.wait_writable if writing else drv.wait_readable
    if timeout is None:
        wait(fd)
        return True
    if timeout <= 0:
        return False
    from greenrt import move_on_after

    with move_on_after(timeout) as scope:
        wait(fd)
    return not scope.cancelled_caught
