"""The consumer group's embedded protocol, sans-IO: what members put in JoinGroup's
``metadata`` and the leader puts in SyncGroup's ``assignment``, and the two
assignors.

Kafka's group coordinator does not know what a consumer is: it elects a leader and
relays opaque bytes. Consumers agree on two layouts (``ConsumerProtocolSubscription``
and ``ConsumerProtocolAssignment`` in Apache Kafka's message definitions), always in
the *classic* (non-flexible) encoding:

    subscription v0: version int16 | topics [string] | user_data nullable bytes
    assignment v0:   version int16 | [topic string | partitions [int32]] | user_data nullable bytes

Newer versions only append fields (owned partitions, generation, rack), so a reader
of v0 reads any version's prefix and ignores the rest — which is what the Java client
does with versions it does not know. Decoding is total and bounded like the rest of
the codec (:class:`~.codec.Reader`): a count or length larger than the bytes left is
a ``KafkaProtocolError``, never an allocation.

Assignors (``ASSIGNORS``): ``range`` (per topic, each member gets a contiguous range,
the first ``n % m`` members one partition more — Kafka's ``RangeAssignor``) and
``roundrobin`` (all partitions of all topics dealt in turn to the members subscribed
to their topic — ``RoundRobinAssignor``). Both are deterministic: members and
partitions are sorted first, so every leader computes the same plan.
"""

from __future__ import annotations

from .codec import Reader, Writer
from .errors import KafkaProtocolError

__all__ = ["ASSIGNORS", "assign_range", "assign_roundrobin", "decode_assignment",
           "decode_subscription", "encode_assignment", "encode_subscription"]


def _string(w: Writer, s: str) -> None:
    b = s.encode("utf-8")
    if len(b) > 32767:
        raise ValueError("topic name longer than 32767 bytes")
    w.int16(len(b))
    w.raw(b)


def _read_string(r: Reader) -> str:
    n = r.int16()
    if n < 0:
        raise KafkaProtocolError("null topic name in group metadata", code="unexpected_null")
    try:
        return r.raw(n).decode("utf-8")
    except UnicodeDecodeError:
        raise KafkaProtocolError("topic name is not UTF-8", code="bad_string") from None


def _read_count(r: Reader, each: int) -> int:
    n = r.int32()
    if n < 0 or n * each > r.remaining:
        raise KafkaProtocolError(f"count {n} does not fit the {r.remaining} bytes left",
                                 code="bad_length")
    return n


def _read_nullable_bytes(r: Reader) -> bytes | None:
    if r.remaining == 0:  # some clients omit user_data entirely
        return None
    n = r.int32()
    if n == -1:
        return None
    if n < 0 or n > r.remaining:
        raise KafkaProtocolError(f"user data length {n} does not fit", code="bad_length")
    return r.raw(n)


def encode_subscription(topics: list[str], user_data: bytes | None = None) -> bytes:
    w = Writer()
    w.int16(0)
    w.int32(len(topics))
    for t in topics:
        _string(w, t)
    w.int32(-1) if user_data is None else (w.int32(len(user_data)), w.raw(user_data))
    return bytes(w.buf)


def decode_subscription(data: bytes) -> list[str]:
    """The topics of a member's subscription (any version; fields after v0's are ignored)."""
    r = Reader(data)
    if r.int16() < 0:
        raise KafkaProtocolError("negative subscription version", code="bad_version")
    topics = [_read_string(r) for _ in range(_read_count(r, 2))]
    _read_nullable_bytes(r)
    return topics


def encode_assignment(assignment: dict[str, list[int]], user_data: bytes | None = None) -> bytes:
    w = Writer()
    w.int16(0)
    w.int32(len(assignment))
    for topic in sorted(assignment):
        _string(w, topic)
        parts = sorted(assignment[topic])
        w.int32(len(parts))
        for p in parts:
            w.int32(p)
    w.int32(-1) if user_data is None else (w.int32(len(user_data)), w.raw(user_data))
    return bytes(w.buf)


def decode_assignment(data: bytes | None) -> dict[str, list[int]]:
    """``{topic: [partitions]}`` from a SyncGroup assignment; empty bytes mean nothing
    assigned (what the coordinator sends a member the leader left out)."""
    if not data:
        return {}
    r = Reader(data)
    if r.int16() < 0:
        raise KafkaProtocolError("negative assignment version", code="bad_version")
    out: dict[str, list[int]] = {}
    for _ in range(_read_count(r, 6)):
        topic = _read_string(r)
        out.setdefault(topic, []).extend(r.int32() for _ in range(_read_count(r, 4)))
    _read_nullable_bytes(r)
    return out


def assign_range(members: dict[str, list[str]], partitions: dict[str, int]) -> dict[str, dict[str, list[int]]]:
    """``members``: member id -> subscribed topics; ``partitions``: topic -> partition
    count. Returns member id -> {topic: [partitions]} (every member present)."""
    plan: dict[str, dict[str, list[int]]] = {m: {} for m in members}
    for topic in sorted(partitions):
        subs = sorted(m for m, ts in members.items() if topic in ts)
        if not subs:
            continue
        n = partitions[topic]
        each, extra = divmod(n, len(subs))
        start = 0
        for i, m in enumerate(subs):
            count = each + (1 if i < extra else 0)
            if count:
                plan[m][topic] = list(range(start, start + count))
            start += count
    return plan


def assign_roundrobin(members: dict[str, list[str]], partitions: dict[str, int]) -> dict[str, dict[str, list[int]]]:
    """Like :func:`assign_range`, dealing partitions in turn (see the module docstring)."""
    plan: dict[str, dict[str, list[int]]] = {m: {} for m in members}
    order = sorted(members)
    if not order:
        return plan
    i = 0
    for topic in sorted(partitions):
        for p in range(partitions[topic]):
            for _ in range(len(order)):  # the next member subscribed to this topic
                m = order[i % len(order)]
                i += 1
                if topic in members[m]:
                    plan[m].setdefault(topic, []).append(p)
                    break
    return plan


#: protocol name in JoinGroup -> assignor
ASSIGNORS = {"range": assign_range, "roundrobin": assign_roundrobin}
