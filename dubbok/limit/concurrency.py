"""A fixed cap on calls in progress: provider ``max_concurrency`` (Dubbo's ``executes``),
consumer ``actives`` per method, and a consumer's bulkhead per dependency.

It never waits: :meth:`ConcurrencyLimiter.try_acquire` answers at once, so the same object
serves threads and asyncio tasks (a refused call fails fast rather than queueing, which is
what a bulkhead is for).
"""

from __future__ import annotations

import threading

from ..breaker.policy import check_number

__all__ = ["ConcurrencyLimiter"]


class ConcurrencyLimiter:
    """At most ``limit`` holders at once.

    ``name`` and ``kind`` make the rejection message: ``ConcurrencyLimiter("SayHello", 64)``
    refuses with ``"SayHello: max_concurrency 64 reached"``; a consumer bulkhead would be
    ``ConcurrencyLimiter("helloworld.Greeter", 32, kind="bulkhead")``.

    Thread-safety: any thread or task may call :meth:`try_acquire` and :meth:`release`; both
    hold a private lock for a counter update only.
    """

    __slots__ = ("_active", "_lock", "_rejected", "kind", "limit", "name")

    def __init__(self, name: str, limit: int, *, kind: str = "max_concurrency") -> None:
        check_number(name or kind, kind, limit, integer=True, minimum=1)
        self.name = name
        self.kind = kind
        self.limit = limit
        self._active = 0
        self._rejected = 0
        self._lock = threading.Lock()

    @property
    def active(self) -> int:
        """Holders right now."""
        return self._active

    @property
    def rejected(self) -> int:
        """Refusals since creation (for metrics)."""
        return self._rejected

    @property
    def rejection(self) -> str:
        """The message for a refused call, naming the limit."""
        return f"{self.name}: {self.kind} {self.limit} reached"

    def try_acquire(self) -> bool:
        """Take a place if one is free; true if taken. Never blocks."""
        with self._lock:
            if self._active >= self.limit:
                self._rejected += 1
                return False
            self._active += 1
            return True

    def release(self) -> None:
        """Give back a place taken by :meth:`try_acquire`."""
        with self._lock:
            if self._active <= 0:
                raise ValueError(f"{self.name}: {self.kind} released more often than acquired")
            self._active -= 1
