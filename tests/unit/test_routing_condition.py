"""Condition rules: method, headers and consumer app select where calls go."""

from __future__ import annotations

from typing import Any

import pytest

from dubbok.endpoint import Endpoint
from dubbok.errors import ConfigurationError, NoProviderError
from dubbok.invocation import Invocation
from dubbok.routing import (
    ConditionRouter,
    ConditionRule,
    HeaderMatch,
    Match,
    Target,
    route_chain,
)

A = Endpoint("10.0.8.1", 50051, tags={"track": "stable", "zone": "a"})
B = Endpoint("10.0.8.2", 50051, tags={"track": "stable", "zone": "b"})
C = Endpoint("10.0.8.3", 50051, tags={"track": "canary", "zone": "a"})
FLEET = [A, B, C]

RULES = [
    ConditionRule(
        name="vip",
        match=Match(headers=(HeaderMatch(name="x-user", regex=r"vip-\d+"),)),
        to=Target(addresses=("10.0.8.2:50051",)),
    ),
    ConditionRule(
        match=Match(headers=(HeaderMatch(name="X-Canary", equals="1"),)),
        to=Target(tags={"track": "canary"}),
    ),
    ConditionRule(
        match=Match(methods=("Write",), headers=(HeaderMatch(name="x-debug", present=True),)),
        to=Target(tags={"track": "canary", "zone": "a"}),
    ),
    ConditionRule(match=Match(methods=("Write",)), to=Target(tags={"zone": "a"})),
    ConditionRule(match=Match(apps=("batch",)), to=Target(tags={"zone": "b"})),
    # Matches, but targets nobody and is not forced: skipped.
    ConditionRule(
        match=Match(methods=("Scan",)),
        to=Target(tags={"zone": "mars"}),
    ),
]


def call(method: str = "Get", **headers: str) -> Invocation:
    metadata = tuple((k.replace("_", "-"), v) for k, v in headers.items())
    return Invocation("demo.Svc", method, b"", metadata, None)


@pytest.mark.parametrize(
    ("app", "invocation", "expected"),
    [
        ("web", call(), [A, B, C]),  # no rule matches: everything
        ("web", call(x_user="vip-42"), [B]),
        ("web", call(x_user="vip-42x"), [A, B, C]),  # regexes match the whole value
        ("web", call(x_canary="1"), [C]),
        ("web", call(x_canary="0"), [A, B, C]),
        ("web", call(x_user="vip-1", x_canary="1"), [B]),  # the first matching rule decides
        ("web", call("Write"), [A, C]),
        ("web", call("Write", x_debug=""), [C]),  # present, even empty
        ("web", call("Get", x_debug="1"), [A, B, C]),  # that rule is for Write only
        ("batch", call(), [B]),  # rules for the consumer app
        ("batch", call("Write"), [A, C]),
        ("web", call("Scan"), [A, B, C]),  # a rule that leaves nobody is skipped
    ],
)
def test_rules(app: str, invocation: Invocation, expected: list[Endpoint]) -> None:
    assert route_chain([ConditionRouter(RULES, app=app)], FLEET, invocation) == tuple(expected)


def test_skipped_rule_falls_through_to_the_next_match() -> None:
    rules = [
        ConditionRule(match=Match(methods=("Get",)), to=Target(tags={"track": "nightly"})),
        ConditionRule(match=Match(), to=Target(tags={"zone": "b"})),
    ]
    assert route_chain([ConditionRouter(rules)], FLEET, call()) == (B,)


def test_absent_header() -> None:
    rules = [
        ConditionRule(
            match=Match(headers=(HeaderMatch(name="x-canary", present=False),)),
            to=Target(tags={"track": "stable"}),
        )
    ]
    router = [ConditionRouter(rules)]
    assert route_chain(router, FLEET, call()) == (A, B)
    assert route_chain(router, FLEET, call(x_canary="1")) == (A, B, C)


def test_forced_rule_that_leaves_nothing_names_itself() -> None:
    rules = [
        ConditionRule(match=Match(methods=("Write",)), to=Target(tags={"zone": "a"})),
        ConditionRule(
            match=Match(headers=(HeaderMatch(name="x-canary", equals="1"),)),
            to=Target(tags={"track": "canary"}),
            force=True,
        ),
    ]
    stable_only = [A, B]
    with pytest.raises(NoProviderError) as info:
        route_chain([ConditionRouter(rules)], stable_only, call(x_canary="1"))
    assert str(info.value) == (
        "no provider of demo.Svc/Get: router 'condition' (rule #2: header x-canary == 1 → "
        "tags track=canary, force) left no endpoint of 2; fix the routing rule, or start a "
        "provider it accepts"
    )
    assert info.value.service == "demo.Svc"
    assert info.value.method == "Get"


def test_rule_names_and_numbers_survive_app_filtering() -> None:
    rules = [
        ConditionRule(match=Match(apps=("other",)), to=Target(tags={"zone": "a"})),
        ConditionRule(
            name="eu-only",
            match=Match(methods=("Get", "List")),
            to=Target(tags={"zone": "eu"}),
            force=True,
        ),
    ]
    with pytest.raises(NoProviderError, match=r"\(rule #2 'eu-only': method in \(Get, List\)"):
        route_chain([ConditionRouter(rules, app="web")], FLEET, call())


@pytest.mark.parametrize(
    ("rule", "text"),
    [
        (
            ConditionRule(
                match=Match(headers=(HeaderMatch(name="x-canary", equals="1"),)),
                to=Target(tags={"track": "canary"}),
            ),
            "header x-canary == 1 → tags track=canary",
        ),
        (
            ConditionRule(
                match=Match(
                    methods=("Get",),
                    headers=(
                        HeaderMatch(name="x-u", regex="a.*"),
                        HeaderMatch(name="x-d", present=False),
                    ),
                    apps=("web", "cli"),
                ),
                to=Target(tags={"a": "1", "b": "2"}, addresses=("10.0.0.1:1", "10.0.0.2")),
                force=True,
            ),
            "method Get, header x-u ~ a.*, header x-d absent, app in (web, cli) → "
            "tags a=1,b=2, addresses 10.0.0.1:1, 10.0.0.2, force",
        ),
        (ConditionRule(to=Target(tags={"z": "a"})), "any call → tags z=a"),
    ],
)
def test_rules_describe_themselves(rule: ConditionRule, text: str) -> None:
    assert str(rule) == text


BAD: list[tuple[Any, str]] = [
    (lambda: HeaderMatch(name="x-a"), "exactly one"),
    (lambda: HeaderMatch(name="x-a", equals="1", present=True), "exactly one"),
    (lambda: HeaderMatch(name="", equals="1"), "name"),
    (lambda: HeaderMatch(name="x-a", regex="("), "bad regex"),
    (lambda: HeaderMatch(name="x-a", equals=1), "equals must be a string"),
    (lambda: HeaderMatch(name="x-a", present="yes"), "present"),
    (lambda: Match(methods="Get"), "methods must be a list"),
    (lambda: Match(apps=("",)), "apps"),
    (lambda: Match(headers=HeaderMatch(name="x", equals="1")), "headers"),
    (lambda: Match(headers=("x-a",)), "HeaderMatch"),
    (lambda: Target(), "give tags and/or addresses"),
    (lambda: Target(tags={"track": 1}), "tags must map"),
    (lambda: Target(addresses=("10.0.0.1:http",)), "port"),
    (lambda: ConditionRule(match=Match(), to={"tags": {"a": "b"}}), "to must be a Target"),
    (lambda: ConditionRule(to=Target(tags={"a": "b"}), force="yes"), "force"),
    (lambda: ConditionRouter(["rule"]), "rule #1"),
    (lambda: ConditionRouter([], app=None), "app"),
]


@pytest.mark.parametrize(("make", "mentioned"), BAD)
def test_bad_rules_are_refused_clearly(make: Any, mentioned: str) -> None:
    with pytest.raises(ConfigurationError, match=mentioned):
        make()


def test_rule_shapes_are_frozen_and_hashable() -> None:
    rule = RULES[1]
    assert hash(rule) == hash(
        ConditionRule(
            match=Match(headers=(HeaderMatch(name="x-canary", equals="1"),)),
            to=Target(tags={"track": "canary"}),
        )
    )
    with pytest.raises(AttributeError):
        rule.force = True  # type: ignore[misc]
