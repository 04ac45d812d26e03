"""Bug zoo: a lock-ordering deadlock (``greenrt.Lock``).

Two transfers lock both accounts, but in opposite orders: ``a -> b`` locks ``a``
first, ``b -> a`` locks ``b`` first. Between its two acquisitions each one reads the
balance from storage (a checkpoint). If both take their first lock before either
takes its second, each waits for the other forever. Caught by the ``deadlock``
oracle, whose verdict names the wait-for cycle.
"""

from __future__ import annotations

import greenrt


def main() -> dict:
    balances = {"a": 100, "b": 100}
    locks = {"a": greenrt.Lock(), "b": greenrt.Lock()}

    def transfer(src: str, dst: str, amount: int, prep: int) -> None:
        for _ in range(prep):  # build the request
            greenrt.checkpoint()
        with locks[src]:
            greenrt.checkpoint()  # read the source balance
            with locks[dst]:
                balances[src] -= amount
                balances[dst] += amount

    with greenrt.region(name="transfers") as r:
        r.spawn(transfer, "a", "b", 10, 0, name="a->b")
        r.spawn(transfer, "b", "a", 5, 2, name="b->a")
    return balances
