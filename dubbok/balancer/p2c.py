"""``p2c`` — power of two choices over peak-EWMA latency x calls in flight.

As Finagle's and Linkerd's balancers: each pick draws two endpoints (by weight) and takes the
one with the lower cost, ``latency estimate x (in flight + 1)``. The latency estimate is a
*peak* EWMA with decay time ``tau`` (default 10 s): a sample above the estimate replaces it at
once (slowness is believed immediately), a lower one is blended in with weight
``1 - exp(-Δt / tau)``, and while no sample arrives the estimate decays toward zero, so an
endpoint avoided for being slow is probed again after roughly ``tau x ln(slow / fast)``.

Unmeasured endpoints cost the *typical* latency — an EWMA of every sample this balancer has
seen — so a new endpoint looks average: it beats the slower half and gets measured, without
attracting a stampede. A counted failure (see :func:`dubbok.outcome.counts_as_failure`) is
recorded as at least 5x the typical latency, so an endpoint that fails fast does not look
fast. Business errors are ordinary replies.

O(log n) per pick (O(1) with equal weights): two weighted draws, two dictionary reads, two
``exp``. Warm-up weights shape the draws. Updates race benignly (see
:mod:`dubbok.balancer.load`).
"""

from __future__ import annotations

import bisect
import math
import random
import time
from collections.abc import Callable, Collection, Sequence

from ..endpoint import Endpoint
from ..invocation import Invocation
from ..outcome import Verdict, counts_as_failure
from . import Picker
from .load import Load, LoadBook
from .options import DEFAULT_WARMUP, CommonOptions, number_option, reject_unknown
from .weight import EMPTY_PICKER, WeightTable, live_endpoints, warming

__all__ = ["P2CBalancer", "P2CPicker"]

DEFAULT_TAU = 10.0
FAILURE_PENALTY = 5.0
# Weight of one sample in the typical latency; a count-based EWMA (~20 samples) is enough for
# a value that only ranks unmeasured endpoints.
_TYPICAL_ALPHA = 0.05
# The typical latency before any sample: every endpoint is unmeasured then, so only its
# ratio to nothing matters — any positive value lets in-flight counts decide.
_INITIAL_TYPICAL = 0.001
_MIN_TYPICAL = 1e-6


class P2CPicker:
    """Best of two weighted draws by cost; reads costs from a shared :class:`LoadBook`."""

    __slots__ = (
        "_addresses",
        "_book",
        "_clock",
        "_cumulative",
        "_endpoints",
        "_loads",
        "_n",
        "_rand",
        "_table",
        "_tau",
        "_total",
    )

    def __init__(
        self,
        table: WeightTable,
        book: LoadBook,
        rand: Callable[[], float],
        clock: Callable[[], float],
        tau: float,
    ) -> None:
        self._table = table
        self._endpoints = table.endpoints
        self._addresses = table.addresses
        self._cumulative = table.cumulative
        self._total = table.total
        self._n = table.n
        self._book = book
        self._loads: dict[str, Load] = book.loads
        self._rand = rand
        self._clock = clock
        self._tau = tau

    def pick(self, invocation: Invocation, exclude: Collection[str] = ()) -> Endpoint | None:
        n = self._n
        rand = self._rand
        if exclude:
            first = self._table.draw(rand, exclude)
            if first < 0:
                return None
            second = self._table.draw(rand, exclude)
            if first == second:
                return self._endpoints[first]
        elif n == 1:
            return self._endpoints[0]
        else:
            cumulative = self._cumulative
            if cumulative is None:
                first = int(rand() * n)
                second = int(rand() * n)
            else:
                total = self._total
                first = bisect.bisect_right(cumulative, rand() * total)
                second = bisect.bisect_right(cumulative, rand() * total)
            if second == first:
                # Two draws of one endpoint compare nothing; take a uniform other one. This
                # leans slightly away from weights only for very heavy endpoints.
                second = (first + 1 + int(rand() * (n - 1))) % n
        loads = self._loads
        a = loads.get(self._addresses[first])
        b = loads.get(self._addresses[second])
        if a is None and b is None:
            return self._endpoints[first]
        typical = self._book.typical
        now = self._clock()
        if cost(b, typical, now, self._tau) < cost(a, typical, now, self._tau):
            first = second
        return self._endpoints[first]


def cost(entry: Load | None, typical: float, now: float, tau: float) -> float:
    """What picking ``entry``'s endpoint costs: its latency estimate at ``now`` (decayed since
    its last sample; ``typical`` if unmeasured) x (calls in flight + 1)."""
    if entry is None:
        return typical
    if not entry.measured:
        return typical * (len(entry.active) + 1)
    elapsed = now - entry.stamp
    latency = entry.cost if elapsed <= 0.0 else entry.cost * math.exp(-elapsed / tau)
    return latency * (len(entry.active) + 1)


class P2CBalancer:
    """Builds :class:`P2CPicker`\\ s and records each attempt's latency and in-flight count.

    Options: ``rng``, ``clock`` (also times the latency decay), ``warmup``, ``tau`` (seconds,
    > 0, default 10).
    """

    tracks_load = True

    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        warmup: float = DEFAULT_WARMUP,
        tau: float = DEFAULT_TAU,
        **unknown: object,
    ) -> None:
        reject_unknown("p2c", unknown, ("tau",))
        self._options = CommonOptions.check("p2c", rng, clock, warmup)
        self._tau = number_option("p2c", "tau", tau, minimum=0.0, inclusive=False)
        self.book = LoadBook(typical=_INITIAL_TYPICAL)
        self._typical_measured = False

    def build(self, endpoints: Sequence[Endpoint]) -> Picker:
        live = live_endpoints(endpoints)
        self.book.prune(live)
        if not live:
            return EMPTY_PICKER
        options = self._options
        rand = options.rng.random

        def make(now: float) -> P2CPicker:
            table = WeightTable.at(live, now, options.warmup)
            return P2CPicker(table, self.book, rand, options.clock, self._tau)

        return warming(live, options, make)

    def started(self, endpoint: Endpoint) -> None:
        self.book.started(endpoint)

    def finished(self, endpoint: Endpoint, latency: float, verdict: Verdict) -> None:
        book = self.book
        entry = book.finished(endpoint)
        sample = latency if latency > 0.0 else 0.0
        if counts_as_failure(verdict):
            sample = max(sample, FAILURE_PENALTY * book.typical)
        else:
            self._learn_typical(sample)
        now = self._options.clock()
        if not entry.measured or sample >= entry.cost:
            entry.cost = sample
        else:
            elapsed = now - entry.stamp
            w = math.exp(-elapsed / self._tau) if elapsed > 0.0 else 1.0
            entry.cost = entry.cost * w + sample * (1.0 - w)
        entry.stamp = now
        entry.measured = True

    def cost(self, endpoint: Endpoint) -> float:
        """The cost a pick would see for ``endpoint`` now (for diagnostics and tests)."""
        book = self.book
        return cost(
            book.loads.get(endpoint.address), book.typical, self._options.clock(), self._tau
        )

    def _learn_typical(self, sample: float) -> None:
        # Kept above zero: a zero typical would make every unmeasured endpoint free,
        # whatever its calls in flight.
        sample = max(sample, _MIN_TYPICAL)
        if not self._typical_measured:
            self._typical_measured = True
            self.book.typical = sample
        else:
            self.book.typical += (sample - self.book.typical) * _TYPICAL_ALPHA
