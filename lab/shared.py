"""Declaring shared state to the lab: ``lab.shared(obj, name)`` and ``lab.access``.

greenrt's own objects (locks, semaphores, events, channels, streams...) report every
read and write to the hub (``Hub.note_access``); that is the dependency relation the
lab's DPOR explores. Plain Python objects shared between tasks are invisible to it,
so two tasks that read-modify-write a dict across a checkpoint look independent and
DPOR would try only one order. Declare them:

* ``account = lab.shared({"balance": 100}, "account")`` wraps an object in a proxy
  that reports item and attribute reads (``write=False``) and item/attribute
  assignments and deletions (``write=True``) under the stable key
  ``("shared", name)``, each when it happens;
* methods: a method written in Python runs with ``self`` bound to the *proxy*, so
  every attribute it reads or writes is reported when it happens — also after a
  checkpoint inside the method (``Inventory.take()`` checking stock, yielding, then
  decrementing is two steps, a read and a write, exactly as DPOR must see it).
  A method of a built-in type (``dict.setdefault``, ``list.append``) cannot take a
  proxy and cannot yield: it is reported as one write when called. A Python method
  that uses zero-argument ``super()`` (which requires the real ``self``) is refused
  with ``LabError`` naming it: declare the attributes it touches with
  ``lab.access`` instead;
* ``lab.access("account", write=True)`` reports one access by hand.

Both cost one attribute test outside the lab (the real hub ignores reports) and work
outside any hub (nothing to report to). The key is the *name*, so it is stable
across runs: use one name per shared object.
"""

from __future__ import annotations

import types
from typing import Any

from greenrt.lowlevel import current_hub_or_none


def access(name: str, write: bool = True) -> None:
    """Report that the current task reads (``write=False``) or writes ``name``."""
    hub = current_hub_or_none()
    if hub is not None and hub.wants_access:
        hub.note_access(("shared", name), write)


class Shared:
    """A reporting proxy (see the module docstring). ``unwrap()`` gives the object."""

    __slots__ = ("_lab_obj", "_lab_name")

    def __init__(self, obj: Any, name: str):
        object.__setattr__(self, "_lab_obj", obj)
        object.__setattr__(self, "_lab_name", name)

    def unwrap(self) -> Any:
        return object.__getattribute__(self, "_lab_obj")

    def _n(self, write: bool) -> None:
        access(object.__getattribute__(self, "_lab_name"), write)

    def __getattr__(self, attr: str) -> Any:
        obj = object.__getattribute__(self, "_lab_obj")
        v = getattr(obj, attr)
        if isinstance(v, types.MethodType) and v.__self__ is obj \
                and isinstance(v.__func__, types.FunctionType):
            fn = v.__func__
            if fn.__code__.co_freevars and "__class__" in fn.__code__.co_freevars:
                from .errors import LabError

                raise LabError(
                    f"lab.shared({object.__getattribute__(self, '_lab_name')!r}): method "
                    f"{fn.__qualname__} uses super() and cannot run on the proxy; declare "
                    f"what it touches with lab.access(name, write) instead")
            return types.MethodType(fn, self)  # self is the proxy: accesses are seen
        if callable(v):
            name = object.__getattribute__(self, "_lab_name")

            def call(*a: Any, **k: Any) -> Any:
                access(name, True)
                return v(*a, **k)

            return call
        self._n(False)
        return v

    def __setattr__(self, attr: str, value: Any) -> None:
        self._n(True)
        setattr(object.__getattribute__(self, "_lab_obj"), attr, value)

    def __delattr__(self, attr: str) -> None:
        self._n(True)
        delattr(object.__getattribute__(self, "_lab_obj"), attr)

    def __getitem__(self, k: Any) -> Any:
        self._n(False)
        return object.__getattribute__(self, "_lab_obj")[k]

    def __setitem__(self, k: Any, v: Any) -> None:
        self._n(True)
        object.__getattribute__(self, "_lab_obj")[k] = v

    def __delitem__(self, k: Any) -> None:
        self._n(True)
        del object.__getattribute__(self, "_lab_obj")[k]

    def __contains__(self, k: Any) -> bool:
        self._n(False)
        return k in object.__getattribute__(self, "_lab_obj")

    def __len__(self) -> int:
        self._n(False)
        return len(object.__getattribute__(self, "_lab_obj"))

    def __iter__(self):
        self._n(False)
        return iter(list(object.__getattribute__(self, "_lab_obj")))

    def __bool__(self) -> bool:
        self._n(False)
        return bool(object.__getattribute__(self, "_lab_obj"))

    def __repr__(self) -> str:
        return (f"lab.shared({object.__getattribute__(self, '_lab_obj')!r}, "
                f"{object.__getattribute__(self, '_lab_name')!r})")


def shared(obj: Any, name: str) -> Any:
    """Wrap ``obj`` so that tasks' reads and writes are reported under ``name``."""
    if not isinstance(name, str) or not name:
        raise ValueError("a shared object needs a non-empty name")
    return Shared(obj, name)
