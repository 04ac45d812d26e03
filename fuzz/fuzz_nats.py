"""Fuzz target: the sans-IO NATS client-protocol parser (``protocols.nats.codec``).

Run with atheris::

    .venv/bin/python fuzz/fuzz_nats.py /tmp/nats-scratch fuzz/corpus/nats -max_total_time=60

What one input checks, beyond "no unexpected exception":

* the parser is total: the only exception it may raise is ``ProtocolError`` (a
  ``LimitError`` included), with small limits so the limit paths run;
* split invariance: the input fed whole and fed in pieces (cut points derived from
  the input itself) gives the same events and the same verdict (error code);
* sticky errors: after an error, ``next_event`` raises the same error again, even
  with more (valid) input;
* buffered bytes stay bounded (the INFO limit plus the largest payload, plus one read);
* re-encoding: every MSG/HMSG re-encoded as the server would send it parses to the
  same event;
* the MSG fast path (one regex) is an optimisation only: with it switched off, the
  general path gives the same events and verdict.
"""

from __future__ import annotations

import sys
import zlib

CORPUS = "corpus/nats"

if __name__ == "__main__":  # pragma: no cover - only when run by atheris
    try:
        import atheris
    except ImportError:
        sys.exit("atheris is not installed; use fuzz/run_bounded.py for the fallback fuzzer")
    with atheris.instrument_imports():
        from greenrt.protocols.nats import codec
        from greenrt.protocols.nats.errors import ProtocolError
else:
    from greenrt.protocols.nats import codec
    from greenrt.protocols.nats.errors import ProtocolError

#: The documented errors of the parser: nothing else may escape it.
EXPECTED_ERRORS = (ProtocolError,)

LIMITS = codec.Limits(max_control_line=128, max_info_bytes=512, max_payload=1024,
                      max_header_bytes=256)
_BUFFER_BOUND = LIMITS.max_info_bytes + LIMITS.max_payload + LIMITS.max_control_line + 8


class Finding(AssertionError):
    """An invariant of the parser broke (not an expected error)."""


def _parse(chunks, batch: int | None = None) -> tuple[list, str | None]:
    """Events and error of ``chunks``, by ``next_event`` (``batch`` None) or by
    ``next_events(batch)`` (the client reader's batch API)."""
    p = codec.Parser(LIMITS)
    out: list = []
    err = None
    try:
        for c in chunks:
            p.receive_data(c)
            if batch is None:
                while (ev := p.next_event()) is not codec.NEED_DATA:
                    out.append(ev)
            else:
                while evs := p.next_events(batch):
                    out.extend(evs)
            if p.buffered > _BUFFER_BOUND + len(c):
                raise Finding(f"parser buffers {p.buffered} bytes, bound {_BUFFER_BOUND}")
    except EXPECTED_ERRORS as e:
        err = f"{type(e).__name__}:{e.code}"
        try:
            p.receive_data(b"PING\r\n")
            p.next_event()
        except EXPECTED_ERRORS as e2:
            if e2 is not e:
                raise Finding("error is not sticky: a different error followed") from None
        else:
            raise Finding("error is not sticky: parsing resumed after an error")
    return out, err


def _parse_general(chunks) -> tuple[list, str | None]:
    """``_parse`` with the MSG fast path switched off (every line by ``_next``)."""
    fast = codec._FAST_MSG
    codec._FAST_MSG = lambda buf, pos: None
    try:
        return _parse(chunks, 512)
    finally:
        codec._FAST_MSG = fast


def _cuts(data: bytes) -> list[bytes]:
    h = zlib.crc32(data)
    parts, i = [], 0
    while i < len(data):
        step = 1 + (h % 9)
        h = (h * 1103515245 + 12345) & 0x7FFFFFFF
        parts.append(data[i:i + step])
        i += step
    return parts


def _reencode(ev) -> bytes:
    r = (" " + ev.reply) if ev.reply is not None else ""
    if ev.headers is None:
        return b"MSG %s %d%s %d\r\n%s\r\n" % (ev.subject.encode(), ev.sid, r.encode(),
                                            len(ev.payload), ev.payload)
    h = codec.encode_headers(ev.headers, None if ev.status is None else
                             f"{ev.status:03d}" + (f" {ev.description}" if ev.description else ""))
    return b"HMSG %s %d%s %d %d\r\n%s%s\r\n" % (ev.subject.encode(), ev.sid, r.encode(), len(h),
                                               len(h) + len(ev.payload), h, ev.payload)


def TestOneInput(data: bytes) -> None:
    whole, err = _parse([data])
    pieces, err2 = _parse(_cuts(data))
    if (whole, err) != (pieces, err2):
        raise Finding(f"split input parsed differently: {err} vs {err2}, "
                      f"{len(whole)} vs {len(pieces)} events")
    for batch in (1, 3, 512):
        if _parse(_cuts(data), batch) != (whole, err):
            raise Finding(f"next_events({batch}) parsed differently from next_event")
    if _parse_general([data]) != (whole, err):
        raise Finding("the MSG fast path and the general path parsed differently")
    for ev in whole:
        if type(ev) is not codec.Msg:
            continue
        if "\ufffd" in ev.subject or (ev.reply and "\ufffd" in ev.reply):
            continue  # not valid UTF-8 on the wire: replaced, so not re-encodable
        try:
            again = _reencode(ev)
        except codec.UsageError:
            continue  # a header our encoder refuses to write (it would be injection)
        got, e = _parse([again])
        if e is not None or got[:1] != [ev]:
            raise Finding(f"re-encoded message parses differently: {ev!r} -> {got!r} {e}")


if __name__ == "__main__":  # pragma: no cover
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
