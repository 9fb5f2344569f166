"""Which RPC semantic conventions to emit, and the attribute tables built from them.

The RPC conventions are mid-migration. By default dubbok emits the long-standing ones
(``rpc.system``, ``rpc.service``, ``rpc.method`` = bare method name, ``rpc.grpc.status_code``
as an int, ``rpc.*.duration`` in ms). ``OTEL_SEMCONV_STABILITY_OPT_IN=rpc`` switches to the
stable ones (``rpc.system.name``, ``rpc.method`` = ``service/Method``,
``rpc.response.status_code`` as the code's name, ``error.type``, ``rpc.*.call.duration`` in
seconds); ``rpc/dup`` emits both. In ``dup`` mode spans carry the stable ``rpc.method`` (the
two would clash) while each duration histogram keeps its own convention's attributes — as
OpenTelemetry's Java instrumentation does.

Everything here is computed once per method or per status code and cached: the hot path only
looks tables up.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping

import grpc

__all__ = ["Semconv", "semconv_from_env"]

OPT_IN_ENV = "OTEL_SEMCONV_STABILITY_OPT_IN"

RPC_SYSTEM = "rpc.system"
RPC_SYSTEM_NAME = "rpc.system.name"
RPC_SERVICE = "rpc.service"
RPC_METHOD = "rpc.method"
RPC_GRPC_STATUS_CODE = "rpc.grpc.status_code"
RPC_RESPONSE_STATUS_CODE = "rpc.response.status_code"
ERROR_TYPE = "error.type"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
NETWORK_PEER_ADDRESS = "network.peer.address"
NETWORK_PEER_PORT = "network.peer.port"
DUBBOK_LOADBALANCE = "dubbok.loadbalance"
DUBBOK_CLUSTER = "dubbok.cluster"
DUBBOK_ATTEMPT = "dubbok.attempt"

Attributes = Mapping[str, "str | int | bool | float"]

# On a server only these codes mean the server failed; the rest describe the request (a
# client error, a business outcome) and leave the span's status unset (OTel gRPC semconv).
SERVER_ERRORS: frozenset[grpc.StatusCode] = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


class Semconv(enum.Flag):
    """Which conventions to emit: ``OLD``, ``STABLE`` or both (``DUP``)."""

    OLD = 1
    STABLE = 2
    DUP = OLD | STABLE


def semconv_from_env(value: str | None = None) -> Semconv:
    """Read ``OTEL_SEMCONV_STABILITY_OPT_IN`` (or ``value``): ``rpc/dup`` wins over ``rpc``."""
    text = os.environ.get(OPT_IN_ENV, "") if value is None else value
    options = {part.strip().lower() for part in text.split(",")}
    if "rpc/dup" in options:
        return Semconv.DUP
    if "rpc" in options:
        return Semconv.STABLE
    return Semconv.OLD


def is_error(code: grpc.StatusCode, server: bool) -> bool:
    """Whether a span ending with ``code`` gets status ERROR (any non-OK on a client)."""
    if server:
        return code in SERVER_ERRORS
    return code is not grpc.StatusCode.OK


def span_base(mode: Semconv, service: str, method: str) -> dict[str, str]:
    """The attributes every span of ``service/method`` starts with."""
    attrs: dict[str, str] = {}
    if Semconv.OLD in mode:
        attrs[RPC_SYSTEM] = "grpc"
        attrs[RPC_SERVICE] = service
        attrs[RPC_METHOD] = method
    if Semconv.STABLE in mode:
        attrs[RPC_SYSTEM_NAME] = "grpc"
        attrs[RPC_METHOD] = f"{service}/{method}"
    return attrs


def span_end(mode: Semconv, code: grpc.StatusCode, server: bool) -> dict[str, str | int]:
    """The attributes a span gets when it ends with ``code``."""
    attrs: dict[str, str | int] = {}
    if Semconv.OLD in mode:
        attrs[RPC_GRPC_STATUS_CODE] = code.value[0]
    if Semconv.STABLE in mode:
        attrs[RPC_RESPONSE_STATUS_CODE] = code.name
        if is_error(code, server):
            attrs[ERROR_TYPE] = code.name
    return attrs


def metric_old(service: str, method: str, code: grpc.StatusCode) -> dict[str, str | int]:
    """Attributes of the ms histograms (``rpc.client.duration``, ``rpc.server.duration``)."""
    return {
        RPC_SYSTEM: "grpc",
        RPC_SERVICE: service,
        RPC_METHOD: method,
        RPC_GRPC_STATUS_CODE: code.value[0],
    }


def metric_stable(
    service: str, method: str, code: grpc.StatusCode, server: bool
) -> dict[str, str | int]:
    """Attributes of the seconds histograms (``rpc.*.call.duration``)."""
    attrs: dict[str, str | int] = {
        RPC_SYSTEM_NAME: "grpc",
        RPC_METHOD: f"{service}/{method}",
        RPC_RESPONSE_STATUS_CODE: code.name,
    }
    if is_error(code, server):
        attrs[ERROR_TYPE] = code.name
    return attrs


def split_peer(peer: str) -> tuple[str, int | None]:
    """``("127.0.0.1", 5000)`` from grpc's ``context.peer()`` (``ipv4:127.0.0.1:5000``,
    ``ipv6:[::1]:5000``, ``unix:/path``); the text itself when it has no port."""
    _, _, rest = peer.partition(":")
    if not rest:
        return peer, None
    if peer.startswith("unix"):
        return rest, None
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        return rest, None
    return host.strip("[]"), int(port)
