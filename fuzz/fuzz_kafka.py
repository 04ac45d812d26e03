"""Fuzz target: the Kafka codec (``protocols.kafka.codec`` framing and schema-driven
response bodies, ``protocols.kafka.records`` batches).

Run with atheris::

    .venv/bin/python fuzz/fuzz_kafka.py /tmp/kafka-scratch fuzz/corpus/kafka -max_total_time=60

One input is used three ways, each of which may only raise ``KafkaProtocolError``
(``KafkaLimitError`` included):

* as a byte stream into ``FrameDecoder`` (small ``max_frame_bytes``), fed whole and
  in pieces (cut points derived from the input): the same frames and the same verdict;
* each frame (and the raw input) as the body of a response chosen by its first byte
  (Metadata, Fetch, Produce, ApiVersions, JoinGroup, OffsetFetch at a version also
  chosen by the input);
* as the ``records`` of a fetch: ``decode_batches`` with a small inflate cap, once with
  the CRC checked and once without (so mutated compressed sections reach the gzip,
  snappy, lz4 and zstd decoders instead of stopping at the CRC);
* a Produce answer also through its fast decoder, which must agree with the schema
  interpreter whenever it returns a result;
* as a records section for the record decoder's fast path, which must agree with the
  careful decoder whenever it returns a result; and as the parameters and byte changes
  of a section of records of one layout, for that fast path and for its bulk path
  (``_uniform_run``, runs read by column) alone;
* as a consumer group's subscription and assignment (``group.decode_*``).
"""

from __future__ import annotations

import sys

CORPUS = "corpus/kafka"

if __name__ == "__main__":  # pragma: no cover - only when run by atheris
    try:
        import atheris
    except ImportError:
        sys.exit("atheris is not installed; use fuzz/run_bounded.py for the fallback fuzzer")
    with atheris.instrument_imports():
        from greenrt.protocols.base import NEED_DATA
        from greenrt.protocols.kafka import codec, group, records
        from greenrt.protocols.kafka._messages import MESSAGES
        from greenrt.protocols.kafka.errors import KafkaProtocolError
else:
    from greenrt.protocols.base import NEED_DATA
    from greenrt.protocols.kafka import codec, group, records
    from greenrt.protocols.kafka._messages import MESSAGES
    from greenrt.protocols.kafka.errors import KafkaProtocolError

#: The documented errors of the Kafka codec: nothing else may escape it.
EXPECTED_ERRORS = (KafkaProtocolError,)

_RESPONSES = ["MetadataResponse", "FetchResponse", "ProduceResponse", "ApiVersionsResponse",
              "JoinGroupResponse", "OffsetFetchResponse", "SyncGroupResponse",
              "ListOffsetsResponse", "HeartbeatResponse", "FindCoordinatorResponse",
              "OffsetCommitResponse", "LeaveGroupResponse"]


class Finding(AssertionError):
    """An invariant of the codec broke (not an expected error)."""


def _frames(data: bytes, cuts: list[int]):
    d = codec.FrameDecoder(4096)
    out = []
    pos = 0
    try:
        for c in cuts + [len(data)]:
            if c > pos:  # an empty piece would mean EOF
                d.receive_data(data[pos:c])
            pos = max(pos, c)
            while (ev := d.next_event()) is not NEED_DATA:
                out.append(ev)
        if d.buffered > 4096 + 4:
            raise Finding(f"frame decoder buffered {d.buffered} bytes")
        return out, None
    except KafkaProtocolError as e:
        return out, type(e)


def _body(data: bytes) -> None:
    if not data:
        return
    name = _RESPONSES[data[0] % len(_RESPONSES)]
    lo, hi = MESSAGES[name]["versions"]
    version = lo + (data[1] if len(data) > 1 else 0) % (hi - lo + 1)
    try:
        codec.decode_message(name, version, data[2:])
    except KafkaProtocolError:
        pass
    if name == "ProduceResponse":
        _produce_fast_path(version, data[2:])


def _produce_fast_path(version: int, body: bytes) -> None:
    """The Produce answer's fast decoder gives a result only where the schema
    interpreter gives the same one (else it defers to it)."""
    try:
        fast = codec._decode_produce(version, body, False)
    except codec._NotPlain:
        return
    fields, flex = codec._schema("ProduceResponse", version)
    try:
        careful = codec._read_struct(codec.Reader(body), fields, version, flex)
    except KafkaProtocolError as e:
        raise Finding(f"Produce fast decoder accepted what the interpreter refuses: {e}") from None
    if careful != fast:
        raise Finding("Produce fast decoder and the interpreter disagree")


def _fast_vs_careful(section: bytes, count: int) -> None:
    fast = records._decode_records_fast(section, count, 0, 0, None, None)
    if fast is not None:
        try:
            careful = records._decode_records(section, count, 0, 0)
        except KafkaProtocolError as e:
            raise Finding(f"fast record decoder accepted what the careful one refuses: {e}") from None
        if careful != fast:
            raise Finding("fast and careful record decoders disagree")


def _run_vs_careful(section: bytes, count: int) -> None:
    """The bulk path (``records._uniform_run``) alone, at the section's start: a result
    only where the careful decoder reads the same records from the bytes it spans."""
    run = records._uniform_run(section, memoryview(section), 0, count, len(section), 0, 0, None, None)
    if run is None:
        return
    got, nbytes, end = run
    try:
        careful = records._decode_records(section[:end], len(got), 0, 0)
    except KafkaProtocolError as e:
        raise Finding(f"uniform run accepted what the careful decoder refuses: {e}") from None
    if careful != (got, nbytes):
        raise Finding("uniform run and careful decoder disagree")


def _uniform_runs(data: bytes) -> None:
    """Random bytes are seldom 32 records of one layout, which the bulk path needs: the
    input is also read as the parameters of such a section (record count, key and
    value sizes, a timestamp delta) and as byte changes made to it."""
    if len(data) < 4:
        return
    n = records._RUN_MIN + data[0] % 40
    value = None if data[1] == 0xFF else data[4:4 + data[1] % 48]
    key = None if data[2] & 1 else data[4:4 + data[2] % 8]
    stamps = [data[3] * (i % 3) for i in range(n)]
    section = bytearray(records.encode_batch([(key, value, [])] * n, timestamps=stamps)[records.HEADER_BYTES:])
    tail = data[4 + (data[1] % 48):]
    for i in range(0, len(tail) - 2, 3):
        section[(tail[i] << 8 | tail[i + 1]) % len(section)] = tail[i + 2]
    section = bytes(section)
    for count in (n, n - 1, n + 1):
        _fast_vs_careful(section, count)
        _run_vs_careful(section, count)
    _run_vs_careful(data, data[0])


def TestOneInput(data: bytes) -> None:
    cuts = sorted({b % (len(data) + 1) for b in data[:4]})
    whole = _frames(data, [])
    split = _frames(data, cuts)
    if whole != split:
        raise Finding(f"segmentation changed the verdict: {whole!r} vs {split!r}")
    for frame in whole[0][:4]:
        _body(frame)
    _body(data)
    for verify in (True, False):
        try:
            for _ in records.decode_batches(data, max_decompressed_bytes=65536, verify_crc=verify):
                pass
        except KafkaProtocolError:
            pass
    # the record decoder's fast path on the raw input as a records section: a result
    # only where the careful decoder gives the same one (else it defers to it)
    _fast_vs_careful(data, data[0] if data else 0)
    _uniform_runs(data)
    for decode in (group.decode_subscription, group.decode_assignment):
        try:
            decode(data)
        except KafkaProtocolError:
            pass


if __name__ == "__main__":  # pragma: no cover
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
