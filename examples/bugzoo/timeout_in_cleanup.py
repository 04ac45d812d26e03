"""Bug zoo: a timeout that fires during cleanup.

Workers share a lock-protected resource. Each holds a lease (an obligation) on a
remote slot, works under the lock, then — in ``finally`` — returns the slot to the
server (I/O taking virtual time) and commits the lease. The whole job sits in one
``move_on_after(1.0)``. If the timeout fires while the worker is *working*, the
``finally`` runs as cancellation cleanup and may block, so the lease is committed.
But when a worker waited long for the lock, the timeout fires during the slow
``finally`` itself: the cleanup's I/O raises ``Cancelled``, ``commit`` never runs,
``move_on_after`` swallows the cancellation and the task ends holding the lease.
Caught by the ``obligation`` oracle (leaked ``lease``, with its reservation site).
"""

from __future__ import annotations

import greenrt


def main() -> list:
    lock = greenrt.Lock()
    done: list = []

    def worker(name: str, work: float, cleanup: float) -> None:
        lease = greenrt.reserve("lease")
        with greenrt.move_on_after(1.0):
            try:
                with lock:
                    greenrt.sleep(work)
            finally:
                greenrt.sleep(cleanup)  # give the slot back to the server
                lease.commit()
        done.append(name)

    with greenrt.region(name="workers", policy="collect_all") as r:
        r.spawn(worker, "fast", 0.2, 0.2, name="fast")
        r.spawn(worker, "slow", 0.5, 0.4, name="slow")
        r.spawn(worker, "tiny", 0.05, 0.05, name="tiny")
    return done
