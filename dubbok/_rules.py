"""Live rules: what the configuration center says, applied to references and providers.

One :class:`ReferenceRules` per reference turns a service's
:class:`~dubbok.config.effective.EffectiveRules` into the runtime objects — options and
cluster strategy, balancer, breakers, degrade rules, router chain, instance weights and
disabling — and swaps them in. Everything is built and validated first; only then is
anything replaced, so a rule the runtime refuses (say a degrade value that does not fit the
response message) is logged and the previous rules stay in force.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._consumer import PolicyBuilder
from .balancer import create_balancer
from .breaker import BreakerPolicy
from .degrade import DegradeRule
from .directory import Directory
from .errors import DubbokError
from .governance import Governance
from .options import ReferenceOptions
from .routing import Router
from .stub import ServiceDefinition

if TYPE_CHECKING:
    from .config.effective import EffectiveRules

__all__ = ["ReferenceRules", "degrade_spec"]

log = logging.getLogger("dubbok.config")


def degrade_spec(rule: Any) -> dict[str, Any]:
    """A rule document's degrade entry as the mapping :meth:`DegradeRule.parse` reads."""
    spec: dict[str, Any] = {"mode": rule.mode}
    if rule.throw is not None:
        spec["throw"] = rule.throw
        if rule.details:
            spec["message"] = rule.details
    else:
        spec["return"] = rule.return_ or {}
    return spec


class ReferenceRules:
    """Applies one service's live rules to one reference. ``apply`` runs on the config
    center's thread (the asyncio driver hops onto its loop first)."""

    def __init__(
        self,
        definition: ServiceDefinition,
        base: ReferenceOptions,
        *,
        directory: Directory,
        policies: PolicyBuilder,
        governance: Governance,
        base_breaker: BreakerPolicy | None,
        balancer_options: Mapping[str, Any],
        cluster_options: Mapping[str, Any],
        base_routes: Sequence[Any],
        routers: Callable[[ReferenceOptions, Sequence[Any]], list[Router]],
        set_names: Callable[[tuple[str, str]], None],
    ) -> None:
        self.definition = definition
        self.base = base
        self._directory = directory
        self._policies = policies
        self._governance = governance
        self._base_breaker = base_breaker
        self._balancer_options = dict(balancer_options)
        self._cluster_options = dict(cluster_options)
        self._base_routes = list(base_routes)
        self._routers = routers
        self._set_names = set_names
        self._balancer_key: tuple[str, tuple[tuple[str, Any], ...]] = (
            base.loadbalance,
            tuple(sorted(self._balancer_options.items())),
        )
        self.applied_revision = 0

    def apply(self, rules: EffectiveRules) -> bool:
        """Apply ``rules``; ``False`` (and the old rules kept) when the runtime refuses them."""
        service = self.definition.name
        try:
            options = rules.reference_options(self.base)
            lb_options = dict(self._balancer_options)
            if rules.warmup is not None:
                lb_options["warmup"] = rules.warmup
            key = (options.loadbalance, tuple(sorted(lb_options.items())))
            balancer = (
                create_balancer(options.loadbalance, **lb_options)
                if key != self._balancer_key
                else None
            )
            breaker = rules.breaker_policy(self._base_breaker)
            degrades: dict[str, DegradeRule] = {}
            for name, info in self.definition.methods.items():
                rule = rules.degrade(name)
                if rule is not None:
                    degrades[name] = DegradeRule.parse(info, degrade_spec(rule))
            routers = self._routers(options, [*self._base_routes, *rules.routes])
            probe = PolicyBuilder(
                self.definition, options, None, cluster_options=self._cluster_options
            )
            del probe  # building it validated the cluster name and its options
        except DubbokError as exc:
            log.error(
                "rules for %s (revision %d) not applied: %s; the previous rules stay",
                service,
                rules.revision,
                exc,
            )
            return False
        self._policies.set_options(options, self._cluster_options)
        self._governance.reconfigure_breakers(breaker)
        self._governance.set_rule_degrades(degrades)
        self._set_names((options.loadbalance, options.cluster))
        if balancer is not None:
            self._balancer_key = key
        self._directory.reconfigure(
            balancer=balancer, routers=routers, instance_filter=rules.apply_instances
        )
        self.applied_revision = rules.revision
        log.info("rules for %s applied (revision %d)", service, rules.revision)
        return True
