"""The consumer pipeline's decisions, free of I/O — shared by the sync and asyncio drivers.

::

    Reference.Method(request)                      driver (dubbok.reference / dubbok.aio)
      └─ Invocation(service, method, request, metadata, deadline)
           1. policy     = Route.policies[method]        timeouts, retries, idempotency, cluster
           2. endpoints  = Route (immutable snapshot)    ← Directory ← Discovery pushes
           3. candidates = router chain                  (applied when the snapshot is built)
           4. CallPlan drives attempts:                  cluster policy decides retries
                each attempt: Picker.pick(invocation, exclude=tried)
                              → driver: Connection multicallable(request, timeout=remaining)
                              → CallPlan.failed(...) classifies via dubbok.outcome
           5. final failure → RpcError listing every endpoint tried

A driver reads ``Reference._route`` once per call (an atomic attribute read), builds a
:class:`CallPlan`, and loops: ``plan.next()`` → call → ``plan.failed()`` or return. Nothing
here blocks, sleeps or takes a lock; the clock is injected for tests.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import grpc

from .balancer import Balancer, Picker
from .cluster import ClusterPolicy
from .context import incoming_deadline
from .endpoint import Endpoint
from .errors import (
    AttemptRecord,
    DeadlineExceededError,
    NoProviderError,
    RpcError,
)
from .invocation import Clock, Deadline, Invocation, Metadata
from .outcome import classify

__all__ = ["CallPlan", "MethodPolicy", "Route"]

# An attempt is not started with less time than this left: it could only time out.
MIN_ATTEMPT_SECONDS = 0.001


@dataclass(frozen=True, slots=True)
class MethodPolicy:
    """Everything the core needs to know about one method, resolved once per snapshot."""

    service: str
    method: str
    timeout: float | None
    retries: int
    idempotent: bool
    cluster: ClusterPolicy

    @property
    def max_attempts(self) -> int:
        return self.cluster.max_attempts(self.retries)


@dataclass(frozen=True, slots=True)
class Route:
    """An immutable snapshot of where a reference's calls may go.

    Built by the directory whenever the endpoint set or the rules change, then swapped in
    whole; calls read it without locks.
    """

    service: str
    endpoints: tuple[Endpoint, ...]
    picker: Picker
    balancer: Balancer
    policies: Mapping[str, MethodPolicy]
    connections: Mapping[str, object] = field(hash=False)
    discovered: int = 0
    origin: str = ""

    def no_provider(self, method: str) -> NoProviderError:
        if not self.discovered:
            text = (
                f"no provider of {self.service} ({self.origin or 'no discovery'}) — "
                "registered: 0; check that a provider is running and that the consumer's "
                "discovery or registry URL and namespace match the provider's"
            )
        else:
            text = (
                f"no provider of {self.service} left for {method}: {self.discovered} "
                f"discovered, {len(self.endpoints)} after routing, none available"
            )
        return NoProviderError(self.service, text, method=method)


class CallPlan:
    """The attempts of one unary call. Mutable, owned by one call, never shared."""

    __slots__ = ("_clock", "attempts", "deadline", "invocation", "policy", "route", "tried")

    def __init__(
        self,
        route: Route,
        policy: MethodPolicy,
        request: object,
        metadata: Metadata,
        timeout: float | None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.route = route
        self.policy = policy
        self._clock = clock
        seconds = timeout if timeout is not None else policy.timeout
        deadline = Deadline(clock() + seconds) if seconds is not None else None
        inherited = incoming_deadline.get()
        if inherited is not None and (deadline is None or inherited.at < deadline.at):
            deadline = inherited
        self.deadline = deadline
        self.invocation = Invocation(
            policy.service, policy.method, request, metadata, deadline, policy.idempotent
        )
        self.tried: list[str] = []
        self.attempts: list[AttemptRecord] = []

    def next(self) -> tuple[Endpoint, float | None]:
        """The endpoint and timeout of the next attempt; raises when none may be made."""
        timeout: float | None = None
        if self.deadline is not None:
            timeout = self.deadline.at - self._clock()
            if timeout < MIN_ATTEMPT_SECONDS:
                raise self._deadline_error()
        endpoint = self.route.picker.pick(self.invocation, self.tried)
        if endpoint is None:
            if self.attempts:
                raise self.error(grpc.StatusCode.UNAVAILABLE, "no untried endpoint left")
            raise self.route.no_provider(self.policy.method)
        self.tried.append(endpoint.address)
        return endpoint, timeout

    def failed(self, endpoint: Endpoint, code: grpc.StatusCode, details: str | None) -> bool:
        """Record a failed attempt; ``True`` when another attempt should be made."""
        text = details or ""
        self.attempts.append(AttemptRecord(endpoint.address, code, text))
        if len(self.attempts) >= self.policy.max_attempts:
            return False
        if not self.policy.cluster.retry(classify(code, text), self.policy.idempotent):
            return False
        return not (self.deadline is not None and self.deadline.expired(self._clock))

    def error(self, code: grpc.StatusCode | None = None, details: str | None = None) -> RpcError:
        """The error to raise once the plan gives up."""
        last = self.attempts[-1] if self.attempts else None
        code = code or (last.code if last else grpc.StatusCode.UNKNOWN)
        details = details if details is not None else (last.details if last else "")
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return self._deadline_error()
        hint = ""
        if code is grpc.StatusCode.UNAVAILABLE:
            hint = "check that the providers are up and reachable from this host"
        return RpcError(
            self.policy.service, self.policy.method, code, details, self.attempts, hint=hint
        )

    def _deadline_error(self) -> DeadlineExceededError:
        budget = self.policy.timeout
        return DeadlineExceededError(
            self.policy.service,
            self.policy.method,
            grpc.StatusCode.DEADLINE_EXCEEDED,
            "deadline exceeded",
            self.attempts,
            hint=(
                f"the call's time budget ({budget} s) ran out; raise the timeout or find why "
                "the provider is slow"
                if budget
                else "raise the timeout or find why the provider is slow"
            ),
        )


def method_policies(
    service: str,
    methods: Sequence[str],
    *,
    timeout: float | None,
    retries: int,
    idempotent: Mapping[str, bool],
    timeouts: Mapping[str, float | None],
    method_retries: Mapping[str, int | None],
    cluster: ClusterPolicy,
) -> dict[str, MethodPolicy]:
    """Resolve each method's policy: per-method values over reference-wide ones."""
    out: dict[str, MethodPolicy] = {}
    for m in methods:
        t = timeouts.get(m)
        r = method_retries.get(m)
        out[m] = MethodPolicy(
            service=service,
            method=m,
            timeout=t if t is not None else timeout,
            retries=r if r is not None else retries,
            idempotent=idempotent.get(m, False),
            cluster=cluster,
        )
    return out
