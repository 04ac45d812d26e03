"""Every oracle has a program that violates it, and its verdict names the violation."""

from __future__ import annotations

import inspect
import os
import sys

import pytest

import greenrt.lab as lab

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import lab_programs as P  # noqa: E402


def only(r, oracle):
    vs = r.violations_of(oracle)
    assert vs, r.summary()
    return vs


def test_clean_programs_pass_every_oracle():
    for fn in (P.switchy, P.timer_tie, P.race_ok, P.long_sleep):
        for seed in range(3):
            r = lab.run(fn, seed=seed)
            assert r.ok, r.summary()
            assert set(r.verdicts.values()) == {"ok"}


def test_quiescence():
    r = lab.run(P.quiescence_violation, seed=0)
    (v,) = only(r, "quiescence")
    assert "region 2 (fire-and-forget) closed" in v.message
    assert "timer #" in v.message and "(_noop) still pending" in v.message
    assert "scheduled by task 2 (scheduler) for t=10.0" in v.message
    assert r.verdicts["quiescence"] == "violated"
    assert not lab.run(P.quiescence_violation, seed=0, disable=("quiescence",)).violations


def test_leak_region_never_closed():
    r = lab.run(P.region_leak_violation, seed=0)
    (v,) = only(r, "leak")
    assert v.message.startswith("region 2 (abandoned) opened by task 1 (region_leak_violation)")
    assert "was never closed" in v.message and "completed at step" in v.message


def test_orphan_and_task_leak():
    r = lab.run(P.orphan_violation, seed=0)
    (o,) = only(r, "orphan")
    assert o.message.startswith("task 2 (forgotten) in region 2 (abandoned) is still alive "
                                "at run exit")
    assert "sleep_forever" in o.message
    leaks = [v.message for v in only(r, "leak")]
    assert any(m.startswith("task 2 (forgotten) spawned into region 2 (abandoned)")
               and "never completed" in m for m in leaks)
    off = lab.run(P.orphan_violation, seed=0, disable=("orphan", "leak"))
    assert not off.violations


def test_obligation_leak_names_the_reservation_site():
    r = lab.run(P.obligation_violation, seed=0)
    (v,) = only(r, "obligation")
    src, start = inspect.getsourcelines(P.obligation_violation)
    line = start + next(i for i, s in enumerate(src) if "RESERVE_LINE" in s)
    assert v.message.startswith("obligation 1 (lease) leaked by task 2 (leaky)")
    assert v.details["site"] == f"{P.__file__}:{line} in leaky"
    assert f"reserved at {P.__file__}:{line} in leaky" in v.message


def test_race_loser_not_drained():
    r = lab.run(P.race_violation, seed=0)
    (v,) = only(r, "race_drain")
    assert v.message.startswith("race loser task 4 (slow) was not drained: cancelled with "
                                "race_lost by task 2 (racer)")
    assert "(task 2 (racer) completed) before the loser completed" in v.message
    ok = lab.run(P.race_ok, seed=0)
    assert ok.ok, ok.summary()


def test_cleanup_budget_exceeded():
    r = lab.run(P.cleanup_budget_violation, seed=0)
    (v,) = only(r, "cancel_protocol")
    assert v.message.startswith("task 2 (slow_cleanup) exceeded its cleanup budget "
                                "(1000 polls, 5.0 s")
    assert "for cancellation user" in v.message and "t=6.0" in v.message


def test_swallowed_cancellation():
    r = lab.run(P.swallow_violation, seed=0)
    (v,) = only(r, "cancel_protocol")
    assert v.message.startswith("task 2 (swallower) received Cancelled (user)")
    assert "completed ok" in v.message and "swallowed" in v.message


def test_deadlock_reports_the_wait_for_graph():
    r = lab.run(P.deadlock_violation, seed=0)
    (v,) = only(r, "deadlock")
    assert "every task is blocked, no timer and no I/O pending" in v.message
    assert "wait-for cycle: task 2 (a) -> task 3 (b) -> task 2 (a)" in v.message
    assert "task 2 (a) parked in Task.join on task 3 (b) at" in v.message
    assert "task 3 (b) parked in Task.join on task 2 (a) at" in v.message
    assert "task 1 (deadlock_violation) parked in Region.__exit__ on region 2 (pair)" in v.message
    blocked = {b["task"]: b["on"] for b in v.details["blocked"]}
    assert blocked == {1: [2, 3], 2: [3], 3: [2]}
    # The lab breaks the deadlock by shutting the root region down: the run ends.
    assert r.outcome.is_cancelled and "deadlock" in str(r.error)
    assert r.halted is None


@pytest.mark.parametrize("name", lab.ORACLES)
def test_every_oracle_can_be_turned_off(name):
    r = lab.run(P.switchy, seed=0, disable=(name,))
    assert r.verdicts[name] == "off"
    with pytest.raises(ValueError, match="unknown oracle"):
        lab.run(P.switchy, seed=0, disable=("nonsense",))
