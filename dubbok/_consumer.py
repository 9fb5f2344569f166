"""What the sync and asyncio Apps share on the consumer side: building a reference's policy
and options from user input, and caching discoveries per URL."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .cluster import ClusterPolicy, create_cluster
from .cluster.budget import RetryBudget
from .cluster.latency import LatencyTracker
from .core import MethodPolicy, method_policies
from .degrade import response_class
from .discovery import Discovery, DiscoveryOptions, create_discovery
from .endpoint import Endpoint
from .errors import ConfigurationError, ServiceDefinitionError
from .governance import Governance
from .options import ReferenceOptions
from .service import MethodOptions
from .stub import ServiceDefinition

__all__ = ["DiscoveryCache", "PolicyBuilder", "reference_options"]


def _method_options(value: MethodOptions | Mapping[str, Any]) -> MethodOptions:
    if isinstance(value, MethodOptions):
        return value
    try:
        return MethodOptions(**dict(value))
    except TypeError as exc:
        raise ConfigurationError(
            f"bad method options {dict(value)!r}: {exc}; allowed keys: timeout, idempotent, retries"
        ) from None


def reference_options(
    definition: ServiceDefinition,
    discovery: str,
    *,
    loadbalance: str,
    cluster: str,
    retries: int,
    timeout: float | None,
    version: str,
    group: str,
    methods: Mapping[str, MethodOptions | Mapping[str, Any]] | None,
) -> ReferenceOptions:
    per_method = {name: _method_options(v) for name, v in (methods or {}).items()}
    unknown = sorted(set(per_method) - set(definition.methods))
    if unknown:
        raise ServiceDefinitionError(
            f"{definition.name} has no method {', '.join(map(repr, unknown))}; it defines "
            f"{', '.join(sorted(definition.methods))}"
        )
    return ReferenceOptions(
        service=definition.name,
        discovery=discovery,
        loadbalance=loadbalance,
        cluster=cluster,
        retries=retries,
        timeout=timeout,
        version=version,
        group=group,
        methods=per_method,
    )


class PolicyBuilder:
    """Resolves each method's policy: consumer options over provider-advertised ones.

    Providers advertise ``idempotent``/``timeout``/``retries`` per method in their registry
    records; what the consumer sets in code wins.
    """

    def __init__(
        self,
        definition: ServiceDefinition,
        options: ReferenceOptions,
        governance: Governance | None = None,
        *,
        cluster_options: Mapping[str, Any] | None = None,
        retry_budget: bool = True,
    ) -> None:
        self._definition = definition
        self._options = options
        self.governance = governance
        self.cluster: ClusterPolicy = create_cluster(options.cluster, **dict(cluster_options or {}))
        # One budget per reference (service): retries and hedges ≤ 10% of calls + 10/s.
        self.budget = RetryBudget() if retry_budget else None
        self.latency = (
            {m: LatencyTracker() for m in definition.methods}
            if self.cluster.name == "hedging"
            else {}
        )
        self.responses: dict[str, Callable[[], object]] = {}
        for name, info in definition.methods.items():
            cls = response_class(info)
            if cls is not None and not info.kind.response_streaming:
                self.responses[name] = cls
        self._cache: tuple[object, dict[str, MethodPolicy]] | None = None

    def set_options(self, options: ReferenceOptions, cluster_options: Mapping[str, Any]) -> None:
        """New options from live rules; the cluster strategy is rebuilt if it changed."""
        if options.cluster != self._options.cluster:
            self.cluster = create_cluster(options.cluster, **dict(cluster_options))
            if self.cluster.name == "hedging" and not self.latency:
                self.latency = {m: LatencyTracker() for m in self._definition.methods}
        self._options = options
        self._cache = None

    @property
    def options(self) -> ReferenceOptions:
        return self._options

    def __call__(self, endpoints: Sequence[Endpoint]) -> dict[str, MethodPolicy]:
        advertised: dict[str, dict[str, Any]] = {}
        for ep in endpoints:
            for name, opts in ep.methods.items():
                advertised.setdefault(name, dict(opts))
        gov = self.governance
        key = (
            tuple(sorted((k, tuple(sorted(v.items()))) for k, v in advertised.items())),
            gov.version if gov is not None else 0,
        )
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        o = self._options
        idempotent: dict[str, bool] = {}
        timeouts: dict[str, float | None] = {}
        retries: dict[str, int | None] = {}
        for name in self._definition.methods:
            mine = o.methods.get(name, MethodOptions())
            theirs = advertised.get(name, {})
            idem = mine.idempotent if mine.idempotent is not None else theirs.get("idempotent")
            idempotent[name] = bool(idem)
            t = mine.timeout if mine.timeout is not None else theirs.get("timeout")
            timeouts[name] = float(t) if isinstance(t, (int, float)) and t > 0 else None
            r = mine.retries if mine.retries is not None else theirs.get("retries")
            retries[name] = r if isinstance(r, int) and r >= 0 else None
        policies = method_policies(
            o.service,
            list(self._definition.methods),
            timeout=o.timeout,
            retries=o.retries,
            idempotent=idempotent,
            timeouts=timeouts,
            method_retries=retries,
            cluster=self.cluster,
        )
        if gov is not None:
            policies = {
                name: dataclasses.replace(
                    p,
                    breaker=gov.breakers.get(name),
                    actives=gov.actives.get(name),
                    degrade=gov.rule_degrade.get(name) or gov.degrade.get(name),
                    fallback=gov.fallbacks.get(name),
                )
                for name, p in policies.items()
            }
        policies = {
            name: dataclasses.replace(
                p,
                budget=self.budget,
                latency=self.latency.get(name),
                response=self.responses.get(name),
            )
            for name, p in policies.items()
        }
        self._cache = (key, policies)
        return policies


class DiscoveryCache:
    """One :class:`Discovery` per URL per App, so references share watches."""

    def __init__(self, options: DiscoveryOptions) -> None:
        self._options = options
        self._lock = threading.Lock()
        self._items: dict[str, Discovery] = {}

    def get(
        self, url: str, factory: Callable[[str, DiscoveryOptions], Discovery] = create_discovery
    ) -> Discovery:
        with self._lock:
            found = self._items.get(url)
            if found is None:
                found = factory(url, self._options)
                self._items[url] = found
            return found

    def close(self) -> None:
        with self._lock:
            items = list(self._items.values())
            self._items.clear()
        for d in items:
            d.close()
