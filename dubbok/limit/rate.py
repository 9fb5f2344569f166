"""A QPS limit as a token bucket with a burst allowance."""

from __future__ import annotations

import threading
import time

from ..breaker.policy import check_number
from ..invocation import Clock

__all__ = ["RateLimiter"]


class RateLimiter:
    """Admits ``qps`` calls per second on average, and at most ``burst`` at once.

    The bucket holds up to ``burst`` tokens (default: a tenth of a second's worth, at least
    1) and starts full; it refills continuously at ``qps`` tokens per second and each call
    takes one. Over any span of T seconds at most ``qps × T + burst`` calls pass, so the
    default burst keeps the rate within 10 % of ``qps`` over any whole second.

    Thread-safety: any thread or task may call :meth:`try_acquire`; it holds a private lock
    for a clock read and a few float operations. ``clock`` is any monotonic clock in seconds.
    """

    __slots__ = ("_clock", "_lock", "_rejected", "_stamp", "_tokens", "burst", "name", "qps")

    def __init__(
        self, name: str, qps: float, *, burst: float | None = None, clock: Clock = time.monotonic
    ) -> None:
        check_number(name or "rate", "qps", qps, above=True)
        if burst is not None:
            check_number(name or "rate", "burst", burst, minimum=1)
        self.name = name
        self.qps = float(qps)
        self.burst = float(burst) if burst is not None else max(1.0, self.qps / 10)
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._stamp = clock()
        self._rejected = 0

    @property
    def rejected(self) -> int:
        """Refusals since creation (for metrics)."""
        return self._rejected

    @property
    def rejection(self) -> str:
        """The message for a refused call, naming the limit."""
        return f"{self.name}: qps {self.qps:g} reached"

    def try_acquire(self) -> bool:
        """Take a token if one is there; true if taken. Never blocks."""
        with self._lock:
            now = self._clock()
            elapsed = now - self._stamp
            if elapsed > 0:
                self._tokens = min(self.burst, self._tokens + elapsed * self.qps)
                self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            self._rejected += 1
            return False
