"""RoutePlan: routing prepared per snapshot, a cached picker per routed subset."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Sequence

import pytest

from dubbok.balancer import Picker, create_balancer
from dubbok.balancer.roundrobin import RoundRobinBalancer
from dubbok.endpoint import Endpoint
from dubbok.errors import NoProviderError
from dubbok.invocation import Invocation
from dubbok.routing import (
    ConditionRouter,
    ConditionRule,
    DisabledRouter,
    FunctionRouter,
    HeaderMatch,
    Match,
    RoutePlan,
    Router,
    SnapshotRouter,
    TagRouter,
    Target,
    VersionRouter,
)

STABLE = [Endpoint(f"10.0.9.{i}", 50051, version="1.0", weight=w) for i, w in ((1, 2), (2, 1))]
CANARY = [Endpoint("10.0.9.3", 50051, version="1.1", tags={"tag": "canary"})]
OLD = [Endpoint("10.0.9.4", 50051, version="0.9")]
FLEET = STABLE + CANARY + OLD


def call(tag: str | None = None, method: str = "Get") -> Invocation:
    metadata = (("x-dubbok-tag", tag),) if tag is not None else ()
    return Invocation("demo.Svc", method, b"", metadata, None)


class CountingBuilds:
    """A picker factory that counts the subsets it was asked for."""

    def __init__(self) -> None:
        self.balancer = RoundRobinBalancer()
        self.built: list[tuple[Endpoint, ...]] = []

    def __call__(self, endpoints: Sequence[Endpoint]) -> Picker:
        self.built.append(tuple(endpoints))
        return self.balancer.build(endpoints)


def test_builtins_take_the_fast_path() -> None:
    for router in (VersionRouter(), DisabledRouter([]), TagRouter(), ConditionRouter([])):
        assert isinstance(router, SnapshotRouter)
        assert isinstance(router, Router)


def test_fixed_routers_run_once_and_the_subset_is_built_eagerly() -> None:
    builds = CountingBuilds()
    plan = RoutePlan([VersionRouter("1.*"), DisabledRouter(["10.0.9.2"])], FLEET, builds)
    assert builds.built == [(STABLE[0], CANARY[0])]  # before any call
    first = plan.select(call())
    assert all(plan.select(call(tag)) is first for tag in (None, "canary", "x"))
    assert len(builds.built) == 1


def test_each_routed_subset_gets_one_cached_picker() -> None:
    builds = CountingBuilds()
    plan = RoutePlan([VersionRouter("1.*"), TagRouter()], FLEET, builds)
    untagged = plan.select(call())
    canary = plan.select(call("canary"))
    assert untagged.endpoints == tuple(STABLE)
    assert canary.endpoints == tuple(CANARY)
    assert plan.select(call("canary")) is canary
    assert plan.select(call("nosuchlane")) is untagged  # fallback lands on the same subset
    assert plan.route(call()) == tuple(STABLE)
    assert sorted(len(b) for b in builds.built) == [1, 2, 3]  # eager base set, then two


def test_subset_pickers_keep_their_own_smooth_order() -> None:
    # Untagged and tagged calls interleave; each subset's round robin stays exact.
    plan = RoutePlan([TagRouter()], FLEET, create_balancer("roundrobin").build)
    tags = [None] * 2_060 + ["canary"] * 1_000  # untagged: 20 cycles of weights 2 + 1 + 100
    random.Random(1).shuffle(tags)
    counts: Counter[Endpoint] = Counter()
    for tag in tags:
        ep = plan.select(call(tag)).picker.pick(call(tag))
        assert ep is not None
        counts[ep] += 1
    assert [counts[ep] for ep in FLEET] == [40, 20, 1_000, 2_000]


def test_fixed_filters_apply_before_call_dependent_ones() -> None:
    # The canary lane is disabled: the tag router falls back to stable instead of failing,
    # whatever the order the routers were listed in.
    plan = RoutePlan([TagRouter(), DisabledRouter(["10.0.9.3:50051"])], FLEET, lambda e: _null())
    assert plan.route(call("canary")) == (*STABLE, *OLD)


def test_the_error_is_built_once_and_raised_per_call() -> None:
    plan = RoutePlan([VersionRouter("9.*"), TagRouter()], FLEET, lambda e: _null())
    for _ in range(2):
        with pytest.raises(NoProviderError, match=r"router 'version'.*left no endpoint of 4"):
            plan.select(call())


def test_empty_snapshot() -> None:
    plan = RoutePlan([TagRouter()], [], lambda e: _null())
    with pytest.raises(NoProviderError, match="the endpoint set is empty"):
        plan.select(call())


def test_a_later_router_names_itself_with_the_count_it_received() -> None:
    rules = [
        ConditionRule(
            match=Match(headers=(HeaderMatch(name="x-dubbok-tag", equals="canary"),)),
            to=Target(tags={"zone": "eu"}),
            force=True,
        )
    ]
    plan = RoutePlan([TagRouter(), ConditionRouter(rules)], FLEET, lambda e: _null())
    with pytest.raises(NoProviderError) as info:
        plan.select(call("canary"))
    assert "router 'condition' (rule #1: header x-dubbok-tag == canary → tags zone=eu, force)" in (
        str(info.value)
    )
    assert "left no endpoint of 1;" in str(info.value)


def test_plain_routers_run_per_call_on_the_current_subset() -> None:
    seen: list[tuple[Endpoint, ...]] = []

    def only_even(endpoints: Sequence[Endpoint], invocation: Invocation) -> list[Endpoint]:
        seen.append(tuple(endpoints))
        return [ep for ep in endpoints if int(ep.host.rsplit(".", 1)[1]) % 2 == 0]

    plan = RoutePlan([VersionRouter("1.*"), FunctionRouter("even", only_even)], FLEET, _builder)
    assert plan.route(call()) == (STABLE[1],)
    assert seen[-1] == (*STABLE, *CANARY)
    odd_only = [STABLE[0], CANARY[0]]
    plan = RoutePlan([FunctionRouter("even", only_even)], odd_only, _builder)
    with pytest.raises(NoProviderError) as info:
        plan.select(call())
    assert "router 'even' left no endpoint of 2" in str(info.value)


def test_cache_is_bounded() -> None:
    eps = [Endpoint(f"10.0.10.{i}", 50051, tags={"tag": f"t{i}"}) for i in range(1, 40)]
    eps.append(Endpoint("10.0.10.99", 50051))
    builds = CountingBuilds()
    plan = RoutePlan([TagRouter()], eps, builds, cache_size=4)
    for i, _ in itertools.product(range(1, 40), range(2)):
        assert plan.route(call(f"t{i}")) == (eps[i - 1],)
    assert len(plan._cache) <= 4  # the bound is the behaviour under test


def _null() -> Picker:
    return create_balancer("random").build([])


def _builder(endpoints: Sequence[Endpoint]) -> Picker:
    return create_balancer("random").build(endpoints)


def test_a_condition_router_with_no_rule_for_this_app_costs_nothing_per_call() -> None:
    other = ConditionRule(match=Match(apps=("batch",)), to=Target(tags={"zone": "b"}))
    builds = CountingBuilds()
    plan = RoutePlan([ConditionRouter([other], app="web")], FLEET, builds)
    assert plan.select(call()) is plan.select(call("canary", method="Put"))
    assert builds.built == [tuple(FLEET)]


def test_decisions_name_the_routers_that_narrowed_a_call_and_why() -> None:
    def only_even(endpoints: Sequence[Endpoint], invocation: Invocation) -> list[Endpoint]:
        return [ep for ep in endpoints if int(ep.host.rsplit(".", 1)[1]) % 2 == 0]

    plan = RoutePlan(
        [VersionRouter("1.*"), TagRouter(), FunctionRouter("even", only_even)], FLEET, _builder
    )
    assert plan.routable == 3  # the version filter applies to every call: not a decision
    tagged = RoutePlan([VersionRouter("1.*"), TagRouter()], FLEET, _builder)
    assert tagged.decisions(call("canary")) == (("tag", "call tagged 'canary': its lane"),)
    # untagged: the tag router keeps the untagged ones, the function router the even one
    assert plan.decisions(call()) == (
        ("tag", "untagged call: the untagged endpoints"),
        ("even", ""),
    )
    assert len(plan.select(call()).endpoints) == 1
