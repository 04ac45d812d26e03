"""A buggy program the lab catches: a lost update across a checkpoint.

Two workers increment a shared balance, but each reads the balance, does "I/O" (a
checkpoint, e.g. a network call) and then writes back what it read plus its amount.
On the real hub the bug hides behind the lucky default schedule; the lab tries
seeded schedules, finds one that loses an update, records it, and replays it exactly.

Run: ``.venv/bin/python examples/lab_lost_update.py``
Then: ``greenrt-lab show <trace>`` and ``greenrt-lab replay <trace>``.
"""

from __future__ import annotations

import os
import tempfile

import greenrt
import greenrt.lab as lab


def transfer_program() -> int:
    account = {"balance": 100}

    def deposit(amount: int, warmup: int) -> None:
        for _ in range(warmup):  # some preparation first (each step a checkpoint)
            greenrt.checkpoint()
        seen = account["balance"]
        greenrt.checkpoint()  # an RPC to the ledger, say
        account["balance"] = seen + amount

    with greenrt.region() as r:
        r.spawn(deposit, 10, 0, name="deposit10")
        r.spawn(deposit, 20, 2, name="deposit20")
    assert account["balance"] == 130, f"lost update: balance is {account['balance']}"
    return account["balance"]


def main() -> None:
    print("real hub:", greenrt.run(transfer_program))
    trace = os.path.join(tempfile.gettempdir(), "lab_lost_update.jsonl")
    for seed in range(20):
        res = lab.run(transfer_program, seed=seed, record=trace)
        if not res.ok:
            print(f"seed {seed} finds the bug:")
            print(res.summary())
            again = lab.replay(trace)
            print("replayed exactly:", again.divergence is None,
                  "| same failure:", str(again.error) == str(res.error))
            return
    print("no failing schedule in 20 seeds")


if __name__ == "__main__":
    main()
