"""Routing end to end: version/group, tag lanes (propagated downstream), condition rules."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

import dubbok
from dubbok.endpoint import Endpoint
from dubbok.routing.tag import use_tag
from dubbok.testing import EchoServicer, ManualDiscovery, Provider, serve_provider
from dubbok.testing.pb import echo_pb2, echo_pb2_grpc

SERVICE = "dubbok.testing.v1.Echo"


def req(**kw: object) -> echo_pb2.EchoRequest:
    return echo_pb2.EchoRequest(**kw)  # type: ignore[arg-type]


@contextlib.contextmanager
def fleet(**specs: dict[str, Any]) -> Iterator[tuple[ManualDiscovery, dict[str, Provider]]]:
    """Providers named by keyword, announced through a ManualDiscovery with the given
    endpoint attributes (version, group, tags)."""
    with contextlib.ExitStack() as stack:
        providers = {
            name: stack.enter_context(serve_provider(EchoServicer(name))) for name in specs
        }
        disc = ManualDiscovery()
        disc.set(
            SERVICE,
            [Endpoint.parse(providers[name].address, **attrs) for name, attrs in specs.items()],
        )
        yield disc, providers


def served(ref: Any, n: int = 12, **kw: Any) -> Counter[str]:
    return Counter(ref.Echo(req(), **kw).served_by for _ in range(n))


def test_version_and_group_select_providers() -> None:
    with (
        fleet(
            v1={"version": "1.2.0"},
            v2={"version": "2.0.0"},
            gray={"version": "1.3.0", "group": "gray"},
        ) as (disc, _),
        dubbok.App("c") as app,
    ):
        any_version = app.reference(echo_pb2_grpc.EchoStub, discovery=disc)
        assert set(served(any_version)) == {"v1", "v2"}  # group "" only, any version
        ones = app.reference(echo_pb2_grpc.EchoStub, discovery=disc, version="1.*")
        assert set(served(ones)) == {"v1"}
        gray = app.reference(echo_pb2_grpc.EchoStub, discovery=disc, group="gray")
        assert set(served(gray)) == {"gray"}
        threes = app.reference(echo_pb2_grpc.EchoStub, discovery=disc, version="3.*")
        with pytest.raises(dubbok.NoProviderError) as info:
            threes.Echo(req())
        assert "router 'version'" in str(info.value)


def test_tag_lanes_with_fallback_and_force() -> None:
    with fleet(stable={}, canary={"tags": {"tag": "canary"}}) as (disc, _), dubbok.App("c") as app:
        echo = app.reference(echo_pb2_grpc.EchoStub, discovery=disc)
        assert set(served(echo)) == {"stable"}  # untagged calls stay out of the canary lane
        assert set(served(echo, metadata=[("x-dubbok-tag", "canary")])) == {"canary"}
        with use_tag("canary"):
            assert set(served(echo)) == {"canary"}
        with use_tag("blue"):
            assert set(served(echo)) == {"stable"}  # no blue lane: falls back to untagged
        with use_tag("blue", force=True), pytest.raises(dubbok.NoProviderError) as info:
            echo.Echo(req())
        assert "router 'tag'" in str(info.value)


def test_a_tag_travels_downstream_through_a_provider() -> None:
    with fleet(stable={}, canary={"tags": {"tag": "canary"}}) as (disc, _):
        with dubbok.App("middle") as middle_app:
            downstream = middle_app.reference(echo_pb2_grpc.EchoStub, discovery=disc)

            class Middle(EchoServicer):
                def Echo(self, request: Any, context: Any) -> Any:
                    return downstream.Echo(req())

            with serve_provider(Middle("m")) as middle, dubbok.App("edge") as edge:
                front = edge.reference(echo_pb2_grpc.EchoStub, discovery=middle.url)
                assert front.Echo(req()).served_by == "stable"
                with use_tag("canary"):
                    assert front.Echo(req()).served_by == "canary"


def test_condition_rules_route_by_header_and_name_the_rule_that_emptied_the_set() -> None:
    with (
        fleet(a={"tags": {"track": "stable"}}, b={"tags": {"track": "canary"}}) as (
            disc,
            providers,
        ),
        dubbok.App("c") as app,
    ):
        echo = app.reference(
            echo_pb2_grpc.EchoStub,
            discovery=disc,
            routes=[
                {
                    "match": {"header": "x-canary", "equals": "1"},
                    "to": {"tags": {"track": "canary"}},
                },
                {"match": {"header": "x-pin"}, "to": {"addresses": [providers["a"].address]}},
                {
                    "match": {"header": "x-lane", "equals": "gold"},
                    "to": {"tags": {"track": "gold"}},
                    "force": True,
                    "name": "gold",
                },
            ],
        )
        assert set(served(echo)) == {"a", "b"}
        assert set(served(echo, metadata=[("x-canary", "1")])) == {"b"}
        assert set(served(echo, metadata=[("x-pin", "yes")])) == {"a"}
        with pytest.raises(dubbok.NoProviderError) as info:
            echo.Echo(req(), metadata=[("x-lane", "gold")])
        assert "router 'condition'" in str(info.value)
        assert "gold" in str(info.value)


def test_bad_route_rules_are_refused_with_their_path() -> None:
    with dubbok.App("c") as app:
        with pytest.raises(dubbok.ConfigurationError, match=r"routes\[0\].to"):
            app.reference(
                echo_pb2_grpc.EchoStub,
                discovery="static://a:1",
                routes=[{"match": {"header": "x"}, "to": "nowhere"}],
            )
        with pytest.raises(dubbok.ConfigurationError, match="unknown keys"):
            app.reference(
                echo_pb2_grpc.EchoStub,
                discovery="static://a:1",
                routes=[{"match": {"haeder": "x"}, "to": {"tags": {"a": "b"}}}],
            )


def test_every_balancer_works_end_to_end() -> None:
    with fleet(a={"weight": 300}, b={"weight": 100}) as (disc, _), dubbok.App("c") as app:
        for name in ("random", "roundrobin", "leastactive", "p2c"):
            echo = app.reference(echo_pb2_grpc.EchoStub, discovery=disc, loadbalance=name)
            counts = served(echo, n=200)
            assert set(counts) <= {"a", "b"}
            assert sum(counts.values()) == 200
        rr = app.reference(echo_pb2_grpc.EchoStub, discovery=disc, loadbalance="roundrobin")
        assert served(rr, n=200) == {"a": 150, "b": 50}  # weights 3:1, exactly
        sticky = app.reference(
            echo_pb2_grpc.EchoStub,
            discovery=disc,
            loadbalance="consistenthash",
        )
        first = sticky.Echo(req(text="user-42")).served_by
        assert all(sticky.Echo(req(text="user-42")).served_by == first for _ in range(10))


def test_p2c_steers_away_from_a_slow_provider_without_being_told() -> None:
    class Slow(EchoServicer):
        def Echo(self, request: Any, context: Any) -> Any:
            threading.Event().wait(0.05)  # the provider's simulated slowness
            return super().Echo(request, context)

    with contextlib.ExitStack() as stack:
        slow = stack.enter_context(serve_provider(Slow("slow")))
        fast = [stack.enter_context(serve_provider(EchoServicer(f"f{i}"))) for i in range(2)]
        app = stack.enter_context(dubbok.App("c"))
        url = "static://" + ",".join(p.address for p in (slow, *fast))
        p2c = app.reference(echo_pb2_grpc.EchoStub, discovery=url, loadbalance="p2c")
        counts = served(p2c, n=150)
    assert counts["slow"] < 15, counts  # round robin would send it 50


def test_consistent_hash_on_a_header() -> None:
    with fleet(a={}, b={}, c={}) as (disc, _), dubbok.App("c") as app:
        echo = app.reference(
            echo_pb2_grpc.EchoStub,
            discovery=disc,
            loadbalance="consistenthash",
            balancer_options={"key": "header:x-user"},
        )
        owners = {
            user: {echo.Echo(req(), metadata=[("x-user", user)]).served_by for _ in range(3)}
            # enough users that all landing on one of three endpoints (ring positions
            # follow the OS-assigned ports) is not a chance worth testing against
            for user in (f"user-{i}" for i in range(24))
        }
    assert all(len(owner) == 1 for owner in owners.values())  # each user sticks to one
    assert len({next(iter(o)) for o in owners.values()}) > 1  # and users spread out
