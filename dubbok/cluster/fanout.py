"""Fan-out strategies as a pure plan: forking, broadcast and hedging.

The driver keeps several attempts in flight and reports each completion; the plan says what
to do next. No I/O, no threads, no clock reads of its own beyond the injected one::

    fan = FanOut(plan, policy)
    launch(fan.initial())                       # attempts to start now
    loop:
        wait for a completion, at most until fan.wake_at()
        on timeout:      launch(fan.on_timer())      # hedging: the next hedge
        on success:      action = fan.succeeded(endpoint, result)
        on failure:      action = fan.failed(endpoint, code, details)
        action is DONE:  cancel the rest; return fan.result
        action is FAIL:  cancel the rest; raise fan.error()
        action is WAIT:  launch(fan.pending())       # failures may free a new attempt
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

from ..endpoint import Endpoint
from ..errors import AttemptRecord, DubbokError, RpcError
from ..invocation import Metadata
from ..observe import CallObservation

if TYPE_CHECKING:
    from ..core import CallPlan
    from . import ClusterPolicy

__all__ = ["Action", "FanOut"]

# The span event (and counter) of each concurrent attempt after the first, by cluster kind.
_EVENTS = {"hedging": "hedge", "forking": "forking", "broadcast": "broadcast"}


class Action(enum.Enum):
    WAIT = "wait"
    DONE = "done"
    FAIL = "fail"


Launch = tuple[Endpoint, float | None]


class FanOut:
    """One fan-out call. Owned by one call; not thread-safe (the driver serializes)."""

    def __init__(self, plan: CallPlan, policy: ClusterPolicy) -> None:
        self.plan = plan
        self.policy = policy
        self.kind = policy.name
        self.in_flight: set[str] = set()
        self.result: Any = None
        self._has_result = False
        self._failed: list[AttemptRecord] = []
        self._pending: list[Launch] = []
        self._wake_at: float | None = None
        self._hedges_left = 0
        self._error: DubbokError | None = None

    # -- starting ----------------------------------------------------------------------

    def _launch(self) -> Launch | None:
        try:
            endpoint, timeout = self.plan.next()
        except DubbokError as exc:
            if self._error is None:
                self._error = exc
            return None
        self.in_flight.add(endpoint.address)
        return endpoint, timeout

    def initial(self) -> list[Launch]:
        """The attempts to start at once (raises if not even one can start)."""
        plan = self.plan
        first = self._launch()
        if first is None:
            assert self._error is not None
            raise self._error
        # Routing happened in the first pick: the candidate count is now the routed one.
        if self.kind == "broadcast":
            count = plan.candidates
        elif self.kind == "forking":
            count = min(getattr(self.policy, "forks", 2), plan.candidates)
        else:
            count = 1
        launches = [first]
        launches += [launch for launch in (self._launch() for _ in range(count - 1)) if launch]
        if not launches:
            assert self._error is not None
            raise self._error
        if self.kind == "hedging" and plan.policy.idempotent:
            self._hedges_left = getattr(self.policy, "max_hedges", 1)
            self._arm_timer()
        return launches

    def _hedge_delay(self) -> float:
        configured = getattr(self.policy, "hedge_delay", None)
        if configured is not None:
            return float(configured)
        tracker = self.plan.policy.latency
        observed = tracker.value if tracker is not None else None
        floor = float(getattr(self.policy, "min_delay", 0.005))
        return max(floor, observed) if observed is not None else max(floor, 0.05)

    def _arm_timer(self) -> None:
        if self._hedges_left > 0:
            self._wake_at = self.plan._clock() + self._hedge_delay()
        else:
            self._wake_at = None

    def wake_at(self) -> float | None:
        """When to call :meth:`on_timer` if nothing completes first (hedging only)."""
        return self._wake_at

    def on_timer(self) -> list[Launch]:
        """No answer within the hedge delay: send a hedge to another endpoint (if the budget
        allows)."""
        self._wake_at = None
        if self._hedges_left <= 0 or not self.plan.may_spend():
            return []
        self._hedges_left -= 1
        launch = self._launch()
        self._arm_timer()
        return [launch] if launch else []

    def pending(self) -> list[Launch]:
        out, self._pending = self._pending, []
        return out

    def start(
        self, endpoint: Endpoint, metadata: Metadata | None, obs: CallObservation | None
    ) -> tuple[Metadata | None, float]:
        """Metadata and start time of a launched attempt (only hedges say they retry)."""
        md, started = self.plan.start_attempt(
            endpoint, metadata, obs, retry_header=self.kind == "hedging"
        )
        if obs is not None and len(self.plan.tried) > 1:
            obs.event(
                _EVENTS[self.kind],
                {"dubbok.attempt": len(self.plan.tried), "server.address": endpoint.host},
            )
        return md, started

    # -- completions -------------------------------------------------------------------

    def succeeded(
        self, endpoint: Endpoint, result: Any, started: float, obs: CallObservation | None
    ) -> Action:
        self.in_flight.discard(endpoint.address)
        self.plan.attempt_succeeded(endpoint, started, obs)
        self.result = result
        self._has_result = True
        if self.kind == "broadcast":
            return Action.WAIT if self.in_flight else self._broadcast_end()
        if obs is not None and self.kind == "hedging" and len(self.plan.tried) > 1:
            obs.event(
                "hedge_won",
                {
                    "server.address": endpoint.host,
                    "dubbok.attempt": self.plan.tried.index(endpoint.address) + 1,
                },
            )
        return Action.DONE

    def failed(
        self, endpoint: Endpoint, exc: BaseException, started: float, obs: CallObservation | None
    ) -> Action:
        self.in_flight.discard(endpoint.address)
        retry = self.plan.attempt_failed(endpoint, exc, started, obs)
        self._failed.append(self.plan.attempts[-1])
        if self.kind == "broadcast":
            return Action.WAIT if self.in_flight else self._broadcast_end()
        if retry and self.kind == "hedging":
            # A failed attempt is replaced at once rather than waiting for the hedge timer.
            launch = self._launch()
            if launch is not None:
                self._pending.append(launch)
                return Action.WAIT
        if self.in_flight:
            return Action.WAIT
        if self._wake_at is not None and self._hedges_left > 0:
            self._wake_at = self.plan._clock()  # nothing in flight: hedge now
            return Action.WAIT
        return Action.FAIL

    def _broadcast_end(self) -> Action:
        return Action.FAIL if self._failed else Action.DONE

    def error(self) -> DubbokError:
        if self.kind == "broadcast" and self._failed:
            last = self._failed[-1]
            names = ", ".join(a.endpoint for a in self._failed)
            return RpcError(
                self.plan.policy.service,
                self.plan.policy.method,
                last.code,
                last.details,
                self.plan.attempts,
                hint=f"broadcast failed on {len(self._failed)} endpoint(s): {names}",
            )
        if not self.plan.attempts and self._error is not None:
            return self._error
        return self.plan.error()
