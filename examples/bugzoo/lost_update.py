"""Bug zoo: a lost update across a checkpoint.

Three deposits update one account. Each reads the balance, calls the ledger service
(a checkpoint: other tasks may run) and writes back what it read plus its amount. If
another deposit runs between the read and the write, its update is lost. The account
is declared with ``lab.shared`` so that DPOR sees the reads and writes (greenrt's own
objects report theirs; a plain dict is invisible). Caught by the program's own
assertion (``error:AssertionError``).
"""

from __future__ import annotations

import greenrt
import greenrt.lab as lab


def main() -> int:
    account = lab.shared({"balance": 100}, "account")

    def deposit(amount: int, warmup: int) -> None:
        for _ in range(warmup):  # validation, fraud checks... (each a checkpoint)
            greenrt.checkpoint()
        seen = account["balance"]
        greenrt.checkpoint()  # the ledger RPC
        account["balance"] = seen + amount

    with greenrt.region(name="deposits") as r:
        r.spawn(deposit, 10, 0, name="deposit10")
        r.spawn(deposit, 20, 3, name="deposit20")
        r.spawn(deposit, 5, 6, name="deposit5")
    total = account["balance"]
    assert total == 135, f"lost update: balance is {total}, expected 135"
    return total
