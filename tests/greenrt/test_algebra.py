"""Property tests for the algebra: Budget meet, Outcome join, CancelReason strengthening."""

from hypothesis import given, settings
from hypothesis import strategies as st

from greenrt import Budget, CancelKind, CancelReason, Outcome

opt_float = st.none() | st.floats(min_value=0, max_value=1e6, allow_nan=False)
opt_int = st.none() | st.integers(min_value=0, max_value=10**6)
budgets = st.builds(Budget, deadline=opt_float, poll_quota=opt_int, cost_quota=opt_int,
                    priority=st.integers(min_value=0, max_value=255))

CASES = settings(max_examples=200, deadline=None)


@CASES
@given(budgets, budgets)
def test_meet_commutative(a, b):
    assert a.meet(b) == b.meet(a)


@CASES
@given(budgets, budgets, budgets)
def test_meet_associative(a, b, c):
    assert a.meet(b).meet(c) == a.meet(b.meet(c))


@CASES
@given(budgets)
def test_meet_idempotent_with_identity(a):
    assert a.meet(a) == a
    assert a.meet(Budget.INFINITE) == a
    assert Budget.INFINITE.meet(a) == a


@CASES
@given(budgets, budgets)
def test_meet_is_tighter(a, b):
    m = a & b
    for f in ("deadline", "poll_quota", "cost_quota"):
        for x in (a, b):
            if getattr(x, f) is not None:
                assert getattr(m, f) <= getattr(x, f)
    assert m.priority == max(a.priority, b.priority)


def _outcomes():
    exc = st.sampled_from([ValueError("a"), KeyError("b")])
    reason = st.sampled_from(list(CancelKind)).map(CancelReason)
    return st.one_of(
        st.integers().map(Outcome.ok),
        exc.map(Outcome.err),
        reason.map(Outcome.cancelled),
        st.sampled_from([SystemExit(1), KeyboardInterrupt()]).map(Outcome.panicked),
    )


outcomes = _outcomes()


@CASES
@given(outcomes, outcomes)
def test_join_is_least_upper_bound_on_severity(a, b):
    j = a.join(b)
    assert j.severity == max(a.severity, b.severity)
    assert j is a or j is b
    assert a.join(b).severity == b.join(a).severity


@CASES
@given(outcomes, outcomes, outcomes)
def test_join_associative(a, b, c):
    assert a.join(b).join(c) is a.join(b.join(c))


@CASES
@given(outcomes)
def test_join_idempotent_and_ok_is_bottom(a):
    assert a.join(a) is a
    assert Outcome.ok(None).join(a).severity == a.severity


def test_outcome_order():
    order = [Outcome.ok(1), Outcome.err(ValueError()), Outcome.cancelled(CancelReason("user")),
             Outcome.panicked(SystemExit())]
    assert [o.severity for o in order] == [0, 1, 2, 3]


reasons = st.builds(CancelReason, kind=st.sampled_from(list(CancelKind)), message=st.text(max_size=5))


@CASES
@given(st.lists(reasons, min_size=1, max_size=20))
def test_strengthening_is_monotone(seq):
    cur = seq[0]
    for r in seq[1:]:
        nxt = cur.strengthen(r)
        assert nxt.severity >= cur.severity
        assert nxt.severity == max(cur.severity, r.severity)
        cur = nxt
    assert cur.severity == max(r.severity for r in seq)


def test_severity_order_matches_design():
    K = CancelKind
    assert K.USER.severity < K.TIMEOUT.severity == K.DEADLINE.severity
    assert K.DEADLINE.severity < K.POLL_QUOTA.severity == K.COST_BUDGET.severity
    assert K.COST_BUDGET.severity < K.FAIL_FAST.severity == K.RACE_LOST.severity == K.LINKED_EXIT.severity
    assert K.LINKED_EXIT.severity < K.PARENT_CANCELLED.severity == K.RESOURCE_UNAVAILABLE.severity
    assert K.RESOURCE_UNAVAILABLE.severity < K.SHUTDOWN.severity


def test_cleanup_budgets_are_stricter_for_higher_severity():
    kinds = sorted(CancelKind, key=lambda k: k.severity)
    for lo, hi in zip(kinds, kinds[1:], strict=False):
        if hi.severity > lo.severity:
            assert hi.cleanup_budget.polls <= lo.cleanup_budget.polls
            assert hi.cleanup_budget.seconds <= lo.cleanup_budget.seconds


def test_cause_chain_is_bounded():
    r = CancelReason(CancelKind.USER)
    for _ in range(100):
        r = CancelReason(CancelKind.PARENT_CANCELLED, cause=r)
    assert r.depth <= 8
