"""greenrt in one page: regions, cancellation with reasons, budgets, obligation leaks.

Run with ``make demo``. Every section is a small blocking-style program; the runtime
reports what happened through outcomes, reasons and trace events, never by printing.
"""

from __future__ import annotations

import os
import sys
import tempfile

import greenrt
from greenrt import Budget, Cancelled, net


def banner(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 66 - len(title)))


# 1. A region owns its tasks: leaving the block waits for all of them. ------------------
def fetch(name: str, delay: float) -> str:
    greenrt.sleep(delay)
    return f"{name} after {delay * 1000:.0f} ms"


def regions() -> None:
    banner("regions: no task outlives its region")
    with greenrt.region(name="fetchers") as r:
        tasks = [r.spawn(fetch, n, d) for n, d in (("users", 0.03), ("orders", 0.01), ("stock", 0.02))]
    for t in tasks:
        print(f"  task {t.id} {t.name:<6} -> {t.outcome!r}")
    print(f"  region stats: {r.statistics()['state']}, {r.statistics()['completed']} completed")


# 2. Cancellation carries a reason; cleanup may block; the scope catches its own. -------
def worker(log: list) -> None:
    try:
        greenrt.sleep_forever()
    except Cancelled as c:
        log.append(f"worker drained: reason={c.reason}")
        greenrt.sleep(0.005)  # cleanup can still block while draining (e.g. send a close frame)
        log.append("worker cleanup finished")
        raise


def failing() -> None:
    greenrt.sleep(0.01)
    raise ConnectionError("upstream refused")


def cancellation() -> None:
    banner("cancellation: request -> drain -> finalize, with reasons")
    log: list[str] = []
    try:
        with greenrt.region(name="fail-fast") as r:
            w = r.spawn(worker, log)
            r.spawn(failing)
    except ExceptionGroup as eg:
        print(f"  region raised {eg!r}")
    for line in log:
        print("  " + line)
    print(f"  worker outcome: {w.outcome!r}")

    with greenrt.move_on_after(0.02) as scope:
        greenrt.sleep(10)
    print(f"  move_on_after: cancelled_caught={scope.cancelled_caught}, reason kind={scope.reason.kind}")


# 3. Budgets: deadlines, poll quotas and cost quotas, enforced at checkpoints. ----------
def busy_loop(counter: list) -> None:
    while True:
        greenrt.checkpoint()
        counter.append(1)


def streamer(sent: list) -> None:
    for chunk in range(1000):
        greenrt.charge(4096)  # bytes
        greenrt.checkpoint()
        sent.append(chunk)


def budgets() -> None:
    banner("budgets: exhaustion is a cancellation with a reason, never a silent drop")
    counter: list = []
    sent: list = []
    with greenrt.region(name="budgeted") as r:
        a = r.spawn(busy_loop, counter, budget=Budget(poll_quota=100))
        b = r.spawn(streamer, sent, budget=Budget(cost_quota=64 * 1024))
        c = r.spawn(greenrt.sleep, 10, budget=Budget(deadline=greenrt.now() + 0.02))
    print(f"  busy loop:  {len(counter)} checkpoints, then {a.outcome.value.kind}")
    print(f"  streamer:   {len(sent)} chunks of 4 KiB, then {b.outcome.value.kind}")
    print(f"  sleeper:    {c.outcome.value.kind} ({c.outcome.value.message})")


# 4. Obligations: a reserved effect must be committed or aborted. -----------------------
def careful_sender(outbox: list) -> None:
    with greenrt.reserve("send_permit") as permit:
        greenrt.checkpoint()
        outbox.append("message")
        permit.commit()


def sloppy_sender(outbox: list) -> None:
    greenrt.reserve("send_permit")  # reserved, never resolved: a leak
    greenrt.checkpoint()


def obligations(ring: greenrt.TraceRing) -> None:
    banner("obligations: a leaked permit is caught, with where it was reserved")
    outbox: list = []
    try:
        with greenrt.region(policy="collect_all", name="senders") as r:
            r.spawn(careful_sender, outbox)
            r.spawn(sloppy_sender, outbox)
    except ExceptionGroup as eg:
        for exc in eg.exceptions:
            print(f"  {type(exc).__name__}: {exc}")
    leak = ring.events("obligation.leak")[-1]
    print(f"  trace: {leak.kind} task={leak.task} kind={leak.data['kind']} site={leak.data['site']}")


# 5. Networking: a server owns one task per connection; recv after a cancel loses nothing.
def echo(stream) -> None:
    while data := stream.recv(4096):
        stream.send_all(data.upper())


def networking() -> None:
    banner("networking: serve_tcp, and a cancelled recv loses no data")
    listener = net.listen_tcp("127.0.0.1", 0)
    port = listener.address[1]
    with greenrt.region(name="net") as r:
        server = r.spawn(net.serve_listeners, echo, [listener])
        conn = net.open_tcp("127.0.0.1", port)
        with greenrt.move_on_after(0.01) as s:
            conn.recv(4096)  # nothing sent yet: this times out
        print(f"  recv cancelled by {s.reason.kind}; the stream is still usable")
        conn.send_all(b"hello, greenrt")
        print(f"  echo: {conn.recv(4096)!r}")
        conn.close()
        server.cancel("demo over")
    print(f"  server outcome: {server.outcome!r}")


def main(ring: greenrt.TraceRing) -> None:
    regions()
    cancellation()
    budgets()
    obligations(ring)
    networking()
    banner("trace")
    counts: dict[str, int] = {}
    for e in ring:
        counts[e.kind] = counts.get(e.kind, 0) + 1
    print("  " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))


# 6. The lab: the same code under virtual time and seeded schedules. ------------------
def lab_section() -> None:
    banner("lab: a lost update found, recorded and replayed exactly")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from lab_lost_update import transfer_program

    import greenrt.lab as lab

    print(f"  real hub, default schedule: balance {greenrt.run(transfer_program)} (looks fine)")
    trace = os.path.join(tempfile.gettempdir(), "greenrt_demo_trace.jsonl")
    for seed in range(50):
        res = lab.run(transfer_program, seed=seed, record=trace)
        if not res.ok:
            print(f"  seed {seed}: {res.error!r}")
            again = lab.replay(trace)
            print(f"  replay of {trace}: diverged={again.divergence is not None}, "
                  f"same failure={str(again.error) == str(res.error)}")
            print(f"  try: .venv/bin/greenrt-lab show {trace}")
            return
    print("  no failing schedule in 50 seeds")


if __name__ == "__main__":
    ring = greenrt.TraceRing(capacity=100_000)
    greenrt.run(main, ring, instruments=[ring])
    lab_section()
