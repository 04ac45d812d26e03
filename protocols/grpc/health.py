"""The standard health service, ``grpc.health.v1.Health`` (doc/health-checking.md).

::

    health = Health()                       # "" (the whole server) starts SERVING
    health.set("grpc.testing.TestService", SERVING)
    health.add_to(server)                   # registers Check and Watch
    health.set("", NOT_SERVING)             # Watch callers see the change

``Check(service)`` answers the status, or NOT_FOUND for a service never ``set``.
``Watch(service)`` streams the current status (SERVICE_UNKNOWN for an unknown
service), then each change, until the client cancels.

The message classes are built at import time from a descriptor written here (the
published ``health.proto``: the same package, names and field numbers), in a private
descriptor pool, so neither protoc nor ``grpcio-health-checking`` is needed at run
time and the module can coexist with that package's ``health_pb2``.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

import greenrt
from greenrt import lowlevel as ll

from .errors import RpcError
from .status import StatusCode

__all__ = ["HEALTH_SERVICE", "Health", "HealthCheckRequest", "HealthCheckResponse",
           "NOT_SERVING", "SERVICE_UNKNOWN", "SERVING", "UNKNOWN"]

UNKNOWN, SERVING, NOT_SERVING, SERVICE_UNKNOWN = 0, 1, 2, 3


def _build():
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="grpc/health/v1/health.proto",
                                             package="grpc.health.v1", syntax="proto3")
    req = fdp.message_type.add(name="HealthCheckRequest")
    req.field.add(name="service", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    resp = fdp.message_type.add(name="HealthCheckResponse")
    enum = resp.enum_type.add(name="ServingStatus")
    for name, num in (("UNKNOWN", 0), ("SERVING", 1), ("NOT_SERVING", 2),
                      ("SERVICE_UNKNOWN", 3)):
        enum.value.add(name=name, number=num)
    resp.field.add(name="status", number=1, type=F.TYPE_ENUM, label=F.LABEL_OPTIONAL,
                   type_name=".grpc.health.v1.HealthCheckResponse.ServingStatus")
    svc = fdp.service.add(name="Health")
    svc.method.add(name="Check", input_type=".grpc.health.v1.HealthCheckRequest",
                   output_type=".grpc.health.v1.HealthCheckResponse")
    svc.method.add(name="Watch", input_type=".grpc.health.v1.HealthCheckRequest",
                   output_type=".grpc.health.v1.HealthCheckResponse", server_streaming=True)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    f = pool.FindFileByName(fdp.name)
    return (message_factory.GetMessageClass(f.message_types_by_name["HealthCheckRequest"]),
            message_factory.GetMessageClass(f.message_types_by_name["HealthCheckResponse"]),
            f.services_by_name["Health"])


HealthCheckRequest, HealthCheckResponse, HEALTH_SERVICE = _build()


class Health:
    """The servicer; see the module docstring. ``set`` is not a checkpoint and may
    be called from any task of the server's hub."""

    def __init__(self) -> None:
        self._status: dict[str, int] = {"": SERVING}
        self._changed = ll.WaitQueue()
        self._version = 0

    def set(self, service: str, status: int) -> None:
        self._status[service] = status
        self._version += 1
        self._changed.wake_all()

    def add_to(self, server) -> list[str]:
        return server.add_servicer(HEALTH_SERVICE, self)

    def Check(self, req, ctx):
        st = self._status.get(req.service)
        if st is None:
            raise RpcError(StatusCode.NOT_FOUND, f"unknown service {req.service!r}")
        return HealthCheckResponse(status=st)

    def Watch(self, req, ctx):
        """Current status, then every change. Each wait is a checkpoint; the client's
        cancellation ends it."""
        last = None
        while True:
            st = self._status.get(req.service, SERVICE_UNKNOWN)
            if st != last:
                last = st
                yield HealthCheckResponse(status=st)
            version = self._version
            while self._version == version:
                self._changed.park(what="grpc.health.watch")
            greenrt.checkpoint()
