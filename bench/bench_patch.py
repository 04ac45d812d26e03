"""``requests.get`` from 50 concurrent callers: greenrt.patch vs gevent's
``monkey.patch_all()`` vs a 50-thread pool, against one local HTTP server.

Made fair and repeatable on a small, shared machine:

* **one server for everyone, outside the contenders**: granian (Rust, hyper; an
  RSGI app answering 64 bytes: the server's cost per request is a small fraction
  of requests') in its own process, started once, pinned to its own core
  (``--server greenrt`` uses greenrt's HTTP/1.1 server instead);
* **each contender in a fresh interpreter** (patching is process-wide), pinned to the
  other core(s), so the client side of each gets the same CPU;
* **several rounds, alternating order** (round ``i`` runs the contenders rotated
  by ``i``; 6 rounds: each contender is first, second and third twice), with a pause
  between two contenders (the server closes the previous one's connections), so
  drift of the machine's load hits every contender alike; the figure
  of each contender is the **median** over the rounds, with the spread (min-max)
  printed, and the greenrt/gevent ratio is given both as the ratio of the medians
  and as the median of the per-round ratios (the two contenders of one round ran
  seconds apart).

Each caller has its own ``requests.Session`` (keep-alive, one connection). After a
warm-up (every session connected, a few requests each) all callers run in the same
timed window; the figure is responses completed in the window per second of wall
time.

    python bench/bench_patch.py [--rounds 5] [--seconds 3] [--quick] [--callers 50]
                                [--server granian|greenrt] [--only greenrt,gevent]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

BODY = b"x" * 64
CONTENDERS = ("greenrt", "gevent", "threads")
WARMUP_REQUESTS = 20
#: idle seconds between two contenders: the server finishes closing the previous
#: contender's 50 connections before the next one connects
PAUSE = 1.0

RSGI_APP = f'''
BODY = {BODY!r}
HEADERS = [("content-type", "text/plain")]


async def app(scope, proto):
    proto.response_bytes(200, HEADERS, BODY)
'''


# -- the server (outside the contenders) ----------------------------------------------


def w_greenrt_server(port_file: str) -> None:
    import greenrt
    from greenrt.protocols.http import Response, serve

    def handler(request):
        return Response(200, body=BODY)

    def ready(srv):
        with open(port_file + ".tmp", "w") as f:
            f.write(str(srv.addresses[0][1]))
        os.rename(port_file + ".tmp", port_file)

    greenrt.run(lambda: serve(handler, "127.0.0.1", 0, on_ready=ready, backlog=1024))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpus() -> tuple[set, set]:
    """(server cpus, client cpus): the last cpu for the server, the rest for clients."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return set(cpus), set(cpus)
    return {cpus[-1]}, set(cpus[:-1])


def set_priority(how: str) -> str:
    """Raise this process's scheduling priority (inherited by its children); return
    what was done. ``fifo``: SCHED_FIFO (real time: a woken server or contender runs
    at once instead of waiting behind the shared machine's other work; the kernel's
    real-time throttling still leaves others 5 %), ``nice``: nice -20, ``none``."""
    if how == "fifo":
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
            return "SCHED_FIFO 10"
        except (PermissionError, AttributeError, OSError):
            how = "nice"
    if how == "nice":
        try:
            os.setpriority(os.PRIO_PROCESS, 0, -20)
            return "nice -20"
        except (PermissionError, OSError):
            pass
    return "default"


def start_server(kind: str, work: str, cpus: set, env: dict):
    """Start the server pinned to ``cpus``; return (Popen, port)."""
    def pin():
        os.sched_setaffinity(0, cpus)

    if kind == "granian":
        with open(os.path.join(work, "patch_bench_app.py"), "w") as f:
            f.write(RSGI_APP)
        port = _free_port()
        exe = os.path.join(os.path.dirname(sys.executable), "granian")
        args = [exe, "--interface", "rsgi", "--http", "1", "--workers", "1",
                "--runtime-mode", "st", "--no-ws", "--host", "127.0.0.1", "--port", str(port),
                "--log-level", "error", "--backlog", "1024", "patch_bench_app:app"]
        p = subprocess.Popen(args, cwd=work, env=env, preexec_fn=pin,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        port_file = os.path.join(work, "port")
        p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", "server",
                              port_file], env=env, preexec_fn=pin)
        for _ in range(3000):
            if os.path.exists(port_file) or p.poll() is not None:
                break
            time.sleep(0.01)
        port = int(open(port_file).read())
    for _ in range(3000):
        if p.poll() is not None:
            raise RuntimeError(f"{kind} server exited with {p.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            break
        except OSError:
            time.sleep(0.01)
    return p, port


# -- the contenders (each in its own interpreter) -------------------------------------


def _caller(url: str, window: list, counts: list, i: int, ready) -> None:
    """One keep-alive session: warm up, report ready, count responses in the window."""
    import requests

    with requests.Session() as s:
        for _ in range(WARMUP_REQUESTS):
            s.get(url)
        ready()
        while not window:  # the window opens when every caller is warm
            time.sleep(0.001)
        t_start, t_end = window
        n = 0
        now = time.perf_counter()
        while now < t_end:
            r = s.get(url)
            if r.status_code != 200 or r.content != BODY:
                raise RuntimeError(f"bad response {r.status_code}")
            now = time.perf_counter()
            if now <= t_end:
                n += 1
        counts[i] = n


def _measure(spawn_all, callers: int, seconds: float) -> dict:
    """``spawn_all(fn)`` starts ``callers`` callers running ``fn(i, ready)`` and
    returns a join function; the window opens once all of them are warm."""
    counts = [0] * callers
    window: list = []
    warm = [0]

    def ready():
        warm[0] += 1

    def opener():
        while warm[0] < callers:
            time.sleep(0.001)
        t = time.perf_counter()
        window.extend((t, t + seconds))

    join = spawn_all(lambda i: _caller(URL, window, counts, i, ready), opener)
    join()
    return {"req_per_s": sum(counts) / seconds, "requests": sum(counts)}


URL = ""


def w_greenrt(callers: int, seconds: float) -> dict:
    import greenrt.patch

    greenrt.patch.patch_all()
    import greenrt

    def spawn_all(fn, opener):
        def main():
            with greenrt.region() as r:
                for i in range(callers):
                    r.spawn(fn, i)
                r.spawn(opener)
        return lambda: greenrt.run(main)

    return _measure(spawn_all, callers, seconds)


def w_gevent(callers: int, seconds: float) -> dict:
    from gevent import monkey

    monkey.patch_all()
    import gevent

    def spawn_all(fn, opener):
        gl = [gevent.spawn(fn, i) for i in range(callers)] + [gevent.spawn(opener)]
        return lambda: gevent.joinall(gl, raise_error=True)

    return _measure(spawn_all, callers, seconds)


def w_threads(callers: int, seconds: float) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    def spawn_all(fn, opener):
        ex = ThreadPoolExecutor(callers + 1)
        futs = [ex.submit(fn, i) for i in range(callers)] + [ex.submit(opener)]

        def join():
            for f in futs:
                f.result()
            ex.shutdown()
        return join

    return _measure(spawn_all, callers, seconds)


WORKERS = {"greenrt": w_greenrt, "gevent": w_gevent, "threads": w_threads}


# -- the driver -------------------------------------------------------------------------


def main() -> int:
    global URL
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        kind = sys.argv[2]
        if kind == "server":
            w_greenrt_server(sys.argv[3])
            return 0
        URL, callers, secs = sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
        C.worker_reply(WORKERS[kind](callers, secs))
        return 0
    ap = argparse.ArgumentParser(description="requests.get: greenrt.patch vs gevent vs threads")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=6,
                    help="a multiple of the number of contenders: each is first as often")
    ap.add_argument("--quick", action="store_true", help="3 rounds of 1 s")
    ap.add_argument("--callers", type=int, default=50)
    ap.add_argument("--server", choices=["granian", "greenrt"], default=None,
                    help="default: granian if installed, else greenrt's HTTP/1.1 server")
    ap.add_argument("--only", default=",".join(CONTENDERS))
    ap.add_argument("--priority", choices=["fifo", "nice", "none"], default="fifo",
                    help="scheduling of the server and the contenders (default: SCHED_FIFO "
                         "where allowed, else nice -20): on a loaded machine, wake-up latency "
                         "behind other work otherwise dominates and favours many threads")
    a = ap.parse_args()
    secs, rounds = (1.0, 3) if a.quick else (a.seconds, a.rounds)
    contenders = [c for c in a.only.split(",") if c]
    server = a.server or ("granian" if shutil.which(
        "granian", path=os.path.dirname(sys.executable)) else "greenrt")
    me = os.path.abspath(__file__)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (os.environ.get("PYTHONPATH"), C.ROOT) if p))
    srv_cpus, cli_cpus = _cpus()
    prio = set_priority(a.priority)
    work = tempfile.mkdtemp(prefix="bench-patch-")
    srv, port = start_server(server, work, srv_cpus, env)
    url = f"http://127.0.0.1:{port}/"
    per: dict[str, list] = {c: [] for c in contenders}
    ratios: list[float] = []
    try:
        print(f"bench_patch  {C.machine()}")
        print(f"  server: {server} on cpu {sorted(srv_cpus)}; contenders on cpu "
              f"{sorted(cli_cpus)}; scheduling {prio}; {rounds} rounds x {secs:g} s, "
              f"{a.callers} callers, wall time, load average at start "
              f"{os.getloadavg()[0]:.1f}")
        os.sched_setaffinity(0, cli_cpus)  # the contenders inherit it
        for rnd in range(rounds):
            order = contenders[rnd % len(contenders):] + contenders[:rnd % len(contenders)]
            got = {}
            for kind in order:
                time.sleep(PAUSE)
                res = C.run_worker(me, [kind, url, str(a.callers), str(secs)],
                                   timeout=120 + 4 * secs)
                if "error" in res:
                    print(f"  round {rnd + 1} {kind}: {res['error']}")
                    continue
                got[kind] = res["req_per_s"]
                per[kind].append(res["req_per_s"])
            print(f"  round {rnd + 1}: " + ", ".join(f"{k} {v:.0f}/s" for k, v in got.items()))
            if got.get("greenrt") and got.get("gevent"):
                ratios.append(got["greenrt"] / got["gevent"])
    finally:
        srv.terminate()
        try:
            srv.wait(10)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait()
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(v) if v else None for k, v in per.items()}
    notes = {"greenrt": f"patch_all(), {a.callers} tasks",
             "gevent": f"monkey.patch_all(), {a.callers} greenlets",
             "threads": f"{a.callers}-thread pool, unpatched"}
    C.print_table(f"requests.get, {a.callers} concurrent callers, keep-alive, median of "
                  f"{rounds} rounds", [
                      (k, med[k], notes[k] + (f"; spread {min(v):.0f}-{max(v):.0f}/s" if v else ""))
                      for k, v in per.items()], "/s", higher_is_better=True)

    def ratio(x, y):
        return f"{x / y:.2f}" if x and y else "-"

    print()
    if ratios:
        print(f"  greenrt/gevent per round: {', '.join(f'{r:.2f}' for r in ratios)}")
    print(f"SUMMARY: patch requests.get {a.callers} callers greenrt/gevent = "
          f"{ratio(med.get('greenrt'), med.get('gevent'))} (median of rounds; per-round median "
          f"{statistics.median(ratios) if ratios else float('nan'):.2f}, range "
          f"{min(ratios, default=float('nan')):.2f}-{max(ratios, default=float('nan')):.2f}; "
          f"target >= 1.0), greenrt/threads = {ratio(med.get('greenrt'), med.get('threads'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
