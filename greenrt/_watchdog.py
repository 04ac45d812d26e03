"""The blocked-hub watchdog (off by default, like gevent's ``max_blocking_time``).

Python cannot preempt a task that never reaches a checkpoint, but it must not be
invisible. ``greenrt.run(main, watchdog=0.5)`` starts a daemon thread that looks at
the hub every ``threshold / 2`` seconds. The hub polls I/O and timers at least every
64 task switches (``Hub.stats["polls"]``); if that counter has not moved for longer
than ``threshold`` while the hub is not legitimately waiting in the I/O driver, some
task is holding the thread. The watchdog then logs a warning on the ``greenrt``
logger with the running task and its current stack (read with
``sys._current_frames()``), once per stall, and queues a ``hub.blocked`` trace event
that the hub emits as soon as it runs again. Zero cost when off: no thread, no check
on any hot path (the hub already keeps the counter and the wait flag).
"""

from __future__ import annotations

import sys
import threading
import traceback
from typing import TYPE_CHECKING, Any

from ._log import logger

if TYPE_CHECKING:  # pragma: no cover
    from ._hub import Hub


class Watchdog:
    def __init__(self, hub: Hub, threshold: float) -> None:
        if not threshold > 0:
            raise ValueError("watchdog threshold must be a positive number of seconds")
        self.hub = hub
        self.threshold = threshold
        self.thread_id = threading.get_ident()
        self._stop = threading.Event()
        self.reports: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._run, name="greenrt-watchdog", daemon=True)
        self._thread._greenrt_ignore = True  # type: ignore[attr-defined]  # not a thread that could wake a task
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        hub = self.hub
        last = hub.stats["polls"]
        stalled_for = 0.0
        reported = False
        step = self.threshold / 2
        while not self._stop.wait(step):
            polls = hub.stats["polls"]
            if polls != last or hub._in_wait:
                last = polls
                stalled_for = 0.0
                reported = False
                continue
            stalled_for += step
            if stalled_for >= self.threshold and not reported:
                reported = True
                self._report(stalled_for)

    def _report(self, stalled_for: float) -> None:
        hub = self.hub
        task = hub.current
        frame = sys._current_frames().get(self.thread_id)
        stack = "".join(traceback.format_stack(frame)) if frame is not None else ""
        info = {"task": getattr(task, "id", None), "name": getattr(task, "name", None),
                "seconds": round(stalled_for, 3), "stack": stack}
        self.reports.append(info)
        logger.warning("greenrt: the hub has not run for %.2f s: task %s (%s) is not reaching "
                       "a checkpoint\n%s", stalled_for, info["task"], info["name"], stack)
        hub.call_soon_threadsafe(lambda: hub.emit("hub.blocked", **info))
