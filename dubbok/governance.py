"""Per-reference governance state: breakers, limits, degrade rules and fallbacks.

One :class:`Governance` per reference holds what must outlive endpoint snapshots — the method
breakers and the outlier detector keep their windows and ejections across discovery updates —
and the switches an operator flips at runtime (degrade rules, fallbacks). A change rebuilds
the reference's route (``on_change``), so calls see it at once and still read it without
locks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ._gauges import MetricsBreakerListener
from .breaker import (
    BreakerListener,
    BreakerPolicy,
    LoggingListener,
    MethodBreaker,
    OutlierDetector,
)
from .degrade import DegradeRule, FallbackFunc
from .errors import ConfigurationError, ServiceDefinitionError
from .limit import ConcurrencyLimiter
from .stub import ServiceDefinition

__all__ = ["Governance", "breaker_policy", "degrade", "fallback"]

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger("dubbok.governance")


def breaker_policy(value: BreakerPolicy | Mapping[str, Any] | bool | None) -> BreakerPolicy | None:
    """``True``/omitted: defaults; ``False``/``None``: off; a mapping: the rule's section."""
    if value is True:
        return BreakerPolicy()
    if value is False or value is None:
        return None
    if isinstance(value, BreakerPolicy):
        return value
    if isinstance(value, Mapping):
        return BreakerPolicy.from_dict(value)
    raise ConfigurationError(
        f"breaker must be a BreakerPolicy, a mapping like {{instance: {{...}}, method: "
        f"{{...}}}}, True or False; got {value!r}"
    )


class Governance:
    """Stateful governance of one reference. Thread-safe; changes call ``on_change``."""

    def __init__(
        self,
        definition: ServiceDefinition,
        *,
        breaker: BreakerPolicy | None,
        actives: Mapping[str, int] | None = None,
        bulkhead: int | None = None,
        degrade: Mapping[str, Mapping[str, Any]] | None = None,
        fallbacks: Mapping[str, FallbackFunc] | None = None,
        listeners: tuple[BreakerListener, ...] = (),
    ) -> None:
        self.definition = definition
        service = definition.name
        self._lock = threading.Lock()
        self.version = 0
        self.on_change: Callable[[], None] | None = None
        listeners = listeners or (LoggingListener(), MetricsBreakerListener(service))
        self.detector: OutlierDetector | None = None
        self.breakers: dict[str, MethodBreaker] = {}
        if breaker is not None and breaker.instance is not None:
            self.detector = OutlierDetector(service, breaker.instance, listeners=listeners)
        if breaker is not None and breaker.method is not None:
            self.breakers = {
                m: MethodBreaker(service, m, breaker.method, listeners=listeners)
                for m in definition.methods
            }
        self.actives: dict[str, ConcurrencyLimiter] = {}
        for method, limit in (actives or {}).items():
            self._check_method(method, "actives")
            if not isinstance(limit, int) or limit < 1:
                raise ConfigurationError(f"actives.{method} must be an int >= 1, got {limit!r}")
            self.actives[method] = ConcurrencyLimiter(f"{service}/{method}", limit, kind="actives")
        if bulkhead is not None and (not isinstance(bulkhead, int) or bulkhead < 1):
            raise ConfigurationError(f"bulkhead must be an int >= 1, got {bulkhead!r}")
        self.bulkhead = ConcurrencyLimiter(service, bulkhead, kind="bulkhead") if bulkhead else None
        self.degrade: dict[str, DegradeRule] = {}
        for method, spec in (degrade or {}).items():
            self._check_method(method, "degrade")
            self.degrade[method] = DegradeRule.parse(definition.methods[method], spec)
        self.fallbacks: dict[str, FallbackFunc] = {}
        for method, fn in (fallbacks or {}).items():
            self._check_method(method, "fallbacks")
            self.fallbacks[method] = fn
        # Degrade rules from the configuration center; they win over the code's.
        self.rule_degrade: dict[str, DegradeRule] = {}
        self._listeners = listeners

    def reconfigure_breakers(self, policy: BreakerPolicy | None) -> None:
        """Apply a new breaker policy (live rules). Breakers keep their state when a level
        stays on; a level turned off is dropped, one turned on starts closed."""
        service = self.definition.name
        instance = policy.instance if policy is not None else None
        method = policy.method if policy is not None else None
        with self._lock:
            if instance is None:
                self.detector = None
            elif self.detector is None:
                self.detector = OutlierDetector(service, instance, listeners=self._listeners)
            else:
                self.detector.reconfigure(instance)
            if method is None:
                self.breakers = {}
            elif not self.breakers:
                self.breakers = {
                    m: MethodBreaker(service, m, method, listeners=self._listeners)
                    for m in self.definition.methods
                }
            else:
                for breaker in self.breakers.values():
                    breaker.reconfigure(method)
            self.version += 1

    def set_rule_degrades(self, rules: Mapping[str, DegradeRule]) -> None:
        """Replace the degrade rules that come from the configuration center."""
        with self._lock:
            self.rule_degrade = dict(rules)
            self.version += 1

    def _check_method(self, method: str, what: str) -> None:
        if method not in self.definition.methods:
            raise ServiceDefinitionError(
                f"{what}: {self.definition.name} has no method {method!r}; it defines "
                f"{', '.join(sorted(self.definition.methods))}"
            )

    def _changed(self) -> None:
        with self._lock:
            self.version += 1
        callback = self.on_change
        if callback is not None:
            callback()

    def set_degrade(self, method: str, spec: Mapping[str, Any] | None) -> None:
        """Switch a mock rule on (``{mode: force|fail, return: {...} | throw: STATUS}``) or
        off (``None``). Validated first: a bad rule raises and changes nothing."""
        self._check_method(method, "degrade")
        if spec is None:
            with self._lock:
                self.degrade.pop(method, None)
        else:
            rule = DegradeRule.parse(self.definition.methods[method], spec)
            with self._lock:
                self.degrade[method] = rule
        log.info(
            "%s/%s: degrade rule %s",
            self.definition.name,
            method,
            "removed" if spec is None else f"set ({spec.get('mode')})",
        )
        self._changed()

    def set_fallback(self, method: str, fn: FallbackFunc | None) -> None:
        self._check_method(method, "fallback")
        with self._lock:
            if fn is None:
                self.fallbacks.pop(method, None)
            else:
                self.fallbacks[method] = fn
        self._changed()


def _governance_of(reference: object) -> Governance:
    gov = getattr(reference, "_governance", None)
    if not isinstance(gov, Governance):
        raise ConfigurationError(
            f"{reference!r} is not a dubbok reference; pass what App.reference() returned"
        )
    return gov


def fallback(target: object, method: str | None = None) -> Callable[[F], F]:
    """Register a fallback for a reference's method::

        @dubbok.fallback(greeter.SayHello)          # or dubbok.fallback(greeter, "SayHello")
        def hello_later(request, error):
            return HelloReply(message="busy, try later")

    It is called with the request and the error when a call fails after the cluster
    strategy is done (a counted failure, never a business error) or a breaker or limit
    refused it. For ``dubbok.aio`` references it may be ``async``.
    """
    if method is None:
        reference = getattr(target, "_ref", None)
        info = getattr(target, "_info", None)
        if reference is None or info is None:
            raise ConfigurationError(
                "fallback() takes a reference method (greeter.SayHello) or a reference and a "
                "method name"
            )
        method = info.name
    else:
        reference = target
    gov = _governance_of(reference)
    name = method

    def register(fn: F) -> F:
        gov.set_fallback(name, fn)
        return fn

    return register


def degrade(reference: object, method: str, rule: Mapping[str, Any] | None) -> None:
    """Switch a mock rule on or off at runtime::

        dubbok.degrade(greeter, "SayHello", {"mode": "force", "return": {"message": "busy"}})
        dubbok.degrade(greeter, "SayHello", {"mode": "fail", "throw": "UNAVAILABLE"})
        dubbok.degrade(greeter, "SayHello", None)   # off

    The rule is validated against the method's response message first; an invalid one
    raises :class:`~dubbok.errors.ConfigurationError` naming the field and changes nothing.
    """
    _governance_of(reference).set_degrade(method, rule)
