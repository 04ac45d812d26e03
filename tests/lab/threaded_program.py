"""A program for the worker-start test: it checks a module-level threading lock.

The test holds ``LOCK`` in a thread of the calling process while exploring with
workers. A worker forked from that process would inherit the lock *held* (fork
copies the lock's state, not the thread that would release it); a worker started
by a forkserver or spawn imports this module afresh and finds it free.
"""

from __future__ import annotations

import threading

import greenrt

LOCK = threading.Lock()


def main() -> str:
    free = LOCK.acquire(blocking=False)
    if free:
        LOCK.release()
    assert free, "the worker inherited a lock held by a thread of its parent (fork)"
    greenrt.checkpoint()
    return "ok"
