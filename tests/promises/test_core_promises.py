"""Core promises, tried adversarially: code that swallows every cancellation.

docs/semantics.md promises that "code that swallows ``Cancelled`` cannot run forever,
cannot freeze the hub and cannot hold its region open". tests/greenrt/test_liveness.py
tries that for a plain task; these tests try it where the swallower sits inside the
other cancellation-driven constructs the docs make promises about: a region finalizer
(``r.defer``), a ``race`` loser, a ``join`` sibling of a failing task, a ``fail_after``
/ ``move_on_after`` body, a region budget's deadline, a shielded scope opened during
cleanup, and a swallower whose own children swallow too.

Each scenario runs in a subprocess: without the abandonment mechanism it spins forever
in one checkpoint loop, so the only way to see the failure without hanging the suite is
a process the test can kill. The timeout is a hang detector, not a speed threshold.
A ``ticker`` task counts its turns while the swallower overruns: the hub kept running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import greenrt

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PROGRAM = r'''
import json, sys, greenrt
scenario = sys.argv[1]
ticks = [0]

def swallow():
    """Never lets a cancellation end it: catches everything, checkpoints again."""
    while True:
        try:
            greenrt.checkpoint()
        except BaseException:
            pass

def ticker():
    while True:
        greenrt.checkpoint()
        ticks[0] += 1

def winner():
    greenrt.sleep(0.001)
    return "won"

def fail():
    greenrt.sleep(0.001)
    raise ValueError("sibling failed")

def nested():
    # a swallower whose own region's children swallow too
    with greenrt.region(policy="collect_all") as r:
        r.spawn(swallow, name="grandchild-1")
        r.spawn(swallow, name="grandchild-2")
        swallow()

def shielded_cleanup():
    # cleanup opens a shielded scope (a mask) and a fresh deadline scope, and swallows inside
    try:
        greenrt.sleep_forever()
    except BaseException:
        while True:
            try:
                with greenrt.cancel_scope(shield=True):
                    with greenrt.move_on_after(1000):
                        swallow()
            except BaseException:
                pass

def body():
    if scenario == "finalizer":
        with greenrt.region(finalizer_budget=greenrt.FinalizerBudget(seconds=0.05, polls=50)) as r:
            r.defer(swallow)
        return "region closed"
    if scenario == "race":
        return greenrt.race(winner, swallow)
    if scenario == "join":
        return greenrt.join(fail, swallow)
    if scenario == "fail_after":
        with greenrt.fail_after(0.005):
            swallow()
    if scenario == "move_on_after":
        with greenrt.move_on_after(0.005):
            swallow()
        return "moved on"
    if scenario == "region_deadline":
        with greenrt.region(budget=greenrt.Budget(deadline=greenrt.now() + 0.005)) as r:
            r.spawn(swallow)
        return "region closed"
    if scenario == "nested":
        with greenrt.region() as r:
            t = r.spawn(nested)
            greenrt.sleep(0.005)
            t.cancel("stop")
        return "region closed"
    if scenario == "shielded_cleanup":
        with greenrt.region() as r:
            t = r.spawn(shielded_cleanup)
            greenrt.sleep(0.005)
            t.cancel("stop")
        return "region closed"
    raise AssertionError(scenario)

def main():
    try:
        with greenrt.region(policy="collect_all") as r:
            tick = r.spawn(ticker, name="ticker")
            b = r.spawn(body, name="body")
            while not b.done:
                greenrt.sleep(0.001)
            tick.cancel("done")
    except BaseExceptionGroup:
        pass   # the body's failure, read from its outcome below
    out = b.outcome
    exc = out.value if out.kind.name != "OK" else None
    leaves = []
    def walk(e):
        if isinstance(e, BaseExceptionGroup):
            for x in e.exceptions:
                walk(x)
        elif e is not None:
            leaves.append(type(e).__name__)
    walk(exc)
    return {"kind": out.kind.name, "value": repr(out.value)[:200], "leaves": sorted(leaves),
            "ticks": ticks[0], "abandoned": r.statistics()["abandoned"]}

try:
    res = greenrt.run(main)
except BaseException as e:   # the report must still come out
    res = {"run_raised": repr(e)[:300]}
print(json.dumps(res), flush=True)
'''

#: scenario -> (outcome kind of the scenario's task, the leaf exception types it carries)
EXPECTED = {
    # the finalizer runs in the task that closes the region: that task is abandoned
    "finalizer": ("PANICKED", ["CleanupOverrun"]),
    # race returns once the loser is abandoned; the loser's panic is the region's failure
    "race": ("ERR", ["CleanupOverrun"]),
    "join": ("ERR", ["CleanupOverrun", "ValueError"]),
    "fail_after": ("PANICKED", ["CleanupOverrun"]),
    "move_on_after": ("PANICKED", ["CleanupOverrun"]),
    "region_deadline": ("ERR", ["CleanupOverrun"]),
    "nested": ("ERR", ["CleanupOverrun"]),
    "shielded_cleanup": ("ERR", ["CleanupOverrun"]),
}


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_a_swallowed_cancellation_cannot_hold_a_construct_open(tmp_path, scenario):
    script = tmp_path / "prog.py"
    script.write_text(PROGRAM)
    r = subprocess.run([sys.executable, str(script), scenario], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "PYTHONPATH": ROOT})
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert "run_raised" not in res, res
    kind, leaves = EXPECTED[scenario]
    assert (res["kind"], res["leaves"]) == (kind, leaves), res
    assert res["ticks"] > 0          # the hub kept running other tasks


# -- cause chains through real nesting ---------------------------------------------------
#
# greenrt/_reason.py: "a cause chain is bounded (MAX_CAUSE_DEPTH): deeper causes are cut
# off"; docs/semantics.md: a task further down "receives parent_cancelled whose cause is
# the original (a shutdown stays shutdown)". tests/greenrt/test_algebra.py builds chains
# by hand; here a cancellation travels down 60 real nested regions.

DEPTH = 60


def _nest(level, seen):
    if level == 0:
        try:
            greenrt.sleep_forever()
        except greenrt.Cancelled as c:
            seen.append(c.reason)
            raise
    with greenrt.region() as r:
        r.spawn(_nest, level - 1, seen)


def _innermost_reason(kind):
    seen = []

    def main():
        with greenrt.region() as top:
            top.spawn(_nest, DEPTH, seen)
            greenrt.sleep(0.001)
            top.cancel(greenrt.CancelReason(greenrt.CancelKind(kind), message="from the top"))

    greenrt.run(main)
    (reason,) = seen
    return reason


#: greenrt._reason.MAX_CAUSE_DEPTH (read by the tests in tests/greenrt; repeated here
#: so this file stays on the public API)
MAX_CAUSE_DEPTH = 8


@pytest.mark.parametrize("kind", ["user", "shutdown"])
def test_a_cancellation_down_sixty_regions_keeps_a_bounded_cause_chain(kind):
    reason = _innermost_reason(kind)
    assert reason.depth <= MAX_CAUSE_DEPTH
    n, r = 0, reason
    while r is not None:
        n, r = n + 1, r.cause
    assert n == reason.depth <= MAX_CAUSE_DEPTH
    if kind == "shutdown":
        assert reason.kind is greenrt.CancelKind.SHUTDOWN   # "a shutdown stays shutdown"
    else:
        assert reason.kind is greenrt.CancelKind.PARENT_CANCELLED


def test_the_cause_chain_of_a_deep_task_still_ends_at_the_original_reason():
    root = _innermost_reason("user")
    while root.cause is not None:
        root = root.cause
    assert root.kind is greenrt.CancelKind.USER and root.message == "from the top"
