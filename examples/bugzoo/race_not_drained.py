"""Bug zoo: a hand-written race whose loser is not drained.

``fetch_first`` asks two replicas, takes the first answer, cancels the other with
``race_lost`` — and returns at once. The loser is still running its cleanup (closing
its connection, a checkpoint) after the racer has moved on: work that outlives the
race, exactly what ``greenrt.race`` prevents by joining the losers. Caught by the
``race_drain`` oracle (the racer completed before its loser).
"""

from __future__ import annotations

import greenrt
import greenrt.lab as lab
from greenrt import CancelKind, Cancelled


def main() -> str:
    answers = lab.shared([], "answers")
    first = greenrt.Event()

    def replica(name: str, work: int) -> None:
        try:
            for _ in range(work):  # the request/response exchange
                greenrt.checkpoint()
            answers.append(name)
            first.set()
        except Cancelled:
            greenrt.checkpoint()  # close the connection politely
            raise

    def fetch_first(outer) -> str:
        a = outer.spawn(replica, "a", 3, name="replica-a")
        b = outer.spawn(replica, "b", 4, name="replica-b")
        first.wait()
        for t in (a, b):
            if not t.done:
                t.cancel(CancelKind.RACE_LOST)
        return answers[0]  # BUG: the loser was not joined (drained)

    with greenrt.region(name="outer") as outer:
        racer = outer.spawn(fetch_first, outer, name="racer")
    return racer.join()
