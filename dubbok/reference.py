"""The sync driver of the consumer pipeline: a typed reference over a generated stub.

A :class:`Reference` has one attribute per RPC method, callable like the generated stub's
(``ref.SayHello(request, timeout=..., metadata=...)``, plus ``.with_call``). Unary calls run
the whole :class:`~dubbok.core.CallPlan` loop here; streaming calls pick one endpoint at stream
start and are never retried. The decisions live in :mod:`dubbok.core`; this module only
blocks on grpc.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from ._fanout import Failback, run_fanout
from .cluster import FailoverPolicy
from .core import CallPlan, Recovery, Route
from .degrade import DegradedCall
from .errors import DubbokError, RpcError
from .governance import Governance
from .invocation import Metadata
from .observe import CallObservation, Observer
from .stub import MethodInfo, MethodKind, ServiceDefinition
from .transport import CHANNEL_CLOSED, call_options

__all__ = ["Reference", "ResponseStream"]

_OK = grpc.StatusCode.OK
_RESEND = FailoverPolicy()


def _wrap_rpc_error(route: Route, info: MethodInfo, address: str, exc: grpc.RpcError) -> RpcError:
    from .errors import AttemptRecord, DeadlineExceededError

    code = exc.code()
    details = exc.details() or ""
    cls = DeadlineExceededError if code is grpc.StatusCode.DEADLINE_EXCEEDED else RpcError
    return cls(route.service, info.name, code, details, [AttemptRecord(address, code, details)])


class ResponseStream:
    """The responses of a server-streaming call; grpc errors surface as :class:`RpcError`."""

    __slots__ = ("_address", "_call", "_conn", "_done", "_info", "_obs", "_route")

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
        self._address: str = conn.address
        self._done = False
        self._obs = obs

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._call)
        except StopIteration:
            self._finish(_OK, "")
            raise
        except grpc.RpcError as exc:
            self._finish(exc.code(), exc.details() or "")
            raise _wrap_rpc_error(self._route, self._info, self._address, exc) from exc

    def _finish(self, code: grpc.StatusCode, details: str) -> None:
        if not self._done:
            self._done = True
            self._conn.done()
            obs = self._obs
            if obs is not None:
                obs.attempt_done(code, details)
                obs.done(code, details)

    def cancel(self) -> bool:
        self._finish(grpc.StatusCode.CANCELLED, "cancelled by the caller")
        return bool(self._call.cancel())

    def initial_metadata(self) -> Any:
        return self._call.initial_metadata()

    def trailing_metadata(self) -> Any:
        return self._call.trailing_metadata()

    def code(self) -> grpc.StatusCode:
        return self._call.code()

    def details(self) -> str:
        return str(self._call.details())


class _Method:
    __slots__ = ("_info", "_ref")

    def __init__(self, ref: Reference, info: MethodInfo) -> None:
        self._ref = ref
        self._info = info

    def __repr__(self) -> str:
        return f"<dubbok {self._info.kind.value} method {self._info.path}>"


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
    ) -> Any:
        return self._ref._unary(
            self._info, request, timeout, metadata, credentials, wait_for_ready, compression, False
        )

    def with_call(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> tuple[Any, grpc.Call]:
        """Like the stub's ``with_call``: ``(response, call)``, the call giving metadata."""
        result: tuple[Any, grpc.Call] = self._ref._unary(
            self._info, request, timeout, metadata, credentials, wait_for_ready, compression, True
        )
        return result


class _Streaming(_Method):
    __slots__ = ()

    def __call__(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        return self._ref._stream(
            self._info, request, timeout, metadata, credentials, wait_for_ready, compression
        )


class Reference:
    """A typed facade over a service: one callable attribute per RPC method.

    Created by :meth:`dubbok.App.reference`; the directory swaps ``_route`` whenever
    discovery or rules change.
    """

    def __init__(self, definition: ServiceDefinition) -> None:
        self.service = definition.name
        self.definition = definition
        self._route: Route | None = None
        self._observer: Observer | None = None
        self._governance: Governance | None = None
        # Asks discovery to look again when every endpoint fails (DNS re-resolves at once).
        self._refresh: Callable[[], None] | None = None
        self._failback: Failback | None = None
        self._names = ("", "")  # (loadbalance, cluster) for observers
        for name, info in definition.methods.items():
            kind = _UnaryUnary if info.kind is MethodKind.UNARY_UNARY else _Streaming
            setattr(self, name, kind(self, info))

    def __repr__(self) -> str:
        route = self._route
        n = len(route.endpoints) if route else 0
        return f"<dubbok.Reference {self.service} endpoints={n}>"

    @property
    def endpoints(self) -> tuple[Any, ...]:
        """The endpoints calls may go to right now (after routing)."""
        route = self._route
        return route.endpoints if route else ()

    def _publish(self, route: Route) -> None:
        self._route = route

    def _failback_for(self, recovery: Recovery) -> Failback:
        failback = self._failback
        if failback is None:
            route = self._route
            assert route is not None
            cluster: Any = next(iter(route.policies.values())).cluster
            failback = self._failback = Failback(
                self._resend,
                queue_size=cluster.queue_size,
                retries=cluster.retries,
                interval=cluster.interval,
                name=self.service,
            )
        return failback

    def _resend(self, info: Any, request: Any, metadata: Metadata | None) -> None:
        """One background retry of a failback call: a plain failover call, no degrade."""
        route = self._route
        assert route is not None
        policy = dataclasses.replace(route.policies[info.name], cluster=_RESEND)
        plan = CallPlan(route, policy, request, metadata or (), None)
        self._attempts(plan, info, request, metadata, {}, False, None)

    def _shutdown(self) -> None:
        if self._failback is not None:
            self._failback.close()

    def _unary(
        self,
        info: MethodInfo,
        request: Any,
        timeout: float | None,
        metadata: Metadata | None,
        credentials: grpc.CallCredentials | None,
        wait_for_ready: bool | None,
        compression: grpc.Compression | None,
        with_call: bool,
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
                attempts = run_fanout if plan.policy.cluster.fanout else self._attempts
                result = attempts(plan, info, request, metadata, options, with_call, obs)
        except BaseException as error:
            recovery = plan.conclude(error, obs, self._refresh)
            if recovery is None:
                raise
            return self._recovered(recovery, request, obs, with_call, info, metadata)
        if forced is not None:
            return self._recovered(forced, request, obs, with_call, info, metadata)
        plan.conclude(None, obs)
        return result

    def _recovered(
        self,
        recovery: Recovery,
        request: Any,
        obs: CallObservation | None,
        with_call: bool,
        info: MethodInfo,
        metadata: Metadata | None,
    ) -> Any:
        """Answer with a mock value or a fallback; the reply says it was degraded."""
        recovery.announce(obs)
        try:
            if recovery.function is not None:
                assert recovery.error is not None
                value = recovery.function(request, recovery.error)
            else:
                value = recovery.value()
                if recovery.requeue:
                    self._failback_for(recovery).submit(info, request, metadata)
        except DubbokError as err:
            Recovery.settled(obs, err)
            raise
        Recovery.settled(obs, None)
        if with_call:
            return value, DegradedCall(recovery.reason)
        return value

    def _attempts(
        self,
        plan: CallPlan,
        info: MethodInfo,
        request: Any,
        metadata: Metadata | None,
        options: dict[str, Any],
        with_call: bool,
        obs: CallObservation | None,
    ) -> Any:
        """The cluster strategy's attempt loop; raises once the plan gives up."""
        metadata = plan.outgoing or metadata
        connections = plan.route.connections
        while True:
            endpoint, remaining = plan.next()
            conn: Any = connections[endpoint.address]
            mc = conn.multicallable(info)
            if with_call:
                mc = mc.with_call
            md, started = plan.start_attempt(endpoint, metadata, obs)
            conn.active += 1
            try:
                result = mc(request, timeout=remaining, metadata=md, **options)
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

    def _stream(
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
        # Streams are governed at their start: limits, method breaker, ejection, balancing.
        plan = CallPlan(route, route.policies[info.name], None, metadata or (), timeout)
        forced = plan.admit()
        if forced is not None:
            return forced.value()
        try:
            endpoint, remaining = plan.next()
        except DubbokError as error:
            plan.finish(error)
            raise
        conn: Any = route.connections[endpoint.address]
        mc = conn.multicallable(info)
        md = plan.outgoing or metadata
        observer = self._observer
        obs = observer.call(plan.invocation, *self._names) if observer is not None else None
        if obs is not None:
            plan.announce_route(obs)
            md = obs.attempt(endpoint, 1, md or ())
        conn.active += 1
        try:
            call = mc(
                request,
                timeout=remaining,
                metadata=md,
                credentials=credentials,
                wait_for_ready=wait_for_ready,
                compression=compression,
            )
        except grpc.RpcError as exc:
            conn.done()
            plan.failed(endpoint, exc.code(), exc.details())
            failure = plan.error()
            plan.finish(failure)
            if obs is not None:
                obs.attempt_done(exc.code(), exc.details() or "")
                obs.done(failure.code, failure.details)
            raise failure from exc
        except BaseException as exc:
            conn.done()
            plan.finish(exc)
            if obs is not None:
                obs.done(grpc.StatusCode.CANCELLED, type(exc).__name__)
            raise
        plan.succeeded(endpoint)
        plan.finish(None)
        if info.kind is MethodKind.STREAM_UNARY:
            # The sync stream-unary call returned its response: the call is over.
            conn.done()
            if obs is not None:
                obs.attempt_done(_OK, "")
                obs.done(_OK, "")
            return call
        return ResponseStream(call, route, info, conn, obs)
