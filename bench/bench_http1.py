"""HTTP/1.1 benchmark: greenrt's server against uvicorn (httptools + uvloop), granian
(Rust), hypercorn (h11 + uvloop), gevent.pywsgi, an asyncio+h11 server and a trio+h11
server, all driven by ``wrk -t2 -c64``, on two cases: hello-world (a 13-byte body) and
a 16 KB body (``--cases hello,16k``).

Each server runs in its own process on loopback and answers ``GET /`` with a
``text/plain`` body and keep-alive. ``wrk`` (same flags for every peer) reports
requests per second and the latency distribution; we print req/s, p50 and p99 and the
ratio of greenrt's req/s to each peer's (issue 20's target: greenrt >= 1.0x uvicorn on
both cases, p99 no worse), plus each server's CPU time per request (user + system from
/proc over the measured run), which is less sensitive to a busy machine than req/s.
TCP_NODELAY is on for every server (gevent.pywsgi needs it set explicitly; without it
delayed ACKs cap it near 1.4k req/s).

Servers:

* greenrt         ``protocols.http.serve`` with a handler returning ``Response``
* gevent.pywsgi   ``WSGIServer`` with a WSGI hello app (TCP_NODELAY set per connection)
* asyncio+h11     ``asyncio.start_server`` + one ``h11.Connection`` per connection
* trio+h11        ``trio.serve_tcp`` + one ``h11.Connection`` per connection
* uvicorn         an ASGI hello app, ``--http httptools --loop uvloop``, one process,
                  access log off (the server most Python users pick for speed)
* granian         the same ASGI app on granian (Rust: the ceiling), one worker
                  (``--interface asgi --workers 1``; CPU is summed over its processes)
* hypercorn       the same ASGI app on hypercorn (h11) under uvloop, one process

uvicorn, granian and hypercorn run only if installed (``pip install uvicorn uvloop
httptools granian hypercorn``); a peer that is not importable is reported and left
out.

Then (unless ``--no-profile``) a cProfile of the greenrt server under the same load
prints the top functions by own time (``BENCH_PROFILE_SORT=ncalls`` sorts by calls).

The table shows each peer's best round (by req/s) and, because a 3 s p99 on a shared
machine is noisy, also the median p99 over all rounds ("p99 med").

Cost per request of the greenrt server alone (no wrk; ``h2load --h1`` drives an exact
number of keep-alive requests over ``--cg-connections`` connections, 8 by default):

* ``--callgrind``: callgrind instructions (Ir) per request, from two runs of
  ``--cg-requests 2000,6000`` requests: (Ir2 - Ir1) / 4000, so start-up cancels out.
* ``--strace``: syscalls per request (``strace -c -f``), by the same difference.

Run: ``.venv/bin/python bench/bench_http1.py`` (about 2 minutes). Options:
``--seconds`` per measurement, ``--rounds`` (rows interleaved per round, best round
kept), ``--peers greenrt,asyncio``, ``--cases``, ``--connections``, ``--threads``,
``--no-profile`` (``BENCH_PROFILE_LINES=40`` prints more profile lines).
The machine is shared: compare ratios from one run, not absolute numbers.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEERS = ["greenrt", "uvicorn", "granian", "hypercorn", "gevent", "asyncio", "trio"]
LABEL = {"greenrt": "greenrt", "gevent": "gevent.pywsgi", "asyncio": "asyncio+h11",
         "trio": "trio+h11", "uvicorn": "uvicorn", "granian": "granian",
         "hypercorn": "hypercorn"}
#: the module each optional peer needs (left out of a run when it does not import)
NEEDS = {"uvicorn": ("uvicorn", "uvloop", "httptools"), "granian": ("granian",),
         "gevent": ("gevent",), "trio": ("trio",), "hypercorn": ("hypercorn", "uvloop")}
#: the response body of every server: ``BENCH_HTTP1_BODY`` bytes (the driver sets it
#: per case: 13 for hello-world, 16384 for the 16 KB case), inherited by the server
#: processes (granian imports this module to find ``asgi_app``)
_SIZE = int(os.environ.get("BENCH_HTTP1_BODY", "13"))
BODY = b"Hello, World!" if _SIZE == 13 else (b"0123456789abcdef" * (_SIZE // 16 + 1))[:_SIZE]
CASES = {"hello": 13, "16k": 16384}


# -- servers (run with: bench_http1.py --serve NAME) -----------------------------------

def serve_greenrt(profile: bool) -> None:
    sys.path.insert(0, ROOT)
    import greenrt
    from greenrt.protocols.http import Response, serve

    headers = [("content-type", "text/plain")]

    def handler(req):
        return Response(200, headers, BODY)

    def main():
        serve(handler, "127.0.0.1", 0, on_ready=lambda s: _ready(s.addresses[0][1]))

    import signal

    # SIGUSR1 ends the process (os._exit: callgrind and strace still write their
    # totals); the profile run replaces it with its own handler
    signal.signal(signal.SIGUSR1, lambda *a: os._exit(0))
    if profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()

        def stop(*a):
            prof.disable()
            pstats.Stats(prof).sort_stats(os.environ.get("BENCH_PROFILE_SORT", "tottime")).print_stats(int(os.environ.get("BENCH_PROFILE_LINES", "18")))
            sys.stdout.flush()
            os._exit(0)

        signal.signal(signal.SIGUSR1, stop)
        prof.enable()
    greenrt.run(main)


def serve_gevent(profile: bool) -> None:
    from gevent import pywsgi

    class Handler(pywsgi.WSGIHandler):
        def handle(self):
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return super().handle()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(BODY)))])
        return [BODY]

    srv = pywsgi.WSGIServer(("127.0.0.1", 0), app, log=None, error_log=None,
                            handler_class=Handler)
    srv.init_socket()
    _ready(srv.server_port)
    srv.serve_forever()


def _h11_response(conn, h11):
    return (conn.send(h11.Response(status_code=200, headers=[
        ("content-type", "text/plain"), ("content-length", str(len(BODY)))]))
        + conn.send(h11.Data(data=BODY)) + conn.send(h11.EndOfMessage()))


def serve_asyncio(profile: bool) -> None:
    import asyncio

    import h11

    async def handle(reader, writer):
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                ev = conn.next_event()
                if ev is h11.NEED_DATA:
                    data = await reader.read(65536)
                    conn.receive_data(data)
                    continue
                t = type(ev)
                if t is h11.EndOfMessage:
                    writer.write(_h11_response(conn, h11))
                    await writer.drain()
                    if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                        break
                    conn.start_next_cycle()
                elif t is h11.ConnectionClosed:
                    break
        except (h11.ProtocolError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main():
        srv = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        _ready(srv.sockets[0].getsockname()[1])
        await srv.serve_forever()

    asyncio.run(main())


def serve_trio(profile: bool) -> None:
    import h11
    import trio

    async def handle(stream):
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                ev = conn.next_event()
                if ev is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                    continue
                t = type(ev)
                if t is h11.EndOfMessage:
                    await stream.send_all(_h11_response(conn, h11))
                    if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                        break
                    conn.start_next_cycle()
                elif t is h11.ConnectionClosed:
                    break
        except (h11.ProtocolError, trio.BrokenResourceError):
            pass
        finally:
            await stream.aclose()

    async def main():
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1", backlog=1024)
        _ready(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(handle, listeners)

    trio.run(main)


async def asgi_app(scope, receive, send):
    """The ASGI hello app for uvicorn and granian (same body and headers)."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"text/plain"), (b"content-length", b"%d" % len(BODY))]})
    await send({"type": "http.response.body", "body": BODY})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_uvicorn(profile: bool) -> None:
    import uvicorn

    port = _free_port()
    _ready(port)  # the driver waits until the port accepts
    uvicorn.run(asgi_app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                access_log=False, log_level="warning", backlog=1024)


def serve_hypercorn(profile: bool) -> None:
    import uvloop
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    port = _free_port()
    cfg = Config()
    cfg.bind = [f"127.0.0.1:{port}"]
    cfg.backlog = 1024
    cfg.accesslog = None
    cfg.loglevel = "WARNING"
    cfg.keep_alive_max_requests = 1 << 30  # the default (1000) closes every connection
    _ready(port)
    uvloop.run(serve(asgi_app, cfg))


def serve_granian(profile: bool) -> None:
    port = _free_port()
    _ready(port)
    exe = os.path.join(os.path.dirname(sys.executable), "granian")
    os.execv(exe, [exe, "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
                   "--workers", "1", "--no-ws", "--log-level", "warning",
                   "--working-dir", HERE, "bench_http1:asgi_app"])


SERVERS = {"greenrt": serve_greenrt, "gevent": serve_gevent, "asyncio": serve_asyncio,
           "trio": serve_trio, "uvicorn": serve_uvicorn, "granian": serve_granian,
           "hypercorn": serve_hypercorn}


def available(name: str) -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in NEEDS.get(name, ()))


def _ready(port: int) -> None:
    print(f"PORT {port}", flush=True)


# -- driver ------------------------------------------------------------------------------

def start_server(name: str, profile: bool = False, size: int = 13,
                 wrap: list[str] | None = None) -> tuple[subprocess.Popen, int]:
    """Start server ``name`` answering ``size``-byte bodies; ``wrap``: a command
    prefix (valgrind, strace) for the server process."""
    args = [sys.executable, os.path.abspath(__file__), "--serve", name]
    if profile:
        args.append("--profile")
    env = dict(os.environ, BENCH_HTTP1_BODY=str(size))
    p = subprocess.Popen((wrap or []) + args, stdout=subprocess.PIPE, text=True, cwd=ROOT,
                         env=env, stderr=subprocess.DEVNULL if wrap else None)
    line = p.stdout.readline()
    if not line.startswith("PORT "):
        p.kill()
        raise RuntimeError(f"{name} server did not start: {line!r}")
    port = int(line.split()[1])
    for _ in range(1200):  # uvicorn and granian print the port before they listen
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if p.poll() is not None:
                raise RuntimeError(f"{name} server exited ({p.returncode})") from None
            time.sleep(0.05)
    return p, port


def stop(p: subprocess.Popen) -> None:
    p.terminate()  # granian's main process stops its workers on SIGTERM
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(port: int, seconds: float, threads: int, conns: int) -> dict:
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{max(1, int(seconds))}s",
                          "--latency", f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = float(re.search(r"(\d+) requests in", out).group(1))
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    errors = re.search(r"Socket errors:.*|Non-2xx.*", out)
    return {"rps": rps, "p50": p50, "p99": p99, "requests": requests,
            "errors": errors.group(0) if errors else ""}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its live descendants (granian
    serves from worker processes), from Linux /proc."""
    stats = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(d)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    tree, todo = set(), [pid]
    while todo:
        p = todo.pop()
        tree.add(p)
        todo += [c for c, (ppid, _) in stats.items() if ppid == p and c not in tree]
    return sum(stats[p][1] for p in tree if p in stats) / os.sysconf("SC_CLK_TCK")


def bench_case(a, peers: list[str], case: str) -> dict:
    """All ``peers`` side by side on one case (``hello`` or ``16k``), rounds
    interleaved; prints the table and the ``SUMMARY:`` lines."""
    size = CASES[case]
    best: dict[str, dict] = {}
    p99s: dict[str, list[float]] = {name: [] for name in peers}
    for rnd in range(a.rounds):
        for name in peers:
            p, port = start_server(name, size=size)
            try:
                run_wrk(port, 1, a.threads, a.connections)  # warm-up
                cpu0 = cpu_seconds(p.pid)
                r = run_wrk(port, a.seconds, a.threads, a.connections)
                r["cpu_us"] = (cpu_seconds(p.pid) - cpu0) * 1e6 / max(1.0, r["requests"])
            finally:
                stop(p)
            print(f"{case} round {rnd + 1} {LABEL[name]:14s} {r['rps']:9.0f} req/s  p50 "
                  f"{r['p50']:7.2f} ms  p99 {r['p99']:7.2f} ms  {r['cpu_us']:6.1f} us server "
                  f"CPU/req {r['errors']}", flush=True)
            p99s[name].append(r["p99"])
            if name not in best or r["rps"] > best[name]["rps"]:
                best[name] = r
    for name in peers:
        best[name]["p99_med"] = statistics.median(p99s[name])
    g = best.get("greenrt")
    print(f"\n{case} ({size}-byte body), wrk -t{a.threads} -c{a.connections}, best of "
          f"{a.rounds} rounds:")
    print(f"{'server':14s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'p99 med':>8s}"
          f" {'greenrt/peer':>13s} {'CPU us/req':>11s}")
    for name in peers:
        r = best[name]
        ratio = f"{g['rps'] / r['rps']:.2f}x" if g else "-"
        print(f"{LABEL[name]:14s} {r['rps']:9.0f} {r['p50']:8.2f} {r['p99']:8.2f}"
              f" {r['p99_med']:8.2f} {ratio:>13s} {r['cpu_us']:11.1f}")
    if g:
        for name in peers:
            if name != "greenrt":
                r = best[name]
                print(f"SUMMARY: http1 {case} wrk -t{a.threads} -c{a.connections}: greenrt/"
                      f"{LABEL[name]} = {g['rps'] / r['rps']:.2f}x req/s, p99 "
                      f"{g['p99']:.2f} vs {r['p99']:.2f} ms (median over rounds "
                      f"{g['p99_med']:.2f} vs {r['p99_med']:.2f} ms), server CPU "
                      f"{g['cpu_us']:.1f} vs {r['cpu_us']:.1f} us/req")
    print()
    return best


def bench(a) -> dict:
    peers = []
    for name in a.peers.split(","):
        if available(name):
            peers.append(name)
        else:
            print(f"{LABEL[name]}: not installed, left out ({', '.join(NEEDS[name])})")
    return {case: bench_case(a, peers, case) for case in a.cases.split(",")}


def _drive(port: int, n: int, conns: int) -> None:
    """``n`` keep-alive GETs over ``conns`` connections (h2load in HTTP/1.1 mode)."""
    out = subprocess.run(["h2load", "--h1", "-n", str(n), "-c", str(conns),
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True,
                         timeout=900).stdout
    m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
    if m is None or int(m.group(1)) != n:
        raise RuntimeError(f"h2load did not complete {n} requests: {out[-400:]}")


def _measured(n: int, size: int, conns: int, wrap: list[str], name: str = "greenrt") -> None:
    import signal

    p, port = start_server(name, size=size, wrap=wrap)
    try:
        _drive(port, n, conns)
    finally:
        # valgrind runs the server in its own process; strace runs it as a child
        pid = p.pid
        if wrap[0] == "strace":
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                pid = int(f.read().split()[0])
        os.kill(pid, signal.SIGUSR1 if name == "greenrt" else signal.SIGINT)
        p.wait(120)


def ir_per_request(size: int, n1: int, n2: int, conns: int, name: str = "greenrt") -> float:
    """callgrind's instructions (Ir) of server ``name`` per request: two runs of
    ``n1`` and ``n2`` requests, (Ir2 - Ir1) / (n2 - n1), so start-up and the
    connection set-up cancel out (the main process only: granian's workers are not
    counted)."""
    import tempfile

    totals = []
    with tempfile.TemporaryDirectory() as d:
        for n in (n1, n2):
            out = os.path.join(d, f"cg.{n}")
            _measured(n, size, conns, ["valgrind", "--tool=callgrind",
                                       f"--callgrind-out-file={out}"], name)
            with open(out) as f:
                text = f.read()
            m = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
            totals.append(int(m.group(1)))
    return (totals[1] - totals[0]) / (n2 - n1)


def syscalls_per_request(size: int, n1: int, n2: int, conns: int) -> dict[str, float]:
    """``strace -c -f`` of the greenrt server: calls per request of each syscall,
    from two runs (difference / difference of request counts)."""
    import tempfile

    counts = []
    with tempfile.TemporaryDirectory() as d:
        for n in (n1, n2):
            out = os.path.join(d, f"st.{n}")
            _measured(n, size, conns, ["strace", "-c", "-f", "-o", out])
            c: dict[str, int] = {}
            with open(out) as f:
                for line in f:
                    parts = line.split()
                    if (len(parts) >= 5 and parts[0][0].isdigit() and parts[-1].isidentifier()
                            and parts[-1] != "total"):
                        c[parts[-1]] = int(parts[3])
            counts.append(c)
    names = set(counts[0]) | set(counts[1])
    per = {k: (counts[1].get(k, 0) - counts[0].get(k, 0)) / (n2 - n1) for k in names}
    return {k: v for k, v in sorted(per.items(), key=lambda kv: -kv[1]) if v >= 0.005}


def measure_cost(a) -> None:
    """``--callgrind`` / ``--strace``: instructions and syscalls per request."""
    for case in a.cases.split(","):
        size = CASES[case]
        for name in a.cg_peers.split(",") if a.callgrind else ():
            ir = ir_per_request(size, a.cg_requests[0], a.cg_requests[1], a.cg_connections,
                                name)
            print(f"SUMMARY: http1 {case} {LABEL[name]} server: {ir / 1000:.1f}k Ir/request "
                  f"(callgrind, {a.cg_requests[0]} vs {a.cg_requests[1]} requests over "
                  f"{a.cg_connections} keep-alive connections)", flush=True)
        if a.strace:
            per = syscalls_per_request(size, a.cg_requests[0], a.cg_requests[1],
                                       a.cg_connections)
            total = sum(per.values())
            detail = ", ".join(f"{k} {v:.2f}" for k, v in per.items())
            print(f"SUMMARY: http1 {case} greenrt server: {total:.2f} syscalls/request "
                  f"(strace -c -f, {a.cg_connections} connections): {detail}", flush=True)


def profile(a) -> None:
    p, port = start_server("greenrt", profile=True)
    try:
        run_wrk(port, 3, a.threads, a.connections)
        import signal

        p.send_signal(signal.SIGUSR1)
        out, _ = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            stop(p)
    print("\ncProfile of the greenrt server under wrk (top functions by own time):")
    lines = out.splitlines()
    start = next((i for i, s in enumerate(lines) if "ncalls" in s), 0)
    print("\n".join(lines[max(0, start - 2):start + 2 + int(os.environ.get("BENCH_PROFILE_LINES", "18"))]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--serve", choices=sorted(SERVERS))
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--cases", default="hello,16k", help="hello (13-byte body), 16k")
    ap.add_argument("--callgrind", action="store_true",
                    help="instructions per request of the greenrt server (h2load + valgrind)")
    ap.add_argument("--strace", action="store_true",
                    help="syscalls per request of the greenrt server (h2load + strace -c -f)")
    ap.add_argument("--cg-requests", type=lambda v: [int(x) for x in v.split(",")],
                    default=[2000, 6000], help="the two request counts of --callgrind/--strace")
    ap.add_argument("--cg-connections", type=int, default=8)
    ap.add_argument("--cg-peers", default="greenrt",
                    help="servers measured by --callgrind (greenrt,uvicorn: one process each)")
    a = ap.parse_args()
    if a.serve:
        SERVERS[a.serve](a.profile)
        return
    t0 = time.time()
    if a.callgrind or a.strace:
        measure_cost(a)
        print(f"\n(total {time.time() - t0:.0f} s)")
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    bench(a)
    if not a.no_profile:
        profile(a)
    print(f"\n(total {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
