"""Obligations: reserve / commit / abort, leak detection and its policies."""

import logging

import pytest

import greenrt


def test_leak_is_reported_with_reservation_site(run, rec):
    def leaky():
        greenrt.reserve("lease", name="db-lease")  # line recorded as the site
        greenrt.checkpoint()

    def main():
        with greenrt.region(policy="collect_all") as r:
            t = r.spawn(leaky)
        return t

    with pytest.raises(ExceptionGroup) as ei:
        run(main)
    (leak,) = ei.value.exceptions
    assert isinstance(leak, greenrt.ObligationLeak)
    (ob,) = leak.obligations
    assert ob.kind == "lease" and ob.state == "leaked"
    assert "test_obligation.py" in ob.site and "leaky" in ob.site
    ev = rec.of("obligation.leak")
    assert len(ev) == 1 and ev[0].data["site"] == ob.site


def test_committed_and_aborted_obligations_are_never_reported(run, rec):
    def tidy():
        a = greenrt.reserve("send_permit")
        b = greenrt.reserve("ack")
        greenrt.checkpoint()
        a.commit()
        b.abort("not needed")
        with greenrt.reserve("transaction") as c:
            c.commit()
        with pytest.raises(ValueError):
            with greenrt.reserve("io_op") as d:
                raise ValueError
        assert d.state == "aborted"

    def main():
        with greenrt.region() as r:
            t = r.spawn(tidy)
        return t

    t = run(main)
    assert t.outcome.is_ok
    assert not rec.of("obligation.leak")


def test_hooks_run_exactly_once_and_double_resolution_raises(run):
    calls = []

    def main():
        ob = greenrt.reserve("semaphore_permit", on_commit=lambda: calls.append("c"),
                             on_abort=lambda r: calls.append(("a", r)))
        ob.commit()
        with pytest.raises(greenrt.InvalidStateError):
            ob.commit()
        with pytest.raises(greenrt.InvalidStateError):
            ob.abort()
        ob2 = greenrt.reserve("lease", on_abort=lambda r: calls.append(("a", r)))
        ob2.abort("x")
        ob2.abort("y")  # idempotent
        return calls

    assert run(main) == ["c", ("a", "x")]


def test_leaked_obligation_runs_its_abort_hook(run):
    returned = []

    def leaky():
        greenrt.reserve("semaphore_permit", on_abort=lambda r: returned.append(r))

    def main():
        with greenrt.region(leak_policy="abort") as r:
            t = r.spawn(leaky)
        return t

    t = run(main)
    assert returned == ["leaked"]
    assert t.outcome.is_ok  # policy "abort": silent


def test_log_policy_uses_logger_not_stderr(run, caplog, capfd):
    def main():
        with greenrt.region(leak_policy="log") as r:
            r.spawn(lambda: greenrt.reserve("ack"))

    with caplog.at_level(logging.WARNING, logger="greenrt"):
        run(main)
    assert any("leaked obligation" in m for m in caplog.messages)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_leak_on_failed_task_keeps_the_failure(run):
    def leaky_and_failing():
        greenrt.reserve("lease")
        raise ValueError("original")

    def main():
        with greenrt.region(policy="collect_all") as r:
            t = r.spawn(leaky_and_failing)
        return t

    with pytest.raises(ExceptionGroup) as ei:
        run(main)
    (exc,) = ei.value.exceptions
    assert isinstance(exc, ValueError)
    assert any("leaked" in n for n in exc.__notes__)


def test_cancelled_task_leak_is_still_detected(run, rec):
    def holder():
        greenrt.reserve("lease")
        greenrt.sleep_forever()

    def main():
        with greenrt.region() as r:
            t = r.spawn(holder)
            greenrt.sleep(0)
            t.cancel()
        return t

    t = run(main)
    assert t.outcome.is_cancelled
    assert len(rec.of("obligation.leak")) == 1


def test_region_obligation_must_be_resolved_before_close(run):
    def main():
        with pytest.raises(ExceptionGroup) as ei:
            with greenrt.region() as r:
                r.reserve("transaction")
        assert isinstance(ei.value.exceptions[0], greenrt.ObligationLeak)
        with greenrt.region() as r2:
            ob = r2.reserve("transaction")
            r2.spawn(ob.commit)  # resolved by a child: fine
        return True

    assert run(main)


def test_run_level_default_policy(run):
    def main():
        with greenrt.region() as r:
            t = r.spawn(lambda: greenrt.reserve("ack"))
        return t

    t = run(main, leak_policy="abort")
    assert t.outcome.is_ok
