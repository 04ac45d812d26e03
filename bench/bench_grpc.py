"""gRPC: our server and client vs grpcio (C core; sync and asyncio APIs).

Server side: the same grpcio client (``grpc.aio``, one process) drives each server —
ours (greenrt, one thread), grpcio's sync server (thread pool of 16) and ``grpc.aio``'s
server — with unary calls from 1 and 50 concurrent callers, and one bidirectional
stream (ping-pong messages). Each server runs in its own process; its CPU time over the
measurement (``/proc/PID/stat``) gives the server CPU per RPC.

Client side: our client (greenrt tasks) vs grpcio's sync client (threads) and its aio
client, each in a fresh process, against the same grpcio sync server.

Prints tables and ``SUMMARY:`` lines. Goals (issue 15): our server >= 1.0x grpcio's
sync server, our client >= 1.0x grpcio's sync client; the ratio to grpc.aio beside.

    .venv/bin/python bench/bench_grpc.py [--seconds 2] [--quick] [--side client] [--rounds N]
    .venv/bin/python bench/bench_grpc.py --callgrind [--calls 600]
    .venv/bin/python bench/bench_grpc.py --profile server|client [--calls 3000]

``--callgrind``: instructions (callgrind's Ir, every thread of the process) per unary
RPC: each server (ours, grpcio sync, grpc.aio) under valgrind serving one connection
of N calls from a grpcio sync client outside valgrind, and each client (ours, grpcio
sync, grpc.aio) under valgrind making N calls to a grpcio sync server outside it;
the figure is the difference between N = 2 * calls and N = calls, divided by calls
(start-up, imports and the connection cancel out). Independent of the machine's
load, unlike the rates; grpcio's polling threads still add a little per second of
(slowed-down) run time.

``--profile``: cProfile of our server (or our client) over ``--calls`` unary calls:
the top functions by own time, with calls per RPC.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

ME = os.path.abspath(__file__)
PATH_UNARY = "/grpc.testing.TestService/UnaryCall"
PATH_BIDI = "/grpc.testing.TestService/FullDuplexCall"


def _pb():
    spec = importlib.util.spec_from_file_location(
        "grpc_bench_pb", os.path.join(C.ROOT, "tests", "protocols", "grpc", "pb.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


# -- servers (each in its own process; prints its port, serves until killed) -------------

def serve_ours(port: int, once: bool = False, profile: int = 0) -> None:
    """Serve until killed; ``once``: serve one connection, then exit (callgrind);
    ``profile``: also cProfile it and print the top functions per ``profile`` RPCs."""
    import greenrt
    from greenrt import net
    from greenrt.protocols.grpc.server import Server

    pb = _pb()
    pb2 = pb.pb2

    class Svc:
        def UnaryCall(self, req, ctx):
            return pb2.SimpleResponse()

        def FullDuplexCall(self, requests, ctx):
            for r in requests:
                ctx.send(pb2.StreamingOutputCallResponse(payload=r.payload))

    srv = Server()
    srv.add_servicer(pb.SERVICE, Svc())

    def main():
        if not once:
            net.serve_tcp(srv.serve_connection, "127.0.0.1", port,
                          on_ready=lambda s: print("ready", flush=True))
            return
        lst = net.listen_tcp("127.0.0.1", port)
        print("ready", flush=True)
        conn = lst.accept()
        lst.close()
        prof = _profiler() if profile else None
        try:
            srv.serve_connection(conn)
        finally:
            conn.close()
            if prof is not None:
                prof.disable()
                _print_profile(prof, profile)

    greenrt.run(main)


def _profiler():
    import cProfile

    prof = cProfile.Profile()
    prof.enable()
    return prof


def _print_profile(prof, calls: int, top: int = 0) -> None:
    import pstats

    top = top or int(os.environ.get("BENCH_PROFILE_TOP", "40"))

    st = pstats.Stats(prof)
    rows = []
    for (fn, line, name), (_cc, nc, tt, ct, _callers) in st.stats.items():
        rows.append((tt, ct, nc, f"{os.path.basename(fn)}:{line}({name})"))
    rows.sort(reverse=True)
    total = sum(r[0] for r in rows)
    print(f"profile: {calls} RPCs, {total / calls * 1e6:.1f} us/RPC of profiled time "
          f"(cProfile overhead included)", flush=True)
    print(f"  {'own us/RPC':>10} {'cum us/RPC':>10} {'calls/RPC':>9}  function")
    for tt, ct, nc, what in rows[:top]:
        print(f"  {tt / calls * 1e6:10.2f} {ct / calls * 1e6:10.2f} {nc / calls:9.2f}  {what}")
    print(f"  {sum(r[2] for r in rows) / calls:.0f} function calls per RPC", flush=True)


def _grpcio_servicer(pb):
    pb2, pb2_grpc = pb.pb2, pb.pb2_grpc

    class Svc(pb2_grpc.TestServiceServicer):
        def UnaryCall(self, req, ctx):
            return pb2.SimpleResponse()

        def FullDuplexCall(self, requests, ctx):
            for r in requests:
                yield pb2.StreamingOutputCallResponse(payload=r.payload)
    return Svc


def serve_grpcio_sync(port: int, once: bool = False, profile: int = 0) -> None:
    from concurrent import futures

    import grpc

    pb = _pb()
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    pb.pb2_grpc.add_TestServiceServicer_to_server(_grpcio_servicer(pb)(), srv)
    srv.add_insecure_port(f"127.0.0.1:{port}")
    srv.start()
    print("ready", flush=True)
    if once:  # until stdin closes (callgrind: a clean exit writes the profile)
        sys.stdin.read()
        srv.stop(None).wait()
        return
    srv.wait_for_termination()


def serve_grpcio_aio(port: int, once: bool = False, profile: int = 0) -> None:
    import asyncio

    import grpc

    pb = _pb()
    pb2, pb2_grpc = pb.pb2, pb.pb2_grpc

    class Svc(pb2_grpc.TestServiceServicer):
        async def UnaryCall(self, req, ctx):
            return pb2.SimpleResponse()

        async def FullDuplexCall(self, requests, ctx):
            async for r in requests:
                yield pb2.StreamingOutputCallResponse(payload=r.payload)

    async def main():
        srv = grpc.aio.server()
        pb2_grpc.add_TestServiceServicer_to_server(Svc(), srv)
        srv.add_insecure_port(f"127.0.0.1:{port}")
        await srv.start()
        print("ready", flush=True)
        if once:  # until stdin closes
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
            await srv.stop(None)
            return
        await srv.wait_for_termination()

    asyncio.run(main())


SERVERS = {"ours": serve_ours, "grpcio-sync": serve_grpcio_sync, "grpcio-aio": serve_grpcio_aio}


def start_server(kind: str, *, once: bool = False, profile: int = 0,
                 prefix: tuple = ()) -> tuple[subprocess.Popen, int]:
    """Start a server process (``prefix``: e.g. valgrind's command line); ``once``:
    it serves one connection (ours) or until its stdin closes (grpcio's)."""
    port = _free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), C.ROOT) if p)
    p = subprocess.Popen([*prefix, sys.executable, ME, "--serve", kind, str(port),
                          str(int(once)), str(profile)],
                         stdin=subprocess.PIPE if once else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    line = p.stdout.readline()
    if "ready" not in line:
        p.kill()
        raise RuntimeError(f"server {kind} did not start")
    if once:  # a probe connection would be the one connection served
        return p, port
    C.wait_for_port(port)
    return p, port


# -- clients (each in a fresh process via run_worker) --------------------------------------

def client_ours(port: int, mode: str, callers: int, seconds: float) -> dict:
    import greenrt
    from greenrt.protocols.grpc.client import Channel

    pb2 = _pb().pb2
    counts = [0] * callers

    def main():
        with Channel("127.0.0.1", port) as ch:
            req = pb2.SimpleRequest()
            ch.unary(PATH_UNARY, req, pb2.SimpleResponse)  # connect, warm up
            end = greenrt.now() + seconds
            t0 = time.perf_counter()
            if mode in ("count", "profile"):  # exactly `seconds` calls, one caller
                prof = _profiler() if mode == "profile" else None
                for _ in range(int(seconds)):
                    ch.unary(PATH_UNARY, req, pb2.SimpleResponse)
                if prof is not None:
                    prof.disable()
                    _print_profile(prof, int(seconds))
                counts[0] = int(seconds)
            elif mode == "unary":
                def caller(i):
                    n = 0
                    while greenrt.now() < end:
                        ch.unary(PATH_UNARY, req, pb2.SimpleResponse)
                        n += 1
                    counts[i] = n
                with greenrt.region() as r:
                    for i in range(callers):
                        r.spawn(caller, i)
            else:
                call = ch.bidi(PATH_BIDI, pb2.StreamingOutputCallResponse)
                m = pb2.StreamingOutputCallRequest(payload=pb2.Payload(body=b"x" * 16))
                n = 0
                while greenrt.now() < end:
                    call.send(m)
                    next(call)
                    n += 1
                call.done()
                list(call)
                counts[0] = n
            return time.perf_counter() - t0

    el = greenrt.run(main)
    return {"rate": sum(counts) / el}


def client_grpcio_sync(port: int, mode: str, callers: int, seconds: float) -> dict:
    import threading

    import grpc

    pb = _pb()
    pb2 = pb.pb2
    ch = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = pb.pb2_grpc.TestServiceStub(ch)
    req = pb2.SimpleRequest()
    stub.UnaryCall(req)
    counts = [0] * callers
    end = time.perf_counter() + seconds
    t0 = time.perf_counter()
    if mode == "count":
        for _ in range(int(seconds)):
            stub.UnaryCall(req)
        counts[0] = int(seconds)
    elif mode == "unary":
        def caller(i):
            n = 0
            while time.perf_counter() < end:
                stub.UnaryCall(req)
                n += 1
            counts[i] = n
        ts = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    else:
        import queue

        q: queue.Queue = queue.Queue()
        m = pb2.StreamingOutputCallRequest(payload=pb2.Payload(body=b"x" * 16))

        def reqs():
            while True:
                item = q.get()
                if item is None:
                    return
                yield item
        it = stub.FullDuplexCall(reqs())
        n = 0
        while time.perf_counter() < end:
            q.put(m)
            next(it)
            n += 1
        q.put(None)
        list(it)
        counts[0] = n
    el = time.perf_counter() - t0
    ch.close()
    return {"rate": sum(counts) / el}


def client_grpcio_aio(port: int, mode: str, callers: int, seconds: float) -> dict:
    import asyncio

    import grpc

    pb = _pb()
    pb2 = pb.pb2

    async def main():
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = pb.pb2_grpc.TestServiceStub(ch)
            req = pb2.SimpleRequest()
            await stub.UnaryCall(req)
            counts = [0] * callers
            loop = asyncio.get_running_loop()
            end = loop.time() + seconds
            t0 = time.perf_counter()
            if mode == "count":
                for _ in range(int(seconds)):
                    await stub.UnaryCall(req)
                counts[0] = int(seconds)
            elif mode == "unary":
                async def caller(i):
                    n = 0
                    while loop.time() < end:
                        await stub.UnaryCall(req)
                        n += 1
                    counts[i] = n
                await asyncio.gather(*(caller(i) for i in range(callers)))
            else:
                call = stub.FullDuplexCall()
                m = pb2.StreamingOutputCallRequest(payload=pb2.Payload(body=b"x" * 16))
                n = 0
                while loop.time() < end:
                    await call.write(m)
                    await call.read()
                    n += 1
                await call.done_writing()
                counts[0] = n
            return sum(counts) / (time.perf_counter() - t0)

    return {"rate": asyncio.run(main())}


CLIENTS = {"ours": client_ours, "grpcio-sync": client_grpcio_sync,
           "grpcio-aio": client_grpcio_aio}


def _drive(port: int, calls: int, kind: str = "grpcio-sync", prefix: tuple = (),
           mode: str = "count") -> str:
    """``calls`` unary calls from one caller of client ``kind`` (in a fresh process,
    under ``prefix`` if given); returns its output."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), C.ROOT) if p)
    p = subprocess.run([*prefix, sys.executable, ME, "--worker", kind, str(port), mode, "1",
                        str(calls)], capture_output=True, text=True, env=env, timeout=3600)
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"client {kind}: exit {p.returncode}: {tail}")
    return p.stdout


def _ir(path: str) -> int | None:
    import re

    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    m = re.search(r"^(?:totals|summary): (\d+)", text, re.M)
    return int(m.group(1)) if m else None


def _valgrind(out: str) -> tuple:
    return ("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}")


def callgrind(calls: int, side: str = "both", peers=tuple(SERVERS)) -> int:
    """Instructions per unary RPC, server side and client side (see the module
    docstring): runs of 2 * calls and calls, the difference over calls."""
    import shutil
    import tempfile

    if shutil.which("valgrind") is None:
        print("valgrind not found")
        return 1
    lo, hi = calls, 2 * calls
    print(f"bench_grpc --callgrind  {C.machine()}  (Ir of {hi} calls - Ir of {lo}, / {lo})")
    names = {"ours": "greenrt", "grpcio-sync": "grpcio sync", "grpcio-aio": "grpcio aio"}
    server_ir: dict = {}
    client_ir: dict = {}
    with tempfile.TemporaryDirectory() as d:
        for kind in [k for k in SERVERS if k in peers and side != "client"]:
            irs = []
            for n in (lo, hi):
                out = os.path.join(d, f"srv-{kind}-{n}.cg")
                proc, port = start_server(kind, once=True, prefix=_valgrind(out))
                try:
                    _drive(port, n)
                    proc.stdin.close()
                    proc.wait(600)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait(10)
                irs.append(_ir(out))
            server_ir[kind] = (irs[1] - irs[0]) / (hi - lo) if None not in irs else None
            print(f"  server {kind}: {server_ir[kind] and round(server_ir[kind])} Ir/RPC",
                  flush=True)
        proc, port = start_server("grpcio-sync")
        try:
            for kind in [k for k in CLIENTS if k in peers and side != "server"]:
                irs = []
                for n in (lo, hi):
                    out = os.path.join(d, f"cli-{kind}-{n}.cg")
                    _drive(port, n, kind, prefix=_valgrind(out))
                    irs.append(_ir(out))
                client_ir[kind] = (irs[1] - irs[0]) / (hi - lo) if None not in irs else None
                print(f"  client {kind}: {client_ir[kind] and round(client_ir[kind])} Ir/RPC",
                      flush=True)
        finally:
            proc.kill()
            proc.wait(10)
    if server_ir:
        C.print_table("server: instructions per unary RPC (callgrind, all threads of the "
                      "server; grpcio sync client)",
                      [(names[k], v, "") for k, v in server_ir.items()], "Ir")
    if client_ir:
        C.print_table("client: instructions per unary RPC (callgrind, all threads of the "
                      "client; grpcio sync server)",
                      [(names[k], v, "") for k, v in client_ir.items()], "Ir")
    for side_, got in (("server", server_ir), ("client", client_ir)):
        if not got:
            continue
        o = got.get("ours")
        print(f"SUMMARY: grpc {side_} Ir/RPC greenrt {o and round(o)}, "
              + ", ".join(f"{names[k]} {got[k] and round(got[k])}" + (
                  f" ({got[k] / o:.2f}x greenrt)" if o and got[k] else "")
                  for k in got if k != "ours"))
    return 0


def run_profile(side: str, calls: int) -> int:
    """cProfile our server (driven by a grpcio sync client) or our client (against a
    grpcio sync server) over ``calls`` unary calls; prints the top functions."""
    if side == "server":
        proc, port = start_server("ours", once=True, profile=calls)
        try:
            _drive(port, calls + 1)  # + the warm-up call
            proc.stdin.close()
            print(proc.stdout.read(), end="")
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
        return 0
    proc, port = start_server("grpcio-sync")
    try:
        out = _drive(port, calls, "ours", mode="profile")
        print("".join(out.splitlines(keepends=True)[:-1]), end="")  # not the JSON reply
    finally:
        proc.kill()
        proc.wait(10)
    return 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        once, profile = (int(x) for x in (sys.argv[4:6] or ("0", "0")))
        SERVERS[sys.argv[2]](int(sys.argv[3]), bool(once), profile)
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        kind, port, mode, callers, secs = sys.argv[2:7]
        C.worker_reply(CLIENTS[kind](int(port), mode, int(callers), float(secs)))
        return 0
    ap = argparse.ArgumentParser(description="gRPC unary and streaming vs grpcio")
    ap.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    ap.add_argument("--quick", action="store_true", help="0.5 s per measurement")
    ap.add_argument("--callgrind", nargs="?", const="both", choices=["both", "server", "client"],
                    help="instructions per unary RPC under valgrind (slow: minutes)")
    ap.add_argument("--peers", default="ours,grpcio-sync,grpcio-aio",
                    help="--callgrind: which servers/clients (comma-separated)")
    ap.add_argument("--profile", choices=["server", "client"],
                    help="cProfile our server or our client over --calls unary calls")
    ap.add_argument("--side", default="both", choices=["both", "server", "client"],
                    help="rates: measure the servers, the clients, or both")
    ap.add_argument("--calls", type=int, default=None,
                    help="calls per run (--callgrind: 600, --profile: 3000)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="rates: repeat every measurement N times, the peers taking turns "
                         "within each round; tables show medians, SUMMARY the ratio of "
                         "medians and each round's ratio")
    a = ap.parse_args()
    if a.callgrind:
        return callgrind(a.calls or 600, a.callgrind, a.peers.split(","))
    if a.profile:
        return run_profile(a.profile, a.calls or 3000)
    secs = 0.5 if a.quick else a.seconds
    rounds = max(1, a.rounds)
    print(f"bench_grpc  {C.machine()}  ({secs:g} s per measurement, wall-clock rates"
          + (f", {rounds} rounds, medians" if rounds > 1 else "") + ")")

    def client(kind, port, mode, callers):
        res = C.run_worker(ME, [kind, str(port), mode, str(callers), str(secs)],
                           timeout=120 + 4 * secs)
        if "error" in res:
            print(f"  client {kind} {mode} x{callers}: {res['error']}")
            return None
        return res["rate"]

    cases = [("unary", 1), ("unary", 50), ("bidi", 1)]
    # every figure is a list, one entry per round (a round measures every peer once)
    server_rates: dict = collections.defaultdict(list)
    server_cpu: dict = collections.defaultdict(list)
    client_rates: dict = collections.defaultdict(list)
    for _ in range(rounds):
        for skind in SERVERS if a.side != "client" else ():
            proc, port = start_server(skind)
            try:
                for mode, callers in cases:
                    c0 = _cpu_seconds(proc.pid)
                    rate = client("grpcio-aio", port, mode, callers)
                    c1 = _cpu_seconds(proc.pid)
                    server_rates[(skind, mode, callers)].append(rate)
                    server_cpu[(skind, mode, callers)].append(
                        (c1 - c0) / (rate * secs) * 1e6 if rate else None)
            finally:
                proc.kill()
                proc.wait(10)
        if a.side == "server":
            continue
        proc, port = start_server("grpcio-sync")
        try:
            for ckind in CLIENTS:
                for mode, callers in cases:
                    client_rates[(ckind, mode, callers)].append(client(ckind, port, mode, callers))
        finally:
            proc.kill()
            proc.wait(10)
    per_round = {"server": server_rates, "client": client_rates}
    server_rates = {k: C.median(v) for k, v in server_rates.items()}
    server_cpu = {k: C.median(v) for k, v in server_cpu.items()}
    client_rates = {k: C.median(v) for k, v in client_rates.items()}

    names = {"ours": "greenrt", "grpcio-sync": "grpcio sync", "grpcio-aio": "grpcio aio"}
    for mode, callers in cases if server_rates else ():
        what = f"{callers} concurrent unary callers" if mode == "unary" else \
            "one bidi stream, ping-pong messages"
        C.print_table(f"server side: {what} (grpc.aio client process)", [
            ("greenrt" if k == "ours" else names[k], server_rates[(k, mode, callers)],
             f"server CPU {server_cpu[(k, mode, callers)]:.1f} us/RPC"
             if server_cpu[(k, mode, callers)] else "")
            for k in SERVERS], "/s", higher_is_better=True)
    for mode, callers in cases if client_rates else ():
        what = f"{callers} concurrent unary callers" if mode == "unary" else \
            "one bidi stream, ping-pong messages"
        C.print_table(f"client side: {what} (grpcio sync server)", [
            ("greenrt" if k == "ours" else names[k], client_rates[(k, mode, callers)], "")
            for k in CLIENTS], "/s", higher_is_better=True)

    def ratio(x, y):
        return f"{x / y:.2f}" if x and y else "-"

    def rounds_of(side, mode, callers):
        if rounds == 1:
            return ""
        got = per_round[side]
        o, sy = got[("ours", mode, callers)], got[("grpcio-sync", mode, callers)]
        return " (rounds: " + ", ".join(ratio(x, y) for x, y in zip(o, sy, strict=True)) + ")"

    print()
    for mode, callers in cases if server_rates else ():
        o, s, ai = (server_rates[(k, mode, callers)] for k in SERVERS)
        print(f"SUMMARY: grpc server {mode} x{callers} greenrt/grpcio-sync = {ratio(o, s)}"
              f"{rounds_of('server', mode, callers)} "
              f"(target >= 1.0), greenrt/grpc.aio = {ratio(o, ai)}")
    for mode, callers in cases if client_rates else ():
        o, s, ai = (client_rates[(k, mode, callers)] for k in CLIENTS)
        print(f"SUMMARY: grpc client {mode} x{callers} greenrt/grpcio-sync = {ratio(o, s)}"
              f"{rounds_of('client', mode, callers)} "
              f"(target >= 1.0), greenrt/grpc.aio = {ratio(o, ai)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
