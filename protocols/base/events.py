"""One trace-event naming scheme for the protocol stack.

* ``protocol.error`` — a peer fault or a limit: fields ``protocol`` (``"redis"``,
  ``"http1"``…), ``code`` (the error's reason code) and whatever else helps (``peer``,
  ``status``, ``limit``). One event name for every protocol, so a subscriber that
  counts peer faults needs no per-protocol list.
* ``<protocol>.<what>`` — everything else a protocol reports (``http1.half_close``,
  ``redis.push_dropped``, ``pool.discard``): lower case, dot-separated, the protocol
  (or floor component) first.

Both go through the current hub's ``emit``; with no subscriber that costs a call and
an attribute check.
"""

from __future__ import annotations

from typing import Any

from greenrt import lowlevel as _ll

__all__ = ["emit_event", "emit_protocol_error"]


def emit_protocol_error(protocol: str, code: str, **data: Any) -> None:
    """Emit ``protocol.error`` for ``protocol`` with reason ``code``."""
    _ll.current_hub().emit("protocol.error", protocol=protocol, code=code, **data)


def emit_event(name: str, **data: Any) -> None:
    """Emit ``name`` (``<protocol>.<what>``) with ``data``."""
    _ll.current_hub().emit(name, **data)
