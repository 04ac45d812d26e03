"""Redis GET/SET round trips: greenrt's client vs redis-py (sync, asyncio, gevent),
plus pipelined throughput, with ``redis-benchmark`` as the ceiling.

Starts its own ``redis-server`` on a free loopback port (persistence off) and runs
every peer in a fresh subprocess against it, one after the other:

* ``greenrt`` with 1 task and with 50 tasks (pool of 50), alternating SET/GET;
* ``redis-py sync`` with 1 thread;
* ``redis-py asyncio`` with 1 task and with 50 tasks (pool of 50);
* ``redis-py + gevent`` with 50 greenlets (monkey-patched, pool of 50);
* pipelined: batches of 100 SET/GET, greenrt vs redis-py sync;
* ``redis-benchmark -t set,get`` with ``-c 1`` and ``-c 50`` (C, the ceiling).

One op = one command round trip. Targets from issue 7: greenrt at 50 tasks >= 2x
redis-py asyncio at 50 tasks, greenrt at 1 task >= redis-py sync.

    .venv/bin/python bench/bench_redis.py [--seconds 2] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common as C  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- workers (each runs in its own interpreter) ----------------------------------------


def w_greenrt(port: int, tasks: int, seconds: float) -> dict:
    import greenrt
    from greenrt.protocols.redis import Redis

    counts = [0] * tasks

    def worker(r, i, deadline):
        key = f"k{i}"
        n = 0
        while greenrt.now() < deadline:
            r.set(key, "value")
            r.get(key)
            n += 2
        counts[i] = n

    def main():
        with Redis(port=port, max_connections=max(tasks, 1)) as r:
            for _ in range(200):
                r.get("warm")
            t0 = greenrt.now()
            deadline = t0 + seconds
            with greenrt.region() as rg:
                for i in range(tasks):
                    rg.spawn(worker, r, i, deadline)
            return greenrt.now() - t0

    elapsed = greenrt.run(main)
    return {"ops_per_s": sum(counts) / elapsed}


def w_greenrt_pipeline(port: int, seconds: float, batch: int = 100) -> dict:
    import greenrt
    from greenrt.protocols.redis import Redis

    def main():
        with Redis(port=port) as r:
            n = 0
            t0 = greenrt.now()
            while greenrt.now() - t0 < seconds:
                p = r.pipeline()
                for i in range(batch // 2):
                    p.set(f"p{i}", "value")
                    p.get(f"p{i}")
                p.execute()
                n += batch
            return n / (greenrt.now() - t0)

    return {"ops_per_s": greenrt.run(main)}


def w_redispy_sync(port: int, seconds: float, pipeline: bool = False, batch: int = 100) -> dict:
    import redis

    r = redis.Redis(port=port)
    for _ in range(200):
        r.get("warm")
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        if pipeline:
            p = r.pipeline(transaction=False)
            for i in range(batch // 2):
                p.set(f"p{i}", "value")
                p.get(f"p{i}")
            p.execute()
            n += batch
        else:
            r.set("k0", "value")
            r.get("k0")
            n += 2
    return {"ops_per_s": n / (time.perf_counter() - t0)}


def w_redispy_asyncio(port: int, tasks: int, seconds: float) -> dict:
    import asyncio

    import redis.asyncio as aredis

    async def main():
        r = aredis.Redis(port=port, max_connections=max(tasks, 1))
        for _ in range(200):
            await r.get("warm")
        counts = [0] * tasks
        t0 = time.perf_counter()

        async def worker(i):
            key = f"k{i}"
            n = 0
            while time.perf_counter() - t0 < seconds:
                await r.set(key, "value")
                await r.get(key)
                n += 2
            counts[i] = n

        await asyncio.gather(*(worker(i) for i in range(tasks)))
        elapsed = time.perf_counter() - t0
        await r.aclose()
        return sum(counts) / elapsed

    return {"ops_per_s": asyncio.run(main())}


def w_redispy_gevent(port: int, tasks: int, seconds: float) -> dict:
    from gevent import monkey

    monkey.patch_all()
    import gevent
    import redis

    pool = redis.BlockingConnectionPool(port=port, max_connections=tasks)
    r = redis.Redis(connection_pool=pool)
    for _ in range(200):
        r.get("warm")
    counts = [0] * tasks
    t0 = time.perf_counter()

    def worker(i):
        key = f"k{i}"
        n = 0
        while time.perf_counter() - t0 < seconds:
            r.set(key, "value")
            r.get(key)
            n += 2
        counts[i] = n

    gevent.joinall([gevent.spawn(worker, i) for i in range(tasks)])
    return {"ops_per_s": sum(counts) / (time.perf_counter() - t0)}


def worker_main(argv: list[str]) -> None:
    kind, port, seconds = argv[0], int(argv[1]), float(argv[2])
    tasks = int(argv[3]) if len(argv) > 3 else 1
    if kind == "greenrt":
        out = w_greenrt(port, tasks, seconds)
    elif kind == "greenrt-pipeline":
        out = w_greenrt_pipeline(port, seconds)
    elif kind == "sync":
        out = w_redispy_sync(port, seconds)
    elif kind == "sync-pipeline":
        out = w_redispy_sync(port, seconds, pipeline=True)
    elif kind == "asyncio":
        out = w_redispy_asyncio(port, tasks, seconds)
    elif kind == "gevent":
        out = w_redispy_gevent(port, tasks, seconds)
    else:
        raise SystemExit(f"unknown worker {kind}")
    C.worker_reply(out)


# -- driver ------------------------------------------------------------------------------


def redis_benchmark(port: int, clients: int, requests: int) -> float | None:
    exe = shutil.which("redis-benchmark")
    if exe is None:
        return None
    p = subprocess.run([exe, "-p", str(port), "-c", str(clients), "-n", str(requests),
                        "-t", "set,get", "--csv", "-q"], capture_output=True, text=True,
                       timeout=120)
    rates = []
    for line in p.stdout.splitlines():
        parts = [x.strip('"') for x in line.split(",")]
        if len(parts) >= 2 and parts[0] in ("SET", "GET"):
            try:
                rates.append(float(parts[1]))
            except ValueError:
                pass
    return sum(rates) / len(rates) if rates else None


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker_main(sys.argv[2:])
        return 0
    ap = argparse.ArgumentParser(description="Redis client round trips vs redis-py")
    ap.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    ap.add_argument("--quick", action="store_true", help="0.5 s per measurement")
    a = ap.parse_args()
    secs = 0.5 if a.quick else a.seconds
    server = shutil.which("redis-server")
    if server is None:
        print("redis-server is not installed (scripts/setup.sh installs it)")
        return 1
    workdir = tempfile.mkdtemp(prefix="bench-redis-")
    port = _free_port()
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", workdir, "--protected-mode", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        C.wait_for_port(port)
        print(f"bench_redis  {C.machine()}  ({secs:g} s per measurement)")
        me = os.path.abspath(__file__)

        def run(kind, tasks=1):
            res = C.run_worker(me, [kind, str(port), str(secs), str(tasks)])
            if "error" in res:
                print(f"  {kind} x{tasks}: {res['error']}")
                return None
            return res["ops_per_s"]

        g1 = run("greenrt", 1)
        s1 = run("sync", 1)
        a1 = run("asyncio", 1)
        g50 = run("greenrt", 50)
        a50 = run("asyncio", 50)
        gv50 = run("gevent", 50)
        gp = run("greenrt-pipeline")
        sp = run("sync-pipeline")
        rb1 = redis_benchmark(port, 1, 20000 if a.quick else 50000)
        rb50 = redis_benchmark(port, 50, 50000 if a.quick else 200000)
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)

    C.print_table("1 task, GET/SET round trips", [
        ("greenrt", g1, "1 task"),
        ("redis-py sync", s1, "1 thread"),
        ("redis-py asyncio", a1, "1 task"),
        ("redis-benchmark -c 1", rb1, "C client, ceiling"),
    ], "/s", higher_is_better=True)
    C.print_table("50 concurrent tasks, GET/SET round trips", [
        ("greenrt", g50, "50 tasks, pool 50"),
        ("redis-py asyncio", a50, "50 tasks, pool 50"),
        ("redis-py gevent", gv50, "50 greenlets, pool 50"),
        ("redis-benchmark -c 50", rb50, "C client, ceiling"),
    ], "/s", higher_is_better=True)
    C.print_table("pipelined (batches of 100), 1 task", [
        ("greenrt", gp, "pipeline()"),
        ("redis-py sync", sp, "pipeline(transaction=False)"),
    ], "/s", higher_is_better=True)

    def ratio(a_, b_):
        return f"{a_ / b_:.2f}" if a_ and b_ else "-"

    print()
    print(f"SUMMARY: redis 50 tasks greenrt/asyncio = {ratio(g50, a50)} (target >= 2.0), "
          f"greenrt/gevent = {ratio(g50, gv50)}, greenrt/redis-benchmark = {ratio(g50, rb50)}")
    print(f"SUMMARY: redis 1 task greenrt/redis-py-sync = {ratio(g1, s1)} (target >= 1.0), "
          f"greenrt/asyncio = {ratio(g1, a1)}")
    print(f"SUMMARY: redis pipelined greenrt/redis-py-sync = {ratio(gp, sp)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
