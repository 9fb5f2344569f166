"""A ``grpc.aio`` server that serves each method from a loop of its own.

``grpc.aio``'s server runs one serving loop: it keeps a pending request for every
registered method and one for all the others, waits on all of them with ``asyncio.wait``
after every call (a callback added to and removed from each), and runs each request in a
Task of its own. On the development machine that loop is about a fifth of a provider's CPU
time per unary call (``bench instructions --impls raw,raw-loops``).

:class:`MethodLoopServer` is grpc's own server (its Cython ``AioServer``, subclassed) with
one change: every registered method is requested by a loop of its own, which awaits its
request inline and hands each call to grpc's own handling (``_handle_rpc`` under
``_schedule_rpc_coro``: the same handler lookup, interceptors, deadlines, cancellation,
status and errors). grpc's loop still runs, for what no method loop serves: a call to a
method nobody registered (answered UNIMPLEMENTED), and start-up and shutdown, which stay
grpc's. A method loop ends when shutdown fails its pending request.

It uses grpc internals (``AioServer._request_registered_call``, ``_make_request_call_future``
and ``_server_main_loop``; ``_handle_rpc``, ``_schedule_rpc_coro``, ``_RequestCallError``;
``grpc.aio._server.Server``'s two attributes). They are checked at import, their
signatures included; without them, or with ``DUBBOK_SERVING=grpc`` in the environment,
:func:`new_server` returns grpc's own server, unchanged.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from collections.abc import Mapping
from typing import Any

import grpc

from .._serving import ENV

__all__ = ["SUPPORTED", "MethodLoopServer", "enabled", "new_server"]

log = logging.getLogger(__name__)


def _parameters(fn: object) -> tuple[str, ...] | None:
    try:
        return tuple(inspect.signature(fn).parameters)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


try:
    from grpc._cython import cygrpc
    from grpc.aio import _server as _aio_server

    _INIT_NAMES = set(_aio_server.Server.__init__.__code__.co_names)
    SUPPORTED = (
        all(
            callable(getattr(cygrpc.AioServer, name, None))
            for name in (
                "_request_registered_call",
                "_make_request_call_future",
                "_server_main_loop",
                "add_registered_method_handlers",
                "is_running",
            )
        )
        and isinstance(getattr(cygrpc, "_RequestCallError", None), type)
        and _parameters(getattr(cygrpc, "_handle_rpc", None))
        == (
            "method_name",
            "method_resolver",
            "interceptors",
            "rpc_state",
            "loop",
            "concurrency_exceeded",
        )
        and _parameters(getattr(cygrpc, "_schedule_rpc_coro", None))
        == ("rpc_coro", "rpc_state", "loop", "method_name")
        and callable(getattr(_aio_server, "_augment_channel_arguments", None))
        # grpc.aio's Server sets _loop and _server in __init__, as built below; a grpc
        # whose __init__ does more is not built around.
        and _INIT_NAMES.issubset(
            {
                "_loop",
                "_server",
                "get_working_loop",
                "cygrpc",
                "AioServer",
                "_augment_channel_arguments",
                "isinstance",
                "ServerInterceptor",
                "ValueError",
            }
        )
    )
except (ImportError, AttributeError):  # pragma: no cover - another grpcio
    SUPPORTED = False


def enabled() -> bool:
    """Whether :func:`new_server` builds a :class:`MethodLoopServer`."""
    return SUPPORTED and os.environ.get(ENV, "").strip().lower() != "grpc"


class _Resolver:
    """What grpc's ``_find_method_handler`` asks: ``resolve_handler(handler_call_details)``."""

    __slots__ = ("resolve_handler",)

    def __init__(self, generic: grpc.GenericRpcHandler) -> None:
        self.resolve_handler = generic.service


if SUPPORTED:

    class MethodLoopServer(cygrpc.AioServer):  # type: ignore[misc]
        """grpc's ``AioServer`` with a serving loop per registered method (see the module
        text). ``resolver``: the generic handler every method loop resolves calls with (it
        is also added as the server's generic handler)."""

        def __init__(
            self,
            loop: asyncio.AbstractEventLoop,
            resolver: grpc.GenericRpcHandler,
            options: tuple[tuple[str, Any], ...],
        ) -> None:
            super().__init__(loop, None, [resolver], (), options, None)
            self._dubbok_loop = loop
            self._dubbok_resolver = _Resolver(resolver)
            self._dubbok_methods: list[str] = []
            # Calls in flight, held here (asyncio keeps only weak references to tasks).
            self._dubbok_calls: set[asyncio.Task[None]] = set()

        def add_registered_method_handlers(
            self, method_handlers: Mapping[str, grpc.RpcMethodHandler]
        ) -> None:
            super().add_registered_method_handlers(dict(method_handlers))
            for method in method_handlers:
                if method not in self._dubbok_methods:
                    self._dubbok_methods.append(method)

        def _make_request_call_future(self, method_bytes: bytes | None) -> Any:
            if method_bytes is None:
                return super()._make_request_call_future(None)
            # A registered method is its own loop's to request; grpc's loop waits on this
            # (never done) until shutdown cancels it.
            return self._dubbok_loop.create_future()

        async def _server_main_loop(self, server_started: asyncio.Future[bool]) -> None:
            loop = self._dubbok_loop
            grpc_loop = loop.create_task(cygrpc.AioServer._server_main_loop(self, server_started))
            # grpc's loop starts the core server, then reports it started (or fails).
            await asyncio.wait((grpc_loop, server_started), return_when=asyncio.FIRST_COMPLETED)
            if not server_started.done():
                await grpc_loop  # raises what failed start-up
                return
            loops = [loop.create_task(self._serve(method)) for method in self._dubbok_methods]
            tasks = [grpc_loop, *loops]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    task.result()  # a crashed loop crashes the server, as grpc's would
                await asyncio.gather(*tasks)
            finally:
                for task in tasks:
                    task.cancel()

        async def _serve(self, method: str) -> None:
            """Request calls to ``method`` one after another; each runs in its own task."""
            loop = self._dubbok_loop
            method_bytes = method.encode()
            resolver = self._dubbok_resolver
            calls = self._dubbok_calls
            request = self._request_registered_call
            handle = cygrpc._handle_rpc
            schedule = cygrpc._schedule_rpc_coro
            refused = cygrpc._RequestCallError
            while True:
                try:
                    rpc_state = await request(method_bytes)
                except refused:
                    if not self.is_running():
                        return
                    continue  # as grpc's loop: an asynchronous failure re-arms
                call = loop.create_task(
                    schedule(
                        handle(method, resolver, (), rpc_state, loop, False),
                        rpc_state,
                        loop,
                        method,
                    ),
                    name="rpc_task",
                )
                calls.add(call)
                call.add_done_callback(calls.discard)

else:  # pragma: no cover - another grpcio
    MethodLoopServer = None  # type: ignore[assignment,misc]


def new_server(
    options: tuple[tuple[str, Any], ...],
    resolver: grpc.GenericRpcHandler,
    methods: Mapping[str, grpc.RpcMethodHandler],
) -> Any:
    """A started-later ``grpc.aio.Server`` serving ``methods`` (``/service/method`` paths)
    through ``resolver``: a :class:`MethodLoopServer` when :func:`enabled`, else grpc's own
    server with ``resolver`` as its only handler and no method registered."""
    if not enabled():
        server = grpc.aio.server(options=list(options))
        server.add_generic_rpc_handlers((resolver,))
        return server
    server = _aio_server.Server.__new__(_aio_server.Server)
    server._loop = cygrpc.get_working_loop()
    server._server = MethodLoopServer(
        server._loop, resolver, _aio_server._augment_channel_arguments(options, None)
    )
    server._server.add_registered_method_handlers(methods)
    return server
