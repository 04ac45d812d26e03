"""Leaving the region a Kafka client object owns for its tasks (the consumer's
heartbeat, the producer's senders): the client's ``__exit__`` runs its own last step
(shutdown, flush) and then closes the region, handing it the block's exception or,
when the block ended normally, the last step's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def exit_owned_region(region_cm: Any, etype, exc, tb, before: Callable[[], None]) -> bool:
    """Run ``before()``, then ``region_cm.__exit__``; return what the region returns.
    An exception of ``before`` goes to the region as the block's when the block had
    none, and is raised after it unless the region absorbed it. The owned tasks never
    fail (their work holds its own errors), so a group of one that is the block's
    exception is re-raised as itself."""
    err = None
    try:
        before()
    except BaseException as e:  # handed to the region like an error of the block
        err = e
    if err is not None and exc is None:
        etype, exc, tb = type(err), err, err.__traceback__
    try:
        absorbed = region_cm.__exit__(etype, exc, tb)
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1 and group.exceptions[0] is exc:
            raise exc from None
        raise
    if err is not None and not absorbed:
        raise err
    return absorbed
