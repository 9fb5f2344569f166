"""Version and group matching; disabled addresses."""

from __future__ import annotations

import pytest

from dubbok.endpoint import Endpoint
from dubbok.errors import ConfigurationError, NoProviderError
from dubbok.invocation import Invocation
from dubbok.routing import DisabledRouter, VersionRouter, route_chain

CALL = Invocation("demo.Svc", "Get", b"", (), None)

FLEET = [
    Endpoint("10.0.6.1", 50051, version="1.0.0", group=""),
    Endpoint("10.0.6.2", 50051, version="1.2.3", group=""),
    Endpoint("10.0.6.3", 50051, version="11.0", group=""),
    Endpoint("10.0.6.4", 50051, version="2.0.0", group="blue"),
    Endpoint("10.0.6.5", 50051, version="", group=""),
    Endpoint("10.0.6.6", 50052, version="1.0.0", group="blue"),
]


def hosts(endpoints: object) -> list[str]:
    return [ep.address for ep in endpoints]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("version", "group", "expected"),
    [
        ("*", "*", [1, 2, 3, 4, 5, 6]),
        ("*", "", [1, 2, 3, 5]),  # "" is "no group", not "any group"
        ("*", "blue", [4, 6]),
        ("1.*", "*", [1, 2, 6]),  # a glob over the whole version: not 11.0
        ("1.0.0", "*", [1, 6]),
        ("1.0.0", "", [1]),
        ("", "*", [5]),  # "" is "no version"
        ("1.?.?", "*", [1, 2, 6]),
        ("[12].0.0", "*", [1, 4, 6]),
    ],
)
def test_version_and_group_matching(version: str, group: str, expected: list[int]) -> None:
    routed = route_chain([VersionRouter(version, group)], FLEET, CALL)
    assert routed == tuple(FLEET[i - 1] for i in expected)


def test_no_match_names_what_was_wanted_and_what_exists() -> None:
    with pytest.raises(NoProviderError) as info:
        route_chain([VersionRouter("3.*", "")], FLEET, CALL)
    text = str(info.value)
    assert "router 'version'" in text
    assert "'3.*'" in text
    assert "'1.0.0'" in text and "'blue'" in text
    assert "left no endpoint of 6" in text
    assert info.value.service == "demo.Svc"
    assert info.value.method == "Get"


@pytest.mark.parametrize(
    ("disabled", "expected"),
    [
        (["10.0.6.1:50051"], [2, 3, 4, 5, 6]),
        (["10.0.6.6"], [1, 2, 3, 4, 5]),  # a bare host: every port
        (["10.0.6.6:50051"], [1, 2, 3, 4, 5, 6]),  # another port of that host
        ([" 10.0.6.2:50051 ", "10.0.6.3"], [1, 4, 5, 6]),
        ([], [1, 2, 3, 4, 5, 6]),
    ],
)
def test_disabled_addresses_are_never_routed_to(disabled: list[str], expected: list[int]) -> None:
    routed = route_chain([DisabledRouter(disabled)], FLEET, CALL)
    assert routed == tuple(FLEET[i - 1] for i in expected)


def test_ipv6_disabled_entries() -> None:
    v6 = [Endpoint("::1", 50051), Endpoint("::2", 50051)]
    assert route_chain([DisabledRouter(["[::1]:50051"])], v6, CALL) == (v6[1],)
    assert route_chain([DisabledRouter(["::2"])], v6, CALL) == (v6[0],)
    assert route_chain([DisabledRouter(["[::2]"])], v6, CALL) == (v6[0],)


def test_disabling_everything_is_reported() -> None:
    with pytest.raises(NoProviderError, match=r"router 'disabled'.*10\.0\.6\.1:50051"):
        route_chain([DisabledRouter([ep.address for ep in FLEET])], FLEET, CALL)


@pytest.mark.parametrize(
    "make",
    [
        lambda: VersionRouter(1.0),  # type: ignore[arg-type]
        lambda: VersionRouter("1.*", None),  # type: ignore[arg-type]
        lambda: DisabledRouter("10.0.0.1:50051"),  # one string, not a list
        lambda: DisabledRouter(["10.0.0.1:port"]),
        lambda: DisabledRouter(["10.0.0.1:0"]),
        lambda: DisabledRouter(["fe80::1:x:y"]),
        lambda: DisabledRouter([""]),
    ],
)
def test_bad_router_options_raise(make: object) -> None:
    with pytest.raises(ConfigurationError):
        make()  # type: ignore[operator]
