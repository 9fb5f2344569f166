"""The asyncio driver of the consumer pipeline (twin of :mod:`dubbok.reference`).

Same :class:`~dubbok.core.CallPlan`, same decisions; only here the attempt is awaited.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import grpc

from ..cluster import FailoverPolicy
from ..core import CallPlan, Recovery, Route
from ..errors import DubbokError
from ..governance import Governance
from ..invocation import Metadata
from ..observe import CallObservation, Observer
from ..reference import _wrap_rpc_error
from ..stub import MethodInfo, MethodKind, ServiceDefinition
from ..transport import CHANNEL_CLOSED, call_options
from ._fanout import AsyncFailback, run_fanout_async

__all__ = ["AsyncReference", "AsyncResponseStream"]

_OK = grpc.StatusCode.OK
_RESEND = FailoverPolicy()


def finish_observation(obs: CallObservation | None, code: grpc.StatusCode, details: str) -> None:
    """End a stream's attempt and call observation (once the stream is over)."""
    if obs is not None:
        obs.attempt_done(code, details)
        obs.done(code, details)


class AsyncResponseStream:
    """The responses of a server- or bidi-streaming call, as an async iterator."""

    __slots__ = ("_call", "_conn", "_done", "_info", "_iter", "_obs", "_route")

    def __init__(
        self,
        call: Any,
        route: Route,
        info: MethodInfo,
        conn: Any,
        obs: CallObservation | None = None,
    ) -> None:
        self._call = call
        self._route = route
        self._info = info
        self._conn = conn
        self._iter: Any = None
        self._done = False
        self._obs = obs

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        if self._iter is None:
            self._iter = self._call.__aiter__()
        try:
            return await self._iter.__anext__()
        except StopAsyncIteration:
            self._finish(_OK, "")
            raise
        except grpc.RpcError as exc:
            self._finish(exc.code(), exc.details() or "")
            raise _wrap_rpc_error(self._route, self._info, self._conn.address, exc) from exc

    def _finish(self, code: grpc.StatusCode, details: str) -> None:
        if not self._done:
            self._done = True
            self._conn.done()
            finish_observation(self._obs, code, details)

    async def write(self, request: Any) -> None:
        await self._call.write(request)

    async def done_writing(self) -> None:
        await self._call.done_writing()

    def cancel(self) -> bool:
        self._finish(grpc.StatusCode.CANCELLED, "cancelled by the caller")
        return bool(self._call.cancel())

    async def initial_metadata(self) -> Any:
        return await self._call.initial_metadata()

    async def trailing_metadata(self) -> Any:
        return await self._call.trailing_metadata()


class _Method:
    __slots__ = ("_info", "_ref")

    def __init__(self, ref: AsyncReference, info: MethodInfo) -> None:
        self._ref = ref
        self._info = info

    def __repr__(self) -> str:
        return f"<dubbok.aio {self._info.kind.value} method {self._info.path}>"


class _UnaryUnary(_Method):
    __slots__ = ()

    def __call__(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Coroutine[Any, Any, Any]:
        # The reference's coroutine itself, not one that awaits it: a frame less per call.
        return self._ref._unary(
            self._info, request, timeout, metadata, credentials, wait_for_ready, compression
        )


class _StreamUnary(_Method):
    __slots__ = ()

    async def __call__(
        self,
        request_iterator: Any,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        route, conn, call, obs = self._ref._start(
            self._info,
            request_iterator,
            timeout,
            metadata,
            credentials,
            wait_for_ready,
            compression,
        )
        try:
            reply = await call
        except grpc.RpcError as exc:
            finish_observation(obs, exc.code(), exc.details() or "")
            raise _wrap_rpc_error(route, self._info, conn.address, exc) from exc
        except BaseException as exc:
            finish_observation(obs, grpc.StatusCode.CANCELLED, type(exc).__name__)
            raise
        finally:
            conn.done()
        finish_observation(obs, _OK, "")
        return reply


class _ResponseStreaming(_Method):
    __slots__ = ()

    def __call__(
        self,
        request: Any = None,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> AsyncResponseStream:
        route, conn, call, obs = self._ref._start(
            self._info, request, timeout, metadata, credentials, wait_for_ready, compression
        )
        return AsyncResponseStream(call, route, self._info, conn, obs)


_KINDS: dict[MethodKind, type[_Method]] = {
    MethodKind.UNARY_UNARY: _UnaryUnary,
    MethodKind.STREAM_UNARY: _StreamUnary,
    MethodKind.UNARY_STREAM: _ResponseStreaming,
    MethodKind.STREAM_STREAM: _ResponseStreaming,
}


class AsyncReference:
    """A typed asyncio facade over a service: one awaitable attribute per RPC method."""

    def __init__(self, definition: ServiceDefinition) -> None:
        self.service = definition.name
        self.definition = definition
        self._route: Route | None = None
        self._observer: Observer | None = None
        self._governance: Governance | None = None
        # Asks discovery to look again when every endpoint fails (DNS re-resolves at once).
        self._refresh: Callable[[], None] | None = None
        self._failback: AsyncFailback | None = None
        self._names = ("", "")  # (loadbalance, cluster) for observers
        for name, info in definition.methods.items():
            setattr(self, name, _KINDS[info.kind](self, info))

    def __repr__(self) -> str:
        route = self._route
        n = len(route.endpoints) if route else 0
        return f"<dubbok.aio.Reference {self.service} endpoints={n}>"

    @property
    def endpoints(self) -> tuple[Any, ...]:
        route = self._route
        return route.endpoints if route else ()

    def _publish(self, route: Route) -> None:
        self._route = route

    def _failback_for(self) -> AsyncFailback:
        failback = self._failback
        if failback is None:
            route = self._route
            assert route is not None
            cluster: Any = next(iter(route.policies.values())).cluster
            failback = self._failback = AsyncFailback(
                self._resend,
                queue_size=cluster.queue_size,
                retries=cluster.retries,
                interval=cluster.interval,
                name=self.service,
            )
        return failback

    async def _resend(self, info: Any, request: Any, metadata: Metadata | None) -> None:
        """One background retry of a failback call: a plain failover call, no degrade."""
        route = self._route
        assert route is not None
        policy = dataclasses.replace(route.policies[info.name], cluster=_RESEND)
        plan = CallPlan(route, policy, request, metadata or (), None)
        await self._attempts(plan, info, request, metadata, {}, False, None)

    async def _ashutdown(self) -> None:
        if self._failback is not None:
            await self._failback.aclose()

    async def _unary(
        self,
        info: MethodInfo,
        request: Any,
        timeout: float | None,
        metadata: Metadata | None,
        credentials: grpc.CallCredentials | None,
        wait_for_ready: bool | None,
        compression: grpc.Compression | None,
    ) -> Any:
        route = self._route
        assert route is not None
        plan = CallPlan(route, route.policies[info.name], request, metadata or (), timeout)
        observer = self._observer
        obs = observer.call(plan.invocation, *self._names) if observer is not None else None
        options = call_options(credentials, wait_for_ready, compression)
        try:
            forced = plan.admit()
            if forced is None:
                attempts = run_fanout_async if plan.policy.cluster.fanout else self._attempts
                result = await attempts(plan, info, request, metadata, options, False, obs)
        except BaseException as error:
            recovery = plan.conclude(error, obs, self._refresh)
            if recovery is None:
                raise
            return await self._recovered(recovery, request, obs, info, metadata)
        if forced is not None:
            return await self._recovered(forced, request, obs, info, metadata)
        plan.conclude(None, obs)
        return result

    async def _recovered(
        self,
        recovery: Recovery,
        request: Any,
        obs: CallObservation | None,
        info: MethodInfo,
        metadata: Metadata | None,
    ) -> Any:
        """Answer with a mock value or a fallback (which may be ``async``)."""
        recovery.announce(obs)
        try:
            if recovery.function is not None:
                assert recovery.error is not None
                value = recovery.function(request, recovery.error)
                if inspect.isawaitable(value):
                    value = await value
            else:
                value = recovery.value()
                if recovery.requeue:
                    self._failback_for().submit(info, request, metadata)
        except DubbokError as err:
            Recovery.settled(obs, err)
            raise
        Recovery.settled(obs, None)
        return value

    async def _attempts(
        self,
        plan: CallPlan,
        info: MethodInfo,
        request: Any,
        metadata: Metadata | None,
        options: dict[str, Any],
        with_call: bool,
        obs: CallObservation | None,
    ) -> Any:
        """The cluster strategy's attempt loop; raises once the plan gives up.
        (``with_call`` mirrors the sync driver's signature; asyncio has no such form.)"""
        metadata = plan.outgoing or metadata
        connections = plan.route.connections
        while True:
            endpoint, remaining = plan.next()
            conn: Any = connections[endpoint.address]
            mc = conn.multicallable(info)
            md, started = plan.start_attempt(endpoint, metadata, obs)
            conn.active += 1
            try:
                result = await mc(request, timeout=remaining, metadata=md, **options)
            except (grpc.RpcError, *CHANNEL_CLOSED) as exc:
                conn.done()
                if not plan.attempt_failed(endpoint, exc, started, obs):
                    raise plan.error() from exc
            except BaseException:
                conn.done()
                raise
            else:
                conn.done()
                plan.attempt_succeeded(endpoint, started, obs)
                return result

    def _start(
        self,
        info: MethodInfo,
        request: Any,
        timeout: float | None,
        metadata: Metadata | None,
        credentials: grpc.CallCredentials | None,
        wait_for_ready: bool | None,
        compression: grpc.Compression | None,
    ) -> tuple[Route, Any, Any, CallObservation | None]:
        """Pick one endpoint and start a streaming call on it (never retried)."""
        route = self._route
        assert route is not None
        # Streams are governed at their start: limits, method breaker, ejection, balancing.
        plan = CallPlan(route, route.policies[info.name], None, metadata or (), timeout)
        forced = plan.admit()
        if forced is not None:
            forced.value()  # a streaming method's mock rule can only throw
        try:
            endpoint, remaining = plan.next()
        except DubbokError as error:
            plan.finish(error)
            raise
        plan.finish(None)
        conn: Any = route.connections[endpoint.address]
        mc = conn.multicallable(info)
        args = () if request is None and info.kind is MethodKind.STREAM_STREAM else (request,)
        md = plan.outgoing or metadata
        observer = self._observer
        obs = observer.call(plan.invocation, *self._names) if observer is not None else None
        if obs is not None:
            plan.announce_route(obs)
            md = obs.attempt(endpoint, 1, md or ())
        call = mc(
            *args,
            timeout=remaining,
            metadata=md,
            credentials=credentials,
            wait_for_ready=wait_for_ready,
            compression=compression,
        )
        conn.active += 1
        return route, conn, call, obs
