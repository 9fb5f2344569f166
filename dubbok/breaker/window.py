"""A sliding time window of call counts, split into buckets (Sentinel's ``LeapArray``).

The window covers the current bucket and the ``buckets - 1`` before it, each ``length /
buckets`` seconds long. Running totals are kept as buckets enter and leave, so
:meth:`SlidingWindow.add` and :meth:`SlidingWindow.counts` cost O(1) amortised, with fixed
memory. It keeps no clock: the caller passes ``now`` (any monotonic seconds).

Not thread-safe: :class:`~dubbok.breaker.method.MethodBreaker` updates it under its lock.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigurationError

__all__ = ["SlidingWindow", "WindowCounts"]

_NEVER = -(2**62)


@dataclass(frozen=True, slots=True)
class WindowCounts:
    """Totals over the window: calls recorded, how many failed, how many were slow."""

    calls: int = 0
    failures: int = 0
    slow: int = 0

    @property
    def error_ratio(self) -> float:
        return self.failures / self.calls if self.calls else 0.0

    @property
    def slow_ratio(self) -> float:
        return self.slow / self.calls if self.calls else 0.0


class SlidingWindow:
    __slots__ = (
        "_calls",
        "_epochs",
        "_failures",
        "_head",
        "_slow",
        "buckets",
        "calls",
        "failures",
        "length",
        "slow",
        "width",
    )

    def __init__(self, length: float, buckets: int) -> None:
        if not length > 0 or buckets < 1:
            raise ConfigurationError(
                f"a sliding window needs a positive length and at least one bucket, "
                f"got length={length!r}, buckets={buckets!r}"
            )
        self.length = float(length)
        self.buckets = buckets
        self.width = self.length / buckets
        self._epochs = [_NEVER] * buckets  # the bucket number each slot holds
        self._calls = [0] * buckets
        self._failures = [0] * buckets
        self._slow = [0] * buckets
        self._head = _NEVER  # the newest bucket number seen
        # Totals over the live slots, as of the last advance().
        self.calls = self.failures = self.slow = 0

    def add(self, now: float, failure: bool = False, slow: bool = False) -> None:
        epoch = self.advance(now)
        slot = epoch % self.buckets
        if self._epochs[slot] != epoch:
            if epoch <= self._head - self.buckets:
                return  # older than the window (a late report): nothing to add it to
            self._epochs[slot] = epoch  # only reached for a never-used or expired slot
        self._calls[slot] += 1
        self.calls += 1
        if failure:
            self._failures[slot] += 1
            self.failures += 1
        if slow:
            self._slow[slot] += 1
            self.slow += 1

    def counts(self, now: float) -> WindowCounts:
        self.advance(now)
        return WindowCounts(self.calls, self.failures, self.slow)

    def advance(self, now: float) -> int:
        """Move the window to ``now``, dropping buckets that left it; the bucket number of
        ``now``. Afterwards :attr:`calls`, :attr:`failures` and :attr:`slow` are the totals."""
        epoch = int(now // self.width)
        head = self._head
        if epoch <= head:
            return epoch
        self._head = epoch
        # Each bucket number in (head, epoch] takes over a slot; whatever that slot held is
        # now older than the window. At most one lap of the ring needs visiting.
        for new in range(max(head + 1, epoch - self.buckets + 1), epoch + 1):
            slot = new % self.buckets
            if self._epochs[slot] != _NEVER:
                self.calls -= self._calls[slot]
                self.failures -= self._failures[slot]
                self.slow -= self._slow[slot]
            self._epochs[slot] = _NEVER
            self._calls[slot] = self._failures[slot] = self._slow[slot] = 0
        return epoch

    def clear(self) -> None:
        for slot in range(self.buckets):
            self._epochs[slot] = _NEVER
            self._calls[slot] = self._failures[slot] = self._slow[slot] = 0
        self.calls = self.failures = self.slow = 0
