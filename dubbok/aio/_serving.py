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

Methods registered on the server from outside (a generated ``add_*_to_server`` on the
``grpc.aio.Server``) get loops too and are resolved first, as grpc does; a registration
after ``start()`` is refused, as grpc refuses it (with its warning).

It uses grpc internals (``AioServer._request_registered_call``, ``_make_request_call_future``,
``_server_main_loop`` and ``start``; ``_handle_rpc``, ``_schedule_rpc_coro``,
``_RequestCallError``; ``grpc.aio._server.Server``'s two attributes). They are checked at
import: their signatures, and the local names of the grpc functions the method loops run
beside (start-up, serving loop, shutdown, registration), which change when those functions
do. Without them, with a ``AioServer`` that cannot be built as here, or with
``DUBBOK_SERVING=grpc`` in the environment, :func:`new_server` returns grpc's own server,
unchanged.
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


# Local names of the grpc functions the serving runs beside, as in grpcio 1.85.
_FINGERPRINTS = {
    "_server_main_loop": (
        "self",
        "server_started",
        "rpc_state",
        "method_name",
        "rpc_tasks",
        "method_resolver",
        "pending_futures",
        "method",
        "method_bytes",
        "fut",
        "generic_fut",
        "done",
        "_",
        "completed",
        "new_fut",
        "concurrency_exceeded",
        "rpc_coro",
        "rpc_task",
    ),
    "start": ("self", "server_started"),
    "shutdown": ("self", "grace"),
    "_start_shutting_down": ("self",),
    "add_registered_method_handlers": ("self", "method_handlers", "fully_qualified_method"),
    "_request_registered_call": (
        "self",
        "method",
        "error",
        "rpc_state",
        "future",
        "wrapper",
        "registered_method",
    ),
}

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
        # What the serving does around the method loops is grpc's start-up, serving loop
        # and shutdown as read for this module: a grpc that changed them is not built on.
        and all(
            getattr(getattr(cygrpc.AioServer, name, None), "__code__", None) is not None
            and getattr(cygrpc.AioServer, name).__code__.co_varnames == names
            for name, names in _FINGERPRINTS.items()
        )
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
    """What grpc's ``_find_method_handler`` asks: ``resolve_handler(handler_call_details)``.

    The server's own handler answers; handlers registered on the server by anyone else
    (``grpc.aio.Server.add_registered_method_handlers``) come first, as in grpc's resolver.
    """

    __slots__ = ("_generic", "_registered", "resolve_handler")

    def __init__(self, generic: grpc.GenericRpcHandler) -> None:
        self._generic = generic
        self._registered: dict[str, grpc.RpcMethodHandler] = {}
        self.resolve_handler: Any = generic.service

    def register(self, handlers: Mapping[str, grpc.RpcMethodHandler]) -> None:
        self._registered.update(handlers)
        self.resolve_handler = self._resolve

    def _resolve(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = self._registered.get(handler_call_details.method)
        if handler is not None:
            return handler
        return self._generic.service(handler_call_details)


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
            # Methods by path (a dict keeps their order); fixed once the server starts, as
            # grpc refuses registrations from then on.
            self._dubbok_methods: dict[str, None] = {}
            self._dubbok_started = False
            # The one request grpc's own loop waits on for every registered method: never
            # done, cancelled at shutdown.
            self._dubbok_idle: asyncio.Future[Any] | None = None
            # Calls in flight, held here (asyncio keeps only weak references to tasks).
            self._dubbok_calls: set[asyncio.Task[None]] = set()

        def add_registered_method_handlers(
            self, method_handlers: Mapping[str, grpc.RpcMethodHandler]
        ) -> None:
            """Handlers registered from outside (``grpc.aio.Server``'s method of that name):
            served by a loop each, resolved ahead of the server's own handler."""
            started = self._dubbok_started
            self._dubbok_register(method_handlers)
            if not started:
                self._dubbok_resolver.register(method_handlers)

        def _dubbok_register(self, method_handlers: Mapping[str, grpc.RpcMethodHandler]) -> None:
            super().add_registered_method_handlers(dict(method_handlers))  # warns once started
            if not self._dubbok_started:
                self._dubbok_methods.update(dict.fromkeys(method_handlers))

        async def start(self) -> None:
            # grpc takes no registration once start() is called; nor do the method loops.
            self._dubbok_started = True
            await super().start()

        def _make_request_call_future(self, method_bytes: bytes | None) -> Any:
            if method_bytes is None:
                return super()._make_request_call_future(None)
            # A registered method is its own loop's to request. grpc's loop gets one shared
            # future for all of them, so a call to an unregistered method costs the same
            # however many methods there are.
            idle = self._dubbok_idle
            if idle is None:
                idle = self._dubbok_idle = self._dubbok_loop.create_future()
            return idle

        async def _server_main_loop(self, server_started: asyncio.Future[bool]) -> None:
            loop = self._dubbok_loop
            methods = tuple(self._dubbok_methods)
            grpc_loop = loop.create_task(cygrpc.AioServer._server_main_loop(self, server_started))
            # grpc's loop starts the core server, then reports it started (or fails).
            await asyncio.wait((grpc_loop, server_started), return_when=asyncio.FIRST_COMPLETED)
            if not server_started.done():
                await grpc_loop  # raises what failed start-up
                return
            loops = [loop.create_task(self._serve(method)) for method in methods]
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
            running = self.is_running
            while running():  # as grpc's loop: no new call once shutdown begins
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


def _grpc_server(options: tuple[tuple[str, Any], ...], resolver: grpc.GenericRpcHandler) -> Any:
    server = grpc.aio.server(options=list(options))
    server.add_generic_rpc_handlers((resolver,))
    return server


def new_server(
    options: tuple[tuple[str, Any], ...],
    resolver: grpc.GenericRpcHandler,
    methods: Mapping[str, grpc.RpcMethodHandler],
) -> Any:
    """A started-later ``grpc.aio.Server`` serving ``methods`` (``/service/method`` paths)
    through ``resolver``: a :class:`MethodLoopServer` when :func:`enabled`, else grpc's own
    server with ``resolver`` as its only handler and no method registered."""
    if not enabled():
        return _grpc_server(options, resolver)
    loop = cygrpc.get_working_loop()
    try:
        core = MethodLoopServer(
            loop, resolver, _aio_server._augment_channel_arguments(options, None)
        )
    except TypeError as exc:  # pragma: no cover - a grpcio whose AioServer takes other arguments
        log.warning(
            "dubbok: grpc's asyncio server cannot be built with a loop per method (%s); "
            "serving on grpc's own loop instead",
            exc,
        )
        return _grpc_server(options, resolver)
    core._dubbok_register(methods)
    server = _aio_server.Server.__new__(_aio_server.Server)
    server._loop = loop
    server._server = core
    return server
