"""Redis stands on the protocol floor (issue 11): its errors are the floor's, its limits
a ``base.Limits``, its codec speaks the sans-IO vocabulary, and a protocol fault is a
``protocol.error`` trace event with ``protocol="redis"``."""

from __future__ import annotations

import pytest

import greenrt
from greenrt.protocols import base
from greenrt.protocols.redis import Redis, errors
from greenrt.protocols.redis.resp import NEED_DATA, Decoder, Limits

from ...scripted_peer import ScriptedPeer


def test_the_error_tree_is_the_floors():
    assert issubclass(errors.RedisError, base.Error)
    assert issubclass(errors.ProtocolError, base.ProtocolError)
    assert issubclass(errors.FrameTooLarge, base.LimitError)
    assert issubclass(errors.FrameTooLarge, greenrt.LimitExceeded)
    assert issubclass(errors.RedisConnectionError, base.ConnectionLost)
    assert issubclass(errors.RedisConnectionError, ConnectionError)
    assert issubclass(errors.OutcomeUnknown, base.OutcomeUnknown)
    assert issubclass(errors.PoolTimeout, base.PoolTimeout)
    assert issubclass(errors.PoolTimeout, TimeoutError)
    assert issubclass(errors.PoolClosed, base.PoolClosed)
    assert errors.RedisError.protocol == "redis"
    e = errors.OutcomeUnknown("lost", command="INCR")
    assert e.command == e.operation == "INCR"


def test_a_limit_error_names_limit_value_and_maximum():
    d = Decoder(Limits(max_bulk_length=10))
    d.receive_data(b"$11\r\n")
    with pytest.raises(errors.FrameTooLarge) as ei:
        d.next_event()
    e = ei.value
    assert (e.limit, e.value, e.maximum) == ("max_bulk_length", 11, 10)
    assert str(e) == "redis: max_bulk_length exceeded: 11 > 10"
    with pytest.raises(TypeError):
        errors.FrameTooLarge("max_bulk_length", 11, 10)  # keyword-only now
    with pytest.raises(errors.FrameTooLarge):
        d.next_event()  # sticky


def test_limits_are_a_validated_base_limits():
    assert isinstance(Limits(), base.Limits)
    with pytest.raises(ValueError, match="Limits.max_depth must be a positive int"):
        Limits(max_depth=0)
    assert Limits().replace(max_depth=4).max_depth == 4


def test_the_codec_uses_the_floors_sentinel():
    assert NEED_DATA is base.NEED_DATA
    d = Decoder()
    d.receive_data(b"+O")
    assert d.next_event() is NEED_DATA and d.buffered == 2


def test_a_protocol_fault_is_a_protocol_error_event():
    def serve(c):
        c.recv(1024)
        c.sendall(b"?garbage\r\n")
        c.recv(1024)

    peer = ScriptedPeer(serve)
    events = []

    def main():
        with Redis(port=peer.port, protocol=2) as r:
            with pytest.raises(errors.ProtocolError):
                r.get("k")

    try:
        greenrt.run(main, instruments=[events.append])
    finally:
        peer.close()
    faults = [e.data for e in events if e.kind == "protocol.error"]
    assert len(faults) == 1
    assert faults[0]["protocol"] == "redis" and faults[0]["code"] == "malformed_frame"
