"""Replay every fuzz target's seed corpus plus seeded random mutations.

This is the always-on half of fuzzing (see ``fuzz/README.md``): each target's
``TestOneInput`` swallows exactly its documented typed errors, so any other exception
(or a broken invariant the target checks) fails the test, with the input attached.
"""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

_FUZZ = pathlib.Path(__file__).resolve().parent.parent / "fuzz"
_spec = importlib.util.spec_from_file_location("_fuzz_harness", _FUZZ / "_harness.py")
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)

MUTATIONS = 3000
TARGETS = harness.targets()


def test_there_are_targets():
    assert TARGETS, "no fuzz/fuzz_*.py targets found"


@pytest.mark.parametrize("path", TARGETS, ids=[p.stem for p in TARGETS])
def test_target_follows_convention(path):
    mod = harness.load_target(path)
    assert callable(mod.TestOneInput)
    assert mod.EXPECTED_ERRORS and all(issubclass(e, BaseException) for e in mod.EXPECTED_ERRORS)
    corpus = harness.read_corpus(mod)
    assert len(corpus) >= 5, f"{path.stem}: seed corpus {harness.corpus_dir(mod)} is too small"


@pytest.mark.parametrize("path", TARGETS, ids=[p.stem for p in TARGETS])
def test_corpus_and_mutations(path):
    mod = harness.load_target(path)
    n = 0
    for name, data in harness.inputs(mod, seed=20240601, mutations=MUTATIONS):
        try:
            harness.run_one(mod, data)
        except Exception as e:
            pytest.fail(f"{path.stem}: input {name} ({data[:200]!r}) raised {e!r}")
        n += 1
    assert n == len(harness.read_corpus(mod)) + MUTATIONS


def test_saved_regressions():
    """Every crash a fuzz run once found (``fuzz/regressions/<target>/``) stays fixed."""
    for path in TARGETS:
        mod = harness.load_target(path)
        for name, data in harness.read_regressions(path):
            try:
                harness.run_one(mod, data)
            except Exception as e:
                pytest.fail(f"{path.stem}: saved {name} ({data[:200]!r}) raised {e!r}")


def test_regressions_belong_to_targets():
    """A regression folder names an existing target (a renamed target keeps its finds)."""
    stems = {p.stem for p in TARGETS}
    if harness.REGRESSIONS_DIR.is_dir():
        orphans = [d.name for d in harness.REGRESSIONS_DIR.iterdir() if d.is_dir() and d.name not in stems]
        assert not orphans, f"fuzz/regressions/ folders without a target: {orphans}"
