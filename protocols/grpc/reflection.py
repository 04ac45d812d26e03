"""Server reflection (``grpc.reflection.v1`` and ``v1alpha``, doc/server-reflection.md).

::

    reflection.add_to(server)     # after the services are registered

Answers, over one bidirectional stream per client: ``list_services`` (the services
registered from protobuf descriptors, plus reflection itself), ``file_by_filename``
and ``file_containing_symbol`` (the serialized ``FileDescriptorProto`` and those of
its dependencies, each file once per stream), ``file_containing_extension`` and
``all_extension_numbers_of_type`` (NOT_FOUND: extensions are not indexed). An
unknown file or symbol is an ``error_response`` with NOT_FOUND, not a failed call.

The message classes are built from descriptors written here (the published
``reflection.proto``: same packages, names, field numbers) in a private pool.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from .status import StatusCode

__all__ = ["add_to", "build_messages"]


def build_messages(package: str):
    """``(Request, Response, ServiceDescriptor)`` for ``package``
    (``grpc.reflection.v1`` or ``grpc.reflection.v1alpha``)."""
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(
        name=f"{package.replace('.', '/')}/reflection.proto", package=package, syntax="proto3")
    p = f".{package}."

    def msg(name, fields, oneof=None):
        m = fdp.message_type.add(name=name)
        if oneof:
            m.oneof_decl.add(name=oneof[0])
        for fname, num, ftype, extra in fields:
            f = m.field.add(name=fname, number=num, type=ftype,
                            label=F.LABEL_REPEATED if extra.get("rep") else F.LABEL_OPTIONAL)
            if "type_name" in extra:
                f.type_name = p + extra["type_name"]
            if oneof and fname in oneof[1]:
                f.oneof_index = 0

    S, I32, B, M = F.TYPE_STRING, F.TYPE_INT32, F.TYPE_BYTES, F.TYPE_MESSAGE
    req_oneof = ("message_request", {"file_by_filename", "file_containing_symbol",
                                     "file_containing_extension",
                                     "all_extension_numbers_of_type", "list_services"})
    msg("ServerReflectionRequest", [
        ("host", 1, S, {}), ("file_by_filename", 3, S, {}), ("file_containing_symbol", 4, S, {}),
        ("file_containing_extension", 5, M, {"type_name": "ExtensionRequest"}),
        ("all_extension_numbers_of_type", 6, S, {}), ("list_services", 7, S, {})], req_oneof)
    msg("ExtensionRequest", [("containing_type", 1, S, {}), ("extension_number", 2, I32, {})])
    resp_oneof = ("message_response", {"file_descriptor_response",
                                       "all_extension_numbers_response",
                                       "list_services_response", "error_response"})
    msg("ServerReflectionResponse", [
        ("valid_host", 1, S, {}),
        ("original_request", 2, M, {"type_name": "ServerReflectionRequest"}),
        ("file_descriptor_response", 4, M, {"type_name": "FileDescriptorResponse"}),
        ("all_extension_numbers_response", 5, M, {"type_name": "ExtensionNumberResponse"}),
        ("list_services_response", 6, M, {"type_name": "ListServiceResponse"}),
        ("error_response", 7, M, {"type_name": "ErrorResponse"})], resp_oneof)
    msg("FileDescriptorResponse", [("file_descriptor_proto", 1, B, {"rep": True})])
    msg("ExtensionNumberResponse", [("base_type_name", 1, S, {}),
                                    ("extension_number", 2, I32, {"rep": True})])
    msg("ListServiceResponse", [("service", 1, M, {"type_name": "ServiceResponse",
                                                   "rep": True})])
    msg("ServiceResponse", [("name", 1, S, {})])
    msg("ErrorResponse", [("error_code", 1, I32, {}), ("error_message", 2, S, {})])
    svc = fdp.service.add(name="ServerReflection")
    svc.method.add(name="ServerReflectionInfo", input_type=p + "ServerReflectionRequest",
                   output_type=p + "ServerReflectionResponse", client_streaming=True,
                   server_streaming=True)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    f = pool.FindFileByName(fdp.name)
    return (message_factory.GetMessageClass(f.message_types_by_name["ServerReflectionRequest"]),
            message_factory.GetMessageClass(f.message_types_by_name["ServerReflectionResponse"]),
            f.services_by_name["ServerReflection"])


class _Reflection:
    def __init__(self, server, Response, names: list[str]):
        self._server = server
        self._Response = Response
        self._names = names

    def _files(self):
        return {d.file.name: d.file for d in self._server.descriptors}

    def _file_response(self, fd, sent: set):
        out = []
        stack = [fd]
        while stack:
            f = stack.pop()
            if f.name in sent:
                continue
            sent.add(f.name)
            proto = descriptor_pb2.FileDescriptorProto()
            f.CopyToProto(proto)
            out.append(proto.SerializeToString())
            stack.extend(f.dependencies)
        return {"file_descriptor_response": {"file_descriptor_proto": out}}

    def _find_symbol(self, symbol: str):
        for d in self._server.descriptors:
            try:
                return d.file.pool.FindFileContainingSymbol(symbol)
            except KeyError:
                continue
        return None

    def ServerReflectionInfo(self, requests, ctx):
        sent: set = set()
        for req in requests:
            kind = req.WhichOneof("message_request")
            body: dict
            if kind == "list_services":
                names = sorted({d.full_name for d in self._server.descriptors} | set(self._names))
                body = {"list_services_response": {"service": [{"name": n} for n in names]}}
            elif kind == "file_by_filename":
                fd = self._files().get(req.file_by_filename)
                body = self._file_response(fd, sent) if fd is not None else \
                    _error(f"file not found: {req.file_by_filename}")
            elif kind == "file_containing_symbol":
                fd = self._find_symbol(req.file_containing_symbol)
                body = self._file_response(fd, sent) if fd is not None else \
                    _error(f"symbol not found: {req.file_containing_symbol}")
            else:
                body = _error(f"{kind or 'empty request'}: not supported")
            resp = self._Response(valid_host=req.host, **body)
            resp.original_request.CopyFrom(req)
            ctx.send(resp)


def _error(message: str) -> dict:
    return {"error_response": {"error_code": int(StatusCode.NOT_FOUND), "error_message": message}}


def add_to(server) -> None:
    """Register ``ServerReflectionInfo`` of both ``grpc.reflection.v1`` and
    ``v1alpha`` on ``server``; the services it reports are those the server has from
    descriptors (``add_servicer``), read when a client asks."""
    packages = ("grpc.reflection.v1", "grpc.reflection.v1alpha")
    built = [build_messages(p) for p in packages]
    names = [b[2].full_name for b in built]
    for _Req, Resp, desc in built:
        server.add_servicer(desc, _Reflection(server, Resp, names))
