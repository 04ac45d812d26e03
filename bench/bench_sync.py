"""Channel and lock benchmarks: greenrt against gevent, asyncio (default loop and
uvloop) and trio, side by side in one run.

Cases (each (case, peer) in a fresh subprocess, best of several repetitions after a
warm-up, figures in operations per second, higher is better):

``chan1``   one producer, one consumer, N messages through a bounded queue of
            capacity 100: ``greenrt.channel`` (``tx.send``/``rx.recv``), the same
            with two-phase sends (``tx.reserve().send(v)``: one obligation per
            message), ``gevent.queue.Queue(100)``, ``asyncio.Queue(100)`` on the
            default loop and on uvloop, ``trio.open_memory_channel(100)``.
``chan10``  ten producers (N/10 messages each), one consumer, same queues; greenrt
            producers use sender clones.
``lock``    uncontended acquire/release in one task (``with lock:``): greenrt
            ``Lock``, gevent ``lock.Semaphore(1)`` (gevent's lock), ``asyncio.Lock``,
            ``trio.Lock``.
``lockc``   contended: ten tasks each take the lock M times and yield once while
            holding it (``checkpoint()`` / ``sleep(0)``), so every release hands the
            lock to a waiter. Acquisitions per second.

Ratios are printed against greenrt (``x greenrt``; a ratio above 1 means the peer is
faster). Run: ``.venv/bin/python bench/bench_sync.py`` (about 30 s idle, up to 60 s
on a loaded machine). Options:
``--only chan1,chan10,lock,lockc``, ``--peers greenrt,gevent,...``, ``--quick``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

SCRIPT = os.path.abspath(__file__)
CAP = 100
PRODUCERS = 10
CONTENDERS = 10

PEERS = ["greenrt", "greenrt-2phase", "gevent", "asyncio", "uvloop", "trio"]
LOCK_PEERS = ["greenrt", "gevent", "asyncio", "uvloop", "trio"]

# case -> (n per repetition, repeat)
PLAN = {  # best of 5: the machine is shared, and the minimum is the least disturbed run
    "chan1": (50_000, 5),
    "chan10": (50_000, 5),
    "lock": (100_000, 5),
    "lockc": (30_000, 5),
}
SLOW = {"trio": 0.25}  # trio is an order of magnitude slower: smaller n, same per-op cost

NOTES = {
    ("chan", "greenrt"): "greenrt.channel, tx.send",
    ("chan", "greenrt-2phase"): "tx.reserve().send(v)",
    ("chan", "gevent"): "gevent.queue.Queue",
    ("chan", "asyncio"): "asyncio.Queue, default loop",
    ("chan", "uvloop"): "asyncio.Queue on uvloop",
    ("chan", "trio"): "trio.open_memory_channel",
    ("lock", "greenrt"): "greenrt.Lock",
    ("lock", "gevent"): "gevent.lock.Semaphore(1)",
    ("lock", "asyncio"): "asyncio.Lock, default loop",
    ("lock", "uvloop"): "asyncio.Lock on uvloop",
    ("lock", "trio"): "trio.Lock",
}


# ---------------------------------------------------------------------------------------
# workers
# ---------------------------------------------------------------------------------------


def _asyncio_runner(peer):
    import asyncio

    if peer == "uvloop":
        import uvloop

        return asyncio.Runner(loop_factory=uvloop.new_event_loop)
    return asyncio.Runner()


def _split(n: int, k: int) -> list[int]:
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def w_chan(peer: str, n: int, producers: int, repeat: int) -> list[float]:
    """Seconds to move n messages from ``producers`` producers to one consumer."""
    warm = max(n // 10, producers)
    if peer in ("greenrt", "greenrt-2phase"):
        import greenrt

        two_phase = peer == "greenrt-2phase"

        def producer(tx, k):
            with tx:
                if two_phase:
                    for i in range(k):
                        tx.reserve().send(i)
                else:
                    send = tx.send
                    for i in range(k):
                        send(i)

        def consumer(rx):
            recv = rx.recv
            try:
                while True:
                    recv()
            except greenrt.EndOfChannel:
                pass

        def once(total):
            tx, rx = greenrt.channel(CAP)
            t0 = time.perf_counter()
            with greenrt.region() as r:
                r.spawn(consumer, rx)
                for k in _split(total, producers):
                    r.spawn(producer, tx.clone(), k)
                tx.close()
            return time.perf_counter() - t0

        def main():
            once(warm)
            return C.timed_reps(lambda: once(n), repeat, 0)

        return greenrt.run(main)
    if peer == "gevent":
        import gevent
        import gevent.queue

        def once(total):
            q = gevent.queue.Queue(CAP)
            ps = _split(total, producers)

            def producer(k):
                put = q.put
                for i in range(k):
                    put(i)

            def consumer():
                get = q.get
                for _ in range(total):
                    get()

            t0 = time.perf_counter()
            gevent.joinall([gevent.spawn(consumer)] + [gevent.spawn(producer, k) for k in ps])
            return time.perf_counter() - t0

        once(warm)
        return C.timed_reps(lambda: once(n), repeat, 0)
    if peer in ("asyncio", "uvloop"):
        import asyncio

        async def once(total):
            q = asyncio.Queue(CAP)

            async def producer(k):
                put = q.put
                for i in range(k):
                    await put(i)

            async def consumer():
                get = q.get
                for _ in range(total):
                    await get()

            t0 = time.perf_counter()
            await asyncio.gather(consumer(), *[producer(k) for k in _split(total, producers)])
            return time.perf_counter() - t0

        with _asyncio_runner(peer) as runner:
            runner.run(once(warm))
            return C.timed_reps(lambda: runner.run(once(n)), repeat, 0)
    if peer == "trio":
        import trio

        async def once(total):
            tx, rx = trio.open_memory_channel(CAP)

            async def producer(s, k):
                async with s:
                    for i in range(k):
                        await s.send(i)

            async def consumer():
                async with rx:
                    async for _ in rx:
                        pass

            t0 = time.perf_counter()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(consumer)
                async with tx:
                    for k in _split(total, producers):
                        nursery.start_soon(producer, tx.clone(), k)
            return time.perf_counter() - t0

        async def main():
            await once(warm)
            return [await once(n) for _ in range(repeat)]

        return trio.run(main)
    raise ValueError(peer)


def w_lock(peer: str, n: int, contenders: int, repeat: int) -> list[float]:
    """Seconds for n acquisitions: by one task (contenders == 1, no yield inside), or
    split over ``contenders`` tasks that yield once while holding the lock."""
    parts = _split(n, contenders)
    contended = contenders > 1
    warm = max(n // 10, contenders)
    if peer == "greenrt":
        import greenrt

        cp = greenrt.checkpoint

        def worker(lock, k):
            if contended:
                for _ in range(k):
                    with lock:
                        cp()
            else:
                for _ in range(k):
                    with lock:
                        pass

        def once(total):
            lock = greenrt.Lock()
            t0 = time.perf_counter()
            if contended:
                with greenrt.region() as r:
                    for k in _split(total, contenders):
                        r.spawn(worker, lock, k)
            else:
                worker(lock, total)
            return time.perf_counter() - t0

        def main():
            once(warm)
            return C.timed_reps(lambda: once(n), repeat, 0)

        return greenrt.run(main)
    if peer == "gevent":
        import gevent
        import gevent.lock

        def worker(lock, k):
            if contended:
                s = gevent.sleep
                for _ in range(k):
                    with lock:
                        s(0)
            else:
                for _ in range(k):
                    with lock:
                        pass

        def once(total):
            lock = gevent.lock.Semaphore(1)
            t0 = time.perf_counter()
            if contended:
                gevent.joinall([gevent.spawn(worker, lock, k)
                                for k in _split(total, contenders)])
            else:
                worker(lock, total)
            return time.perf_counter() - t0

        once(warm)
        return C.timed_reps(lambda: once(n), repeat, 0)
    if peer in ("asyncio", "uvloop"):
        import asyncio

        async def worker(lock, k):
            if contended:
                s = asyncio.sleep
                for _ in range(k):
                    async with lock:
                        await s(0)
            else:
                for _ in range(k):
                    async with lock:
                        pass

        async def once(total):
            lock = asyncio.Lock()
            t0 = time.perf_counter()
            if contended:
                await asyncio.gather(*[worker(lock, k) for k in _split(total, contenders)])
            else:
                await worker(lock, total)
            return time.perf_counter() - t0

        with _asyncio_runner(peer) as runner:
            runner.run(once(warm))
            return C.timed_reps(lambda: runner.run(once(n)), repeat, 0)
    if peer == "trio":
        import trio

        async def worker(lock, k):
            if contended:
                s = trio.sleep
                for _ in range(k):
                    async with lock:
                        await s(0)
            else:
                for _ in range(k):
                    async with lock:
                        pass

        async def once(total):
            lock = trio.Lock()
            t0 = time.perf_counter()
            if contended:
                async with trio.open_nursery() as nursery:
                    for k in _split(total, contenders):
                        nursery.start_soon(worker, lock, k)
            else:
                await worker(lock, total)
            return time.perf_counter() - t0

        async def main():
            await once(warm)
            return [await once(n) for _ in range(repeat)]

        return trio.run(main)
    del parts
    raise ValueError(peer)


def worker(argv: list[str]) -> None:
    case, peer, n, repeat = argv[0], argv[1], int(argv[2]), int(argv[3])
    if case == "chan1":
        times = w_chan(peer, n, 1, repeat)
    elif case == "chan10":
        times = w_chan(peer, n, PRODUCERS, repeat)
    elif case == "lock":
        times = w_lock(peer, n, 1, repeat)
    elif case == "lockc":
        times = w_lock(peer, n, CONTENDERS, repeat)
    else:
        raise ValueError(case)
    C.worker_reply({"times": times, "value": n / min(times)})


# ---------------------------------------------------------------------------------------
# the side-by-side run
# ---------------------------------------------------------------------------------------

TITLES = {
    "chan1": f"channel throughput, 1 producer -> 1 consumer, capacity {CAP}, messages/s",
    "chan10": f"channel throughput, {PRODUCERS} producers -> 1 consumer, capacity {CAP}, "
              "messages/s",
    "lock": "Lock acquire+release, uncontended (one task), acquisitions/s",
    "lockc": f"Lock, contended ({CONTENDERS} tasks, yield while holding), acquisitions/s",
}


def run_case(case: str, peers: set[str] | None, quick: bool) -> list:
    n0, repeat = PLAN[case]
    rows = []
    for peer in (PEERS if case.startswith("chan") else LOCK_PEERS):
        if peers and peer not in peers:
            continue
        n = int(n0 * SLOW.get(peer, 1))
        if quick:
            n, repeat = max(n // 20, 100), min(repeat, 2)
        r = C.run_worker(SCRIPT, [case, peer, str(n), str(repeat)])
        note = NOTES[("chan" if case.startswith("chan") else "lock", peer)]
        rows.append((peer, r.get("value"), r.get("error") or f"{note}; n={n:,}"))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", nargs=4, metavar=("CASE", "PEER", "N", "REPEAT"))
    ap.add_argument("--only", default="chan1,chan10,lock,lockc")
    ap.add_argument("--peers", default="")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    if a.worker:
        worker(a.worker)
        return 0
    peers = set(a.peers.split(",")) if a.peers else None
    t_start = time.perf_counter()
    print(f"bench_sync  {time.strftime('%Y-%m-%d %H:%M')}  {C.machine()}")
    results: dict = {}
    for case in a.only.split(","):
        rows = run_case(case, peers, a.quick)
        results[case] = {p: v for p, v, _ in rows}
        C.print_table(TITLES[case] + " (higher is better)", rows, "/s", higher_is_better=True)
    print()
    for case, vals in results.items():
        g = vals.get("greenrt")
        if not g:
            continue
        parts = [f"{p} {g / v:.2f}x" for p, v in vals.items() if p != "greenrt" and v]
        print(f"SUMMARY: bench_sync {case}: greenrt {C.fmt(g, '/s')}; greenrt speed vs "
              + ", ".join(parts))
    print(f"\n(total {time.perf_counter() - t_start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
