"""greenrt.patch: the patch API, and each patched primitive inside and outside tasks.

Overlap is asserted by ordering (a task can only finish if another ran while it was
blocked), never by elapsed time. Real sockets on loopback, real threads, real
subprocesses.
"""

from __future__ import annotations

import os
import queue
import select
import selectors
import socket
import ssl
import subprocess
import sys
import threading
import time

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


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# -- the API ---------------------------------------------------------------------------


def test_patch_all_is_idempotent_and_unpatch_restores_the_originals():
    gp.unpatch()
    orig = (socket.socket, socket.getaddrinfo, time.sleep, select.select, select.poll,
            selectors.DefaultSelector, threading.Lock, threading.RLock, subprocess.Popen,
            ssl.SSLContext.sslsocket_class, threading.Thread.start, queue.SimpleQueue)
    assert not gp.is_patched()
    gp.patch_all()
    try:
        assert all(gp.is_patched(m) for m in gp.MODULES)
        first = (socket.socket, time.sleep, threading.Lock)
        gp.patch_all()  # again: no double wrapping
        assert (socket.socket, time.sleep, threading.Lock) == first
        assert socket.socket is not orig[0] and issubclass(socket.socket, orig[0])
    finally:
        gp.unpatch()
    assert not gp.is_patched()
    now = (socket.socket, socket.getaddrinfo, time.sleep, select.select, select.poll,
           selectors.DefaultSelector, threading.Lock, threading.RLock, subprocess.Popen,
           ssl.SSLContext.sslsocket_class, threading.Thread.start, queue.SimpleQueue)
    assert now == orig
    assert "start" in threading.Thread.__dict__  # restored as the class's own attribute


def test_per_module_patch_and_unknown_name():
    gp.unpatch()
    try:
        gp.patch_time()
        assert gp.is_patched("time") and not gp.is_patched("socket")
        with pytest.raises(ValueError):
            gp.is_patched("nosuchmodule")
    finally:
        gp.unpatch()


def test_patched_context_manager_undoes_only_its_own():
    gp.unpatch()
    gp.patch_time()
    try:
        with gp.patched():
            assert gp.is_patched("socket")
        assert not gp.is_patched("socket") and gp.is_patched("time")
    finally:
        gp.unpatch()


# -- time.sleep ------------------------------------------------------------------------


def test_sleep_overlaps_and_is_cancellable(patched):
    order = []

    def sleeper(name, d):
        time.sleep(d)
        order.append(name)

    def main():
        with greenrt.region() as r:
            r.spawn(sleeper, "long", 0.2)
            r.spawn(sleeper, "short", 0.01)
        with greenrt.move_on_after(0.01) as s:
            time.sleep(30)
        assert s.cancelled_caught
        with pytest.raises(ValueError):
            time.sleep(-1)

    greenrt.run(main)
    # if sleep blocked the hub, "long" (spawned first) would finish first
    assert order == ["short", "long"]


# -- sockets -----------------------------------------------------------------------


def test_two_tasks_block_in_recv_and_the_hub_keeps_running(patched):
    a1, b1 = socket.socketpair()
    a2, b2 = socket.socketpair()
    got = []

    def reader(sock, name):
        got.append((name, sock.recv(10)))

    def writer():
        # runs only if both readers parked without blocking the hub
        b2.sendall(b"two")
        greenrt.sleep(0.01)
        b1.sendall(b"one")

    def main():
        with greenrt.region() as r:
            r.spawn(reader, a1, "r1")
            r.spawn(reader, a2, "r2")
            r.spawn(writer)

    try:
        greenrt.run(main)
    finally:
        for s in (a1, b1, a2, b2):
            s.close()
    assert got == [("r2", b"two"), ("r1", b"one")]


def test_cancelled_recv_loses_no_data_and_socket_stays_usable(patched):
    a, b = socket.socketpair()

    def main():
        with greenrt.move_on_after(0.02) as s:
            a.recv(10)
        assert s.cancelled_caught
        b.sendall(b"after")
        assert a.recv(10) == b"after"

    try:
        greenrt.run(main)
    finally:
        a.close()
        b.close()


def test_socket_timeout_inside_a_task_raises_timeout_error(patched):
    a, b = socket.socketpair()
    a.settimeout(0.02)

    def main():
        with pytest.raises(TimeoutError, match="timed out"):
            a.recv(10)
        assert a.gettimeout() == 0.02 and a.getblocking()

    try:
        greenrt.run(main)
    finally:
        a.close()
        b.close()


def test_non_blocking_socket_passes_through(patched):
    a, b = socket.socketpair()
    a.setblocking(False)

    def main():
        with pytest.raises(BlockingIOError):
            a.recv(10)
        assert a.gettimeout() == 0.0 and not a.getblocking()

    try:
        greenrt.run(main)
    finally:
        a.close()
        b.close()


def test_cancelled_sendall_after_partial_write_breaks_the_socket(patched):
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    big = b"x" * (4 << 20)

    def main():
        with greenrt.move_on_after(0.05) as s:
            a.sendall(big)  # nobody reads b: fills the buffers, then waits
        assert s.cancelled_caught
        with pytest.raises(ConnectionAbortedError, match="sendall was interrupted"):
            a.send(b"more")
        with pytest.raises(ConnectionAbortedError):
            a.sendall(b"more")

    try:
        greenrt.run(main)
    finally:
        a.close()
        b.close()


def test_cancelled_sendall_before_any_byte_leaves_the_socket_usable(patched):
    a, b = socket.socketpair()

    def main():
        with greenrt.cancel_scope() as s:
            s.cancel()
            a.sendall(b"never")  # the checkpoint delivers the cancellation first
        assert s.cancelled_caught
        a.sendall(b"ok")
        assert b.recv(10) == b"ok"

    try:
        greenrt.run(main)
    finally:
        a.close()
        b.close()


def test_accept_connect_and_makefile_between_tasks(patched):
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    seen = []

    def server():
        conn, _ = srv.accept()
        with conn, conn.makefile("rwb") as f:
            line = f.readline()
            f.write(line.upper())
            f.flush()

    def client():
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            f = c.makefile("rwb")
            f.write(b"hello\n")
            f.flush()
            seen.append(f.readline())
            f.close()

    def main():
        with greenrt.region() as r:
            r.spawn(server)
            r.spawn(client)

    try:
        greenrt.run(main)
    finally:
        srv.close()
    assert seen == [b"HELLO\n"]


def test_connect_refused_raises_like_the_original(patched):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens on port now

    def main():
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
        c = socket.socket()
        try:
            assert c.connect_ex(("127.0.0.1", port)) != 0
        finally:
            c.close()

    greenrt.run(main)


def test_close_wakes_a_task_waiting_on_the_socket(patched):
    a, b = socket.socketpair()
    out = []

    def reader():
        try:
            a.recv(10)
        except OSError as e:
            out.append(type(e))

    def main():
        with greenrt.region() as r:
            r.spawn(reader)
            greenrt.sleep(0.01)
            a.close()

    try:
        greenrt.run(main)
    finally:
        b.close()
    assert out == [OSError]


def test_getaddrinfo_runs_in_the_thread_pool_and_numeric_hosts_inline(patched):
    def main():
        hub = greenrt.lowlevel.current_hub()
        seen = []

        def watch():
            # runs while main waits for the resolver thread
            seen.append(hub.threads_outstanding)

        with greenrt.region() as r:
            r.spawn(watch)
            infos = socket.getaddrinfo("localhost", 80, socket.AF_INET, socket.SOCK_STREAM)
        assert infos and infos[0][4][0].startswith("127.")
        assert seen == [1]
        assert socket.gethostbyname("localhost").startswith("127.")
        # a numeric host needs no thread
        before = hub.threads_outstanding
        assert socket.getaddrinfo("127.0.0.1", 80)[0][4][0] == "127.0.0.1"
        assert hub.threads_outstanding == before

    greenrt.run(main)


def test_connect_with_a_host_name_resolves_through_the_pool(patched):
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def main():
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with c:
            c.settimeout(5)
            c.connect(("localhost", port))
            assert c.getpeername()[1] == port

    try:
        greenrt.run(main)
    finally:
        srv.close()


def test_msg_dontwait_is_one_nonblocking_try_and_setblocking_checks_the_fd(patched):
    def main():
        a, b = socket.socketpair()
        with a, b:
            with pytest.raises(BlockingIOError):
                a.recv(10, socket.MSG_DONTWAIT)
            with pytest.raises(BlockingIOError):
                a.recv_into(bytearray(10), 10, socket.MSG_DONTWAIT)
            with pytest.raises(OSError):  # fill the buffer: EAGAIN, never a wait
                while True:
                    a.send(b"x" * 65536, socket.MSG_DONTWAIT)
            assert a.gettimeout() is None  # the socket itself stays blocking
        s0 = socket.socket()
        s = socket.socket(fileno=s0.fileno())
        s0.close()
        try:
            with pytest.raises(OSError):
                s.setblocking(False)  # EBADF, as the original
        finally:
            s.detach()
        return "ok"

    assert greenrt.run(main) == "ok"


def test_getnameinfo_numeric_inline_and_bad_arguments_as_the_original(patched):
    import sys

    def main():
        flags = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV
        assert socket.getnameinfo(("127.0.0.1", 80), flags) == ("127.0.0.1", "80")
        name = "not an address"
        before = sys.getrefcount(name)
        with pytest.raises(TypeError):
            socket.getnameinfo(name, 0)
        assert sys.getrefcount(name) == before  # the traceback keeps no reference
        return "ok"

    assert greenrt.run(main) == "ok"


def test_patched_functions_do_not_bind_as_methods(patched):
    """Like the builtins they replace: werkzeug keeps ``lock_class = threading.Lock``
    and calls ``self.lock_class()``."""
    import signal

    class Holder:
        lock_class = threading.Lock
        sleep = time.sleep
        gai = socket.getaddrinfo
        sel = select.select
        getsig = signal.getsignal

    h = Holder()

    def main():
        lock = h.lock_class()
        assert lock.acquire() and lock.locked()
        lock.release()
        h.sleep(0)
        assert h.gai("127.0.0.1", 80)[0][4] == ("127.0.0.1", 80)
        assert h.sel([], [], [], 0) == ([], [], [])
        assert h.getsig(signal.SIGINT) is not None
        return "ok"

    assert greenrt.run(main) == "ok"
    assert time.sleep.__name__ == "sleep"


def test_socket_type_stays_the_c_type(patched):
    import _socket

    assert socket.SocketType is _socket.socket
    assert isinstance(socket.socket(), socket.SocketType)


def test_tls_shutdown_while_another_task_reads_ends_the_read_with_eof(patched):
    """urllib3's ``HTTPResponse.shutdown()``: ``SSLSocket.shutdown(SHUT_RD)`` from one
    task while another waits in ``read``; the reader sees EOF (b""), as unpatched,
    not "Read on closed or unwrapped SSL socket"."""
    import trustme  # (installed by make setup: missing, this fails)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    srv_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(srv_ctx)
    cli_ctx = ssl.create_default_context()
    ca.configure_trust(cli_ctx)

    def main():
        a, b = socket.socketpair()
        got = []
        with greenrt.region() as r:
            def server():
                s = srv_ctx.wrap_socket(b, server_side=True)
                s.sendall(b"hi")
                got.append(("server", s.recv(10)))  # until the client's fd goes away
                s.close()

            r.spawn(server)
            c = cli_ctx.wrap_socket(a, server_hostname="127.0.0.1")
            assert c.recv(2) == b"hi"

            def reader():
                got.append(("reader", c.recv(10)))  # waits: nothing more is sent

            r.spawn(reader)
            greenrt.sleep(0.05)  # let the reader park (ordering only, not a threshold)
            c.shutdown(socket.SHUT_RDWR)
        c.close()
        return sorted(got)

    assert greenrt.run(main) == [("reader", b""), ("server", b"")]


# -- signal: a raising Python handler interrupts the task's blocking call -----------


class _Alarm(Exception):
    pass


def _raise_alarm(signum, frame):
    raise _Alarm


def test_a_raising_signal_handler_interrupts_the_tasks_wait(patched):
    import signal

    def main():
        old = signal.signal(signal.SIGALRM, _raise_alarm)
        assert signal.getsignal(signal.SIGALRM) is _raise_alarm
        a, b = socket.socketpair()
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            with pytest.raises(_Alarm):
                a.recv(10)  # the hub waits; the handler's exception comes out here
            b.sendall(b"after")
            assert a.recv(10) == b"after"  # nothing lost, the socket usable
            sel = selectors.DefaultSelector()
            sel.register(a, selectors.EVENT_READ)
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            with pytest.raises(_Alarm):
                sel.select(30)
            sel.close()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            assert signal.signal(signal.SIGALRM, old) is _raise_alarm
            a.close()
            b.close()
        return "still running"

    assert greenrt.run(main, handle_signals=False) == "still running"


def test_a_signal_handler_that_returns_lets_the_wait_go_on(patched):
    import signal

    got = []

    def main():
        old = signal.signal(signal.SIGALRM, lambda s, f: got.append(s))
        a, b = socket.socketpair()
        try:
            def later():
                while not got:
                    greenrt.sleep(0.01)
                b.sendall(b"x")

            with greenrt.region() as r:
                r.spawn(later)
                signal.setitimer(signal.ITIMER_REAL, 0.02)
                assert a.recv(1) == b"x"  # not interrupted by the handler
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
            a.close()
            b.close()

    greenrt.run(main, handle_signals=False)
    assert got == [signal.SIGALRM]


def test_a_handler_installed_before_run_targets_the_main_task(patched):
    import signal

    old = signal.signal(signal.SIGALRM, _raise_alarm)
    try:
        def main():
            ev = threading.Event()  # made while patched: a cooperative wait
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            # (a timed wait: a pending alarm is not something the deadlock detector
            # counts as a waker)
            with pytest.raises(_Alarm):
                ev.wait(60)
            return "ok"

        assert greenrt.run(main, handle_signals=False) == "ok"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_unpatch_restores_signal(patched):
    import signal

    assert signal.signal is not gp._csignal.real_signal
    gp.unpatch("signal")
    assert signal.signal is gp._csignal.real_signal
    assert signal.getsignal is gp._csignal.real_getsignal


# -- outside the hub: the original behaviour ---------------------------------------


def _outside_behaviour():
    """The same calls as in the tests above, in a context with no task."""
    a, b = socket.socketpair()
    try:
        b.sendall(b"hi")
        assert a.recv(10) == b"hi"
        a.settimeout(0.01)
        with pytest.raises(TimeoutError, match="timed out"):
            a.recv(10)
        a.setblocking(False)
        with pytest.raises(BlockingIOError):
            a.recv(10)
        a.settimeout(None)
        t = threading.Timer(0.02, lambda: b.sendall(b"late"))
        t.start()
        assert a.recv(10) == b"late"  # blocks the thread until the timer sends
        t.join()
        ev = threading.Event()
        assert not ev.wait(0.01)
        lock = threading.Lock()
        assert lock.acquire() and not lock.acquire(timeout=0.01)
        lock.release()
        q = queue.Queue()
        with pytest.raises(queue.Empty):
            q.get(timeout=0.01)
        r, _, _ = select.select([a], [], [], 0.01)
        assert r == []
        p = subprocess.Popen(["true"])
        assert p.wait() == 0
        time.sleep(0.001)
    finally:
        a.close()
        b.close()
    return "ok"


def test_outside_the_hub_before_run_behaves_like_the_original(patched):
    assert _outside_behaviour() == "ok"


def test_in_a_plain_thread_behaves_like_the_original(patched):
    out = []
    t = threading.Thread(target=lambda: out.append(_outside_behaviour()))
    t.start()
    t.join()
    assert out == ["ok"]


def test_in_a_thread_pool_worker_behaves_like_the_original(patched):
    def main():
        return greenrt.to_thread(_outside_behaviour)

    assert greenrt.run(main) == "ok"


# -- select, poll, epoll, selectors ---------------------------------------------------


@pytest.mark.parametrize("kind", ["select", "poll", "epoll", "DefaultSelector", "PollSelector",
                                  "SelectSelector"])
def test_select_family_is_cooperative(patched, kind):
    a, b = socket.socketpair()
    order = []

    def waiter():
        if kind == "select":
            r, _, _ = select.select([a], [], [])
            ok = r == [a]
        elif kind == "poll":
            p = select.poll()
            p.register(a, select.POLLIN)
            ok = p.poll() == [(a.fileno(), select.POLLIN)]
        elif kind == "epoll":
            with select.epoll() as ep:
                ep.register(a.fileno(), select.EPOLLIN)
                ok = ep.poll() == [(a.fileno(), select.EPOLLIN)]
        else:
            with getattr(selectors, kind)() as sel:
                sel.register(a, selectors.EVENT_READ)
                ok = [k.fileobj for k, _ in sel.select()] == [a]
        order.append(("woke", ok))

    def main():
        with greenrt.region() as r:
            r.spawn(waiter)
            greenrt.sleep(0.01)
            order.append("send")
            b.send(b"x")

    try:
        greenrt.run(main)
    finally:
        a.close()
        b.close()
    assert order == ["send", ("woke", True)]


def test_select_timeout_and_cancellation(patched):
    a, b = socket.socketpair()

    def main():
        assert select.select([a], [], [], 0.01) == ([], [], [])
        with greenrt.move_on_after(0.01) as s:
            select.select([a], [], [])
        assert s.cancelled_caught
        p = select.poll()
        p.register(a, select.POLLIN)
        assert p.poll(10) == []
        with selectors.DefaultSelector() as sel:
            sel.register(a, selectors.EVENT_READ)
            assert sel.select(0.01) == []

    try:
        greenrt.run(main)
    finally:
        a.close()
        b.close()


def test_select_on_a_regular_file_answers_at_once(patched, tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"x")

    def main():
        with open(f, "rb") as fh:
            r, _, _ = select.select([fh], [], [])
            assert r == [fh]

    greenrt.run(main)


# -- threading ---------------------------------------------------------------------


def test_event_wait_inside_tasks_is_cooperative_and_set_from_a_thread(patched):
    order = []

    def main():
        ev = threading.Event()
        ev2 = threading.Event()

        def waiter():
            ev.wait()
            order.append("task woke")

        with greenrt.region() as r:
            r.spawn(waiter)
            greenrt.sleep(0.01)
            order.append("setting")
            ev.set()
        t = threading.Thread(target=lambda: (time.sleep(0.01), ev2.set()))
        t.start()
        assert ev2.wait(5)
        t.join()
        assert not threading.Event().wait(0.01)

    greenrt.run(main)
    assert order == ["setting", "task woke"]


def test_lock_contended_between_tasks_and_with_a_thread(patched):
    def main():
        lock = threading.Lock()
        order = []

        def holder():
            with lock:
                order.append("held")
                greenrt.sleep(0.02)
                order.append("releasing")

        def other():
            with lock:
                order.append("other got it")

        with greenrt.region() as r:
            r.spawn(holder)
            r.spawn(other)
        assert order == ["held", "releasing", "other got it"]
        # held by a real thread: the task parks, the hub runs, the release wakes it
        got = threading.Event()
        release = threading.Event()

        def thread_holder():
            with lock:
                got.set()
                release.wait()

        t = threading.Thread(target=thread_holder)
        t.start()
        assert got.wait(5)
        ran = []
        with greenrt.region() as r:
            r.spawn(lambda: (ran.append(1), release.set()))
            with lock:
                assert ran == [1]
        t.join()
        # acquire with a timeout, and a cancelled acquire does not hold the lock
        lock.acquire()
        assert not lock.acquire(timeout=0.01)
        with greenrt.move_on_after(0.01):
            lock.acquire()
        lock.release()
        assert not lock.locked()

    greenrt.run(main)


def test_rlock_owner_is_the_task(patched):
    def main():
        rl = threading.RLock()
        order = []

        def a():
            with rl:
                with rl:  # re-entrant for its owner
                    order.append("a in")
                    greenrt.sleep(0.02)
                order.append("a out")

        def b():
            with rl:  # another task of the same thread is another owner: it waits
                order.append("b in")

        with greenrt.region() as r:
            r.spawn(a)
            r.spawn(b)
        assert order == ["a in", "a out", "b in"]
        with pytest.raises(RuntimeError):
            rl.release()

    greenrt.run(main)


def test_condition_wait_cancelled_reacquires_the_lock(patched):
    def main():
        cond = threading.Condition()
        with cond:
            with greenrt.move_on_after(0.01) as s:
                cond.wait()
            assert s.cancelled_caught
            assert cond._is_owned()
        # notify wakes a waiting task
        out = []

        def waiter():
            with cond:
                cond.wait_for(lambda: out)

        with greenrt.region() as r:
            r.spawn(waiter)
            greenrt.sleep(0.01)
            with cond:
                out.append(1)
                cond.notify_all()

    greenrt.run(main)


def test_cancelled_waits_on_the_threading_primitives_leave_them_as_they_were(patched):
    """What docs/patch.md promises per primitive: a cancelled Queue.get removes
    nothing, Queue.put adds nothing, Semaphore.acquire takes nothing, Event.wait
    changes nothing, Barrier.wait leaves the barrier unbroken without the waiter."""
    def main():
        q = queue.Queue(maxsize=1)
        full = queue.Queue(maxsize=1)
        full.put("old")
        sem = threading.Semaphore(0)
        ev = threading.Event()
        bar = threading.Barrier(2)
        waits = [q.get, lambda: full.put("new"), sem.acquire, ev.wait, bar.wait]
        for wait in waits:
            with greenrt.move_on_after(0.01) as sc:
                wait()
            assert sc.cancelled_caught
        q.put("x")
        assert q.get_nowait() == "x" and q.empty()
        assert full.get_nowait() == "old" and full.empty()
        assert not sem.acquire(blocking=False)
        sem.release()
        assert sem.acquire(blocking=False)
        assert not ev.is_set()
        assert not bar.broken and bar.n_waiting == 0
        with greenrt.region() as r:  # the barrier still works, for two new parties
            r.spawn(bar.wait)
            r.spawn(bar.wait)
        return "ok"

    assert greenrt.run(main) == "ok"


def test_queue_get_put_between_tasks(patched):
    def main():
        q = queue.Queue(maxsize=1)
        got = []

        def consumer():
            for _ in range(3):
                got.append(q.get())

        with greenrt.region() as r:
            r.spawn(consumer)
            for i in range(3):
                q.put(i)  # blocks (cooperatively) while the queue is full
        assert got == [0, 1, 2]
        with pytest.raises(queue.Empty):
            q.get(timeout=0.01)
        sq = queue.SimpleQueue()
        with greenrt.move_on_after(0.01) as s:
            sq.get()
        assert s.cancelled_caught

    greenrt.run(main)


def test_thread_start_and_join_from_a_task(patched):
    def main():
        done = threading.Event()
        ran = []
        t = threading.Thread(target=lambda: (done.wait(5), ran.append(1)))
        t.start()
        with greenrt.region() as r:
            r.spawn(lambda: done.set())
            t.join()  # waits in a pool thread; the spawned task runs meanwhile
        assert ran == [1]

    greenrt.run(main)


# -- subprocess -----------------------------------------------------------------------


def test_popen_wait_and_communicate_are_cooperative(patched):
    order = []
    r_fd, w_fd = os.pipe()
    code = f"import os, sys; x = sys.stdin.read(); os.read({r_fd}, 1); print('got', x)"

    def main():
        def child():
            # the child answers only after the other task wrote to its pipe: a
            # communicate() that blocked the hub would never see it
            p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, pass_fds=(r_fd,))
            out, _ = p.communicate(b"hi")
            order.append(("child", out, p.returncode))

        def unblocker():
            greenrt.sleep(0.01)
            order.append("write")
            os.write(w_fd, b"x")

        with greenrt.region() as r:
            r.spawn(child)
            r.spawn(unblocker)
        p = subprocess.Popen(["sleep", "5"])
        with pytest.raises(subprocess.TimeoutExpired):
            p.wait(timeout=0.01)
        p.kill()
        assert p.wait() == -9
        assert subprocess.run(["sh", "-c", "exit 3"]).returncode == 3
        out = subprocess.check_output(["echo", "x"])
        assert out == b"x\n"

    try:
        greenrt.run(main)
    finally:
        os.close(r_fd)
        os.close(w_fd)
    assert order == ["write", ("child", b"got hi\n", 0)]


def test_cancelled_with_popen_terminates_and_reaps_the_child(patched):
    pids = []

    def main():
        with greenrt.move_on_after(0.05):
            with subprocess.Popen(["sleep", "10"]) as p:
                pids.append(p.pid)
                p.wait()
        assert p.returncode == -15

    greenrt.run(main)
    with pytest.raises(ChildProcessError):
        os.waitpid(pids[0], os.WNOHANG)  # reaped: no zombie


# -- deadlock detection ------------------------------------------------------------


def test_blocked_in_patched_calls_is_not_a_deadlock(patched):
    """A task waiting on a real socket, or on a resolver thread, can be woken: the
    hub must not report a deadlock (it would cancel the task)."""
    a, b = socket.socketpair()
    srv_done = threading.Event()

    def later():
        time.sleep(0.05)
        b.sendall(b"x")
        srv_done.set()

    t = threading.Thread(target=later, daemon=True)
    t._greenrt_ignore = True  # even a thread the hub ignores: the fd wait counts
    t.start()

    def main():
        assert a.recv(1) == b"x"
        socket.getaddrinfo("localhost", 80)

    try:
        greenrt.run(main)
    finally:
        t.join()
        a.close()
        b.close()


def test_a_real_lock_deadlock_between_tasks_is_still_reported(patched):
    def main():
        lock = threading.Lock()
        lock.acquire()
        lock.acquire()  # nothing can ever release it

    with pytest.raises(greenrt.Deadlock):
        greenrt.run(main)


def test_the_hubs_own_driver_keeps_a_real_epoll(patched):
    def main():
        ep = greenrt.lowlevel.current_hub().driver._ep
        assert type(ep) is gp._common.real_epoll
        assert type(select.epoll()) is not gp._common.real_epoll  # user code: cooperative

    greenrt.run(main)


def test_a_lock_released_by_a_raw_thread_is_not_a_deadlock(patched):
    """``_thread.start_new_thread`` threads are invisible to ``threading.enumerate``;
    a task waiting for one of them to release a lock must not be reported."""
    import _thread

    def main():
        lock = threading.Lock()
        lock.acquire()

        def raw():
            real_sleep(0.05)  # the task is parked on the lock by then
            lock.release()

        _thread.start_new_thread(raw, ())
        lock.acquire()  # released by the raw thread
        lock.release()

    real_sleep = gp._common.real_sleep
    greenrt.run(main)
