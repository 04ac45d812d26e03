"""The epoll driver: per-wait and persistent registrations, closing, busy waits,
fd-number reuse and cross-thread wake-ups, on real fds."""

import os
import socket
import threading
import time

import pytest

import greenrt
from greenrt import lowlevel, net

pytestmark = pytest.mark.timeout(60)


def test_per_wait_registration_on_a_pipe_is_removed_after_wake():
    r, w = os.pipe()
    os.set_blocking(r, False)

    def writer():
        time.sleep(0.05)
        os.write(w, b"x")

    def main():
        driver = lowlevel.current_hub().driver
        t = threading.Thread(target=writer)
        t.start()
        lowlevel.wait_readable(r)
        t.join()
        registered_after = r in driver._slots
        return os.read(r, 10), registered_after, driver.waiting

    try:
        data, registered_after, waiting = greenrt.run(main)
    finally:
        os.close(r)
        os.close(w)
    assert data == b"x" and not registered_after and waiting == 0


def test_cancelled_wait_leaves_no_registration():
    r, w = os.pipe()

    def main():
        driver = lowlevel.current_hub().driver
        with greenrt.move_on_after(0.01) as sc:
            lowlevel.wait_readable(r)
        return sc.cancelled_caught, r in driver._slots, driver.waiting

    try:
        assert greenrt.run(main) == (True, False, 0)
    finally:
        os.close(r)
        os.close(w)


def test_two_readers_of_one_fd_are_refused_and_closing_wakes_waiters():
    a, b = socket.socketpair()
    a.setblocking(False)

    def main():
        errors = []
        with greenrt.region() as rg:
            def reader():
                try:
                    lowlevel.wait_readable(a.fileno())
                except greenrt.ClosedResourceError as e:
                    errors.append(e)

            def writer():
                try:
                    # fill the buffer so a write wait really blocks
                    while True:
                        a.send(b"x" * 65536)
                except BlockingIOError:
                    pass
                try:
                    lowlevel.wait_writable(a.fileno())
                except greenrt.ClosedResourceError as e:
                    errors.append(e)

            rg.spawn(reader)
            rg.spawn(writer)
            greenrt.sleep(0.01)
            with pytest.raises(greenrt.BusyResourceError):
                lowlevel.wait_readable(a.fileno())
            lowlevel.notify_closing(a.fileno())
        return len(errors), lowlevel.current_hub().driver.waiting

    try:
        assert greenrt.run(main) == (2, 0)
    finally:
        a.close()
        b.close()


def test_persistent_registration_survives_fd_number_reuse():
    # A stream whose socket is closed behind the driver's back (no notify_closing)
    # must not hide the next socket that gets the same fd number.
    def main():
        lst = net.listen_tcp("127.0.0.1", 0)
        port = lst.address[1]
        with greenrt.region() as rg:
            def server():
                for _ in range(2):
                    s = lst.accept()
                    rg.spawn(lambda s=s: (greenrt.sleep(0.05), s.send_all(b"late"),
                                          greenrt.sleep(0.5), s.close()))

            rg.spawn(server)
            c1 = net.open_tcp("127.0.0.1", port)
            with greenrt.move_on_after(0.01):
                c1.recv(10)  # registers c1's fd with epoll
            fd1 = c1.socket.fileno()
            c1.socket.close()  # leaked: the driver was not told
            c2 = net.open_tcp("127.0.0.1", port)
            fd2 = c2.socket.fileno()
            data = c2.recv(10)  # must wake when "late" arrives
            c2.close()
        lst.close()
        return fd1, fd2, data

    fd1, fd2, data = greenrt.run(main)
    assert fd1 == fd2  # the scenario really reused the number
    assert data == b"late"


def test_wakeup_from_another_thread_while_blocked_in_poll():
    def main():
        hub = lowlevel.current_hub()
        got = []
        ev = greenrt.Event()

        def from_thread():
            time.sleep(0.05)
            hub.call_soon_threadsafe(lambda: (got.append(1), ev.set()))

        t = threading.Thread(target=from_thread)
        t.start()
        ev.wait()  # nothing else to do: the hub blocks in epoll until the wake-up
        t.join()
        return got

    assert greenrt.run(main) == [1]


def test_many_streams_share_the_driver():
    def handler(s):
        while d := s.recv(100):
            s.send_all(d)

    def main():
        servers = []
        with greenrt.region() as r:
            r.spawn(lambda: net.serve_tcp(handler, "127.0.0.1", 0, on_ready=servers.append))
            while not servers:
                greenrt.sleep(0)
            port = servers[0].addresses[0][1]
            streams = [net.open_tcp("127.0.0.1", port) for _ in range(200)]
            for i, s in enumerate(streams):
                s.send_all(b"%d" % i)
            ok = all(s.recv(100) == b"%d" % i for i, s in enumerate(streams))
            for s in streams:
                s.close()
            servers[0].shutdown()
        return ok, lowlevel.current_hub().driver.waiting

    assert greenrt.run(main) == (True, 0)


def test_generic_wait_on_a_reused_fd_number_after_a_leaked_stream():
    def main():
        lst = net.listen_tcp("127.0.0.1", 0)
        with greenrt.region() as rg:
            rg.spawn(lambda: (lst.accept(), greenrt.sleep(0.3)))
            c1 = net.open_tcp("127.0.0.1", lst.address[1])
            with greenrt.move_on_after(0.01):
                c1.recv(10)  # registers c1's fd with epoll (persistent)
            fd1 = c1.socket.fileno()
            c1.socket.close()  # leaked: the driver was not told
            a, b = socket.socketpair()  # takes the lowest free numbers
            t = threading.Timer(0.05, lambda: b.send(b"!"))
            t.start()
            lowlevel.wait_readable(a.fileno())  # per-wait mode must still see it
            t.join()
            fd_a = a.fileno()
            data = a.recv(10)
            a.close()
            b.close()
        lst.close()
        return fd1, fd_a, data

    fd1, fd_a, data = greenrt.run(main)
    assert fd1 == fd_a and data == b"!"
