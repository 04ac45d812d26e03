"""Run other projects' own test suites three ways and print the counts side by side:

* ``unpatched``: the baseline;
* ``gevent``: ``gevent.monkey.patch_all()``, the tests in gevent's main greenlet;
* ``greenrt``: ``greenrt.patch.patch_all()``, and the tests run *inside a greenrt
  task* (``greenrt.run(main)``, ``main`` running the suite), so every patched call
  takes the cooperative path. Tests that start threads exercise the other half of
  the rule: outside the hub a patched call behaves like the original.

The suites (``--suite``, several allowed; default all but the ``quick`` ones):

* ``test_socket``, ``test_selectors``, ``test_ssl``: chosen classes of CPython's own
  tests (the interpreter's ``test`` package), unittest;
* ``requests``: the offline part of requests' own pytest suite (``test_lowlevel``,
  ``test_testserver``, ``test_utils``, ``test_structures``, ``test_hooks``: their
  threaded socket test server, no httpbin, no Internet; ``-m "not
  requires_network"``);
* ``urllib3``: the offline part of urllib3's own suite: the socket-level tests
  against its threaded ``SocketServerThread`` (``with_dummyserver/
  test_socketlevel.py``, ``test_chunked_transfer.py``) and the unit tests that need
  no server; the hypercorn-based dummy-server tests are left out (they run trio
  in a thread; needs ``quart``/``quart-trio`` to import urllib3's conftest at all);
* ``quick``: a bounded subset of the three stdlib suites (what
  ``tests/interop/test_peer_suites.py`` runs).

requests' and urllib3's tests are not installed with the packages: the runner
fetches the sdists of the *installed* versions once with ``pip download
--no-binary :all: --no-deps`` into ``--cache`` (default ``~/.cache/greenrt-peer-suites``)
and runs pytest in the unpacked tree against the installed package. A suite whose
sdist or fixtures are not available is reported as such, not counted.

Each (suite, mode) runs in a fresh interpreter (patching is process-wide)::

    .venv/bin/python scripts/peer_suites.py [--suite test_ssl] [--modes unpatched,greenrt]
                                            [--verbose] [--json FILE] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = ("unpatched", "gevent", "greenrt")

_SOCKET_CLASSES = [
    "GeneralModuleTests", "BasicTCPTest", "BasicTCPTest2", "TCPCloserTest",
    "BasicUDPTest", "BasicSocketPairTest", "NonBlockingTCPTests", "FileObjectClassTestCase",
    "UnbufferedFileObjectClassTestCase", "LineBufferedFileObjectClassTestCase",
    "SmallBufferedFileObjectClassTestCase", "NetworkConnectionNoServer",
    "NetworkConnectionAttributesTest", "NetworkConnectionBehaviourTest", "TCPTimeoutTest",
    "UDPTimeoutTest", "TestSocketSharing", "InheritanceTest", "NonblockConstantTest",
    "ContextManagersTest", "SendfileUsingSendTest", "SendfileUsingSendfileTest",
    "TestUnixDomain", "SendmsgTCPTest", "RecvmsgTCPTest", "RecvmsgIntoTCPTest",
    "SendmsgUDPTest", "RecvmsgUDPTest", "SendmsgUnixStreamTest", "RecvmsgUnixStreamTest",
    "RecvmsgSCMRightsStreamTest", "InterruptedRecvTimeoutTest", "InterruptedSendTimeoutTest",
    "UnicodeReadWriteFileObjectClassTestCase", "TestExceptions", "TestLinuxAbstractNamespace",
    "BufferIOTest", "CreateServerTest", "CreateServerFunctionalTest", "SendRecvFdsTests",
]
_SELECTORS_CLASSES = ["SelectSelectorTestCase", "PollSelectorTestCase", "EpollSelectorTestCase",
                      "DefaultSelectorTestCase"]
# NetworkedTests needs the Internet; the rest is loopback and memory BIOs
_SSL_CLASSES = ["BasicSocketTests", "ContextTests", "SSLErrorTests", "MemoryBIOTests",
                "SSLObjectTests", "SimpleBackgroundTests", "ThreadedTests",
                "TestPostHandshakeAuth", "TestSSLDebug", "TestPreHandshakeClose",
                "TestEnumerations"]

#: suite name -> ("unittest", {module: [classes]}) or ("pytest", package, [args])
SUITES: dict[str, tuple] = {
    "test_socket": ("unittest", {"test.test_socket": _SOCKET_CLASSES}),
    "test_selectors": ("unittest", {"test.test_selectors": _SELECTORS_CLASSES}),
    "test_ssl": ("unittest", {"test.test_ssl": _SSL_CLASSES}),
    "requests": ("pytest", "requests", [
        "tests/test_lowlevel.py", "tests/test_testserver.py", "tests/test_utils.py",
        "tests/test_structures.py", "tests/test_hooks.py", "-m", "not requires_network"]),
    "urllib3": ("pytest", "urllib3", [
        "test/with_dummyserver/test_socketlevel.py",
        "test/with_dummyserver/test_chunked_transfer.py",
        "test/test_connectionpool.py", "test/test_connection.py", "test/test_response.py",
        "test/test_util.py", "test/test_poolmanager.py", "test/test_ssltransport.py",
        "-m", "not requires_network and not integration"]),
    # bounded and stable: what tests/interop/test_peer_suites.py runs (< 60 s)
    "quick": ("unittest", {
        "test.test_socket": ["BasicTCPTest", "BasicSocketPairTest", "FileObjectClassTestCase",
                             "UnbufferedFileObjectClassTestCase", "NetworkConnectionNoServer",
                             "NetworkConnectionAttributesTest", "ContextManagersTest",
                             "SendfileUsingSendTest", "TestUnixDomain", "InheritanceTest",
                             "NonBlockingTCPTests", "InterruptedRecvTimeoutTest"],
        "test.test_selectors": ["DefaultSelectorTestCase"],
        "test.test_ssl": ["SimpleBackgroundTests", "MemoryBIOTests", "TestPreHandshakeClose"],
    }),
}
DEFAULT_SUITES = [s for s in SUITES if s != "quick"]

#: mode -> {test id: why}: tests not run in that mode because they never return
#: there (the run would hit the timeout and report nothing); each counts as failed
HANGS = {
    "gevent": {
        "test.test_ssl.ThreadedTests.test_nonblocking_send":
            "never returns under gevent's monkey.patch_all()",
    },
}


# -- inside a worker: run one suite in the current (patched or not) interpreter -----


def _unittest_suite(modules: dict, hangs: dict):
    import importlib
    import unittest

    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    missing = []
    excluded = []
    for modname, classes in modules.items():
        mod = importlib.import_module(modname)
        for cls in dict.fromkeys(classes):
            c = getattr(mod, cls, None)
            if c is None:
                missing.append(f"{modname}.{cls}")
                continue
            for t in loader.loadTestsFromTestCase(c):
                if t.id() in hangs:
                    excluded.append(t.id())
                else:
                    suite.addTest(t)
    return suite, missing, excluded


def _run_unittest(modules: dict, verbose: bool, hangs: dict) -> dict:
    import unittest

    from test import support

    support.verbose = verbose  # True by default outside regrtest: test_ssl chatters
    suite, missing, excluded = _unittest_suite(modules, hangs)
    result = unittest.TextTestRunner(stream=sys.stderr, verbosity=2 if verbose else 0).run(suite)
    # failures/errors per test id (a class or module fixture error counts once)
    bad = {t.id() if hasattr(t, "id") else str(t): "failed" for t, _ in result.failures}
    bad.update({t.id() if hasattr(t, "id") else str(t): "error" for t, _ in result.errors})
    bad.update({t.id(): "failed (unexpected success)" for t in result.unexpectedSuccesses})
    bad.update({t: f"failed (not run: {hangs[t]})" for t in excluded})
    return _counts(result.testsRun + len(excluded),
                   len(result.skipped) + len(result.expectedFailures), bad, missing)


def _counts(run: int, skipped: int, bad: dict, missing: list) -> dict:
    """Counts per distinct test: a threaded test can report an error from each of
    its two sides, and is one test that did not pass."""
    errors = sum(1 for v in bad.values() if v == "error")
    return {"run": run, "passed": run - skipped - len(bad), "failed": len(bad) - errors,
            "errors": errors, "skipped": skipped, "bad": bad, "missing": missing}


class _Collector:
    """A pytest plugin counting outcomes per test (setup/teardown errors included)."""

    def __init__(self):
        self.outcome: dict[str, str] = {}

    def pytest_runtest_logreport(self, report):
        prev = self.outcome.get(report.nodeid)
        if report.when == "call":
            if report.passed:
                new = "passed"
            elif report.skipped:  # xfail
                new = "skipped"
            else:
                new = "failed"
        elif report.failed:
            new = "error"
        elif report.skipped:
            new = "skipped"
        else:
            return
        if prev in (None, "passed") or new == "error":
            self.outcome[report.nodeid] = new

    def pytest_collectreport(self, report):
        if report.failed:
            self.outcome[report.nodeid or "<collection>"] = "error"


def _run_pytest(tree: str, args: list, verbose: bool) -> dict:
    import pytest

    os.chdir(tree)
    sys.path.insert(0, tree)
    col = _Collector()
    # greenrt's own pytest plugin (the lab's) stays out: it is not under test. With
    # greenrt imported first, pytest warns it cannot assert-rewrite greenrt (whose
    # distribution has the plugin): an error under urllib3's filterwarnings = error
    argv = ["-p", "no:cacheprovider", "-p", "no:greenrt-lab",
            "-W", "ignore::pytest.PytestAssertRewriteWarning", "-q" if not verbose else "-v",
            "-o", "addopts=",
            "--rootdir", tree, *args]
    sys.stdout = sys.stderr  # stdout is for the one JSON line
    try:
        code = pytest.main(argv, plugins=[col])
    finally:
        sys.stdout = sys.__stdout__
    counts = {k: 0 for k in ("passed", "failed", "error", "skipped")}
    for v in col.outcome.values():
        counts[v] += 1
    return {"run": len(col.outcome), "passed": counts["passed"], "failed": counts["failed"],
            "errors": counts["error"], "skipped": counts["skipped"], "exit": int(code),
            "bad": {k: v for k, v in col.outcome.items() if v in ("failed", "error")},
            "missing": []}


def worker(mode: str, suite: str, tree: str | None, verbose: bool) -> dict:
    kind, *spec = SUITES[suite]
    if kind == "unittest":
        def body():
            return _run_unittest(spec[0], verbose, HANGS.get(mode, {}))
    else:
        def body():
            return _run_pytest(tree, spec[1], verbose)
    if mode == "gevent":
        from gevent import monkey

        monkey.patch_all()
        return body()
    if mode == "greenrt":
        import greenrt.patch

        greenrt.patch.patch_all()
        import greenrt

        # the suites start helper threads of their own; signals stay the tests'
        return greenrt.run(body, handle_signals=False)
    return body()


# -- the driver -----------------------------------------------------------------------


def _sdist_tree(package: str, cache: str) -> tuple[str | None, str]:
    """The unpacked sdist of the installed ``package`` (fetched once), or (None, why)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version(package)
    except PackageNotFoundError:
        return None, f"{package} is not installed"
    tree = os.path.join(cache, f"{package}-{ver}")
    if os.path.isdir(tree):
        return tree, ver
    os.makedirs(cache, exist_ok=True)
    archive = os.path.join(cache, f"{package}-{ver}.tar.gz")
    if not os.path.exists(archive):
        p = subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:",
                            "--no-deps", "--no-build-isolation", "-d", cache, f"{package}=={ver}"],
                           capture_output=True, text=True, timeout=300)
        if p.returncode != 0 or not os.path.exists(archive):
            return None, f"could not fetch the {package} {ver} sdist: " + (
                (p.stderr.strip().splitlines() or ["?"])[-1])
    with tarfile.open(archive) as tf:
        tf.extractall(cache, filter="data")
    return (tree, ver) if os.path.isdir(tree) else (None, f"no {tree} in the sdist")


def run_one(mode: str, suite: str, tree: str | None, verbose: bool, timeout: float) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", mode, suite, tree or "-"]
    if verbose:
        cmd.append("--verbose")
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONDONTWRITEBYTECODE="1")
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:g} s"}
    lines = p.stdout.strip().splitlines()
    try:
        res = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = (p.stderr.strip().splitlines() or ["no output"])[-3:]
        return {"error": f"exit {p.returncode}: {' | '.join(tail)}"}
    res["seconds"] = round(time.monotonic() - t0, 1)
    if verbose:
        sys.stderr.write(p.stderr)
    return res


def run_all(suites: list, modes: list, *, verbose=False, timeout=900.0, jobs=1,
            cache=None) -> dict:
    """``{suite: {mode: counts}}``; each (suite, mode) in its own interpreter."""
    from concurrent.futures import ThreadPoolExecutor

    cache = cache or os.path.expanduser("~/.cache/greenrt-peer-suites")
    out: dict = {}
    work = []
    for suite in suites:
        kind, *spec = SUITES[suite]
        tree = None
        if kind == "pytest":
            tree, why = _sdist_tree(spec[0], cache)
            if tree is None:
                out[suite] = {m: {"error": why} for m in modes}
                continue
        out[suite] = {}
        work += [(suite, mode, tree) for mode in modes]
    with ThreadPoolExecutor(max(1, jobs)) as ex:
        futs = {(s, m): ex.submit(run_one, m, s, t, verbose, timeout) for s, m, t in work}
        for (s, m), f in futs.items():
            out[s][m] = f.result()
    return out


def print_table(results: dict, modes: list) -> None:
    head = f"{'suite':<16}{'mode':<11}{'run':>6}{'passed':>8}{'failed':>8}{'errors':>8}{'skipped':>9}"
    print(head)
    print("-" * len(head))
    for suite, per in results.items():
        for mode in modes:
            r = per.get(mode, {"error": "not run"})
            if "error" in r:
                print(f"{suite:<16}{mode:<11} {r['error']}")
            else:
                print(f"{suite:<16}{mode:<11}{r['run']:>6}{r['passed']:>8}{r['failed']:>8}"
                      f"{r['errors']:>8}{r['skipped']:>9}")
    # the tests whose outcome differs from the baseline, per mode
    for suite, per in results.items():
        base = per.get("unpatched", {}).get("bad", {})
        for mode in modes:
            r = per.get(mode, {})
            for t, how in sorted(r.get("bad", {}).items()):
                mark = " (also unpatched)" if mode != "unpatched" and t in base else ""
                print(f"  {suite} {mode}: {how}: {t}{mark}")
            for m in r.get("missing", []):
                print(f"  {suite} {mode}: not in this Python: {m}")
    for suite, per in results.items():
        g, gv = per.get("greenrt", {}).get("bad", {}), per.get("gevent", {}).get("bad", {})
        if "gevent" in per and "greenrt" in per:
            only = sorted(set(g) - set(gv))
            print(f"SUMMARY: {suite}: passed " + ", ".join(
                f"{m} {per[m].get('passed', '-')}" for m in modes)
                + f"; greenrt-only failures {len(only)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", nargs=3, metavar=("MODE", "SUITE", "TREE"))
    ap.add_argument("--suite", action="append", choices=list(SUITES))
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--jobs", type=int, default=1,
                    help="(suite, mode) runs at once (timing-sensitive tests prefer 1)")
    ap.add_argument("--cache")
    ap.add_argument("--json", help="also write the results to this file")
    a = ap.parse_args()
    if a.worker:
        mode, suite, tree = a.worker
        res = worker(mode, suite, None if tree == "-" else tree, a.verbose)
        sys.__stdout__.write(json.dumps(res) + "\n")
        sys.__stdout__.flush()
        os._exit(0)  # leftover non-daemon threads of a failed test must not hang us
    modes = [m for m in a.modes.split(",") if m]
    for m in modes:
        if m not in MODES:
            ap.error(f"unknown mode {m!r}")
    results = run_all(a.suite or DEFAULT_SUITES, modes, verbose=a.verbose, timeout=a.timeout,
                      jobs=a.jobs, cache=a.cache)
    print_table(results, modes)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
