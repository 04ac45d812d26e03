"""Lab II: schedule exploration (random, PCT, DFS, DPOR), classes, injection, faults,
parallel determinism, corpus, tokens and shrinking."""

from __future__ import annotations

import os
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import greenrt
import greenrt.lab as lab
from greenrt.lab.errors import LabError
from greenrt.lab.explorer import independent, parse_strategy, replay_token
from greenrt.lab.faults import FaultPlan
from greenrt.lab.shrinking import shrink
from greenrt.lab.token import MAX_CHOICES, PREFIX, Token, TokenError, decode

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import explore_programs as E  # noqa: E402

PROG = os.path.join(HERE, "explore_programs.py")


def _entry(name: str):
    return (f"{PROG}:{name}", None)


# -- DPOR vs exhaustive DFS ------------------------------------------------------------------


@pytest.mark.parametrize("prog,classes", [("writers3", 6), ("locks2", None),
                                          ("event_and_channel", None)])
def test_dpor_covers_every_class_of_exhaustive_dfs_with_fewer_runs(prog, classes):
    fn = getattr(E, prog)
    dfs = lab.explore(fn, runs=None, strategy="dfs", entry=_entry(prog))
    dpor = lab.explore(fn, runs=None, strategy="dpor", entry=_entry(prog))
    assert dfs.ok and dpor.ok, (dfs.summary(), dpor.summary())
    assert dfs.complete and dpor.complete
    assert set(dpor.class_ids) == set(dfs.class_ids)
    if classes is not None:
        assert dpor.classes == classes
    assert dpor.runs < dfs.runs
    assert dpor.classes >= 2


def test_dpor_runs_independent_tasks_once():
    r = lab.explore(E.independent3, runs=None, strategy="dpor:declared")
    assert r.complete and r.runs == 1 and r.classes == 1
    d = lab.explore(E.independent3, runs=50, strategy="dfs")
    assert d.runs == 50 and d.classes == 1  # DFS re-runs equivalent orders


def test_dfs_preemption_bound_limits_the_tree():
    sizes = [lab.explore(E.writers3, runs=None, strategy=f"dfs:{b}").runs for b in (0, 1, 2)]
    full = lab.explore(E.writers3, runs=None, strategy="dfs").runs
    assert sizes[0] < sizes[1] < sizes[2] <= full


def test_dpor_declared_needs_declared_shared_state_and_dpor_does_not():
    undeclared = lab.explore(E.undeclared_lost_update, runs=None, strategy="dpor:declared")
    assert undeclared.ok and undeclared.runs == 1  # invisible: one order only (caveat)
    checked = lab.explore(E.undeclared_lost_update, runs=None, strategy="dpor")
    assert not checked.ok and "error:AssertionError" in checked.failures[0].signature
    declared = lab.explore(E.declared_lost_update, runs=None, strategy="dpor")
    assert not declared.ok and "error:AssertionError" in declared.failures[0].signature
    assert lab.explore(E.undeclared_lost_update, runs=50, strategy="random").failures


def test_independence_is_conservative_for_fresh_objects():
    assert independent({("shared", "x"): False}, 0, {("shared", "x"): False}, 0)
    assert not independent({("shared", "x"): True}, 0, {("shared", "x"): False}, 0)
    assert independent({0: True}, 1, {1: True}, 1)  # 0 is known, 1 is fresh on one side
    assert not independent({3: False}, 3, {3: False, 4: True}, 3)  # fresh on both sides


# -- strategies --------------------------------------------------------------------------------


def test_parse_strategy_rejects_nonsense():
    assert parse_strategy("pct") == ("pct", 3)
    assert parse_strategy("dfs:2") == ("dfs", 2)
    for bad in ("bogus", "pct:0", "pct:x", "dpor:1", "random:2", "dfs:-1"):
        with pytest.raises(ValueError):
            parse_strategy(bad)


def test_pct_and_random_find_an_ordering_bug_deterministically():
    a = lab.explore(E.depth2_order, runs=300, strategy="pct:2", seed=4)
    b = lab.explore(E.depth2_order, runs=300, strategy="pct:2", seed=4)
    assert not a.ok and a.runs == b.runs and a.failures[0].token == b.failures[0].token
    r = lab.explore(E.depth2_order, runs=300, strategy="random", seed=4)
    assert not r.ok


def test_results_do_not_depend_on_the_number_of_workers():
    kw = dict(runs=40, strategy="random", seed=3, stop_on_failure=False,
              entry=_entry("writers3"))
    one = lab.explore(E.writers3, workers=1, **kw)
    two = lab.explore(E.writers3, workers=2, **kw)
    assert one.runs == two.runs == 40
    assert one.class_ids == two.class_ids and one.classes == 6
    f1 = lab.explore(E.declared_lost_update, runs=40, seed=5, workers=1)
    f2 = lab.explore(E.declared_lost_update, runs=40, seed=5, workers=2)
    assert f1.runs == f2.runs and [f.token for f in f1.failures] == [f.token for f in f2.failures]


def test_progress_callback_sees_every_run():
    seen = []
    lab.explore(E.writers3, runs=5, progress=lambda d, t, f: seen.append((d, t, f)))
    assert seen[-1] == (5, 5, 0) and [d for d, _, _ in seen] == [1, 2, 3, 4, 5]


# -- cancellation injection ---------------------------------------------------------------------


def test_inject_all_cancels_each_checkpoint_in_turn_and_passes_correct_code():
    r = lab.explore(E.writers3, runs=None, inject="all", entry=_entry("writers3"))
    assert r.ok, r.summary()
    assert r.injected >= 3 and r.runs == r.injected + 1
    s = lab.explore(E.writers3, runs=None, inject="sample:3", seed=2)
    assert s.injected == 3
    last = lab.explore(E.writers3, runs=None, inject="last:2")
    assert last.injected == 2
    with pytest.raises(ValueError):
        lab.explore(E.writers3, inject="some")


# -- faults -------------------------------------------------------------------------------------


def test_liveness_mode_faults_stop_and_a_retrying_client_reaches_its_goal():
    plan = FaultPlan(kinds=("partition", "heal", "reset", "delay", "ioerror"), every=0.05,
                     until=0.6, liveness=True, grace=20.0)
    ok = lab.explore(E.pinger, runs=6, seed=1, faults=plan, goal=lambda v: v == b"ping" * 10)
    assert ok.ok, ok.summary() + "\n" + (ok.failures[0].summary if ok.failures else "")
    bad = lab.explore(E.pinger_no_retry, runs=30, seed=1, faults=plan)
    assert not bad.ok
    tok = decode(bad.failures[0].token)
    assert tok.faults and tok.faults["liveness"] is True
    assert replay_token(bad.failures[0].token).reproduced


# -- tokens, replay, shrinking, corpus ----------------------------------------------------------


def test_token_round_trip_and_replay_reproduces_the_run():
    r = lab.explore(E.declared_lost_update, runs=50, seed=1)
    tok = r.failures[0].token
    assert tok.startswith(PREFIX) and len(tok) < 400
    t = decode(tok)
    assert t.entry.endswith("declared_lost_update") and t.signature[0] == "error:AssertionError"
    rt = replay_token(tok)
    assert rt.reproduced and rt.signature == t.signature
    t.choices = [1 - c if c in (0, 1) else c for c in t.choices]
    other = replay_token(t.encode(), strict_choices=False)
    assert not other.reproduced


def test_shrink_keeps_the_failure_and_replays(tmp_path):
    r = lab.explore(E.noisy_lost_update, runs=300, strategy="random", seed=4)
    sr = shrink(r.failures[0].token, max_runs=100)
    assert sr.steps <= sr.original_steps and sr.preemptions < sr.original_preemptions
    assert sr.signature[0] == r.failures[0].signature[0]
    rt = replay_token(sr.token)
    assert rt.reproduced and rt.signature[0] == r.failures[0].signature[0]


def test_corpus_tokens_are_replayed_first(tmp_path):
    corpus = str(tmp_path / "corpus")
    first = lab.explore(E.declared_lost_update, runs=50, seed=1, corpus=corpus)
    assert not first.ok and os.listdir(corpus)
    again = lab.explore(E.declared_lost_update, runs=50, seed=999, corpus=corpus)
    assert again.corpus_replayed == 1 and again.failures[0].origin.startswith("corpus")
    assert again.runs == 0  # stopped on the corpus failure before exploring
    other = lab.explore(E.writers3, runs=3, corpus=corpus)
    assert other.ok and other.corpus_replayed == 0  # tokens of other programs are skipped


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=200))
def test_decoding_garbage_raises_token_error(s):
    try:
        decode(s)
    except TokenError:
        pass


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=400), st.integers(min_value=0, max_value=255))
def test_decoding_a_mutated_token_is_total(pos, byte):
    tok = Token(entry="m:f", choices=[0, 1, 1, 1, 2], run_hash="ab" * 8).encode()
    i = pos % len(tok)
    mutated = tok[:i] + chr(32 + byte % 95) + tok[i + 1:]
    try:
        decode(mutated)
    except TokenError:
        pass


def test_token_limits():
    import base64
    import json
    import zlib

    def mk(obj) -> str:
        return PREFIX + base64.urlsafe_b64encode(
            zlib.compress(json.dumps(obj).encode())).decode().rstrip("=")

    with pytest.raises(TokenError, match="choices"):
        decode(mk({"v": 1, "e": "m:f", "c": [[0, MAX_CHOICES + 1]]}))
    with pytest.raises(TokenError, match="version"):
        decode(mk({"v": 2, "e": "m:f", "c": []}))
    with pytest.raises(TokenError, match="expands"):
        decode(PREFIX + base64.urlsafe_b64encode(zlib.compress(b" " * (5 << 20))).decode())
    with pytest.raises(TokenError, match="lacks"):
        decode(mk({"v": 1, "c": []}))
    with pytest.raises(LabError):
        replay_token(mk({"v": 1, "e": "no_such_module_xyz:f", "c": []}))


def test_shared_and_access_are_inert_outside_the_lab():
    d = lab.shared({"k": 1}, "d")
    lab.access("d")
    assert d["k"] == 1 and "k" in d and len(d) == 1
    assert greenrt.run(lambda: (lab.access("d", write=True), d["k"])[1]) == 1
    with pytest.raises(ValueError):
        lab.shared({}, "")
