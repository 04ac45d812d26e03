"""The sans-IO codec: every operation, the limits (control line, INFO, max_payload,
header block), bad terminators, bad INFO, sticky errors, segmentation independence,
and the encoders' refusal of injection."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greenrt.protocols import base
from greenrt.protocols.nats import LimitError, ProtocolError, UsageError
from greenrt.protocols.nats.codec import (
    NEED_DATA,
    Err,
    Info,
    Limits,
    Msg,
    Ok,
    Parser,
    Ping,
    Pong,
    encode_headers,
    encode_hpub,
    encode_pub,
    encode_sub,
    encode_unsub,
)

STREAM = (b'INFO {"server_id":"x","max_payload":1048576,"headers":true}\r\n'
          b"PING\r\nPONG\r\n+OK\r\n-ERR 'Permissions Violation for Publish to \"x\"'\r\n"
          b"MSG foo.bar 7 5\r\nhello\r\n"
          b"MSG foo 12 _INBOX.abc 0\r\n\r\n"
          b"HMSG h 3 26 31\r\nNATS/1.0\r\nA: 1\r\nB: x y\r\n\r\nworld\r\n"
          b"HMSG r 3 _INBOX.x 16 16\r\nNATS/1.0 503\r\n\r\n\r\n")


def events(data: bytes, limits: Limits | None = None, step: int | None = None):
    p = Parser(limits)
    out = []
    chunks = [data] if step is None else [data[i:i + step] for i in range(0, len(data), step)]
    for c in chunks:
        p.receive_data(c)
        while (ev := p.next_event()) is not NEED_DATA:
            out.append(ev)
    return out, p


def test_every_operation():
    evs, p = events(STREAM)
    assert [type(e) for e in evs] == [Info, Ping, Pong, Ok, Err, Msg, Msg, Msg, Msg]
    assert evs[0].info["max_payload"] == 1048576 and p.max_payload == 1048576
    assert evs[4].message == 'Permissions Violation for Publish to "x"'
    assert evs[5] == Msg("foo.bar", 7, None, b"hello")
    assert evs[6] == Msg("foo", 12, "_INBOX.abc", b"")
    assert evs[7].headers == {"A": "1", "B": "x y"} and evs[7].payload == b"world"
    assert evs[8].status == 503 and evs[8].reply == "_INBOX.x" and evs[8].payload == b""
    assert p.buffered == 0


@pytest.mark.parametrize("step", [1, 2, 3, 7, 64])
def test_segmentation_independence(step):
    assert events(STREAM, step=step)[0] == events(STREAM)[0]


def test_long_control_line_without_crlf_is_a_limit_error_and_bounded():
    p = Parser()
    p.receive_data(b"MSG " + b"a" * 4093)  # 4097 bytes: one past the limit plus CR
    assert p.next_event() is NEED_DATA
    p.receive_data(b"aa")
    with pytest.raises(LimitError) as ei:
        p.next_event()
    assert ei.value.limit == "max_control_line" and ei.value.maximum == 4096
    assert isinstance(ei.value, base.LimitError)
    # sticky: the same error again, whatever comes next
    p.receive_data(b"\r\nPING\r\n")
    with pytest.raises(LimitError):
        p.next_event()


def test_one_mib_without_crlf_is_refused_at_the_limit():
    p = Parser()
    with pytest.raises(LimitError):
        for _ in range(256):
            p.receive_data(b"x" * 4096)
            p.next_event()
    assert p.buffered <= 2 * 4096 + 2


def test_info_may_be_longer_than_a_control_line_but_is_bounded():
    urls = ",".join(f'"127.0.0.1:{4000 + i}"' for i in range(300))
    line = b'INFO {"connect_urls":[' + urls.encode() + b"]}\r\n"
    assert 4096 < len(line) < 65536
    evs, _ = events(line)
    assert len(evs[0].info["connect_urls"]) == 300
    with pytest.raises(LimitError) as ei:
        events(b"INFO {" + b" " * 70000)
    assert ei.value.limit == "max_info_bytes"


def test_msg_over_max_payload_is_refused_before_the_payload():
    p = Parser()
    p.receive_data(b'INFO {"max_payload":1024}\r\n')
    assert type(p.next_event()) is Info
    p.receive_data(b"MSG s 1 1025\r\n")  # no payload sent: refused on the header alone
    with pytest.raises(LimitError) as ei:
        p.next_event()
    assert (ei.value.limit, ei.value.value, ei.value.maximum) == ("max_payload", 1025, 1024)
    with pytest.raises(LimitError):
        events(b"HMSG s 1 12 99999999\r\n", Limits(max_payload=1 << 20))


def test_configured_max_payload_caps_the_servers():
    p = Parser(Limits(max_payload=100))
    p.receive_data(b'INFO {"max_payload":1048576}\r\n')
    p.next_event()
    assert p.max_payload == 100


@pytest.mark.parametrize("data", [
    b"MSG s 1 5\r\nhelloXXPING\r\n",      # bad terminator: never resynchronised into PING
    b"MSG s 1 5\r\nhello\rPING\r\n",
    b"HMSG s 1 12 14\r\nNATS/1.0\r\n\r\nabXX",
])
def test_bad_payload_terminator(data):
    with pytest.raises(ProtocolError) as ei:
        events(data)
    assert ei.value.code == "bad_terminator"


@pytest.mark.parametrize("data", [
    b"INFO {not json}\r\n", b'INFO ["a"]\r\n', b"INFO \r\n", b'INFO {"max_payload":-1}\r\n',
    b'INFO {"max_payload":"big"}\r\n', b"INFO " + b"[" * 3000 + b"\r\n",
    b'INFO {"a":"\xff"}\r\n',
])
def test_bad_info(data):
    with pytest.raises(ProtocolError) as ei:
        events(data)
    assert ei.value.code in ("bad_info", "malformed")


@pytest.mark.parametrize("data", [
    b"PING\n", b"FOO\r\n", b"\r\n", b"MSG s 1\r\n", b"MSG s x 1\r\n", b"MSG s 1 -1\r\n",
    b"MSG s 1 12345678901\r\n", b"MSG a b c d e\r\n", b"HMSG s 1 5 4\r\n",
    b"HMSG s 1 9 9\r\nNATS/1.1\r\n\r\n\r\n", b"HMSG s 1 10 10\r\nNATS/1.0\r\nAB\r\n\r\n",
    b"HMSGX\r\n", b"MSG s 1 +5\r\nhello\r\n",
])
def test_malformed_lines(data):
    with pytest.raises(ProtocolError):
        events(data)


def test_header_line_with_a_lone_cr_or_lf_is_malformed():
    from greenrt.protocols.nats.codec import parse_headers

    assert parse_headers(b"NATS/1.0\r\nA: b c\r\n\r\n") == (None, None, [("A", "b c")])
    for line in (b"A: b\nc", b"A: b\rc", b"A\n: b", b"A\r: b"):
        block = b"NATS/1.0\r\n" + line + b"\r\n\r\n"
        with pytest.raises(ProtocolError) as ei:
            parse_headers(block)
        assert ei.value.code == "bad_headers"
        with pytest.raises(ProtocolError):
            events(b"HMSG s 1 %d %d\r\n%s\r\n" % (len(block), len(block), block))


def test_header_block_limit():
    h = b"NATS/1.0\r\nA: " + b"x" * 200 + b"\r\n\r\n"
    data = b"HMSG s 1 %d %d\r\n" % (len(h), len(h)) + h + b"\r\n"
    assert events(data)[0][0].headers["A"] == "x" * 200
    with pytest.raises(LimitError) as ei:
        events(data, Limits(max_header_bytes=100))
    assert ei.value.limit == "max_header_bytes"


def test_encoders():
    assert encode_pub("a.b", b"hi") == b"PUB a.b 2\r\nhi\r\n"
    assert encode_pub("a", b"", reply="r") == b"PUB a r 0\r\n\r\n"
    assert encode_sub("a.*", 3) == b"SUB a.* 3\r\n"
    assert encode_sub("a", 3, "q") == b"SUB a q 3\r\n"
    assert encode_unsub(3) == b"UNSUB 3\r\n" and encode_unsub(3, 5) == b"UNSUB 3 5\r\n"
    h = encode_headers({"K": "v"})
    assert h == b"NATS/1.0\r\nK: v\r\n\r\n"
    assert encode_hpub("s", b"pay", {"K": "v"}) == b"HPUB s %d %d\r\n%spay\r\n" % (len(h), len(h) + 3, h)
    for bad in ("", "a b", "a\r\nPUB x 1", "a\tb", "a\rb", "a\nb", " ", "a "):
        for form in (bad, bad.encode()):
            with pytest.raises(UsageError):
                encode_pub(form, b"")
            with pytest.raises(UsageError):
                encode_pub("ok", b"", reply=form or "a b")
            with pytest.raises(UsageError):
                encode_sub("ok", 1, form or "a\tb")
    assert encode_pub(b"a.\xc3\xa9", b"", reply="_INBOX.x.1") == \
        b"PUB a.\xc3\xa9 _INBOX.x.1 0\r\n\r\n"
    with pytest.raises(UsageError):
        encode_headers({"K": "v\r\nX: y"})
    for name in ("K:", "K V", "K\tV", "K\r", "K\n", ""):
        with pytest.raises(UsageError):
            encode_headers({name: "v"})
    for value in ("a\rb", "a\nb"):
        with pytest.raises(UsageError):
            encode_headers({"K": value})


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=17))
def test_total_and_segmentation_independent_on_random_input(data, step):
    def verdict(s):
        try:
            return ("ok", events(STREAM[:40] + data, step=s)[0])
        except ProtocolError as e:
            return ("err", type(e), e.code)
    assert verdict(None) == verdict(step)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=len(STREAM)), st.binary(min_size=1, max_size=3))
def test_corruption_never_escapes_as_another_exception(pos, junk):
    data = STREAM[:pos] + junk + STREAM[pos:]
    try:
        events(data)
    except ProtocolError:
        pass


# Each field of a MSG frame: its well-formed value first, then ways to get it wrong.
_FIELDS = [
    [b"MSG", b"msg", b"MSX"],
    [b" ", b"  ", b"\t", b"\x0b"],
    [b"foo.bar", b"a", b"\xff\xfe", b"a\tb", b"a\x0cb", b"x" * 30],
    [b" ", b"  ", b"\t", b"\x0c"],
    [b"7", b"01", b"9999999999", b"12345678901", b"x", b"-1", b""],
    [b"", b" _INBOX.r", b" r\xff\xfe"],
    [b" ", b"  ", b"\t"],
    None,  # the size: the payload's, or off by one, or not a number
    [b"\r\n", b"\n", b"\r"],
    None,  # the payload
    [b"\r\n", b"\n\r", b"\rx", b"xx"],
]


@st.composite
def _msg_frame(draw):
    """A MSG frame, well formed except (usually) in one field, with payload sizes on
    both sides of the limit (16)."""
    bad = draw(st.integers(min_value=-1, max_value=len(_FIELDS) - 1))
    size = draw(st.sampled_from([0, 5, 16, 17, 18]))
    out = []
    for k, choices in enumerate(_FIELDS):
        if k == 7:
            tok = b"%d" % size
            if bad == k:
                tok = draw(st.sampled_from([b"%d" % (size + 1), b"0" + tok, b"x", b"12345678901"]))
            out.append(tok)
        elif k == 9:
            out.append(b"p" * size)
        elif k == 5:  # with a reply subject or without: both well formed
            out.append(draw(st.sampled_from(choices)))
        else:
            out.append(draw(st.sampled_from(choices[1:])) if bad == k else choices[0])
    return b"".join(out)


_MSG_FRAME = _msg_frame()


class _Slots:
    """A ``msg_class`` for the parser (as the client's ``Message``)."""

    __slots__ = ("subject", "sid", "reply", "data")

    def __eq__(self, other):
        return type(other) is _Slots and all(getattr(self, k) == getattr(other, k)
                                             for k in self.__slots__)

    def __repr__(self):
        return f"_Slots{tuple(getattr(self, k) for k in self.__slots__)}"


@settings(max_examples=600, deadline=None)
@given(st.lists(_MSG_FRAME, min_size=1, max_size=5), st.integers(min_value=8, max_value=40),
       st.sampled_from([None, 3, 1]), st.booleans())
def test_msg_fast_path_gives_the_general_paths_verdicts(frames, max_line, step, slots):
    """The regex fast path in ``Parser.next_event`` is an optimisation only: with it
    switched off, every MSG-like input gives the same events or the same error (MSGs
    with and without a reply subject mixed)."""
    data = b"MSG a 1 2\r\nok\r\n" + b"".join(frames) + b"PING\r\n"
    _assert_fast_path_agrees(data, Limits(max_control_line=max_line, max_payload=16), step,
                             slots)


def _assert_fast_path_agrees(data: bytes, limits: Limits, step: int | None, slots: bool,
                             batch: int | None = None) -> None:
    """Parsing ``data`` (in ``step``-byte chunks, ``next_event`` or ``next_events(batch)``)
    gives the same events or error with the MSG fast path as with it switched off."""
    import greenrt.protocols.nats.codec as codec_mod

    def verdict():
        p = Parser(limits, msg_class=_Slots if slots else None)
        out: list = []
        chunks = [data] if step is None else [data[i:i + step] for i in range(0, len(data), step)]
        try:
            for c in chunks:
                p.receive_data(c)
                if batch is None:
                    while (ev := p.next_event()) is not NEED_DATA:
                        out.append(ev)
                else:
                    while evs := p.next_events(batch):
                        out.extend(evs)
            return ("ok", out)
        except ProtocolError as e:
            return ("err", type(e), e.code)

    fast = verdict()
    saved = codec_mod._FAST_MSG
    codec_mod._FAST_MSG = lambda buf, pos: None
    try:
        general = verdict()
    finally:
        codec_mod._FAST_MSG = saved
    assert fast == general


def test_msg_fast_path_in_any_order_of_msgs_with_and_without_reply():
    """The fast path's pattern takes a MSG with a reply subject and one without:
    every order of the two kinds, whole or cut, one event or a batch at a
    time, gives the general path's events."""
    plain = b"MSG a.b 1 2\r\nok\r\n"
    reply = b"MSG a.b 22 _INBOX.x.1 3\r\nyes\r\n"
    for seq in itertools.product([plain, reply], repeat=4):
        data = b"".join(seq)
        for step, batch in ((None, None), (None, 2), (None, 512), (7, None), (7, 512)):
            for slots in (False, True):
                _assert_fast_path_agrees(data, Limits(), step, slots, batch)


def test_msg_fast_path_is_taken_for_a_plain_msg():
    """The differential test above would pass trivially if the fast path never ran."""
    import re

    from greenrt.protocols.nats import codec as codec_mod

    token = re.compile(codec_mod._TOKEN)
    for i in range(256):  # a token byte is exactly what bytes.split() keeps
        assert bool(token.fullmatch(bytes([i]))) == bool(bytes([i]).split()), i

    assert codec_mod._FAST_MSG(b"MSG foo.bar 7 5\r\nhello\r\n", 0).groups() == \
        (b"foo.bar", b"7", None, b"5")
    assert codec_mod._FAST_MSG(b"MSG foo.bar 7 x 5\r\nhello\r\n", 0).groups() == \
        (b"foo.bar", b"7", b"x", b"5")
    for odd in (b"msg foo 7 5\r\n", b"MSG foo\t7 5\r\n", b"MSG foo 7  5\r\n",
                b"MSG foo 7 x y 5\r\n", b"MSG foo 7 5\n", b"MSG foo 7 x\t5\r\n"):
        assert codec_mod._FAST_MSG(odd, 0) is None, odd


def _run(data: bytes, limits: Limits | None, step: int | None, batch: int | None):
    """Events and the error (type, code) of parsing ``data`` cut into ``step``-byte
    chunks, one ``next_event`` at a time (``batch`` None) or ``next_events(batch)``."""
    p = Parser(limits)
    out: list = []
    chunks = [data] if step is None else [data[i:i + step] for i in range(0, len(data), step)]
    try:
        for c in chunks:
            p.receive_data(c)
            if batch is None:
                while (ev := p.next_event()) is not NEED_DATA:
                    out.append(ev)
            else:
                while evs := p.next_events(batch):
                    assert len(evs) <= batch
                    out.extend(evs)
    except ProtocolError as e:
        return out, (type(e), e.code)
    return out, None


@settings(max_examples=400, deadline=None)
@given(st.lists(_MSG_FRAME, min_size=1, max_size=4), st.binary(max_size=60),
       st.integers(min_value=8, max_value=40), st.sampled_from([None, 1, 3, 7]),
       st.sampled_from([1, 2, 512]))
def test_next_events_gives_next_events_verdicts(frames, junk, max_line, step, batch):
    """``next_events`` (the reader's batch API) is ``next_event`` in a loop: the same
    events before the same error, whatever the segmentation and the batch size."""
    data = STREAM + b"".join(frames) + junk + b"PING\r\n"
    limits = Limits(max_control_line=max_line, max_payload=16)
    one = _run(data, limits, step, None)
    assert _run(data, limits, step, batch) == one
    assert one[0], "nothing parsed: the comparison would be empty"


def test_next_events_error_comes_after_the_events_before_it_and_sticks():
    p = Parser()
    p.receive_data(b"MSG a 1 2\r\nok\r\nPING\r\nMSG a 1 2\r\nokXX")
    evs = p.next_events()
    assert [type(e) for e in evs] == [Msg, Ping]
    with pytest.raises(ProtocolError) as ei:
        p.next_events()
    assert ei.value.code == "bad_terminator"
    with pytest.raises(ProtocolError) as again:
        p.next_event()
    assert again.value is ei.value


def test_a_payload_in_one_byte_chunks_is_collected_and_joined_once_whole():
    payload = bytes(range(256)) * 40
    frame = b"MSG big 1 %d\r\n%s\r\nPING\r\n" % (len(payload), payload)
    p = Parser()
    got: list = []
    for i in range(len(frame)):
        p.receive_data(frame[i:i + 1])
        got.extend(p.next_events())
        assert p.buffered <= i + 1
    assert [type(e) for e in got] == [Msg, Ping]
    assert got[0].payload == payload and type(got[0].payload) is bytes
    assert p.buffered == 0
