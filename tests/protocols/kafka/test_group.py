"""The group protocol's embedded layouts and the assignors, sans-IO."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenrt.protocols.kafka import group as gp
from greenrt.protocols.kafka.errors import KafkaProtocolError


def test_subscription_and_assignment_round_trip():
    assert gp.decode_subscription(gp.encode_subscription(["a", "bé"])) == ["a", "bé"]
    plan = {"t": [2, 0], "u": [1]}
    assert gp.decode_assignment(gp.encode_assignment(plan)) == {"t": [0, 2], "u": [1]}
    assert gp.decode_assignment(b"") == {} and gp.decode_assignment(None) == {}


def test_a_newer_version_is_read_by_its_v0_prefix():
    # subscription v1 appends owned partitions: ignored
    v1 = struct.pack(">hi", 1, 1) + struct.pack(">h", 1) + b"t" + struct.pack(">i", -1) + b"\x00\x00\x00\x00"
    assert gp.decode_subscription(v1) == ["t"]


@pytest.mark.parametrize("data", [
    b"", b"\x00", b"\x00\x00\x7f\xff\xff\xff",  # a count far past the bytes present
    struct.pack(">hi", 0, 1) + struct.pack(">h", 50) + b"t",  # a name longer than the data
    struct.pack(">hi", 0, 1) + struct.pack(">h", -1),  # a null topic name
    struct.pack(">hi", -3, 0),  # a negative version
    struct.pack(">hi", 0, 0) + struct.pack(">i", 99),  # user data longer than the data
])
def test_malformed_metadata_is_a_typed_error(data):
    with pytest.raises(KafkaProtocolError):
        gp.decode_subscription(data)
    with pytest.raises(KafkaProtocolError):
        gp.decode_assignment(data or b"\x00")


@given(st.binary(max_size=64))
def test_decoders_are_total(data):
    for fn in (gp.decode_subscription, gp.decode_assignment):
        try:
            fn(data)
        except KafkaProtocolError:
            pass


def test_range_assignor_matches_kafkas():
    members = {"m1": ["t", "u"], "m2": ["t", "u"], "m3": ["t"]}
    plan = gp.assign_range(members, {"t": 7, "u": 2})
    assert plan == {"m1": {"t": [0, 1, 2], "u": [0]}, "m2": {"t": [3, 4], "u": [1]}, "m3": {"t": [5, 6]}}


def test_roundrobin_assignor_deals_in_turn_and_skips_unsubscribed_members():
    members = {"a": ["t", "u"], "b": ["t"], "c": ["t", "u"]}
    plan = gp.assign_roundrobin(members, {"t": 4, "u": 3})
    assert plan == {"a": {"t": [0, 3], "u": [1]}, "b": {"t": [1]}, "c": {"t": [2], "u": [0, 2]}}


@given(st.dictionaries(st.sampled_from(["m1", "m2", "m3", "m4"]),
                       st.lists(st.sampled_from(["t", "u", "v"]), min_size=1, unique=True), min_size=1),
       st.dictionaries(st.sampled_from(["t", "u", "v"]), st.integers(0, 12)))
def test_every_assignor_assigns_each_partition_exactly_once_to_a_subscriber(members, counts):
    for assignor in gp.ASSIGNORS.values():
        plan = assignor(members, counts)
        assert set(plan) == set(members)
        seen = [(t, p) for m, a in plan.items() for t, ps in a.items() for p in ps
                if t in members[m]]
        owned = [(t, p) for a in plan.values() for t, ps in a.items() for p in ps]
        assert sorted(seen) == sorted(owned)  # only subscribers own partitions
        wanted = {(t, p) for t, n in counts.items() if any(t in ts for ts in members.values())
                  for p in range(n)}
        assert sorted(owned) == sorted(wanted)
