"""HTTP/2 hello-world benchmark: greenrt's server against hypercorn (Python, h2),
granian (Rust, hyper) and nghttpd (C, nghttp2: the ceiling), all driven by
``h2load -n N -c 10 -m 10``, in cleartext with prior knowledge and over TLS (ALPN h2).

Each server runs in its own process on loopback, one process/worker each, and answers
``GET /`` with a 13-byte ``text/plain`` body (nghttpd serves a 13-byte file). h2load
(same flags for every peer) reports requests per second; its ``--log-file`` gives
every request's duration, from which we take p50 and p99. The server's CPU time per
request (user + system of the server process and its children, from /proc, over the
measured run) is less sensitive to a busy machine than req/s. Issue goal: greenrt
>= 2x hypercorn.

Servers:

* greenrt    ``protocols.http.serve`` (prior-knowledge h2c, or TLS + ALPN) with a
             handler returning ``Response``; HTTP/2 is ``protocols.http2.serve_connection``
* hypercorn  ``python -m hypercorn -w 1`` with an ASGI hello app
* granian    ``granian --interface asgi --http 2 --workers 1`` with the same app
* nghttpd    ``nghttpd`` serving a file (``--no-tls`` for cleartext)

Run: ``.venv/bin/python bench/bench_http2.py`` (about 1-3 min). Options: ``-n``
requests per measurement (default 100000), ``--rounds`` (best kept), ``--peers``,
``--modes h2c,tls``. The machine is shared: compare ratios from one run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEERS = ["greenrt", "hypercorn", "granian", "nghttpd"]
BODY = b"Hello, World!"

ASGI_APP = '''
async def app(scope, receive, send):
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            while True:
                m = await receive()
                if m["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"Hello, World!"})
'''


# -- the greenrt server (run as: bench_http2.py --serve-greenrt [cert key]) ---------------

def serve_greenrt(cert: str | None, key: str | None) -> None:
    sys.path.insert(0, ROOT)
    import greenrt
    from greenrt.protocols.http import Response, serve

    headers = [("content-type", "text/plain")]

    def handler(req):
        return Response(200, headers, BODY)

    ctx = None
    if cert:
        from greenrt.protocols import tls

        ctx = tls.server_context(certfile=cert, keyfile=key, alpn=["h2", "http/1.1"])

    def main():
        serve(handler, "127.0.0.1", 0, tls=ctx,
              on_ready=lambda s: print(f"PORT {s.addresses[0][1]}", flush=True))

    greenrt.run(main)


# -- driver ------------------------------------------------------------------------------

def free_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    import socket
    import time

    end = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"server did not start: {proc.args}") from None
            time.sleep(0.1)


def start(name: str, tls: bool, work: str) -> tuple[subprocess.Popen, int]:
    cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([work, ROOT]))
    if name == "greenrt":
        args = [sys.executable, os.path.abspath(__file__), "--serve-greenrt"]
        if tls:
            args += [cert, key]
        p = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
        line = p.stdout.readline()
        if not line.startswith("PORT "):
            p.kill()
            raise RuntimeError(f"greenrt server did not start: {line!r}")
        return p, int(line.split()[1])
    port = free_port()
    if name == "hypercorn":
        # -c: hypercorn's keep_alive_max_requests (default 1000) would GOAWAY every
        # connection after 1000 requests, and h2load does not reconnect
        args = [sys.executable, "-m", "hypercorn", "-w", "1", "--bind", f"127.0.0.1:{port}",
                "-c", os.path.join(work, "hypercorn.toml"), "--log-level", "error",
                "h2bench_app:app"]
        if tls:
            args += ["--certfile", cert, "--keyfile", key]
    elif name == "granian":
        exe = os.path.join(os.path.dirname(sys.executable), "granian")
        args = [exe, "--interface", "asgi", "--http", "2", "--workers", "1",
                "--host", "127.0.0.1", "--port", str(port), "--log-level", "error",
                "h2bench_app:app"]
        if tls:
            args += ["--ssl-certificate", cert, "--ssl-keyfile", key]
    elif name == "nghttpd":
        args = [shutil.which("nghttpd"), "-d", work, "-a", "127.0.0.1", str(port)]
        if tls:
            args += [key, cert]
        else:
            args.insert(1, "--no-tls")
    else:
        raise ValueError(name)
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         cwd=work, env=env)
    wait_port(port, p)
    return p, port


def stop(p: subprocess.Popen) -> None:
    p.terminate()
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its descendants so far (Linux /proc)."""
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    tck = os.sysconf("SC_CLK_TCK")
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(d)] = int(fields[1])
        cpu[int(d)] = (int(fields[11]) + int(fields[12])) / tck
    total = 0.0
    for p in cpu:
        q = p
        while q and q != pid:
            q = parent.get(q, 0)
        if q == pid:
            total += cpu[p]
    return total


def h2load(port: int, tls: bool, n: int, clients: int, streams: int, work: str) -> dict:
    log = os.path.join(work, "h2load.log")
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/hello.txt"
    out = subprocess.run(["h2load", "-n", str(n), "-c", str(clients), "-m", str(streams),
                          "--log-file", log, url],
                         capture_output=True, text=True, timeout=600).stdout
    m = re.search(r"finished in ([\d.]+)(s|ms), ([\d.]+) req/s", out)
    ok = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, "
                   r"(\d+) failed, (\d+) errored", out)
    if not m or not ok:
        raise RuntimeError(f"unexpected h2load output:\n{out}")
    durs = []
    with open(log) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                durs.append(int(parts[2]) / 1000.0)
    durs.sort()

    def p(q: float) -> float:
        return durs[min(len(durs) - 1, int(q * len(durs)))] if durs else float("nan")

    return {"rps": float(m.group(3)), "succeeded": int(ok.group(3)),
            "failed": int(ok.group(4)) + int(ok.group(5)), "p50": p(0.50), "p99": p(0.99)}


def make_pki(work: str) -> None:
    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    leaf.private_key_pem.write_to_path(os.path.join(work, "key.pem"))
    with open(os.path.join(work, "cert.pem"), "wb") as f:
        f.write(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    with open(os.path.join(work, "h2bench_app.py"), "w") as f:
        f.write(ASGI_APP)
    with open(os.path.join(work, "hello.txt"), "wb") as f:
        f.write(BODY)
    with open(os.path.join(work, "hypercorn.toml"), "w") as f:
        f.write("keep_alive_max_requests = 100000000\n")


def bench(a) -> None:
    peers = a.peers.split(",")
    modes = a.modes.split(",")
    results: dict[tuple[str, str], dict] = {}
    with tempfile.TemporaryDirectory() as work:
        make_pki(work)
        for mode in modes:
            tls = mode == "tls"
            for rnd in range(a.rounds):
                for name in peers:
                    try:
                        p, port = start(name, tls, work)
                    except (RuntimeError, TypeError) as e:
                        print(f"{mode} {name}: not run ({e})", flush=True)
                        continue
                    try:
                        h2load(port, tls, min(2000, a.n), a.clients, a.streams, work)  # warm-up
                        cpu0 = tree_cpu_seconds(p.pid)
                        r = h2load(port, tls, a.n, a.clients, a.streams, work)
                        r["cpu_us"] = ((tree_cpu_seconds(p.pid) - cpu0) * 1e6
                                       / max(1, r["succeeded"]))
                    except (RuntimeError, subprocess.TimeoutExpired) as e:
                        print(f"{mode} {name}: failed ({e})", flush=True)
                        continue
                    finally:
                        stop(p)
                    print(f"round {rnd + 1} {mode:4s} {name:10s} {r['rps']:9.0f} req/s  "
                          f"p50 {r['p50']:7.2f} ms  p99 {r['p99']:7.2f} ms  "
                          f"{r['cpu_us']:6.1f} us server CPU/req  "
                          f"{r['succeeded']} ok {r['failed']} failed", flush=True)
                    best = results.get((mode, name))
                    r.setdefault("p99s", []).append(r["p99"])
                    if best is None or r["rps"] > best["rps"]:
                        if best is not None:
                            r["p99s"] = best["p99s"] + [r["p99"]]
                        results[(mode, name)] = r
                    else:
                        best["p99s"].append(r["p99"])
    for mode in modes:
        g = results.get((mode, "greenrt"))
        print(f"\n{mode}: h2load -n {a.n} -c {a.clients} -m {a.streams} (best of {a.rounds})")
        print(f"  {'server':10s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'p99 med':>8s}"
              f" {'greenrt/peer':>13s} {'CPU us/req':>11s} {'failed':>7s}")
        for name in peers:
            r = results.get((mode, name))
            if r is None:
                print(f"  {name:10s} {'-':>9s}")
                continue
            ratio = f"{g['rps'] / r['rps']:.2f}x" if g else "-"
            print(f"  {name:10s} {r['rps']:9.0f} {r['p50']:8.2f} {r['p99']:8.2f}"
                  f" {statistics.median(r['p99s']):8.2f} {ratio:>13s} {r['cpu_us']:11.1f}"
                  f" {r['failed']:7d}")
        if g:
            for name in peers:
                r = results.get((mode, name))
                if name == "greenrt" or r is None:
                    continue
                print(f"SUMMARY: http2 {mode} h2load -n {a.n} -c {a.clients} -m {a.streams}: "
                      f"greenrt/{name} = {g['rps'] / r['rps']:.2f}x req/s, p99 "
                      f"{g['p99']:.2f} vs {r['p99']:.2f} ms, server CPU/req "
                      f"{g['cpu_us']:.1f} vs {r['cpu_us']:.1f} us "
                      f"({r['cpu_us'] / g['cpu_us']:.2f}x)"
                      + (f" [NOT COMPARABLE: {g['failed']} / {r['failed']} requests failed]"
                         if g["failed"] or r["failed"] else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--serve-greenrt", nargs="*", metavar="CERT_KEY")
    ap.add_argument("-n", type=int, default=100_000)
    ap.add_argument("--clients", "-c", type=int, default=10)
    ap.add_argument("--streams", "-m", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--modes", default="h2c,tls")
    a = ap.parse_args()
    if a.serve_greenrt is not None:
        cert, key = (a.serve_greenrt + [None, None])[:2]
        serve_greenrt(cert, key)
        return
    if shutil.which("h2load") is None:
        sys.exit("h2load is not installed (apt-get install nghttp2-client)")
    bench(a)


if __name__ == "__main__":
    main()
