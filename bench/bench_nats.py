"""NATS: greenrt's client vs nats-py (asyncio) on the same local nats-server.

Starts its own ``nats-server`` on a free loopback port and an echo responder (a
greenrt process, the same one for every peer), then runs each peer in a fresh
subprocess, one after the other:

* publish throughput, 16-byte messages, 1 task and 50 tasks (then a flush, timed);
* subscribe throughput: a second connection in the same process publishes N
  messages, the subscriber counts them as they arrive (timed until the last);
* request/reply round trips against the responder, 1 task and 50 tasks.

Goal from issue 17: greenrt >= 2x nats-py on each. Wall time (a server and a peer
process are involved).

    .venv/bin/python bench/bench_nats.py [--seconds 2] [--quick]
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

PAYLOAD = b"x" * 16
SUBJECT = "bench.pub"
ECHO = "bench.echo"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _result(ops: int, t0: float, c0: float) -> dict:
    """Operations per second (wall) and the client process's CPU per operation (µs):
    the wall rate also pays for nats-server and the responder, the CPU figure is what
    the client library itself costs."""
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"rate": ops / wall, "cpu_us": cpu / ops * 1e6 if ops else None}


# -- greenrt workers ---------------------------------------------------------------------


def g_publish(url: str, tasks: int, seconds: float) -> dict:
    import greenrt
    from greenrt.protocols import nats

    counts = [0] * tasks

    def worker(nc, i, deadline):
        n = 0
        pub = nc.publish
        while True:
            for _ in range(100):
                pub(SUBJECT, PAYLOAD)
            n += 100
            if greenrt.now() >= deadline:
                break
        counts[i] = n

    def main():
        with nats.connect(url) as nc:
            t0, c0 = time.perf_counter(), time.process_time()
            deadline = greenrt.now() + seconds
            with greenrt.region() as rg:
                for i in range(tasks):
                    rg.spawn(worker, nc, i, deadline)
            nc.flush(timeout=60)
            return _result(sum(counts), t0, c0)

    return greenrt.run(main)


def g_subscribe(url: str, n: int) -> dict:
    import greenrt
    from greenrt.protocols import nats

    def main():
        with nats.connect(url) as sub_c, nats.connect(url) as pub_c:
            sub = sub_c.subscribe(SUBJECT, max_pending_msgs=n + 1, max_pending_bytes=1 << 30)
            sub_c.flush()
            got = [0]

            def consume():
                for _ in sub:
                    got[0] += 1
                    if got[0] == n:
                        return

            t0, c0 = time.perf_counter(), time.process_time()
            with greenrt.region() as rg:
                rg.spawn(consume)
                for _ in range(n):
                    pub_c.publish(SUBJECT, PAYLOAD)
                pub_c.flush(timeout=60)
            return _result(n, t0, c0)

    return greenrt.run(main)


def g_request(url: str, tasks: int, seconds: float) -> dict:
    import greenrt
    from greenrt.protocols import nats

    counts = [0] * tasks

    def worker(nc, i, deadline):
        n = 0
        while greenrt.now() < deadline:
            nc.request(ECHO, PAYLOAD, timeout=10)
            n += 1
        counts[i] = n

    def main():
        with nats.connect(url) as nc:
            nc.request(ECHO, PAYLOAD, timeout=10)
            t0, c0 = time.perf_counter(), time.process_time()
            deadline = greenrt.now() + seconds
            with greenrt.region() as rg:
                for i in range(tasks):
                    rg.spawn(worker, nc, i, deadline)
            return _result(sum(counts), t0, c0)

    return greenrt.run(main)


def g_responder(url: str) -> None:
    import greenrt
    from greenrt.protocols import nats

    def main():
        with nats.connect(url) as nc:
            sub = nc.subscribe(ECHO, max_pending_msgs=1 << 20)
            nc.flush()
            print("ready", flush=True)
            for m in sub:
                nc.publish(m.reply, m.data)

    greenrt.run(main)


# -- nats-py workers ---------------------------------------------------------------------


def a_publish(url: str, tasks: int, seconds: float) -> dict:
    import asyncio

    import nats

    async def main():
        nc = await nats.connect(url)
        counts = [0] * tasks
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds

        async def worker(i):
            n = 0
            pub = nc.publish
            while True:
                for _ in range(100):
                    await pub(SUBJECT, PAYLOAD)
                n += 100
                if loop.time() >= deadline:
                    break
            counts[i] = n

        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(i) for i in range(tasks)))
        await nc.flush(timeout=60)
        res = _result(sum(counts), t0, c0)
        await nc.close()
        return res

    return asyncio.run(main())


def a_subscribe(url: str, n: int) -> dict:
    import asyncio

    import nats

    async def main():
        sub_c = await nats.connect(url)
        pub_c = await nats.connect(url)
        done = asyncio.Event()
        got = [0]

        async def cb(msg):
            got[0] += 1
            if got[0] == n:
                done.set()

        await sub_c.subscribe(SUBJECT, cb=cb, pending_msgs_limit=n + 1,
                              pending_bytes_limit=1 << 30)
        await sub_c.flush()
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            await pub_c.publish(SUBJECT, PAYLOAD)
        await pub_c.flush(timeout=60)
        await asyncio.wait_for(done.wait(), 120)
        res = _result(n, t0, c0)
        await sub_c.close()
        await pub_c.close()
        return res

    return asyncio.run(main())


def a_request(url: str, tasks: int, seconds: float) -> dict:
    import asyncio

    import nats

    async def main():
        nc = await nats.connect(url)
        await nc.request(ECHO, PAYLOAD, timeout=10)
        counts = [0] * tasks
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds

        async def worker(i):
            n = 0
            while loop.time() < deadline:
                await nc.request(ECHO, PAYLOAD, timeout=10)
                n += 1
            counts[i] = n

        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(i) for i in range(tasks)))
        res = _result(sum(counts), t0, c0)
        await nc.close()
        return res

    return asyncio.run(main())


def worker_main(argv: list[str]) -> None:
    kind, url = argv[0], argv[1]
    if kind == "responder":
        g_responder(url)
        return
    arg, seconds = int(argv[2]), float(argv[3])
    fn = {"g-pub": g_publish, "a-pub": a_publish, "g-req": g_request, "a-req": a_request}.get(kind)
    if fn is not None:
        out = fn(url, arg, seconds)
    elif kind == "g-sub":
        out = g_subscribe(url, arg)
    elif kind == "a-sub":
        out = a_subscribe(url, arg)
    else:
        raise SystemExit(f"unknown worker {kind}")
    C.worker_reply(out)


# -- driver ------------------------------------------------------------------------------


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker_main(sys.argv[2:])
        return 0
    ap = argparse.ArgumentParser(description="NATS client vs nats-py")
    ap.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    ap.add_argument("--quick", action="store_true", help="0.5 s per measurement")
    a = ap.parse_args()
    secs = 0.5 if a.quick else a.seconds
    n_sub = 100_000 if a.quick else 300_000
    server = shutil.which("nats-server")
    if server is None:
        print("nats-server is not installed (scripts/apt-packages.txt lists it)")
        return 1
    workdir = tempfile.mkdtemp(prefix="bench-nats-")
    port = _free_port()
    url = f"nats://127.0.0.1:{port}"
    proc = subprocess.Popen([server, "-a", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    responder = None
    me = os.path.abspath(__file__)
    try:
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.01)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (os.environ.get("PYTHONPATH"), C.ROOT) if p))
        responder = subprocess.Popen([sys.executable, me, "--worker", "responder", url],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, env=env)
        responder.stdout.readline()
        print(f"bench_nats  {C.machine()}  ({secs:g} s per measurement, wall time)")

        def run(kind, arg):
            res = C.run_worker(me, [kind, url, str(arg), str(secs)], timeout=300)
            if "error" in res:
                print(f"  {kind} {arg}: {res['error']}")
                return {}
            return res

        # (title, greenrt result, nats-py result, greenrt note, nats-py note)
        cases = [("publish, 16-byte messages, 1 task", run("g-pub", 1), run("a-pub", 1),
                  "publish + final flush", "")]
        cases.append(("publish, 16-byte messages, 50 tasks", run("g-pub", 50), run("a-pub", 50),
                      "one connection", "one connection"))
        cases.append((f"subscribe, {n_sub} messages", run("g-sub", n_sub), run("a-sub", n_sub),
                      "iterator", "callback"))
        cases.append(("request/reply round trips, 1 task", run("g-req", 1), run("a-req", 1),
                      "", ""))
        cases.append(("request/reply round trips, 50 tasks", run("g-req", 50), run("a-req", 50),
                      "one connection", "one connection"))
    finally:
        if responder is not None:
            responder.terminate()
            responder.wait(10)
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)

    def ratio(x, y):
        return f"{x / y:.2f}" if x and y else "-"

    summary = []
    for title, g, a, gnote, anote in cases:
        C.print_table(title + ", wall rate", [("greenrt", g.get("rate"), gnote),
                                              ("nats-py asyncio", a.get("rate"), anote)],
                      "/s", higher_is_better=True)
        C.print_table(title + ", client CPU per operation", [
            ("greenrt", g.get("cpu_us"), "µs"), ("nats-py asyncio", a.get("cpu_us"), "µs")], "")
        summary.append(f"SUMMARY: nats {title}: greenrt/nats-py wall = "
                       f"{ratio(g.get('rate'), a.get('rate'))}, client CPU per op = "
                       f"{ratio(a.get('cpu_us'), g.get('cpu_us'))}x less (target >= 2.0)")
    print()
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
