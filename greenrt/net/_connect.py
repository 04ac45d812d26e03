"""Opening connections by name: resolution, address ordering and happy eyeballs.

Network-independent: works on any ``hub.network`` through ``resolve`` and the
single-address ``open_tcp`` primitive.

Happy eyeballs (RFC 8305, §4-5): addresses are ordered by interleaving the address
families, starting with the family of the first answer. The first attempt starts at
once; each further attempt starts when the previous one failed or after
``delay`` seconds, whichever comes first. All attempts run as tasks in one region;
the first to connect wins, every other attempt is cancelled (``race_lost``) and its
socket closed, and a loser that connected anyway is closed. The region guarantees
that no attempt outlives ``open_tcp``.

Invariants: on return exactly one stream is open; on any exception (including
``Cancelled`` from the caller's deadline) none is.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any, NoReturn

from .._checkpoint import _enter, park
from .._hub import current_hub
from .._reason import CancelKind, CancelReason
from .._region import region
from .._scope import fail_after, move_on_after
from .._usage import check_duration

if TYPE_CHECKING:  # pragma: no cover
    from .._region import Region
    from .._task import Task
    from ._abc import AddrInfo, Network, Stream

_SOCK_STREAM = 1  # socket.SOCK_STREAM on every platform greenrt supports
_AF_INET6 = 10


class _Flag:
    """A one-shot flag one task can wait for (a checkpoint); ``set`` is not."""

    __slots__ = ("is_set", "_waiter")

    def __init__(self) -> None:
        self.is_set = False
        self._waiter: Task[Any] | None = None

    def set(self) -> None:
        if self.is_set:
            return
        self.is_set = True
        w = self._waiter
        if w is not None:
            self._waiter = None
            w._hub.reschedule(w, None)

    def wait(self) -> None:
        task = _enter(current_hub())
        if self.is_set:
            return
        self._waiter = task

        def abort() -> bool:
            self._waiter = None
            return True

        park(abort)


def is_numeric_host(host: str) -> bool:
    """True if ``host`` is an IPv4/IPv6 literal (no DNS needed)."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def interleave(infos: list[AddrInfo]) -> list[AddrInfo]:
    """RFC 8305 §4 ordering: alternate families, starting with the first answer's."""
    if not infos:
        return []
    first = infos[0][0]
    a = [i for i in infos if i[0] == first]
    b = [i for i in infos if i[0] != first]
    out = []
    for i in range(max(len(a), len(b))):
        if i < len(a):
            out.append(a[i])
        if i < len(b):
            out.append(b[i])
    return out


def _dedupe(infos: list[AddrInfo]) -> list[AddrInfo]:
    seen = set()
    out = []
    for info in infos:
        key = (info[0], info[4][0])
        if key not in seen:
            seen.add(key)
            out.append(info)
    return out


def open_tcp(host: str, port: int, *, timeout: float | None = None, happy_eyeballs: bool = True,
             happy_eyeballs_delay: float = 0.25, local_address: Any = None) -> Stream:
    """Open a TCP connection to ``host``:``port`` and return its stream.

    A checkpoint. Numeric hosts connect directly; names are resolved (through the
    network's ``resolve``, in a worker thread on the real network) within the
    caller's deadline. With several addresses, attempts are staggered (happy
    eyeballs) or, with ``happy_eyeballs=False``, tried one after the other.
    ``timeout`` bounds the whole operation (``TooSlowError``, a ``TimeoutError``).
    A cancelled ``open_tcp`` leaves no socket open. If every attempt fails, the
    error of a single attempt is raised as is; several failures raise ``OSError``
    whose ``__cause__`` is an ``ExceptionGroup`` of them all.
    """
    check_duration(happy_eyeballs_delay, "happy_eyeballs_delay")
    if timeout is not None:
        with fail_after(check_duration(timeout, "timeout")):
            return _open_tcp(host, port, happy_eyeballs, happy_eyeballs_delay, local_address)
    return _open_tcp(host, port, happy_eyeballs, happy_eyeballs_delay, local_address)


def _open_tcp(host: str | bytes, port: int, happy_eyeballs: bool, delay: float,
              local_address: Any) -> Stream:
    network = current_hub().network
    if isinstance(host, bytes):
        host = host.decode("ascii")
    if is_numeric_host(host):
        return network.open_tcp(host, port, local_address=local_address)
    infos = network.resolve(host, port, 0, _SOCK_STREAM)
    targets = [i[4][0] for i in interleave(_dedupe(infos))]
    if not targets:
        raise OSError(f"no addresses for {host!r}")
    if len(targets) == 1:
        return network.open_tcp(targets[0], port, local_address=local_address)
    if not happy_eyeballs:
        errors: list[OSError] = []
        for t in targets:
            try:
                return network.open_tcp(t, port, local_address=local_address)
            except OSError as e:
                errors.append(e)
        _raise_all_failed(host, port, errors)
    return _race(network, host, targets, port, delay, local_address)


def _raise_all_failed(host: str, port: int, errors: list[OSError]) -> NoReturn:
    if len(errors) == 1:
        raise errors[0]
    raise OSError(f"all {len(errors)} connection attempts to {host}:{port} failed: "
                  + "; ".join(str(e) for e in errors)) from ExceptionGroup(
                      "connection attempts", errors)


def _race(network: Network, host: str, targets: list[str], port: int, delay: float,
          local_address: Any) -> Stream:
    state: dict[str, Stream | None] = {"winner": None}
    errors: list[OSError] = []

    def attempt(target: str, failed: _Flag, r: Region) -> None:
        try:
            s = network.open_tcp(target, port, local_address=local_address)
        except OSError as e:
            errors.append(e)
            failed.set()
            return
        if state["winner"] is None:
            state["winner"] = s
            r.cancel(CancelReason(CancelKind.RACE_LOST, message=f"connected to {target}"))
        else:
            s.close()

    try:
        with region(name="happy_eyeballs") as r:
            for i, t in enumerate(targets):
                failed = _Flag()
                r.spawn(attempt, t, failed, r, name=f"connect {t}")
                if i + 1 < len(targets):
                    with move_on_after(delay):
                        failed.wait()
    except BaseException:
        w = state["winner"]
        if w is not None:
            w.close()
        raise
    w = state["winner"]
    if w is None:
        _raise_all_failed(host, port, errors)
    return w
