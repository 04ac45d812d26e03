"""The lab's public surface: names stay what they are, workers never fork a
multi-threaded process."""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
import textwrap
import threading
import warnings

import greenrt
import greenrt.lab as lab

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def _all_submodules(pkg) -> None:
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if m.name.endswith((".pytest_plugin", ".__main__")):
            continue
        importlib.import_module(m.name)


def test_every_public_name_is_the_same_object_on_repeated_access():
    # in a fresh interpreter, so that first accesses really are first
    code = textwrap.dedent("""
        import importlib, pkgutil, greenrt, greenrt.lab as lab
        first = {("lab", n): getattr(lab, n) for n in lab.__all__}
        first.update({("greenrt", n): getattr(greenrt, n) for n in greenrt.__all__})
        for pkg in (greenrt, lab):
            for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
                if m.name.startswith("greenrt.protocols") or m.name.endswith("pytest_plugin"):
                    continue
                importlib.import_module(m.name)
        bad = [k for k, v in first.items()
               if getattr(lab if k[0] == "lab" else greenrt, k[1]) is not v]
        assert not bad, bad
        assert callable(lab.shrink) and callable(lab.shrink)
        print("ok", len(first))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")


def test_lab_shrink_is_callable_after_the_shrinking_module_is_imported():
    f = lab.shrink
    _all_submodules(lab)
    assert lab.shrink is f and callable(lab.shrink)
    assert lab.explore is lab.explorer.explore


def test_workers_do_not_inherit_the_callers_threads_or_their_locks():
    sys.path.insert(0, HERE)
    try:
        import threaded_program as P
    finally:
        sys.path.remove(HERE)
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with P.LOCK:
            held.set()
            release.wait()

    t = threading.Thread(target=holder)
    t.start()
    held.wait()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # 3.12+: fork() in a threaded process warns
            res = lab.explore(P.main, runs=24, strategy="random", workers=2)
    finally:
        release.set()
        t.join()
    assert res.workers == 2, res.notes  # really ran in worker processes
    assert res.ok, res.summary()  # a forked worker would have seen the lock held
    from greenrt.lab.explorer import workers

    assert workers.START_METHOD in ("forkserver", "spawn")


def test_a_local_program_runs_in_process_with_the_same_results():
    def local() -> int:
        d = {"n": 0}

        def inc() -> None:
            v = d["n"]
            greenrt.checkpoint()
            d["n"] = v + 1

        with greenrt.region() as r:
            r.spawn(inc)
            r.spawn(inc)
        assert d["n"] == 2
        return d["n"]

    one = lab.explore(local, runs=30, strategy="random", seed=3, workers=1)
    two = lab.explore(local, runs=30, strategy="random", seed=3, workers=2)
    assert two.workers == 1 and any("in this process" in n for n in two.notes)
    assert [f.token for f in one.failures] == [f.token for f in two.failures]
    assert one.failures  # the lost update is found
