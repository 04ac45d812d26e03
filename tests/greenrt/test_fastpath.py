"""The hub's fast paths (``greenrt._fastpath``): every inlined copy matches its one
template, nothing outside the copies and the general path touches the lanes, and a
program runs the same steps with the fast paths on (untraced) and off (traced)."""

import os
import re
import shutil
import socket

import greenrt
from greenrt import _fastpath, lowlevel

PKG = os.path.dirname(greenrt.__file__)


def test_every_copy_matches_its_template():
    assert _fastpath.check() == []


def test_every_template_has_a_copy():
    assert {name for _, name in _fastpath.SITES} == set(_fastpath.TEMPLATES)


def _scratch(tmp_path):
    dst = tmp_path / "greenrt"
    shutil.copytree(PKG, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def test_a_copy_edited_by_hand_is_reported(tmp_path):
    pkg = _scratch(tmp_path)
    path = pkg / "_checkpoint.py"
    src = path.read_text()
    # the drift issue 11 found, re-created: lower the countdown before deciding
    edited = src.replace("        cd = hub._poll_countdown - 1\n",
                         "        cd = hub._poll_countdown - 1\n        hub._poll_countdown = cd\n", 1)
    assert edited != src
    path.write_text(edited)
    problems = _fastpath.check(pkg=str(pkg))
    assert len(problems) == 1 and "_checkpoint.py" in problems[0] and "yield" in problems[0]
    # --write puts the template back
    assert _fastpath.check(write=True, pkg=str(pkg)) == []
    assert _fastpath.check(pkg=str(pkg)) == []
    assert path.read_text() == src


def test_a_copy_removed_or_unbalanced_is_reported(tmp_path):
    pkg = _scratch(tmp_path)
    path = pkg / "_region.py"
    src = path.read_text()
    path.write_text(re.sub(r"\n *# end fastpath schedule\n", "\n", src))
    assert any("never closed" in p for p in _fastpath.check(pkg=str(pkg)))
    lines = src.splitlines(keepends=True)
    b = next(i for i, ln in enumerate(lines) if "# fastpath schedule:" in ln)
    e = next(i for i, ln in enumerate(lines) if "# end fastpath schedule" in ln)
    path.write_text("".join(lines[:b] + lines[b + 1:e] + lines[e + 1:]))  # an unmarked copy
    assert any("0 copies of fastpath schedule" in p for p in _fastpath.check(pkg=str(pkg)))


_LANE_FIELDS = re.compile(r"\._(poll_countdown|ready|cancel_lane|timed)\b")


def test_lane_fields_are_touched_only_by_copies_and_the_general_path():
    """An inlined fast path that is not a marked copy would escape the check above:
    outside the copies, only ``Hub`` itself (the general path) touches the lanes and
    the poll countdown."""
    offenders = []
    for fname in sorted(os.listdir(PKG)):
        if not fname.endswith(".py") or fname == "_fastpath.py":
            continue
        path = os.path.join(PKG, fname)
        lines = open(path, encoding="utf-8").read().splitlines()
        inside = set()
        for _, b, e, _ in _fastpath.find_copies(path):
            inside.update(range(b, e + 1))
        hub_class = range(0)
        if fname == "_hub.py":
            start = next(i for i, ln in enumerate(lines) if ln.startswith("class Hub:"))
            end = next(i for i, ln in enumerate(lines) if ln.startswith("class RealHub("))
            hub_class = range(start, end)
        for i, ln in enumerate(lines):
            if i in inside or i in hub_class or ln.lstrip().startswith("#"):
                continue
            if _LANE_FIELDS.search(ln):
                offenders.append(f"{fname}:{i + 1}: {ln.strip()}")
    assert offenders == []


# -- the fast paths equal the general path ---------------------------------------------


def test_checkpoint_before_a_new_task_lowers_the_poll_countdown_once(run):
    """The drift issue 11 found: ``checkpoint()`` with a not-yet-started task at the
    head of the ready lane lowered the poll countdown twice (once in its own copy,
    once more in the hub's). One hand-off lowers it by one, on either path."""
    seen = []

    def main():
        hub = lowlevel.current_hub()
        with greenrt.region() as r:
            hub._poll_countdown = 50  # far from a poll on both paths
            r.spawn(lambda: seen.append(hub._poll_countdown))
            greenrt.checkpoint()
            seen.append(hub._poll_countdown)

    run(main)
    assert seen[0] == 49
    assert seen[1] < 49  # the main task ran again only after a later hand-off


def _program():
    """A program that exercises every fast-path site: spawns (with and without a
    deadline), checkpoints with a new or a started task next, a lone task yielding,
    channel send/recv/reserve with waits, a contended Lock, an Event, a socket read
    (driver park and wake-up), cancellations (the cancel lane). It returns the log
    of (step, poll countdown, polls so far, the cancel and timed lanes' streaks) that
    each task writes as it runs."""
    hub = lowlevel.current_hub()
    log = []

    def note(tag):
        log.append((tag, hub._poll_countdown, hub.stats["polls"], hub._cancel_streak,
                    hub._timed_streak))

    tx, rx = greenrt.channel(2)
    lock = greenrt.Lock()
    ev = greenrt.Event()
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)

    def producer(i):
        for k in range(25):
            if k % 3:
                tx.send((i, k))
            else:
                tx.reserve().send((i, k))
            note(f"p{i}")

    def consumer():
        for _ in range(50):
            rx.recv()
            note("c")

    def locker(i):
        for _ in range(15):
            with lock:
                greenrt.checkpoint()
            note(f"l{i}")

    def spawner():
        with greenrt.region() as r:
            for j in range(40):
                r.spawn(note, f"s{j}")
                greenrt.checkpoint()  # the next ready task may have no greenlet yet
                note("sp")

    def deadliner():
        with greenrt.move_on_after(3600):
            for _ in range(10):
                greenrt.checkpoint()
                note("d")
            with greenrt.region() as r:
                r.spawn(note, "ds")

    def waiter():
        ev.wait()
        note("w")

    def reader():
        for _ in range(5):
            while True:
                try:
                    a.recv(1)
                    break
                except BlockingIOError:
                    lowlevel.wait_readable(a)
            note("r")

    def writer():
        for _ in range(5):
            b.send(b"x")
            for _ in range(3):
                greenrt.checkpoint()
            note("wr")

    def victim():
        try:
            greenrt.sleep_forever()
        finally:
            note("v")

    try:
        with greenrt.region() as r:
            for i in range(2):
                r.spawn(producer, i)
            r.spawn(consumer)
            for i in range(3):
                r.spawn(locker, i)
            r.spawn(spawner)
            r.spawn(deadliner)
            r.spawn(waiter)
            r.spawn(reader)
            r.spawn(writer)
            with greenrt.region() as inner:
                for _ in range(3):
                    inner.spawn(victim)
                greenrt.checkpoint()
                inner.cancel()
            for _ in range(5):
                greenrt.checkpoint()
            ev.set()
        with greenrt.region() as r:
            r.spawn(lambda: [greenrt.checkpoint() for _ in range(200)])  # a lone task
        note("end")
    finally:
        a.close()
        b.close()
    return log


def test_fast_and_general_paths_run_the_same_steps(rec):
    """The same program, traced (every fast path off: the general path) and untraced
    (fast paths on), runs the same steps in the same order with the same poll
    countdown and polls at every step. Before the drift was fixed the countdowns
    parted at the first checkpoint made before a new task."""
    general = greenrt.run(_program, instruments=[rec])

    def fast():
        assert lowlevel.current_hub()._plain
        return _program()

    assert greenrt.run(fast) == general
    assert len(general) > 200
    assert max(p for _, _, p, _, _ in general) > 0  # the countdown ran out: polls happened
    assert max(t for *_, t in general) > 0  # the timed lane's streak was counted

