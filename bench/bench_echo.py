"""TCP echo benchmark: greenrt against gevent, asyncio (default loop, uvloop) and trio.

Each server runs in its own process on loopback; the same external client process
(``bench/echo_client.py``: raw epoll, 50 connections, one 64-byte message in flight
per connection) drives every one of them in turn, so the only thing that changes
between rows is the server. Reported: round trips per second (higher is better) and
the ratio to uvloop's streams API (the issue's target is greenrt >= 1.0x uvloop).

Servers (each the idiomatic streams-level echo of its framework):

* greenrt   ``net.serve_tcp`` with ``recv(65536)`` / ``send_all``
* gevent    ``gevent.server.StreamServer`` with ``recv`` / ``sendall``
* asyncio   ``asyncio.start_server`` with ``reader.read`` / ``writer.write`` + ``drain``
* uvloop    the same asyncio code on ``uvloop``
* trio      ``trio.serve_tcp`` with ``receive_some`` / ``send_all``

Also shown: the server's CPU time (user + system, from /proc) per round trip over
the whole client run, which is less sensitive than throughput to a busy machine, and
the client's CPU share of one core (near 100%: the client limits the rate, and the
throughput ratios say little; then compare the CPU column).

Then a short cProfile of the greenrt server under the same load shows where its time
goes (top functions by own time).

Run: ``.venv/bin/python bench/bench_echo.py`` (about 55 s). Options: ``--seconds``,
``--warmup``, ``--conns``, ``--size``, ``--rounds`` (rows are interleaved per round;
medians are reported, and the median of the per-round greenrt/uvloop ratio), ``--peers greenrt,uvloop``, ``--no-profile``,
``--profile-only``. The machine is shared: compare ratios from one run, not
absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import _common as C  # noqa: E402

PEERS = ["greenrt", "gevent", "asyncio", "uvloop", "trio"]


# -- servers (run with: bench_echo.py --serve NAME) ---------------------------------


def serve_greenrt(ready, stop_after: float | None, profile: bool) -> None:
    sys.path.insert(0, ROOT)
    import greenrt
    from greenrt import net

    def handler(s):
        recv = s.recv
        send_all = s.send_all
        while True:
            d = recv(65536)
            if not d:
                return
            send_all(d)

    def main():
        servers = []

        def on_ready(server):
            servers.append(server)
            ready(server.addresses[0][1])

        with greenrt.region() as r:
            r.spawn(lambda: net.serve_tcp(handler, "127.0.0.1", 0, on_ready=on_ready,
                                          backlog=512))
            if stop_after is not None:
                greenrt.sleep(stop_after)
                servers[0].shutdown()

    if profile:
        import cProfile
        import pstats

        pr = cProfile.Profile()
        pr.enable()
        greenrt.run(main)
        pr.disable()
        st = pstats.Stats(pr, stream=sys.stderr)
        st.sort_stats("tottime").print_stats(22)
    else:
        greenrt.run(main)


def serve_gevent(ready, stop_after, profile) -> None:
    from gevent.server import StreamServer

    def handler(sock, addr):
        import socket as s_

        sock.setsockopt(s_.IPPROTO_TCP, s_.TCP_NODELAY, 1)
        try:
            while True:
                d = sock.recv(65536)
                if not d:
                    return
                sock.sendall(d)
        except ConnectionError:
            pass

    server = StreamServer(("127.0.0.1", 0), handler, backlog=512)
    server.start()
    ready(server.server_port)
    server.serve_forever()


def _asyncio_main(ready):
    import asyncio

    async def handle(reader, writer):
        try:
            while True:
                d = await reader.read(65536)
                if not d:
                    break
                writer.write(d)
                await writer.drain()
        except ConnectionError:
            pass  # the load client closes with replies in flight
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=512)
        ready(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    return main


def serve_asyncio(ready, stop_after, profile) -> None:
    import asyncio

    asyncio.run(_asyncio_main(ready)())


def serve_uvloop(ready, stop_after, profile) -> None:
    import uvloop

    uvloop.run(_asyncio_main(ready)())


def serve_trio(ready, stop_after, profile) -> None:
    import trio

    async def handler(stream):
        try:
            while True:
                d = await stream.receive_some(65536)
                if not d:
                    return
                await stream.send_all(d)
        except trio.BrokenResourceError:
            pass

    async def main():
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1", backlog=512)
        ready(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(handler, listeners)

    trio.run(main)


SERVERS = {"greenrt": serve_greenrt, "gevent": serve_gevent, "asyncio": serve_asyncio,
           "uvloop": serve_uvloop, "trio": serve_trio}


def _ready(port: int) -> None:
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()


# -- the driver ------------------------------------------------------------------


def start_server(name: str, *extra: str) -> tuple[subprocess.Popen, int]:
    p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", name, *extra],
                         stdout=subprocess.PIPE, text=True, cwd=ROOT)
    line = p.stdout.readline()
    if not line.startswith("PORT "):
        p.kill()
        raise RuntimeError(f"{name} server did not start: {line!r}")
    return p, int(line.split()[1])


def run_client(port: int, a) -> dict:
    out = subprocess.run([sys.executable, os.path.join(HERE, "echo_client.py"), str(port),
                          "--conns", str(a.conns), "--size", str(a.size), "--warmup",
                          str(a.warmup), "--seconds", str(a.seconds)],
                         capture_output=True, text=True, check=True, timeout=a.seconds + 60)
    return json.loads(out.stdout)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(p: subprocess.Popen) -> None:
    p.terminate()
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def bench(a) -> None:
    peers = a.peers.split(",")
    runs: dict[str, list[dict]] = {name: [] for name in peers}
    for rnd in range(a.rounds):
        for name in peers:
            p, port = start_server(name)
            try:
                cpu0 = cpu_seconds(p.pid)
                res = run_client(port, a)
                res["cpu_us"] = (cpu_seconds(p.pid) - cpu0) * 1e6 / max(1, res["all_round_trips"])
            finally:
                stop(p)
            runs[name].append(res)
            print(f"  round {rnd + 1} {name:8s} {res['rps']:>10,.0f} rt/s "
                  f"{res['cpu_us']:6.2f} us server CPU/rt (min/conn {res['min_per_conn']}, "
                  f"client CPU {res.get('client_cpu_share', 0):.0%} of a core)",
                  flush=True)
    # Medians over the rounds (rows are interleaved, so a busy spell on the shared
    # machine hits every server), plus the median of the per-round greenrt/uvloop ratio.
    med = {name: {"rps": C.median([r["rps"] for r in rs]),
                  "cpu_us": C.median([r["cpu_us"] for r in rs])} for name, rs in runs.items()}
    base = med.get("uvloop")
    g = med.get("greenrt")
    print(f"\nTCP echo, {a.conns} connections x {a.size}-byte round trips, "
          f"{a.seconds}s after {a.warmup}s warm-up, median of {a.rounds} rounds:")
    print(f"{'server':10s} {'round trips/s':>14s} {'x uvloop':>9s} {'server CPU us/rt':>17s} "
          f"{'CPU x uvloop':>13s}")
    for name in peers:
        m = med[name]
        xu = f"{m['rps'] / base['rps']:.2f}" if base else "-"
        xc = f"{base['cpu_us'] / m['cpu_us']:.2f}" if base else "-"
        print(f"{name:10s} {m['rps']:>14,.0f} {xu:>9s} {m['cpu_us']:>17.2f} {xc:>13s}")
    if g and base:
        pairs = list(zip(runs["greenrt"], runs["uvloop"], strict=True))
        per_round = [gr["rps"] / ur["rps"] for gr, ur in pairs]
        cpu_round = [ur["cpu_us"] / gr["cpu_us"] for gr, ur in pairs]
        ratio = C.median(per_round)
        print(f"\ngreenrt / uvloop per round: throughput "
              f"{', '.join(f'{x:.2f}' for x in per_round)} (median {ratio:.2f}); "
              f"CPU efficiency {', '.join(f'{x:.2f}' for x in cpu_round)} "
              f"(median {C.median(cpu_round):.2f})")
        print(f"target greenrt >= 1.0x uvloop streams: {ratio:.2f}x "
              f"{'MET' if ratio >= 1.0 else 'NOT MET'}")


def profile(a) -> None:
    secs = max(2.0, a.seconds / 2)
    p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", "greenrt",
                          "--profile", "--stop-after", str(secs + a.warmup + 1.5)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    line = p.stdout.readline()
    port = int(line.split()[1])
    a2 = argparse.Namespace(**vars(a))
    a2.seconds = secs
    res = run_client(port, a2)
    _, err = p.communicate(timeout=60)
    print(f"\ncProfile of the greenrt server under the same load "
          f"({res['rps']:,.0f} rt/s with the profiler on), top functions by own time:")
    lines = err.splitlines()
    start = next((i for i, ln in enumerate(lines) if "ncalls" in ln), 0)
    print("\n".join(ln[:150] for ln in lines[start - 2 if start >= 2 else 0:]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--serve", choices=sorted(SERVERS))
    ap.add_argument("--stop-after", type=float)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--profile-only", action="store_true")
    a = ap.parse_args()
    if a.serve:
        SERVERS[a.serve](_ready, a.stop_after, a.profile)
        return
    t0 = time.time()
    if not a.profile_only:
        bench(a)
    if not a.no_profile:
        profile(a)
    print(f"\n(total {time.time() - t0:.0f}s)")


if __name__ == "__main__":
    main()
