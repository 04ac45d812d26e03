"""Task dumps (issue 21): ``lowlevel.dump()`` / ``task_snapshot()``, the dump signal,
and the real hub's ``Deadlock`` report in the same format."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest

import greenrt
from greenrt import lowlevel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.abspath(__file__)


def _walk_tasks(snap):
    todo = list(snap["regions"])
    while todo:
        r = todo.pop()
        for t in r["tasks"]:
            yield r, t
            todo.extend(t["regions"])


def test_dump_describes_every_task(run):
    out = {}

    def waiter(ev):
        ev.wait()

    def with_deadline(ev):
        with greenrt.move_on_after(60):
            ev.wait()

    def main():
        ev = greenrt.Event()
        lock = greenrt.Lock()

        def holder():
            with lock:
                ev.wait()

        def blocked_on_lock():
            with lock:
                pass

        with greenrt.region(name="workers", budget=greenrt.Budget(poll_quota=1000)) as r:
            r.spawn(waiter, ev, name="waiter")
            r.spawn(with_deadline, ev, name="deadliner")
            r.spawn(holder, name="holder")
            r.spawn(blocked_on_lock, name="blocked")
            r.spawn(lambda: None, name="never-started")
            for _ in range(3):
                greenrt.checkpoint()
            out["text"] = lowlevel.dump()
            out["snap"] = lowlevel.task_snapshot()
            ev.set()

    run(main)
    text, snap = out["text"], out["snap"]
    json.dumps(snap)  # the structured form is plain data
    tasks = {t["name"]: (r, t) for r, t in _walk_tasks(snap)}
    assert set(tasks) >= {"waiter", "deadliner", "holder", "blocked"}
    main_region, main_task = next((r, t) for r, t in _walk_tasks(snap) if t["id"] == snap["current"])
    assert main_task["sched"] == "current" and main_region["name"] == "root"
    assert any(f"{HERE}:" in fr and "in main" in fr for fr in main_task["stack"])
    workers = main_task["regions"][0]
    assert workers["name"] == "workers" and workers["state"] == "open"
    assert workers["opened_at"].startswith(HERE + ":")
    w = tasks["waiter"][1]
    assert w["sched"] == "parked" and w["waiting_for"] == "Event.wait"
    assert any("in waiter" in fr for fr in w["stack"])
    assert w["polls_left"] is not None and 0 < w["polls_left"] <= 1000
    d = tasks["deadliner"][1]
    # a duration from now, not a raw monotonic reading
    assert d["deadline_in"] is not None and 0 < d["deadline_in"] <= 60
    b = tasks["blocked"][1]
    assert b["waiting_for"].startswith("Lock.acquire") and b["held_by"] == tasks["holder"][1]["id"]
    # the text form
    assert "region 2 (workers): open, fail_fast, opened at " + HERE in text
    assert re.search(r"task \d+ \(waiter\): waits for Event\.wait; \d+ polls left", text)
    assert re.search(r"task \d+ \(deadliner\): waits for Event\.wait; deadline in \d+(\.\d+)?s", text)
    assert re.search(rf"task \d+ \(blocked\): waits for Lock\.acquire.*, held by task "
                     rf"{tasks['holder'][1]['id']}", text)
    assert re.search(r"task 1 \([^)]*\): running now", text)
    assert f"{HERE}:" in text


def test_dump_shows_a_pending_cancellation(run):
    out = {}

    def main():
        with greenrt.region() as r:
            t = r.spawn(greenrt.sleep_forever, name="sleeper")
            greenrt.checkpoint()
            t.cancel("stop now")
            out["text"] = lowlevel.dump()

    run(main)
    assert re.search(r"task \d+ \(sleeper\): cancel requested; ready to run; cancel pending: "
                     r"user \(stop now\)", out["text"]), out["text"]


def test_dump_needs_a_hub():
    with pytest.raises(greenrt.NoHubError):
        lowlevel.dump()


def test_dump_signal_is_off_by_default():
    seen = []

    def main():
        seen.append(signal.getsignal(signal.SIGUSR1))

    greenrt.run(main)
    assert seen == [signal.SIG_DFL]


_SIGNAL_PROGRAM = textwrap.dedent("""
    import logging, os, signal, sys
    import greenrt

    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")

    def parked_forever(ev):
        ev.wait()

    def busy():
        # a CPU loop that never checkpoints: the dump still sees it, since it is
        # taken in the signal handler, in this very frame
        os.kill(os.getpid(), signal.SIGUSR1)
        n = 0
        for _ in range(200_000):
            n += 1
        return n

    def main():
        ev = greenrt.Event()
        with greenrt.region(name="pool") as r:
            r.spawn(parked_forever, ev, name="parked-one")
            greenrt.checkpoint()
            r.spawn(busy, name="busy-loop").join()
            ev.set()
        sys.stdout.write("done\\n")

    greenrt.run(main, dump_signal=signal.SIGUSR1)
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL  # restored
""")


def test_dump_signal_logs_a_dump_of_a_busy_program():
    p = subprocess.run([sys.executable, "-c", _SIGNAL_PROGRAM], capture_output=True,
                       text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "done\n"
    err = p.stderr
    assert "greenrt WARNING greenrt task dump on signal SIGUSR1" in err
    assert "region 2 (pool): open, fail_fast, opened at <string>:" in err
    assert re.search(r"task \d+ \(parked-one\): waits for Event\.wait", err)
    assert re.search(r"task \d+ \(busy-loop\): running now\n\s+<string>:\d+ in busy", err)
    assert re.search(r"task 1 \(main\): waits for task \d+ \(busy-loop\) to complete", err)


def test_deadlock_report_is_a_task_dump():
    def main():
        a = greenrt.Lock()
        ev = greenrt.Event()

        def holder():
            with a:
                ev.wait()

        with greenrt.region(name="workers") as r:
            r.spawn(holder, name="holder")
            greenrt.checkpoint()
            with a:
                pass

    with pytest.raises(greenrt.Deadlock) as ei:
        greenrt.run(main)
    d = ei.value
    text = str(d)
    assert text.startswith("deadlock: every task is blocked and nothing can wake one\n")
    assert "region 2 (workers): open, fail_fast, opened at " + HERE in text
    assert re.search(r"task 1 \([^)]*main\): waits for Lock\.acquire.*, held by task 2", text)
    assert re.search(r"task 2 \(holder\): waits for Event\.wait\n\s+" + re.escape(HERE), text)
    assert d.snapshot is not None and d.snapshot["tasks"] == 2
    assert d.graph["blocked"]  # the wait-for graph is still there
