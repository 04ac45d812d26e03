"""Under the lab, a task that swallows ``Cancelled`` is abandoned like on the real
hub, and the step limit still stops a program that spins (issue 12 §1): before the
fix the exhausted checkpoint raised without returning to the hub, so neither the
lab's scheduler nor its step counter ever ran again."""

from __future__ import annotations

import greenrt
import greenrt.lab as lab


def swallowing_program():
    # Under the lab, virtual time stands still while any task is runnable, so this
    # program waits with checkpoints, not sleeps (a spinning task would freeze a sleep).
    ticks = [0]

    def ticker():
        while True:
            greenrt.checkpoint()
            ticks[0] += 1

    def swallower():
        while True:
            try:
                greenrt.checkpoint()
            except greenrt.Cancelled:
                pass

    with greenrt.region(policy="collect_all") as r:
        r.spawn(ticker)
        s = r.spawn(swallower)
        for _ in range(3):
            greenrt.checkpoint()
        s.cancel("stop")
        at_cancel = ticks[0]
        while not s.done:
            greenrt.checkpoint()
        assert ticks[0] > at_cancel  # the other task kept running meanwhile
        assert r.statistics()["abandoned"] == 1
        r.cancel("over")


def test_the_lab_abandons_a_swallowing_task():
    res = lab.run(swallowing_program, seed=3, disable=("leak",))
    assert not res.halted
    # the region re-raised the abandoned task's CleanupOverrun
    assert "CleanupOverrun" in repr(res.outcome)
    kinds = [ev.kind for ev in res.events]
    assert "cancel.abandoned" in kinds


def spinner():
    def spin():
        while True:
            try:
                greenrt.checkpoint()
            except greenrt.Cancelled:
                pass

    with greenrt.region() as r:
        r.spawn(spin)


def test_the_step_limit_stops_a_program_that_never_ends():
    res = lab.run(spinner, seed=1, max_steps=5000)
    assert res.halted == "step_limit"
