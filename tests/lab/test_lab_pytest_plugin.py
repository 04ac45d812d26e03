"""The pytest plugin, exercised in a separate pytest process on a generated test file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

TESTS = textwrap.dedent('''
    import greenrt
    import pytest


    @pytest.mark.lab(seed=3)
    def test_virtual_time():
        with greenrt.region() as r:
            r.spawn(greenrt.sleep, 10.0)
        assert greenrt.now() == 10.0


    @pytest.mark.lab(seed=1)
    def test_deadlock():
        box = {}

        def a():
            greenrt.checkpoint()
            box["b"].join()

        def b():
            greenrt.checkpoint()
            box["a"].join()

        with greenrt.region() as r:
            box["a"] = r.spawn(a, name="a")
            box["b"] = r.spawn(b, name="b")


    @pytest.mark.lab(seeds=range(5))
    def test_lost_update():
        counter = {"n": 0}

        def incr():
            v = counter["n"]
            greenrt.checkpoint()
            counter["n"] = v + 1

        with greenrt.region() as r:
            for _ in range(2):
                r.spawn(incr)
        assert counter["n"] == 2, "lost update"


    @pytest.mark.lab(seed=0)
    def test_with_fixture(tmp_path):
        p = tmp_path / "x"
        p.write_text("hi")
        greenrt.sleep(1.0)
        assert p.read_text() == "hi"


    def test_not_under_the_lab():
        assert greenrt.run(lambda: 5) == 5


    @pytest.mark.lab(runs=60)
    def test_explored_by_the_portfolio():
        flag = {"open": True}

        def closer():
            greenrt.checkpoint()
            flag["open"] = False

        def reporter():
            for _ in range(3):
                greenrt.checkpoint()
            assert not flag["open"], "reporter before closer"

        with greenrt.region() as r:
            r.spawn(closer)
            r.spawn(reporter)
''')


def run_pytest(tmp_path, *args):
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "--lab-trace-dir", str(tmp_path / "traces"), *args],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)


def test_plugin_runs_marked_tests_under_the_lab(tmp_path):
    (tmp_path / "test_prog.py").write_text(TESTS)
    p = run_pytest(tmp_path, "test_prog.py")
    out = p.stdout
    assert p.returncode == 1, out + p.stderr
    assert "3 failed, 3 passed" in out, out
    # the explored test fails with the portfolio's summary and a replay token
    assert "with portfolio (seed 0)" in out and "replay: greenrt-lab replay glab1." in out
    # the deadlock verdict, the trace path and both replay commands
    assert "[deadlock]" in out and "wait-for cycle: task 2 (a) -> task 3 (b)" in out
    m = re.search(r"replay: greenrt-lab replay (\S+test_deadlock-seed1\.jsonl)", out)
    assert m, out
    trace = m.group(1)
    assert os.path.exists(trace)
    assert f"pytest 'test_prog.py::test_deadlock' --lab-replay {trace}" in out
    # the lost update is found within 5 seeds, with the assertion's own message
    assert "AssertionError: lost update" in out
    lost = re.search(r"(\S+test_lost_update-seed(\d)\.jsonl)", out)
    assert lost, out

    # the printed commands reproduce the failures exactly
    r = subprocess.run([sys.executable, "-m", "greenrt.lab.cli", "replay", trace],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0 and "reproduced" in r.stdout, r.stdout + r.stderr
    again = run_pytest(tmp_path, "test_prog.py::test_lost_update", "--lab-replay",
                       lost.group(1))
    assert again.returncode == 1 and "AssertionError: lost update" in again.stdout
    assert "replayed from" in again.stdout and "diverged" not in again.stdout
    seeded = run_pytest(tmp_path, "test_prog.py::test_lost_update", "--lab-seed",
                        lost.group(2))
    assert seeded.returncode == 1 and "lost update" in seeded.stdout
