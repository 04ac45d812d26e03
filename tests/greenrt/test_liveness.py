"""Bounded cleanup for real (issue 12 §1): a task that swallows ``Cancelled`` cannot
freeze the hub, hold its region open, or ignore SIGINT/SIGTERM.

The programs run in subprocesses: on code without the fix they spin forever at 100%
CPU inside one checkpoint loop (the hub, timers and signals never run again), so the
only way to observe the failure without hanging the suite is a process that the test
can kill. The subprocess timeout is a hang detector, not a speed threshold."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

import greenrt

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SWALLOWER = r'''
import json, sys, greenrt
variant = sys.argv[1]
ticks = [0]
seen = {}

def ticker():
    # a checkpoint per tick, not a timer: it must get turns while the swallower
    # loops, however loaded the machine is (a 5 ms sleep could miss a short overrun)
    while True:
        greenrt.checkpoint()
        ticks[0] += 1

def swallower():
    while True:
        if variant == "checkpoint":
            try:
                greenrt.checkpoint()
            except greenrt.Cancelled:
                pass
        elif variant == "sleep":
            try:
                greenrt.sleep(0.001)
            except greenrt.Cancelled:
                pass
        elif variant == "masked":
            try:
                greenrt.checkpoint()
            except greenrt.Cancelled:
                try:
                    with greenrt.masked():   # "cleanup I/O", then swallow the hard stop too
                        greenrt.sleep(0.001)
                except greenrt.Cancelled:
                    pass
        elif variant == "base":
            try:
                greenrt.sleep(0.001)
            except BaseException:
                pass

def main():
    events = []
    hub = greenrt.lowlevel.current_hub()
    hub.add_instrument(lambda ev: events.append(ev) if ev.kind == "cancel.abandoned" else None)
    with greenrt.region(policy="collect_all") as r:
        r.spawn(ticker, name="ticker")
        s = r.spawn(swallower, name="swallower")
        greenrt.sleep(0.02)
        s.cancel("stop")
        seen["at_cancel"] = ticks[0]
        s.add_done_callback(lambda t: seen.__setitem__("at_done", ticks[0]))
        while not s.done:
            greenrt.sleep(0.01)
        out = s.outcome
        print(json.dumps({"outcome": repr(out), "kind": type(out.value).__name__,
                          "site": out.value.site, "ticks_during_overrun": seen["at_done"] - seen["at_cancel"],
                          "abandoned": r.statistics()["abandoned"], "events": len(events),
                          "event_site": events[0].data.get("site") if events else None}), flush=True)
        r.cancel("done")

try:
    greenrt.run(main)
except BaseExceptionGroup:
    pass  # the abandoned task's CleanupOverrun is one of the region's failures
'''


def _run_script(tmp_path, text, *args, timeout=60):
    script = tmp_path / "prog.py"
    script.write_text(text)
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": ROOT})


@pytest.mark.parametrize("variant", ["checkpoint", "sleep", "masked", "base"])
def test_a_task_that_swallows_cancellation_is_abandoned_and_the_hub_keeps_running(tmp_path, variant):
    r = _run_script(tmp_path, SWALLOWER, variant)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["kind"] == "CleanupOverrun" and res["outcome"].startswith("panicked(")
    assert res["ticks_during_overrun"] > 0   # the ticker ran while the swallower looped
    assert res["abandoned"] == 1 and res["events"] == 1
    assert res["site"].startswith(str(tmp_path)) and res["event_site"] == res["site"]


SIGNAL_SERVER = r'''
import sys
import greenrt
from greenrt import net

def handler(s):
    s.send_all(b"hello\n")
    while True:   # a handler that never lets a cancellation end it
        try:
            s.recv(100)
        except BaseException:
            pass

def ready(server):
    print(server.addresses[0][1], flush=True)

greenrt.run(lambda: net.serve_tcp(handler, "127.0.0.1", 0, on_ready=ready))
'''


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_end_a_server_whose_handler_swallows_cancellation(tmp_path, sig):
    script = tmp_path / "server.py"
    script.write_text(SIGNAL_SERVER)
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": ROOT})
    try:
        port = int(p.stdout.readline())
        c = socket.create_connection(("127.0.0.1", port))
        c.settimeout(30)
        assert c.recv(100) == b"hello\n"
        p.send_signal(sig)
        rc = p.wait(60)   # a hang detector: before the fix this process never ended
        c.close()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert rc != 0 and rc != -signal.SIGKILL


def test_abandoned_task_reports_its_obligations_and_its_region_closes():
    def swallower():
        greenrt.reserve("lease", name="never resolved")
        while True:
            try:
                greenrt.checkpoint()
            except greenrt.Cancelled:
                pass

    def main():
        with pytest.raises(BaseExceptionGroup) as ei:
            with greenrt.region() as r:
                t = r.spawn(swallower)
                greenrt.sleep(0.01)
                t.cancel("stop")
        (exc,) = ei.value.exceptions
        assert isinstance(exc, greenrt.CleanupOverrun)
        assert exc.reason.kind == greenrt.CancelKind.USER and exc.budget.grace_polls == 10
        assert any("leaked 1 obligation" in n for n in getattr(exc, "__notes__", []))
        return r.statistics()

    st = greenrt.run(main)
    assert st["abandoned"] == 1 and st["live"] == 0 and st["state"] == "closed"


def test_children_of_an_abandoned_task_are_cancelled_before_it_completes():
    order = []

    def child():
        try:
            greenrt.sleep_forever()
        finally:
            order.append("child done")

    def swallower():
        with greenrt.region() as inner:
            inner.spawn(child)
            while True:
                try:
                    greenrt.checkpoint()
                except greenrt.Cancelled:
                    pass

    def main():
        with greenrt.region(policy="collect_all") as r:
            t = r.spawn(swallower)
            t.add_done_callback(lambda _: order.append("swallower done"))
            greenrt.sleep(0.01)
            t.cancel("stop")
            while not t.done:
                greenrt.sleep(0.01)
            r.cancel("over")
        return t.outcome

    with pytest.raises(BaseExceptionGroup):
        greenrt.run(main)
    assert order == ["child done", "swallower done"]
