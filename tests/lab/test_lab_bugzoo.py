"""The bug zoo (examples/bugzoo): the lab finds every bug within its stated budget
with random, pct:3 and dpor, and the shrunk replay token still reproduces it."""

from __future__ import annotations

import os

import pytest

import greenrt.lab as lab
from greenrt.lab.explorer import replay_token
from greenrt.lab.replay import load_entry
from greenrt.lab.shrinking import shrink

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ZOO = os.path.join(ROOT, "examples", "bugzoo")

#: program -> (what must fail, run budget per strategy; docs/lab.md has the measurements)
BUGS = {
    "lost_update.py:main": ("error:AssertionError", 40),
    "lock_order.py:main": ("deadlock", 40),
    "permit_leak.py:main": ("obligation", 40),
    "race_not_drained.py:main": ("race_drain", 40),
    "cancel_desync.py:main": ("error:AssertionError", 40),
    "timeout_in_cleanup.py:main": ("obligation", 40),
}


@pytest.mark.parametrize("prog", sorted(BUGS))
def test_the_lab_finds_the_bug_and_the_shrunk_token_replays_it(prog):
    expected, budget = BUGS[prog]
    entry = os.path.join(ZOO, prog)
    fn = load_entry(entry)
    found = {}
    for strat in ("random", "pct:3", "dpor"):
        r = lab.explore(fn, runs=budget, strategy=strat, seed=1, entry=(entry, None))
        assert not r.ok, f"{strat} did not find {prog} in {budget} runs"
        assert r.runs <= budget and expected in r.failures[0].signature, r.summary()
        found[strat] = r.failures[0]
    f = found["random"]
    sr = shrink(f.token, max_runs=40)
    assert sr.preemptions <= sr.original_preemptions
    assert sr.signature[0] == f.signature[0]
    rt = replay_token(sr.token)
    assert rt.reproduced, rt.result.summary()
    assert expected in rt.signature


def test_cancellation_injection_finds_the_desync_without_a_watchdog():
    entry = os.path.join(ZOO, "cancel_desync.py:main_unsupervised")
    fn = load_entry(entry)
    assert lab.run(fn, seed=0).ok  # no cancellation: the protocol works
    r = lab.explore(fn, runs=None, inject="all", inject_tasks="request-*", entry=(entry, None))
    assert not r.ok and "error:AssertionError" in r.failures[0].signature
    tok = replay_token(r.failures[0].token)
    assert tok.reproduced and tok.result.error is not None
    assert "desynchronized" in str(tok.result.error)


#: the hard zoo (examples/bugzoo/hard) and what must fail
HARD = {"hard/starved_closer.py:main": "error:AssertionError",
        "hard/two_step_order.py:main": "error:AssertionError",
        "hard/torn_window.py:main": "error:AssertionError"}

PORTFOLIO_BUDGET = 200  # stated in docs/lab.md ("The hard zoo")


@pytest.mark.parametrize("prog", sorted(BUGS) + sorted(HARD))
def test_the_portfolio_finds_every_zoo_bug_within_its_budget(prog):
    expected = BUGS[prog][0] if prog in BUGS else HARD[prog]
    entry = os.path.join(ZOO, prog)
    fn = load_entry(entry)
    for seed in (0, 1):
        r = lab.explore(fn, runs=PORTFOLIO_BUDGET, seed=seed, entry=(entry, None))
        assert not r.ok and expected in r.failures[0].signature, r.summary()
        assert r.strategy == "portfolio" and r.found_by[0]
        assert replay_token(r.failures[0].token).reproduced
