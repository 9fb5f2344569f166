"""Reading generated gRPC code: what methods a stub calls and what a servicer serves.

A generated ``FooStub(channel)`` asks its channel for one multicallable per method
(``channel.unary_unary(path, request_serializer=..., response_deserializer=...)``). Handing it
a recording channel yields the method table — path, kind, serializers — without a network and
without parsing the proto, for both ``grpc`` and ``grpc.aio``. A generated
``add_FooServicer_to_server(servicer, server)`` is read the same way with a recording server.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ServiceDefinitionError

__all__ = ["MethodInfo", "MethodKind", "ServiceDefinition", "read_servicer", "read_stub"]

Serializer = Callable[[Any], bytes]
Deserializer = Callable[[bytes], Any]


class MethodKind(enum.Enum):
    UNARY_UNARY = "unary_unary"
    UNARY_STREAM = "unary_stream"
    STREAM_UNARY = "stream_unary"
    STREAM_STREAM = "stream_stream"

    @property
    def request_streaming(self) -> bool:
        return self in (MethodKind.STREAM_UNARY, MethodKind.STREAM_STREAM)

    @property
    def response_streaming(self) -> bool:
        return self in (MethodKind.UNARY_STREAM, MethodKind.STREAM_STREAM)


@dataclass(frozen=True, slots=True)
class MethodInfo:
    """One RPC method as the generated stub describes it."""

    service: str
    name: str
    kind: MethodKind
    request_serializer: Serializer | None
    response_deserializer: Deserializer | None

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"


@dataclass(frozen=True, slots=True)
class ServiceDefinition:
    """The methods of one service, by method name."""

    name: str
    methods: Mapping[str, MethodInfo]


class _RecordingChannel:
    """Stands in for a channel while a generated stub's ``__init__`` runs."""

    def __init__(self) -> None:
        self.seen: list[tuple[MethodKind, str, Serializer | None, Deserializer | None]] = []

    def _record(self, kind: MethodKind) -> Callable[..., object]:
        def multicallable(
            method: str,
            request_serializer: Serializer | None = None,
            response_deserializer: Deserializer | None = None,
            **_: object,
        ) -> object:
            self.seen.append((kind, method, request_serializer, response_deserializer))
            return object()

        return multicallable

    def __getattr__(self, name: str) -> Callable[..., object]:
        try:
            return self._record(MethodKind(name))
        except ValueError:
            raise AttributeError(name) from None


def read_stub(stub_class: Callable[[Any], object], service: str | None = None) -> ServiceDefinition:
    """The service a generated stub class calls.

    ``service`` (a full proto name like ``"helloworld.Greeter"``) must match the stub; when
    omitted it is taken from the stub.
    """
    channel = _RecordingChannel()
    try:
        stub_class(channel)
    except Exception as exc:
        raise ServiceDefinitionError(
            f"{stub_class!r} is not a generated gRPC stub class (calling it with a channel "
            f"failed: {exc}); pass the *Stub class from your *_pb2_grpc module"
        ) from exc
    if not channel.seen:
        raise ServiceDefinitionError(
            f"{stub_class!r} defines no RPC methods; pass the *Stub class from your "
            "*_pb2_grpc module"
        )
    by_service: dict[str, dict[str, MethodInfo]] = {}
    for kind, path, ser, deser in channel.seen:
        svc, _, name = path.lstrip("/").rpartition("/")
        by_service.setdefault(svc, {})[name] = MethodInfo(svc, name, kind, ser, deser)
    if service is None:
        if len(by_service) != 1:
            raise ServiceDefinitionError(
                f"{getattr(stub_class, '__name__', stub_class)} calls several services "
                f"({', '.join(sorted(by_service))}); name the one you want"
            )
        service = next(iter(by_service))
    if service not in by_service:
        raise ServiceDefinitionError(
            f"stub {getattr(stub_class, '__name__', stub_class)} has no service {service!r}; "
            f"it defines {', '.join(repr(s) for s in sorted(by_service))}. Use the full proto "
            "name (package.Service), or omit it"
        )
    return ServiceDefinition(service, by_service[service])


class _RecordingServer:
    """Stands in for a server while a generated ``add_*Servicer_to_server`` runs."""

    def __init__(self) -> None:
        self.services: dict[str, dict[str, Any]] = {}

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.services[service] = dict(handlers)


def _adder_for(servicer: object) -> tuple[str, Callable[[object, object], None]]:
    for cls in type(servicer).__mro__:
        module = sys.modules.get(cls.__module__)
        adder = getattr(module, f"add_{cls.__name__}_to_server", None)
        if callable(adder):
            return cls.__name__, adder
    raise ServiceDefinitionError(
        f"{type(servicer).__name__} does not inherit from a generated *Servicer class; "
        "subclass e.g. greeter_pb2_grpc.GreeterServicer"
    )


def read_servicer(servicer: object) -> tuple[str, dict[str, Any]]:
    """The full service name and the ``grpc.RpcMethodHandler`` per method of a servicer."""
    _, adder = _adder_for(servicer)
    server = _RecordingServer()
    adder(servicer, server)
    if len(server.services) != 1:
        raise ServiceDefinitionError(
            f"could not read the service of {type(servicer).__name__}: the generated code is "
            "older than grpcio 1.62; regenerate it with a current grpcio-tools"
        )
    ((name, handlers),) = server.services.items()
    return name, handlers
