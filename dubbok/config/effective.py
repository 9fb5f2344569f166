"""The effective rules of one service: scopes merged, gray rules resolved, policies built.

Precedence, lowest first: code defaults < ``global/governance`` < ``apps/<app>/governance``
< ``services/<service>/governance``, and inside each document its gray rules that select
this instance, in order. Documents merge field by field: a field a higher scope does not set
keeps the lower value; mappings (``methods``, ``degrade``, ``instances``, ``limits``,
``breaker``) merge per entry and per field; lists (``routes``) are replaced whole.

For call settings a method-level value beats a service-wide one wherever each comes from,
as in Dubbo: ``timeout`` of method ``M`` is the first set of rules ``methods.M.timeout``,
the code's method option, rules ``timeout``, the code's reference option.

:func:`effective_rules` is pure; :class:`~dubbok.config.center.ConfigCenter` calls it on its
own thread whenever a document changes and publishes the result, which callers read
without locks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from ..breaker.policy import BreakerPolicy
from ..endpoint import Endpoint
from ..limit.policy import LimitPolicy, MethodLimits
from ..options import ReferenceOptions
from ..routing.condition import ConditionRule
from ..routing.disabled import AddressSet
from ..service import MethodOptions
from .gray import InstanceIdentity, selects
from .rules import DegradeRule, GovernanceRule, MethodRule, RuleBody, RuleModel

__all__ = ["EMPTY_RULE", "EffectiveRules", "MethodRules", "effective_rules", "merge", "resolve"]

R = TypeVar("R", bound=RuleModel)

EMPTY_RULE = RuleBody()


def merge(low: R, high: RuleModel) -> R:
    """``high`` over ``low``, field by field (see the module docstring). Both must be of the
    same model, or ``high`` a base of ``low``'s; the result has ``low``'s type."""
    cls = type(low)
    values: dict[str, Any] = {}
    for name in cls.model_fields:
        low_value = getattr(low, name)
        if name in high.model_fields_set:
            high_value = getattr(high, name)
            if name in low.model_fields_set:
                values[name] = _merge_value(low_value, high_value)
            else:
                values[name] = high_value
        else:
            values[name] = low_value
    fields_set = set(low.model_fields_set) | (set(high.model_fields_set) & set(cls.model_fields))
    return cls.model_construct(_fields_set=fields_set, **values)


def _merge_value(low: object, high: object) -> object:
    if isinstance(low, RuleModel) and isinstance(high, RuleModel) and type(low) is type(high):
        return merge(low, high)
    if isinstance(low, dict) and isinstance(high, dict):
        out = dict(low)
        for key, value in high.items():
            out[key] = _merge_value(out[key], value) if key in out else value
        return out
    return high


def resolve(document: GovernanceRule, identity: InstanceIdentity) -> tuple[RuleBody, list[str]]:
    """The document for ``identity``: its gray rules that select it applied in order. Returns
    the body and the names of the gray rules applied."""
    names = set(RuleBody.model_fields)
    body = RuleBody.model_construct(
        _fields_set=document.model_fields_set & names,
        **{name: getattr(document, name) for name in names},
    )
    applied = []
    for gray in document.gray:
        if selects(gray.select, gray.name, identity):
            body = merge(body, gray.rules)
            applied.append(gray.name)
    return body, applied


@dataclass(frozen=True, slots=True)
class MethodRules:
    """What the rules say for one method; ``None`` means the rules do not set it."""

    timeout: float | None = None
    retries: int | None = None
    idempotent: bool | None = None


@dataclass(frozen=True, slots=True, eq=False)
class EffectiveRules:
    """The rules in force for one service in this process. Immutable; build it with
    :func:`effective_rules`.

    ``rule`` is the merged document; ``sources`` the keys that contributed (lowest scope
    first) with the revision each was read at; ``gray`` the gray rules applied, as
    ``key#name``. The derived policies are built once, here, so a combination the policies
    refuse is found when the rules change, not on a call.
    """

    service: str
    rule: RuleBody = EMPTY_RULE
    sources: tuple[tuple[str, int], ...] = ()
    gray: tuple[str, ...] = ()
    routes: tuple[ConditionRule, ...] = ()
    disabled: AddressSet = field(default_factory=lambda: AddressSet((), owner="instances"))
    weights: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    breaker: BreakerPolicy | None = None
    """The rules' breakers over the defaults; ``None`` when no rule mentions breakers."""
    limits: LimitPolicy | None = None
    """The rules' limits; ``None`` when no rule sets any."""

    @property
    def revision(self) -> int:
        """The highest revision among the sources (0 for no rules)."""
        return max((rev for _, rev in self.sources), default=0)

    @property
    def timeout(self) -> float | None:
        return self.rule.timeout

    @property
    def retries(self) -> int | None:
        return self.rule.retries

    @property
    def idempotent(self) -> bool | None:
        return self.rule.idempotent

    @property
    def loadbalance(self) -> str | None:
        return self.rule.loadbalance

    @property
    def cluster(self) -> str | None:
        return self.rule.cluster

    @property
    def warmup(self) -> float | None:
        return self.rule.warmup

    def method(self, name: str) -> MethodRules:
        """The rules' call settings for method ``name``: its own, else service-wide."""
        own = self.rule.methods.get(name) or MethodRule()
        return MethodRules(
            timeout=_first(own.timeout, self.rule.timeout),
            retries=_first(own.retries, self.rule.retries),
            idempotent=_first(own.idempotent, self.rule.idempotent),
        )

    def method_options(self, name: str, base: ReferenceOptions) -> MethodOptions:
        """Final call settings of method ``name``: rules' method value, else the code's
        method option, else rules' service-wide value, else the code's reference option
        (``idempotent`` has no reference-wide code option)."""
        own = self.rule.methods.get(name) or MethodRule()
        code = base.methods.get(name) or MethodOptions()
        return dataclasses.replace(
            code,
            timeout=_first(own.timeout, code.timeout, self.rule.timeout, base.timeout),
            idempotent=_first(own.idempotent, code.idempotent, self.rule.idempotent),
            retries=_first(own.retries, code.retries, self.rule.retries, base.retries),
        )

    def reference_options(self, base: ReferenceOptions) -> ReferenceOptions:
        """``base`` (the code's options) with the rules applied: service-wide fields the
        rules set replace the code's; every method the code or the rules name gets its
        :meth:`method_options`."""
        names = set(base.methods) | set(self.rule.methods)
        return dataclasses.replace(
            base,
            loadbalance=self.rule.loadbalance or base.loadbalance,
            cluster=self.rule.cluster or base.cluster,
            retries=self.rule.retries if self.rule.retries is not None else base.retries,
            timeout=_first(self.rule.timeout, base.timeout),
            methods={name: self.method_options(name, base) for name in sorted(names)},
        )

    def breaker_policy(self, base: BreakerPolicy | None = None) -> BreakerPolicy | None:
        """The rules' breaker section over ``base`` (the code's policy); ``base`` as is when
        no rule mentions breakers. Raises :class:`~dubbok.errors.ConfigurationError` if the
        combination is inconsistent (keep ``base`` then)."""
        if self.rule.breaker is None:
            return (
                base
                if "breaker" not in self.rule.model_fields_set
                else BreakerPolicy(instance=None, method=None)
            )
        return self.rule.breaker.to_policy(base)

    def limit_policy(self, base: LimitPolicy | None = None) -> LimitPolicy | None:
        """The rules' limits over ``base``: per method, fields the rules set replace the
        code's."""
        if self.limits is None:
            return base
        if base is None:
            return self.limits
        merged = dict(base.methods)
        for name, rule in self.rule.limits.items():
            current = merged.get(name)
            start = {} if current is None else _limits_settings(current)
            start.update(rule.settings())
            merged[name] = LimitPolicy.from_dict({name: start}).methods[name]
        return LimitPolicy(merged)

    def degrade(self, method: str) -> DegradeRule | None:
        """The active degrade rule of ``method`` (its own, else ``"*"``), if any."""
        rule = self.rule.degrade.get(method) or self.rule.degrade.get("*")
        return rule if rule is not None and rule.active else None

    def apply_instances(self, endpoints: Iterable[Endpoint]) -> tuple[Endpoint, ...]:
        """``endpoints`` without the disabled ones, with rule weights applied."""
        out = []
        weights = self.weights
        for ep in endpoints:
            if ep in self.disabled:
                continue
            weight = weights.get(ep.address, weights.get(ep.host))
            out.append(ep if weight is None else dataclasses.replace(ep, weight=weight))
        return tuple(out)

    @property
    def empty(self) -> bool:
        """True when no rule sets anything for this service."""
        return not self.rule.model_fields_set


def _limits_settings(limits: MethodLimits) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("qps", "burst", "max_concurrency"):
        value = getattr(limits, name)
        if value is not None:
            out[name] = value
    if limits.adaptive is not None:
        out["adaptive"] = dataclasses.asdict(limits.adaptive)
    return out


T = TypeVar("T")


def _first(*values: T | None) -> T | None:
    for value in values:
        if value is not None:
            return value
    return None


def effective_rules(
    service: str,
    layers: Sequence[tuple[str, int, GovernanceRule]],
    identity: InstanceIdentity,
) -> EffectiveRules:
    """Merge ``layers`` — ``(key, revision, document)`` from the lowest scope to the
    highest — for ``identity``. Raises :class:`~dubbok.errors.ConfigurationError` when the
    merged breakers or limits are inconsistent."""
    body: RuleBody = EMPTY_RULE
    gray: list[str] = []
    for key, _, document in layers:
        resolved, applied = resolve(document, identity)
        body = merge(body, resolved)
        gray.extend(f"{key}#{name}" for name in applied)
    disabled = [addr for addr, rule in body.instances.items() if rule.disabled]
    weights = {
        addr: rule.weight
        for addr, rule in body.instances.items()
        if rule.weight is not None and not rule.disabled
    }
    breaker = body.breaker.to_policy() if body.breaker is not None else None
    limits = (
        LimitPolicy.from_dict({name: rule.settings() for name, rule in body.limits.items()})
        if body.limits
        else None
    )
    return EffectiveRules(
        service=service,
        rule=body,
        sources=tuple((key, revision) for key, revision, _ in layers),
        gray=tuple(gray),
        routes=tuple(route.to_condition() for route in body.routes),
        disabled=AddressSet(disabled, owner="instances"),
        weights=MappingProxyType(weights),
        breaker=breaker,
        limits=limits,
    )
