"""The layering rules of DESIGN.md, checked on the source (AST, not grep):

* ``greenrt/`` imports nothing from ``greenrt.protocols`` or ``greenrt.lab``;
* ``protocols/`` and ``lab/`` use greenrt's public and ``lowlevel`` API only: no
  ``greenrt._private`` module;
* a sans-IO codec module (``SANSIO_MODULES``) imports no greenrt at all (relative
  imports of its protocol's error and limit modules are fine: those hold data types);
* nothing imports the bare top-level names ``lab`` or ``protocols``: they are
  installed as ``greenrt.lab`` and ``greenrt.protocols``.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

SANSIO_MODULES = [
    "protocols/kafka/codec.py",
    "protocols/kafka/records.py",
    "protocols/kafka/group.py",
    "protocols/redis/resp.py",
    "protocols/nats/codec.py",
    "protocols/http1/_body.py",
    "protocols/http1/_connection.py",
    "protocols/http1/_request_parser.py",
    "protocols/http1/_response_writer.py",
    "protocols/base/sansio.py",
    "protocols/websocket/_framescan.py",
    "protocols/websocket/_deflate.py",
    "protocols/websocket/_fastframe.py",
    "protocols/grpc/framing.py", "protocols/grpc/timeout.py", "protocols/grpc/status.py", "protocols/grpc/metadata.py",
    "protocols/grpc/keepalive.py",
    "lab/token.py",
    "lab/trace.py",
]


def _imports(path: pathlib.Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            for a in node.names:
                yield node.lineno, f"{node.module}.{a.name}"


def _files(*folders: str):
    for folder in folders:
        yield from sorted((ROOT / folder).rglob("*.py"))


def test_core_imports_no_protocols_or_lab():
    bad = [f"{p.relative_to(ROOT)}:{ln}: {name}" for p in _files("greenrt")
           for ln, name in _imports(p)
           if name.startswith(("greenrt.protocols", "greenrt.lab"))]
    assert not bad, "\n".join(bad)


def test_protocols_and_lab_use_only_public_greenrt():
    bad = [f"{p.relative_to(ROOT)}:{ln}: {name}" for p in _files("protocols", "lab")
           for ln, name in _imports(p)
           if name.startswith("greenrt.") and any(part.startswith("_") and part != "__future__"
                                                  for part in name.split(".")[1:2])]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("module", SANSIO_MODULES)
def test_sansio_codecs_import_no_greenrt(module):
    bad = [f"{module}:{ln}: {name}" for ln, name in _imports(ROOT / module)
           if name == "greenrt" or name.startswith("greenrt.")]
    assert not bad, "\n".join(bad)


def test_no_bare_lab_or_protocols_imports():
    bad = [f"{p.relative_to(ROOT)}:{ln}: {name}"
           for p in _files("greenrt", "protocols", "lab", "tests", "fuzz", "bench", "examples")
           for ln, name in _imports(p)
           if name.split(".")[0] in ("lab", "protocols")]
    assert not bad, "\n".join(bad)
