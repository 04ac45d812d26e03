"""redis-py's synchronous client, unmodified, through greenrt.patch against a real
``redis-server`` started by the test (a required peer: the test fails, not skips,
when it is missing)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

import greenrt
import greenrt.patch as gp

REDIS_SERVER = shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def redis_port():
    if REDIS_SERVER is None:
        pytest.fail("redis-server is not installed (scripts/apt-packages.txt: redis-server)")
    gp.unpatch()
    workdir = tempfile.mkdtemp(prefix="greenrt-patch-redis-")
    port = _free_port()
    proc = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", workdir,
                             "--maxclients", "1000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(100).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def client(redis_port):
    gp.patch_all()
    import redis

    c = redis.Redis(host="127.0.0.1", port=redis_port, max_connections=200)
    try:
        c.flushall()
        yield c
    finally:
        c.close()
        c.connection_pool.disconnect()
        gp.unpatch()


def test_blpop_is_cancelled_by_a_region_cancel_and_loses_nothing(client):
    def main():
        blocked = greenrt.Event()
        got = []

        def waiter():
            blocked.set()
            got.append(client.blpop("k", timeout=0))  # would block forever

        with greenrt.region() as r:
            r.spawn(waiter)
            blocked.wait()
            greenrt.sleep(0.02)  # let it reach the server
            r.cancel()
        assert got == []
        # the abandoned BLPOP's connection was dropped, so the server no longer has a
        # blocked reader that would swallow this value
        client.rpush("k", "v")
        assert client.lpop("k") == b"v"
        assert client.ping()

    greenrt.run(main)


def test_fifty_blpops_overlap(client):
    def main():
        n = 50
        got = []

        def waiter(i):
            got.append(client.blpop(f"q{i}", timeout=30))

        with greenrt.region() as r:
            for i in range(n):
                r.spawn(waiter, i)
            # wait until the server reports all 50 blocked: only possible if every
            # BLPOP is in flight at once
            while client.info("clients")["blocked_clients"] < n:
                greenrt.sleep(0.005)
            for i in range(n):
                client.rpush(f"q{i}", i)
        assert sorted(int(v) for _, v in got) == list(range(n))

    greenrt.run(main)


def test_deadline_on_a_blocked_command(client):
    def main():
        before = len(os.listdir("/proc/self/fd"))
        with pytest.raises(greenrt.TooSlowError):
            with greenrt.fail_after(0.05):
                client.blpop("never", timeout=0)
        assert len(os.listdir("/proc/self/fd")) <= before
        assert client.set("a", "1") and client.get("a") == b"1"

    greenrt.run(main)
