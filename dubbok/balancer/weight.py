"""Weights as pickers see them: zero-weight draining, warm-up ramps, weighted draws.

Warm-up (Dubbo's ``warmup``): an endpoint that started ``uptime`` seconds ago, with
``uptime < warmup``, gets ``weight * max(uptime / warmup, 1%)``, so a fresh provider takes a
trickle of traffic at first and its full share after ``warmup`` seconds. ``started_at`` is a
UNIX time written by the provider, so the ramp is as good as the two hosts' clocks agree. An
endpoint with no ``started_at`` (``0``, e.g. found through DNS) is warm; one that claims to
start more than ``warmup`` seconds in the future has a wrong clock and is treated as warm
rather than starved.

Pickers are immutable, but warm-up weights move with time. A picker built while some endpoint
is warming is a :class:`WarmingPicker`: it rebuilds its inner picker at most every
``warmup / 50`` seconds (at least 0.25 s), on whichever calling thread first notices the
time has come, and stops checking the clock once every endpoint is warm. No directory
involvement, no background thread; the price while warming is one clock read per pick.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Collection, Sequence

from ..endpoint import Endpoint
from ..invocation import Invocation
from . import Picker
from .options import CommonOptions

__all__ = [
    "EMPTY_PICKER",
    "EmptyPicker",
    "WarmingPicker",
    "WeightTable",
    "live_endpoints",
    "warm_fraction",
    "warming",
]

MIN_WARM_FRACTION = 0.01
"""The share of its weight a just-started endpoint gets (Dubbo: 1 of 100)."""

REFRESH_STEPS = 50
MIN_REFRESH = 0.25

# Draws that may land on an excluded endpoint before the O(n) fallback: with one or two of n
# endpoints excluded (a failover retry), the first or second draw almost always succeeds.
REJECTION_TRIES = 8


class EmptyPicker:
    """The picker of an empty endpoint set: nothing to pick."""

    __slots__ = ()

    def pick(self, invocation: Invocation, exclude: Collection[str] = ()) -> Endpoint | None:
        return None


EMPTY_PICKER = EmptyPicker()


def live_endpoints(endpoints: Sequence[Endpoint]) -> tuple[Endpoint, ...]:
    """Drop weight-0 endpoints (drained by an operator); if every weight is 0, keep them all.

    Weight is relative, so an all-zero set means "no preference", not "no traffic" (as in
    Dubbo). Duplicated addresses keep their first record.
    """
    seen: set[str] = set()
    unique: list[Endpoint] = []
    for ep in endpoints:
        if ep.address not in seen:
            seen.add(ep.address)
            unique.append(ep)
    weighted = [ep for ep in unique if ep.weight > 0]
    return tuple(weighted or unique)


def warm_fraction(endpoint: Endpoint, now: float, warmup: float) -> float:
    """The share of its weight ``endpoint`` gets at ``now``: ``MIN_WARM_FRACTION``..1."""
    if warmup <= 0.0 or endpoint.started_at <= 0.0:
        return 1.0
    uptime = now - endpoint.started_at
    if uptime >= warmup or uptime < -warmup:
        return 1.0
    return max(uptime / warmup, MIN_WARM_FRACTION)


def warm_until(endpoints: Sequence[Endpoint], now: float, warmup: float) -> float | None:
    """When the last endpoint warming at ``now`` becomes warm; ``None`` if none is warming."""
    until: float | None = None
    for ep in endpoints:
        if warm_fraction(ep, now, warmup) < 1.0:
            done = ep.started_at + warmup
            until = done if until is None else max(until, done)
    return until


def effective_weights(endpoints: Sequence[Endpoint], now: float, warmup: float) -> list[float]:
    """Each endpoint's weight at ``now`` after warm-up; all 1.0 when every weight is 0."""
    if all(ep.weight == 0 for ep in endpoints):
        return [1.0] * len(endpoints)
    return [ep.weight * warm_fraction(ep, now, warmup) for ep in endpoints]


class WeightTable:
    """Endpoints with their weights, for O(log n) weighted draws (O(1) when all are equal).

    Immutable once built; shared by the pickers that draw by weight.
    """

    __slots__ = ("addresses", "cumulative", "endpoints", "n", "total", "weights")

    def __init__(self, endpoints: Sequence[Endpoint], weights: Sequence[float]) -> None:
        self.endpoints = tuple(endpoints)
        self.addresses = tuple(ep.address for ep in self.endpoints)
        self.weights = tuple(weights)
        self.n = len(self.endpoints)
        self.total = math.fsum(self.weights)
        self.cumulative: list[float] | None = None
        if self.n and any(w != self.weights[0] for w in self.weights):
            running = 0.0
            cumulative = []
            for w in self.weights:
                running += w
                cumulative.append(running)
            # A draw is ``u * total`` with u < 1; float rounding may still land on ``total``
            # itself. An infinite last bound keeps every draw inside the table.
            cumulative[-1] = math.inf
            self.cumulative = cumulative

    @classmethod
    def at(cls, endpoints: Sequence[Endpoint], now: float, warmup: float) -> WeightTable:
        return cls(endpoints, effective_weights(endpoints, now, warmup))

    def index(self, u: float) -> int:
        """The endpoint a uniform ``u`` in [0, 1) lands on, by weight."""
        if self.cumulative is None:
            return int(u * self.n)
        return bisect.bisect_right(self.cumulative, u * self.total)

    def draw(self, rand: Callable[[], float], exclude: Collection[str]) -> int:
        """A weighted draw among endpoints not in ``exclude``; -1 if every one is excluded.

        Rejection sampling keeps the weights exact among what is left and costs a draw or two
        in the usual failover case; when it keeps hitting excluded endpoints, an O(n) pass over
        the rest decides.
        """
        addresses = self.addresses
        for _ in range(REJECTION_TRIES):
            i = self.index(rand())
            if addresses[i] not in exclude:
                return i
        rest = [i for i in range(self.n) if addresses[i] not in exclude]
        if not rest:
            return -1
        weights = self.weights
        x = rand() * math.fsum(weights[i] for i in rest)
        for i in rest:
            x -= weights[i]
            if x < 0.0:
                return i
        return rest[-1]


class WarmingPicker:
    """Wraps a picker whose weights ramp with time, rebuilding it as the ramp moves.

    ``make(now)`` builds the inner picker for the weights at ``now``. Races are benign: two
    threads that notice the refresh time together both rebuild, and the last one stored wins;
    both built from the same weights give or take a few milliseconds.
    """

    __slots__ = ("_clock", "_inner", "_interval", "_make", "_next", "_until")

    def __init__(
        self,
        make: Callable[[float], Picker],
        clock: Callable[[], float],
        now: float,
        until: float,
        interval: float,
    ) -> None:
        self._make = make
        self._clock = clock
        self._interval = interval
        self._until = until
        self._inner = make(now)
        self._next: float | None = min(now + interval, until)

    @property
    def inner(self) -> Picker:
        """The picker for the current weights (for tests and diagnostics)."""
        return self._inner

    def pick(self, invocation: Invocation, exclude: Collection[str] = ()) -> Endpoint | None:
        due = self._next
        if due is not None:
            now = self._clock()
            if now >= due:
                self._refresh(now)
        return self._inner.pick(invocation, exclude)

    def _refresh(self, now: float) -> None:
        # Claim the refresh first, so other threads keep picking from the old inner picker
        # instead of all rebuilding at once.
        self._next = None if now >= self._until else min(now + self._interval, self._until)
        self._inner = self._make(now)


def warming(
    endpoints: Sequence[Endpoint],
    options: CommonOptions,
    make: Callable[[float], Picker],
) -> Picker:
    """``make(now)`` as is when nothing is warming, else wrapped in a :class:`WarmingPicker`."""
    now = options.clock()
    until = warm_until(endpoints, now, options.warmup)
    if until is None:
        return make(now)
    interval = max(options.warmup / REFRESH_STEPS, MIN_REFRESH)
    return WarmingPicker(make, options.clock, now, until, interval)
