"""greenrt.run_process / open_process against real child processes.

"Reaped" is checked with ``os.waitpid(pid, WNOHANG)`` raising ``ChildProcessError``
(no such child: no zombie); fd leaks by counting ``/proc/self/fd``. No timing
thresholds: the cancelled ``sleep 10`` is checked by its exit signal, which is
SIGTERM only if the termination path ran, and by the child being gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

import greenrt


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def reaped(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_capture_stdout_stderr_and_feed_stdin():
    def main():
        return greenrt.run_process(
            ["sh", "-c", "cat; echo out; echo err >&2"], stdin=b"in\n",
            capture_stdout=True, capture_stderr=True)

    r = greenrt.run(main)
    assert r.returncode == 0
    assert r.stdout == b"in\nout\n" and r.stderr == b"err\n"


def test_large_output_both_pipes_concurrently():
    # more than a pipe buffer on both streams at once: a sequential reader would
    # deadlock with the child
    code = "import sys; sys.stdout.write('o'*300000); sys.stderr.write('e'*300000)"

    def main():
        return greenrt.run_process([sys.executable, "-c", code], capture_stdout=True,
                                   capture_stderr=True)

    r = greenrt.run(main)
    assert r.stdout == b"o" * 300000 and r.stderr == b"e" * 300000


def test_nonzero_exit_raises_with_check_and_not_without():
    def main():
        with pytest.raises(subprocess.CalledProcessError) as ei:
            greenrt.run_process(["sh", "-c", "echo bad; exit 3"], capture_stdout=True)
        assert ei.value.returncode == 3 and ei.value.output == b"bad\n"
        r = greenrt.run_process(["sh", "-c", "exit 4"], check=False)
        assert r.returncode == 4

    greenrt.run(main)


def test_cancelled_sleep_is_terminated_within_the_grace_and_reaped():
    before = fds()
    seen = {}

    def main():
        with greenrt.move_on_after(0.05) as s:
            greenrt.run_process(["sleep", "10"], capture_stdout=True, capture_stderr=True)
        assert s.cancelled_caught

    hooked = []

    real_open = greenrt._process.open_process

    def spy(*a, **kw):
        p = real_open(*a, **kw)
        hooked.append(p)
        return p

    greenrt._process.open_process = spy
    try:
        greenrt.run(main)
    finally:
        greenrt._process.open_process = real_open
    (p,) = hooked
    seen["rc"] = p._popen.returncode
    assert seen["rc"] == -signal.SIGTERM  # ended by the SIGTERM, not the SIGKILL
    assert reaped(p.pid)
    assert fds() == before


def test_child_ignoring_sigterm_is_killed_after_the_grace():
    hooked = []
    real_open = greenrt._process.open_process

    def spy(*a, **kw):
        p = real_open(*a, **kw)
        hooked.append(p)
        return p

    def main():
        r, w = os.pipe()
        try:
            def child():
                # the child tells us (on fd w) once it ignores SIGTERM
                code = ("import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                        f"os.write({w}, b'ready\\n'); time.sleep(10)")
                greenrt.run_process([sys.executable, "-c", code], pass_fds=(w,), grace=0.1)

            with greenrt.region() as reg:
                reg.spawn(child)
                greenrt.lowlevel.wait_readable(r)
                assert os.read(r, 10) == b"ready\n"
                reg.cancel()
        finally:
            os.close(r)
            os.close(w)

    greenrt._process.open_process = spy
    try:
        greenrt.run(main)
    finally:
        greenrt._process.open_process = real_open
    (p,) = hooked
    assert p._popen.returncode == -signal.SIGKILL
    assert reaped(p.pid)


def test_region_cancel_terminates_the_child():
    pids = []

    def runner():
        with greenrt.open_process(["sleep", "10"]) as p:
            pids.append(p.pid)
            p.wait()

    def main():
        with greenrt.region() as r:
            r.spawn(runner)
            greenrt.sleep(0.02)
            r.cancel()

    greenrt.run(main)
    assert pids and reaped(pids[0])


def test_open_process_pipes_and_wait():
    def main():
        with greenrt.open_process(["tr", "a-z", "A-Z"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE) as p:
            p.stdin.send_all(b"hello")
            p.stdin.close()
            out = b""
            while chunk := p.stdout.receive_some():
                out += chunk
            assert p.wait() == 0
        assert out == b"HELLO"
        assert p.returncode == 0
        with pytest.raises(TypeError):
            greenrt.open_process(["true"], text=True)

    greenrt.run(main)


def test_two_processes_overlap():
    # each child waits for a byte the other task sends only after starting its own
    # child: possible only if the first wait did not block the hub
    def main():
        r1, w1 = os.pipe()
        order = []

        def first():
            greenrt.run_process([sys.executable, "-c", f"import os; os.read({r1}, 1)"],
                                pass_fds=(r1,))
            order.append("first done")

        def second():
            greenrt.sleep(0.01)
            os.write(w1, b"x")
            order.append("second wrote")

        with greenrt.region() as r:
            r.spawn(first)
            r.spawn(second)
        os.close(r1)
        os.close(w1)
        assert order == ["second wrote", "first done"]

    greenrt.run(main)


def test_waiting_for_a_child_is_not_a_deadlock():
    def main():
        return greenrt.run_process(["sh", "-c", "sleep 0.05; echo done"], capture_stdout=True).stdout

    assert greenrt.run(main) == b"done\n"
