"""Admission limits that protect providers and consumers from overload.

Provider side, per method (the ``limits:`` rule section, :class:`LimitPolicy`):

* :class:`RateLimiter` — a QPS limit (token bucket with a burst allowance);
* :class:`ConcurrencyLimiter` — a fixed cap on calls in progress (``max_concurrency``,
  Dubbo's ``executes``);
* :class:`AdaptiveLimiter` — opt-in: a concurrency limit that grows while latency stays near
  the minimum round-trip time and shrinks when it rises (Netflix concurrency-limits'
  gradient);
* :class:`MethodGuard` — the three above for one method, checked in order of cost.

Consumer side the same :class:`ConcurrencyLimiter` serves as the per-method ``actives``
limit and as a bulkhead per dependency (``kind="actives"`` / ``kind="bulkhead"`` only change
the message).

Every limiter answers at once and never waits: a refused call fails fast with a message
naming the limit (``"SayHello: max_concurrency 64 reached"``). So the same objects serve the
threaded and the asyncio drivers; their locks guard a few arithmetic operations and are
never held across a call. Clocks are injected.

To extend: a new limiter needs a non-blocking acquire that returns something to release, a
``rejection`` message, and a place in :meth:`MethodGuard.enter`.
"""

from __future__ import annotations

from .adaptive import AdaptiveLimiter, Token
from .concurrency import ConcurrencyLimiter
from .guard import Admission, MethodGuard
from .policy import AdaptiveLimitPolicy, LimitPolicy, MethodLimits
from .rate import RateLimiter

__all__ = [
    "AdaptiveLimitPolicy",
    "AdaptiveLimiter",
    "Admission",
    "ConcurrencyLimiter",
    "LimitPolicy",
    "MethodGuard",
    "MethodLimits",
    "RateLimiter",
    "Token",
]
