"""Lab II benchmark: schedule exploration.

1. Schedules explored per second (random strategy, every run tracked, oracles on) for
   a small program (3 tasks, ~10 steps) and a medium one (8 tasks with a lock and a
   channel, ~300 steps), in one process and over 2 worker processes.
2. DPOR's reduction: runs needed to cover every interleaving class, DPOR vs
   exhaustive DFS, on three programs (both must find the same set of classes).
3. The bug zoo (examples/bugzoo): runs until the first failure for random and pct:3
   (seeds 0-9: median and worst) and dpor.

Run: ``.venv/bin/python bench/bench_explore.py`` (``--quick`` for a short run).
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
    n_large = 24 if quick else 120
    big = {w: max(rate(large, n_large, w)[2] for _ in range(2)) for w in (1, 2)}
    for w, v in big.items():
        print(f"  large (8 tasks, ~500 steps) workers={w}: {v:9.0f} steps/s")
    print(f"SUMMARY: explore steps/s, ~500-step program, 2 workers: {big[2]:.0f} "
          f"({big[2] / 100_000:.2f}x the 100k target; 2 workers / 1 = {big[2] / big[1]:.2f}x)")

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
    main()
