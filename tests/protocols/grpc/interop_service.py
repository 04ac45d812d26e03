"""The interop TestService, twice: on our server (``OurTestService``, blocking-style
handlers with a ServerContext) and on grpcio's (``GrpcioTestService``), with the
behaviour doc/interop-test-descriptions.md asks of a server: payloads of the
requested sizes (zeros), ``response_status`` echoed as the call's status, the
``x-grpc-test-echo-initial`` / ``x-grpc-test-echo-trailing-bin`` metadata echoed."""

from __future__ import annotations

import time

import greenrt
from greenrt.protocols.grpc import RpcError

from .pb import pb2, pb2_grpc

ECHO_INITIAL = "x-grpc-test-echo-initial"
ECHO_TRAILING = "x-grpc-test-echo-trailing-bin"


def _payload(size: int):
    return pb2.Payload(body=b"\x00" * size)


class OurTestService:
    """For greenrt.protocols.grpc.server.Server.add_servicer."""

    def __init__(self):
        self.cancelled: list[str] = []

    def _echo(self, ctx):
        for k, v in ctx.metadata:
            if k == ECHO_INITIAL:
                ctx.send_initial_metadata([(k, v)])
            elif k == ECHO_TRAILING:
                ctx.set_trailing_metadata([(k, v)])

    def _status(self, st):
        if st is not None and st.code:
            raise RpcError(st.code, st.message)

    def EmptyCall(self, req, ctx):
        self._echo(ctx)
        return pb2.Empty()

    def UnaryCall(self, req, ctx):
        self._echo(ctx)
        if req.HasField("response_status"):
            self._status(req.response_status)
        if req.response_compressed.value:
            ctx.set_compression("gzip")
        return pb2.SimpleResponse(payload=_payload(req.response_size))

    def StreamingOutputCall(self, req, ctx):
        self._echo(ctx)
        for p in req.response_parameters:
            if p.interval_us:
                greenrt.sleep(p.interval_us / 1e6)
            yield pb2.StreamingOutputCallResponse(payload=_payload(p.size))
        if req.HasField("response_status"):
            self._status(req.response_status)

    def StreamingInputCall(self, requests, ctx):
        self._echo(ctx)
        total = 0
        for r in requests:
            total += len(r.payload.body)
        return pb2.StreamingInputCallResponse(aggregated_payload_size=total)

    def FullDuplexCall(self, requests, ctx):
        self._echo(ctx)
        try:
            for r in requests:
                if r.HasField("response_status"):
                    self._status(r.response_status)
                for p in r.response_parameters:
                    if p.interval_us:
                        greenrt.sleep(p.interval_us / 1e6)
                    ctx.send(pb2.StreamingOutputCallResponse(payload=_payload(p.size)))
        except greenrt.Cancelled:
            self.cancelled.append("FullDuplexCall")
            raise

    def HalfDuplexCall(self, requests, ctx):
        reqs = list(requests)
        for r in reqs:
            for p in r.response_parameters:
                yield pb2.StreamingOutputCallResponse(payload=_payload(p.size))


class GrpcioTestService(pb2_grpc.TestServiceServicer):
    """The same service on grpcio's server API (threads)."""

    def _echo(self, ctx):
        md = dict(ctx.invocation_metadata())
        if ECHO_INITIAL in md:
            ctx.send_initial_metadata([(ECHO_INITIAL, md[ECHO_INITIAL])])
        if ECHO_TRAILING in md:
            ctx.set_trailing_metadata([(ECHO_TRAILING, md[ECHO_TRAILING])])

    def _status(self, st, ctx):
        import grpc

        if st is not None and st.code:
            ctx.abort(grpc.StatusCode(_CODES[st.code]), st.message)

    def EmptyCall(self, req, ctx):
        self._echo(ctx)
        return pb2.Empty()

    def UnaryCall(self, req, ctx):
        self._echo(ctx)
        if req.HasField("response_status"):
            self._status(req.response_status, ctx)
        return pb2.SimpleResponse(payload=_payload(req.response_size))

    def StreamingOutputCall(self, req, ctx):
        self._echo(ctx)
        for p in req.response_parameters:
            if p.interval_us:
                time.sleep(p.interval_us / 1e6)
            yield pb2.StreamingOutputCallResponse(payload=_payload(p.size))

    def StreamingInputCall(self, requests, ctx):
        self._echo(ctx)
        return pb2.StreamingInputCallResponse(
            aggregated_payload_size=sum(len(r.payload.body) for r in requests))

    def FullDuplexCall(self, requests, ctx):
        self._echo(ctx)
        for r in requests:
            if r.HasField("response_status"):
                self._status(r.response_status, ctx)
            for p in r.response_parameters:
                if p.interval_us:
                    time.sleep(p.interval_us / 1e6)
                yield pb2.StreamingOutputCallResponse(payload=_payload(p.size))

    def HalfDuplexCall(self, requests, ctx):
        reqs = list(requests)
        for r in reqs:
            for p in r.response_parameters:
                yield pb2.StreamingOutputCallResponse(payload=_payload(p.size))


def _codes():
    import grpc

    return {c.value[0]: c.value for c in grpc.StatusCode}


class _LazyCodes(dict):
    def __missing__(self, k):
        self.update(_codes())
        return dict.__getitem__(self, k)


_CODES = _LazyCodes()
