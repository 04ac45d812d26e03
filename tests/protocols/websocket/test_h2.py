"""RFC 8441: WebSockets over HTTP/2 (extended CONNECT), on real sockets.

Our client against our server (``protocols.http.serve``: one port for HTTP/1.1 and
HTTP/2; h2c prior knowledge and h2 over TLS by ALPN), with and without
permessage-deflate; hypercorn (its RFC 8441 support is wsproto behind h2) as the
server for our client; an independent client made of ``h2`` and ``wsproto`` over a
plain socket against our server; limits over HTTP/2; malformed extended CONNECTs;
the WSGI path (a Flask view); the flow-control window of a tunnel.
"""

from __future__ import annotations

import os

import pytest

import greenrt
from greenrt.protocols import http, http2, tls, websocket
from greenrt.protocols.http.model import Response

pytestmark = pytest.mark.timeout(60)
HERE = os.path.dirname(os.path.abspath(__file__))


def _echo(ws):
    for m in ws:
        ws.send(m)


def _fallback(req):
    return Response(200, [("content-type", "text/plain")], b"plain http\n")


def _serve(r, handler, *, tls_ctx=None, h2_limits=None):
    servers = []
    r.spawn(lambda: http.serve(handler, "127.0.0.1", 0, tls=tls_ctx, h2_limits=h2_limits,
                               on_ready=servers.append))
    while not servers:
        greenrt.sleep(0)
    return servers[0], servers[0].addresses[0][1]


def _server_tls(pki):
    return tls.server_context(cert_pem=pki["chain"], key_pem=pki["key"],
                              alpn=["h2", "http/1.1"])


def _client_tls(pki):
    return tls.client_context(cadata=pki["ca_pem"], alpn=["h2"])


# -- our client <-> our server ------------------------------------------------------------


@pytest.mark.parametrize("compression", [False, True], ids=["plain", "deflate"])
@pytest.mark.parametrize("secure", [False, True], ids=["h2c", "tls"])
def test_our_client_our_server_over_h2(pki, secure, compression):
    seen = {}

    def handler(ws):
        seen["path"] = ws.path
        seen["compression"] = ws.compression
        seen["subprotocol"] = ws.subprotocol
        _echo(ws)

    def main():
        with greenrt.region() as r:
            srv, port = _serve(r, websocket.http_handler(handler, fallback=_fallback,
                                                         subprotocols=["chat"]),
                               tls_ctx=_server_tls(pki) if secure else None)
            scheme = "wss" if secure else "ws"
            ws = websocket.connect(f"{scheme}://localhost:{port}/chat?x=1", http2=True,
                                   compression=compression, subprotocols=["chat"],
                                   tls_context=_client_tls(pki) if secure else None)
            assert isinstance(ws._stream, http2.ClientTunnel)
            assert ws.subprotocol == "chat" and ws.compression is compression
            msgs = ["hello", b"\x00\x01binary", "x" * 200_000, b"y" * 70_000]
            # sent from a task of its own while this one reads: each direction holds
            # at most a stream window (64 KiB) in flight, so an echo of messages
            # larger than that needs both ends moving
            r.spawn(lambda: [ws.send(m) for m in msgs])
            got = [ws.recv() for _ in msgs]
            assert got == msgs
            assert ws.ping() >= 0
            ws.close()
            assert ws.close_code == 1000
            # the owned HTTP/2 connection is closed with the WebSocket
            assert ws._stream.owns.statistics()["usable"] is False
            srv.shutdown()
        assert seen == {"path": "/chat?x=1", "compression": compression, "subprotocol": "chat"}

    greenrt.run(main)
