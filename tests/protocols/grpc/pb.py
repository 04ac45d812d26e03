"""The interop protos as Python modules, generated at import time with grpcio-tools
(``python -m grpc_tools.protoc -I protos --python_out=D --grpc_python_out=D
interop.proto`` into a fresh temporary directory), so the generated code always
matches the installed protobuf and grpcio. ``pb2`` / ``pb2_grpc`` are the modules."""

from __future__ import annotations

import atexit
import importlib
import pathlib
import shutil
import sys
import tempfile

from grpc_tools import protoc

_HERE = pathlib.Path(__file__).resolve().parent / "protos"


def _generate():
    out = tempfile.mkdtemp(prefix="greenrt-grpc-pb-")
    atexit.register(shutil.rmtree, out, True)
    rc = protoc.main(["protoc", f"-I{_HERE}", f"--python_out={out}", f"--grpc_python_out={out}",
                      str(_HERE / "interop.proto")])
    if rc != 0:
        raise RuntimeError(f"protoc failed with {rc}")
    sys.path.insert(0, out)
    try:
        return importlib.import_module("interop_pb2"), importlib.import_module("interop_pb2_grpc")
    finally:
        sys.path.remove(out)


pb2, pb2_grpc = _generate()
SERVICE = pb2.DESCRIPTOR.services_by_name["TestService"]
