"""``random`` — weighted random, Dubbo's default.

Each pick draws one endpoint with probability proportional to its (warm-up adjusted) weight:
a bisect over cumulative weights, O(log n), or a single multiplication when all weights are
equal, O(1). Stateless between calls, so it needs no bookkeeping and spreads load well when
there are many consumers; a single consumer sees more variance than with ``roundrobin``.
"""

from __future__ import annotations

import bisect
import random
import time
from collections.abc import Callable, Collection, Sequence

from ..endpoint import Endpoint
from ..invocation import Invocation
from ..outcome import Verdict
from . import Picker
from .options import DEFAULT_WARMUP, CommonOptions, reject_unknown
from .weight import EMPTY_PICKER, WeightTable, live_endpoints, warming

__all__ = ["RandomBalancer", "RandomPicker"]


class RandomPicker:
    """Weighted random over one endpoint table. ``rand`` must be thread-safe
    (``random.Random.random`` is: one C call under the GIL)."""

    __slots__ = ("_cumulative", "_endpoints", "_n", "_rand", "_table", "_total")

    def __init__(self, table: WeightTable, rand: Callable[[], float]) -> None:
        self._table = table
        self._endpoints = table.endpoints
        self._cumulative = table.cumulative
        self._total = table.total
        self._n = table.n
        self._rand = rand

    def pick(self, invocation: Invocation, exclude: Collection[str] = ()) -> Endpoint | None:
        if not exclude:
            cumulative = self._cumulative
            if cumulative is None:
                return self._endpoints[int(self._rand() * self._n)]
            return self._endpoints[bisect.bisect_right(cumulative, self._rand() * self._total)]
        i = self._table.draw(self._rand, exclude)
        return None if i < 0 else self._endpoints[i]


class RandomBalancer:
    """Builds :class:`RandomPicker`\\ s. Options: ``rng``, ``clock``, ``warmup``."""

    tracks_load = False

    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        warmup: float = DEFAULT_WARMUP,
        **unknown: object,
    ) -> None:
        reject_unknown("random", unknown)
        self._options = CommonOptions.check("random", rng, clock, warmup)

    def build(self, endpoints: Sequence[Endpoint]) -> Picker:
        live = live_endpoints(endpoints)
        if not live:
            return EMPTY_PICKER
        rand = self._options.rng.random
        warmup = self._options.warmup
        return warming(
            live, self._options, lambda now: RandomPicker(WeightTable.at(live, now, warmup), rand)
        )

    def started(self, endpoint: Endpoint) -> None:
        pass

    def finished(self, endpoint: Endpoint, latency: float, verdict: Verdict) -> None:
        pass
