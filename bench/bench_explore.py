"""Lab II benchmark: schedule exploration.

1. Schedules explored per second (random strategy, every run tracked, oracles on) for
   a small program (3 tasks, ~10 steps) and a medium one (8 tasks with a lock and a
   channel, ~300 steps), in one process and over 2 worker processes.
2. DPOR's reduction: runs needed to cover every interleaving class, DPOR vs
   exhaustive DFS, on three programs (both must find the same set of classes).
3. The bug zoo (examples/bugzoo): runs until the first failure for random and pct:3
   (seeds 0-9: median and worst) and dpor.

Run: ``.venv/bin/python bench/bench_explore.py`` (``--quick`` for a short run;
``--callgrind`` adds the instructions per scheduling step of the ~500-step program to
the SUMMARY line: callgrind's Ir of ``explore(large, runs=14)`` minus that of
``runs=4``, over the difference in steps, so start-up and imports cancel out).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests", "lab"))

import explore_programs as E  # noqa: E402

import greenrt  # noqa: E402
import greenrt.lab as lab  # noqa: E402
from greenrt.lab.replay import load_entry  # noqa: E402


def small() -> None:
    E.writers3()


def medium() -> int:
    lock = greenrt.Lock()
    tx, rx = greenrt.channel(4)
    total = lab.shared({"n": 0}, "total")

    def worker(i: int, t) -> None:
        with t:
            for k in range(8):
                with lock:
                    total["n"] = total["n"] + 1
                greenrt.checkpoint()
                t.send((i, k))

    def consumer() -> int:
        return sum(1 for _ in rx)

    with greenrt.region() as r:
        for i in range(7):
            r.spawn(worker, i, tx.clone(), name=f"w{i}")
        c = r.spawn(consumer, name="consumer")
        tx.close()
    return c.join()


def large() -> int:
    """8 tasks x 60 checkpoints, a lock every 6th: ~500 scheduling steps per run (the
    issue's 400-600-step throughput target)."""
    lock = greenrt.Lock()
    total = lab.shared({"n": 0}, "total")

    def worker() -> None:
        for k in range(60):
            if k % 6 == 0:
                with lock:
                    total["n"] = total["n"] + 1
            greenrt.checkpoint()

    with greenrt.region() as r:
        for i in range(8):
            r.spawn(worker, name=f"w{i}")
    return total["n"]


def rate(fn, runs: int, workers: int) -> tuple[float, int, float]:
    """Runs/s, classes and scheduling steps/s of a random exploration."""
    t0 = time.perf_counter()
    r = lab.explore(fn, runs=runs, workers=workers, seed=1, stop_on_failure=False,
                    strategy="random")
    dt = time.perf_counter() - t0
    assert r.ok, r.summary()
    return r.runs / dt, r.classes, r.steps / dt


def _busy_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine (``/proc/stat``)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def rate_cpu(fn, runs: int, workers: int) -> tuple[float, float, float]:
    """Runs/s and steps/s of a random exploration, and how many cores the machine
    kept busy meanwhile (the workers run in forkserver children, so their CPU time is
    not this process's; on a shared machine this includes other load)."""
    b0, t0 = _busy_jiffies()
    rs, _, ss = rate(fn, runs, workers)
    b1, t1 = _busy_jiffies()
    ncpu = os.cpu_count() or 1
    return rs, ss, ncpu * (b1 - b0) / max(1, t1 - t0)


def _ir_probe(runs: int) -> None:
    """``--ir-probe N``: one exploration of ``large`` (under callgrind)."""
    r = lab.explore(large, runs=runs, seed=1, stop_on_failure=False, strategy="random")
    print(f"STEPS {r.steps}")


def ir_per_step(lo: int = 4, hi: int = 14) -> float | None:
    """Instructions (callgrind Ir) per scheduling step of ``large`` (one process)."""
    import re
    import shutil
    import subprocess
    import tempfile

    if shutil.which("valgrind") is None:
        return None
    got = []
    with tempfile.TemporaryDirectory() as d:
        for n in (lo, hi):
            out = os.path.join(d, f"cg.{n}")
            p = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                                sys.executable, os.path.abspath(__file__), "--ir-probe", str(n)],
                               capture_output=True, text=True, timeout=1800)
            m = re.search(r"^STEPS (\d+)", p.stdout, re.M)
            try:
                text = open(out).read()
            except OSError:
                return None
            ir = re.search(r"^(?:totals|summary): (\d+)", text, re.M)
            if m is None or ir is None:
                return None
            got.append((int(ir.group(1)), int(m.group(1))))
    (i0, s0), (i1, s1) = got
    return (i1 - i0) / (s1 - s0)


ZOO = ["lost_update.py:main", "lock_order.py:main", "permit_leak.py:main",
       "race_not_drained.py:main", "cancel_desync.py:main", "timeout_in_cleanup.py:main"]


def main() -> None:
    quick = "--quick" in sys.argv
    n_small, n_med = (200, 40) if quick else (1000, 200)
    print("== schedules explored per second (random, tracked, oracles on; best of 2)")
    for name, fn, n in (("small (3 tasks)", small, n_small), ("medium (8 tasks)", medium, n_med)):
        for w in (1, 2):
            best = max((rate(fn, n, w) for _ in range(2)), key=lambda x: x[0])
            print(f"  {name:18s} workers={w}: {best[0]:8.0f} runs/s {best[2]:9.0f} steps/s")
    one = max(rate(medium, n_med, 1)[0] for _ in range(2))
    two = max(rate(medium, n_med, 2)[0] for _ in range(2))
    print(f"  medium: 2 workers / 1 worker = {two / one:.2f}x")
    # Runs enough for the pool's start-up (forkserver workers importing the program)
    # to be amortized as in a real exploration; each figure is the best of 2.
    n_large = 48 if quick else 400
    big = {}
    for w in (1, 2):
        big[w] = max((rate_cpu(large, n_large, w) for _ in range(2)), key=lambda x: x[1])
        rs, ss, cores = big[w]
        print(f"  large (8 tasks, ~500 steps) workers={w}: {rs:8.0f} runs/s {ss:9.0f} steps/s"
              f"  (machine busy: {cores:.1f} cores)")
    load = os.getloadavg()
    ir = ir_per_step() if "--callgrind" in sys.argv else None
    tail = f"; {ir:.0f} Ir/step (callgrind, 1 process)" if ir is not None else ""
    print(f"SUMMARY: explore steps/s, ~500-step program, 2 workers: {big[2][1]:.0f} "
          f"({big[2][0]:.0f} runs/s; {big[2][1] / 100_000:.2f}x the 100k target; "
          f"2 workers / 1 = {big[2][1] / big[1][1]:.2f}x; 1 worker {big[1][1]:.0f} steps/s; "
          f"load average {load[0]:.2f}){tail}")

    print("\n== DPOR reduction: runs to cover every class (DPOR vs exhaustive DFS)")
    for name in ("writers3", "locks2", "event_and_channel"):
        fn = getattr(E, name)
        d = lab.explore(fn, runs=None, strategy="dfs")
        p = lab.explore(fn, runs=None, strategy="dpor")
        same = set(d.class_ids) == set(p.class_ids)
        print(f"  {name:18s} classes={p.classes:3d}  dfs runs={d.runs:5d}  dpor runs={p.runs:4d}"
              f"  reduction={d.runs / p.runs:5.1f}x  same classes: {same}")

    print("\n== bug zoo: runs until the first failure (seeds 0-9 for random and pct:3)")
    seeds = range(5) if quick else range(10)
    for entry in ZOO:
        fn = load_entry(os.path.join(ROOT, "examples", "bugzoo", entry))
        row = []
        for strat in ("random", "pct:3"):
            ns = []
            for s in seeds:
                r = lab.explore(fn, runs=2000, strategy=strat, seed=s)
                ns.append(r.runs if not r.ok else None)
            found = [n for n in ns if n is not None]
            med = statistics.median(found) if found else float("nan")
            row.append(f"{strat}: median {med:g} max {max(found) if found else '-'} "
                       f"({len(found)}/{len(ns)} found)")
        p = lab.explore(fn, runs=2000, strategy="dpor", seed=0)
        row.append(f"dpor: {p.runs if not p.ok else 'not found'}")
        print(f"  {entry:28s} " + " | ".join(row))


if __name__ == "__main__":
    if "--ir-probe" in sys.argv:
        _ir_probe(int(sys.argv[sys.argv.index("--ir-probe") + 1]))
    else:
        main()
