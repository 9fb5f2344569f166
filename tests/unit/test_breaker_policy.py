"""Breaker settings: defaults, validation messages, and building from a rule document."""

from __future__ import annotations

from typing import Any

import pytest

from dubbok.breaker import BreakerPolicy, InstanceBreakerPolicy, MethodBreakerPolicy
from dubbok.errors import ConfigurationError


def test_defaults_are_usable() -> None:
    policy = BreakerPolicy()
    assert policy.instance == InstanceBreakerPolicy()
    assert policy.instance is not None and policy.instance.consecutive_failures == 5
    assert policy.instance.max_ejection_percent == 50
    assert policy.method is not None and policy.method.error_ratio == 0.5


def test_from_dict_reads_the_rule_document_sketch() -> None:
    policy = BreakerPolicy.from_dict(
        {
            "instance": {"consecutive_failures": 5, "reset_timeout": 10},
            "method": {
                "error_ratio": 0.5,
                "slow_call_ratio": 0.8,
                "slow_call_threshold": 0.5,
                "min_calls": 20,
                "window": 10,
                "reset_timeout": 30,
            },
        }
    )
    assert policy.instance == InstanceBreakerPolicy(consecutive_failures=5, base_ejection_time=10)
    assert policy.method == MethodBreakerPolicy(
        error_ratio=0.5,
        slow_call_ratio=0.8,
        slow_call_threshold=0.5,
        min_calls=20,
        window=10,
        reset_timeout=30,
    )


def test_from_dict_absent_level_keeps_defaults_and_null_turns_it_off() -> None:
    policy = BreakerPolicy.from_dict({"method": None})
    assert policy.instance == InstanceBreakerPolicy()
    assert policy.method is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"instanse": {}}, r"breaker has unknown keys \['instanse'\]"),
        ({"method": {"eror_ratio": 0.5}}, "breaker.method has an unknown key 'eror_ratio'"),
        ({"method": [1]}, "breaker.method must be a mapping"),
        (
            {"method": {"error_ratio": 1.5}},
            r"breaker.method.error_ratio must be a number > 0 and ≤ 1, got 1.5",
        ),
        (
            {"method": {"error_ratio": "half"}},
            "breaker.method.error_ratio must be a number, got 'half'",
        ),
        ({"method": {"min_calls": 2.5}}, "breaker.method.min_calls must be an integer"),
        ({"method": {"min_calls": True}}, "breaker.method.min_calls must be an integer"),
        ({"method": {"reset_timeout": 0}}, "breaker.method.reset_timeout must be a number > 0"),
        ({"method": {"half_open_max_calls": 0}}, "half_open_max_calls must be an integer ≥ 1"),
        ({"method": {"error_ratio": None}}, "breaker.method has no trigger"),
        ({"method": {"window": 0.001, "buckets": 10}}, "shorter than 1 ms"),
        ({"instance": {"consecutive_failures": 0}}, "consecutive_failures must be an integer ≥ 1"),
        (
            {"instance": {"max_ejection_percent": 120}},
            "max_ejection_percent must be a number ≥ 0 and ≤ 100",
        ),
        ({"instance": {"base_ejection_time": 600}}, "max_ejection_time .* is shorter than"),
        (
            {"instance": {"reset_timeout": 5, "base_ejection_time": 5}},
            "sets 'base_ejection_time' twice",
        ),
        (
            {"instance": {"max_ejection_time": float("inf")}},
            "max_ejection_time must be a number > 0",
        ),
    ],
)
def test_bad_values_get_a_clear_error(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        BreakerPolicy.from_dict(data)


def test_policies_are_frozen() -> None:
    policy = MethodBreakerPolicy()
    with pytest.raises(AttributeError):
        policy.min_calls = 3  # type: ignore[misc]


def test_breaker_policy_checks_its_levels() -> None:
    with pytest.raises(ConfigurationError, match=r"breaker\.method must be a MethodBreakerPolicy"):
        BreakerPolicy(method=InstanceBreakerPolicy())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="breaker must be a mapping"):
        BreakerPolicy.from_dict([])  # type: ignore[arg-type]
