"""Provider-side admission for one method: QPS, then max concurrency, then the adaptive limit.

The provider's limit interceptor keeps one :class:`MethodGuard` per method (rebuilt when the
rules change; calls in progress release into the guard that admitted them)::

    admission = guard.enter()
    if not admission:
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, admission.rejection)
    try:
        ...handle...
    finally:
        admission.release(latency, dropped=status in (DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED))
"""

from __future__ import annotations

import time

from ..invocation import Clock
from .adaptive import AdaptiveLimiter, Token
from .concurrency import ConcurrencyLimiter
from .policy import MethodLimits
from .rate import RateLimiter

__all__ = ["Admission", "MethodGuard"]


class Admission:
    """The answer of :meth:`MethodGuard.enter`: true if admitted, else ``rejection`` says
    which limit refused. Release an admitted one exactly once; releasing a refused one does
    nothing, so ``release`` can sit in a ``finally``."""

    __slots__ = ("_concurrency", "_released", "_token", "rejection")

    def __init__(
        self,
        rejection: str = "",
        concurrency: ConcurrencyLimiter | None = None,
        token: Token | None = None,
    ) -> None:
        self.rejection = rejection
        self._concurrency = concurrency
        self._token = token
        self._released = False

    def __bool__(self) -> bool:
        return not self.rejection

    def release(self, latency: float, dropped: bool = False) -> None:
        if self.rejection:
            return
        if self._released:
            raise ValueError("admission released twice")
        self._released = True
        if self._token is not None:
            self._token.release(latency, dropped)
        if self._concurrency is not None:
            self._concurrency.release()


class MethodGuard:
    """The limits of one method, checked in order of cost; thread- and task-safe."""

    __slots__ = ("adaptive", "concurrency", "limits", "method", "rate")

    def __init__(self, method: str, limits: MethodLimits, *, clock: Clock = time.monotonic) -> None:
        self.method = method
        self.limits = limits
        self.rate = (
            RateLimiter(method, limits.qps, burst=limits.effective_burst, clock=clock)
            if limits.qps is not None
            else None
        )
        self.concurrency = (
            ConcurrencyLimiter(method, limits.max_concurrency)
            if limits.max_concurrency is not None
            else None
        )
        self.adaptive = (
            AdaptiveLimiter(method, limits.adaptive, clock=clock)
            if limits.adaptive is not None
            else None
        )

    def enter(self) -> Admission:
        """Admit one call, or say which limit refused it. Never blocks."""
        if self.rate is not None and not self.rate.try_acquire():
            return Admission(self.rate.rejection)
        concurrency = self.concurrency
        if concurrency is not None and not concurrency.try_acquire():
            return Admission(concurrency.rejection)
        token = None
        if self.adaptive is not None:
            token = self.adaptive.acquire()
            if token is None:
                if concurrency is not None:
                    concurrency.release()
                return Admission(self.adaptive.rejection)
        return Admission("", concurrency, token)
