"""Cluster strategies: how a call's attempts are made, and what a failure becomes.

Sequential strategies let :class:`~dubbok.core.CallPlan` make one attempt at a time; fan-out
strategies let :class:`~dubbok.cluster.fanout.FanOut` keep several in flight. Either way the
answer to "retry?" comes from :mod:`dubbok.outcome` — the same classification the breakers
use — so a business error is never retried, and every retry or hedge is paid from the
reference's :class:`~dubbok.cluster.budget.RetryBudget`.

==============  ===================================================================
``failover``    (default) retry on another endpoint, excluding those tried
``failfast``    one attempt; failures go straight to the caller
``failsafe``    one attempt; a counted failure is logged and the method's default
                (empty) response returned
``failback``    like failsafe, and the request is queued for a bounded number of
                background retries (fire-and-forget calls); drops are counted
``forking``     ``forks`` attempts on distinct endpoints at once; first success wins
``broadcast``   every endpoint; fails if any fails, naming which
``hedging``     idempotent methods: a second attempt on another endpoint after
                ``hedge_delay`` (or the method's observed p95); first success wins
==============  ===================================================================

To add a strategy, expose a class under the ``dubbok.cluster`` entry-point group.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

from ..errors import ConfigurationError, UnknownExtensionError
from ..outcome import Verdict, is_retryable

__all__ = [
    "BUILTIN",
    "BroadcastPolicy",
    "ClusterPolicy",
    "FailbackPolicy",
    "FailfastPolicy",
    "FailoverPolicy",
    "FailsafePolicy",
    "ForkingPolicy",
    "HedgingPolicy",
    "create_cluster",
    "known_clusters",
]


@runtime_checkable
class ClusterPolicy(Protocol):
    """Decides attempts. Pure; called on the caller's thread or loop; must not raise.

    ``fanout`` strategies keep several attempts in flight (see ``dubbok.cluster.fanout``);
    ``swallow`` strategies answer a counted failure with the default response, and
    ``requeue`` ones also retry it in the background.
    """

    name: str
    fanout: bool
    swallow: bool
    requeue: bool

    def max_attempts(self, retries: int) -> int:
        """How many attempts a call with ``retries`` configured may make in total."""

    def retry(self, verdict: Verdict, idempotent: bool) -> bool:
        """Whether a failed attempt with this verdict may be followed by another."""


class _Base:
    name = ""
    fanout = False
    swallow = False
    requeue = False

    def __init__(self, **options: Any) -> None:
        if options:
            raise ConfigurationError(
                f"cluster {self.name!r} takes no options {sorted(options)}; see "
                "docs/fault-tolerance.md"
            )

    def max_attempts(self, retries: int) -> int:
        return 1

    def retry(self, verdict: Verdict, idempotent: bool) -> bool:
        return False


class FailfastPolicy(_Base):
    """One attempt; every failure goes straight to the caller."""

    name = "failfast"


class FailoverPolicy(_Base):
    """Retry on another endpoint, excluding those already tried, up to ``retries`` times.

    Non-idempotent methods are retried only when the request certainly never reached a
    server; idempotent ones also after timeouts, UNAVAILABLE, overload and server errors.
    """

    name = "failover"

    def max_attempts(self, retries: int) -> int:
        return retries + 1

    def retry(self, verdict: Verdict, idempotent: bool) -> bool:
        return is_retryable(verdict, idempotent)


class FailsafePolicy(_Base):
    """One attempt; a counted failure is logged and the default response returned."""

    name = "failsafe"
    swallow = True


class FailbackPolicy(_Base):
    """Failsafe now, and the request retried in the background (bounded queue)."""

    name = "failback"
    swallow = True
    requeue = True

    def __init__(
        self, *, queue_size: int = 1000, retries: int = 3, interval: float = 5.0, **rest: Any
    ) -> None:
        super().__init__(**rest)
        for key, value, low in (("queue_size", queue_size, 1), ("retries", retries, 1)):
            if not isinstance(value, int) or value < low:
                raise ConfigurationError(f"failback {key} must be an int >= {low}, got {value!r}")
        if not interval > 0:
            raise ConfigurationError(f"failback interval must be > 0 seconds, got {interval!r}")
        self.queue_size = queue_size
        self.retries = retries
        self.interval = float(interval)


class ForkingPolicy(_Base):
    """``forks`` attempts on distinct endpoints at once; the first success wins."""

    name = "forking"
    fanout = True

    def __init__(self, *, forks: int = 2, **rest: Any) -> None:
        super().__init__(**rest)
        if not isinstance(forks, int) or forks < 1:
            raise ConfigurationError(f"forking forks must be an int >= 1, got {forks!r}")
        self.forks = forks

    def max_attempts(self, retries: int) -> int:
        return self.forks


class BroadcastPolicy(_Base):
    """Every endpoint; the call fails if any attempt fails."""

    name = "broadcast"
    fanout = True

    def max_attempts(self, retries: int) -> int:
        return 1 << 30


class HedgingPolicy(_Base):
    """For idempotent methods: after ``hedge_delay`` seconds without an answer (``None``:
    the method's observed p95), a hedge goes to another endpoint; first success wins.
    At most ``max_hedges`` hedges per call. Non-idempotent methods get one attempt, retried
    only when it certainly never left."""

    name = "hedging"
    fanout = True

    def __init__(
        self,
        *,
        hedge_delay: float | None = None,
        max_hedges: int = 1,
        min_delay: float = 0.005,
        **rest: Any,
    ) -> None:
        super().__init__(**rest)
        if hedge_delay is not None and not hedge_delay >= 0:
            raise ConfigurationError(f"hedge_delay must be >= 0 seconds, got {hedge_delay!r}")
        if not isinstance(max_hedges, int) or max_hedges < 1:
            raise ConfigurationError(f"max_hedges must be an int >= 1, got {max_hedges!r}")
        self.hedge_delay = hedge_delay
        self.max_hedges = max_hedges
        self.min_delay = min_delay

    def max_attempts(self, retries: int) -> int:
        return self.max_hedges + 1

    def retry(self, verdict: Verdict, idempotent: bool) -> bool:
        return is_retryable(verdict, idempotent)


BUILTIN: dict[str, str] = {
    "failover": "dubbok.cluster:FailoverPolicy",
    "failfast": "dubbok.cluster:FailfastPolicy",
    "failsafe": "dubbok.cluster:FailsafePolicy",
    "failback": "dubbok.cluster:FailbackPolicy",
    "forking": "dubbok.cluster:ForkingPolicy",
    "broadcast": "dubbok.cluster:BroadcastPolicy",
    "hedging": "dubbok.cluster:HedgingPolicy",
}


def known_clusters() -> list[str]:
    return sorted({*BUILTIN, *(ep.name for ep in entry_points(group="dubbok.cluster"))})


def create_cluster(name: str, **options: Any) -> ClusterPolicy:
    """The cluster strategy registered as ``name``; :class:`UnknownExtensionError` if none."""
    key = name.strip().lower()
    factory: Callable[..., ClusterPolicy]
    if key in BUILTIN:
        module_name, _, attr = BUILTIN[key].partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
        return factory(**options)
    for ep in entry_points(group="dubbok.cluster"):
        if ep.name == key:
            factory = ep.load()
            return factory(**options)
    raise UnknownExtensionError("cluster", name, known_clusters())
