"""Limit settings: defaults, validation messages, and building from a rule document."""

from __future__ import annotations

from typing import Any

import pytest

from dubbok.errors import ConfigurationError
from dubbok.limit import AdaptiveLimitPolicy, LimitPolicy, MethodLimits


def test_from_dict_reads_the_rule_document_sketch() -> None:
    policy = LimitPolicy.from_dict(
        {
            "SayHello": {"qps": 2000, "max_concurrency": 64},
            "Search": {"adaptive": True},
            "Tune": {"adaptive": {"initial_limit": 10, "max_limit": 50}, "executes": 8},
            "*": {"max_concurrency": 256},
        }
    )
    assert policy.for_method("SayHello") == MethodLimits(qps=2000, max_concurrency=64)
    assert policy.for_method("Search") == MethodLimits(adaptive=AdaptiveLimitPolicy())
    assert policy.for_method("Tune") == MethodLimits(
        max_concurrency=8, adaptive=AdaptiveLimitPolicy(initial_limit=10, max_limit=50)
    )
    assert policy.for_method("Other") == MethodLimits(max_concurrency=256)
    assert LimitPolicy().for_method("Other") is None


def test_effective_burst() -> None:
    assert MethodLimits(qps=2000).effective_burst == 200
    assert MethodLimits(qps=3).effective_burst == 1
    assert MethodLimits(qps=100, burst=50).effective_burst == 50


def test_methods_cannot_be_changed_after_the_fact() -> None:
    policy = LimitPolicy.from_dict({"SayHello": {"qps": 1}})
    with pytest.raises(TypeError):
        policy.methods["Other"] = MethodLimits()  # type: ignore[index]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "limits must be a mapping"),
        ({"SayHello": 5}, "limits.SayHello must be a mapping"),
        ({"SayHello": {"qsp": 5}}, "limits.SayHello has an unknown key 'qsp'"),
        ({"SayHello": {"qps": 0}}, "limits.SayHello.qps must be a number > 0, got 0"),
        ({"SayHello": {"burst": 5}}, "limits.SayHello.burst is set without qps"),
        ({"SayHello": {"qps": 5, "burst": 0.5}}, "limits.SayHello.burst must be a number ≥ 1"),
        (
            {"SayHello": {"max_concurrency": 0}},
            "limits.SayHello.max_concurrency must be an integer ≥ 1",
        ),
        ({"SayHello": {"adaptive": "yes"}}, "adaptive must be true, false or a mapping"),
        (
            {"SayHello": {"adaptive": {"initial_limit": 0}}},
            "limits.SayHello.adaptive.initial_limit must be an integer ≥ 1",
        ),
        (
            {"SayHello": {"adaptive": {"initial_limit": 5, "min_limit": 10}}},
            "limits.SayHello.adaptive: need min_limit ≤ initial_limit ≤ max_limit",
        ),
        ({"SayHello": {"adaptive": {"smoothing": 0}}}, "smoothing must be a number > 0"),
        (
            {"SayHello": {"adaptive": {"backoff_ratio": 0.1}}},
            "backoff_ratio must be a number ≥ 0.5",
        ),
        ({"": {"qps": 1}}, "method names must be non-empty"),
    ],
)
def test_bad_values_get_a_clear_error(data: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        LimitPolicy.from_dict(data)


def test_adaptive_false_is_off() -> None:
    policy = LimitPolicy.from_dict({"SayHello": {"qps": 5, "adaptive": False}})
    assert policy.for_method("SayHello") == MethodLimits(qps=5)
