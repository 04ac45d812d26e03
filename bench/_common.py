"""Shared helpers for the benchmarks: timing, subprocess workers, the ratio table.

Kept deliberately small. Every bench file measures its peers side by side in one run
(each peer in a fresh subprocess when isolation matters) and prints a table with the
absolute figures and their ratios against greenrt, then ``SUMMARY:`` lines that
``run_all.py`` collects.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

#: The clock every timed section uses. Process CPU time by default: the benchmarks are
#: single-threaded CPU-bound loops with no I/O, so on an idle machine it equals wall
#: time, and on a shared one it is much less disturbed by other people's work.
#: ``BENCH_CLOCK=wall`` (or ``--wall`` on a bench file) switches to ``perf_counter``.
clock = time.perf_counter if os.environ.get("BENCH_CLOCK") == "wall" else time.process_time
CLOCK_NAME = "wall time" if clock is time.perf_counter else "process CPU time"


def timed_reps(fn: Callable[[], float | None], repeat: int, warmup: int = 1) -> list[float]:
    """Call ``fn`` ``warmup`` times (discarded), then ``repeat`` times; return the
    elapsed seconds of each timed call. If ``fn`` returns a number, that is taken
    as its own (inner) elapsed time, so setup outside the timed part is excluded."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = clock()
        r = fn()
        t1 = clock()
        times.append(r if isinstance(r, float) else t1 - t0)
    return times


def median(values) -> float | None:
    """The median of ``values`` (``None`` entries, failed runs, left out; the mean of
    the middle two for an even count); ``None`` when nothing is left."""
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return None
    k = len(vals) // 2
    return vals[k] if len(vals) % 2 else (vals[k - 1] + vals[k]) / 2


def rss_bytes() -> int:
    """Resident set size of this process (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def machine() -> str:
    """One line naming the machine and the interpreter."""
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import greenlet

        gl = greenlet.__version__
    except ImportError:  # pragma: no cover
        gl = "-"
    return (f"{cpu}, {os.cpu_count()} cpus, Python {platform.python_version()}, "
            f"greenlet {gl}, {platform.system()} {platform.release()}")


def run_worker(script: str, args: Sequence[str], timeout: float = 120) -> dict:
    """Run ``python script --worker args...`` in a fresh interpreter; it prints one
    JSON object on its last stdout line, which is returned (or ``{"error": ...}``)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (env.get("PYTHONPATH"), ROOT) if p)
    try:
        p = subprocess.run([sys.executable, script, "--worker", *args], capture_output=True,
                           text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout}s"}
    lines = p.stdout.strip().splitlines()
    if p.returncode != 0 or not lines:
        tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {p.returncode}: {tail}"}
    return json.loads(lines[-1])


def worker_reply(obj: dict) -> None:
    """Print the worker's result as the last stdout line (see ``run_worker``)."""
    print(json.dumps(obj), flush=True)


def fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "/s":
        return f"{v / 1e6:.3f} M/s" if v >= 1e5 else f"{v / 1e3:.1f} k/s"
    if unit == "us":
        return f"{v:.2f} us"
    if unit == "B":
        return f"{v / 1024:.2f} KiB" if v >= 1024 else f"{v:.0f} B"
    return f"{v:.3g} {unit}"


def print_table(title: str, rows: list[tuple[str, float | None, str]], unit: str,
                ref: str = "greenrt", higher_is_better: bool = False) -> None:
    """Print ``rows`` of (peer, value, note) with each value's ratio to ``ref``.

    The ratio column is ``value / ref`` ("x greenrt"); for a time or memory figure a
    ratio above 1 means the peer costs more than greenrt, for a rate it means the
    peer is faster. The ``vs`` column says which of the two wins.
    """
    refv = next((v for n, v, _ in rows if n == ref), None)
    print(f"\n{title}")
    w = max(len(n) for n, _, _ in rows) + 2
    print(f"  {'peer':<{w}}{'value':>14}  {'x greenrt':>10}  {'vs':>14}  note")
    for name, v, note in rows:
        if v is None or not refv:
            ratio, vs = "-", ""
        else:
            r = v / refv
            ratio = f"{r:.2f}x"
            if name == ref:
                vs = ""
            else:
                rt_wins = (r < 1) if higher_is_better else (r > 1)
                vs = "greenrt wins" if rt_wins else "peer wins"
        print(f"  {name:<{w}}{fmt(v, unit):>14}  {ratio:>10}  {vs:>14}  {note}")


def wait_for_port(port: int, host: str = "127.0.0.1", tries: int = 500) -> None:
    """Wait (up to ``tries`` x 10 ms) until a server accepts on ``host:port``."""
    for _ in range(tries):
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.01)
