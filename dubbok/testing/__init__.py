"""Test kit: what our tests, and yours, need to stand up dubbok services for real.

Everything here runs real components on loopback — real gRPC servers on ports the OS hands
out, a real etcd process (:mod:`dubbok.testing.etcd`), a real DNS responder
(:mod:`dubbok.testing.dns`). Nothing is mocked.

::

    from dubbok.testing import EchoServicer, serve_provider

    with serve_provider(EchoServicer()) as provider:
        with dubbok.App("test") as app:
            echo = app.reference(EchoStub, discovery=provider.url)
            ...

``dubbok.testing.pb`` holds the generated code of a controllable ``Echo`` service (it sleeps,
fails with a chosen status, or streams on request) and of the ``helloworld.Greeter`` example.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from ..aio.app import App as AsyncApp
from ..app import App
from ..discovery import Listener
from ..endpoint import Endpoint
from .pb import echo_pb2, echo_pb2_grpc

__all__ = [
    "AsyncEchoServicer",
    "EchoServicer",
    "ManualDiscovery",
    "Provider",
    "free_port",
    "serve_provider",
    "serve_provider_async",
    "wait_until",
]


def wait_until(
    predicate: Callable[[], object],
    timeout: float = 5.0,
    *,
    interval: float = 0.01,
    ignore: tuple[type[BaseException], ...] = (),
) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; return whether it
    became true. Exceptions of the ``ignore`` types count as "not yet". For tests: wait on a
    condition with a deadline instead of sleeping a fixed time."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        try:
            if predicate():
                return True
        except ignore:
            pass
        if time.monotonic() >= deadline:
            return False
        pause.wait(interval)


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free on ``host`` a moment ago (prefer ``port=0`` where possible)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _metadata(context: Any) -> dict[str, str]:
    return {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}


class EchoServicer(echo_pb2_grpc.EchoServicer):
    """Sync ``Echo``: replies with the payload and ``served_by``; honours delay and fail_code.

    ``calls`` counts handled calls (all methods), for tests that assert who was called.
    """

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.calls = 0

    def _reply(self, request: Any, context: Any) -> Any:
        self.calls += 1
        if request.delay > 0:
            time.sleep(request.delay)  # simulated work of the handler
        if request.fail_code:
            context.abort(_status(request.fail_code), f"asked to fail by {self.name}")
        return echo_pb2.EchoReply(
            payload=request.payload,
            text=request.text,
            served_by=self.name,
            metadata=_metadata(context),
        )

    def Echo(self, request: Any, context: Any) -> Any:
        return self._reply(request, context)

    def EchoStream(self, request: Any, context: Any) -> Iterator[Any]:
        reply = self._reply(request, context)
        for i in range(max(1, request.count)):
            yield echo_pb2.EchoReply(
                payload=reply.payload, text=f"{request.text}{i}", served_by=self.name
            )

    def EchoCollect(self, request_iterator: Any, context: Any) -> Any:
        texts = [r.text for r in request_iterator]
        self.calls += 1
        return echo_pb2.EchoReply(text=",".join(texts), served_by=self.name)

    def EchoChat(self, request_iterator: Any, context: Any) -> Iterator[Any]:
        for request in request_iterator:
            yield self._reply(request, context)


class AsyncEchoServicer(echo_pb2_grpc.EchoServicer):
    """The asyncio twin of :class:`EchoServicer`."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.calls = 0

    async def _reply(self, request: Any, context: Any) -> Any:
        self.calls += 1
        if request.delay > 0:
            await asyncio.sleep(request.delay)  # simulated work of the handler
        if request.fail_code:
            await context.abort(_status(request.fail_code), f"asked to fail by {self.name}")
        return echo_pb2.EchoReply(
            payload=request.payload,
            text=request.text,
            served_by=self.name,
            metadata=_metadata(context),
        )

    async def Echo(self, request: Any, context: Any) -> Any:
        return await self._reply(request, context)

    async def EchoStream(self, request: Any, context: Any) -> AsyncIterator[Any]:
        reply = await self._reply(request, context)
        for i in range(max(1, request.count)):
            yield echo_pb2.EchoReply(
                payload=reply.payload, text=f"{request.text}{i}", served_by=self.name
            )

    async def EchoCollect(self, request_iterator: Any, context: Any) -> Any:
        texts = [r.text async for r in request_iterator]
        self.calls += 1
        return echo_pb2.EchoReply(text=",".join(texts), served_by=self.name)

    async def EchoChat(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        async for request in request_iterator:
            yield await self._reply(request, context)


class _ManualSubscription:
    def __init__(self, owner: ManualDiscovery, service: str, listener: Listener) -> None:
        self._owner = owner
        self._service = service
        self._listener = listener

    def cancel(self) -> None:
        self._owner._remove(self._service, self._listener)

    def refresh(self) -> None:
        self._owner.refreshes += 1


class ManualDiscovery:
    """A :class:`~dubbok.discovery.Discovery` driven by hand: ``set`` pushes a new endpoint
    set to every subscriber of a service, as a registry watch would.

    ::

        disc = ManualDiscovery()
        ref = app.reference(EchoStub, discovery=disc)
        disc.set("dubbok.testing.v1.Echo", ["127.0.0.1:50051"])
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sets: dict[str, tuple[Endpoint, ...]] = {}
        self._listeners: dict[str, list[Listener]] = {}
        self.refreshes = 0

    def set(self, service: str, endpoints: Iterable[Endpoint | str]) -> None:
        eps = tuple(e if isinstance(e, Endpoint) else Endpoint.parse(e) for e in endpoints)
        with self._lock:
            self._sets[service] = eps
            listeners = list(self._listeners.get(service, ()))
        for listener in listeners:
            listener(eps)

    def subscribe(self, service: str, listener: Listener) -> _ManualSubscription:
        with self._lock:
            self._listeners.setdefault(service, []).append(listener)
            current = self._sets.get(service)
        if current is not None:
            listener(current)
        return _ManualSubscription(self, service, listener)

    def _remove(self, service: str, listener: Listener) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._listeners.get(service, []).remove(listener)

    def close(self) -> None:
        with self._lock:
            self._listeners.clear()


def _status(value: int) -> grpc.StatusCode:
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code
    return grpc.StatusCode.UNKNOWN


@dataclass(frozen=True, slots=True)
class Provider:
    """A running provider: its App, bound port and host."""

    app: Any
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """A ``static://`` discovery URL naming just this provider."""
        return f"static://{self.address}"


@contextlib.contextmanager
def serve_provider(
    *servicers: object,
    host: str = "127.0.0.1",
    port: int = 0,
    name: str = "test-provider",
    grace: float = 1.0,
    **app_options: Any,
) -> Iterator[Provider]:
    """Serve ``servicers`` on a free loopback port for the duration of the block."""
    app = App(name, **app_options)
    try:
        bound = app.serve(*servicers, host=host, port=port)
        yield Provider(app, host, bound)
    finally:
        app.stop(grace)


@contextlib.asynccontextmanager
async def serve_provider_async(
    *servicers: object,
    host: str = "127.0.0.1",
    port: int = 0,
    name: str = "test-provider",
    grace: float = 1.0,
    **app_options: Any,
) -> AsyncIterator[Provider]:
    """The asyncio twin of :func:`serve_provider` (async servicers)."""
    app = AsyncApp(name, **app_options)
    try:
        bound = await app.serve(*servicers, host=host, port=port)
        yield Provider(app, host, bound)
    finally:
        await app.stop(grace)
