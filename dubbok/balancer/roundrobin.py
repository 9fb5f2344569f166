"""``roundrobin`` — smooth weighted round robin, as nginx does it.

Weights 5, 1, 1 give ``a a b a c a a``, not ``a a a a a b c``: heavy endpoints are spread
through the cycle instead of taking bursts.

How it stays lock-free: the whole cycle (one period of nginx's algorithm, ``sum(weights) /
gcd(weights)`` picks long) is computed when the picker is built, and each pick indexes it with
``next(counter)``, which is atomic under the GIL: O(1), no lock, and concurrent callers never
see two picks of one slot. Each picker's counter starts at a random offset, so the many
consumers that rebuild on the same discovery event do not all start on the heaviest endpoint.

Long cycles are bounded: when the reduced weights sum past :data:`CYCLE_LIMIT` they are scaled
down to fit (weights then hold to about ``n / CYCLE_LIMIT`` relative error), and when exact
nginx order would cost more than :data:`EXACT_BUDGET` steps to compute the cycle is instead
interleaved by virtual time (each endpoint's ``k``-th slot at ``(k + ½) / weight``), which is
as smooth but may order ties differently from nginx.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Callable, Collection, Sequence

from ..endpoint import Endpoint
from ..invocation import Invocation
from ..outcome import Verdict
from . import Picker
from .options import DEFAULT_WARMUP, CommonOptions, reject_unknown
from .weight import EMPTY_PICKER, effective_weights, live_endpoints, warming

__all__ = ["CYCLE_LIMIT", "EXACT_BUDGET", "RoundRobinBalancer", "RoundRobinPicker", "smooth_cycle"]

CYCLE_LIMIT = 1 << 14
"""Longest precomputed cycle (a tuple of references: 128 KiB at the limit)."""

EXACT_BUDGET = 1 << 16
"""Most (cycle length x distinct weights) steps spent computing exact nginx order."""

# Slots of the cycle walked forward when the next ones are excluded, before falling back to
# trying each endpoint once.
_WALK = 16

# Warm-up weights are fractional; integer weights for the cycle keep two decimal places of them.
_RAMP_SCALE = 100


def smooth_cycle(weights: Sequence[int], limit: int = CYCLE_LIMIT) -> list[int]:
    """One period of smooth weighted round robin over positive integer ``weights``.

    Returns indexes into ``weights``. Exact nginx order within :data:`EXACT_BUDGET`.
    """
    n = len(weights)
    if n == 0:
        return []
    divisor = math.gcd(*weights)
    reduced = [w // divisor for w in weights]
    total = sum(reduced)
    limit = max(limit, n)
    if total > limit:
        scale = limit / total
        reduced = [max(1, round(w * scale)) for w in reduced]
        divisor = math.gcd(*reduced)
        reduced = [w // divisor for w in reduced]
        total = sum(reduced)
    if all(w == reduced[0] for w in reduced):
        return list(range(n))
    classes: dict[int, list[int]] = {}
    for i, w in enumerate(reduced):
        classes.setdefault(w, []).append(i)
    if total * len(classes) <= EXACT_BUDGET:
        return _nginx_order(classes, total)
    return _interleaved(reduced)


def _nginx_order(classes: dict[int, list[int]], total: int) -> list[int]:
    """nginx's smooth WRR, one step per pick, over weight classes instead of endpoints.

    nginx adds each weight to its endpoint's ``current``, picks the largest ``current`` (first
    in list order on ties) and subtracts the total from it. After ``t`` steps an endpoint
    picked ``k`` times has ``current = t*w - total*k``; endpoints of equal weight therefore take
    turns in list order, so only the next member of each weight class can win a step. That
    makes a step cost O(distinct weights) instead of O(n), with the same result.
    """
    class_weights = list(classes)
    members = [classes[w] for w in class_weights]
    sizes = [len(m) for m in members]
    picks = [0] * len(class_weights)
    order: list[int] = []
    span = range(len(class_weights))
    for t in range(1, total + 1):
        best = -1
        best_value = 0
        best_pos = 0
        for c in span:
            done = picks[c]
            value = t * class_weights[c] - total * (done // sizes[c])
            pos = members[c][done % sizes[c]]
            if best < 0 or value > best_value or (value == best_value and pos < best_pos):
                best, best_value, best_pos = c, value, pos
        picks[best] += 1
        order.append(best_pos)
    return order


def _interleaved(weights: Sequence[int]) -> list[int]:
    """Each endpoint's ``k``-th slot at virtual time ``(k + 1/2) / weight``, in time order."""
    slots = sorted(((2 * k + 1) / (2 * w), i) for i, w in enumerate(weights) for k in range(w))
    return [i for _, i in slots]


class RoundRobinPicker:
    """Indexes a precomputed smooth cycle with an atomic counter: O(1) per pick."""

    __slots__ = ("_counter", "_cycle", "_endpoints", "_length")

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        weights: Sequence[int],
        counter: itertools.count[int],
    ) -> None:
        self._endpoints = tuple(endpoints)
        self._cycle = tuple(self._endpoints[i] for i in smooth_cycle(weights))
        self._length = len(self._cycle)
        # itertools.count's __next__ is one C call, atomic under the GIL: no lock needed, and
        # two concurrent picks never read the same slot.
        self._counter = counter

    @property
    def cycle(self) -> tuple[Endpoint, ...]:
        """One period of the pick order."""
        return self._cycle

    def pick(self, invocation: Invocation, exclude: Collection[str] = ()) -> Endpoint | None:
        position = next(self._counter) % self._length
        if not exclude:
            return self._cycle[position]
        cycle = self._cycle
        length = self._length
        for step in range(min(length, _WALK)):
            ep = cycle[(position + step) % length]
            if ep.address not in exclude:
                return ep
        # The next slots all belong to excluded endpoints (heavy ones, usually): try every
        # endpoint once, from a rotating start, ignoring weights for this one retry.
        endpoints = self._endpoints
        n = len(endpoints)
        for step in range(n):
            ep = endpoints[(position + step) % n]
            if ep.address not in exclude:
                return ep
        return None


def integer_weights(endpoints: Sequence[Endpoint], now: float, warmup: float) -> list[int]:
    """Warm-up adjusted weights as positive integers (the cycle reduces them by their gcd)."""
    return [max(1, round(w * _RAMP_SCALE)) for w in effective_weights(endpoints, now, warmup)]


class RoundRobinBalancer:
    """Builds :class:`RoundRobinPicker`\\ s. Options: ``rng``, ``clock``, ``warmup``."""

    tracks_load = False

    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        warmup: float = DEFAULT_WARMUP,
        **unknown: object,
    ) -> None:
        reject_unknown("roundrobin", unknown)
        self._options = CommonOptions.check("roundrobin", rng, clock, warmup)

    def build(self, endpoints: Sequence[Endpoint]) -> Picker:
        live = live_endpoints(endpoints)
        if not live:
            return EMPTY_PICKER
        options = self._options
        # One counter per picker (shared across its warm-up rebuilds): pickers of different
        # routed subsets must not share one, or each would see a strided, possibly biased,
        # walk through its cycle.
        counter = itertools.count(int(options.rng.random() * CYCLE_LIMIT))

        def make(now: float) -> RoundRobinPicker:
            weights = integer_weights(live, now, options.warmup)
            return RoundRobinPicker(live, weights, counter)

        return warming(live, options, make)

    def started(self, endpoint: Endpoint) -> None:
        pass

    def finished(self, endpoint: Endpoint, latency: float, verdict: Verdict) -> None:
        pass
