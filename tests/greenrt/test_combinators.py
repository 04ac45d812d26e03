"""Combinators on regions: losers drained before race returns (asserted on the trace),
outer deadlines win when tighter, retry never sleeps past the deadline.

Times used here only order events (a contestant that sleeps forever vs one that
returns at once; a 10-second timeout vs a 20 ms one); nothing asserts a duration.
"""

import random

import pytest

import greenrt
from greenrt import CancelKind, Cancelled, RetryPolicy, TooSlowError
from greenrt.lowlevel import current_hub


def marker(name):
    current_hub().emit("test.marker", name=name)


def spawned_ids(ring, prefix):
    return {e.data["name"]: e.task for e in ring.events("task.spawn")
            if e.data["name"].startswith(prefix)}


def seq_of(ring, kind, task=None, **data):
    return [e.seq for e in ring.events(kind, task=task)
            if all(e.data.get(k) == v for k, v in data.items())]


# -- join ------------------------------------------------------------------------------


def test_join_returns_results_in_order():
    def a():
        greenrt.sleep(0.002)
        return "a"

    def b():
        return "b"

    assert greenrt.run(lambda: greenrt.join(a, b, lambda: 3)) == ["a", "b", 3]


def test_join_failure_cancels_siblings():
    cleaned = []

    def slow():
        try:
            greenrt.sleep_forever()
        except Cancelled as c:
            cleaned.append(c.reason.kind)
            raise

    def bad():
        raise ValueError("bad")

    def main():
        with pytest.raises(ExceptionGroup) as ei:
            greenrt.join(slow, bad)
        return [type(e).__name__ for e in ei.value.exceptions]

    assert greenrt.run(main) == ["ValueError"]
    assert cleaned == [CancelKind.FAIL_FAST]


# -- race ------------------------------------------------------------------------------


def test_race_losers_cancelled_with_race_lost_and_drained_before_return():
    ring = greenrt.TraceRing(capacity=1_000_000)
    cleanup_done = []

    def fast():
        greenrt.sleep(0)
        return "fast"

    def loser_blocking_cleanup():
        try:
            greenrt.sleep_forever()
        except Cancelled:
            # Cleanup that blocks: several checkpoints and a real sleep.
            for _ in range(5):
                greenrt.sleep(0)
            greenrt.sleep(0.005)
            cleanup_done.append("blocking")
            raise

    def loser_plain():
        greenrt.sleep_forever()

    def main():
        v = greenrt.race(fast, loser_blocking_cleanup, loser_plain)
        marker("race returned")
        return v

    assert greenrt.run(main, instruments=[ring]) == "fast"
    assert cleanup_done == ["blocking"]
    ids = spawned_ids(ring, "race[")
    assert len(ids) == 3
    returned = seq_of(ring, "test.marker", name="race returned")[0]
    winner = ids["race[0]:test_race_losers_cancelled_with_race_lost_and_drained_before_return.<locals>.fast"]
    for name, tid in ids.items():
        done = seq_of(ring, "task.complete", task=tid)
        assert len(done) == 1 and done[0] < returned, name
        if tid == winner:
            continue
        reqs = [e for e in ring.events("cancel.request", task=tid)]
        assert reqs and reqs[0].data["reason"]["kind"] == "race_lost"
        assert reqs[0].data["reason"]["origin_task"] == winner
        drains = [e for e in ring.events("cancel.drain", task=tid)]
        assert drains and drains[0].data["reason"]["kind"] == "race_lost"
        fins = seq_of(ring, "cancel.finalize", task=tid)
        assert fins and fins[-1] < returned
        (complete,) = ring.events("task.complete", task=tid)
        assert complete.data["outcome"] == "cancelled:race_lost"


def test_race_winner_failure_is_raised_after_losers_drained():
    ring = greenrt.TraceRing(capacity=100_000)

    class Boom(Exception):
        pass

    def fails_first():
        raise Boom("winner failed")

    def loser():
        greenrt.sleep_forever()

    def main():
        with pytest.raises(Boom, match="winner failed"):
            greenrt.race(fails_first, loser)
        marker("race raised")

    greenrt.run(main, instruments=[ring])
    ids = spawned_ids(ring, "race[")
    raised = seq_of(ring, "test.marker", name="race raised")[0]
    for tid in ids.values():
        assert seq_of(ring, "task.complete", task=tid)[0] < raised
    loser_id = [t for n, t in ids.items() if n.endswith(".loser")][0]
    assert ring.events("task.complete", task=loser_id)[0].data["outcome"] == "cancelled:race_lost"


def test_race_loser_error_after_losing_does_not_change_result():
    ring = greenrt.TraceRing(capacity=100_000)

    def winner():
        return "w"

    def loser():
        try:
            greenrt.sleep_forever()
        except Cancelled:
            raise RuntimeError("cleanup failed") from None

    assert greenrt.run(lambda: greenrt.race(winner, loser), instruments=[ring]) == "w"
    (ev,) = ring.events("combinator.loser_error")
    assert ev.data["error"] == "RuntimeError"


def test_race_caller_cancelled_drains_everyone():
    def main():
        with greenrt.move_on_after(0.01) as scope:
            greenrt.race(greenrt.sleep_forever, greenrt.sleep_forever)
        return scope.cancelled_caught

    assert greenrt.run(main) is True


def test_first_ok_skips_failures_and_reports_all_failures():
    def bad1():
        raise ValueError("1")

    def bad2():
        greenrt.sleep(0)
        raise KeyError("2")

    def good():
        greenrt.sleep(0)
        greenrt.sleep(0)
        return "good"

    def main():
        v = greenrt.first_ok(bad1, bad2, good, greenrt.sleep_forever)
        with pytest.raises(ExceptionGroup) as ei:
            greenrt.first_ok(bad1, bad2)
        return v, [type(e).__name__ for e in ei.value.exceptions]

    assert greenrt.run(main) == ("good", ["ValueError", "KeyError"])


# -- timeout ---------------------------------------------------------------------------


def test_timeout_returns_value_or_raises():
    def main():
        assert greenrt.timeout(10, lambda x: x + 1, 1) == 2
        with pytest.raises(TooSlowError):
            greenrt.timeout(0.01, greenrt.sleep_forever)
        return "ok"

    assert greenrt.run(main) == "ok"


def test_timeout_outer_deadline_tighter_wins():
    def main():
        with greenrt.move_on_after(0.02) as outer:
            greenrt.timeout(10, greenrt.sleep_forever)  # must not raise TooSlowError
        return outer.cancelled_caught

    assert greenrt.run(main) is True


def test_timeout_inner_tighter_wins():
    def main():
        with greenrt.move_on_after(10) as outer:
            with pytest.raises(TooSlowError):
                greenrt.timeout(0.01, greenrt.sleep_forever)
        return outer.cancelled_caught

    assert greenrt.run(main) is False


# -- hedge -----------------------------------------------------------------------------


def test_hedge_starts_copies_after_delay_and_drains_losers():
    ring = greenrt.TraceRing(capacity=100_000)
    calls = []

    def op():
        k = len(calls)
        calls.append(k)
        if k < 2:
            greenrt.sleep_forever()  # the first two copies hang
        return f"copy {k}"

    def main():
        v = greenrt.hedge(op, delay=0.005, n=3)
        marker("hedge returned")
        return v

    assert greenrt.run(main, instruments=[ring]) == "copy 2"
    ids = spawned_ids(ring, "hedge[")
    assert len(ids) == 3
    returned = seq_of(ring, "test.marker", name="hedge returned")[0]
    outcomes = sorted(ring.events("task.complete", task=t)[0].data["outcome"] for t in ids.values())
    assert outcomes == ["cancelled:race_lost", "cancelled:race_lost", "ok"]
    assert all(seq_of(ring, "task.complete", task=t)[0] < returned for t in ids.values())


def test_hedge_no_extra_copy_when_first_succeeds_and_failure_starts_next_at_once():
    calls = []

    def quick():
        calls.append("q")
        return "q"

    def main():
        assert greenrt.hedge(quick, delay=10, n=3) == "q"

        attempts = []

        def flaky():
            attempts.append(len(attempts))
            if len(attempts) == 1:
                raise OSError("first copy fails")
            return "second"

        # delay=10 s: the second copy can only have started because the first failed.
        with greenrt.fail_after(5):
            assert greenrt.hedge(flaky, delay=10, n=2) == "second"
        with pytest.raises(ExceptionGroup):
            greenrt.hedge(lambda: 1 / 0, delay=10, n=2)
        return attempts

    assert greenrt.run(main) == [0, 1]
    assert calls == ["q"]


def test_hedge_outer_deadline_tighter_wins():
    calls = []

    def op():
        calls.append(1)
        greenrt.sleep_forever()

    def main():
        with greenrt.move_on_after(0.01) as outer:
            greenrt.hedge(op, delay=10, n=3)
        return outer.cancelled_caught

    assert greenrt.run(main) is True
    assert calls == [1]  # no second copy: the outer deadline came first


# -- retry -----------------------------------------------------------------------------


def test_retry_until_success_with_backoff_events():
    ring = greenrt.TraceRing()
    n = []

    def flaky():
        n.append(1)
        if len(n) < 3:
            raise ConnectionError("try again")
        return "done"

    pol = RetryPolicy(max_attempts=5, initial_backoff=0.001, multiplier=2)
    assert greenrt.run(lambda: greenrt.retry(flaky, pol, idempotent=True), instruments=[ring]) == "done"
    assert len(n) == 3
    delays = [e.data["delay"] for e in ring.events("retry.backoff")]
    assert delays == [0.001, 0.002]


def test_retry_gives_up_after_max_attempts_with_note():
    n = []

    def always():
        n.append(1)
        raise ConnectionError(f"fail {len(n)}")

    def main():
        with pytest.raises(ConnectionError, match="fail 3") as ei:
            greenrt.retry(always, RetryPolicy(max_attempts=3, initial_backoff=0), idempotent=True)
        return ei.value.__notes__

    assert greenrt.run(main) == ["retry: gave up after 3 attempts"]
    assert len(n) == 3


def test_retry_never_retries_non_idempotent_unless_policy_says_so():
    n = []

    def op():
        n.append(1)
        raise ConnectionResetError("maybe applied")

    def main():
        with pytest.raises(ConnectionResetError) as ei:
            greenrt.retry(op, RetryPolicy(max_attempts=5, initial_backoff=0), idempotent=False)
        assert len(n) == 1
        assert "not idempotent" in ei.value.__notes__[0]

        # The policy may allow errors that prove the attempt had no effect ...
        n.clear()
        pol = RetryPolicy(max_attempts=3, initial_backoff=0,
                          retry_non_idempotent=(ConnectionRefusedError,))

        def refused():
            n.append(1)
            raise ConnectionRefusedError("nothing sent")

        with pytest.raises(ConnectionRefusedError):
            greenrt.retry(refused, pol, idempotent=False)
        assert len(n) == 3
        # ... but not others.
        n.clear()
        with pytest.raises(ConnectionResetError):
            greenrt.retry(op, pol, idempotent=False)
        assert len(n) == 1
        # Or allow everything.
        n.clear()
        with pytest.raises(ConnectionResetError):
            greenrt.retry(op, RetryPolicy(max_attempts=2, initial_backoff=0,
                                          retry_non_idempotent=True), idempotent=False)
        assert len(n) == 2
        with pytest.raises(TypeError):
            greenrt.retry(op, pol)  # idempotent must be stated

    greenrt.run(main)


def test_retry_does_not_retry_unlisted_errors_or_cancellation():
    n = []

    def op():
        n.append(1)
        raise KeyError("not transient")

    def main():
        with pytest.raises(KeyError):
            greenrt.retry(op, RetryPolicy(retry_on=(ConnectionError,), initial_backoff=0),
                          idempotent=True)
        with greenrt.move_on_after(0.01) as s:
            greenrt.retry(greenrt.sleep_forever, RetryPolicy(initial_backoff=0), idempotent=True)
        return s.cancelled_caught

    assert greenrt.run(main) is True
    assert len(n) == 1


def test_retry_backoff_never_sleeps_past_the_callers_deadline():
    ring = greenrt.TraceRing()
    n = []

    def op():
        n.append(1)
        raise ConnectionError("down")

    def main():
        # Deadline in 10 s; the first backoff is 1 hour: retry must not sleep into it.
        with greenrt.move_on_after(10) as outer:
            with pytest.raises(ConnectionError) as ei:
                greenrt.retry(op, RetryPolicy(max_attempts=5, initial_backoff=3600),
                              idempotent=True)
        return outer.cancelled_caught, ei.value.__notes__

    caught, notes = greenrt.run(main, instruments=[ring])
    assert caught is False  # retry gave up itself, long before the outer deadline
    assert len(n) == 1 and "past the deadline" in notes[0]
    assert ring.events("retry.backoff") == []


def test_retry_attempt_timeout_and_outer_deadline_tighter_wins():
    n = []

    def hang():
        n.append(1)
        greenrt.sleep_forever()

    def main():
        # attempt_timeout (10 s) is looser than the outer deadline (20 ms): the outer wins
        # and cancels the whole retry; no TooSlowError, no further attempt.
        with greenrt.move_on_after(0.02) as outer:
            greenrt.retry(hang, RetryPolicy(attempt_timeout=10, initial_backoff=0),
                          idempotent=True)
        assert outer.cancelled_caught and len(n) == 1
        # attempt_timeout tighter: each attempt times out and is retried.
        n.clear()
        with pytest.raises(TooSlowError):
            greenrt.retry(hang, RetryPolicy(max_attempts=3, attempt_timeout=0.001,
                                            initial_backoff=0), idempotent=True)
        return len(n)

    assert greenrt.run(main) == 3


def test_retry_stops_when_poll_budget_is_spent():
    n = []

    def op():
        n.append(1)
        raise ConnectionError("down")

    def main():
        with greenrt.cancel_scope(budget=greenrt.Budget(poll_quota=3)):
            with pytest.raises(ConnectionError) as ei:
                greenrt.retry(op, RetryPolicy(max_attempts=100, initial_backoff=0),
                              idempotent=True)
        return ei.value.__notes__

    notes = greenrt.run(main)
    assert "poll budget spent" in notes[0]
    assert len(n) < 100


def test_retry_policy_validation_and_jitter_is_reproducible():
    for bad in (dict(max_attempts=0), dict(multiplier=0.5), dict(jitter=2),
                dict(initial_backoff=-1), dict(attempt_timeout=0)):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)
    p = RetryPolicy(initial_backoff=1, multiplier=3, max_backoff=5)
    assert [p.backoff(k) for k in (1, 2, 3, 4)] == [1, 3, 5, 5]
    a = RetryPolicy(initial_backoff=1, jitter=0.5, rng=random.Random(7))
    b = RetryPolicy(initial_backoff=1, jitter=0.5, rng=random.Random(7))
    da, db = [a.backoff(1) for _ in range(5)], [b.backoff(1) for _ in range(5)]
    assert da == db and all(0.5 <= d <= 1.5 for d in da) and len(set(da)) > 1
