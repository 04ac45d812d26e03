"""Hard zoo: a depth-2 bug behind a starvation.

A reporter takes a snapshot in two halves (``first`` after ``LATE`` checkpoints of
warm-up, ``second`` after one more); a rotator swaps the key after one checkpoint of
its own. The snapshot is torn only if the rotation lands *between* the two halves:
the rotator must be kept from running for the reporter's whole warm-up (while worker
tasks keep the scheduler busy) and then run within a one-step window. Uniform random
almost never starves the rotator that long; PCT of depth 2 needs the rotator's low
priority plus one change point in the window: about ``1/(n*k)`` per run.
"""

from __future__ import annotations

import greenrt
import greenrt.lab as lab

WORKERS = 3
STEPS = 20
LATE = 10


def main() -> None:
    key = lab.shared({"v": 1}, "key")

    def worker() -> None:
        for _ in range(STEPS):
            greenrt.checkpoint()

    def rotator() -> None:
        greenrt.checkpoint()
        key["v"] = 2

    def reporter() -> None:
        for _ in range(LATE):
            greenrt.checkpoint()
        first = key["v"]
        greenrt.checkpoint()
        second = key["v"]
        assert first == second, f"torn snapshot: {first} then {second}"

    with greenrt.region(name="snapshot") as r:
        for i in range(WORKERS):
            r.spawn(worker, name=f"worker{i}")
        r.spawn(rotator, name="rotator")
        r.spawn(reporter, name="reporter")
