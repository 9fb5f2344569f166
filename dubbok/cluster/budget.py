"""A retry budget: retries and hedges stay a small share of the calls (gRPC's retry
throttling, Finagle's RetryBudget).

Each call deposits ``ratio`` tokens; each retry or hedge withdraws one. A floor of
``min_per_second`` tokens a second lets a quiet service still retry. The balance is capped, so
a long calm spell does not bank an unbounded burst. When the budget is empty, the cluster
strategy gives up instead of retrying — a sick dependency is not hammered by its callers.
"""

from __future__ import annotations

import threading
import time

from ..errors import ConfigurationError
from ..invocation import Clock

__all__ = ["RetryBudget"]


class RetryBudget:
    """Thread-safe; ``deposit`` and ``try_withdraw`` hold a private lock for a few float ops."""

    __slots__ = (
        "_balance",
        "_clock",
        "_last",
        "_lock",
        "cap",
        "min_per_second",
        "ratio",
        "refused",
    )

    def __init__(
        self,
        ratio: float = 0.1,
        min_per_second: float = 10.0,
        cap: float | None = None,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        if not 0 <= ratio <= 1:
            raise ConfigurationError(f"retry budget ratio must be in 0..1, got {ratio!r}")
        if min_per_second < 0:
            raise ConfigurationError(
                f"retry budget min_per_second must be >= 0, got {min_per_second!r}"
            )
        self.ratio = ratio
        self.min_per_second = min_per_second
        self.cap = cap if cap is not None else max(10.0, min_per_second * 10)
        self._clock = clock
        self._lock = threading.Lock()
        self._balance = self.cap
        self._last = clock()
        self.refused = 0

    def _refill(self, now: float) -> None:
        elapsed = now - self._last
        if elapsed > 0:
            self._balance = min(self.cap, self._balance + elapsed * self.min_per_second)
            self._last = now

    def deposit(self) -> None:
        """One original call was made. No lock: this runs on every call, and a deposit
        lost to a race only makes the budget a little stricter."""
        balance = self._balance + self.ratio
        self._balance = balance if balance < self.cap else self.cap

    def try_withdraw(self) -> bool:
        """May one retry or hedge be made? Takes a token if so."""
        with self._lock:
            self._refill(self._clock())
            if self._balance >= 1.0:
                self._balance -= 1.0
                return True
            self.refused += 1
            return False

    @property
    def balance(self) -> float:
        with self._lock:
            self._refill(self._clock())
            return self._balance
