"""Stdlib clients and servers, unmodified, through greenrt.patch in one hub:
``socketserver`` (``serve_forever``, ``shutdown``) serving a small SMTP dialogue,
``smtplib`` clients sending through it, ``threading.Barrier`` coordinating them.

The server is a ``socketserver.TCPServer`` whose ``process_request`` starts a task
per connection (what ``ThreadingMixIn`` does with threads). The handler answers
``DATA`` only once both clients have reached it (a ``threading.Barrier`` made while
patched), so the test passes only if two SMTP sessions, the accept loop and the
test itself all overlap in one thread.
"""

from __future__ import annotations

import smtplib
import socketserver
import threading
from email.message import EmailMessage

import pytest

import greenrt
import greenrt.patch as gp


@pytest.fixture
def patched():
    gp.unpatch()
    gp.patch_all()
    try:
        yield
    finally:
        gp.unpatch()


class SMTPHandler(socketserver.StreamRequestHandler):
    """Just enough of RFC 5321 for smtplib.sendmail."""

    def handle(self):
        srv = self.server
        self.wfile.write(b"220 greenrt-test ESMTP\r\n")
        mail = {"rcpt": []}
        while True:
            line = self.rfile.readline(1000)
            if not line:
                return
            cmd = line.strip().upper()
            if cmd.startswith(b"EHLO"):
                self.wfile.write(b"250-greenrt-test\r\n250 8BITMIME\r\n")
            elif cmd.startswith(b"HELO"):
                self.wfile.write(b"250 greenrt-test\r\n")
            elif cmd.startswith(b"MAIL FROM:"):
                mail["from"] = line.strip()[10:]
                self.wfile.write(b"250 OK\r\n")
            elif cmd.startswith(b"RCPT TO:"):
                mail["rcpt"].append(line.strip()[8:])
                self.wfile.write(b"250 OK\r\n")
            elif cmd == b"DATA":
                try:
                    srv.barrier.wait(10)  # both sessions must be here at once
                except threading.BrokenBarrierError:
                    self.wfile.write(b"451 alone\r\n")
                    return
                self.wfile.write(b"354 go ahead\r\n")
                body = []
                while (ln := self.rfile.readline(10000)) not in (b".\r\n", b""):
                    body.append(ln)
                srv.received.append((mail["from"], b"".join(body)))
                self.wfile.write(b"250 queued\r\n")
            elif cmd == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            elif cmd in (b"RSET", b"NOOP"):
                self.wfile.write(b"250 OK\r\n")
            else:
                self.wfile.write(b"502 not implemented\r\n")


class TaskPerConnectionServer(socketserver.TCPServer):
    allow_reuse_address = True

    def __init__(self, region, *args):
        self.region = region
        self.barrier = threading.Barrier(2)
        self.received = []
        super().__init__(*args)

    def process_request(self, request, client_address):
        def run():
            try:
                self.finish_request(request, client_address)
            finally:
                self.shutdown_request(request)

        self.region.spawn(run, name="smtp-session")


def test_smtplib_through_a_socketserver_in_the_same_hub(patched):
    def main():
        with greenrt.region() as r:
            srv = TaskPerConnectionServer(r, ("127.0.0.1", 0), SMTPHandler)
            port = srv.server_address[1]
            r.spawn(srv.serve_forever, 0.05, name="serve_forever")

            def send(i):
                msg = EmailMessage()
                msg["From"] = f"a{i}@example.org"
                msg["To"] = "b@example.org"
                msg["Subject"] = f"hello {i}"
                msg.set_content(f"message {i}")
                with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
                    s.send_message(msg)

            with greenrt.region() as clients:
                clients.spawn(send, 1)
                clients.spawn(send, 2)
            srv.shutdown()  # waits (cooperatively) for serve_forever to return
            srv.server_close()
        froms = sorted(f for f, _ in srv.received)
        assert froms == [b"<a1@example.org>", b"<a2@example.org>"]
        assert all(b"message" in body for _, body in srv.received)

    greenrt.run(main)


def test_a_cancelled_smtp_session_is_closed_and_the_server_goes_on(patched):
    def main():
        with greenrt.region() as r:
            srv = TaskPerConnectionServer(r, ("127.0.0.1", 0), SMTPHandler)
            port = srv.server_address[1]
            r.spawn(srv.serve_forever, 0.05)

            def lonely():
                # not ``with SMTP``: its __exit__ sends QUIT and waits for the answer,
                # which a cancelled task may do for its cleanup budget (5 s)
                s = smtplib.SMTP("127.0.0.1", port, timeout=20)
                try:
                    s.sendmail("x@example.org", ["y@example.org"], "body")  # DATA waits forever
                finally:
                    s.close()

            with greenrt.move_on_after(0.1) as sc:
                lonely()
            assert sc.cancelled_caught
            srv.barrier.reset()  # frees the server side of the lonely session
            with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
                assert s.noop()[0] == 250
            srv.shutdown()
            srv.server_close()
            r.cancel()

    greenrt.run(main)
