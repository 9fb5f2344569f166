"""The asyncio provider side: servicers on ``grpc.aio.server`` (twin of :mod:`dubbok.server`)."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from asyncio import current_task
from collections.abc import AsyncIterator, Callable, Mapping
from contextvars import ContextVar
from typing import Any

import grpc

from ..limit import LimitPolicy
from ..observe import Observer
from ..server import (
    DEFAULT_SERVER_OPTIONS,
    ExportedService,
    GuardBox,
    ServedCall,
    export,
)
from . import _serving

__all__ = ["GenericOnly", "PathHandlers", "export_async", "new_async_server"]


_REFUSED = grpc.StatusCode.RESOURCE_EXHAUSTED

# The invocation metadata grpc.aio built to resolve the call's handler, as PathHandlers saw
# it, with the path and the task it was resolved for. The server resolves a call and runs
# its handler in the call's own task: the handler takes it from there instead of asking its
# context, which builds the tuple anew (about 1 µs). Anything else — another task, another
# path, a server that resolved elsewhere — and the handler reads its context as before.
_resolved: ContextVar[tuple[str, Any, Any] | None] = ContextVar("dubbok_resolved", default=None)


def _resolved_metadata(path: str) -> Any:
    resolved = _resolved.get()
    if resolved is None or resolved[0] != path or resolved[2] is not current_task():
        return None
    return resolved[1]


def _wrap_unary_response(
    behavior: Callable[..., Any],
    service: str,
    method: str,
    observer: Observer | None,
    box: GuardBox,
) -> Callable[..., Any]:
    path = f"/{service}/{method}"

    @functools.wraps(behavior)
    async def handler(request: Any, context: Any) -> Any:
        served = ServedCall(context, service, method, observer, _resolved_metadata(path))
        try:
            guard = box.guard
            refusal = None if guard is None else served.admit(guard)
            if refusal is not None:
                await context.abort(_REFUSED, refusal)
            reply = await behavior(request, context)
        except BaseException as exc:
            served.end(exc)
            raise
        served.end(None)
        return reply

    return handler


def _wrap_stream_response(
    behavior: Callable[..., Any],
    service: str,
    method: str,
    observer: Observer | None,
    box: GuardBox,
) -> Callable[..., Any]:
    path = f"/{service}/{method}"

    @functools.wraps(behavior)
    async def handler(request: Any, context: Any) -> AsyncIterator[Any]:
        served = ServedCall(context, service, method, observer, _resolved_metadata(path))
        try:
            guard = box.guard
            refusal = None if guard is None else served.admit(guard)
            if refusal is not None:
                await context.abort(_REFUSED, refusal)
            result = behavior(request, context)
            if inspect.isasyncgen(result):
                async for item in result:
                    yield item
            elif inspect.isawaitable(result):
                # A handler that writes with `await context.write(...)` and returns None.
                await result
            else:
                for item in result:
                    yield item
        except BaseException as exc:
            served.end(exc)
            raise
        served.end(None)

    return handler


def _wrap_handler(
    h: grpc.RpcMethodHandler,
    service: str,
    method: str,
    observer: Observer | None,
    box: GuardBox,
) -> grpc.RpcMethodHandler:
    args = (service, method, observer, box)
    if h.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _wrap_unary_response(h.unary_unary, *args),
            h.request_deserializer,
            h.response_serializer,
        )
    if h.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            _wrap_unary_response(h.stream_unary, *args),
            h.request_deserializer,
            h.response_serializer,
        )
    if h.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_stream_response(h.unary_stream, *args),
            h.request_deserializer,
            h.response_serializer,
        )
    return grpc.stream_stream_rpc_method_handler(
        _wrap_stream_response(h.stream_stream, *args),
        h.request_deserializer,
        h.response_serializer,
    )


def export_async(
    servicer: object, observer: Observer | None = None, limits: LimitPolicy | None = None
) -> ExportedService:
    """Like :func:`dubbok.server.export`, for servicers whose handlers are ``async def``."""
    exported = export(servicer, wrap=False, limits=limits)
    handlers = {
        name: _wrap_handler(h, exported.name, name, observer, exported.guards[name])
        for name, h in exported.handlers.items()
    }
    return dataclasses.replace(exported, handlers=handlers)


class PathHandlers:
    """The asyncio provider's one handler of every method, by path (``/service/method``).

    Every call resolves here, one dict lookup, which also hands the call's invocation
    metadata to its wrapper (see ``_resolved``). With :mod:`dubbok.aio._serving` each method
    is registered and served by a loop of its own that resolves through this; without it,
    no method is registered: ``grpc.aio``'s own serving loop waits on one pending request
    per *registered* method after every call, adding and removing a callback on each, so
    every registered method would cost every call (about 6,000 instructions each, ``bench
    instructions``).
    """

    def __init__(self) -> None:
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add(self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]) -> None:
        for name, handler in handlers.items():
            self._handlers[f"/{service}/{name}"] = handler

    @property
    def methods(self) -> Mapping[str, grpc.RpcMethodHandler]:
        """Every method added, by path."""
        return self._handlers

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        path = handler_call_details.method
        handler = self._handlers.get(path)
        if handler is not None:
            _resolved.set((path, handler_call_details.invocation_metadata, current_task()))
        return handler


class GenericOnly:
    """A server as generated ``add_*_to_server`` functions see it (health, reflection): their
    handlers go to :class:`PathHandlers`, which the server is then built around."""

    def __init__(self, handlers: PathHandlers) -> None:
        self._handlers = handlers

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        pass  # the same handlers come again, by service, just below

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]
    ) -> None:
        self._handlers.add(service, handlers)


def new_async_server(handlers: PathHandlers, options: tuple[tuple[str, Any], ...] = ()) -> Any:
    """A ``grpc.aio`` server (not started) serving every method of ``handlers``: one serving
    loop per method where :mod:`dubbok.aio._serving` can, else grpc's own loop."""
    return _serving.new_server((*DEFAULT_SERVER_OPTIONS, *options), handlers, handlers.methods)
