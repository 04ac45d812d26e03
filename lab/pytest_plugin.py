"""pytest plugin: run a test function under the lab hub.

Registered through the ``pytest11`` entry point, so it is active wherever greenrt is
installed; it does nothing for tests without the marker. ::

    @pytest.mark.lab(seed=3)                 # one seed
    @pytest.mark.lab(seeds=range(20))        # several seeds, one run each
    @pytest.mark.lab(seed=1, strict=False, disable=("deadlock",), net={"latency": 0.01})
    def test_something(tmp_path):            # fixtures work as usual
        ...                                  # runs as the main task of lab.run()

    @pytest.mark.lab(runs=200)               # explore: the portfolio, 200 schedules
    @pytest.mark.lab(runs=None, strategy="dpor")   # or any lab.explore strategy
    def test_explored(): ...

With ``runs=`` or ``strategy=`` the test is *explored* (``lab.explore``; without a
strategy that is the portfolio: random, PCT at several depths, a fair bounded DFS and
sampled cancellation injection). A failure reports the exploration's summary and the
replay token (``greenrt-lab replay TOKEN``, ``greenrt-lab shrink TOKEN``).

A failing run (an exception, an oracle violation, a halt) fails the test with the
oracle verdicts, the seed, the path of the recorded trace and the command lines that
replay it exactly::

    greenrt-lab replay <rootdir>/.greenrt-lab/traces/tests_test_x.py_test_x-seed3.jsonl  (no fixtures)
    pytest 'tests/test_x.py::test_x' --lab-replay <rootdir>/.greenrt-lab/traces/tests_test_x.py_test_x-seed3.jsonl

An exception raised by the test keeps its traceback; the lab details are added as a
note. Options: ``--lab-seed N`` runs every lab test with seed N instead of its own,
``--lab-replay FILE`` replays a trace instead of running a seed (reporting a
divergence if the test changed), ``--lab-trace-dir DIR`` chooses where traces of
failing runs go, ``--lab-record-all`` keeps the traces of passing runs too.

**Where traces go.** Under the project, never a shared temporary folder: by default
``<rootdir>/.greenrt-lab/traces`` (pytest's rootdir; add ``.greenrt-lab/`` to the
project's ``.gitignore``), one file per test node id and seed
(``<node id made file-safe>-seed<N>.jsonl``), so two projects, or two test files of
the same name in different folders, never overwrite each other's traces. The ini
option ``lab_trace_dir`` (relative to the ini file's folder) or the flag
``--lab-trace-dir DIR`` (relative to the current directory) chooses another folder;
the flag wins. The folder is created when the first trace is written.
"""

from __future__ import annotations

import functools
import inspect
import os
import re

import pytest

MARKER_HELP = ("lab(seed=0, seeds=None, strict=True, disable=(), net=None, max_steps=None, "
               "runs=None, strategy=None): run the test function under greenrt's "
               "deterministic lab hub (explore it when runs= or strategy= is given)")


def pytest_addoption(parser) -> None:
    g = parser.getgroup("greenrt-lab", "greenrt's deterministic lab")
    g.addoption("--lab-seed", type=int, default=None,
                help="run every @pytest.mark.lab test with this seed")
    g.addoption("--lab-replay", default=None, metavar="FILE",
                help="replay this trace for the selected @pytest.mark.lab test")
    g.addoption("--lab-trace-dir", default=None, metavar="DIR",
                help="where traces of failing lab runs are written (default: the ini "
                "option lab_trace_dir, else <rootdir>/.greenrt-lab/traces)")
    g.addoption("--lab-record-all", action="store_true", default=False,
                help="also keep traces of passing lab runs")
    parser.addini("lab_trace_dir", "where traces of failing lab runs are written, relative "
                  "to the ini file (default: <rootdir>/.greenrt-lab/traces)", default="")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)


DEFAULT_TRACE_DIR = os.path.join(".greenrt-lab", "traces")


def trace_dir(config) -> str:
    """The folder traces of failing runs go to (see the module's docstring); not
    created here."""
    flag = config.getoption("lab_trace_dir")
    if flag:
        return os.path.abspath(flag)
    ini = config.getini("lab_trace_dir")
    if ini:
        base = config.inipath.parent if config.inipath is not None else config.rootpath
        return os.path.abspath(os.path.join(str(base), str(ini)))
    return os.path.join(str(config.rootpath), DEFAULT_TRACE_DIR)


def _trace_dir(config) -> str:
    d = trace_dir(config)
    os.makedirs(d, exist_ok=True)
    return d


def _safe(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid)[-120:]


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    marker = pyfuncitem.get_closest_marker("lab")
    if marker is None:
        return None
    import greenrt.lab as lab
    from greenrt.lab.runner import entry_of

    fn = pyfuncitem.obj
    if inspect.isgeneratorfunction(fn) or inspect.iscoroutinefunction(fn):
        raise pytest.UsageError(f"{pyfuncitem.nodeid}: @pytest.mark.lab needs a plain function")
    argnames = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in argnames}
    program = functools.partial(fn, **kwargs) if kwargs else fn
    opts = dict(marker.kwargs)
    if marker.args:
        opts.setdefault("seed", marker.args[0])
    config = pyfuncitem.config
    run_kw = {k: opts[k] for k in ("strict", "disable", "net", "max_steps") if k in opts}
    if run_kw.get("max_steps") is None:
        run_kw.pop("max_steps", None)
    replay_path = config.getoption("lab_replay")
    if replay_path:
        res = lab.replay(replay_path, program)
        _report(pyfuncitem, res, replay_path, bool(kwargs), replayed=True)
        return True
    if "runs" in opts or "strategy" in opts:
        res = lab.explore(program, runs=opts.get("runs", 100), strategy=opts.get("strategy"),
                          seed=opts.get("seed", 0), entry=entry_of(fn), **run_kw)
        if not res.ok:
            pytest.fail(res.summary() + "\n" + res.failures[0].summary, pytrace=False)
        return True
    forced = config.getoption("lab_seed")
    if forced is not None:
        seeds = [forced]
    elif opts.get("seeds") is not None:
        seeds = list(opts["seeds"])
    else:
        seeds = [opts.get("seed", 0)]
    entry = entry_of(fn)
    for seed in seeds:
        res = lab.run(program, seed=seed, entry=entry, **run_kw)
        path = None
        if not res.ok or config.getoption("lab_record_all"):
            path = os.path.join(_trace_dir(config), f"{_safe(pyfuncitem.nodeid)}-seed{seed}.jsonl")
            res.trace.save(path)
            res.trace_path = path
        _report(pyfuncitem, res, path, bool(kwargs), replayed=False)
    return True


def _report(item, res, path, has_fixtures: bool, replayed: bool) -> None:
    if res.ok:
        return
    res.trace_path = None  # the lines below say how to replay, fixtures considered
    lines = [res.summary()]
    if path:
        lines.append(f"  {'replayed from' if replayed else 'trace'}: {path}")
        if not has_fixtures:
            lines.append(f"  replay: greenrt-lab replay {path}")
        lines.append(f"  replay this test: pytest '{item.nodeid}' --lab-replay {path}")
    text = "\n".join(lines)
    err = res.error
    from greenrt import TaskCancelledError

    if (err is not None and res.halted is None and res.divergence is None
            and isinstance(err, Exception) and not isinstance(err, TaskCancelledError)):
        err.add_note(text)
        raise err
    pytest.fail(text, pytrace=False)
