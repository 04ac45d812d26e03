"""Fixtures that start real ``redis-server`` processes for the Redis client tests.

Nothing here relies on a system service: each fixture starts its own server on a
free loopback port (and a Unix socket) in a temporary directory, with persistence
off, and stops it afterwards. The cluster fixture starts three cluster-enabled
servers and joins them with ``redis-cli --cluster create ... --cluster-yes``.
``redis-server``/``redis-cli`` come from the ``redis-server``/``redis-tools`` packages
(``scripts/apt-packages.txt``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from greenrt.protocols.redis.resp import NEED_DATA, Decoder, encode_command

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")


def free_port(also_plus: int | None = None) -> int:
    """A free loopback port (and, if asked, with ``port + also_plus`` free too)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if also_plus is None:
            return port
        if port + also_plus > 65535:
            continue
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + also_plus))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair")


def raw_command(port: int, *args, host: str = "127.0.0.1", timeout: float = 5.0):
    """One command over a plain blocking socket (test plumbing, outside greenrt)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(encode_command(args))
        d = Decoder()
        while True:
            v = d.next_event()
            if v is not NEED_DATA:
                return v
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            d.receive_data(chunk)


class RedisProcess:
    def __init__(self, port: int, workdir: str, proc: subprocess.Popen, unix_path: str):
        self.host = "127.0.0.1"
        self.port = port
        self.workdir = workdir
        self.proc = proc
        self.unix_path = unix_path

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    def cmd(self, *args):
        return raw_command(self.port, *args)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_redis(workdir: str, *extra: str, port: int | None = None,
                wait_ping: bool = True) -> RedisProcess:
    if REDIS_SERVER is None:
        pytest.fail("redis-server is not installed (scripts/setup.sh installs redis-server)")
    port = port or free_port()
    unix_path = os.path.join(workdir, f"redis-{port}.sock")
    args = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", workdir, "--daemonize", "no",
            "--protected-mode", "no", "--unixsocket", unix_path, "--unixsocketperm", "700",
            "--logfile", os.path.join(workdir, f"redis-{port}.log"), *extra]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rp = RedisProcess(port, workdir, proc, unix_path)
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            log = os.path.join(workdir, f"redis-{port}.log")
            text = open(log).read()[-2000:] if os.path.exists(log) else ""
            raise RuntimeError(f"redis-server exited with {proc.returncode}: {text}")
        try:
            if not wait_ping:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return rp
            r = raw_command(port, "PING", timeout=1)
            if r == b"PONG" or (hasattr(r, "code") and r.code == "NOAUTH"):
                return rp
        except OSError:
            pass
        if time.monotonic() > deadline:
            rp.stop()
            raise RuntimeError("redis-server did not come up within 20 s")
        time.sleep(0.02)


@pytest.fixture
def unused_port() -> int:
    """A loopback port nobody listens on (at the time of the call)."""
    return free_port()


@pytest.fixture(scope="session")
def redis_server():
    """One redis-server for the session (tests flush it through ``redis_url``)."""
    workdir = tempfile.mkdtemp(prefix="greenrt-redis-")
    rp = start_redis(workdir)
    try:
        yield rp
    finally:
        rp.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def redis(redis_server):
    """The session server, flushed before the test."""
    redis_server.cmd("FLUSHALL")
    redis_server.cmd("SCRIPT", "FLUSH")
    return redis_server


@pytest.fixture
def redis_factory():
    """Start extra servers with custom arguments; all stopped after the test."""
    started: list[tuple[RedisProcess, str]] = []

    def make(*extra: str) -> RedisProcess:
        workdir = tempfile.mkdtemp(prefix="greenrt-redis-")
        rp = start_redis(workdir, *extra)
        started.append((rp, workdir))
        return rp

    try:
        yield make
    finally:
        for rp, wd in started:
            rp.stop()
            shutil.rmtree(wd, ignore_errors=True)


class ClusterProcesses:
    def __init__(self, nodes: list[RedisProcess], workdir: str):
        self.nodes = nodes
        self.workdir = workdir

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [(n.host, n.port) for n in self.nodes]

    def node_by_port(self, port: int) -> RedisProcess:
        return next(n for n in self.nodes if n.port == port)

    def node_id(self, node: RedisProcess) -> str:
        return node.cmd("CLUSTER", "MYID").decode()

    def slot_owner(self, slot: int) -> RedisProcess:
        for entry in self.nodes[0].cmd("CLUSTER", "SLOTS"):
            if int(entry[0]) <= slot <= int(entry[1]):
                return self.node_by_port(int(entry[2][1]))
        raise LookupError(slot)

    def wait_consistent(self, timeout: float = 30.0) -> None:
        """Until every node says cluster_state:ok and all report the same slot map."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                states = [n.cmd("CLUSTER", "INFO") for n in self.nodes]
                maps = [sorted((int(e[0]), int(e[1]), int(e[2][1]))
                               for e in n.cmd("CLUSTER", "SLOTS")) for n in self.nodes]
                if all(b"cluster_state:ok" in s for s in states) and \
                        all(m == maps[0] for m in maps) and sum(e[1] - e[0] + 1 for e in maps[0]) == 16384:
                    return
            except (OSError, TypeError, IndexError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("cluster did not become consistent")
            time.sleep(0.05)


@pytest.fixture(scope="session")
def redis_cluster():
    """A real 3-master Redis Cluster (no replicas), started once per session."""
    if REDIS_CLI is None:
        pytest.fail("redis-cli is not installed (scripts/setup.sh installs redis-tools)")
    workdir = tempfile.mkdtemp(prefix="greenrt-rcluster-")
    nodes: list[RedisProcess] = []
    try:
        for _ in range(3):
            port = free_port(also_plus=10000)
            nodes.append(start_redis(workdir, "--cluster-enabled", "yes",
                                     "--cluster-config-file", f"nodes-{port}.conf",
                                     "--cluster-node-timeout", "5000", port=port))
        out = subprocess.run([REDIS_CLI, "--cluster", "create",
                              *[f"127.0.0.1:{n.port}" for n in nodes],
                              "--cluster-replicas", "0", "--cluster-yes"],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {out.stdout}{out.stderr}")
        cp = ClusterProcesses(nodes, workdir)
        cp.wait_consistent()
        yield cp
    finally:
        for n in nodes:
            n.stop()
        shutil.rmtree(workdir, ignore_errors=True)
