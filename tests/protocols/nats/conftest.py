"""Fixtures that start real ``nats-server`` processes (Debian package ``nats-server``,
``scripts/apt-packages.txt``) on free loopback ports, with JetStream enabled
(``-js -sd <tmpdir>``), from config files written per test. Nothing here relies on a
system service; every process started is stopped afterwards."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

NATS_SERVER = shutil.which("nats-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsProcess:
    def __init__(self, workdir: str, port: int, config: str, name: str, extra=()):
        self.workdir = workdir
        self.port = port
        self.config = config
        self.name = name
        self.extra = list(extra)
        self.proc: subprocess.Popen | None = None
        self.log = os.path.join(workdir, f"{name}.log")

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> NatsProcess:
        if NATS_SERVER is None:
            pytest.fail("nats-server is not installed (scripts/apt-packages.txt lists nats-server)")
        cfg = os.path.join(self.workdir, f"{self.name}.conf")
        with open(cfg, "w") as f:
            f.write(self.config)
        self.proc = subprocess.Popen([NATS_SERVER, "-c", cfg, "-l", self.log, *self.extra],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                text = open(self.log).read()[-3000:] if os.path.exists(self.log) else ""
                raise RuntimeError(f"nats-server exited with {self.proc.returncode}: {text}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(5) == b"INFO ":
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("nats-server did not come up within 20 s")
            time.sleep(0.02)

    def signal(self, sig) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> None:
        p = self.proc
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)

    def kill(self) -> None:
        p = self.proc
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(10)


def server_config(port: int, storedir: str, *, jetstream: bool = True, body: str = "") -> str:
    js = f'jetstream {{ store_dir: "{storedir}" }}\n' if jetstream else ""
    return f'listen: "127.0.0.1:{port}"\n{js}{body}\n'


class Factory:
    def __init__(self):
        self.started: list[NatsProcess] = []
        self.dirs: list[str] = []

    def __call__(self, body: str = "", *, jetstream: bool = True, port: int | None = None,
                 name: str | None = None, start: bool = True) -> NatsProcess:
        wd = tempfile.mkdtemp(prefix="greenrt-nats-")
        self.dirs.append(wd)
        port = port or free_port()
        p = NatsProcess(wd, port, server_config(port, os.path.join(wd, "js"), jetstream=jetstream,
                                                body=body), name or f"n{port}")
        self.started.append(p)
        if start:
            p.start()
        return p

    def close(self):
        for p in self.started:
            p.stop()
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def nats_factory():
    f = Factory()
    try:
        yield f
    finally:
        f.close()


@pytest.fixture(scope="module")
def nats_server():
    """One JetStream-enabled server per test module."""
    f = Factory()
    try:
        yield f()
    finally:
        f.close()
