"""Core runtime benchmarks: greenrt against gevent, asyncio, uvloop, trio and the floor.

Three cases, every peer side by side in one run, each (case, peer) in a fresh
subprocess so no peer inherits another's state (gevent's hub, a warmed allocator,
memory already touched):

``spawn``  spawn+join of 100,000 trivial tasks: greenrt (``with greenrt.region() as
           r: spawn``, leave the block), gevent (``spawn`` + ``joinall``), asyncio
           ``TaskGroup`` on the default loop and on uvloop, a trio nursery, and the
           bare greenlet hub (``bare_hub.py``: a deque and a greenlet free list).
           Reported in microseconds per task (lower is better).
``yield``  ping-pong between two tasks, each doing N yields: ``greenrt.checkpoint()``,
           the bare greenlet hub, ``gevent.sleep(0)``, ``asyncio.sleep(0)`` (default
           loop, uvloop), ``trio.sleep(0)``; raw ``greenlet.switch`` between two
           greenlets with no hub; and ``bare-direct``, the bare hub handing off
           straight to the next task (one switch a yield, the floor of greenrt's
           hand-off design, for reference). A *round trip* is one yield and the return of
           control (two greenlet switches on a greenlet hub: task -> hub -> next
           task); two tasks doing N yields each make 2N round trips. The raw-switch
           row counts A -> B -> A as one round trip. Reported in round trips per
           second (higher is better).
``mem``    memory per idle blocked task: 10,000 tasks blocked forever (greenrt
           ``sleep_forever``, gevent ``Event.wait``, asyncio ``Event.wait``, trio
           ``sleep_forever``, bare parked greenlets), measured as the RSS delta in a
           fresh process, and separately as the ``tracemalloc`` delta (Python
           allocations only: uvloop's C-side memory is invisible to it). Lower is better.

Each timed figure is the best of several repetitions after a warm-up, timed in
process CPU time (``--wall`` for wall time; see ``_common.clock``). Ratios are
against greenrt (``x greenrt``) and the issue's targets are checked at the end:
spawn+join <= 0.5x uvloop's TaskGroup per task; yield >= uvloop ``sleep(0)`` and
>= 0.8x the bare hub; idle memory per task <= gevent's.

Run: ``.venv/bin/python bench/bench_core.py`` (about 45 s). Options: ``--only
spawn,yield,mem``, ``--peers greenrt,bare``, ``--quick`` (small N, a smoke run),
``--greenrt-path DIR`` (benchmark a scratch copy of the package found in DIR),
``--profile spawn|yield`` (cProfile greenrt on one case and print the top functions).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

SCRIPT = os.path.abspath(__file__)

# (case) -> [(peer, n, repeat)]: n is per repetition; slow peers get fewer repetitions
# (never a smaller spawn count: per-task cost changes with the heap size).
PLAN = {
    "spawn": [("greenrt", 100_000, 3), ("bare", 100_000, 3), ("bare-no-reuse", 100_000, 2),
              ("gevent", 100_000, 2), ("asyncio", 100_000, 2), ("uvloop", 100_000, 3),
              ("trio", 100_000, 2)],
    "yield": [("greenrt", 200_000, 3), ("raw-greenlet", 300_000, 3), ("bare", 300_000, 3),
              ("bare-direct", 300_000, 3), ("gevent", 100_000, 3), ("asyncio", 100_000, 3), ("uvloop", 200_000, 3),
              ("trio", 30_000, 3)],
    "mem": [("greenrt", 10_000, 1), ("bare", 10_000, 1), ("gevent", 10_000, 1),
            ("asyncio", 10_000, 1), ("uvloop", 10_000, 1), ("trio", 10_000, 1)],
}

NOTES = {
    ("spawn", "greenrt"): "region + spawn, leave block",
    ("spawn", "bare"): "deque + greenlet free list (floor)",
    ("spawn", "bare-no-reuse"): "new greenlet per task (reference)",
    ("spawn", "gevent"): "gevent.spawn + joinall",
    ("spawn", "asyncio"): "TaskGroup, default loop",
    ("spawn", "uvloop"): "TaskGroup on uvloop",
    ("spawn", "trio"): "nursery.start_soon",
    ("yield", "greenrt"): "greenrt.checkpoint()",
    ("yield", "raw-greenlet"): "A.switch()/B.switch(), no hub",
    ("yield", "bare"): "deque + 2 switches (floor)",
    ("yield", "bare-direct"): "deque + 1 switch, hand-off (reference)",
    ("yield", "gevent"): "gevent.sleep(0)",
    ("yield", "asyncio"): "asyncio.sleep(0), default loop",
    ("yield", "uvloop"): "asyncio.sleep(0) on uvloop",
    ("yield", "trio"): "trio.sleep(0)",
    ("mem", "greenrt"): "sleep_forever",
    ("mem", "bare"): "parked greenlet (floor)",
    ("mem", "gevent"): "Event.wait",
    ("mem", "asyncio"): "Event.wait, default loop",
    ("mem", "uvloop"): "Event.wait on uvloop",
    ("mem", "trio"): "sleep_forever",
}


# ---------------------------------------------------------------------------------------
# workers: each runs in its own interpreter and returns a dict
# ---------------------------------------------------------------------------------------


def _noop():
    pass


async def _anoop():
    pass


def _asyncio_runner(peer):
    import asyncio

    if peer == "uvloop":
        import uvloop

        return asyncio.Runner(loop_factory=uvloop.new_event_loop)
    return asyncio.Runner()


def w_spawn(peer: str, n: int, repeat: int) -> list[float]:
    warm = max(n // 10, 1)
    if peer == "greenrt":
        import greenrt

        def once(k):
            t0 = C.clock()
            with greenrt.region() as r:
                sp = r.spawn
                for _ in range(k):
                    sp(_noop)
            return C.clock() - t0

        def main():
            once(warm)
            return C.timed_reps(lambda: (gc.collect(), once(n))[1], repeat, 0)

        return greenrt.run(main)
    if peer in ("bare", "bare-no-reuse"):
        import bare_hub

        f = bare_hub.spawn_join if peer == "bare" else bare_hub.spawn_join_no_reuse
        f(warm)
        return C.timed_reps(lambda: (gc.collect(), f(n))[1], repeat, 0)
    if peer == "gevent":
        import gevent

        def once(k):
            t0 = C.clock()
            gevent.joinall([gevent.spawn(_noop) for _ in range(k)])
            return C.clock() - t0

        once(warm)
        return C.timed_reps(lambda: (gc.collect(), once(n))[1], repeat, 0)
    if peer in ("asyncio", "uvloop"):
        import asyncio

        async def once(k):
            t0 = C.clock()
            async with asyncio.TaskGroup() as tg:
                ct = tg.create_task
                for _ in range(k):
                    ct(_anoop())
            return C.clock() - t0

        with _asyncio_runner(peer) as runner:
            runner.run(once(warm))
            return C.timed_reps(lambda: (gc.collect(), runner.run(once(n)))[1], repeat, 0)
    if peer == "trio":
        import trio

        async def once(k):
            t0 = C.clock()
            async with trio.open_nursery() as nursery:
                ss = nursery.start_soon
                for _ in range(k):
                    ss(_anoop)
            return C.clock() - t0

        async def main():
            await once(warm)
            times = []
            for _ in range(repeat):
                gc.collect()
                times.append(await once(n))
            return times

        return trio.run(main)
    raise ValueError(peer)


def w_yield(peer: str, n: int, repeat: int) -> list[float]:
    """Seconds for 2n round trips (n for raw-greenlet)."""
    warm = max(n // 10, 1)
    if peer == "greenrt":
        import greenrt

        cp = greenrt.checkpoint

        def pinger(k):
            for _ in range(k):
                cp()

        def once(k):
            t0 = C.clock()
            with greenrt.region() as r:
                r.spawn(pinger, k)
                r.spawn(pinger, k)
            return C.clock() - t0

        def main():
            once(warm)
            return C.timed_reps(lambda: once(n), repeat, 0)

        return greenrt.run(main)
    if peer in ("bare", "bare-direct", "raw-greenlet"):
        import bare_hub

        f = {"bare": bare_hub.ping_pong, "bare-direct": bare_hub.ping_pong_direct,
             "raw-greenlet": bare_hub.raw_switch}[peer]
        f(warm)
        return C.timed_reps(lambda: f(n), repeat, 0)
    if peer == "gevent":
        import gevent

        def pinger(k):
            s = gevent.sleep
            for _ in range(k):
                s(0)

        def once(k):
            t0 = C.clock()
            gevent.joinall([gevent.spawn(pinger, k), gevent.spawn(pinger, k)])
            return C.clock() - t0

        once(warm)
        return C.timed_reps(lambda: once(n), repeat, 0)
    if peer in ("asyncio", "uvloop"):
        import asyncio

        async def pinger(k):
            s = asyncio.sleep
            for _ in range(k):
                await s(0)

        async def once(k):
            t0 = C.clock()
            await asyncio.gather(pinger(k), pinger(k))
            return C.clock() - t0

        with _asyncio_runner(peer) as runner:
            runner.run(once(warm))
            return C.timed_reps(lambda: runner.run(once(n)), repeat, 0)
    if peer == "trio":
        import trio

        async def pinger(k):
            s = trio.sleep
            for _ in range(k):
                await s(0)

        async def once(k):
            t0 = C.clock()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(pinger, k)
                nursery.start_soon(pinger, k)
            return C.clock() - t0

        async def main():
            await once(warm)
            return [await once(n) for _ in range(repeat)]

        return trio.run(main)
    raise ValueError(peer)


def w_mem(peer: str, n: int, use_tracemalloc: bool) -> dict:
    """Bytes per idle blocked task. ``measure()`` is called with every task blocked."""
    import tracemalloc

    if use_tracemalloc:
        tracemalloc.start()

    def sample() -> int:
        gc.collect()
        return tracemalloc.get_traced_memory()[0] if use_tracemalloc else C.rss_bytes()

    out: dict = {}
    if peer == "greenrt":
        import greenrt

        started = [0]

        def waiter():
            started[0] += 1
            greenrt.sleep_forever()

        def batch(k, record):
            started[0] = 0
            with greenrt.region() as r:
                for _ in range(k):
                    r.spawn(waiter)
                while started[0] < k:
                    greenrt.checkpoint()  # every child runs once and parks
                if record:
                    out["after"] = sample()
                r.cancel()

        def main():
            batch(100, False)  # warm: code paths, one-time allocations
            out["before"] = sample()
            batch(n, True)

        greenrt.run(main)
    elif peer == "bare":
        import bare_hub

        keep = bare_hub.park_idle(100)
        out["before"] = sample()
        keep = bare_hub.park_idle(n)
        out["after"] = sample()
        del keep
    elif peer == "gevent":
        import gevent
        import gevent.event

        def batch(k, record):
            ev = gevent.event.Event()
            started = [0]

            def waiter():
                started[0] += 1
                ev.wait()

            gs = [gevent.spawn(waiter) for _ in range(k)]
            while started[0] < k:
                gevent.sleep(0)
            if record:
                out["after"] = sample()
            ev.set()
            gevent.joinall(gs)

        batch(100, False)
        out["before"] = sample()
        batch(n, True)
    elif peer in ("asyncio", "uvloop"):
        import asyncio

        async def batch(k, record):
            ev = asyncio.Event()
            started = [0]

            async def waiter():
                started[0] += 1
                await ev.wait()

            async with asyncio.TaskGroup() as tg:
                for _ in range(k):
                    tg.create_task(waiter())
                while started[0] < k:
                    await asyncio.sleep(0)
                if record:
                    out["after"] = sample()
                ev.set()

        async def main():
            await batch(100, False)
            out["before"] = sample()
            await batch(n, True)

        with _asyncio_runner(peer) as runner:
            runner.run(main())
    elif peer == "trio":
        import trio
        import trio.testing

        async def batch(k, record):
            started = [0]

            async def waiter():
                started[0] += 1
                await trio.sleep_forever()

            async with trio.open_nursery() as nursery:
                for _ in range(k):
                    nursery.start_soon(waiter)
                await trio.testing.wait_all_tasks_blocked()
                if record:
                    out["after"] = sample()
                nursery.cancel_scope.cancel()

        async def main():
            await batch(100, False)
            out["before"] = sample()
            await batch(n, True)

        trio.run(main)
    else:
        raise ValueError(peer)
    return {"per_task": (out["after"] - out["before"]) / n, **out}


def worker(argv: list[str]) -> None:
    case, peer, n, repeat = argv[0], argv[1], int(argv[2]), int(argv[3])
    if case == "spawn":
        times = w_spawn(peer, n, repeat)
        C.worker_reply({"times": times, "value": min(times) / n * 1e6})
    elif case == "yield":
        times = w_yield(peer, n, repeat)
        trips = n if peer == "raw-greenlet" else 2 * n
        C.worker_reply({"times": times, "value": trips / min(times)})
    elif case in ("mem", "memtm"):
        r = w_mem(peer, n, case == "memtm")
        C.worker_reply({"value": r["per_task"], **r})
    else:
        raise ValueError(case)


# ---------------------------------------------------------------------------------------
# profile mode
# ---------------------------------------------------------------------------------------


def profile(case: str, top: int = 30) -> None:
    import cProfile
    import pstats

    import greenrt

    n = 100_000
    prof = cProfile.Profile()

    def main():
        if case == "spawn":
            with greenrt.region() as r:
                for _ in range(n // 10):
                    r.spawn(_noop)
            prof.enable()
            with greenrt.region() as r:
                for _ in range(n):
                    r.spawn(_noop)
            prof.disable()
        else:
            def pinger(k):
                for _ in range(k):
                    greenrt.checkpoint()

            prof.enable()
            with greenrt.region() as r:
                r.spawn(pinger, n)
                r.spawn(pinger, n)
            prof.disable()

    greenrt.run(main)
    print(f"cProfile of greenrt, case {case}, n={n} (deterministic profiler: overhead "
          "inflates small functions; read the proportions)")
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)


# ---------------------------------------------------------------------------------------
# instruction counts (callgrind): the core's micro-costs
# ---------------------------------------------------------------------------------------

#: ``--callgrind`` cases: (name, what one operation is). Each case runs in a task of its
#: own; an operation of a two-task case is one round trip (each task parks, or yields,
#: once and is woken once).
IR_CASES = [
    ("checkpoint", "checkpoint(), the only runnable task"),
    ("checkpoint2", "checkpoint() ping-pong, 2 tasks: 2 yields"),
    ("waitqueue", "WaitQueue park/wake_one ping-pong: 2 parks + 2 wakes"),
    ("event", "Event wait/set ping-pong (a new Event per wait): 2 parks + 2 wakes"),
    ("future", "future set/wait ping-pong (nats-style, on a WaitQueue): 2 parks + 2 wakes"),
    ("channel", "channel(1) send/recv ping-pong over 2 channels: 2 parks + 2 wakes"),
    ("move_on_park", "waitqueue round trip, one side's park in move_on_after(60)"),
    ("fail_after_park", "waitqueue round trip, one side's park in fail_after(60)"),
    ("move_on_empty", "with move_on_after(60): pass"),
    ("spawn_join", "r.spawn(noop).join(), one at a time"),
    ("spawn_batch", "r.spawn(noop) in a region, per task (joined at the block's end)"),
]


class _Fut:
    """A one-shot result on a ``lowlevel.WaitQueue``: the shape of the protocol
    clients' futures (NATS request/reply, Kafka delivery reports)."""

    __slots__ = ("value", "done", "_wq")

    def __init__(self):
        import greenrt.lowlevel as ll

        self.value = None
        self.done = False
        self._wq = ll.WaitQueue()

    def set(self, value):
        if not self.done:
            self.value = value
            self.done = True
            self._wq.wake_all()

    def wait(self):
        while not self.done:
            self._wq.park(what="bench future")
        return self.value


def _ir_case(case: str, n: int) -> None:
    """Run ``n`` operations of ``case`` (inside ``greenrt.run``)."""
    import greenrt
    import greenrt.lowlevel as ll

    if case == "checkpoint":
        cp = greenrt.checkpoint
        for _ in range(n):
            cp()
        return
    if case == "spawn_join":
        with greenrt.region() as r:
            for _ in range(n):
                r.spawn(_noop).join()
        return
    if case == "spawn_batch":
        with greenrt.region() as r:
            sp = r.spawn
            for _ in range(n):
                sp(_noop)
        return
    if case == "move_on_empty":
        mo = greenrt.move_on_after
        for _ in range(n):
            with mo(60):
                pass
        return
    if case == "checkpoint2":
        def pinger():
            cp = greenrt.checkpoint
            for _ in range(n):
                cp()
        with greenrt.region() as r:
            r.spawn(pinger)
            r.spawn(pinger)
        return
    if case in ("waitqueue", "move_on_park", "fail_after_park"):
        qa, qb = ll.WaitQueue(), ll.WaitQueue()
        scope = {"move_on_park": greenrt.move_on_after,
                 "fail_after_park": greenrt.fail_after}.get(case)

        def a():
            for _ in range(n):
                qb.wake_one()
                if scope is None:
                    qa.park()
                else:
                    with scope(60):
                        qa.park()

        def b():
            for _ in range(n):
                qb.park()
                qa.wake_one()
        with greenrt.region() as r:
            r.spawn(b)
            r.spawn(a)
        return
    if case in ("event", "future"):
        make = greenrt.Event if case == "event" else _Fut
        box = [make(), make()]

        def a():
            for _ in range(n):
                mine = box[0] = make()
                box[1].set() if case == "event" else box[1].set(None)
                mine.wait()

        def b():
            for _ in range(n):
                box[1].wait()
                box[1] = make()
                box[0].set() if case == "event" else box[0].set(None)
        with greenrt.region() as r:
            r.spawn(a)
            r.spawn(b)
        return
    if case == "channel":
        tx1, rx1 = greenrt.channel(1)
        tx2, rx2 = greenrt.channel(1)

        def a():
            for i in range(n):
                tx1.send(i)
                rx2.recv()

        def b():
            for _ in range(n):
                tx2.send(rx1.recv())
        with greenrt.region() as r:
            r.spawn(b)
            r.spawn(a)
        return
    raise ValueError(case)


def ir_probe(spec: str) -> None:
    """``--ir-probe case=n,case=n``: run each case ``n`` times in one process (what
    callgrind counts)."""
    import greenrt

    plan = [(c, int(k)) for c, k in (item.split("=") for item in spec.split(","))]

    def main():
        for case, k in plan:
            _ir_case(case, k)

    greenrt.run(main)


def _ir_total(spec: str, path: str | None = None) -> int | None:
    import re
    import shutil
    import subprocess
    import tempfile

    if shutil.which("valgrind") is None:
        return None
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "cg.out")
        env = dict(os.environ, PYTHONHASHSEED="0")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (path, env.get("PYTHONPATH"), C.ROOT) if p)
        p = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                            sys.executable, SCRIPT, "--ir-probe", spec],
                           capture_output=True, text=True, env=env, timeout=1800)
        if p.returncode != 0:
            sys.stderr.write(p.stderr[-2000:])
            return None
        try:
            with open(out) as f:
                text = f.read()
        except OSError:
            return None
    m = re.search(r"^(?:totals|summary): (\d+)", text, re.M)
    return int(m.group(1)) if m else None


def callgrind(cases: list[str], lo: int, hi: int, jobs: int = 2,
              path: str | None = None) -> dict[str, float | None]:
    """Instructions per operation of each case: one process runs every case ``lo``
    times (the baseline); one more per case runs that case ``hi`` times and the
    others ``lo`` times. The difference over ``hi - lo`` is the case's cost per
    operation, start-up and imports cancelled out; independent of the machine's load."""
    from concurrent.futures import ThreadPoolExecutor

    specs = {"": ",".join(f"{c}={lo}" for c in cases)}
    for c in cases:
        specs[c] = ",".join(f"{x}={hi if x == c else lo}" for x in cases)
    with ThreadPoolExecutor(jobs) as ex:
        totals = dict(zip(specs, ex.map(lambda sp: _ir_total(sp, path), specs.values()),
                          strict=True))
    base = totals[""]
    return {c: (totals[c] - base) / (hi - lo) if base and totals[c] else None for c in cases}


# ---------------------------------------------------------------------------------------
# the side-by-side run
# ---------------------------------------------------------------------------------------


def run_case(case: str, peers: set[str] | None, quick: bool):
    rows = []
    for peer, n, repeat in PLAN[case]:
        if peers and peer not in peers:
            continue
        if quick:
            n, repeat = max(n // 20, 100), min(repeat, 2)
        if case == "mem":
            rss = C.run_worker(SCRIPT, ["mem", peer, str(n), "1"])
            tm = C.run_worker(SCRIPT, ["memtm", peer, str(n), "1"])
            rows.append((peer, rss.get("value"), tm.get("value"),
                         rss.get("error") or tm.get("error"), n))
        else:
            r = C.run_worker(SCRIPT, [case, peer, str(n), str(repeat)])
            rows.append((peer, r.get("value"), n, r.get("error"), n))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", nargs=4, metavar=("CASE", "PEER", "N", "REPEAT"))
    ap.add_argument("--only", default="spawn,yield,mem")
    ap.add_argument("--peers", default="")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--greenrt-path", default=None)
    ap.add_argument("--profile", choices=("spawn", "yield"))
    ap.add_argument("--wall", action="store_true", help="time with wall clock, not CPU time")
    ap.add_argument("--callgrind", nargs="?", const="all", metavar="CASES",
                    help="instructions per operation of the core's micro-costs (valgrind)")
    ap.add_argument("--ir-n", default="1000,5000", help="--callgrind: the two N's")
    ap.add_argument("--ir-probe", metavar="SPEC", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        worker(a.worker)
        return 0
    if a.ir_probe:
        ir_probe(a.ir_probe)
        return 0
    if a.callgrind:
        names = [c for c, _ in IR_CASES]
        cases = names if a.callgrind == "all" else a.callgrind.split(",")
        lo, hi = (int(x) for x in a.ir_n.split(","))
        print(f"bench_core --callgrind  {time.strftime('%Y-%m-%d %H:%M')}  N={lo},{hi}  "
              "(instructions per operation: (Ir(N2) - Ir(N1)) / (N2 - N1))")
        cols = [("this tree", None)]
        if a.greenrt_path:
            cols.insert(0, (f"greenrt from {a.greenrt_path}", a.greenrt_path))
        got = [callgrind(cases, lo, hi, path=path) for _, path in cols]
        for i, (title, _) in enumerate(cols):
            print(f"  column {i + 1}: {title}")
        doc = dict(IR_CASES)
        w = max(len(c) for c in cases) + 2
        print(f"  {'case':<{w}}" + "".join(f"{'Ir/op ' + str(i + 1):>12}" for i in range(len(cols)))
              + ("     ratio" if len(cols) == 2 else "") + "  operation")
        for c in cases:
            vals = [g[c] for g in got]
            line = f"  {c:<{w}}" + "".join(f"{v:>12,.0f}" if v is not None else f"{'n/a':>12}"
                                           for v in vals)
            if len(cols) == 2:
                line += (f"{vals[1] / vals[0]:>9.2f}x" if vals[0] and vals[1] else f"{'-':>10}")
            print(line + f"  {doc.get(c, '')}")
        for c in cases:
            v = got[-1][c]
            print(f"SUMMARY: bench_core ir {c} {v:.0f} Ir/op" if v is not None
                  else f"SUMMARY: bench_core ir {c} n/a")
        return 0
    if a.profile:
        profile(a.profile)
        return 0
    if a.wall:
        os.environ["BENCH_CLOCK"] = "wall"
        C.clock = time.perf_counter
        C.CLOCK_NAME = "wall time"
    peers = set(a.peers.split(",")) if a.peers else None
    cases = a.only.split(",")
    t_start = time.perf_counter()
    print(f"bench_core  {time.strftime('%Y-%m-%d %H:%M')}  {C.machine()}  [{C.CLOCK_NAME}]")
    if a.greenrt_path:
        print(f"greenrt from {a.greenrt_path}")
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (a.greenrt_path, os.environ.get("PYTHONPATH")) if p)
    results: dict = {}
    if "spawn" in cases:
        rows = run_case("spawn", peers, a.quick)
        results["spawn"] = {p: v for p, v, *_ in rows}
        C.print_table(f"spawn+join of {rows[0][2]:,} trivial tasks, us per task (lower is better)",
                      [(p, v, err or NOTES[("spawn", p)]) for p, v, _, err, _ in rows], "us")
    if "yield" in cases:
        rows = run_case("yield", peers, a.quick)
        results["yield"] = {p: v for p, v, *_ in rows}
        C.print_table("yield ping-pong between two tasks, round trips per second (higher is better)",
                      [(p, v, err or f"{NOTES[('yield', p)]}; n={n:,}")
                       for p, v, n, err, _ in rows],
                      "/s", higher_is_better=True)
    if "mem" in cases:
        rows = run_case("mem", peers, a.quick)
        results["mem"] = {p: v for p, v, *_ in rows}
        C.print_table(f"memory per idle blocked task, RSS delta of {rows[0][4]:,} tasks "
                      "(lower is better)",
                      [(p, v, err or NOTES[("mem", p)]) for p, v, _, err, _ in rows], "B")
        C.print_table("memory per idle blocked task, tracemalloc delta (Python allocations only)",
                      [(p, tm, err or NOTES[("mem", p)]) for p, _, tm, err, _ in rows], "B")
    print()
    summarize(results)
    print(f"\n(total {time.perf_counter() - t_start:.0f} s wall)")
    return 0


def summarize(results: dict) -> None:
    def get(case, peer):
        return results.get(case, {}).get(peer)

    checks = []
    g, u = get("spawn", "greenrt"), get("spawn", "uvloop")
    if g and u:
        bare = get("spawn", "bare")
        checks.append(("spawn+join <= 0.5x uvloop TaskGroup", g / u, g / u <= 0.5,
                       f"greenrt {g:.2f} us vs uvloop {u:.2f} us"
                       + (f"; bare floor {bare:.2f} us" if bare else "")))
    g, u, b = get("yield", "greenrt"), get("yield", "uvloop"), get("yield", "bare")
    if g and u:
        checks.append(("yield >= uvloop sleep(0)", g / u, g >= u,
                       f"greenrt {g / 1e6:.3f} M/s vs uvloop {u / 1e6:.3f} M/s"))
    if g and b:
        checks.append(("yield >= 0.8x bare hub", g / b, g >= 0.8 * b,
                       f"greenrt {g / 1e6:.3f} M/s vs bare {b / 1e6:.3f} M/s"))
    g, ge = get("mem", "greenrt"), get("mem", "gevent")
    if g and ge:
        checks.append(("idle memory/task <= gevent", g / ge, g <= ge,
                       f"greenrt {g:.0f} B vs gevent {ge:.0f} B (RSS)"))
    for name, ratio, ok, detail in checks:
        print(f"SUMMARY: bench_core target {name}: ratio {ratio:.2f} "
              f"{'MET' if ok else 'NOT MET'} ({detail})")


if __name__ == "__main__":
    sys.exit(main())
