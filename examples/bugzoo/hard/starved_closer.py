"""Hard zoo: a use-after-close that needs one task to be starved.

A pool of workers each handle ``STEPS`` requests (a checkpoint each); a closer task
closes the shared resource after one checkpoint of its own. A reporter uses the
resource after its ``LATE``-th checkpoint and asserts it is still open... which it is
unless the closer ran *later* than every other task's first ``LATE`` steps. Under
uniform random scheduling the closer is picked long before that (the bug needs it to
lose ~``LATE * (WORKERS + 1)`` consecutive picks); PCT of depth 1 gives the closer the
lowest priority with probability about 1/n. A depth-1 starvation bug.
"""

from __future__ import annotations

import greenrt
import greenrt.lab as lab

WORKERS = 4
STEPS = 20
LATE = 14


def main() -> None:
    res = lab.shared({"open": True}, "resource")

    def worker() -> None:
        for _ in range(STEPS):
            greenrt.checkpoint()

    def closer() -> None:
        greenrt.checkpoint()
        res["open"] = False

    def reporter() -> None:
        for _ in range(LATE):
            greenrt.checkpoint()
        assert not res["open"], "the reporter ran before the closer: it must wait for it"

    with greenrt.region(name="service") as r:
        for i in range(WORKERS):
            r.spawn(worker, name=f"worker{i}")
        r.spawn(closer, name="closer")
        r.spawn(reporter, name="reporter")
