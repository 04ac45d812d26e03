"""Our gRPC client against responses a well-behaved server does not send, from a
scripted HTTP/2 server (the ``h2`` library in a thread: the fault cases grpcio's
server cannot be made to produce): missing / invalid / out-of-range ``grpc-status``,
HTTP 4xx/5xx without one, bad %-encoding in ``grpc-message``, RST_STREAM codes,
GOAWAY before the stream (retryable, retried once), an oversized response."""

from __future__ import annotations

import socket
import threading

import h2.config
import h2.connection
import h2.events
import hyperframe.frame
import pytest

import greenrt
from greenrt.protocols.grpc import RpcError, StatusCode
from greenrt.protocols.grpc.client import Channel, Stub
from greenrt.protocols.grpc.framing import encode_message

from .pb import SERVICE, pb2


class ScriptedH2Server:
    """Answers each request with ``script(conn, stream_id, n)`` (n: the connection's
    number, from 0), where ``conn`` is the server-side H2Connection; bytes the script
    returns are written after what ``conn`` queued before the script ran."""

    def __init__(self, script):
        self.script = script
        self.lst = socket.create_server(("127.0.0.1", 0))
        self.port = self.lst.getsockname()[1]
        self.connections = 0
        self.requests: list[dict] = []
        self._stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self._stop:
            try:
                sock, _ = self.lst.accept()
            except OSError:
                return
            n = self.connections
            self.connections += 1
            threading.Thread(target=self._serve, args=(sock, n), daemon=True).start()

    def _serve(self, sock, n):
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False,
                                                                    header_encoding=None))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        self.requests.append(dict(ev.headers))
                        raw = self.script(conn, ev.stream_id, n)
                        if raw:  # frames h2 would not let us send (GOAWAY, then more)
                            sock.sendall(conn.data_to_send() + raw)
                    elif isinstance(ev, h2.events.DataReceived):
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                out = conn.data_to_send()
                if out:
                    sock.sendall(out)
        except OSError:
            return
        finally:
            sock.close()

    def close(self):
        self._stop = True
        self.lst.close()


@pytest.fixture
def scripted():
    servers = []

    def make(script):
        s = ScriptedH2Server(script)
        servers.append(s)
        return s
    yield make
    for s in servers:
        s.close()


def _ok_body():
    return encode_message(pb2.Empty().SerializeToString())


def respond(head, body=b"", trailers=None):
    def script(conn, sid, n):
        conn.send_headers(sid, head, end_stream=not body and trailers is None)
        if body:
            conn.send_data(sid, body, end_stream=trailers is None)
        if trailers is not None:
            conn.send_headers(sid, trailers, end_stream=True)
    return script


GRPC_HEAD = [(b":status", b"200"), (b"content-type", b"application/grpc")]


def call(server, **kw):
    def main():
        with Channel("127.0.0.1", server.port) as ch:
            try:
                Stub(ch, SERVICE).EmptyCall(pb2.Empty(), **kw)
            except RpcError as e:
                return e, ch.connects
            return None, ch.connects
    return greenrt.run(main)


def test_ok_and_the_request_headers(scripted):
    srv = scripted(respond(GRPC_HEAD, _ok_body(), [(b"grpc-status", b"0")]))
    assert call(srv, timeout=5, metadata=[("k", "v")]) == (None, 1)
    h = srv.requests[0]
    assert h[b":method"] == b"POST" and h[b"content-type"] == b"application/grpc"
    assert h[b"te"] == b"trailers" and h[b"k"] == b"v"
    assert h[b"grpc-timeout"].endswith((b"u", b"m", b"n"))


@pytest.mark.parametrize("trailers,why", [
    ([], "missing grpc-status"),
    ([(b"grpc-status", b"abc")], "invalid grpc-status"),
    ([(b"grpc-status", b"17")], "invalid grpc-status"),
    ([(b"grpc-status", b"-1")], "invalid grpc-status"),
])
def test_missing_invalid_out_of_range_status_is_unknown(scripted, trailers, why):
    srv = scripted(respond(GRPC_HEAD, _ok_body(), trailers + [(b"x-t", b"1")]))
    e, _ = call(srv)
    assert e.status == StatusCode.UNKNOWN
    assert why in e.message


@pytest.mark.parametrize("http,status", [
    (400, StatusCode.INTERNAL), (401, StatusCode.UNAUTHENTICATED),
    (403, StatusCode.PERMISSION_DENIED), (404, StatusCode.UNIMPLEMENTED),
    (429, StatusCode.UNAVAILABLE), (500, StatusCode.UNKNOWN), (502, StatusCode.UNAVAILABLE),
    (503, StatusCode.UNAVAILABLE), (504, StatusCode.UNAVAILABLE), (418, StatusCode.UNKNOWN),
])
def test_http_status_without_grpc_status(scripted, http, status):
    srv = scripted(respond([(b":status", str(http).encode()), (b"content-type", b"text/html")],
                           b"<html>nope</html>"))
    e, _ = call(srv)
    assert e.status == status
    assert str(http) in e.message


def test_grpc_status_wins_over_http_status(scripted):
    srv = scripted(respond([(b":status", b"503"), (b"content-type", b"application/grpc"),
                            (b"grpc-status", b"5"), (b"grpc-message", b"gone")]))
    e, _ = call(srv)
    assert (e.status, e.message) == (StatusCode.NOT_FOUND, "gone")


def test_bad_percent_encoding_in_grpc_message_is_passed_through(scripted):
    srv = scripted(respond(GRPC_HEAD + [(b"grpc-status", b"3"),
                                        (b"grpc-message", b"bad %zz and %4 and %E2%98%BA")]))
    e, _ = call(srv)
    assert e.status == StatusCode.INVALID_ARGUMENT
    assert e.message == "bad %zz and %4 and \u263a"


def test_status_details_bin_both_base64_forms(scripted):
    for v in (b"CAUSBWdvbmU", b"CAUSBWdvbmU="):
        srv = scripted(respond(GRPC_HEAD, b"", [(b"grpc-status", b"5"),
                                                (b"grpc-status-details-bin", v)]))
        e, _ = call(srv)
        assert e.details == b"\x08\x05\x12\x05gone"


def test_non_grpc_content_type_with_200_is_unknown(scripted):
    srv = scripted(respond([(b":status", b"200"), (b"content-type", b"text/plain")], b"hi"))
    e, _ = call(srv)
    assert e.status == StatusCode.UNKNOWN


@pytest.mark.parametrize("code,status", [(0x8, StatusCode.CANCELLED),
                                         (0x2, StatusCode.INTERNAL),
                                         (0xB, StatusCode.RESOURCE_EXHAUSTED),
                                         (0xC, StatusCode.PERMISSION_DENIED)])
def test_rst_stream_codes(scripted, code, status):
    def script(conn, sid, n):
        conn.send_headers(sid, GRPC_HEAD)
        conn.reset_stream(sid, error_code=code)
    e, _ = call(scripted(script))
    assert e.status == status


def goaway(last_stream_id):
    return hyperframe.frame.GoAwayFrame(0, last_stream_id=last_stream_id,
                                        error_code=0).serialize()


def test_refused_stream_is_retryable_and_retried_once(scripted):
    def script(conn, sid, n):
        if len(srv.requests) == 1:
            conn.reset_stream(sid, error_code=0x7)  # REFUSED_STREAM: never processed
        else:
            respond(GRPC_HEAD, _ok_body(), [(b"grpc-status", b"0")])(conn, sid, n)
    srv = scripted(script)
    err, connects = call(srv)
    assert err is None
    assert len(srv.requests) == 2


def test_goaway_before_the_stream_is_unavailable_retryable_then_retried(scripted):
    def script(conn, sid, n):
        if n == 0:
            return goaway(0)  # our stream was above the last-stream-id: not processed
        else:
            respond(GRPC_HEAD, _ok_body(), [(b"grpc-status", b"0")])(conn, sid, n)
    srv = scripted(script)
    err, connects = call(srv)
    assert err is None and connects == 2


def test_goaway_every_time_surfaces_unavailable_retryable(scripted):
    srv = scripted(lambda conn, sid, n: goaway(0))
    e, connects = call(srv)
    assert e.status == StatusCode.UNAVAILABLE and e.retryable
    assert connects == 2  # one transparent retry, no more


def test_goaway_after_the_stream_lets_it_finish(scripted):
    def script(conn, sid, n):
        # GOAWAY naming our stream as accepted, then its response: it must complete
        head = conn.data_to_send() + goaway(sid)
        respond(GRPC_HEAD, _ok_body(), [(b"grpc-status", b"0")])(conn, sid, n)
        return head + conn.data_to_send()
    srv = scripted(script)
    assert call(srv)[0] is None


def test_oversized_response_message_is_resource_exhausted(scripted):
    srv = scripted(respond(GRPC_HEAD, b"\x00\xff\xff\xff\xff", None))
    e, _ = call(srv)
    assert e.status == StatusCode.RESOURCE_EXHAUSTED


def test_compressed_response_without_encoding_is_internal(scripted):
    srv = scripted(respond(GRPC_HEAD, encode_message(b"", compress=b"gzip"),
                           [(b"grpc-status", b"0")]))
    e, _ = call(srv)
    assert e.status == StatusCode.INTERNAL


def test_ok_unary_without_a_message_is_internal(scripted):
    srv = scripted(respond(GRPC_HEAD, b"", [(b"grpc-status", b"0")]))
    e, _ = call(srv)
    assert e.status == StatusCode.INTERNAL


def test_connection_refused_is_unavailable():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()

    def main():
        with Channel("127.0.0.1", port, connect_timeout=5) as ch:
            with pytest.raises(RpcError) as ei:
                Stub(ch, SERVICE).EmptyCall(pb2.Empty())
            return ei.value.status
    assert greenrt.run(main) == StatusCode.UNAVAILABLE


# -- the unary fast path (the whole answer in one read): each odd answer still gets the
# -- general path's status

@pytest.mark.parametrize("head,body,trailers,status", [
    # two messages for a unary call
    (GRPC_HEAD, _ok_body() * 2, [(b"grpc-status", b"0")], StatusCode.INTERNAL),
    # a head without content-type (grpc-accept-encoding alone)
    ([(b":status", b"200"), (b"grpc-accept-encoding", b"identity")], _ok_body(),
     [(b"grpc-status", b"0")], StatusCode.UNKNOWN),
    # the prefix announces more than the body has
    (GRPC_HEAD, b"\x00\x00\x00\x00\x09abc", [(b"grpc-status", b"0")], StatusCode.INTERNAL),
    # a message that does not parse as the response type
    (GRPC_HEAD, encode_message(b"\xff\xff\xff"), [(b"grpc-status", b"0")],
     StatusCode.INTERNAL),
    # grpcio's OK trailers with an error status instead
    (GRPC_HEAD, _ok_body(), [(b"grpc-status", b"5"), (b"grpc-message", b"")],
     StatusCode.NOT_FOUND),
    # a message within the limit, then trailers with metadata: OK
    (GRPC_HEAD, _ok_body(), [(b"grpc-status", b"0"), (b"x-k", b"v")], None),
    # grpcio's head and trailers: OK
    ([(b":status", b"200"), (b"content-type", b"application/grpc"),
      (b"grpc-accept-encoding", b"identity, deflate, gzip")], _ok_body(),
     [(b"grpc-status", b"0"), (b"grpc-message", b"")], None),
])
def test_unary_whole_answer_statuses(scripted, head, body, trailers, status):
    e, connects = call(scripted(respond(head, body, trailers)))
    assert connects == 1
    assert (e and e.status) == status


def test_unary_whole_answer_gzip_and_metadata(scripted):
    """A compressed message and initial metadata leave the fast path for the general
    one, with the same result."""
    srv = scripted(respond(GRPC_HEAD + [(b"grpc-encoding", b"gzip"), (b"x-a", b"1")],
                           encode_message(pb2.Empty().SerializeToString(), compress=b"gzip"),
                           [(b"grpc-status", b"0"), (b"grpc-message", b"")]))

    def main():
        with Channel("127.0.0.1", srv.port) as ch:
            call = ch.start_call("/grpc.testing.TestService/EmptyCall", pb2.Empty,
                                 _only=pb2.Empty())
            return call.result(), call.initial_metadata(), call.status

    assert greenrt.run(main) == (pb2.Empty(), [("x-a", "1")], StatusCode.OK)
