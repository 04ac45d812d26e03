"""The protocol floor's own types: errors, limits, the sans-IO helpers."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

import greenrt
from greenrt.protocols import base


class _DemoError(base.Error):
    protocol = "demo"
    status: int | None = None


class _DemoProtocolError(_DemoError, base.ProtocolError):
    pass


class _DemoLimitError(_DemoProtocolError, base.LimitError):
    pass


def test_limit_error_message_names_limit_value_and_maximum():
    e = _DemoLimitError(limit="max_head_bytes", value=70000, maximum=65536)
    assert str(e) == "demo: max_head_bytes exceeded: 70000 > 65536"
    assert (e.limit, e.value, e.maximum) == ("max_head_bytes", 70000, 65536)
    assert "None" not in str(_DemoLimitError(limit="max_head_bytes", maximum=65536))
    assert str(_DemoLimitError(limit="max_head_bytes", maximum=65536)) == \
        "demo: max_head_bytes exceeded (more than 65536)"


def test_limit_error_is_every_generic_kind():
    e = _DemoLimitError(limit="x", value=2, maximum=1)
    for cls in (base.Error, base.ProtocolError, base.LimitError, greenrt.LimitExceeded,
                _DemoError, _DemoProtocolError):
        assert isinstance(e, cls)


def test_error_keywords_set_declared_attributes_only():
    e = _DemoError("boom", code="c1", status=413)
    assert (e.message, e.code, e.status, e.protocol) == ("boom", "c1", 413, "demo")
    with pytest.raises(TypeError, match="statsu"):
        _DemoError("boom", statsu=413)


def test_error_default_message_is_the_docstring_line():
    assert str(base.PoolTimeout()) == "No pooled connection became available within the caller's budget."


def test_generic_classes_are_also_builtin_kinds():
    assert isinstance(base.ConnectionLost(), ConnectionError)
    assert isinstance(base.OutcomeUnknown(operation="SET"), ConnectionError)
    assert base.OutcomeUnknown(operation="SET").operation == "SET"
    assert isinstance(base.PoolTimeout(), TimeoutError)
    assert isinstance(base.UsageError(), RuntimeError)


@dataclasses.dataclass(frozen=True)
class _DemoLimits(base.Limits):
    positive_ints = ("max_frame",)
    timeouts = ("idle_timeout",)
    max_frame: int = 1024
    idle_timeout: float | None = 5.0


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10", None])
def test_limits_refuse_bad_sizes(bad):
    with pytest.raises(ValueError, match="_DemoLimits.max_frame"):
        _DemoLimits(max_frame=bad)


@pytest.mark.parametrize("bad", [0, -1.0, "1", True])
def test_limits_refuse_bad_timeouts(bad):
    with pytest.raises(ValueError, match="_DemoLimits.idle_timeout"):
        _DemoLimits(idle_timeout=bad)


def test_limits_replace_validates_and_is_frozen():
    lim = _DemoLimits()
    assert lim.replace(idle_timeout=None).idle_timeout is None
    assert lim.replace(max_frame=10).max_frame == 10 and lim.max_frame == 1024
    with pytest.raises(ValueError):
        lim.replace(max_frame=0)
    with pytest.raises(TypeError):
        lim.replace(no_such_field=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        lim.max_frame = 5  # type: ignore[misc]


def test_need_data_is_one_singleton_across_pickling():
    assert base.NEED_DATA is base.NeedData()
    assert pickle.loads(pickle.dumps(base.NEED_DATA)) is base.NEED_DATA
    assert repr(base.NEED_DATA) == "NEED_DATA"


def test_sticky_error_keeps_the_first_error():
    s = base.StickyError()
    s.check()
    assert not s
    first = _DemoProtocolError("first")
    s.set(first)
    s.set(_DemoProtocolError("second"))
    assert s
    for _ in range(2):
        with pytest.raises(_DemoProtocolError, match="first"):
            s.check()


def test_protocol_error_event_reaches_instruments():
    seen = []
    greenrt.run(lambda: base.emit_protocol_error("demo", "bad_frame", peer="x"),
                instruments=[seen.append])
    errs = [ev for ev in seen if ev.kind == "protocol.error"]
    assert len(errs) == 1 and errs[0].data == {"protocol": "demo", "code": "bad_frame", "peer": "x"}
