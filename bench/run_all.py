"""Run every ``bench/bench_*.py`` and collect their summaries.

Each bench file runs as its own subprocess (``python bench/bench_X.py`` plus any
arguments given here after ``--``), one after the other so they do not compete for
the two cores. Its full output is saved to ``bench/results/bench_X.txt``; the
``SUMMARY:`` lines of all of them, with the date and the machine, go to
``bench/results/summary.txt`` and are printed at the end.

Usage: ``.venv/bin/python bench/run_all.py [-k SUBSTR] [-- ARGS...]``; ``-k`` runs only
the bench files whose name contains SUBSTR. ``ARGS`` (e.g. ``--quick``) are passed to
every bench file. Exit status is non-zero if any bench file failed.
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common as C  # noqa: E402

RESULTS = os.path.join(HERE, "results")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, passthrough = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description="run every bench/bench_*.py")
    ap.add_argument("-k", default="", help="only bench files whose name contains this")
    ap.add_argument("--timeout", type=float, default=600)
    a = ap.parse_args(argv)
    files = sorted(f for f in glob.glob(os.path.join(HERE, "bench_*.py"))
                   if a.k in os.path.basename(f))
    os.makedirs(RESULTS, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), C.ROOT) if p)
    header = f"run_all  {time.strftime('%Y-%m-%d %H:%M')}  {C.machine()}"
    print(header, flush=True)
    summary = [header]
    failed = []
    for f in files:
        name = os.path.splitext(os.path.basename(f))[0]
        print(f"\n=== {name} ===", flush=True)
        t0 = time.perf_counter()
        try:
            p = subprocess.run([sys.executable, f, *passthrough], capture_output=True, text=True,
                               timeout=a.timeout, env=env, cwd=C.ROOT)
            out, rc = p.stdout, p.returncode
            err = p.stderr
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            rc, err = -1, f"timeout after {a.timeout}s"
        dt = time.perf_counter() - t0
        print(out, end="", flush=True)
        with open(os.path.join(RESULTS, f"{name}.txt"), "w") as fh:
            fh.write(out)
            if rc != 0:
                fh.write(f"\n[exit {rc}]\n{err}")
        lines = [ln for ln in out.splitlines() if ln.startswith("SUMMARY:")]
        if rc != 0:
            failed.append(name)
            tail = (err.strip().splitlines() or ["no stderr"])[-1]
            lines.append(f"SUMMARY: {name} FAILED (exit {rc}): {tail}")
            print(f"[{name} failed: exit {rc}]\n{err}", file=sys.stderr)
        summary.append(f"{name} ({dt:.0f} s)")
        summary.extend("  " + ln for ln in lines)
    text = "\n".join(summary) + "\n"
    with open(os.path.join(RESULTS, "summary.txt"), "w") as fh:
        fh.write(text)
    print("\n" + text, end="")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
