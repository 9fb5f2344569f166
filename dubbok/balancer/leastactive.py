"""``leastactive`` — the endpoint with the fewest calls in flight from this process.

Dubbo semantics: the fewest in-flight calls wins; among endpoints tied for fewest, a
weighted random draw decides, so under light load (everyone at 0) it behaves like
``random``. Counts are kept per address for the balancer's lifetime (see
:mod:`dubbok.balancer.load`), updated by ``started``/``finished``.

Cost: Dubbo scans every endpoint on every pick, O(n). dubbok does that only for small sets
(``scan_limit``, default 8: a bounded, sub-microsecond scan, with Dubbo's exact answer). For
larger sets it draws ``choices`` endpoints by weight (default 2) and takes the least busy —
Envoy's ``LEAST_REQUEST``: O(choices x log n). Sampling two instead of scanning all gives
up little (the "power of two choices" result: the most loaded endpoint's excess drops
exponentially with the second choice), and keeps the pick cheap at 1,000 endpoints.

Warm-up weights shape the draws and the tie-break, not the counts: among equally busy
endpoints, a warming one is chosen less often.

With ``exclude`` (a failover retry) the same applies to the endpoints not excluded: an exact
scan of small sets, weighted draws that skip excluded endpoints on large ones.
"""

from __future__ import annotations

import bisect
import math
import random
import time
from collections.abc import Callable, Collection, Sequence

from ..endpoint import Endpoint
from ..invocation import Invocation
from ..outcome import Verdict
from . import Picker
from .load import Load, LoadBook
from .options import DEFAULT_WARMUP, CommonOptions, integer_option, reject_unknown
from .weight import EMPTY_PICKER, WeightTable, live_endpoints, warming

__all__ = ["LeastActiveBalancer", "LeastActivePicker"]

_OWN = ("choices", "scan_limit")


class LeastActivePicker:
    """Picks the least busy endpoint of one table; reads counts from a shared :class:`LoadBook`."""

    __slots__ = (
        "_addresses",
        "_cumulative",
        "_draws",
        "_endpoints",
        "_loads",
        "_n",
        "_rand",
        "_scan",
        "_table",
        "_total",
    )

    def __init__(
        self,
        table: WeightTable,
        book: LoadBook,
        rand: Callable[[], float],
        choices: int,
        scan_limit: int,
    ) -> None:
        self._table = table
        self._endpoints = table.endpoints
        self._addresses = table.addresses
        self._cumulative = table.cumulative
        self._total = table.total
        self._n = table.n
        self._loads: dict[str, Load] = book.loads
        self._rand = rand
        self._draws = range(choices)
        self._scan = table.n <= scan_limit

    def pick(self, invocation: Invocation, exclude: Collection[str] = ()) -> Endpoint | None:
        if exclude:
            return self._retry(exclude)
        if self._scan:
            return self._least(range(self._n))
        # The least busy of a few weighted draws. A later draw must be strictly less busy to
        # win, and draws are weighted, so ties still split by weight. (Inlined: this is the
        # per-call path for large sets.)
        loads = self._loads
        addresses = self._addresses
        rand = self._rand
        cumulative = self._cumulative
        n = self._n
        total = self._total
        best = 0
        fewest = -1
        for _ in self._draws:
            if cumulative is None:
                i = int(rand() * n)
            else:
                i = bisect.bisect_right(cumulative, rand() * total)
            entry = loads.get(addresses[i])
            active = 0 if entry is None else len(entry.active)
            if fewest < 0 or active < fewest:
                best, fewest = i, active
        return self._endpoints[best]

    def _retry(self, exclude: Collection[str]) -> Endpoint | None:
        addresses = self._addresses
        if self._scan:
            return self._least([i for i in range(self._n) if addresses[i] not in exclude])
        loads = self._loads
        best = -1
        fewest = -1
        for _ in self._draws:
            i = self._table.draw(self._rand, exclude)
            if i < 0:
                return None
            entry = loads.get(addresses[i])
            active = 0 if entry is None else len(entry.active)
            if fewest < 0 or active < fewest:
                best, fewest = i, active
        return self._endpoints[best]

    def _least(self, indexes: Sequence[int]) -> Endpoint | None:
        """Dubbo's exact rule over ``indexes``: fewest in flight, weighted random among ties."""
        loads = self._loads
        addresses = self._addresses
        fewest = -1
        ties: list[int] = []
        for i in indexes:
            entry = loads.get(addresses[i])
            active = 0 if entry is None else len(entry.active)
            if fewest < 0 or active < fewest:
                fewest = active
                ties = [i]
            elif active == fewest:
                ties.append(i)
        if not ties:
            return None
        if len(ties) == 1:
            return self._endpoints[ties[0]]
        weights = self._table.weights
        x = self._rand() * math.fsum(weights[i] for i in ties)
        for i in ties:
            x -= weights[i]
            if x < 0.0:
                return self._endpoints[i]
        return self._endpoints[ties[-1]]


class LeastActiveBalancer:
    """Builds :class:`LeastActivePicker`\\ s and counts calls in flight per endpoint.

    Options: ``rng``, ``clock``, ``warmup``; ``choices`` (2..16, default 2) endpoints drawn per
    pick above ``scan_limit`` (0..1024, default 8) endpoints, at or below which every endpoint
    is compared.
    """

    tracks_load = True

    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        warmup: float = DEFAULT_WARMUP,
        choices: int = 2,
        scan_limit: int = 8,
        **unknown: object,
    ) -> None:
        reject_unknown("leastactive", unknown, _OWN)
        self._options = CommonOptions.check("leastactive", rng, clock, warmup)
        self._choices = integer_option("leastactive", "choices", choices, minimum=2, maximum=16)
        self._scan_limit = integer_option(
            "leastactive", "scan_limit", scan_limit, minimum=0, maximum=1024
        )
        self.book = LoadBook(typical=0.0)

    def build(self, endpoints: Sequence[Endpoint]) -> Picker:
        live = live_endpoints(endpoints)
        self.book.prune(live)
        if not live:
            return EMPTY_PICKER
        options = self._options
        rand = options.rng.random

        def make(now: float) -> LeastActivePicker:
            table = WeightTable.at(live, now, options.warmup)
            return LeastActivePicker(table, self.book, rand, self._choices, self._scan_limit)

        return warming(live, options, make)

    def started(self, endpoint: Endpoint) -> None:
        self.book.started(endpoint)

    def finished(self, endpoint: Endpoint, latency: float, verdict: Verdict) -> None:
        self.book.finished(endpoint)
