"""The service/method breaker: opens on a failure streak, an error ratio or a slow-call ratio.

How a driver uses it, around each logical call (before balancing, as Kitex does)::

    if not breaker.allow():            # cheap; no lock in the closed state
        raise breaker.open_error()     # CircuitOpenError, no request sent
    started = time.monotonic()
    ...make the call, outside any breaker lock...
    breaker.record(classify(code, details), time.monotonic() - started)

Every ``allow()`` that returns true must be followed by one ``record()``, also when the call
raised, or a half-open breaker waits ``reset_timeout`` before it hands out another probe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence

import grpc

from ..errors import CircuitOpenError
from ..invocation import Clock
from ..outcome import Verdict, counts_as_failure
from .circuit import Circuit
from .events import BreakerListener, BreakerState, Transition, announce
from .policy import MethodBreakerPolicy
from .window import SlidingWindow, WindowCounts

__all__ = ["MethodBreaker"]

_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_HALF_OPEN = BreakerState.HALF_OPEN
_NO_TRANSITIONS: tuple[Transition, ...] = ()


class MethodBreaker:
    """One breaker for one ``service/method`` (or ``service/*`` when a driver keeps one per
    service).

    Thread-safety: :meth:`allow` and :meth:`record` are called concurrently from any number of
    threads and asyncio tasks. In the closed state ``allow`` reads one attribute and takes no
    lock; ``record`` and the open/half-open paths of ``allow`` take a private
    :class:`threading.Lock` for a few microseconds (a bucket update and a comparison), never
    across I/O or a listener call, so using it from an event loop does not stall the loop.

    Outcomes: a verdict for which :func:`dubbok.outcome.counts_as_failure` is false — ``OK``
    and ``BUSINESS`` — is a call that did not fail: it counts in the window's call total,
    ends a failure streak and is a successful probe. Only counted verdicts are failures.
    A call slower than ``slow_call_threshold`` is slow whatever its verdict.

    ``clock`` is any monotonic clock in seconds; tests pass a fake one.
    """

    def __init__(
        self,
        service: str,
        method: str,
        policy: MethodBreakerPolicy | None = None,
        *,
        clock: Clock = time.monotonic,
        listeners: Iterable[BreakerListener] = (),
    ) -> None:
        self.service = service
        self.method = method
        self.name = f"{service}/{method}"
        self._policy = policy if policy is not None else MethodBreakerPolicy()
        self._clock = clock
        self._listeners = tuple(listeners)
        self._lock = threading.Lock()
        self._circuit = Circuit(
            self.name,
            fail_max=self._policy.consecutive_failures,
            success_threshold=self._policy.half_open_max_calls,
        )
        self._window = SlidingWindow(self._policy.window, self._policy.buckets)
        self._open_until = 0.0
        self._trip_reason = ""  # why it last opened from closed
        self._reason = ""  # why it last changed state
        self._probes = 0  # probe calls let through since it half-opened
        self._last_probe_at = 0.0

    # -- inspection -------------------------------------------------------------------------

    @property
    def policy(self) -> MethodBreakerPolicy:
        return self._policy

    @property
    def state(self) -> BreakerState:
        """The state as of the last ``allow``/``record``; an open breaker whose timeout has
        passed reports open until the next ``allow`` half-opens it."""
        return self._circuit.state

    @property
    def reason(self) -> str:
        """Why the breaker last changed state (empty before the first change)."""
        return self._reason

    def counts(self) -> WindowCounts:
        """Calls, failures and slow calls in the current window (for metrics and tests)."""
        with self._lock:
            return self._window.counts(self._clock())

    def explain(self) -> str:
        """Why calls are refused right now, for error messages and logs, e.g.
        ``"error ratio 0.62 ≥ 0.5 over the last 10 s (25 calls); half-open in 7.3 s"``."""
        with self._lock:
            state = self._circuit.state
            if state is _OPEN:
                wait = max(0.0, self._open_until - self._clock())
                return f"{self._reason}; half-open in {wait:.1f} s"
            if state is _HALF_OPEN:
                limit = self._policy.half_open_max_calls
                return (
                    f"half-open: {self._probes} of {limit} probe calls let through, "
                    f"{self._circuit.successes} succeeded so far; it opened on "
                    f"{self._trip_reason}"
                )
            return "closed"

    def open_error(self) -> CircuitOpenError:
        """The error a driver raises when :meth:`allow` refused a call."""
        return CircuitOpenError(
            self.service,
            self.method,
            grpc.StatusCode.UNAVAILABLE,
            f"circuit breaker open: {self.explain()}",
            hint=(
                "No request was sent. Calls resume once probe calls succeed; check the "
                "provider's health and logs, or tune breaker.method in the governance rules"
            ),
        )

    # -- hot path ---------------------------------------------------------------------------

    def allow(self) -> bool:
        """May a call be made now? Cheap; never blocks on another call.

        In the half-open state each true answer is one of at most ``half_open_max_calls``
        probes; a probe that never reports back frees its place after ``reset_timeout``.
        """
        state = self._circuit.state
        if state is _CLOSED:
            return True
        if state is _OPEN and self._clock() < self._open_until:
            return False
        with self._lock:
            granted = self._admit(self._clock())
            transitions = self._take_transitions()
        if transitions:
            announce(self._listeners, transitions)
        return granted

    def record(self, verdict: Verdict, latency: float) -> None:
        """Report how an allowed call ended: its verdict and how long it took (seconds)."""
        circuit = self._circuit
        if circuit.state is _OPEN:
            return  # a call that started before the breaker opened: nothing to learn
        failure = counts_as_failure(verdict)
        slow = latency > self._policy.slow_call_threshold
        with self._lock:
            now = self._clock()
            state = circuit.state
            if state is _CLOSED:
                self._record_closed(now, verdict, failure, slow)
            elif state is _HALF_OPEN:
                self._record_probe(now, verdict, failure, slow)
            if not circuit.changes:
                return  # the common case: no transition to announce
            transitions = self._take_transitions()
        announce(self._listeners, transitions)

    # -- control ----------------------------------------------------------------------------

    def reset(self, reason: str = "reset by hand") -> None:
        """Close the breaker now and forget the window (operators, tests)."""
        with self._lock:
            self._window.clear()
            if self._circuit.state is not _CLOSED:
                self._reason = reason
                self._circuit.close()
            else:
                self._circuit.success()
            transitions = self._take_transitions()
        announce(self._listeners, transitions)

    def reconfigure(self, policy: MethodBreakerPolicy) -> None:
        """Apply a new policy, keeping the state; the window restarts if its shape changed."""
        with self._lock:
            old, self._policy = self._policy, policy
            if (old.window, old.buckets) != (policy.window, policy.buckets):
                self._window = SlidingWindow(policy.window, policy.buckets)
            self._circuit.configure(
                fail_max=policy.consecutive_failures,
                success_threshold=policy.half_open_max_calls,
            )

    # -- under the lock ---------------------------------------------------------------------

    def _admit(self, now: float) -> bool:
        state = self._circuit.state
        if state is _CLOSED:
            return True
        policy = self._policy
        if state is _OPEN:
            if now < self._open_until:
                return False
            self._probes = 0
            self._reason = (
                f"{policy.reset_timeout:g} s passed since it opened; letting up to "
                f"{policy.half_open_max_calls} probe calls through"
            )
            self._circuit.half_open()
        if self._probes >= policy.half_open_max_calls:
            if now - self._last_probe_at < policy.reset_timeout:
                return False
            # The outstanding probes never reported back (cancelled, or a driver bug):
            # give their places to new probes rather than stay half-open for ever.
            self._probes = self._circuit.successes
        self._probes += 1
        self._last_probe_at = now
        return True

    def _record_closed(self, now: float, verdict: Verdict, failure: bool, slow: bool) -> None:
        policy = self._policy
        window = self._window
        window.add(now, failure, slow)
        if not failure:
            if self._circuit.failures:
                self._circuit.success()
            if not window.failures and not window.slow:
                return  # nothing in the window could trip it
        elif self._circuit.failure():
            self._trip(now, f"{self._circuit.failures} consecutive failures (last: {verdict.name})")
            return
        # Ratios are checked after successes too: a success can be the call that reaches
        # min_calls over a window already full of failures.
        calls = window.calls  # totals as of the add() above
        if calls < policy.min_calls:
            return
        error_ratio = window.failures / calls
        slow_ratio = window.slow / calls
        if policy.error_ratio is not None and error_ratio >= policy.error_ratio:
            self._trip(
                now,
                f"error ratio {error_ratio:.2f} ≥ {policy.error_ratio:g} "
                f"over the last {policy.window:g} s ({calls} calls)",
            )
        elif policy.slow_call_ratio is not None and slow_ratio >= policy.slow_call_ratio:
            self._trip(
                now,
                f"slow-call ratio {slow_ratio:.2f} ≥ {policy.slow_call_ratio:g} "
                f"(calls over {policy.slow_call_threshold:g} s) "
                f"over the last {policy.window:g} s ({calls} calls)",
            )

    def _record_probe(self, now: float, verdict: Verdict, failure: bool, slow: bool) -> None:
        policy = self._policy
        if failure:
            self._reopen(now, f"a half-open probe failed with {verdict.name}")
        elif slow and policy.slow_call_ratio is not None:
            self._reopen(
                now, f"a half-open probe took longer than {policy.slow_call_threshold:g} s"
            )
        elif self._circuit.probe_succeeded():
            self._reason = f"{self._circuit.successes} half-open probe calls succeeded"
            self._window.clear()
            self._circuit.close()

    def _trip(self, now: float, reason: str) -> None:
        self._trip_reason = reason
        self._reopen(now, reason)

    def _reopen(self, now: float, reason: str) -> None:
        # Set the deadline before the state flips: allow() reads them without the lock.
        self._open_until = now + self._policy.reset_timeout
        if reason != self._trip_reason:
            reason = f"{reason} (it first opened on {self._trip_reason})"
        self._reason = reason
        self._circuit.open()

    def _take_transitions(self) -> Sequence[Transition]:
        if not self._circuit.changes:
            return _NO_TRANSITIONS
        return [(self.name, old, new, self._reason) for old, new in self._circuit.take_changes()]
