"""Kafka produce and consume throughput: greenrt's client vs kafka-python and aiokafka
(the Python peers), with confluent-kafka (librdkafka, C) as the ceiling.

The driver starts one librdkafka mock cluster (one broker, the broker
implementation the tests use: ``tests/protocols/kafka/mockctl.py``) and runs every
peer in a fresh subprocess against it, one after the other:

* **produce**: N records of 100 bytes (no key) to one partition of a fresh topic,
  acks=all and idempotence on for every peer (greenrt's default); records/s from the
  first timed send to the last acknowledgement. Every peer's asynchronous send (a
  future or a callback per record) from one task: greenrt's ``submit`` and
  kafka-python's and aiokafka's ``send`` keep 1000 futures outstanding (the oldest
  awaited before the next send), the like-for-like comparison the SUMMARY lines use;
  their "every future kept, then flush/gather" shape is shown too (``-all``: its
  garbage collector scans N live futures, so it is slower per record the larger N
  is); confluent-kafka a delivery callback and a final flush. greenrt's blocking
  ``send`` is shown beside: its callers batch each other, T tasks each sending N/T
  records (``--tasks``, 1000 by default; 100 also shown), and ``send_many``;
* **consume**: M records of 100 bytes written beforehand (by confluent-kafka) into
  one partition; each peer assigns the partition without a group, reads from the
  earliest offset, and is timed from its first record to its M-th.

Every peer warms up first (connection, metadata, producer id) outside the timed part.
Times are wall clock (the broker is another process's threads). Targets from issue 18:
greenrt >= 2x kafka-python and >= 2x aiokafka, for produce and consume.

    .venv/bin/python bench/bench_kafka.py [--records 50000] [--quick] [--only produce|consume]
        [--rounds N] [--profile produce|consume] [--callgrind [produce|consume]]

``--rounds N``: every measurement N times, the peers interleaved, medians reported
(the wall rates of this shared machine move by 10-50% between runs).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common as C  # noqa: E402

VALUE = b"x" * 100


# -- workers (each runs in its own interpreter) ----------------------------------------


def w_greenrt_produce(boot: str, topic: str, n: int, tasks: int) -> dict:
    import greenrt
    from greenrt.protocols.kafka.producer import Producer

    def main():
        prod = Producer(boot)
        prod.send(topic, VALUE, partition=0)  # connection, metadata, producer id
        per = [n // tasks + (1 if i < n % tasks else 0) for i in range(tasks)]

        def worker(k):
            for _ in range(k):
                prod.send(topic, VALUE, partition=0)

        t0, c0 = time.perf_counter(), time.process_time()
        with greenrt.region() as rg:
            for k in per:
                rg.spawn(worker, k)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        st = prod.statistics()
        prod.close()
        return {"rate": n / dt, "cpu_rate": n / cpu, "batches": st["batches_sent"], "retries": st["retries"]}

    return greenrt.run(main)


def w_greenrt_submit(boot: str, topic: str, n: int, window: int) -> dict:
    from collections import deque

    import greenrt
    from greenrt.protocols.kafka.producer import Producer

    def main():
        with Producer(boot) as prod:
            prod.send(topic, VALUE, partition=0)  # connection, metadata, producer id
            failed = 0
            t0, c0 = time.perf_counter(), time.process_time()
            futs = deque()
            for _ in range(n):
                if len(futs) >= window:
                    futs.popleft().result()  # raises if the record failed
                futs.append(prod.submit(topic, VALUE, partition=0))
            for d in futs:
                failed += d.exception() is not None
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            st = prod.statistics()
        return {"rate": n / dt, "cpu_rate": n / cpu, "failed": failed, "batches": st["batches_sent"]}

    return greenrt.run(main)


def w_greenrt_produce_many(boot: str, topic: str, n: int, chunk: int) -> dict:
    import greenrt
    from greenrt.protocols.kafka.producer import Producer

    def main():
        prod = Producer(boot)
        prod.send(topic, VALUE, partition=0)  # connection, metadata, producer id
        recs = [(None, VALUE)] * chunk
        t0, c0 = time.perf_counter(), time.process_time()
        done = 0
        while done < n:
            k = min(chunk, n - done)
            res = prod.send_many(topic, recs[:k], partition=0)
            done += k
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        failed = sum(1 for r in res if isinstance(r, BaseException))
        prod.close()
        return {"rate": n / dt, "cpu_rate": n / cpu, "failed": failed}

    return greenrt.run(main)


#: records a future-based peer keeps outstanding (``window`` > 0): the oldest future is
#: awaited before the next send once this many are, as greenrt's 1000 blocking tasks
#: have 1000 records outstanding. ``window`` 0: every future kept until the end (the
#: shape of the peers' "send everything, then flush" examples; its garbage collector
#: then scans a heap of N futures, a cost that grows with N).
WINDOW = 1000


def w_kafkapython_produce(boot: str, topic: str, n: int, window: int = WINDOW) -> dict:
    from collections import deque

    from kafka import KafkaProducer

    # api_version pinned: kafka-python 3 cannot parse the mock's answer to its ApiVersions v4
    p = KafkaProducer(bootstrap_servers=boot, acks="all", enable_idempotence=True, api_version=(2, 0, 0))
    p.send(topic, VALUE, partition=0).get(timeout=30)
    failed = 0
    t0, c0 = time.perf_counter(), time.process_time()
    if window:
        futs = deque()
        for _ in range(n):
            if len(futs) >= window:
                futs.popleft().get(timeout=60)  # raises if the record failed
            futs.append(p.send(topic, VALUE, partition=0))
        for f in futs:
            f.get(timeout=60)
    else:
        futs = [p.send(topic, VALUE, partition=0) for _ in range(n)]
        p.flush()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    if not window:
        failed = sum(1 for f in futs if not f.succeeded())
    p.close()
    return {"rate": n / dt, "cpu_rate": n / cpu, "failed": failed}


def w_aiokafka_produce(boot: str, topic: str, n: int, window: int = WINDOW) -> dict:
    import asyncio
    from collections import deque

    from aiokafka import AIOKafkaProducer

    async def main():
        p = AIOKafkaProducer(bootstrap_servers=boot, acks="all", enable_idempotence=True)
        await p.start()
        try:
            await p.send_and_wait(topic, VALUE, partition=0)
            t0, c0 = time.perf_counter(), time.process_time()
            if window:  # send() queues the record and returns its future (aiokafka's docs)
                futs = deque()
                for _ in range(n):
                    if len(futs) >= window:
                        await futs.popleft()  # raises if the record failed
                    futs.append(await p.send(topic, VALUE, partition=0))
                res = await asyncio.gather(*futs, return_exceptions=True)
            else:
                futs = [await p.send(topic, VALUE, partition=0) for _ in range(n)]
                res = await asyncio.gather(*futs, return_exceptions=True)
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        finally:
            await p.stop()
        return {"rate": n / dt, "cpu_rate": n / cpu,
                "failed": sum(1 for r in res if isinstance(r, BaseException))}

    return asyncio.run(main())


def w_confluent_produce(boot: str, topic: str, n: int) -> dict:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": boot, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5, "log_level": 0})
    errors = []

    def cb(err, msg):
        if err is not None:
            errors.append(err)

    p.produce(topic, VALUE, partition=0)
    p.flush(30)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        while True:
            try:
                p.produce(topic, VALUE, partition=0, on_delivery=cb)
                break
            except BufferError:
                p.poll(0.01)
    left = p.flush(60)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"rate": n / dt, "cpu_rate": n / cpu, "failed": len(errors) + left}


def w_greenrt_consume(boot: str, topic: str, m: int) -> dict:
    import greenrt
    from greenrt.protocols.kafka.consumer import Consumer

    def main():
        with Consumer(boot, auto_offset_reset="earliest", max_poll_records=5000) as c:
            c.assign([(topic, 0)])
            got = []
            while not got:
                got = c.poll(5.0)
            t0, c0 = time.perf_counter(), time.process_time()
            n = len(got)
            while n < m:
                n += len(c.poll(5.0))
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        return {"rate": (n - len(got)) / dt, "cpu_rate": (n - len(got)) / cpu}

    return greenrt.run(main)


def w_kafkapython_consume(boot: str, topic: str, m: int) -> dict:
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=boot, group_id=None, enable_auto_commit=False, api_version=(2, 0, 0),
                      auto_offset_reset="earliest", max_poll_records=5000)
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    first = 0
    while not first:
        first = sum(len(v) for v in c.poll(timeout_ms=5000).values())
    t0, c0 = time.perf_counter(), time.process_time()
    n = first
    while n < m:
        n += sum(len(v) for v in c.poll(timeout_ms=5000).values())
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    c.close()
    return {"rate": (n - first) / dt, "cpu_rate": (n - first) / cpu}


def w_aiokafka_consume(boot: str, topic: str, m: int) -> dict:
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def main():
        c = AIOKafkaConsumer(bootstrap_servers=boot, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest")
        await c.start()
        try:
            tp = TopicPartition(topic, 0)
            c.assign([tp])
            await c.seek_to_beginning(tp)
            first = 0
            while not first:
                first = sum(len(v) for v in (await c.getmany(timeout_ms=5000, max_records=5000)).values())
            t0, c0 = time.perf_counter(), time.process_time()
            n = first
            while n < m:
                n += sum(len(v) for v in (await c.getmany(timeout_ms=5000, max_records=5000)).values())
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        finally:
            await c.stop()
        return {"rate": (n - first) / dt, "cpu_rate": (n - first) / cpu}

    return asyncio.run(main())


def w_confluent_consume(boot: str, topic: str, m: int) -> dict:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": boot, "group.id": f"bench-{os.getpid()}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest", "log_level": 0})
    c.assign([TopicPartition(topic, 0, 0)])

    def batch(want):  # consume() waits for all it was asked for: never ask past the end
        return sum(1 for msg in c.consume(num_messages=min(5000, want), timeout=5.0) if not msg.error())

    first = 0
    while not first:
        first = batch(m)
    t0, c0 = time.perf_counter(), time.process_time()
    n = first
    while n < m:
        n += batch(m - n)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    c.close()
    return {"rate": (n - first) / dt, "cpu_rate": (n - first) / cpu}


def worker_main(argv: list[str]) -> None:
    kind, boot, topic, n = argv[0], argv[1], argv[2], int(argv[3])
    extra = int(argv[4]) if len(argv) > 4 else 0
    if kind in ("profile", "profile-consume"):  # cProfile of greenrt's path, top 25 by own time
        import cProfile
        import pstats

        pr = cProfile.Profile(time.process_time)  # CPU: wall time here is mostly other processes
        pr.enable()
        out = (w_greenrt_produce(boot, topic, n, extra) if kind == "profile"
               else w_greenrt_consume(boot, topic, n))
        pr.disable()
        import io

        text = io.StringIO()  # handed back in the reply: the driver keeps no worker's stderr
        pstats.Stats(pr, stream=text).sort_stats("tottime").print_stats(25)
        C.worker_reply({**out, "profile": text.getvalue()})
        return
    fn = {"greenrt-produce": lambda: w_greenrt_produce(boot, topic, n, extra),
          "greenrt-submit": lambda: w_greenrt_submit(boot, topic, n, extra or WINDOW),
          "greenrt-produce-many": lambda: w_greenrt_produce_many(boot, topic, n, extra),
          "kafka-python-produce": lambda: w_kafkapython_produce(boot, topic, n),
          "kafka-python-produce-all": lambda: w_kafkapython_produce(boot, topic, n, 0),
          "aiokafka-produce": lambda: w_aiokafka_produce(boot, topic, n),
          "aiokafka-produce-all": lambda: w_aiokafka_produce(boot, topic, n, 0),
          "confluent-produce": lambda: w_confluent_produce(boot, topic, n),
          "greenrt-consume": lambda: w_greenrt_consume(boot, topic, n),
          "kafka-python-consume": lambda: w_kafkapython_consume(boot, topic, n),
          "aiokafka-consume": lambda: w_aiokafka_consume(boot, topic, n),
          "confluent-consume": lambda: w_confluent_consume(boot, topic, n)}.get(kind)
    if fn is None:
        raise SystemExit(f"unknown worker {kind}")
    C.worker_reply(fn())


# -- driver ------------------------------------------------------------------------------


def _mock_cluster():
    path = os.path.join(C.ROOT, "tests", "protocols", "kafka", "mockctl.py")
    spec = importlib.util.spec_from_file_location("kafka_mockctl", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.MockCluster(1)


def _fill(boot: str, topic: str, m: int) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": boot, "linger.ms": 20, "log_level": 0})
    for _ in range(m):
        while True:
            try:
                p.produce(topic, VALUE, partition=0)
                break
            except BufferError:
                p.poll(0.01)
    assert p.flush(60) == 0, "could not fill the consume topic"


def _retained(boot: str, topic: str) -> int:
    """How many records the partition holds: librdkafka's mock cluster drops the
    oldest segments of a large partition (its log start moves), so a reader from the
    earliest offset gets high watermark - log start, not everything written."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": boot, "group.id": "bench-watermarks", "log_level": 0})
    try:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        c.close()
    return hi - lo


def _instructions(me: str, kind: str, boot: str, topic: str, n: int, extra: int) -> int | None:
    """Instructions (callgrind's Ir, every thread of the worker) of one worker run."""
    import re
    import shutil
    import subprocess
    import tempfile

    if shutil.which("valgrind") is None:
        return None
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "cg.out")
        env = dict(os.environ, PYTHONPATH=C.ROOT)
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, me,
                        "--worker", kind, boot, topic, str(n), str(extra)],
                       capture_output=True, text=True, env=env, timeout=1800)
        try:
            text = open(out).read()
        except OSError:
            return None
    m = re.search(r"^(?:totals|summary): (\d+)", text, re.M)
    return int(m.group(1)) if m else None


def callgrind(me: str, boot: str, mc, fresh, what: str = "both") -> int:
    """Instructions per record: the difference between runs of 6000 and 2000 records
    over 4000 (start-up, imports and connection set-up cancel out). Independent of the
    machine's load, unlike the rates. Produce: each run into a fresh topic; consume:
    each run reads all of a topic filled beforehand with exactly that many records
    (so no reader decodes records it is not asked for)."""
    lo, hi = 2000, 6000
    cases = []
    if what in ("both", "produce"):
        cases.append(("produce", (("greenrt", "greenrt-submit", WINDOW, f"submit() futures, {WINDOW} outstanding"),
                                  ("greenrt send", "greenrt-produce", 1000, "1000 tasks, send()"),
                                  ("greenrt send_many", "greenrt-produce-many", 5000, "1 task"),
                                  ("kafka-python", "kafka-python-produce", 0, "1000 futures outstanding"),
                                  ("aiokafka", "aiokafka-produce", 0, "1000 futures outstanding"),
                                  ("confluent-kafka", "confluent-produce", 0, "C, ceiling"))))
    if what in ("both", "consume"):
        cases.append(("consume", (("greenrt", "greenrt-consume", 0, "poll()"),
                                  ("kafka-python", "kafka-python-consume", 0, "poll()"),
                                  ("aiokafka", "aiokafka-consume", 0, "getmany()"),
                                  ("confluent-kafka", "confluent-consume", 0, "C, ceiling"))))
    filled = {}
    for case, peers in cases:
        if case == "consume":
            for count in (lo, hi):
                t = fresh()
                _fill(boot, t, count)
                got = _retained(boot, t)
                if got != count:
                    print(f"  the mock cluster retains {got} of {count} records: consume counts are off")
                filled[count] = t
        rows = []
        for name, kind, extra, note in peers:
            if case == "produce":
                a_ = _instructions(me, kind, boot, fresh(), lo, extra)
                b_ = _instructions(me, kind, boot, fresh(), hi, extra)
            else:
                a_ = _instructions(me, kind, boot, filled[lo], lo, extra)
                b_ = _instructions(me, kind, boot, filled[hi], hi, extra)
            per = (b_ - a_) / (hi - lo) if a_ and b_ else None
            rows.append((name, per, note))
            print(f"  {case} {name}: {per and round(per)} instructions/record", flush=True)
        C.print_table(f"{case}: instructions per record (callgrind, all threads of the client)",
                      rows, "instr", higher_is_better=False)
        got = {n_: v for n_, v, _ in rows}
        g = got.get("greenrt")
        for peer in ("kafka-python", "aiokafka"):
            if g and got.get(peer):
                extra_ = "".join(f"; {k[8:]}: {got[peer] / got[k]:.2f}" for k in ("greenrt send", "greenrt send_many")
                                 if got.get(k))
                extra_ = f" ({extra_[2:]})" if extra_ else ""
                print(f"SUMMARY: kafka {case} instructions/record {peer}/greenrt = {got[peer] / g:.2f}"
                      f"{extra_} (target >= 2.0)")
    return 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker_main(sys.argv[2:])
        return 0
    ap = argparse.ArgumentParser(description="Kafka produce/consume throughput vs kafka-python, aiokafka")
    ap.add_argument("--records", type=int, default=50000, help="records per measurement")
    ap.add_argument("--tasks", type=int, default=1000, help="greenrt producer tasks")
    ap.add_argument("--quick", action="store_true", help="10,000 records")
    ap.add_argument("--profile", choices=["produce", "consume"], help="cProfile greenrt's produce or consume path only")
    ap.add_argument("--callgrind", nargs="?", const="both", choices=["both", "produce", "consume"],
                    help="instructions per produced/consumed record under valgrind (slow: minutes)")
    ap.add_argument("--rounds", type=int, default=1, help="run every measurement N times, report medians")
    ap.add_argument("--only", choices=["produce", "consume"],
                    help="wall/CPU rates of one direction only (every peer)")
    a = ap.parse_args()
    n = 10000 if a.quick else a.records
    try:
        mc = _mock_cluster()
    except Exception as e:  # confluent-kafka missing: nothing to measure against
        print(f"cannot start librdkafka's mock cluster: {e}")
        return 1
    me = os.path.abspath(__file__)
    boot = mc.bootstrap
    seq = iter(range(1000))

    def run(kind, topic, count, extra=0):
        res = C.run_worker(me, [kind, boot, topic, str(count), str(extra)], timeout=600)
        if "error" in res:
            print(f"  {kind}: {res['error']}")
            return None, None
        if res.get("failed"):
            print(f"  {kind}: {res['failed']} records not acknowledged")
        return res["rate"], res["cpu_rate"]

    def fresh() -> str:
        t = f"bench-produce-{next(seq)}"
        mc.create_topic(t, 1)
        return t

    try:
        print(f"bench_kafka  {C.machine()}  ({n} records of {len(VALUE)} bytes per measurement)")
        if a.profile == "consume":
            t = fresh()
            _fill(boot, t, n)
            res = C.run_worker(me, ["profile-consume", boot, t, str(_retained(boot, t)), "0"], timeout=600)
            print(res.pop("profile", ""))
            print(res)
            return 0
        if a.profile:
            res = C.run_worker(me, ["profile", boot, fresh(), str(n), str(a.tasks)], timeout=600)
            print(res.pop("profile", ""))
            print(res)
            return 0
        if a.callgrind:
            return callgrind(me, boot, mc, fresh, a.callgrind)
        skipped = (None, None)
        gs = g = g100 = gm = kp = kp_all = ak = ak_all = cf = skipped
        gc_ = kpc = akc = cfc = skipped

        def rounds(cases):
            """Each case ``a.rounds`` times, the cases interleaved; per case the median
            of its wall rates and of its CPU rates, and the wall rate of each round."""
            got: dict[int, list] = {i: [] for i in range(len(cases))}
            labels: dict[int, str] = {}
            for _ in range(a.rounds):
                for i, args in enumerate(cases):
                    kind, *rest = args()
                    labels[i] = f"{kind} {rest[-1]}" if kind.startswith("greenrt-produce") else kind
                    got[i].append(run(kind, *rest))
            out = []
            for i in range(len(cases)):
                walls = [r[0] for r in got[i] if r[0]]
                cpus = [r[1] for r in got[i] if r[1]]
                out.append((C.median(walls) if walls else None, C.median(cpus) if cpus else None))
                if a.rounds > 1:
                    per_round.append((labels[i], walls))
            return out

        per_round: list = []
        if a.only != "consume":
            gs, g, g100, gm, kp, kp_all, ak, ak_all, cf = rounds([
                lambda: ("greenrt-submit", fresh(), n, WINDOW),
                lambda: ("greenrt-produce", fresh(), n, a.tasks),
                lambda: ("greenrt-produce", fresh(), n, 100),
                lambda: ("greenrt-produce-many", fresh(), n, 5000),
                lambda: ("kafka-python-produce", fresh(), n),
                lambda: ("kafka-python-produce-all", fresh(), n),
                lambda: ("aiokafka-produce", fresh(), n),
                lambda: ("aiokafka-produce-all", fresh(), n),
                lambda: ("confluent-produce", fresh(), n)])
        if a.only != "produce":
            ctopic = "bench-consume"
            mc.create_topic(ctopic, 1)
            _fill(boot, ctopic, n)
            m = _retained(boot, ctopic)
            if m != n:
                print(f"  (the mock cluster retains {m} of the {n} records written; each reader reads those)")
            gc_, kpc, akc, cfc = rounds([lambda: ("greenrt-consume", ctopic, m),
                                         lambda: ("kafka-python-consume", ctopic, m),
                                         lambda: ("aiokafka-consume", ctopic, m),
                                         lambda: ("confluent-consume", ctopic, m)])
    finally:
        mc.close()

    produce = [("greenrt submit", gs, f"submit() futures, {WINDOW} outstanding"),
               ("greenrt", g, f"{a.tasks} tasks, blocking send"),
               ("greenrt x100", g100, "100 tasks, blocking send"),
               ("greenrt send_many", gm, "1 task, send_many() of 5000"),
               ("kafka-python", kp, f"send() futures, {WINDOW} outstanding"),
               ("kafka-python all", kp_all, "send() futures, all kept + flush"),
               ("aiokafka", ak, f"send() futures, {WINDOW} outstanding"),
               ("aiokafka all", ak_all, "send() futures, all kept + gather"),
               ("confluent-kafka", cf, "librdkafka (C), ceiling")]
    consume = [("greenrt", gc_, "poll()"),
               ("kafka-python", kpc, "poll()"),
               ("aiokafka", akc, "getmany()"),
               ("confluent-kafka", cfc, "consume(), librdkafka (C), ceiling")]
    for what, rows in (("produce, 100-byte records, acks=all, idempotent", produce),
                       ("consume, 100-byte records, assign + earliest", consume)):
        if a.only and not what.startswith(a.only):
            continue
        C.print_table(f"{what}: records/s (wall clock)",
                      [(name, v[0], note) for name, v, note in rows], "/s", higher_is_better=True)
        C.print_table(f"{what}: records per CPU second of the client process (all its threads)",
                      [(name, v[1], note) for name, v, note in rows], "/s", higher_is_better=True)

    def ratio(x, y, i):
        return f"{x[i] / y[i]:.2f}" if x[i] and y[i] else "-"

    if per_round:
        print("\nwall rate of each round (records/s):")
        for label, walls in per_round:
            print(f"  {label:28s} " + ", ".join(f"{w / 1e3:.0f}k" for w in walls))
    print()
    # like for like: every peer's asynchronous send from one task (greenrt's submit);
    # greenrt's blocking send from many tasks is the second produce line
    for what, (o, p_, q, c) in (("produce", (gs, kp, ak, cf)), ("produce, blocking send", (g, kp, ak, cf)),
                                ("consume", (gc_, kpc, akc, cfc))):
        if a.only and not what.startswith(a.only):
            continue
        for i, clock in ((0, "wall"), (1, "cpu")):
            print(f"SUMMARY: kafka {what} ({clock}) greenrt/kafka-python = {ratio(o, p_, i)} (target >= 2.0), "
                  f"greenrt/aiokafka = {ratio(o, q, i)} (target >= 2.0), greenrt/confluent = {ratio(o, c, i)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
