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

    .venv/bin/python bench/bench_grpc.py [--seconds 2] [--quick]
"""

from __future__ import annotations

import argparse
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

def serve_ours(port: int) -> None:
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
        net.serve_tcp(srv.serve_connection, "127.0.0.1", port,
                      on_ready=lambda s: print("ready", flush=True))

    greenrt.run(main)


def _grpcio_servicer(pb):
    pb2, pb2_grpc = pb.pb2, pb.pb2_grpc

    class Svc(pb2_grpc.TestServiceServicer):
        def UnaryCall(self, req, ctx):
            return pb2.SimpleResponse()

        def FullDuplexCall(self, requests, ctx):
            for r in requests:
                yield pb2.StreamingOutputCallResponse(payload=r.payload)
    return Svc


def serve_grpcio_sync(port: int) -> None:
    from concurrent import futures

    import grpc

    pb = _pb()
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    pb.pb2_grpc.add_TestServiceServicer_to_server(_grpcio_servicer(pb)(), srv)
    srv.add_insecure_port(f"127.0.0.1:{port}")
    srv.start()
    print("ready", flush=True)
    srv.wait_for_termination()


def serve_grpcio_aio(port: int) -> None:
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
        await srv.wait_for_termination()

    asyncio.run(main())


SERVERS = {"ours": serve_ours, "grpcio-sync": serve_grpcio_sync, "grpcio-aio": serve_grpcio_aio}


def start_server(kind: str) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), C.ROOT) if p)
    p = subprocess.Popen([sys.executable, ME, "--serve", kind, str(port)],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    line = p.stdout.readline()
    if "ready" not in line:
        p.kill()
        raise RuntimeError(f"server {kind} did not start")
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.01)
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
            if mode == "unary":
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
    if mode == "unary":
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
            if mode == "unary":
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


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        SERVERS[sys.argv[2]](int(sys.argv[3]))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        kind, port, mode, callers, secs = sys.argv[2:7]
        C.worker_reply(CLIENTS[kind](int(port), mode, int(callers), float(secs)))
        return 0
    ap = argparse.ArgumentParser(description="gRPC unary and streaming vs grpcio")
    ap.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    ap.add_argument("--quick", action="store_true", help="0.5 s per measurement")
    a = ap.parse_args()
    secs = 0.5 if a.quick else a.seconds
    print(f"bench_grpc  {C.machine()}  ({secs:g} s per measurement, wall-clock rates)")

    def client(kind, port, mode, callers):
        res = C.run_worker(ME, [kind, str(port), mode, str(callers), str(secs)],
                           timeout=120 + 4 * secs)
        if "error" in res:
            print(f"  client {kind} {mode} x{callers}: {res['error']}")
            return None
        return res["rate"]

    cases = [("unary", 1), ("unary", 50), ("bidi", 1)]
    server_rates: dict = {}
    server_cpu: dict = {}
    for skind in SERVERS:
        proc, port = start_server(skind)
        try:
            for mode, callers in cases:
                c0 = _cpu_seconds(proc.pid)
                rate = client("grpcio-aio", port, mode, callers)
                c1 = _cpu_seconds(proc.pid)
                server_rates[(skind, mode, callers)] = rate
                server_cpu[(skind, mode, callers)] = (
                    (c1 - c0) / (rate * secs) * 1e6 if rate else None)
        finally:
            proc.kill()
            proc.wait(10)

    client_rates: dict = {}
    proc, port = start_server("grpcio-sync")
    try:
        for ckind in CLIENTS:
            for mode, callers in cases:
                client_rates[(ckind, mode, callers)] = client(ckind, port, mode, callers)
    finally:
        proc.kill()
        proc.wait(10)

    names = {"ours": "greenrt", "grpcio-sync": "grpcio sync", "grpcio-aio": "grpcio aio"}
    for mode, callers in cases:
        what = f"{callers} concurrent unary callers" if mode == "unary" else \
            "one bidi stream, ping-pong messages"
        C.print_table(f"server side: {what} (grpc.aio client process)", [
            ("greenrt" if k == "ours" else names[k], server_rates[(k, mode, callers)],
             f"server CPU {server_cpu[(k, mode, callers)]:.1f} us/RPC"
             if server_cpu[(k, mode, callers)] else "")
            for k in SERVERS], "/s", higher_is_better=True)
    for mode, callers in cases:
        what = f"{callers} concurrent unary callers" if mode == "unary" else \
            "one bidi stream, ping-pong messages"
        C.print_table(f"client side: {what} (grpcio sync server)", [
            ("greenrt" if k == "ours" else names[k], client_rates[(k, mode, callers)], "")
            for k in CLIENTS], "/s", higher_is_better=True)

    def ratio(x, y):
        return f"{x / y:.2f}" if x and y else "-"

    print()
    for mode, callers in cases:
        o, s, ai = (server_rates[(k, mode, callers)] for k in SERVERS)
        print(f"SUMMARY: grpc server {mode} x{callers} greenrt/grpcio-sync = {ratio(o, s)} "
              f"(target >= 1.0), greenrt/grpc.aio = {ratio(o, ai)}")
    for mode, callers in cases:
        o, s, ai = (client_rates[(k, mode, callers)] for k in CLIENTS)
        print(f"SUMMARY: grpc client {mode} x{callers} greenrt/grpcio-sync = {ratio(o, s)} "
              f"(target >= 1.0), greenrt/grpc.aio = {ratio(o, ai)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
