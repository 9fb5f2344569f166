"""The asyncio provider side: servicers on ``grpc.aio.server`` (twin of :mod:`dubbok.server`)."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from ..context import incoming_deadline
from ..invocation import Deadline
from ..server import DEFAULT_SERVER_OPTIONS, ExportedService, export

__all__ = ["export_async", "new_async_server"]


def _remaining(context: Any) -> Deadline | None:
    left = context.time_remaining()
    if left is None:
        return None
    return Deadline(time.monotonic() + left)


def _wrap_unary_response(behavior: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(behavior)
    async def handler(request: Any, context: Any) -> Any:
        token = incoming_deadline.set(_remaining(context))
        try:
            return await behavior(request, context)
        finally:
            incoming_deadline.reset(token)

    return handler


def _wrap_stream_response(behavior: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(behavior)
    async def handler(request: Any, context: Any) -> AsyncIterator[Any]:
        token = incoming_deadline.set(_remaining(context))
        try:
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
        finally:
            incoming_deadline.reset(token)

    return handler


def _wrap_handler(h: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    if h.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _wrap_unary_response(h.unary_unary), h.request_deserializer, h.response_serializer
        )
    if h.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            _wrap_unary_response(h.stream_unary), h.request_deserializer, h.response_serializer
        )
    if h.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_stream_response(h.unary_stream), h.request_deserializer, h.response_serializer
        )
    return grpc.stream_stream_rpc_method_handler(
        _wrap_stream_response(h.stream_stream), h.request_deserializer, h.response_serializer
    )


def export_async(servicer: object) -> ExportedService:
    """Like :func:`dubbok.server.export`, for servicers whose handlers are ``async def``."""
    exported = export(servicer, wrap=False)
    handlers = {name: _wrap_handler(h) for name, h in exported.handlers.items()}
    return ExportedService(exported.name, exported.options, handlers, exported.method_records)


def new_async_server(options: tuple[tuple[str, Any], ...] = ()) -> Any:
    return grpc.aio.server(options=list(DEFAULT_SERVER_OPTIONS) + list(options))
