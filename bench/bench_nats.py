"""NATS: greenrt's client vs nats-py (asyncio) on the same local nats-server.

Starts its own ``nats-server`` on a free loopback port and an echo responder (a
greenrt process, the same one for every peer), then runs each peer in a fresh
subprocess, one after the other:

* publish throughput, 16-byte messages, 1 task and 50 tasks (then a flush, timed);
* subscribe throughput: a second connection in the same process publishes N
  messages, the subscriber counts them as they arrive (timed until the last);
* request/reply round trips against the responder, 1 task and 50 tasks.

Goal from issue 17: greenrt >= 2x nats-py on each. Wall time (a server and a peer
process are involved).

    .venv/bin/python bench/bench_nats.py [--seconds 2] [--quick] [--only CASE]
        [--rounds N] [--callgrind [CASE]] [--strace [CASE]] [--before REV]

``--callgrind``/``--strace``: instructions or system calls per operation of the
client process (fixed-count runs, differenced), the two peers side by side; for
request/reply also the echo responder's per round trip, serving each peer (the
responder under the tool, with a nats-server of its own).

Request/reply is latency-bound: a round trip is the client's own part plus a fixed
part (the kernel, nats-server and the responder, the same for every peer). The wall
mode prints the responder's and nats-server's CPU per round trip beside each peer
(``/proc/<pid>/task/*/schedstat``), and for 1 task a *floor* row: a minimal
blocking-socket client with no library, the least a Python client can add. Its
SUMMARY line gives floor/nats-py (no client's wall ratio can pass it on that machine)
and each client's own part of a round trip: its round trip minus the floor's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common as C  # noqa: E402

PAYLOAD = b"x" * 16
SUBJECT = "bench.pub"
ECHO = "bench.echo"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _result(ops: int, t0: float, c0: float) -> dict:
    """Operations per second (wall) and the client process's CPU per operation (µs):
    the wall rate also pays for nats-server and the responder, the CPU figure is what
    the client library itself costs."""
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"rate": ops / wall, "cpu_us": cpu / ops * 1e6 if ops else None, "ops": ops}


# -- greenrt workers ---------------------------------------------------------------------


def g_publish(url: str, tasks: int, seconds: float, count: int = 0) -> dict:
    import greenrt
    from greenrt.protocols import nats

    counts = [0] * tasks
    rounds = count // (100 * tasks)  # fixed-count mode (callgrind): this many x100 per task

    def worker(nc, i, deadline):
        n = 0
        pub = nc.publish
        while True:
            for _ in range(100):
                pub(SUBJECT, PAYLOAD)
            n += 100
            if (n >= rounds * 100) if rounds else greenrt.now() >= deadline:
                break
        counts[i] = n

    def main():
        with nats.connect(url) as nc:
            t0, c0 = time.perf_counter(), time.process_time()
            deadline = greenrt.now() + seconds
            with greenrt.region() as rg:
                for i in range(tasks):
                    rg.spawn(worker, nc, i, deadline)
            nc.flush(timeout=60)
            return _result(sum(counts), t0, c0)

    return greenrt.run(main)


def g_subscribe(url: str, n: int) -> dict:
    import greenrt
    from greenrt.protocols import nats

    def main():
        with nats.connect(url) as sub_c, nats.connect(url) as pub_c:
            sub = sub_c.subscribe(SUBJECT, max_pending_msgs=n + 1, max_pending_bytes=1 << 30)
            sub_c.flush()
            got = [0]

            def consume():
                for _ in sub:
                    got[0] += 1
                    if got[0] == n:
                        return

            t0, c0 = time.perf_counter(), time.process_time()
            with greenrt.region() as rg:
                rg.spawn(consume)
                for _ in range(n):
                    pub_c.publish(SUBJECT, PAYLOAD)
                pub_c.flush(timeout=60)
            return _result(n, t0, c0)

    return greenrt.run(main)


def g_request(url: str, tasks: int, seconds: float, count: int = 0) -> dict:
    import greenrt
    from greenrt.protocols import nats

    counts = [0] * tasks
    each = count // tasks  # fixed-count mode (callgrind)

    def worker(nc, i, deadline):
        n = 0
        while (n < each) if each else greenrt.now() < deadline:
            nc.request(ECHO, PAYLOAD, timeout=10)
            n += 1
        counts[i] = n

    def main():
        with nats.connect(url) as nc:
            nc.request(ECHO, PAYLOAD, timeout=10)
            t0, c0 = time.perf_counter(), time.process_time()
            deadline = greenrt.now() + seconds
            with greenrt.region() as rg:
                for i in range(tasks):
                    rg.spawn(worker, nc, i, deadline)
            return _result(sum(counts), t0, c0)

    return greenrt.run(main)


def g_responder(url: str, count: int = 0) -> None:
    """The echo responder; with ``count``, it returns after that many replies (the
    counted runs of the responder itself)."""
    import greenrt
    from greenrt.protocols import nats

    def main():
        with nats.connect(url) as nc:
            sub = nc.subscribe(ECHO, max_pending_msgs=1 << 20)
            nc.flush()
            print("ready", flush=True)
            n = 0
            for m in sub:
                nc.publish(m.reply, m.data)
                n += 1
                if n == count:
                    break

    greenrt.run(main)


# -- the floor: a blocking-socket client ---------------------------------------------------


def raw_request(url: str, tasks: int, seconds: float, count: int = 0) -> dict:
    """Request/reply round trips by a minimal blocking-socket client (no library, no
    event loop, one request in flight): the round trip's fixed part (the kernel,
    nats-server and the responder) plus the least a Python client can add. Not a
    peer of the goal; it says how close to the floor each client is."""
    host, port = url.rsplit("/", 1)[-1].split(":")
    s = socket.create_connection((host, int(port)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray()

    def until(pred):
        while not pred():
            data = s.recv(65536)
            if not data:
                raise ConnectionError("nats-server closed the connection")
            buf.extend(data)

    until(lambda: b"\r\n" in buf)  # INFO
    del buf[:buf.index(b"\r\n") + 2]
    s.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":false}\r\n'
              b"SUB _INBOX.raw.* 1\r\nPING\r\n")
    until(lambda: b"PONG\r\n" in buf)
    buf.clear()
    frame = b"PUB %s _INBOX.raw.1 %d\r\n%s\r\n" % (ECHO.encode(), len(PAYLOAD), PAYLOAD)

    def one_reply():  # exactly one MSG in flight: its header line, then n + 2 bytes
        until(lambda: b"\r\n" in buf)
        end = buf.index(b"\r\n")
        n = int(buf[:end].split()[-1])
        until(lambda: len(buf) >= end + 2 + n + 2)
        del buf[:end + 2 + n + 2]

    s.sendall(frame)
    one_reply()
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    deadline = t0 + seconds
    while (n < count) if count else time.perf_counter() < deadline:
        s.sendall(frame)
        one_reply()
        n += 1
    res = _result(n, t0, c0)
    s.close()
    return res


# -- nats-py workers ---------------------------------------------------------------------


def a_publish(url: str, tasks: int, seconds: float, count: int = 0) -> dict:
    import asyncio

    import nats

    rounds = count // (100 * tasks)

    async def main():
        nc = await nats.connect(url)
        counts = [0] * tasks
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds

        async def worker(i):
            n = 0
            pub = nc.publish
            while True:
                for _ in range(100):
                    await pub(SUBJECT, PAYLOAD)
                n += 100
                if (n >= rounds * 100) if rounds else loop.time() >= deadline:
                    break
            counts[i] = n

        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(i) for i in range(tasks)))
        await nc.flush(timeout=60)
        res = _result(sum(counts), t0, c0)
        await nc.close()
        return res

    return asyncio.run(main())


def a_subscribe(url: str, n: int) -> dict:
    import asyncio

    import nats

    async def main():
        sub_c = await nats.connect(url)
        pub_c = await nats.connect(url)
        done = asyncio.Event()
        got = [0]

        async def cb(msg):
            got[0] += 1
            if got[0] == n:
                done.set()

        await sub_c.subscribe(SUBJECT, cb=cb, pending_msgs_limit=n + 1,
                              pending_bytes_limit=1 << 30)
        await sub_c.flush()
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            await pub_c.publish(SUBJECT, PAYLOAD)
        await pub_c.flush(timeout=60)
        await asyncio.wait_for(done.wait(), 120)
        res = _result(n, t0, c0)
        await sub_c.close()
        await pub_c.close()
        return res

    return asyncio.run(main())


def a_request(url: str, tasks: int, seconds: float, count: int = 0) -> dict:
    import asyncio

    import nats

    each = count // tasks

    async def main():
        nc = await nats.connect(url)
        await nc.request(ECHO, PAYLOAD, timeout=10)
        counts = [0] * tasks
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds

        async def worker(i):
            n = 0
            while (n < each) if each else loop.time() < deadline:
                await nc.request(ECHO, PAYLOAD, timeout=10)
                n += 1
            counts[i] = n

        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(i) for i in range(tasks)))
        res = _result(sum(counts), t0, c0)
        await nc.close()
        return res

    return asyncio.run(main())


def worker_main(argv: list[str]) -> None:
    kind, url = argv[0], argv[1]
    if kind == "responder":
        g_responder(url, int(argv[2]) if len(argv) > 2 else 0)
        return
    arg, seconds = int(argv[2]), float(argv[3])
    count = int(argv[4]) if len(argv) > 4 else 0
    fn = {"g-pub": g_publish, "a-pub": a_publish, "g-req": g_request, "a-req": a_request,
          "raw-req": raw_request}.get(kind)
    if fn is not None:
        out = fn(url, arg, seconds, count)
    elif kind == "g-sub":
        out = g_subscribe(url, arg)
    elif kind == "a-sub":
        out = a_subscribe(url, arg)
    else:
        raise SystemExit(f"unknown worker {kind}")
    C.worker_reply(out)


# -- driver ------------------------------------------------------------------------------

#: the counted cases: (label, greenrt worker, nats-py worker, tasks, low count, high count)
COUNTED = [("publish, 1 task", "g-pub", "a-pub", 1, 5000, 25000),
           ("publish, 50 tasks", "g-pub", "a-pub", 50, 5000, 25000),
           ("subscribe", "g-sub", "a-sub", 0, 2000, 8000),
           ("request/reply, 1 task", "g-req", "a-req", 1, 1000, 4000),
           ("request/reply, 50 tasks", "g-req", "a-req", 50, 1000, 4000)]


def export_revision(rev: str, into: str) -> str:
    """The tree of git revision ``rev`` exported under ``into`` (with
    ``greenrt/protocols`` and ``greenrt/lab`` links, so that a ``PYTHONPATH`` naming it
    wins over the editable install's mapping): the ``--before`` peer's code."""
    root = os.path.join(into, "tree")
    os.makedirs(root)
    archive = subprocess.run(["git", "-C", C.ROOT, "archive", rev], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", root], input=archive, check=True)
    for name, target in (("protocols", "../protocols"), ("lab", "../lab")):
        link = os.path.join(root, "greenrt", name)
        if not os.path.exists(link):
            os.symlink(target, link)
    return root


def snapshot_tree(into: str) -> str:
    """A copy of this working tree's code (greenrt, protocols, lab) under ``into``,
    laid out as :func:`export_revision` does: the ``greenrt`` peer of the counted
    runs imports it, so editing the tree while a long run goes on changes nothing."""
    root = os.path.join(into, "now")
    os.makedirs(root)
    ignore = shutil.ignore_patterns("__pycache__")
    for name in ("greenrt", "protocols", "lab"):
        shutil.copytree(os.path.join(C.ROOT, name), os.path.join(root, name), ignore=ignore)
    for name in ("protocols", "lab"):
        os.symlink(f"../{name}", os.path.join(root, "greenrt", name))
    return root


def _env(pythonpath: str | None = None) -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (pythonpath, os.environ.get("PYTHONPATH"), C.ROOT) if p))


def _tool(tool: str, out: str) -> list[str]:
    """The command prefix that runs a process under ``tool``, its report in ``out``."""
    if tool == "callgrind":
        return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    return ["strace", "-c", "-f", "-o", out]


def _counted(me: str, tool: str, kind: str, url: str, tasks: int, count: int,
             pythonpath: str | None = None) -> float | None:
    """Instructions (``tool="callgrind"``: callgrind's Ir total) or system calls
    (``tool="strace"``: ``strace -c -f``'s total) of one fixed-count worker run."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "out")
        args = [kind, url, str(count if kind.endswith("sub") else tasks), "0", str(count)]
        subprocess.run([*_tool(tool, out), sys.executable, me, "--worker", *args],
                       capture_output=True, text=True, env=_env(pythonpath), timeout=1800)
        return _tool_total(tool, out)


def _counted_responder(me: str, tool: str, server: str, kind: str, tasks: int, count: int,
                       pythonpath: str | None = None) -> float | None:
    """Instructions or system calls of the echo responder while the request worker
    ``kind`` (not under the tool) makes ``count`` round trips through it: the
    responder, under the tool, has a nats-server of its own and returns after the
    last reply."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "out")
        port = _free_port()
        url = f"nats://127.0.0.1:{port}"
        srv = subprocess.Popen([server, "-a", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            C.wait_for_port(port)
            replies = tasks * (count // tasks) + 1  # (the worker's first request warms up)
            resp = subprocess.Popen([*_tool(tool, out), sys.executable, me, "--worker",
                                     "responder", url, str(replies)], stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, text=True, env=_env(pythonpath))
            resp.stdout.readline()
            subprocess.run([sys.executable, me, "--worker", kind, url, str(tasks), "0",
                            str(count)], capture_output=True, env=_env(pythonpath),
                           timeout=1800)
            resp.wait(1800)
        finally:
            srv.terminate()
            srv.wait(10)
        return _tool_total(tool, out)


def _tool_total(tool: str, out: str) -> float | None:
    """The total of the report ``out`` of ``tool``: Ir, or system calls."""
    import re

    try:
        with open(out) as f:
            text = f.read()
    except OSError:
        return None
    if tool == "callgrind":
        m = re.search(r"^(?:totals|summary): (\d+)", text, re.M)
        return int(m.group(1)) if m else None
    m = re.search(r"^[- ]*[\d.]+\s+[\d.]+\s+\d*\s*(\d+)\s+(?:\d+\s+)?total$", text, re.M)
    return int(m.group(1)) if m else None


def counted(me: str, url: str, tool: str, only: str | None, before: str | None,
            now: str | None = None, server: str | None = None) -> int:
    """Per-operation instructions or system calls: the difference between a run of
    ``high`` and one of ``low`` operations over ``high - low`` (start-up, imports and
    the connection set-up cancel out). Independent of the machine's load. For
    request/reply (given the ``server`` binary) also the echo responder's, per round
    trip, serving each peer (the responder runs the peer's greenrt code: this tree's,
    or ``before``'s)."""
    what = "instructions (callgrind Ir)" if tool == "callgrind" else "system calls (strace -c -f)"
    for label, gk, ak, tasks, lo, hi in COUNTED:
        if only and only not in label:
            continue
        rows = []
        peers = [("greenrt", gk, now), ("nats-py asyncio", ak, None)]
        if before:
            peers.append(("greenrt before", gk, before))
        for name, kind, pp in peers:
            a_ = _counted(me, tool, kind, url, tasks, lo, pp)
            b_ = _counted(me, tool, kind, url, tasks, hi, pp)
            per = (b_ - a_) / (hi - lo) if a_ and b_ else None
            rows.append((name, per, ""))
            print(f"  {label} {name}: {per and round(per, 2)} {what} per operation", flush=True)
        C.print_table(f"{label}: {what} per operation", rows, "", higher_is_better=False)
        g, a = rows[0][1], rows[1][1]
        if g and a:
            print(f"SUMMARY: nats {label} {tool} per op nats-py/greenrt = {a / g:.2f}")
        if gk == "g-req" and server:
            # the fixed part's greenrt share: the echo responder, per round trip (its
            # batches, so its cost, depend on the requester)
            rrows = []
            for name, kind, pp in peers:
                a_ = _counted_responder(me, tool, server, kind, tasks, lo, pp or now)
                b_ = _counted_responder(me, tool, server, kind, tasks, hi, pp or now)
                per = (b_ - a_) / (hi - lo) if a_ and b_ else None
                rrows.append((f"serving {name}", per, ""))
                print(f"  {label} responder serving {name}: {per and round(per, 2)} {what} "
                      "per round trip", flush=True)
            C.print_table(f"{label}: the echo responder's {what} per round trip", rrows, "",
                          higher_is_better=False)
    return 0


def _start(server: str, me: str):
    """A nats-server on a free loopback port and the echo responder: ``(url, procs)``."""
    port = _free_port()
    url = f"nats://127.0.0.1:{port}"
    proc = subprocess.Popen([server, "-a", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    C.wait_for_port(port)
    responder = subprocess.Popen([sys.executable, me, "--worker", "responder", url],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 text=True, env=_env())
    responder.stdout.readline()
    return url, (responder, proc)


def _stop(procs) -> None:
    for p in procs:
        p.terminate()
        p.wait(10)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker_main(sys.argv[2:])
        return 0
    ap = argparse.ArgumentParser(description="NATS client vs nats-py")
    ap.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    ap.add_argument("--quick", action="store_true", help="0.5 s per measurement")
    ap.add_argument("--callgrind", nargs="?", const="all", metavar="CASE",
                    help="instructions per operation under valgrind (slow: minutes); CASE: "
                         "a substring of a case label ('publish', 'subscribe', 'request', "
                         "'50 tasks'...)")
    ap.add_argument("--before", metavar="REV",
                    help="also run greenrt's workers on git revision REV (say main, HEAD~3): "
                         "a 'greenrt before' peer in the same run")
    ap.add_argument("--strace", nargs="?", const="all", metavar="CASE",
                    help="system calls per operation (strace -c -f), CASE as --callgrind")
    ap.add_argument("--only", metavar="CASE",
                    help="wall mode: only the cases whose title contains CASE")
    ap.add_argument("--rounds", type=int, default=1,
                    help="wall mode: measure each peer this many times, alternating (median)")
    a = ap.parse_args()
    secs = 0.5 if a.quick else a.seconds
    n_sub = 100_000 if a.quick else 300_000
    server = shutil.which("nats-server")
    if server is None:
        print("nats-server is not installed (scripts/apt-packages.txt lists it)")
        return 1
    me = os.path.abspath(__file__)
    workdir = tempfile.mkdtemp(prefix="bench-nats-")
    before = export_revision(a.before, workdir) if a.before else None
    url, procs = _start(server, me)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the finally below stops the peers
    try:
        if a.callgrind or a.strace:
            print(f"bench_nats  {C.machine()}" + (f"  (before: {a.before})" if before else ""))
            case = a.callgrind or a.strace
            return counted(me, url, "callgrind" if a.callgrind else "strace",
                           None if case == "all" else case, before, snapshot_tree(workdir),
                           server)
        print(f"bench_nats  {C.machine()}  ({secs:g} s per measurement, wall time"
              + (f", {a.rounds} rounds, median" if a.rounds > 1 else "") + ")")
        others = {"responder": procs[0].pid, "nats-server": procs[1].pid}

        def run(kind, arg, pythonpath=None):
            cpu0 = {k: _cpu_ns(pid) for k, pid in others.items()}
            res = _run_worker(me, [kind, url, str(arg), str(secs)], pythonpath)
            if "error" in res:
                print(f"  {kind} {arg}: {res['error']}")
                return {}
            for k, pid in others.items():  # the fixed part's CPU, per operation of this run
                res[k + "_us"] = (_cpu_ns(pid) - cpu0[k]) / 1e3 / res["ops"] if res["ops"] else None
            return res

        # (title, greenrt worker, nats-py worker, argument, greenrt note, nats-py note)
        plan = [("publish, 16-byte messages, 1 task", "g-pub", "a-pub", 1, "publish + final flush", ""),
                ("publish, 16-byte messages, 50 tasks", "g-pub", "a-pub", 50, "one connection",
                 "one connection"),
                (f"subscribe, {n_sub} messages", "g-sub", "a-sub", n_sub, "iterator", "callback"),
                ("request/reply round trips, 1 task", "g-req", "a-req", 1, "", ""),
                ("request/reply round trips, 50 tasks", "g-req", "a-req", 50, "one connection",
                 "one connection")]
        cases = []
        for title, gk, ak, arg, gnote, anote in plan:
            if a.only and a.only not in title:
                continue
            peers = [("greenrt", gk, None, gnote), ("nats-py asyncio", ak, None, anote)]
            if before:
                peers.append((f"greenrt before ({a.before})", gk, before, gnote))
            if gk == "g-req" and arg == 1:
                peers.append(("floor: blocking socket", "raw-req", None, "no library"))
            # rounds alternate the peers, so a change of the machine's load hits each
            runs = {name: [] for name, *_ in peers}
            for _ in range(a.rounds):
                for name, kind, pp, _note in peers:
                    runs[name].append(run(kind, arg, pp))
            cases.append((title, peers, runs))
    finally:
        _stop(procs)
        shutil.rmtree(workdir, ignore_errors=True)

    def med(results, key):
        return C.median(r.get(key) for r in results)

    def ratio(x, y):
        return f"{x / y:.2f}" if x and y else "-"

    summary = []
    for title, peers, runs in cases:
        rows = [(name, med(runs[name], "rate"), note) for name, _k, _p, note in peers]
        cpu = [(name, med(runs[name], "cpu_us"), "µs") for name, *_ in peers]
        C.print_table(title + ", wall rate", rows, "/s", higher_is_better=True)
        C.print_table(title + ", client CPU per operation", cpu, "")
        if "request" in title:
            print("  the fixed part, CPU per round trip (µs): "
                  + "; ".join(f"{name}: responder {_f(med(runs[name], 'responder_us'))}, "
                              f"nats-server {_f(med(runs[name], 'nats-server_us'))}"
                              for name, *_ in peers))
        g, a_ = runs["greenrt"], runs["nats-py asyncio"]
        per_round = ", ".join(ratio(x.get("rate"), y.get("rate")) for x, y in zip(g, a_, strict=True))
        summary.append(f"SUMMARY: nats {title}: greenrt/nats-py wall = "
                       f"{ratio(med(g, 'rate'), med(a_, 'rate'))}"
                       + (f" (rounds: {per_round})" if a.rounds > 1 else "")
                       + f", client CPU per op = {ratio(med(a_, 'cpu_us'), med(g, 'cpu_us'))}x "
                       "less (target >= 2.0)")
        floor = runs.get("floor: blocking socket")
        fr, gr, ar = med(floor or [], "rate"), med(g, "rate"), med(a_, "rate")
        if fr and gr and ar:
            # A round trip is the fixed part plus the client's own; the floor client
            # adds the least a Python client can, so floor/nats-py bounds what any
            # client's wall ratio can be on this machine, and a round trip minus the
            # floor's is the client's own part of it.
            own_g, own_a = 1e6 / gr - 1e6 / fr, 1e6 / ar - 1e6 / fr
            summary.append(f"SUMMARY: nats {title}: floor/nats-py wall = {fr / ar:.2f} (the bound "
                           f"on any client's ratio here); the client's own part of a round trip "
                           f"(minus the floor's {1e6 / fr:.0f} us): greenrt {own_g:.0f} us, "
                           f"nats-py {own_a:.0f} us"
                           + (f" = {own_a / own_g:.2f}x less" if own_g > 0 else ""))
    print()
    print("\n".join(summary))
    return 0


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _cpu_ns(pid: int) -> int:
    """CPU time of process ``pid`` so far, all threads (``/proc/<pid>/task/*/schedstat``,
    nanoseconds; nats-server runs many): 0 where unavailable."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def _run_worker(me: str, args: list[str], pythonpath: str | None) -> dict:
    if pythonpath is None:
        return C.run_worker(me, args, timeout=300)
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = _env(pythonpath)["PYTHONPATH"]
    try:
        return C.run_worker(me, args, timeout=300)
    finally:
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved


if __name__ == "__main__":
    sys.exit(main())
