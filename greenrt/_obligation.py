"""Obligations: two-phase effects that must be resolved.

``ob = reserve(kind)`` records that the current task owes the world a decision;
``ob.commit()`` makes the effect happen (or records that it happened), ``ob.abort()``
gives it up. Channels, semaphores and messaging clients hold an obligation across
every step where a cancellation could otherwise drop a committed effect: a send
permit, a message waiting for its ack, a lease.

Leaks. A task that completes while still holding an unresolved obligation has leaked
it. The runtime aborts the obligation (running its ``on_abort`` hook, so the resource
is returned), emits an ``obligation.leak`` trace event naming the site where it was
reserved, and then applies the region's *leak policy*:

* ``"error"`` (default): the task's outcome becomes ``err(ObligationLeak)`` if it was
  ``ok``; a worse outcome is kept and the leak is added to its exception's notes;
* ``"log"``: a warning on the ``greenrt`` logger (which has a ``NullHandler``: nothing
  is printed unless the application configures logging);
* ``"abort"``: silently abort (the trace event is still emitted).

Region-owned obligations (``Region.reserve``) are checked the same way when the
region closes, and a leak there raises ``ObligationLeak`` out of the ``with`` block.

Invariants: an obligation is resolved at most once (a second resolution raises
``InvalidStateError``); resolution hooks run exactly once; a committed or aborted
obligation is never reported as leaked.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from . import _trace as tr
from ._exceptions import InvalidStateError
from ._hub import current_hub
from ._log import log_detached, logger

if TYPE_CHECKING:  # pragma: no cover
    from types import TracebackType

    from ._hub import Hub

LEAK_POLICIES = ("error", "log", "abort")

KINDS = ("send_permit", "ack", "lease", "io_op", "semaphore_permit", "transaction")


class Obligation:
    """An unresolved two-phase effect. States: ``reserved`` → ``committed`` |
    ``aborted`` | ``leaked``. Use it as a context manager to abort on an exception::

        with greenrt.reserve("lease") as ob:
            do_work()
            ob.commit()

    Leaving the block by an exception aborts the obligation; leaving it normally
    without a decision is a leak, reported like any other.
    """

    __slots__ = ("id", "kind", "name", "_site", "state", "reason", "_owner", "_hub",
                 "_on_commit", "_on_abort", "_region", "value")

    def __init__(self, hub: Hub, owner: Any, kind: str, name: str | None,
                 site: str | tuple[str, int, str],
                 on_commit: Callable[[], Any] | None, on_abort: Callable[[Any], Any] | None,
                 region: Any = None) -> None:
        self._hub = hub
        self.id = hub._next_obligation_id()
        self.kind = kind
        self.name = name
        self._site: str | tuple[str, int, str] = site  # formatted on demand (``site``)
        self.state = "reserved"
        self.reason = None
        self._owner = owner
        self._on_commit = on_commit
        self._on_abort = on_abort
        self._region = region
        self.value = None

    @property
    def site(self) -> str:
        """Where the obligation was reserved: ``file:line in function``."""
        s = self._site
        if type(s) is tuple:
            s = self._site = f"{s[0]}:{s[1]} in {s[2]}"
        return s  # type: ignore[return-value]  # formatted above

    @property
    def resolved(self) -> bool:
        return self.state != "reserved"

    @property
    def owner_id(self) -> int | None:
        o = self._owner
        return getattr(o, "id", None)

    def _detach(self) -> None:
        owner = self._owner
        obs = owner._obligations if owner is not None else None
        if obs is not None:
            obs.pop(self.id, None)

    def commit(self) -> Any:
        """Resolve the obligation by making its effect. Not a checkpoint; never
        blocks. Returns what the commit hook returned."""
        if self.state != "reserved":
            raise InvalidStateError(f"obligation {self.id} ({self.kind}) is already {self.state}")
        self.state = "committed"
        self._detach()
        hub = self._hub
        if hub._tracing:
            hub._emit(tr.OBLIGATION_COMMIT, self.owner_id, None, obligation=self.id, kind=self.kind)
        hook = self._on_commit
        self._on_commit = self._on_abort = None
        return hook() if hook is not None else None

    def abort(self, reason: Any = None) -> None:
        """Resolve the obligation by giving the effect up. Not a checkpoint; never
        blocks. Aborting an already aborted obligation is a no-op; aborting a
        committed one raises ``InvalidStateError``."""
        if self.state == "aborted" or self.state == "leaked":
            return
        if self.state != "reserved":
            raise InvalidStateError(f"obligation {self.id} ({self.kind}) is already {self.state}")
        self._resolve_abort("aborted", reason)

    def _resolve_abort(self, state: str, reason: Any) -> None:
        self.state = state
        self.reason = reason
        self._detach()
        hub = self._hub
        if hub._tracing:
            hub._emit(tr.OBLIGATION_ABORT, self.owner_id, None, obligation=self.id,
                      kind=self.kind, reason=str(reason) if reason is not None else None,
                      leaked=state == "leaked")
        hook = self._on_abort
        self._on_commit = self._on_abort = None
        if hook is not None:
            hook(reason)

    def __enter__(self) -> Obligation:
        return self

    def __exit__(self, etype: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is not None and self.state == "reserved":
            self.abort(exc)

    def __repr__(self) -> str:
        return f"<Obligation {self.id} {self.kind} {self.state} at {self.site}>"


def _caller_site(depth: int) -> str | tuple[str, int, str]:
    """The caller's position as a tuple (formatting is deferred to ``Obligation.site``:
    most obligations are resolved and their site is never read)."""
    try:
        f = sys._getframe(depth + 1)
    except ValueError:  # pragma: no cover
        return "<unknown>"
    code = f.f_code
    return (code.co_filename, f.f_lineno, code.co_name)


def reserve(kind: str, *, name: str | None = None, on_commit: Callable[[], Any] | None = None,
            on_abort: Callable[[Any], Any] | None = None, stacklevel: int = 1) -> Obligation:
    """Reserve an obligation of ``kind`` owned by the current task.

    Not a checkpoint. ``on_commit()`` / ``on_abort(reason)`` run exactly once when it
    is resolved (also when the runtime aborts it as a leak). ``stacklevel`` picks the
    frame recorded as the reservation site (1 = the caller of ``reserve``), so a
    library can report its user's line rather than its own.
    """
    hub = current_hub()
    task = hub.current
    if task is None:
        raise InvalidStateError("reserve() must be called inside a task")
    ob = Obligation(hub, task, kind, name, _caller_site(stacklevel), on_commit, on_abort)
    if task._obligations is None:
        task._obligations = {}
    task._obligations[ob.id] = ob
    if hub._tracing:
        hub._emit(tr.OBLIGATION_RESERVE, task.id, task._task_region.id, obligation=ob.id,
                  kind=kind, site=ob.site)
    return ob


def abort_leaked(obligations: Iterable[Obligation], owner_id: int | None,
                 where: str) -> list[Obligation]:
    """Abort every still-reserved obligation as leaked; return them."""
    leaked = [ob for ob in list(obligations) if ob.state == "reserved"]
    for ob in leaked:
        hub = ob._hub
        if hub._tracing:
            hub._emit(tr.OBLIGATION_LEAK, owner_id, None, obligation=ob.id, kind=ob.kind,
                      site=ob.site, where=where)
        try:
            ob._resolve_abort("leaked", "leaked")
        except Exception as exc:  # noqa: BLE001 - nobody to raise to: the owner is gone
            log_detached("%s: on_abort hook of leaked obligation %d (%s) raised", exc,
                         where, ob.id, ob.kind)
    return leaked


def log_leak(leaked: list[Obligation], where: str) -> None:
    for ob in leaked:
        logger.warning("%s leaked obligation %d (%s) reserved at %s", where, ob.id, ob.kind, ob.site)
