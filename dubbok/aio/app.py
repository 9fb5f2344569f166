"""``dubbok.aio.App`` — the asyncio twin of :class:`dubbok.App`, on ``grpc.aio``.

Same options, same lifecycle; ``serve``, ``wait``, ``stop`` and ``aclose`` are awaitable.
Registry calls (blocking etcd I/O) run in a worker thread; discovery updates from background
threads hop onto the loop before they touch channels.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar, cast

from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from ..app import DEFAULT_GRACE, EndpointListener, _AppBase, advertised_host
from ..breaker import BreakerPolicy
from ..degrade import FallbackFunc
from ..directory import Directory
from ..discovery import Discovery, Subscription
from ..endpoint import Endpoint
from ..errors import ConfigurationError, DubbokError
from ..routing import ConditionRule
from ..server import ExportedService, listen
from ..service import MethodOptions
from .reference import AsyncReference
from .server import GenericOnly, PathHandlers, export_async, new_async_server
from .transport import AsyncChannelPool

__all__ = ["App"]

log = logging.getLogger("dubbok.app")

T = TypeVar("T")


class _LoopListener(EndpointListener):
    """Delivers endpoint sets on the App's loop, whichever thread discovery calls from.

    From the loop's own thread an update applies at once. From another thread it is queued
    with ``call_soon_threadsafe`` — except while ``subscribe`` itself runs on the loop (a
    discovery may wait there for its first answer from its own thread): those updates are
    held and applied as soon as ``subscribe`` returns, so the first call already sees them.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, fn: Callable[[Sequence[Endpoint]], None]
    ) -> None:
        super().__init__(fn)
        self._loop = loop
        self._fn = fn
        self._loop_thread = threading.get_ident()
        self._lock = threading.Lock()
        self._held: list[tuple[Endpoint, ...]] | None = []

    def __call__(self, endpoints: Sequence[Endpoint]) -> None:
        if threading.get_ident() == self._loop_thread:
            self._fn(endpoints)
            return
        with self._lock:
            if self._held is not None:
                self._held.append(tuple(endpoints))
                return
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._fn, tuple(endpoints))

    def subscribed(self) -> None:
        """``subscribe`` returned (on the loop's thread): apply what was held."""
        with self._lock:
            held, self._held = self._held, None
        if held:
            self._fn(held[-1])


class App(_AppBase):
    """A dubbok application on ``grpc.aio``. Create it inside a running event loop."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self._pool = AsyncChannelPool(
            options=self._channel_options, credentials=self._channel_credentials
        )
        self._server: Any = None
        self._health: Any = None
        self._references: list[tuple[Directory, Subscription, Any]] = []
        self._stop_requested = asyncio.Event()
        self._stopped = asyncio.Event()
        self._stopping = False

    async def serve(self, *servicers: object, host: str = "0.0.0.0", port: int = 0) -> int:
        """Export async ``servicers`` on ``host:port``; return the bound port."""
        if not servicers:
            raise ConfigurationError("serve() needs at least one servicer")
        if self._server is not None:
            raise ConfigurationError(
                f"{self.name} is already serving on port {self.port}; pass every servicer "
                "to one serve() call"
            )
        exported: list[ExportedService] = [
            export_async(s, self.observer, self.limits) for s in servicers
        ]
        # Every method resolves through one handler (PathHandlers), which the server is
        # built around once every method is in it.
        handlers = PathHandlers()
        names: list[str] = []
        for svc in exported:
            handlers.add(svc.name, svc.handlers)
            names.append(svc.name)
        if self._health_enabled:
            self._health = health.aio.HealthServicer()
            for n in ["", *names]:
                await self._health.set(n, health_pb2.HealthCheckResponse.NOT_SERVING)
            health_pb2_grpc.add_HealthServicer_to_server(self._health, GenericOnly(handlers))
            names.append(health.SERVICE_NAME)
        if self._reflection_enabled:
            reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
                reflection.aio.ReflectionServicer([*names, reflection.SERVICE_NAME]),
                GenericOnly(handlers),
            )
        server = new_async_server(handlers, self._server_options)
        bound = listen(server, host, port)
        await server.start()
        self._server = server
        self._exported = exported
        self.port = bound
        await asyncio.to_thread(self._follow_limits, list(zip(exported, servicers, strict=True)))
        if self._health is not None:
            for n in ["", *(s.name for s in exported)]:
                await self._health.set(n, health_pb2.HealthCheckResponse.SERVING)
        if self.registry_url is not None:
            advertised = advertised_host(host, self._advertise)
            started = time.time()
            for svc in exported:
                ep = svc.endpoint(self.name, advertised, bound, started)
                await asyncio.to_thread(self.registry.register, svc.name, ep)
                self._announced.append((svc.name, ep))
        log.info(
            "%s serving %s on %s:%d", self.name, ", ".join(s.name for s in exported), host, bound
        )
        return bound

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until SIGTERM/SIGINT (then stop gracefully) or :meth:`stop`."""
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    loop.add_signal_handler(sig, self._stop_requested.set)
                    installed.append(sig)
                except (NotImplementedError, RuntimeError):
                    pass
        try:
            try:
                await asyncio.wait_for(self._stop_requested.wait(), timeout)
            except asyncio.TimeoutError:
                return False
            await self.stop()
            return True
        finally:
            for done_sig in installed:
                loop.remove_signal_handler(done_sig)

    async def stop(self, grace: float | None = DEFAULT_GRACE) -> None:
        """Stop gracefully: NOT_SERVING → unregister → drain → stop accepting → grace."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        try:
            if self._health is not None:
                await self._health.enter_graceful_shutdown()
            for service, ep in self._announced:
                try:
                    await asyncio.to_thread(self.registry.unregister, service, ep)
                except DubbokError as exc:
                    log.warning("could not unregister %s at %s: %s", service, ep.address, exc)
            if self._server is not None and self.drain > 0:
                await asyncio.sleep(self.drain)  # consumers need time to see us leave
            if self._server is not None:
                await self._server.stop(grace)
            await self._close_consumers()
            await asyncio.to_thread(self._close_config)
            registry, self._registry = self._registry, None
            if registry is not None:
                await asyncio.to_thread(registry.close)
        finally:
            self._stopped.set()
            self._stop_requested.set()

    async def aclose(self) -> None:
        """Release everything now (in-flight served calls get no grace)."""
        await self.stop(grace=0)

    async def __aenter__(self) -> App:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def reference(
        self,
        stub: Callable[[Any], T],
        service: str | None = None,
        *,
        discovery: str | Discovery | None = None,
        loadbalance: str = "p2c",
        cluster: str = "failover",
        retries: int = 2,
        timeout: float | None = None,
        version: str = "",
        group: str = "",
        methods: Mapping[str, MethodOptions | Mapping[str, Any]] | None = None,
        breaker: BreakerPolicy | Mapping[str, Any] | bool | None = True,
        actives: Mapping[str, int] | None = None,
        bulkhead: int | None = None,
        degrade: Mapping[str, Mapping[str, Any]] | None = None,
        fallbacks: Mapping[str, FallbackFunc] | None = None,
        cluster_options: Mapping[str, Any] | None = None,
        retry_budget: bool = True,
        routes: Sequence[Mapping[str, Any] | ConditionRule] | None = None,
        balancer_options: Mapping[str, Any] | None = None,
    ) -> T:
        """A typed asyncio reference; each method is awaitable (streams: async iterators).

        Same options as :meth:`dubbok.App.reference`; fallbacks may be ``async``. Must be
        called from the loop the App runs on.
        """
        loop = asyncio.get_running_loop()
        ref, directory, subscription = self._make_reference(
            AsyncReference,
            stub,
            service,
            self._pool.acquire,
            self._pool.release,
            lambda listener: _LoopListener(loop, listener),
            on_loop=lambda fn, *args: loop.call_soon_threadsafe(fn, *args),
            discovery=discovery,
            loadbalance=loadbalance,
            cluster=cluster,
            retries=retries,
            timeout=timeout,
            version=version,
            group=group,
            methods=methods,
            breaker=breaker,
            actives=actives,
            bulkhead=bulkhead,
            degrade=degrade,
            fallbacks=fallbacks,
            cluster_options=cluster_options,
            retry_budget=retry_budget,
            routes=routes,
            balancer_options=balancer_options,
        )
        self._references.append((directory, subscription, ref))
        if self.registry_url is not None:
            info = self._consumer_info()
            registry = self.registry
            service_name = ref.service

            def register() -> None:
                try:
                    registry.register_consumer(service_name, info)
                except DubbokError as exc:
                    log.warning("could not register as a consumer of %s: %s", service_name, exc)

            loop.run_in_executor(None, register)
        return cast(T, ref)

    async def _close_consumers(self) -> None:
        refs, self._references = self._references, []
        for directory, subscription, ref in refs:
            subscription.cancel()
            directory.close()
            await ref._ashutdown()
        await asyncio.to_thread(self._discoveries.close)
        await self._pool.aclose()
