"""WSGI benchmark: a plain WSGI hello app on greenrt's WSGI server and on greenrt's
gunicorn worker against gunicorn ``-k gevent``, gunicorn ``-k gthread`` and granian
``--interface wsgi``, one worker each, all driven by ``wrk -t2 -c64``.

Every server runs the same application (``app`` below): ``GET /`` answers a 13-byte
``text/plain`` body, ``GET /16k`` a 16 KB one, both with ``Content-Length`` and
keep-alive (the hello app most WSGI tutorials show). One server process (or one
gunicorn arbiter with one worker) per peer, started fresh for each round; ``wrk``
(same flags for every peer) measures hello-world, then the 16 KB body, after a
1 s warm-up. For each we print req/s, p50 and p99 latency and the server's CPU time
per request (user + system from ``/proc/<pid>/stat`` over the measured run, summed
over the server's process tree: the gunicorn arbiter and granian's main process are
included, they idle), and the ratio of each peer's req/s to gunicorn ``-k gevent``'s
(issue 20's goal: greenrt >= 2x per worker) and to granian's (the Rust ceiling).

Peers:

* greenrt           ``protocols.http.serve(WSGIAdapter(app))`` in one process
* greenrt-gunicorn  ``gunicorn -w 1 -k greenrt.protocols.http.gunicorn_worker.Worker``
* gunicorn-gevent   ``gunicorn -w 1 -k gevent --worker-connections 1000``
* gunicorn-gthread  ``gunicorn -w 1 -k gthread --threads 8 --worker-connections 1000``
* granian           ``granian --interface wsgi --workers 1`` (its defaults otherwise)

A peer whose package is not importable is reported and left out. The table shows each
peer's best round (by req/s) and the median p99 over rounds ("p99 med").

Per-request cost of greenrt's WSGI path (issue 20's profiling step):

* ``--callgrind``: the greenrt WSGI server under ``valgrind --tool=callgrind``
  answers exactly N keep-alive requests from a plain-socket client (4 connections,
  one request in flight on each), then shuts down; the instructions (Ir) of two runs,
  N1 and N2 requests, give ``(Ir(N2) - Ir(N1)) / (N2 - N1)`` instructions per request
  with start-up and shutdown cancelled out. Hello-world and 16 KB; the same for the
  server with a native handler returning ``Response`` (so the WSGI layer's own cost
  is the difference) and for gunicorn with greenrt's worker (``--max-requests N``,
  the worker process's Ir).
* ``--profile``: a cProfile of the greenrt WSGI server under wrk (top functions by own
  time, with call counts; ``BENCH_PROFILE_LINES=40`` prints more).

Run: ``.venv/bin/python bench/bench_wsgi.py`` (about 70 s with the defaults).
Options: ``--seconds`` per measurement, ``--rounds``, ``--peers greenrt,gevent``,
``--connections``, ``--threads``, ``--callgrind`` (adds about 3 min),
``--profile``, ``--no-wrk`` (only what the other options ask for). The machine is shared: compare ratios from one
run, not absolute numbers.
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
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from bench_http1 import _free_port, _ms, cpu_seconds, stop  # noqa: E402

PEERS = ["greenrt", "greenrt-gunicorn", "gevent", "gthread", "granian"]
LABEL = {"greenrt": "greenrt", "greenrt-gunicorn": "greenrt-gunicorn",
         "gevent": "gunicorn-gevent", "gthread": "gunicorn-gthread", "granian": "granian"}
#: the modules each peer needs (left out of a run when one does not import)
NEEDS = {"greenrt-gunicorn": ("gunicorn",), "gevent": ("gunicorn", "gevent"),
         "gthread": ("gunicorn",), "granian": ("granian",)}
CASES = [("hello", "/"), ("16k", "/16k")]
HELLO = b"Hello, World!"
BIG = b"x" * 16384
_H_HELLO = [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))]
_H_BIG = [("Content-Type", "text/plain"), ("Content-Length", str(len(BIG)))]
_STOP_AFTER = int(os.environ.get("BENCH_WSGI_STOP_AFTER", "0"))  # --callgrind servers


def app(environ, start_response):
    """The WSGI application every peer serves."""
    if environ["PATH_INFO"] == "/16k":
        start_response("200 OK", _H_BIG)
        return [BIG]
    start_response("200 OK", _H_HELLO)
    return [HELLO]


# -- servers -----------------------------------------------------------------------------

def serve_greenrt(port: int, profile: bool = False) -> None:
    """``--serve greenrt``: greenrt's HTTP server with the WSGI adapter (prints PORT)."""
    sys.path.insert(0, ROOT)
    import greenrt
    from greenrt.protocols.http import WSGIAdapter, serve

    wsgi_app = app
    if _STOP_AFTER:
        served = [0]
        server = []

        def wsgi_app(environ, start_response):  # noqa: F811 - counting wrapper
            served[0] += 1
            if served[0] == _STOP_AFTER:
                server[0].shutdown()  # graceful: this response still goes out
            return app(environ, start_response)

    def ready(srv):
        if _STOP_AFTER:
            server.append(srv)
        print(f"PORT {srv.addresses[0][1]}", flush=True)

    handler = WSGIAdapter(wsgi_app)
    if os.environ.get("BENCH_WSGI_NATIVE"):  # --callgrind's floor: no WSGI at all
        from greenrt.protocols.http import Response

        def handler(req):  # noqa: F811 - the same answers as a native handler
            environ = {"PATH_INFO": req.path}
            out = []
            body = wsgi_app(environ, lambda status, headers: out.append(headers))[0]
            return Response(200, out[0], body)

    def main():
        serve(handler, "127.0.0.1", port, on_ready=ready)

    if profile:
        import cProfile
        import pstats
        import signal

        prof = cProfile.Profile()

        def dump(*a):
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(
                int(os.environ.get("BENCH_PROFILE_LINES", "25")))
            sys.stdout.flush()
            os._exit(0)

        signal.signal(signal.SIGUSR1, dump)
        prof.enable()
    greenrt.run(main)


def _gunicorn(worker: str, port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "-w", "1", "-k", worker, "-b", f"127.0.0.1:{port}",
            "--log-level", "warning", "--chdir", HERE, *extra, "bench_wsgi:app"]


def command(name: str, port: int, profile: bool = False, extra: tuple = ()) -> list[str]:
    if name == "greenrt":
        return [sys.executable, os.path.abspath(__file__), "--serve", str(port),
                *(["--profile"] if profile else [])]
    if name == "greenrt-gunicorn":
        return _gunicorn("greenrt.protocols.http.gunicorn_worker.Worker", port, *extra)
    if name == "gevent":
        return _gunicorn("gevent", port, "--worker-connections", "1000")
    if name == "gthread":
        return _gunicorn("gthread", port, "--threads", "8", "--worker-connections", "1000")
    if name == "granian":
        exe = os.path.join(os.path.dirname(sys.executable), "granian")
        return [exe, "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port),
                "--workers", "1", "--log-level", "warning", "--working-dir", HERE,
                "bench_wsgi:app"]
    raise ValueError(name)


def available(name: str) -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in NEEDS.get(name, ()))


def start(name: str, cmd_prefix: tuple[str, ...] = (), env: dict | None = None,
          timeout: float = 30, profile: bool = False,
          extra: tuple = ()) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    e = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
    e.update(env or {})
    p = subprocess.Popen([*cmd_prefix, *command(name, port, profile, extra)], cwd=ROOT, env=e,
                         stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p, port
        except OSError:
            if p.poll() is not None:
                raise RuntimeError(f"{name} server exited ({p.returncode})") from None
            if time.monotonic() > deadline:
                stop(p)
                raise RuntimeError(f"{name} server did not listen within {timeout} s") from None
            time.sleep(0.05)


# -- wrk rounds --------------------------------------------------------------------------

def bench(a) -> dict:
    asked = a.peers.split(",")
    peers = [name for name in asked if available(name)]
    for name in asked:
        if name not in peers:
            print(f"{LABEL[name]}: not installed, left out ({', '.join(NEEDS[name])})")
    best: dict[tuple[str, str], dict] = {}
    p99s: dict[tuple[str, str], list[float]] = {}
    for rnd in range(a.rounds):
        for name in peers:
            p, port = start(name)
            try:
                for case, path in CASES:
                    url = f"http://127.0.0.1:{port}{path}"
                    run_wrk_url(url, 1, a.threads, a.connections)  # warm-up
                    cpu0 = cpu_seconds(p.pid)
                    r = run_wrk_url(url, a.seconds, a.threads, a.connections)
                    r["cpu_us"] = (cpu_seconds(p.pid) - cpu0) * 1e6 / max(1.0, r["requests"])
                    print(f"round {rnd + 1} {case:5s} {LABEL[name]:16s} {r['rps']:9.0f} req/s"
                          f"  p50 {r['p50']:7.2f} ms  p99 {r['p99']:7.2f} ms"
                          f"  {r['cpu_us']:6.1f} us server CPU/req {r['errors']}", flush=True)
                    key = (case, name)
                    p99s.setdefault(key, []).append(r["p99"])
                    if key not in best or r["rps"] > best[key]["rps"]:
                        best[key] = r
            finally:
                stop(p)
    for key, r in best.items():
        r["p99_med"] = statistics.median(p99s[key])
    for case, _ in CASES:
        gev = best.get((case, "gevent"))
        gran = best.get((case, "granian"))
        print(f"\n{case} (wrk -t{a.threads} -c{a.connections}, best of {a.rounds} rounds)")
        print(f"{'server':17s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'p99 med':>8s}"
              f" {'CPU us/req':>11s} {'x gevent':>9s} {'x granian':>10s}")
        for name in peers:
            r = best[(case, name)]
            xg = f"{r['rps'] / gev['rps']:.2f}x" if gev else "-"
            xr = f"{r['rps'] / gran['rps']:.2f}x" if gran else "-"
            print(f"{LABEL[name]:17s} {r['rps']:9.0f} {r['p50']:8.2f} {r['p99']:8.2f}"
                  f" {r['p99_med']:8.2f} {r['cpu_us']:11.1f} {xg:>9s} {xr:>10s}")
        for name in ("greenrt", "greenrt-gunicorn"):
            r = best.get((case, name))
            if r is None:
                continue
            parts = []
            for ref in ("gevent", "gthread", "granian"):
                o = best.get((case, ref))
                if o:
                    parts.append(f"x{LABEL[ref]} {r['rps'] / o['rps']:.2f} req/s, "
                                 f"{o['cpu_us'] / r['cpu_us']:.2f} CPU/req")
            goal = ""
            if gev:
                goal = " (goal >= 2x gevent: " + (
                    "met)" if r["rps"] >= 2 * gev["rps"] else "not met)")
            print(f"SUMMARY: wsgi {case} wrk -t{a.threads} -c{a.connections}: {LABEL[name]} "
                  f"{r['rps']:.0f} req/s, {r['cpu_us']:.1f} us CPU/req; " + "; ".join(parts)
                  + goal)
    return best


def run_wrk_url(url: str, seconds: float, threads: int, conns: int) -> dict:
    """One ``wrk --latency`` run on ``url``: req/s, p50/p99 (ms), requests, errors."""
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{max(1, int(seconds))}s",
                          "--latency", url], capture_output=True, text=True,
                         timeout=seconds + 60).stdout
    found = {k: re.search(rx, out) for k, rx in (
        ("rps", r"Requests/sec:\s+([\d.]+)"), ("requests", r"(\d+) requests in"),
        ("p50", r"\s50%\s+(\S+)"), ("p99", r"\s99%\s+(\S+)"))}
    if not all(found.values()):
        raise RuntimeError(f"wrk output not understood: {out!r}")
    errors = re.search(r"Socket errors:.*|Non-2xx.*", out)
    return {"rps": float(found["rps"].group(1)), "requests": float(found["requests"].group(1)),
            "p50": _ms(found["p50"].group(1)), "p99": _ms(found["p99"].group(1)),
            "errors": errors.group(0) if errors else ""}


# -- instructions per request (callgrind) ----------------------------------------------

def _client(port: int, path: str, n: int, conns: int = 4) -> None:
    """Send ``n`` GET requests over ``conns`` keep-alive connections, one in flight on
    each, reading each response completely (by its Content-Length)."""
    import selectors

    req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append(s)
    sent = 0
    bufs = {}
    for s in socks:
        if sent < n:
            s.sendall(req)
            sent += 1
            bufs[s] = b""
            sel.register(s, selectors.EVENT_READ)
    done = 0
    while done < n:
        for key, _ in sel.select(60):
            s = key.fileobj
            data = s.recv(1 << 20)
            if not data:
                raise RuntimeError("server closed a connection early")
            buf = bufs[s] + data
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                bufs[s] = buf
                continue
            m = re.search(rb"(?i)content-length: *(\d+)", buf[:end])
            total = end + 4 + int(m.group(1))
            if len(buf) < total:
                bufs[s] = buf
                continue
            if len(buf) > total:
                raise RuntimeError("unexpected bytes after a response")
            bufs[s] = b""
            done += 1
            if sent < n:
                s.sendall(req)
                sent += 1
            else:
                sel.unregister(s)
    for s in socks:
        s.close()


def _ir_of_run(what: str, path: str, n: int) -> int:
    """Instructions of one server run answering ``n`` requests. ``what``: ``WSGI``
    (greenrt's server, shut down by the app after ``n``), ``native handler`` (the
    same server, a handler returning ``Response``), ``gunicorn worker`` (gunicorn
    with greenrt's worker and ``--max-requests n``: the worker's own Ir)."""
    env = {"BENCH_WSGI_STOP_AFTER": str(n)}
    if what == "native handler":
        env["BENCH_WSGI_NATIVE"] = "1"
    name = "greenrt-gunicorn" if what == "gunicorn worker" else "greenrt"
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "cg.%p")
        p, port = start(name, ("valgrind", "-q", "--tool=callgrind",
                               f"--callgrind-out-file={out}"), env=env, timeout=300,
                        extra=("--max-requests", str(n)) if name != "greenrt" else ())
        try:
            _client(port, path, n)
            if name == "greenrt":
                p.wait(300)
            else:  # the worker retires after n requests (its profile is written then)
                deadline = time.monotonic() + 300
                while not os.listdir(d) and time.monotonic() < deadline:
                    time.sleep(0.2)
        finally:
            if p.poll() is None:
                stop(p)
        totals = {}
        for f in os.listdir(d):
            with open(os.path.join(d, f)) as fh:
                for line in fh:
                    if line.startswith(("summary:", "totals:")):
                        totals[int(f.rsplit(".", 1)[1])] = int(line.split()[1])
                        break
    totals.pop(p.pid, None)  # gunicorn's arbiter
    if not totals:
        raise RuntimeError("no callgrind totals")
    return max(totals.values())  # the worker that served (a respawned one idled)


def callgrind(n1: int, n2: int) -> dict[str, float]:
    """Instructions per request of the greenrt WSGI server, of the same server with a
    native handler returning ``Response`` (the floor the WSGI layer adds to) and of
    greenrt's gunicorn worker."""
    out = {}
    print(f"\ncallgrind: instructions per request, (Ir({n2}) - Ir({n1})) / {n2 - n1}, "
          "4 keep-alive connections")
    for case, path in CASES:
        for what in ("WSGI", "native handler", "gunicorn worker"):
            a, b = _ir_of_run(what, path, n1), _ir_of_run(what, path, n2)
            out[case, what] = (b - a) / (n2 - n1)
            print(f"  {case:5s} {what:15s} Ir({n1}) {a:,}  Ir({n2}) {b:,}  -> "
                  f"{out[case, what]:,.0f} Ir/request", flush=True)
        w, f, g = (out[case, k] for k in ("WSGI", "native handler", "gunicorn worker"))
        print(f"SUMMARY: wsgi {case} greenrt WSGI server: {w:,.0f} instructions per request "
              f"(callgrind, {n1} vs {n2} requests); the same server with a native handler "
              f"{f:,.0f}: the WSGI layer costs {w - f:,.0f}; greenrt's gunicorn worker {g:,.0f}")
    return out


# -- cProfile ------------------------------------------------------------------------------

def profile(a) -> None:
    import signal

    for case, path in CASES[:1]:
        p, port = start("greenrt", profile=True)
        try:
            run_wrk_url(f"http://127.0.0.1:{port}{path}", 3, a.threads, a.connections)
            p.send_signal(signal.SIGUSR1)
            out, _ = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                stop(p)
        print(f"\ncProfile of the greenrt WSGI server under wrk, {case} (by own time):")
        lines = out.splitlines()
        i = next((i for i, s in enumerate(lines) if "ncalls" in s), 0)
        n = int(os.environ.get("BENCH_PROFILE_LINES", "25"))
        print("\n".join(lines[max(0, i - 3):i + 1 + n]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--callgrind", action="store_true")
    ap.add_argument("--no-wrk", action="store_true", help="skip the wrk rounds")
    ap.add_argument("--requests", default="2000,4000",
                    help="the two request counts of --callgrind (N1,N2)")
    a = ap.parse_args()
    if a.serve is not None:
        serve_greenrt(a.serve, a.profile)
        return
    t0 = time.time()
    n1, n2 = (int(x) for x in a.requests.split(","))
    if not a.no_wrk:
        if shutil.which("wrk") is None:
            sys.exit("wrk is not installed (apt-get install wrk)")
        bench(a)
    if a.callgrind:
        if shutil.which("valgrind") is None:
            sys.exit("valgrind is not installed")
        callgrind(n1, n2)
    if a.profile:
        profile(a)
    print(f"\n(total {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
