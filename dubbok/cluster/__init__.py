"""Cluster strategies: how many attempts a call gets, and after which failures.

A :class:`ClusterPolicy` is consulted by the pure :class:`~dubbok.core.CallPlan` after each
failed attempt. The answer comes from :mod:`dubbok.outcome` — the same classification the
breakers use — so a business error is never retried.

Built-ins: ``failover`` (default: try another endpoint) and ``failfast`` (one attempt). To add
a strategy, expose a class under the ``dubbok.cluster`` entry-point group.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

from ..errors import UnknownExtensionError
from ..outcome import Verdict, is_retryable

__all__ = [
    "BUILTIN",
    "ClusterPolicy",
    "FailfastPolicy",
    "FailoverPolicy",
    "create_cluster",
    "known_clusters",
]


@runtime_checkable
class ClusterPolicy(Protocol):
    """Decides retries. Pure; called on the caller's thread or loop; must not raise."""

    name: str

    def max_attempts(self, retries: int) -> int:
        """How many attempts a call with ``retries`` configured may make in total."""

    def retry(self, verdict: Verdict, idempotent: bool) -> bool:
        """Whether a failed attempt with this verdict may be followed by another."""


class FailfastPolicy:
    """One attempt; every failure goes straight to the caller."""

    name = "failfast"

    def max_attempts(self, retries: int) -> int:
        return 1

    def retry(self, verdict: Verdict, idempotent: bool) -> bool:
        return False


class FailoverPolicy:
    """Retry on another endpoint, excluding those already tried, up to ``retries`` times.

    Non-idempotent methods are retried only when the request certainly never reached a
    server; idempotent ones also after timeouts, UNAVAILABLE, overload and server errors.
    """

    name = "failover"

    def max_attempts(self, retries: int) -> int:
        return retries + 1

    def retry(self, verdict: Verdict, idempotent: bool) -> bool:
        return is_retryable(verdict, idempotent)


BUILTIN: dict[str, str] = {
    "failover": "dubbok.cluster:FailoverPolicy",
    "failfast": "dubbok.cluster:FailfastPolicy",
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
