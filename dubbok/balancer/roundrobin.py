"""``roundrobin`` — each endpoint in turn."""

from __future__ import annotations

import itertools
from collections.abc import Collection, Sequence

from ..endpoint import Endpoint
from ..invocation import Invocation
from ..outcome import Verdict

__all__ = ["RoundRobinBalancer", "RoundRobinPicker"]


class RoundRobinPicker:
    __slots__ = ("_counter", "_endpoints", "_n")

    def __init__(self, endpoints: Sequence[Endpoint], counter: itertools.count[int]) -> None:
        self._endpoints = tuple(endpoints)
        self._n = len(self._endpoints)
        # itertools.count's __next__ is atomic under the GIL: no lock on the hot path.
        self._counter = counter

    def pick(self, invocation: Invocation, exclude: Collection[str] = ()) -> Endpoint | None:
        n = self._n
        if not n:
            return None
        start = next(self._counter)
        if not exclude:
            return self._endpoints[start % n]
        for i in range(n):
            ep = self._endpoints[(start + i) % n]
            if ep.address not in exclude:
                return ep
        return None


class RoundRobinBalancer:
    """Plain round robin; the counter survives endpoint-set changes."""

    tracks_load = False

    def __init__(self, **_: object) -> None:
        self._counter = itertools.count()

    def build(self, endpoints: Sequence[Endpoint]) -> RoundRobinPicker:
        return RoundRobinPicker([e for e in endpoints if e.weight > 0], self._counter)

    def started(self, endpoint: Endpoint) -> None:
        pass

    def finished(self, endpoint: Endpoint, latency: float, verdict: Verdict) -> None:
        pass
