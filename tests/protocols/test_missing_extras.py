"""A protocol whose optional dependency is missing says which extra to install
(issue 21). Each case blocks the import (``sys.modules[name] = None``) in a fresh
interpreter and imports the protocol package."""

import subprocess
import sys

import pytest

CASES = [
    ("greenrt.protocols.http1", "h11", "http", "h11"),
    ("greenrt.protocols.http", "h11", "http", "h11"),
    ("greenrt.protocols.http2", "h2", "http", "h2"),
    ("greenrt.protocols.websocket", "wsproto", "websocket", "wsproto"),
    ("greenrt.protocols.tls", "OpenSSL", "tls", "pyOpenSSL"),
    ("greenrt.protocols.grpc", "google.protobuf", "grpc", "protobuf"),
    ("greenrt.protocols.grpc", "h2", "grpc", "h2"),
    # grpc stands on the HTTP stack's model, which imports HTTP/1.1 (h11)
    ("greenrt.protocols.grpc", "h11", "grpc", "h11"),
]

_PROBE = """
import sys
sys.modules[{blocked!r}] = None
try:
    import {module}
except ImportError as e:
    print(type(e).__name__, "|", e.name, "|", e)
else:
    print("imported")
"""


@pytest.mark.parametrize("module,blocked,extra,package", CASES,
                         ids=[f"{m.rsplit('.', 1)[1]}-without-{b}" for m, b, _, _ in CASES])
def test_missing_dependency_names_the_extra(module, blocked, extra, package):
    out = subprocess.run([sys.executable, "-c", _PROBE.format(blocked=blocked, module=module)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    kind, name, msg = (part.strip() for part in out.stdout.strip().split("|", 2))
    assert kind == "MissingDependency", out.stdout
    assert name == blocked
    assert f"pip install 'greenrt[{extra}]'" in msg and repr(package) in msg
    assert msg.startswith(module), msg


def test_tls_host_name_checking_without_service_identity_names_the_extra():
    probe = """
import sys
sys.modules["service_identity"] = None
from greenrt.protocols.tls import _config
try:
    _config.check_host(None, "example.com")
except ImportError as e:
    print(type(e).__name__, "|", e.name, "|", e)
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    kind, name, msg = (p.strip() for p in out.stdout.strip().split("|", 2))
    assert (kind, name) == ("MissingDependency", "service_identity"), out
    assert "pip install 'greenrt[tls]'" in msg


def test_the_extras_named_exist_in_pyproject():
    import pathlib
    import tomllib

    root = pathlib.Path(__file__).resolve().parents[2]
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for _, _, extra, package in CASES:
        names = [req.split(">")[0].split("=")[0].split("[")[0].strip().lower() for req in extras[extra]]
        assert package.lower() in names, (extra, package, extras[extra])


def test_with_everything_installed_the_protocols_import():
    mods = sorted({m for m, _, _, _ in CASES})
    out = subprocess.run([sys.executable, "-c", "; ".join(f"import {m}" for m in mods)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_kafka_compression_without_its_package_names_the_extra():
    probe = """
import sys
sys.modules["snappy"] = None
from greenrt.protocols.kafka import records
try:
    records.compress(records.COMPRESSION_SNAPPY, b"x" * 100)
except Exception as e:
    print(type(e).__name__, "|", e.code, "|", e)
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    kind, code, msg = (p.strip() for p in out.stdout.strip().split("|", 2))
    assert (kind, code) == ("KafkaProtocolError", "unsupported_compression"), out
    assert "'python-snappy'" in msg and "pip install 'greenrt[kafka]'" in msg
