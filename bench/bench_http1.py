"""HTTP/1.1 hello-world benchmark: greenrt's server against uvicorn (httptools +
uvloop), granian (Rust), gevent.pywsgi, an asyncio+h11 server and a trio+h11 server,
all driven by ``wrk -t2 -c64``.

Each server runs in its own process on loopback and answers ``GET /`` with a 13-byte
``text/plain`` body and keep-alive. ``wrk`` (same flags for every peer) reports
requests per second and the latency distribution; we print req/s, p50 and p99 and the
ratio of each peer's req/s to greenrt's (issue 20's target: greenrt >= 1.0x uvicorn, p99 no worse;
with a lower p99), plus each server's CPU time per request (user + system from
/proc over the measured run), which is less sensitive to a busy machine than req/s. TCP_NODELAY is on for every server (gevent.pywsgi needs it set
explicitly; without it delayed ACKs cap it near 1.4k req/s).

Servers:

* greenrt         ``protocols.http.serve`` with a handler returning ``Response``
* gevent.pywsgi   ``WSGIServer`` with a WSGI hello app (TCP_NODELAY set per connection)
* asyncio+h11     ``asyncio.start_server`` + one ``h11.Connection`` per connection
* trio+h11        ``trio.serve_tcp`` + one ``h11.Connection`` per connection
* uvicorn         an ASGI hello app, ``--http httptools --loop uvloop``, one process,
                  access log off (the server most Python users pick for speed)
* granian         the same ASGI app on granian (Rust: the ceiling), one worker
                  (``--interface asgi --workers 1``; CPU is summed over its processes)

uvicorn and granian run only if installed (``pip install uvicorn uvloop httptools
granian``); a peer that is not importable is reported and left out.

Then (unless ``--no-profile``) a cProfile of the greenrt server under the same load
prints the top functions by own time.

The table shows each peer's best round (by req/s) and, because a 3 s p99 on a shared
machine is noisy, also the median p99 over all rounds ("p99 med").

Run: ``.venv/bin/python bench/bench_http1.py`` (about 55 s). Options: ``--seconds``
per measurement, ``--rounds`` (rows interleaved per round, best round kept),
``--peers greenrt,asyncio``, ``--connections``, ``--threads``, ``--no-profile``
(``BENCH_PROFILE_LINES=40`` prints more profile lines).
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
PEERS = ["greenrt", "greenrt-py", "uvicorn", "granian", "gevent", "asyncio", "trio"]
LABEL = {"greenrt": "greenrt", "greenrt-py": "greenrt (no llhttp)", "gevent": "gevent.pywsgi", "asyncio": "asyncio+h11",
         "trio": "trio+h11", "uvicorn": "uvicorn", "granian": "granian"}
#: the module each optional peer needs (left out of a run when it does not import)
NEEDS = {"uvicorn": ("uvicorn", "uvloop", "httptools"), "granian": ("granian",),
         "gevent": ("gevent",), "trio": ("trio",)}
BODY = b"Hello, World!"


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

    if profile:
        import cProfile
        import pstats
        import signal

        prof = cProfile.Profile()

        def stop(*a):
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(int(os.environ.get("BENCH_PROFILE_LINES", "18")))
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


def serve_granian(profile: bool) -> None:
    port = _free_port()
    _ready(port)
    exe = os.path.join(os.path.dirname(sys.executable), "granian")
    os.execv(exe, [exe, "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
                   "--workers", "1", "--no-ws", "--log-level", "warning",
                   "--working-dir", HERE, "bench_http1:asgi_app"])


def serve_greenrt_py(profile: bool) -> None:
    """greenrt with its pure-Python head parsers only (llhttp off): the fallback."""
    sys.path.insert(0, ROOT)
    from greenrt.protocols.http1 import H1Connection

    H1Connection._llhttp_heads = False
    serve_greenrt(profile)


SERVERS = {"greenrt": serve_greenrt, "greenrt-py": serve_greenrt_py, "gevent": serve_gevent, "asyncio": serve_asyncio,
           "trio": serve_trio, "uvicorn": serve_uvicorn, "granian": serve_granian}


def available(name: str) -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in NEEDS.get(name, ()))


def _ready(port: int) -> None:
    print(f"PORT {port}", flush=True)


# -- driver ------------------------------------------------------------------------------

def start_server(name: str, profile: bool = False) -> tuple[subprocess.Popen, int]:
    args = [sys.executable, os.path.abspath(__file__), "--serve", name]
    if profile:
        args.append("--profile")
    p = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    line = p.stdout.readline()
    if not line.startswith("PORT "):
        p.kill()
        raise RuntimeError(f"{name} server did not start: {line!r}")
    port = int(line.split()[1])
    for _ in range(200):  # uvicorn and granian print the port before they listen
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


def bench(a) -> dict:
    peers = []
    for name in a.peers.split(","):
        if available(name):
            peers.append(name)
        else:
            print(f"{LABEL[name]}: not installed, left out ({', '.join(NEEDS[name])})")
    best: dict[str, dict] = {}
    p99s: dict[str, list[float]] = {name: [] for name in peers}
    for rnd in range(a.rounds):
        for name in peers:
            p, port = start_server(name)
            try:
                run_wrk(port, 1, a.threads, a.connections)  # warm-up
                cpu0 = cpu_seconds(p.pid)
                r = run_wrk(port, a.seconds, a.threads, a.connections)
                r["cpu_us"] = (cpu_seconds(p.pid) - cpu0) * 1e6 / max(1.0, r["requests"])
            finally:
                stop(p)
            print(f"round {rnd + 1} {LABEL[name]:14s} {r['rps']:9.0f} req/s  p50 {r['p50']:7.2f} ms"
                  f"  p99 {r['p99']:7.2f} ms  {r['cpu_us']:6.1f} us server CPU/req {r['errors']}",
                  flush=True)
            p99s[name].append(r["p99"])
            if name not in best or r["rps"] > best[name]["rps"]:
                best[name] = r
    for name in peers:
        best[name]["p99_med"] = statistics.median(p99s[name])
    g = best.get("greenrt")
    print()
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
                print(f"SUMMARY: http1 hello wrk -t{a.threads} -c{a.connections}: greenrt/"
                      f"{LABEL[name]} = {g['rps'] / best[name]['rps']:.2f}x req/s, p99 "
                      f"{g['p99']:.2f} vs {best[name]['p99']:.2f} ms (median over rounds "
                      f"{g['p99_med']:.2f} vs {best[name]['p99_med']:.2f} ms)")
    return best


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
    a = ap.parse_args()
    if a.serve:
        SERVERS[a.serve](a.profile)
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    t0 = time.time()
    bench(a)
    if not a.no_profile:
        profile(a)
    print(f"\n(total {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
