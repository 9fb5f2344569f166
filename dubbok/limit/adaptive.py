"""An adaptive concurrency limit that follows latency (Netflix concurrency-limits' gradient).

The idea: while calls finish about as fast as the fastest recent call (the minimum round-trip
time, "no queueing"), more concurrency is harmless, so the limit grows by about √limit per
round; once latency rises, requests are queueing somewhere, so the limit shrinks in
proportion to ``min RTT / latency``. The equilibrium sits where the queue is about √limit.

How a provider uses it around a handler::

    token = limiter.acquire()
    if token is None:
        abort(RESOURCE_EXHAUSTED, limiter.rejection)
    started = time.monotonic()
    try:
        ...handle...
    finally:
        token.release(time.monotonic() - started, dropped=<timed out or shed>)
"""

from __future__ import annotations

import math
import threading
import time

from ..invocation import Clock
from .policy import AdaptiveLimitPolicy

__all__ = ["AdaptiveLimiter", "Token"]


class Token:
    """One admitted call; :meth:`release` it exactly once when the call ends."""

    __slots__ = ("_inflight", "_limiter", "_released")

    def __init__(self, limiter: AdaptiveLimiter, inflight: int) -> None:
        self._limiter = limiter
        self._inflight = inflight  # calls in progress when this one started, itself included
        self._released = False

    def release(self, latency: float, dropped: bool = False) -> None:
        """The call ended after ``latency`` seconds; ``dropped`` if it timed out or was shed
        (a sign of overload whatever the latency)."""
        if self._released:
            raise ValueError(f"{self._limiter.name}: adaptive limit token released twice")
        self._released = True
        self._limiter._finish(self._inflight, latency, dropped)


class AdaptiveLimiter:
    """A concurrency limit that adapts to latency; see the module docstring.

    Thread-safety: :meth:`acquire` and :meth:`Token.release` may be called from any thread
    or task; each holds a private lock for a few float operations. ``clock`` (monotonic
    seconds) only times the re-learning of the minimum RTT.
    """

    def __init__(
        self,
        name: str,
        policy: AdaptiveLimitPolicy | None = None,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self.name = name
        self.policy = policy if policy is not None else AdaptiveLimitPolicy()
        self._clock = clock
        self._lock = threading.Lock()
        self._limit = float(self.policy.initial_limit)
        self._inflight = 0
        self._rejected = 0
        self._min_rtt = math.inf  # in force
        self._next_min_rtt = math.inf  # being measured for the next period
        self._period_start = clock()

    @property
    def limit(self) -> int:
        """Calls admitted at once right now."""
        return int(self._limit)

    @property
    def inflight(self) -> int:
        return self._inflight

    @property
    def min_rtt(self) -> float:
        """The no-queueing latency estimate (``inf`` before the first sample)."""
        return self._min_rtt

    @property
    def rejected(self) -> int:
        return self._rejected

    @property
    def rejection(self) -> str:
        """The message for a refused call, naming the limit."""
        return f"{self.name}: adaptive concurrency limit {int(self._limit)} reached"

    def acquire(self) -> Token | None:
        """A token if fewer than :attr:`limit` calls are in progress, else ``None``."""
        with self._lock:
            if self._inflight >= int(self._limit):
                self._rejected += 1
                return None
            self._inflight += 1
            return Token(self, self._inflight)

    def _finish(self, inflight: int, latency: float, dropped: bool) -> None:
        policy = self.policy
        with self._lock:
            self._inflight -= 1
            if dropped:
                self._limit = max(float(policy.min_limit), self._limit * policy.backoff_ratio)
                return
            if not latency > 0:
                return  # a clock that did not move tells nothing
            now = self._clock()
            if now - self._period_start >= policy.min_rtt_window:
                # Re-learn: the last period's minimum replaces the old one, so a lasting
                # change in the method's cost stops counting as queueing.
                if math.isfinite(self._next_min_rtt):
                    self._min_rtt = self._next_min_rtt
                self._next_min_rtt = math.inf
                self._period_start = now
            self._next_min_rtt = min(self._next_min_rtt, latency)
            self._min_rtt = min(self._min_rtt, latency)
            if inflight * 2 < self._limit:
                return  # the caller is not using the limit: no evidence either way
            gradient = max(0.5, min(1.0, policy.tolerance * self._min_rtt / latency))
            target = self._limit * gradient + math.sqrt(self._limit)
            limit = self._limit * (1 - policy.smoothing) + target * policy.smoothing
            self._limit = max(float(policy.min_limit), min(float(policy.max_limit), limit))
