"""A cheap running estimate of a method's latency quantile (for hedging's ``p95`` delay)."""

from __future__ import annotations

__all__ = ["LatencyTracker"]


class LatencyTracker:
    """Keeps the last ``size`` latencies and re-computes the quantile every ``every`` samples.

    ``record`` is a list store and a counter bump — no lock: under concurrency a sample may
    overwrite another, which a running estimate tolerates.
    """

    __slots__ = ("_count", "_every", "_quantile", "_samples", "_size", "value")

    def __init__(self, quantile: float = 0.95, size: int = 256, every: int = 32) -> None:
        self._quantile = quantile
        self._size = size
        self._every = every
        self._samples: list[float] = []
        self._count = 0
        self.value: float | None = None

    def record(self, latency: float) -> None:
        count = self._count
        self._count = count + 1
        if len(self._samples) < self._size:
            self._samples.append(latency)
        else:
            self._samples[count % self._size] = latency
        if count % self._every == self._every - 1 or (self.value is None and count >= 9):
            ordered = sorted(self._samples)
            self.value = ordered[min(len(ordered) - 1, int(self._quantile * len(ordered)))]
