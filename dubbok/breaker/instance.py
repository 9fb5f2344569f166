"""Outlier ejection: the per-endpoint breaker of one service (Envoy's outlier detection).

How a driver uses it, on each attempt after the balancer picked an endpoint::

    if not detector.allowed(endpoint.address, now):   # cheap; no lock for a healthy endpoint
        ...pick another endpoint...
    ...make the attempt, outside any lock...
    detector.record(endpoint.address, verdict, time.monotonic())

and, once per directory snapshot, ``detector.retain(addresses)`` so endpoints that left are
forgotten and the ejection cap is computed over the right number of endpoints. The
breaker-ejected router drops :meth:`OutlierDetector.ejected` endpoints from the candidates;
an endpoint whose ejection time is over is not in that set and takes one probe call.

Lifecycle of an endpoint::

    closed ──N consecutive counted failures──▶ ejected (open) for base × ejections
      ▲                                               │ time is up
      └────────── probe succeeds ◀── half-open ◀──────┘
                                     │ probe fails: ejected again, for longer
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..outcome import Verdict, counts_as_failure
from .circuit import Circuit
from .events import BreakerListener, BreakerState, Transition, announce
from .policy import InstanceBreakerPolicy

__all__ = ["OutlierDetector"]

logger = logging.getLogger("dubbok.breaker")

_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_HALF_OPEN = BreakerState.HALF_OPEN


@dataclass(slots=True, eq=False)
class _Endpoint:
    """Mutable per-address state, changed only under the detector's lock."""

    circuit: Circuit
    ejections: int = 0  # the multiplier of the ejection time, before decay
    ejected_until: float = 0.0
    healthy_since: float = 0.0
    probe_at: float | None = None  # when the half-open probe was let through
    refusal_logged: bool = False
    reason: str = ""


class OutlierDetector:
    """Per-endpoint breakers of one service, keyed by ``host:port``.

    Thread-safety: :meth:`allowed`, :meth:`record` and :meth:`ejected` are called
    concurrently from any number of threads and asyncio tasks; :meth:`retain` from the
    discovery thread. A healthy endpoint costs a dict lookup and an attribute read and takes
    no lock; state changes take one private :class:`threading.Lock` for microseconds, never
    across I/O or a listener call.

    Time is passed in (``now``, monotonic seconds) rather than read, so the caller reads the
    clock once per attempt and tests pass any value.

    Only verdicts for which :func:`dubbok.outcome.counts_as_failure` is true are failures; any
    other verdict (``OK``, ``BUSINESS``) ends an endpoint's failure streak and closes a
    half-open endpoint, since the provider answered.
    """

    def __init__(
        self,
        service: str,
        policy: InstanceBreakerPolicy | None = None,
        *,
        listeners: Iterable[BreakerListener] = (),
    ) -> None:
        self.service = service
        self._policy = policy if policy is not None else InstanceBreakerPolicy()
        self._listeners = tuple(listeners)
        self._lock = threading.Lock()
        self._endpoints: dict[str, _Endpoint] = {}
        self._members: frozenset[str] = frozenset()
        self._refused = 0
        # ejected() is asked on every call; it is recomputed only after a change or when
        # the earliest ejection ends.
        self._ejected: frozenset[str] = frozenset()
        self._ejected_valid_until = math.inf

    # -- hot path ---------------------------------------------------------------------------

    def allowed(self, address: str, now: float) -> bool:
        """May an attempt go to ``address`` now? False while it is ejected, and in half-open
        for everyone but the one probe (a probe that never reports back is replaced after
        ``base_ejection_time``)."""
        endpoint = self._endpoints.get(address)
        if endpoint is None:
            return True
        state = endpoint.circuit.state
        if state is _CLOSED:
            return True
        if state is _OPEN and now < endpoint.ejected_until:
            return False
        with self._lock:
            granted = self._admit(address, endpoint, now)
            transitions = self._take_transitions(address, endpoint)
        if transitions:
            announce(self._listeners, transitions)
        return granted

    def record(self, address: str, verdict: Verdict, now: float) -> None:
        """Report how an attempt to ``address`` ended."""
        failure = counts_as_failure(verdict)
        endpoint = self._endpoints.get(address)
        if endpoint is None:
            if not failure:
                return  # an endpoint with no failure needs no state
        elif not failure and endpoint.circuit.state is _CLOSED and endpoint.circuit.failures == 0:
            return  # the common case: a healthy endpoint stays healthy
        elif endpoint.circuit.state is _OPEN:
            return  # an attempt that started before the ejection
        with self._lock:
            endpoint = self._endpoints.get(address)
            if endpoint is None:
                if self._members and address not in self._members:
                    return  # a late attempt to an endpoint that has left the directory
                endpoint = self._endpoints[address] = self._new_endpoint(address, now)
            state = endpoint.circuit.state
            if state is _CLOSED:
                self._record_closed(address, endpoint, verdict, failure, now)
            elif state is _HALF_OPEN:
                self._record_probe(endpoint, verdict, failure, now)
            transitions = self._take_transitions(address, endpoint)
        if transitions:
            announce(self._listeners, transitions)

    def ejected(self, now: float) -> frozenset[str]:
        """Addresses whose ejection time has not run out at ``now`` (for the router)."""
        if now < self._ejected_valid_until:
            return self._ejected
        with self._lock:
            until = [
                (address, endpoint.ejected_until)
                for address, endpoint in self._endpoints.items()
                if endpoint.circuit.state is _OPEN and now < endpoint.ejected_until
            ]
            self._ejected = frozenset(address for address, _ in until)
            self._ejected_valid_until = min((t for _, t in until), default=math.inf)
            return self._ejected

    # -- directory and control --------------------------------------------------------------

    def retain(self, addresses: Iterable[str]) -> None:
        """The service's endpoints are now ``addresses``: forget the state of any other, and
        size the ejection cap on these. Called by the directory on each new snapshot."""
        members = frozenset(addresses)
        transitions: list[Transition] = []
        with self._lock:
            self._members = members
            for address in [a for a in self._endpoints if a not in members]:
                endpoint = self._endpoints.pop(address)
                if endpoint.circuit.state is not _CLOSED:
                    name = self._name(address)
                    transitions.append(
                        (name, endpoint.circuit.state, _CLOSED, "left the service's endpoints")
                    )
            self._invalidate()
        announce(self._listeners, transitions)

    def reconfigure(self, policy: InstanceBreakerPolicy) -> None:
        """Apply a new policy; current ejections keep their end time."""
        with self._lock:
            self._policy = policy
            for endpoint in self._endpoints.values():
                endpoint.circuit.configure(
                    fail_max=policy.consecutive_failures, success_threshold=1
                )

    # -- inspection -------------------------------------------------------------------------

    @property
    def policy(self) -> InstanceBreakerPolicy:
        return self._policy

    @property
    def refused_ejections(self) -> int:
        """How many times an endpoint met the failure threshold but was not ejected because
        ``max_ejection_percent`` of the service was already ejected."""
        return self._refused

    def state(self, address: str) -> BreakerState:
        endpoint = self._endpoints.get(address)
        return _CLOSED if endpoint is None else endpoint.circuit.state

    def explain(self, address: str, now: float) -> str:
        """Why ``address`` gets no calls right now, for logs and error messages."""
        with self._lock:
            endpoint = self._endpoints.get(address)
            if endpoint is None or endpoint.circuit.state is _CLOSED:
                return f"{address} is not ejected"
            if endpoint.circuit.state is _HALF_OPEN:
                return f"{address} is half-open, waiting for its probe call; {endpoint.reason}"
            wait = max(0.0, endpoint.ejected_until - now)
            return f"{address} is ejected for {wait:.1f} s more: {endpoint.reason}"

    # -- under the lock ---------------------------------------------------------------------

    def _new_endpoint(self, address: str, now: float) -> _Endpoint:
        circuit = Circuit(
            self._name(address), fail_max=self._policy.consecutive_failures, success_threshold=1
        )
        return _Endpoint(circuit, healthy_since=now)

    def _admit(self, address: str, endpoint: _Endpoint, now: float) -> bool:
        state = endpoint.circuit.state
        if state is _CLOSED:
            return True
        if state is _OPEN:
            if now < endpoint.ejected_until:
                return False
            endpoint.probe_at = None
            endpoint.reason = f"ejection time is up after {endpoint.reason}"
            endpoint.circuit.half_open()
            self._invalidate()
        if (
            endpoint.probe_at is not None
            and now - endpoint.probe_at < self._policy.base_ejection_time
        ):
            return False
        endpoint.probe_at = now
        return True

    def _record_closed(
        self, address: str, endpoint: _Endpoint, verdict: Verdict, failure: bool, now: float
    ) -> None:
        if not failure:
            endpoint.circuit.success()
            endpoint.refusal_logged = False
            return
        if not endpoint.circuit.failure():
            return
        reason = f"{endpoint.circuit.failures} consecutive failures (last: {verdict.name})"
        if self._may_eject():
            self._eject(endpoint, now, reason)
            return
        # Over the cap: stay closed with the streak kept, so the next failure tries again
        # once another endpoint has come back.
        self._refused += 1
        if not endpoint.refusal_logged:
            endpoint.refusal_logged = True
            logger.warning(
                "%s: not ejecting %s after %s: %g%% of the service's endpoints are ejected "
                "already (max_ejection_percent)",
                self.service,
                address,
                reason,
                self._policy.max_ejection_percent,
            )

    def _record_probe(
        self, endpoint: _Endpoint, verdict: Verdict, failure: bool, now: float
    ) -> None:
        if failure:
            # Still counted as ejected, so the cap does not apply.
            self._eject(endpoint, now, f"its half-open probe failed with {verdict.name}")
        else:
            endpoint.reason = "its half-open probe succeeded"
            endpoint.probe_at = None
            endpoint.healthy_since = now
            endpoint.refusal_logged = False
            endpoint.circuit.close()
            self._invalidate()

    def _may_eject(self) -> bool:
        total = len(self._members.union(self._endpoints))
        ejected = sum(1 for e in self._endpoints.values() if e.circuit.state is not _CLOSED)
        return (ejected + 1) * 100 <= self._policy.max_ejection_percent * total

    def _eject(self, endpoint: _Endpoint, now: float, reason: str) -> None:
        policy = self._policy
        if endpoint.circuit.state is _CLOSED:
            # Decay: one ejection forgiven per base_ejection_time spent healthy.
            healthy = max(0.0, now - endpoint.healthy_since)
            endpoint.ejections = max(
                0, endpoint.ejections - int(healthy // policy.base_ejection_time)
            )
        # Cap the multiplier too, so a long-flapping endpoint recovers from it in bounded time.
        most = math.ceil(policy.max_ejection_time / policy.base_ejection_time)
        endpoint.ejections = min(endpoint.ejections + 1, most)
        duration = min(policy.base_ejection_time * endpoint.ejections, policy.max_ejection_time)
        endpoint.ejected_until = now + duration
        endpoint.probe_at = None
        endpoint.reason = f"{reason}; ejection #{endpoint.ejections} for {duration:g} s"
        endpoint.circuit.open()
        self._invalidate()

    def _invalidate(self) -> None:
        self._ejected_valid_until = -math.inf

    def _name(self, address: str) -> str:
        return f"{self.service}@{address}"

    def _take_transitions(self, address: str, endpoint: _Endpoint) -> Sequence[Transition]:
        if not endpoint.circuit.changes:
            return ()
        name = self._name(address)
        return [(name, old, new, endpoint.reason) for old, new in endpoint.circuit.take_changes()]
