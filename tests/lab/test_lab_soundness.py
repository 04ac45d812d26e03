"""Issue 22: DPOR that cannot miss what it cannot see, fair schedules, faithful
shrinking and signatures, partitionable UDP hosts, the portfolio."""

from __future__ import annotations

import os
import sys

import pytest

import greenrt
import greenrt.lab as lab
from greenrt.lab.faults import FaultPlan
from greenrt.lab.net import NetConfig
from greenrt.lab.shrinking import shrink

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import explore_programs as E  # noqa: E402
import soundness_programs as S  # noqa: E402
import undeclared_programs as U  # noqa: E402

# -- sound default DPOR ------------------------------------------------------------------------


@pytest.mark.parametrize("prog", U.PROGRAMS)
def test_dpor_finds_every_bug_exhaustive_dfs_finds_in_undeclared_programs(prog):
    fn = getattr(U, prog)
    dfs = lab.explore(fn, runs=None, strategy="dfs")
    assert not dfs.ok  # the bug exists in the explored space
    dpor = lab.explore(fn, runs=None, strategy="dpor")
    assert not dpor.ok, dpor.summary()
    assert dpor.failures[0].signature == dfs.failures[0].signature
    assert not dpor.complete


def test_dpor_declared_trusts_the_declarations_and_misses_undeclared_bugs():
    missed = [p for p in U.PROGRAMS
              if lab.explore(getattr(U, p), runs=None, strategy="dpor:declared").ok]
    assert len(missed) >= 8  # what the default dpor exists for


@pytest.mark.parametrize("prog,declared_runs", [("writers3", 7), ("locks2", 28),
                                                 ("event_and_channel", 20)])
def test_dpor_keeps_the_reduction_on_declared_programs(prog, declared_runs):
    fn = getattr(E, prog)
    dfs = lab.explore(fn, runs=None, strategy="dfs")
    declared = lab.explore(fn, runs=None, strategy="dpor:declared")
    checked = lab.explore(fn, runs=None, strategy="dpor")
    assert declared.runs == declared_runs
    assert checked.complete and checked.ok and set(checked.class_ids) == set(dfs.class_ids)
    assert checked.runs <= 2 * declared.runs < dfs.runs


def test_an_opaque_program_is_explored_as_if_every_step_were_dependent():
    r = lab.explore(E.independent3, runs=200, strategy="dpor")
    assert r.runs == 200 and not r.complete
    assert any("every step is taken as dependent" in n for n in r.notes)


def test_the_witness_catches_undeclared_sharing_next_to_declared_objects():
    r = lab.explore(U.mixed_lock_and_dict, runs=None, strategy="dpor")
    assert not r.ok and r.found_by[0].startswith("dpor")
    assert lab.explore(U.mixed_lock_and_dict, runs=None, strategy="dpor:declared").ok


def test_a_shared_object_reports_accesses_after_a_checkpoint_inside_a_method():
    def prog() -> int:
        shared = lab.shared(U.Inventory(1), "inventory")
        with greenrt.region() as r:
            r.spawn(shared.take)
            r.spawn(shared.take)
        assert shared.stock >= 0, shared.stock
        return shared.sold

    r = lab.explore(prog, runs=None, strategy="dpor:declared")
    assert not r.ok and r.failures[0].signature == ["error:AssertionError"]

    class WithSuper(U.Inventory):
        def take(self) -> bool:
            return super().take()

    s = lab.shared(WithSuper(1), "w")
    with pytest.raises(lab.LabError, match="super"):
        s.take()


# -- the environment -----------------------------------------------------------------------------


def test_a_timer_tie_is_explored_as_part_of_the_tree():
    r = lab.explore(S.timer_tie, runs=None, strategy="dpor")
    assert not r.ok


def test_network_delays_drawn_from_the_environment_are_never_reported_complete():
    r = lab.explore(S.jittery_ping, runs=None, strategy="dpor",
                    net=NetConfig(latency=0.001, jitter=0.002))
    assert r.ok and not r.complete
    assert any("realization of the environment" in n for n in r.notes), r.notes
    plain = lab.explore(S.jittery_ping, runs=None, strategy="dpor")
    assert plain.ok and plain.complete  # no jitter: nothing drawn from the environment


def test_a_fault_plan_makes_a_tree_incomplete():
    r = lab.explore(E.pinger, runs=20, strategy="dfs",
                    faults=FaultPlan(kinds=("partition", "heal"), every=0.2, until=0.6))
    assert not r.complete


def test_udp_only_hosts_are_partitionable():
    plan = FaultPlan(kinds=("partition",), every=0.02, until=0.5)
    r = lab.explore(S.udp_only, runs=20, strategy="random", seed=1, faults=plan,
                    goal=lambda got: got == 20)
    assert not r.ok and r.failures[0].signature == ["goal"]
    clean = lab.explore(S.udp_only, runs=5, strategy="random", goal=lambda got: got == 20)
    assert clean.ok  # without the plan every datagram arrives


# -- fair schedules ----------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["pct:2", "dfs:2", "dpor", "random"])
def test_no_false_livelock_on_a_correct_spin_wait(strategy):
    r = lab.explore(S.spin_wait, runs=12, strategy=strategy, seed=2)
    assert r.ok, r.summary()


@pytest.mark.parametrize("strategy", ["pct:2", "dfs:2", "dpor", "random"])
def test_a_real_livelock_is_still_found(strategy):
    r = lab.explore(S.real_livelock, runs=4, strategy=strategy, max_steps=20_000)
    assert not r.ok and r.failures[0].signature == ["halted:step_limit"]


# -- signatures and shrinking ------------------------------------------------------------------


def test_the_signature_is_the_leaf_exception_not_the_group():
    r = lab.explore(S.child_assertion, runs=50, strategy="random")
    assert not r.ok and r.failures[0].signature == ["error:AssertionError"]


@pytest.mark.parametrize("strategy,seed", [("pct:2", 4), ("pct:3", 1), ("random", 4)])
def test_shrinking_never_adds_preemptions(strategy, seed):
    r = lab.explore(E.noisy_lost_update, runs=300, strategy=strategy, seed=seed)
    assert not r.ok
    sr = shrink(r.failures[0].token, max_runs=120)
    assert sr.preemptions <= sr.original_preemptions
    assert sr.signature[0] == r.failures[0].signature[0]
    assert lab.replay_token(sr.token).reproduced


# -- the portfolio -----------------------------------------------------------------------------


def test_the_default_strategy_is_a_portfolio_deterministic_for_seed_and_workers():
    a = lab.explore(E.depth2_order, runs=60, seed=3)
    b = lab.explore(E.depth2_order, runs=60, seed=3, workers=2)
    assert a.strategy == "portfolio" and not a.ok
    assert [f.token for f in a.failures] == [f.token for f in b.failures]
    assert a.runs == b.runs and a.found_by == b.found_by


def test_the_portfolio_gives_every_member_runs_from_the_start():
    from greenrt.lab.explorer.portfolio import MEMBERS

    seen = []
    r = lab.explore(E.writers3, runs=len(MEMBERS) * 2,
                    progress=lambda d, t, f: seen.append(d))
    assert r.ok and r.runs == len(MEMBERS) * 2 and seen[-1] == r.runs


def test_the_hard_zoo_separates_strategies_and_the_portfolio_finds_it():
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples", "bugzoo", "hard",
                        "starved_closer.py")
    spec = importlib.util.spec_from_file_location("starved_closer", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    entry = (f"{path}:main", None)
    assert lab.explore(mod.main, runs=300, strategy="random", seed=0, entry=entry).ok
    for seed in range(3):
        r = lab.explore(mod.main, runs=60, seed=seed, entry=entry)  # the portfolio
        assert not r.ok and r.failures[0].signature == ["error:AssertionError"]
    assert not lab.explore(mod.main, runs=20, strategy="pct:1", seed=0, entry=entry).ok


def test_the_portfolio_finds_the_torn_window_that_random_misses():
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples", "bugzoo", "hard",
                        "torn_window.py")
    spec = importlib.util.spec_from_file_location("torn_window", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    entry = (f"{path}:main", None)
    assert lab.explore(mod.main, runs=40, strategy="random", seed=2, entry=entry).ok
    for seed in range(3):
        r = lab.explore(mod.main, runs=60, seed=seed, entry=entry)
        assert not r.ok and r.found_by[0] == "dfs:2", r.summary()
