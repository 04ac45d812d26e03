"""``requests.get`` from 50 concurrent callers: greenrt.patch vs gevent's
``monkey.patch_all()`` vs a 50-thread pool, against one local HTTP server.

Every peer runs in a fresh interpreter (patching is process-wide), one after the
other, against the same server: greenrt's HTTP/1.1 server in its own process (not
the client's bottleneck: requests costs far more per call than the server does).
Each caller has its own ``requests.Session`` (keep-alive, one connection), and
loops for the measurement time; the figure is requests per second of wall time.

    python bench/bench_patch.py [--seconds 3] [--quick] [--callers 50]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

BODY = b"x" * 64


def w_server(port_file: str) -> None:
    import greenrt
    from greenrt.protocols.http.model import Response
    from greenrt.protocols.http1.server import serve

    def handler(request):
        return Response(200, body=BODY)

    def ready(srv):
        with open(port_file + ".tmp", "w") as f:
            f.write(str(srv.addresses[0][1]))
        os.rename(port_file + ".tmp", port_file)

    greenrt.run(lambda: serve(handler, "127.0.0.1", 0, on_ready=ready, backlog=1024))


def _loop(url: str, seconds: float, counts: list, i: int) -> None:
    import requests

    with requests.Session() as s:
        s.get(url)  # connect outside the timed part
        n = 0
        t_end = time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            r = s.get(url)
            if r.status_code != 200 or r.content != BODY:
                raise RuntimeError(f"bad response {r.status_code}")
            n += 1
        counts[i] = n


def w_greenrt(url: str, callers: int, seconds: float) -> dict:
    import greenrt.patch

    greenrt.patch.patch_all()
    import greenrt

    counts = [0] * callers

    def main():
        t0 = time.perf_counter()
        with greenrt.region() as r:
            for i in range(callers):
                r.spawn(_loop, url, seconds, counts, i)
        return time.perf_counter() - t0

    el = greenrt.run(main)
    return {"req_per_s": sum(counts) / el}


def w_gevent(url: str, callers: int, seconds: float) -> dict:
    from gevent import monkey

    monkey.patch_all()
    import gevent

    counts = [0] * callers
    t0 = time.perf_counter()
    gevent.joinall([gevent.spawn(_loop, url, seconds, counts, i) for i in range(callers)],
                   raise_error=True)
    return {"req_per_s": sum(counts) / (time.perf_counter() - t0)}


def w_threads(url: str, callers: int, seconds: float) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    counts = [0] * callers
    t0 = time.perf_counter()
    with ThreadPoolExecutor(callers) as ex:
        for f in [ex.submit(_loop, url, seconds, counts, i) for i in range(callers)]:
            f.result()
    return {"req_per_s": sum(counts) / (time.perf_counter() - t0)}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        kind = sys.argv[2]
        if kind == "server":
            w_server(sys.argv[3])
            return 0
        url, callers, secs = sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
        fn = {"greenrt": w_greenrt, "gevent": w_gevent, "threads": w_threads}[kind]
        C.worker_reply(fn(url, callers, secs))
        return 0
    ap = argparse.ArgumentParser(description="requests.get: greenrt.patch vs gevent vs threads")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--quick", action="store_true", help="1 s per measurement")
    ap.add_argument("--callers", type=int, default=50)
    a = ap.parse_args()
    secs = 1.0 if a.quick else a.seconds
    me = os.path.abspath(__file__)
    port_file = f"/tmp/bench-patch-{os.getpid()}.port"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), C.ROOT) if p))
    srv = subprocess.Popen([sys.executable, me, "--worker", "server", port_file], env=env)
    try:
        for _ in range(1000):
            if os.path.exists(port_file):
                break
            time.sleep(0.01)
        port = int(open(port_file).read())
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        url = f"http://127.0.0.1:{port}/"
        print(f"bench_patch  {C.machine()}  ({secs:g} s per measurement, {a.callers} callers, "
              "wall time)")

        def run(kind):
            res = C.run_worker(me, [kind, url, str(a.callers), str(secs)], timeout=120 + secs)
            if "error" in res:
                print(f"  {kind}: {res['error']}")
                return None
            return res["req_per_s"]

        g = run("greenrt")
        gv = run("gevent")
        th = run("threads")
    finally:
        srv.terminate()
        srv.wait(10)
        try:
            os.unlink(port_file)
        except OSError:
            pass
    C.print_table(f"requests.get, {a.callers} concurrent callers, keep-alive", [
        ("greenrt", g, f"patch_all(), {a.callers} tasks"),
        ("gevent", gv, f"monkey.patch_all(), {a.callers} greenlets"),
        ("threads", th, f"{a.callers}-thread pool, unpatched"),
    ], "/s", higher_is_better=True)

    def ratio(x, y):
        return f"{x / y:.2f}" if x and y else "-"

    print()
    print(f"SUMMARY: patch requests.get {a.callers} callers greenrt/gevent = {ratio(g, gv)} "
          f"(target >= 1.0), greenrt/threads = {ratio(g, th)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
