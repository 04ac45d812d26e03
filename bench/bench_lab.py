"""Benchmark: the lab hub's speed and its cost relative to the real hub.

One switch-heavy program (``TASKS`` tasks, each passing ``ROUNDS`` checkpoints, with a
short sleep every 50 rounds so timers are involved too) runs side by side:

* ``real``      greenrt.run on the real hub (no tracing);
* ``lab-bare``  lab.run(trace=False): virtual clock + seeded choice at every switch,
                no events, no oracles;
* ``lab``       lab.run(): every event kept in memory, oracles checked, trace hashed;
* ``lab-rec``   lab.run(record=FILE): as ``lab`` plus writing the JSONL file.

Prints lab steps per second (a step = one scheduling decision = one task switch) and
each variant's time as a ratio to the real hub. Best of ``REPEAT`` runs.
Run: ``.venv/bin/python bench/bench_lab.py [--tasks N] [--rounds N] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import greenrt  # noqa: E402
import greenrt.lab as lab  # noqa: E402


def program(tasks: int, rounds: int) -> int:
    total = [0]

    def worker() -> None:
        for i in range(rounds):
            total[0] += 1
            if i % 50 == 49:
                greenrt.sleep(0.001)
            else:
                greenrt.checkpoint()

    with greenrt.region() as r:
        for _ in range(tasks):
            r.spawn(worker)
    return total[0]


def best(fn, check, repeat: int) -> tuple[float, dict]:
    """Best time of ``repeat`` runs; results are dropped between runs (and garbage
    collected) so one variant's leftovers do not slow the next one's collector."""
    times = []
    info: dict = {}
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        info = check(out)
        del out
    return min(times), info


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    n, k = a.tasks, a.rounds
    tmp = tempfile.mkdtemp(prefix="bench_lab_")
    path = os.path.join(tmp, "trace.jsonl")

    def check_real(v):
        assert v == n * k
        return {}

    def check_lab(res):
        assert res.ok and res.value == n * k, res.summary()
        return dict(res.stats)

    t_real, _ = best(lambda: greenrt.run(program, n, k), check_real, a.repeat)
    results = {"real": (t_real, {})}
    for name, kw in (("lab-bare", {"trace": False}), ("lab", {}),
                     ("lab-rec", {"record": path})):
        results[name] = best(lambda kw=kw: lab.run(program, n, k, seed=1, **kw), check_lab,
                             a.repeat)
    steps = results["lab"][1]["steps"]
    events = results["lab"][1]["events"]
    size = os.path.getsize(path)
    print(f"switch-heavy program: {n} tasks x {k} checkpoints; lab steps={steps} "
          f"events={events} trace file={size / 1e6:.1f} MB")
    print(f"{'variant':<10} {'time (s)':>9} {'steps/s':>12} {'x real hub':>11}")
    for name, (t, _) in results.items():
        rate = steps / t
        print(f"{name:<10} {t:>9.3f} {rate:>12,.0f} {t / t_real:>11.1f}")
    os.remove(path)
    os.rmdir(tmp)


if __name__ == "__main__":
    main()
