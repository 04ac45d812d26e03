"""greenrt's logger tree (issue 21): silent unless the application configures logging,
and every failure in a detached place logged exactly once."""

import logging
import os
import subprocess
import sys
import textwrap

import greenrt
from greenrt import Cancelled, _log

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A program whose every detached failure is one the runtime logs: an obligation leak
# under the ``log`` policy, a race loser failing after the winner, a done-callback
# raising, an on_abort hook raising while its leaked obligation is aborted.
_PROGRAM = textwrap.dedent("""
    import sys
    import greenrt

    def leaker():
        greenrt.reserve("demo_permit")

    def bad_hook_leaker():
        greenrt.reserve("hooked", on_abort=lambda reason: 1 / 0)

    def winner():
        return "won"

    def late_loser():
        try:
            greenrt.sleep_forever()
        except greenrt.Cancelled:
            raise ValueError("loser failed late")

    def main():
        with greenrt.region(leak_policy="log") as r:
            r.spawn(leaker)
            r.spawn(bad_hook_leaker)
            t = r.spawn(winner)
            t.add_done_callback(lambda task: [][1])
        assert greenrt.race(winner, late_loser) == "won"

    if sys.argv[1:] == ["configured"]:
        import logging
        logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    greenrt.run(main)
    sys.stdout.write("ok\\n")
""")


def _run_program(*args):
    return subprocess.run([sys.executable, "-c", _PROGRAM, *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)


def test_nothing_reaches_stderr_unless_logging_is_configured():
    """Without the NullHandler on ``greenrt``, Python's last-resort handler would print
    each of these WARNING/ERROR records to stderr."""
    quiet = _run_program()
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == "ok\n"
    assert quiet.stderr == ""
    loud = _run_program("configured")
    assert loud.returncode == 0, loud.stderr
    err = loud.stderr
    assert "greenrt WARNING" in err and "leaked obligation" in err and "demo_permit" in err
    assert "greenrt ERROR race loser 1 failed after the winner (0) was decided" in err
    assert "ValueError: loser failed late" in err  # with its traceback
    assert "done callback" in err and "IndexError" in err
    assert "on_abort hook of leaked obligation" in err and "ZeroDivisionError" in err


def test_the_logger_tree():
    top = logging.getLogger("greenrt")
    assert _log.logger is top
    assert any(isinstance(h, logging.NullHandler) for h in top.handlers)
    assert _log.get_logger("http").name == "greenrt.http"
    assert _log.get_logger("http").parent is top
    assert _log.get_logger() is top


def _records(caplog, needle):
    return [r for r in caplog.records if needle in r.getMessage()]


def test_leak_under_log_policy_is_logged_once(run, caplog):
    caplog.set_level(logging.WARNING, logger="greenrt")

    def main():
        with greenrt.region(leak_policy="log") as r:
            r.spawn(lambda: greenrt.reserve("one_permit"))

    run(main)
    recs = _records(caplog, "leaked obligation")
    assert len(recs) == 1 and "one_permit" in recs[0].getMessage()
    assert recs[0].name == "greenrt" and recs[0].levelno == logging.WARNING


def test_race_losers_late_exception_is_logged_once(run, caplog):
    caplog.set_level(logging.WARNING, logger="greenrt")

    def loser():
        try:
            greenrt.sleep_forever()
        except Cancelled:
            raise KeyError("late") from None

    def main():
        return greenrt.race(lambda: "w", loser)

    assert run(main) == "w"
    recs = _records(caplog, "race loser")
    assert len(recs) == 1
    assert recs[0].levelno == logging.ERROR and recs[0].exc_info[0] is KeyError


def test_done_callback_error_is_logged_once_and_does_not_break_the_hub(run, caplog):
    caplog.set_level(logging.WARNING, logger="greenrt")
    later = []

    def main():
        with greenrt.region() as r:
            t = r.spawn(lambda: 7)
            t.add_done_callback(lambda task: 1 / 0)
            t.add_done_callback(lambda task: later.append(task.outcome.value))
        return t.join()

    assert run(main) == 7
    assert later == [7]  # the callback after the failing one still ran
    recs = _records(caplog, "done callback")
    assert len(recs) == 1 and recs[0].exc_info[0] is ZeroDivisionError


def test_on_abort_hook_error_during_leak_is_logged_once(run, caplog):
    caplog.set_level(logging.WARNING, logger="greenrt")

    def main():
        with greenrt.region(leak_policy="log") as r:
            r.spawn(lambda: greenrt.reserve("hooked", on_abort=lambda why: {}["x"]))

    run(main)
    recs = _records(caplog, "on_abort hook of leaked obligation")
    assert len(recs) == 1 and recs[0].exc_info[0] is KeyError
    assert len(_records(caplog, "leaked obligation")) == 2  # the leak itself, and the hook
