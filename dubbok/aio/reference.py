"""The asyncio driver of the consumer pipeline (twin of :mod:`dubbok.reference`).

Same :class:`~dubbok.core.CallPlan`, same decisions; only here the attempt is awaited.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from ..cluster import FailoverPolicy
from ..core import CallPlan, Recovery, Route
from ..errors import CircuitOpenError, DubbokError
from ..governance import Governance
from ..invocation import Metadata
from ..observe import CallObservation, Observer
from ..outcome import Verdict, classify
from ..reference import _wrap_rpc_error
from ..stub import MethodInfo, MethodKind, ServiceDefinition
from ..transport import CHANNEL_CLOSED, attempt_status
from ._fanout import AsyncFailback, run_fanout_async

__all__ = ["AsyncReference", "AsyncResponseStream"]

_monotonic = time.monotonic
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

    async def __call__(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        return await self._ref._unary(
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
        await self._attempts(plan, info, request, metadata, None, None, None, None)

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
        try:
            forced = plan.admit()
            if forced is None and plan.policy.cluster.fanout:
                result = await run_fanout_async(
                    plan,
                    info,
                    request,
                    metadata,
                    {
                        "credentials": credentials,
                        "wait_for_ready": wait_for_ready,
                        "compression": compression,
                    },
                    obs,
                )
            elif forced is None:
                result = await self._attempts(
                    plan, info, request, metadata, credentials, wait_for_ready, compression, obs
                )
        except DubbokError as error:
            plan.finish(error)
            if obs is not None and plan.events:
                for name, attributes in plan.events:
                    obs.event(name, attributes)
            if obs is not None and isinstance(error, CircuitOpenError):
                obs.event("circuit_open", {"dubbok.breaker.reason": error.details})
            if self._refresh is not None and plan.all_failing():
                self._refresh()
            recovery = plan.recover(error)
            if recovery is None:
                if obs is not None:
                    obs.done(error.code, error.message)
                raise
            return await self._recovered(recovery, request, obs, info, metadata)
        except BaseException as error:
            plan.finish(error)
            if obs is not None:  # cancelled (or interrupted): the call's span still ends
                obs.done(grpc.StatusCode.CANCELLED, type(error).__name__)
            raise
        if forced is not None:
            return await self._recovered(forced, request, obs, info, metadata)
        plan.finish(None)
        if obs is not None:
            if plan.events:
                for name, attributes in plan.events:
                    obs.event(name, attributes)
            obs.done(_OK, "")
        return result

    async def _recovered(
        self,
        recovery: Recovery,
        request: Any,
        obs: CallObservation | None,
        info: MethodInfo | None = None,
        metadata: Metadata | None = None,
    ) -> Any:
        """Answer with a mock value or a fallback; the reply says it was degraded."""
        if obs is not None:
            obs.event("fallback", {"dubbok.degrade.reason": recovery.reason})
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
            if obs is not None:
                obs.done(err.code, err.message)
            raise
        if obs is not None:
            obs.done(_OK, "")

        return value

    async def _attempts(
        self,
        plan: CallPlan,
        info: MethodInfo,
        request: Any,
        metadata: Metadata | None,
        credentials: grpc.CallCredentials | None,
        wait_for_ready: bool | None,
        compression: grpc.Compression | None,
        obs: CallObservation | None,
    ) -> Any:
        """The cluster strategy's attempt loop; raises once the plan gives up."""
        metadata = plan.outgoing or metadata
        route = plan.route
        balancer = route.balancer
        track = balancer.tracks_load
        connections = route.connections
        while True:
            endpoint, remaining = plan.next()
            conn: Any = connections[endpoint.address]
            mc = conn.multicallable(info)
            md = metadata if len(plan.tried) == 1 else plan.metadata(metadata or ())
            if obs is not None:
                md = obs.attempt(endpoint, len(plan.tried), md or ())
            conn.active += 1
            if track:
                balancer.started(endpoint)
            started = _monotonic()
            try:
                result = await mc(
                    request,
                    timeout=remaining,
                    metadata=md,
                    credentials=credentials,
                    wait_for_ready=wait_for_ready,
                    compression=compression,
                )
            except (grpc.RpcError, *CHANNEL_CLOSED) as exc:
                conn.done()
                code, details = attempt_status(exc)
                if track:
                    balancer.finished(endpoint, _monotonic() - started, classify(code, details))
                if obs is not None:
                    obs.attempt_done(code, details or "")
                if not plan.failed(endpoint, code, details):
                    raise plan.error() from exc
                if obs is not None:
                    obs.event(
                        "retry",
                        {
                            "dubbok.attempt": len(plan.attempts) + 1,
                            "dubbok.failed_endpoint": endpoint.address,
                            "rpc.grpc.status_code": code.value[0],
                        },
                    )
            except BaseException:
                conn.done()
                raise
            else:
                conn.done()
                plan.succeeded(endpoint)
                if track:
                    balancer.finished(endpoint, _monotonic() - started, Verdict.OK)
                if plan.policy.latency is not None:
                    plan.policy.latency.record(_monotonic() - started)
                if obs is not None:
                    obs.attempt_done(_OK, "")
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
