"""Precedence, merging and gray release: what a process ends up applying."""

from __future__ import annotations

import pytest

from dubbok.breaker.policy import BreakerPolicy, InstanceBreakerPolicy, MethodBreakerPolicy
from dubbok.config.document import parse_text
from dubbok.config.effective import EffectiveRules, effective_rules
from dubbok.config.gray import InstanceIdentity, selects, stable_percent
from dubbok.config.rules import GovernanceRule, GraySelector
from dubbok.config.validation import validate_rule
from dubbok.endpoint import Endpoint
from dubbok.errors import ConfigurationError
from dubbok.limit.policy import LimitPolicy, MethodLimits
from dubbok.options import ReferenceOptions
from dubbok.service import MethodOptions

ME = InstanceIdentity("shop", "host-a:41", "host-a", {"zone": "a"})


def doc(text: str) -> GovernanceRule:
    return validate_rule(parse_text(text))


def rules(*texts: str, identity: InstanceIdentity = ME) -> EffectiveRules:
    """Layers from the lowest scope: global, app, service."""
    names = ["global/governance", "apps/shop/governance", "services/S/governance"]
    layers = [(names[i], i + 1, doc(text)) for i, text in enumerate(texts)]
    return effective_rules("S", layers, identity)


def test_no_rules_set_nothing() -> None:
    empty = rules()
    assert empty.empty
    assert (empty.timeout, empty.retries, empty.loadbalance, empty.breaker) == (None,) * 4
    assert empty.revision == 0
    base = ReferenceOptions("S", "static://h:1", timeout=2.0)
    assert empty.reference_options(base) == base


@pytest.mark.parametrize(
    ("layers", "timeout"),
    [
        (("timeout: 1",), 1.0),
        (("timeout: 1", "timeout: 2"), 2.0),
        (("timeout: 1", "timeout: 2", "timeout: 3"), 3.0),
        (("timeout: 1", "retries: 0", ""), 1.0),
        (("", "", "timeout: 3"), 3.0),
    ],
)
def test_higher_scopes_override_lower_ones(layers: tuple[str, ...], timeout: float) -> None:
    assert rules(*layers).timeout == timeout


def test_fields_merge_one_by_one() -> None:
    merged = rules(
        "timeout: 1\nretries: 3\nmethods: {A: {timeout: 0.1, retries: 1}}",
        "loadbalance: p2c\nmethods: {A: {idempotent: true}, B: {timeout: 5}}",
        "retries: 0\nmethods: {A: {retries: 2}}",
    )
    assert (merged.timeout, merged.retries, merged.loadbalance) == (1.0, 0, "p2c")
    assert merged.method("A").timeout == 0.1
    assert merged.method("A").retries == 2
    assert merged.method("A").idempotent is True
    assert merged.method("B").timeout == 5.0
    assert merged.method("C").timeout == 1.0  # a method without its own: service-wide
    assert merged.sources == (
        ("global/governance", 1),
        ("apps/shop/governance", 2),
        ("services/S/governance", 3),
    )
    assert merged.revision == 3


def test_method_values_beat_service_wide_ones_whoever_sets_them() -> None:
    base = ReferenceOptions(
        "S",
        "static://h:1",
        timeout=9.0,
        retries=4,
        methods={"Slow": MethodOptions(timeout=30.0), "Fast": MethodOptions(retries=1)},
    )
    merged = rules("timeout: 2\nmethods: {Fast: {timeout: 0.1}}")
    options = merged.reference_options(base)
    assert options.timeout == 2.0  # rules beat code, service-wide
    assert options.retries == 4  # rules do not set it: the code's
    assert options.methods["Slow"].timeout == 30.0  # code's method beats rules' service-wide
    assert options.methods["Fast"].timeout == 0.1  # rules' method
    assert options.methods["Fast"].retries == 1  # code's method beats code's service-wide
    assert merged.method_options("Other", base).timeout == 2.0


def test_lists_are_replaced_whole() -> None:
    merged = rules(
        "routes: [{match: {header: a, equals: '1'}, to: {tags: {t: a}}}, "
        "{match: {header: b, equals: '1'}, to: {tags: {t: b}}}]",
        "",
        "routes: [{match: {header: c, equals: '1'}, to: {tags: {t: c}}}]",
    )
    assert [str(r.to) for r in merged.routes] == ["tags t=c"]


def test_null_turns_a_breaker_level_off() -> None:
    merged = rules(
        "breaker: {instance: {consecutive_failures: 3}, method: {error_ratio: 0.3}}",
        "",
        "breaker: {method: null}",
    )
    assert merged.breaker == BreakerPolicy(
        instance=InstanceBreakerPolicy(consecutive_failures=3), method=None
    )
    code = BreakerPolicy(instance=None, method=MethodBreakerPolicy(min_calls=7))
    applied = merged.breaker_policy(code)
    assert applied is not None
    assert applied.method is None
    assert applied.instance == InstanceBreakerPolicy(consecutive_failures=3)
    assert rules().breaker_policy(code) is code


def test_breaker_fields_merge_across_scopes() -> None:
    merged = rules("breaker: {method: {error_ratio: 0.3}}", "breaker: {method: {min_calls: 5}}")
    assert merged.breaker is not None
    assert merged.breaker.method == MethodBreakerPolicy(error_ratio=0.3, min_calls=5)


def test_a_combination_the_policy_refuses_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match="max_ejection_time"):
        rules(
            "breaker: {instance: {base_ejection_time: 300}}",
            "breaker: {instance: {max_ejection_time: 200}}",
        )
    merged = rules("breaker: {instance: {base_ejection_time: 30}}")
    code = BreakerPolicy(instance=InstanceBreakerPolicy(max_ejection_time=20))
    with pytest.raises(ConfigurationError, match="max_ejection_time"):
        merged.breaker_policy(code)


def test_degrade_uses_the_method_then_the_wildcard_and_off_cancels() -> None:
    merged = rules(
        "degrade: {'*': {mode: force, return: {message: busy}}}",
        "",
        "degrade: {SayHello: {mode: off}, Other: {mode: fail, throw: UNAVAILABLE}}",
    )
    assert merged.degrade("SayHello") is None
    other = merged.degrade("Other")
    assert other is not None and other.throw == "UNAVAILABLE" and not other.forced
    anything = merged.degrade("Anything")
    assert anything is not None and anything.forced and anything.return_ == {"message": "busy"}


def test_instances_are_reweighted_and_disabled() -> None:
    merged = rules(
        'instances: {"10.0.0.1:1": {weight: 5}, "10.0.0.2": {disabled: true}}',
        "",
        'instances: {"10.0.0.1:1": {disabled: true}, "10.0.0.3:1": {weight: 0}}',
    )
    endpoints = [
        Endpoint.parse(a) for a in ("10.0.0.1:1", "10.0.0.2:7", "10.0.0.3:1", "10.0.0.4:1")
    ]
    kept = merged.apply_instances(endpoints)
    assert [(e.address, e.weight) for e in kept] == [("10.0.0.3:1", 0), ("10.0.0.4:1", 100)]


def test_limits_merge_per_method_and_over_the_code() -> None:
    merged = rules(
        "limits: {'*': {max_concurrency: 10}}", "", "limits: {'*': {qps: 50}, A: {qps: 5}}"
    )
    assert merged.limits is not None
    assert merged.limits.for_method("B") == MethodLimits(qps=50, max_concurrency=10)
    code = LimitPolicy({"A": MethodLimits(max_concurrency=3), "C": MethodLimits(qps=1)})
    applied = merged.limit_policy(code)
    assert applied is not None
    assert applied.for_method("A") == MethodLimits(qps=5, max_concurrency=3)
    assert applied.for_method("C") == MethodLimits(qps=1)
    assert rules().limit_policy(code) is code


# -- gray release ----------------------------------------------------------------------------


def test_gray_rules_apply_only_where_they_select() -> None:
    text = """
timeout: 1
gray:
  - {name: zone-a, select: {tags: {zone: a}}, rules: {timeout: 0.5}}
  - {name: other-app, select: {apps: [billing]}, rules: {timeout: 9}}
  - {name: me, select: {instances: [host-a]}, rules: {retries: 0}}
"""
    mine = rules("", "", text)
    assert (mine.timeout, mine.retries) == (0.5, 0)
    assert mine.gray == ("services/S/governance#zone-a", "services/S/governance#me")
    theirs = rules("", "", text, identity=InstanceIdentity("billing", "b:1", "b"))
    assert (theirs.timeout, theirs.retries) == (9.0, None)


def test_a_gray_rule_overrides_its_own_document_but_not_a_higher_scope() -> None:
    merged = rules(
        "timeout: 1\ngray: [{name: g, select: {apps: [shop]}, rules: {timeout: 2, retries: 5}}]",
        "",
        "timeout: 3",
    )
    assert (merged.timeout, merged.retries) == (3.0, 5)


def test_percentages_are_stable_uniform_and_grow_monotonically() -> None:
    instances = [f"pod-{i}:1" for i in range(2000)]
    ten = GraySelector(percent=10)
    fifty = GraySelector(percent=50)
    chosen10 = {i for i in instances if selects(ten, "rollout", InstanceIdentity("a", i))}
    chosen50 = {i for i in instances if selects(fifty, "rollout", InstanceIdentity("a", i))}
    assert 150 <= len(chosen10) <= 250
    assert 900 <= len(chosen50) <= 1100
    assert chosen10 <= chosen50  # raising the percentage keeps those already chosen
    again = {i for i in instances if selects(ten, "rollout", InstanceIdentity("a", i))}
    assert again == chosen10
    other = {i for i in instances if selects(ten, "another", InstanceIdentity("a", i))}
    assert other != chosen10  # each rollout picks its own instances
    assert 0 <= stable_percent("x", "y") < 100
    assert not selects(GraySelector(percent=0), "r", ME)
    assert selects(GraySelector(percent=100), "r", ME)


def test_identity_checks_and_defaults() -> None:
    local = InstanceIdentity.local("shop", tags={"zone": "b"})
    assert local.instance.endswith(":" + local.instance.rsplit(":", 1)[1])
    assert local.host and local.tags["zone"] == "b"
    with pytest.raises(ConfigurationError):
        InstanceIdentity("a", "")
    with pytest.raises(ConfigurationError):
        InstanceIdentity("a", "i", tags={"k": 1})  # type: ignore[dict-item]
