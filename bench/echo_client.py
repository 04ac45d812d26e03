"""External load client for bench_echo.py: N connections doing 64-byte round trips.

A deliberately small, fast client (raw epoll, no framework) so it is the same for
every server under test and not the bottleneck. Each connection keeps exactly one
message in flight: send ``size`` bytes, wait until ``size`` bytes came back, repeat.

    python bench/echo_client.py PORT [--conns 50] [--size 64] [--warmup 1] [--seconds 4]

Prints one JSON object: round trips counted after the warm-up, elapsed seconds,
round trips per second, the per-connection minimum (to spot starvation), and the
client's own CPU time over the measured window as a share of one core (near 1.0
means the client, not the server, limits the rate).
"""

from __future__ import annotations

import argparse
import json
import resource
import select
import socket
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--seconds", type=float, default=4.0)
    a = ap.parse_args()

    msg = b"x" * a.size
    ep = select.epoll()
    socks = {}
    pending = {}
    counts = {}
    for _ in range(a.conns):
        s = socket.create_connection((a.host, a.port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        fd = s.fileno()
        socks[fd] = s
        counts[fd] = 0
        ep.register(fd, select.EPOLLIN)
    for fd, s in socks.items():
        s.send(msg)
        pending[fd] = a.size

    size = a.size
    t0 = time.perf_counter()
    t_start = t0 + a.warmup
    t_end = t_start + a.seconds
    measuring = False
    total = 0
    everything = 0
    poll = ep.poll
    while True:
        for fd, _ev in poll(1.0):
            s = socks[fd]
            try:
                d = s.recv(65536)
            except BlockingIOError:
                continue
            if not d:
                raise SystemExit(f"server closed connection {fd}")
            left = pending[fd] - len(d)
            if left <= 0:
                everything += 1
                if measuring:
                    total += 1
                    counts[fd] += 1
                s.send(msg)
                left = size
            pending[fd] = left
        now = time.perf_counter()
        if not measuring and now >= t_start:
            measuring = True
            t_start = now
            ru0 = resource.getrusage(resource.RUSAGE_SELF)
        elif measuring and now >= t_end:
            break
    elapsed = time.perf_counter() - t_start
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    for s in socks.values():
        s.close()
    print(json.dumps({"round_trips": total, "seconds": elapsed, "rps": total / elapsed,
                      "min_per_conn": min(counts.values()), "conns": a.conns, "size": size,
                      "all_round_trips": everything,
                      # near 1.0: the client, not the server, limits the rate
                      "client_cpu_share": client_cpu / elapsed}))


if __name__ == "__main__":
    main()
