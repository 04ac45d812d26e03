"""WebSocket echo: greenrt's client and server vs `websockets` (asyncio, the
mainstream) and `picows` (the fastest asyncio library).

Each peer runs in a fresh subprocess, its own client talking to its own server on
loopback (so a figure covers both ends of the exchange), compression off (picows has
none), 1 KB binary messages, each client sending the next message after the echo:

* 50 connections concurrently, ``--messages`` each: messages per second (wall) and
  CPU microseconds per message (process time / messages);
* 1 connection: the message rate of one exchange.

``greenrt-h2`` is greenrt's WebSocket over HTTP/2 (RFC 8441 extended CONNECT, h2c,
one connection per WebSocket): what the tunnel costs beside ``greenrt`` over TCP.

gevent-websocket on pywsgi is not measured (no client of its own; see
docs/websocket.md). Goal from issue 16: greenrt >= 1.5x websockets.

``--callgrind`` instead counts instructions (callgrind's Ir) per echoed message for
``greenrt`` and ``greenrt-h2`` on one connection: the difference between a run of
``--cg-messages`` (default 2000) messages and one of half as many, divided by the
difference in messages, so start-up and connection set-up cancel out.

    .venv/bin/python bench/bench_websocket.py [--messages 2000] [--quick]
    .venv/bin/python bench/bench_websocket.py --callgrind [--cg-messages 2000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common as C  # noqa: E402

PAYLOAD = b"x" * 1024


def _measure(run) -> dict:
    w0, c0 = time.perf_counter(), time.process_time()
    n = run()
    w1, c1 = time.perf_counter(), time.process_time()
    return {"rate": n / (w1 - w0), "cpu_us": (c1 - c0) / n * 1e6}


def worker_greenrt(conns: int, messages: int, http2: bool = False) -> dict:
    """greenrt's echo: over TCP (``serve_tcp`` + ``serve_handler``), or with
    ``http2`` (RFC 8441) each WebSocket on an HTTP/2 stream (h2c prior knowledge, one
    connection per WebSocket) served by ``protocols.http.serve``."""
    import greenrt
    from greenrt import net
    from greenrt.protocols import http, websocket

    def handler(ws):
        for m in ws:
            ws.send_bytes(m)

    def client(port, out):
        ws = websocket.connect(f"ws://127.0.0.1:{port}/", compression=False, http2=http2)
        for _ in range(messages):
            ws.send_bytes(PAYLOAD)
            assert ws.recv() == PAYLOAD
        ws.close()
        out.append(messages)

    def serve(on_ready):
        if http2:
            http.serve(websocket.http_handler(handler, compression=False), "127.0.0.1", 0,
                       on_ready=on_ready)
        else:
            net.serve_tcp(websocket.serve_handler(handler, compression=False), "127.0.0.1", 0,
                          on_ready=on_ready)

    def main():
        servers = []
        with greenrt.region() as r:
            r.spawn(serve, servers.append)
            while not servers:
                greenrt.sleep(0)
            port = servers[0].addresses[0][1]

            def run():
                out = []
                with greenrt.region() as cr:
                    for _ in range(conns):
                        cr.spawn(client, port, out)
                return sum(out)
            res = _measure(run)
            servers[0].shutdown()
        return res

    return greenrt.run(main)


def worker_greenrt_h2(conns: int, messages: int) -> dict:
    return worker_greenrt(conns, messages, http2=True)


def worker_websockets(conns: int, messages: int) -> dict:
    import asyncio

    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    async def handler(ws):
        async for m in ws:
            await ws.send(m)

    async def client(port):
        async with connect(f"ws://127.0.0.1:{port}/", compression=None) as ws:
            for _ in range(messages):
                await ws.send(PAYLOAD)
                assert await ws.recv() == PAYLOAD
        return messages

    async def main():
        async with serve(handler, "127.0.0.1", 0, compression=None) as srv:
            port = srv.sockets[0].getsockname()[1]
            loop_result = {}

            async def run():
                return sum(await asyncio.gather(*(client(port) for _ in range(conns))))
            w0, c0 = time.perf_counter(), time.process_time()
            n = await run()
            w1, c1 = time.perf_counter(), time.process_time()
            loop_result.update(rate=n / (w1 - w0), cpu_us=(c1 - c0) / n * 1e6)
            return loop_result

    return asyncio.run(main())


def worker_picows(conns: int, messages: int) -> dict:
    import asyncio

    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect, ws_create_server

    class Echo(WSListener):
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame):
            if frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()
            else:
                transport.send(frame.msg_type, frame.get_payload_as_bytes())

    class Client(WSListener):
        def __init__(self, done):
            self.left = messages
            self.done = done

        def on_ws_connected(self, transport):
            transport.send(WSMsgType.BINARY, PAYLOAD)

        def on_ws_frame(self, transport, frame):
            assert frame.get_payload_as_bytes() == PAYLOAD
            self.left -= 1
            if self.left:
                transport.send(WSMsgType.BINARY, PAYLOAD)
            else:
                transport.send_close()
                transport.disconnect()
                self.done.set_result(messages)

    async def client(port):
        done = asyncio.get_running_loop().create_future()
        transport, _ = await ws_connect(lambda: Client(done), f"ws://127.0.0.1:{port}/")
        n = await done
        await transport.wait_disconnected()
        return n

    async def main():
        srv = await ws_create_server(lambda _req: Echo(), "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        w0, c0 = time.perf_counter(), time.process_time()
        n = sum(await asyncio.gather(*(client(port) for _ in range(conns))))
        w1, c1 = time.perf_counter(), time.process_time()
        srv.close()
        return {"rate": n / (w1 - w0), "cpu_us": (c1 - c0) / n * 1e6}

    return asyncio.run(main())


def ir_per_message(name: str, hi: int) -> float | None:
    """Callgrind Ir per echoed message of worker ``name`` on one connection: (Ir at
    ``hi`` messages - Ir at ``hi // 2``) / (``hi - hi // 2``). ``None`` without
    valgrind."""
    import re
    import shutil
    import subprocess
    import tempfile

    if shutil.which("valgrind") is None:
        return None
    got = []
    with tempfile.TemporaryDirectory() as d:
        for n in (hi // 2, hi):
            out = os.path.join(d, f"cg.{n}")
            subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                            sys.executable, os.path.abspath(__file__), "--worker", name, "1",
                            str(n)], capture_output=True, text=True, timeout=3600, check=True)
            with open(out) as f:
                m = re.search(r"^(?:totals|summary): (\d+)", f.read(), re.M)
            if m is None:
                return None
            got.append(int(m.group(1)))
    return (got[1] - got[0]) / (hi - hi // 2)


WORKERS = {"greenrt": worker_greenrt, "greenrt-h2": worker_greenrt_h2,
           "websockets": worker_websockets, "picows": worker_picows}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        name, conns, messages = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        C.worker_reply(WORKERS[name](conns, messages))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=2000, help="messages per connection")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--callgrind", action="store_true",
                    help="instructions per message, greenrt over TCP and over h2")
    ap.add_argument("--cg-messages", type=int, default=2000)
    a = ap.parse_args()
    if a.callgrind:
        irs = {n: ir_per_message(n, a.cg_messages) for n in ("greenrt", "greenrt-h2")}
        for n, ir in irs.items():
            print(f"  {n:12s} {ir:12,.0f} Ir per echoed message" if ir else f"  {n}: -")
        if all(irs.values()):
            print(f"SUMMARY: websocket Ir per message, h2 / TCP = "
                  f"{irs['greenrt-h2'] / irs['greenrt']:.2f}x")
        return
    msgs = 200 if a.quick else a.messages
    print(f"# WebSocket echo, 1 KB binary messages, compression off; {C.machine()}")
    results = {}
    for conns, per in ((50, msgs), (1, msgs * 10)):
        for name in WORKERS:
            results[(name, conns)] = C.run_worker(__file__, [name, str(conns), str(per)],
                                                  timeout=600)
    for conns in (50, 1):
        rows = [(n, results[(n, conns)].get("rate"), results[(n, conns)].get("error", ""))
                for n in WORKERS]
        C.print_table(f"{conns} connection(s): messages/s (wall, both ends in one process)",
                      rows, "/s", higher_is_better=True)
        rows = [(n, results[(n, conns)].get("cpu_us"), "") for n in WORKERS]
        C.print_table(f"{conns} connection(s): CPU per message (both ends)", rows, "us")

    def ratio(a, b):
        ra, rb = results[a].get("rate"), results[b].get("rate")
        return f"{ra / rb:.2f}x" if ra and rb else "-"
    print(f"\nSUMMARY: websocket 50 conns greenrt/websockets = {ratio(('greenrt', 50), ('websockets', 50))}"
          f" (target >= 1.5), greenrt/picows = {ratio(('greenrt', 50), ('picows', 50))}")
    print(f"SUMMARY: websocket 1 conn greenrt/websockets = {ratio(('greenrt', 1), ('websockets', 1))}"
          f" (target >= 1.5), greenrt/picows = {ratio(('greenrt', 1), ('picows', 1))}")
    print(f"SUMMARY: websocket over h2 (RFC 8441) / over TCP, greenrt: 50 conns "
          f"{ratio(('greenrt-h2', 50), ('greenrt', 50))}, 1 conn "
          f"{ratio(('greenrt-h2', 1), ('greenrt', 1))}")


if __name__ == "__main__":
    main()
