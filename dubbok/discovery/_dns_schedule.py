"""When the next DNS lookup is due: record TTL clamped to a floor and ceiling, backoff on
failure, and rate-limited refresh requests.

Pure logic with an injected clock; :class:`~dubbok.discovery.dns.DnsDiscovery`'s watcher
thread asks :meth:`ResolveSchedule.delay` how long to wait and reports each lookup's outcome.
Not thread-safe by itself: the watcher guards it with its lock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from ..errors import ConfigurationError

__all__ = ["Clock", "ResolveSchedule"]

Clock = Callable[[], float]


class ResolveSchedule:
    """Decides when to look up again.

    Delays count from the end of a lookup (a TTL runs from when the answer arrived, and a
    backoff is real idle time even when the failed lookup itself took a while).

    * After a good answer: after the answer's TTL, clamped to ``[min_ttl, max_ttl]``. The
      floor keeps a TTL of 0 from turning into a busy loop; the ceiling bounds how stale the
      set can get when a resolver hands out long TTLs.
    * After a failed lookup: ``min_ttl``, doubling per consecutive failure, up to ``max_ttl``.
    * On :meth:`refresh`: now, but never sooner than ``min_ttl`` after the previous lookup
      started, so a storm of refresh calls costs at most one lookup per ``min_ttl``.
    """

    __slots__ = ("_clock", "_failures", "_last_started", "_next_at", "max_ttl", "min_ttl")

    def __init__(self, min_ttl: float, max_ttl: float, clock: Clock = time.monotonic) -> None:
        if not (math.isfinite(min_ttl) and min_ttl > 0):
            raise ConfigurationError(f"min_ttl must be a positive number of seconds: {min_ttl}")
        if not (math.isfinite(max_ttl) and max_ttl >= min_ttl):
            raise ConfigurationError(
                f"max_ttl ({max_ttl}) must be a number of seconds >= min_ttl ({min_ttl})"
            )
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self._clock = clock
        self._failures = 0
        self._last_started: float | None = None
        self._next_at = clock()  # the first lookup is due at once

    @property
    def failures(self) -> int:
        """Consecutive failed lookups since the last good one."""
        return self._failures

    @property
    def next_at(self) -> float:
        """Clock time at which the next lookup is due."""
        return self._next_at

    def delay(self) -> float:
        """Seconds until the next lookup is due (0 when due)."""
        return max(0.0, self._next_at - self._clock())

    def clamp(self, ttl: float) -> float:
        """``ttl`` bounded by the floor and the ceiling."""
        return min(self.max_ttl, max(self.min_ttl, ttl))

    def started(self) -> None:
        """A lookup starts now; until an outcome is reported, nothing else is due."""
        now = self._clock()
        self._last_started = now
        self._next_at = math.inf

    def succeeded(self, ttl: float) -> float:
        """The lookup gave a good answer with this TTL; return the delay until the next one."""
        self._failures = 0
        wait = self.clamp(ttl)
        self._next_at = self._clock() + wait
        return wait

    def failed(self) -> float:
        """The lookup failed; return the backoff delay until the next one."""
        self._failures += 1
        # Cap the exponent: a long outage must not overflow the float power.
        exponent = min(self._failures - 1, 64)
        wait = min(self.max_ttl, self.min_ttl * 2.0**exponent)
        self._next_at = self._clock() + wait
        return wait

    def refresh(self) -> bool:
        """Bring the next lookup forward to now, rate-limited by ``min_ttl``.

        Returns whether the schedule moved. A refresh during a lookup changes nothing: the
        lookup in flight is as fresh as the one asked for.
        """
        if self._next_at == math.inf:
            return False
        earliest = self._clock()
        if self._last_started is not None:
            earliest = max(earliest, self._last_started + self.min_ttl)
        if earliest < self._next_at:
            self._next_at = earliest
            return True
        return False
