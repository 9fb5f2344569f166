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

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc

from .attachments import _current as _attachments
from .balancer import Balancer, Picker
from .cluster import ClusterPolicy
from .cluster.budget import RetryBudget
from .cluster.latency import LatencyTracker
from .context import incoming_deadline, serving_retry
from .degrade import DegradeMode, DegradeRule, FallbackFunc
from .endpoint import Endpoint
from .errors import (
    AttemptRecord,
    CircuitOpenError,
    DeadlineExceededError,
    DubbokError,
    NoProviderError,
    RpcError,
)
from .invocation import Clock, Deadline, Invocation, Metadata
from .observe import CallObservation
from .outcome import Verdict, classify, counts_as_failure
from .routing.tag import TAG_HEADER, current_tag
from .transport import attempt_status

if TYPE_CHECKING:  # the breaker and limit packages load when a reference first needs them
    from .breaker import MethodBreaker, OutlierDetector
    from .limit import ConcurrencyLimiter
    from .routing import RoutePlan

__all__ = ["CallPlan", "MethodPolicy", "Route"]

log = logging.getLogger("dubbok.cluster")

# An attempt is not started with less time than this left: it could only time out.
MIN_ATTEMPT_SECONDS = 0.001
# When a deadline is split across attempts, no attempt gets less than this share of it.
MIN_SPLIT_SHARE = 0.2
ATTEMPT_HEADER = "x-dubbok-attempt"
_attached = _attachments.get  # the caller's attachments (dubbok.attachments), read per call


@dataclass(frozen=True, slots=True)
class MethodPolicy:
    """Everything the core needs to know about one method, resolved once per snapshot.

    ``breaker`` and ``actives`` are stateful objects that outlive snapshots (one per
    reference and method); the rest is plain configuration.
    """

    service: str
    method: str
    timeout: float | None
    retries: int
    idempotent: bool
    cluster: ClusterPolicy
    breaker: MethodBreaker | None = None
    actives: ConcurrencyLimiter | None = None
    degrade: DegradeRule | None = None
    fallback: FallbackFunc | None = None
    budget: RetryBudget | None = None
    latency: LatencyTracker | None = None
    response: Callable[[], object] | None = None

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
    detector: OutlierDetector | None = None
    bulkhead: ConcurrencyLimiter | None = None
    plan: RoutePlan | None = None

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


class Recovery:
    """How a failed or refused call is answered instead: a mock value, a mock status, or a
    fallback function for the driver to call (and await, in ``dubbok.aio``)."""

    __slots__ = ("default", "error", "function", "reason", "requeue", "rule")

    def __init__(
        self,
        reason: str,
        error: BaseException | None,
        rule: DegradeRule | None = None,
        function: FallbackFunc | None = None,
        default: Callable[[], object] | None = None,
        requeue: bool = False,
    ) -> None:
        self.reason = reason
        self.error = error
        self.rule = rule
        self.function = function
        self.default = default
        self.requeue = requeue

    def announce(self, obs: CallObservation | None) -> None:
        """Tell the observer the call is being answered in place of the provider."""
        if obs is not None:
            obs.event("fallback", {"dubbok.degrade.reason": self.reason})

    @staticmethod
    def settled(obs: CallObservation | None, error: DubbokError | None) -> None:
        """The degraded answer is out (``error``: the fallback or rule raised it)."""
        if obs is not None:
            if error is None:
                obs.done(grpc.StatusCode.OK, "")
            else:
                obs.done(error.code, error.message)

    def value(self) -> object:
        """The mock answer; raises the rule's status as an :class:`RpcError` for ``throw``."""
        if self.default is not None:
            return self.default()
        rule = self.rule
        assert rule is not None
        if rule.status is not None:
            err = RpcError(
                "",
                rule.method,
                rule.status,
                rule.message,
                hint="a degrade rule answered in place of the provider",
            )
            raise err from self.error
        return rule.answer()


class CallPlan:
    """The attempts of one unary call. Mutable, owned by one call, never shared.

    Driver protocol::

        recovery = plan.admit()        # forced degrade, limits, method breaker
        ... loop: plan.next() → call → plan.failed(...) / plan.succeeded(...)
        plan.finish(error_or_None)     # breaker record, permits released
        plan.recover(error)            # fail-mode degrade or fallback, if any
    """

    __slots__ = (
        "_admitted",
        "_clock",
        "_picker",
        "_started",
        "attempts",
        "budget_refused",
        "candidates",
        "deadline",
        "events",
        "invocation",
        "outgoing",
        "policy",
        "route",
        "tried",
    )

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
        now = clock()
        self._started = now
        seconds = timeout if timeout is not None else policy.timeout
        deadline = Deadline(now + seconds) if seconds is not None else None
        inherited = incoming_deadline.get()
        if inherited is not None and (deadline is None or inherited.at < deadline.at):
            deadline = inherited
        self.deadline = deadline
        self.invocation = Invocation(
            policy.service, policy.method, request, metadata, deadline, policy.idempotent
        )
        tag = current_tag()
        if tag is not None and tag.value and not any(k == TAG_HEADER for k, _ in metadata):
            # The caller's tag lane travels downstream with every call it makes.
            metadata = (*metadata, (TAG_HEADER, tag.value))
        attached = _attached().metadata
        if attached:
            # The caller's attachments, as they are now, go with every attempt of the call.
            metadata = (*metadata, *attached)
        self.outgoing = metadata
        self.tried: list[str] = []
        self.attempts: list[AttemptRecord] = []
        self._picker: Picker | None = None
        self.candidates = len(route.endpoints)
        self._admitted = 0  # bit 1: bulkhead held, 2: actives held, 4: breaker allowed
        # Breaker transitions and limit refusals of this call, for the observer; rare.
        self.events: list[tuple[str, dict[str, object]]] | None = None
        self.budget_refused = False
        if policy.budget is not None:
            policy.budget.deposit()

    def admit(self) -> Recovery | None:
        """Checks before any attempt. Returns a forced degrade, raises when refused."""
        policy = self.policy
        rule = policy.degrade
        if rule is not None and rule.mode is DegradeMode.FORCE:
            return Recovery(f"degrade rule force on {policy.method}", None, rule=rule)
        bulkhead = self.route.bulkhead
        if bulkhead is not None:
            if not bulkhead.try_acquire():
                raise self._refused(bulkhead.rejection)
            self._admitted |= 1
        actives = policy.actives
        if actives is not None:
            if not actives.try_acquire():
                self._release()
                raise self._refused(actives.rejection)
            self._admitted |= 2
        breaker = policy.breaker
        if breaker is not None:
            before = breaker.state
            allowed = breaker.allow()
            if breaker.state is not before:
                self._transition("breaker", before, breaker.state, breaker.reason)
            if not allowed:
                self._release()
                raise breaker.open_error()
            self._admitted |= 4
        return None

    def _refused(self, why: str) -> RpcError:
        self._note("rate_limited", {"dubbok.limit": why})
        return RpcError(
            self.policy.service,
            self.policy.method,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            why,
            hint="the consumer-side limit refused the call; raise the limit or slow down",
        )

    def _release(self) -> None:
        admitted = self._admitted
        if admitted & 1 and self.route.bulkhead is not None:
            self.route.bulkhead.release()
        if admitted & 2 and self.policy.actives is not None:
            self.policy.actives.release()
        self._admitted = admitted & 4

    def next(self) -> tuple[Endpoint, float | None]:
        """The endpoint and timeout of the next attempt; raises when none may be made."""
        timeout: float | None = None
        now = self._clock()
        if self.deadline is not None:
            timeout = self.deadline.at - now
            if timeout < MIN_ATTEMPT_SECONDS:
                raise self._deadline_error()
            policy = self.policy
            if policy.idempotent and not policy.cluster.fanout:
                left = policy.max_attempts - len(self.attempts)
                if left > 1:
                    # A timed-out idempotent attempt is retried: leave the later attempts time.
                    share = timeout / left
                    floor = MIN_SPLIT_SHARE * (self.deadline.at - self._started)
                    timeout = max(share, min(timeout, floor))
        picker = self._picker
        if picker is None:
            picker = self._picker = self.route.picker if self.route.plan is None else self._select()
        endpoint = picker.pick(self.invocation, self.tried)
        detector = self.route.detector
        if (
            endpoint is not None
            and detector is not None
            and not detector.allowed(endpoint.address, now)
        ):
            endpoint = self._pick_allowed(endpoint.address, detector, now)
        if endpoint is None:
            if self.attempts:
                raise self.error(grpc.StatusCode.UNAVAILABLE, "no untried endpoint left")
            raise self.route.no_provider(self.policy.method)
        self.tried.append(endpoint.address)
        return endpoint, timeout

    def _select(self) -> Picker:
        """Route the call (once): the picker of the endpoints its routing leaves."""
        route = self.route
        if route.plan is None:
            return route.picker
        if not route.endpoints:
            raise route.no_provider(self.policy.method)
        candidates = route.plan.select(self.invocation)
        self.candidates = len(candidates.endpoints)
        return candidates.picker

    def _pick_allowed(self, first: str, detector: OutlierDetector, now: float) -> Endpoint | None:
        """Re-pick past ejected endpoints (rare: only while some endpoint is ejected)."""
        skipped = [first]
        picker = self._picker
        assert picker is not None
        for _ in range(len(self.route.endpoints)):
            candidate = picker.pick(self.invocation, [*self.tried, *skipped])
            if candidate is None or detector.allowed(candidate.address, now):
                return candidate
            skipped.append(candidate.address)
        return None

    def failed(self, endpoint: Endpoint, code: grpc.StatusCode, details: str | None) -> bool:
        """Record a failed attempt; ``True`` when another attempt should be made."""
        text = details or ""
        self.attempts.append(AttemptRecord(endpoint.address, code, text))
        verdict = classify(code, text)
        now = self._clock()
        detector = self.route.detector
        if detector is not None:
            before = detector.state(endpoint.address)
            detector.record(endpoint.address, verdict, now)
            after = detector.state(endpoint.address)
            if after is not before:
                self._transition("endpoint", before, after, text, endpoint.address)
        if len(self.attempts) >= self.policy.max_attempts:
            return False
        if not self.policy.cluster.retry(verdict, self.policy.idempotent):
            return False
        if self.deadline is not None and now >= self.deadline.at:
            return False
        if serving_retry.get():
            # Our caller is itself retrying: retrying here too would multiply the load.
            return False
        return self.may_spend()

    def may_spend(self) -> bool:
        """Take a retry/hedge token from the budget (no budget: always)."""
        budget = self.policy.budget
        if budget is None or budget.try_withdraw():
            return True
        self.budget_refused = True
        return False

    def metadata(self, metadata: Metadata) -> Metadata:
        """What to send with the next attempt: retries say so (``x-dubbok-attempt``)."""
        if len(self.tried) <= 1:
            return metadata
        return (*metadata, (ATTEMPT_HEADER, str(len(self.tried))))

    def succeeded(self, endpoint: Endpoint) -> None:
        detector = self.route.detector
        if detector is not None:
            detector.record(endpoint.address, Verdict.OK, self._clock())

    def finish(self, error: BaseException | None) -> None:
        """The call is over: tell the method breaker, hand back limit permits."""
        admitted = self._admitted
        if admitted & 3:
            self._release()
        breaker = self.policy.breaker
        if admitted & 4 and breaker is not None:
            self._admitted = 0
            before = breaker.state
            breaker.record(_verdict_of(error), self._clock() - self._started)
            if breaker.state is not before:
                self._transition("breaker", before, breaker.state, breaker.reason)

    def _transition(
        self, level: str, old: object, new: object, reason: str, address: str = ""
    ) -> None:
        name = {"open": "opened", "half-open": "half_opened", "closed": "closed"}.get(
            getattr(new, "value", ""), "changed"
        )
        attributes: dict[str, object] = {"dubbok.breaker.reason": reason}
        if address:
            attributes["server.address"] = address
            event = "endpoint_ejected" if name == "opened" else f"endpoint_{name}"
        else:
            event = f"breaker_{name}"
        self._note(event, attributes)

    def _note(self, event: str, attributes: dict[str, object]) -> None:
        """An event for the observer, told when the call concludes (rare: no list before)."""
        if self.events is None:
            self.events = []
        self.events.append((event, attributes))

    def recover(self, error: BaseException) -> Recovery | None:
        """A fail-mode degrade rule or a fallback for this error, if it warrants one.

        Business errors are answers, not failures: they are never degraded.
        """
        if not counts_as_failure(_verdict_of(error)):
            return None
        policy = self.policy
        if policy.cluster.swallow and policy.response is not None:
            log.warning(
                "%s/%s failed (%s); %s returns the default response",
                policy.service,
                policy.method,
                error,
                policy.cluster.name,
            )
            return Recovery(
                f"{policy.cluster.name} on {policy.method}: {_brief(error)}",
                error,
                default=policy.response,
                requeue=policy.cluster.requeue,
            )
        rule = policy.degrade
        if rule is not None and rule.mode is DegradeMode.FAIL:
            return Recovery(
                f"degrade rule fail on {policy.method}: {_brief(error)}", error, rule=rule
            )
        if policy.fallback is not None:
            return Recovery(
                f"fallback on {policy.method}: {_brief(error)}", error, function=policy.fallback
            )
        return None

    # -- the driver's side: one attempt, then the whole call ------------------------------

    def start_attempt(
        self,
        endpoint: Endpoint,
        metadata: Metadata | None,
        obs: CallObservation | None,
        *,
        retry_header: bool = True,
    ) -> tuple[Metadata | None, float]:
        """What to send with the attempt ``next`` just chose, and when it started.

        Retries (and hedges) say so in ``x-dubbok-attempt`` unless ``retry_header`` is off
        (forking and broadcast send parallel firsts, not retries); the observer adds its
        trace context; a load-tracking balancer hears of the start.
        """
        md = metadata if len(self.tried) == 1 or not retry_header else self.metadata(metadata or ())
        if obs is not None:
            number = len(self.tried)
            if number == 1:
                self.announce_route(obs)
            elif not self.policy.cluster.fanout:
                # a retry goes to an endpoint not tried yet: the call fails over to it
                obs.event(
                    "failover",
                    {
                        "dubbok.attempt": number,
                        "server.address": endpoint.host,
                        "server.port": endpoint.port,
                        "dubbok.failed_endpoint": self.tried[-2],
                    },
                )
            md = obs.attempt(endpoint, number, md or ())
        balancer = self.route.balancer
        if balancer.tracks_load:
            balancer.started(endpoint)
        return md, self._clock()

    def announce_route(self, obs: CallObservation) -> None:
        """A ``routed`` event when the call's own routing (condition rules, tag lanes, a
        function router) narrowed its candidates; before the first attempt. Runs the call's
        routing steps a second time (observed calls only) to name what decided."""
        plan = self.route.plan
        if plan is None or self.candidates >= plan.routable:
            return
        try:
            decisions = plan.decisions(self.invocation)
        except Exception:  # a user's router failing the second time must not fail the call
            log.debug("naming the routing of %s failed", self.policy.method, exc_info=True)
            decisions = ()
        obs.event(
            "routed",
            {
                "dubbok.route.routers": tuple(name for name, _ in decisions),
                "dubbok.route.rule": "; ".join(
                    f"{name}: {why}" if why else name for name, why in decisions
                ),
                "dubbok.route.candidates": self.candidates,
                "dubbok.route.endpoints": plan.routable,
            },
        )

    def attempt_failed(
        self,
        endpoint: Endpoint,
        exc: BaseException,
        started: float,
        obs: CallObservation | None,
    ) -> bool:
        """Record a failed attempt everywhere it counts; ``True`` to make another."""
        code, details = attempt_status(exc)
        balancer = self.route.balancer
        if balancer.tracks_load:
            balancer.finished(endpoint, self._clock() - started, classify(code, details))
        if obs is not None:
            obs.attempt_done(code, details or "", endpoint)
        retry = self.failed(endpoint, code, details)
        if retry and obs is not None:
            obs.event(
                "retry",
                {
                    "dubbok.attempt": len(self.attempts) + 1,
                    "dubbok.failed_endpoint": endpoint.address,
                    "rpc.grpc.status_code": code.value[0],
                },
            )
        return retry

    def attempt_succeeded(
        self, endpoint: Endpoint, started: float, obs: CallObservation | None
    ) -> None:
        """Record a successful attempt: ejection state, balancer, latency estimate, observer."""
        now = self._clock()
        latency = now - started
        route = self.route
        if route.detector is not None:
            route.detector.record(endpoint.address, Verdict.OK, now)
        balancer = route.balancer
        if balancer.tracks_load:
            balancer.finished(endpoint, latency, Verdict.OK)
        if self.policy.latency is not None:
            self.policy.latency.record(latency)
        if obs is not None:
            obs.attempt_done(grpc.StatusCode.OK, "", endpoint)

    def conclude(
        self,
        error: BaseException | None,
        obs: CallObservation | None,
        refresh: Callable[[], None] | None = None,
    ) -> Recovery | None:
        """End the call (breaker, permits, observer) once its attempts are over.

        ``error`` is what the attempts raised, or ``None`` for success. Returns how to
        answer instead — a fail-mode mock rule or a fallback — or ``None``: then the driver
        returns its result, or re-raises ``error``. ``refresh`` asks discovery to look again
        when every known endpoint failed.
        """
        self.finish(error)
        if obs is not None and self.events:
            for name, attributes in self.events:
                obs.event(name, attributes)
        if error is None:
            if obs is not None:
                obs.done(grpc.StatusCode.OK, "")
            return None
        if not isinstance(error, DubbokError):  # cancelled or interrupted
            if obs is not None:
                obs.done(grpc.StatusCode.CANCELLED, type(error).__name__)
            return None
        if obs is not None and isinstance(error, CircuitOpenError):
            obs.event("circuit_open", {"dubbok.breaker.reason": error.details})
        if refresh is not None and self.all_failing():
            refresh()
        recovery = self.recover(error)
        if recovery is None and obs is not None:
            obs.done(error.code, error.message)
        return recovery

    def all_failing(self) -> bool:
        """Did every known endpoint fail to connect? Then discovery should look again soon."""
        if not self.candidates or len(self.attempts) < self.candidates:
            return False
        return all(
            classify(a.code, a.details) in (Verdict.NOT_SENT, Verdict.UNAVAILABLE)
            for a in self.attempts
        )

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
        if self.budget_refused:
            hint = (hint + "; " if hint else "") + (
                "no retry was made: the retry budget of the service is spent"
            )
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


def _verdict_of(error: BaseException | None) -> Verdict:
    if error is None:
        return Verdict.OK
    if isinstance(error, CircuitOpenError):
        return Verdict.NOT_SENT
    if isinstance(error, NoProviderError):
        return Verdict.UNAVAILABLE
    if isinstance(error, RpcError):
        return classify(error.code, error.details)
    if isinstance(error, DubbokError):
        return classify(error.code, error.message)
    return Verdict.SERVER_ERROR


def _brief(error: BaseException) -> str:
    if isinstance(error, CircuitOpenError):
        return f"{error.code.name} (circuit open)"
    if isinstance(error, RpcError):
        return f"{error.code.name}"
    return type(error).__name__


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
