"""The lab's per-step hot path keeps behaviour: the inlined random draw, the fast
scheduling pick and the inlined class fingerprint give what the reference code gives."""

from __future__ import annotations

import os
import random
import sys

import pytest

import greenrt.lab as lab
from greenrt.lab.choice import RandomStrategy, Strategy
from greenrt.lab.explorer.dpor import analyse, fingerprint
from greenrt.lab.runner import _run

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import explore_programs as E  # noqa: E402


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**40 + 7])
def test_random_strategy_draws_exactly_what_randrange_draws(seed):
    ref = random.Random(seed)
    s = RandomStrategy(seed)
    sizes = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 100, 255, 256, 257, 1000,
             1 << 20, (1 << 20) + 1, (1 << 40) + 3]
    for k in range(3000):
        n = sizes[(k * 7 + k // 5) % len(sizes)]
        assert s.choose("task", n, None) == ref.randrange(n)


def test_random_strategy_refuses_an_empty_range_like_randrange():
    with pytest.raises(ValueError):
        RandomStrategy(0).choose("task", 0)


class _RandrangeStrategy(Strategy):
    """The reference: ``random.Random(seed).randrange(n)`` for every question."""

    name = "random"

    def __init__(self, seed: int):
        self.seed = seed
        self._rng = random.Random(seed)

    def choose(self, what, n, ids=None):
        return self._rng.randrange(n)

    def describe(self):
        return {"name": self.name, "seed": self.seed}


def _records(res):
    return [(ev.kind, ev.task, ev.region, ev.time, repr(ev.data)) for ev in res.events]


@pytest.mark.parametrize("prog", ["writers3", "locks2", "event_and_channel"])
@pytest.mark.parametrize("seed", [0, 3, 99])
def test_a_run_is_event_for_event_the_run_of_the_randrange_reference(prog, seed):
    fn = getattr(E, prog)
    a = lab.run(fn, seed=seed)
    b = lab.run(fn, seed=seed, strategy=_RandrangeStrategy(seed))
    assert a.choice_indices == b.choice_indices
    assert _records(a) == _records(b)
    assert a.final_hash == b.final_hash


@pytest.mark.parametrize("prog", ["writers3", "locks2", "event_and_channel"])
def test_inlined_fingerprint_is_analyse_fingerprint(prog):
    fn = getattr(E, prog)
    seen = set()
    for seed in range(12):
        res = _run(fn, (), seed=seed, record=None, strict=True, strategy=None, disable=(),
                   net=None, max_steps=100_000, max_time=None, leak_policy="error",
                   instruments=(), trace=True, entry=None, track=True)
        fp = fingerprint(res.schedule)
        assert fp == analyse(res.schedule)[0]
        seen.add(fp)
    assert len(seen) > 1  # the schedules differ, so the comparison is not of one class


def test_a_run_raises_the_collector_threshold_and_restores_it():
    import gc

    from greenrt.lab.runner import RUN_GC_THRESHOLD

    before = gc.get_threshold()
    seen = []

    def prog():
        seen.append(gc.get_threshold()[0])

    try:
        gc.set_threshold(700, *before[1:])
        assert lab.run(prog).ok
        assert seen == [RUN_GC_THRESHOLD]
        assert gc.get_threshold()[0] == 700
        gc.set_threshold(RUN_GC_THRESHOLD * 2, *before[1:])  # a larger one is kept
        assert lab.run(prog).ok
        assert seen[-1] == RUN_GC_THRESHOLD * 2
    finally:
        gc.set_threshold(*before)
