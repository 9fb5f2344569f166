"""What every built-in balancer promises: empty sets, exclusions, option checking."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest

from dubbok.balancer import BUILTIN, Balancer, Picker, create_balancer, known_balancers
from dubbok.endpoint import Endpoint
from dubbok.errors import ConfigurationError
from dubbok.invocation import Invocation
from dubbok.outcome import Verdict

NAMES = ["random", "roundrobin", "leastactive", "consistenthash", "p2c"]
CALLS = [
    Invocation("demo.Svc", "Get", f"key-{i}".encode(), (("x-user", f"u{i}"),), None)
    for i in range(50)
]


def endpoints(n: int, weight: int = 100) -> list[Endpoint]:
    return [Endpoint(f"10.0.1.{i + 1}", 50051, weight=weight) for i in range(n)]


def test_every_builtin_is_registered() -> None:
    assert set(NAMES) == set(BUILTIN)
    assert set(NAMES) <= set(known_balancers())


@pytest.mark.parametrize("name", NAMES)
def test_builtins_satisfy_the_protocols(name: str) -> None:
    balancer = create_balancer(name, rng=random.Random(1))
    assert isinstance(balancer, Balancer)
    assert isinstance(balancer.build(endpoints(3)), Picker)


@pytest.mark.parametrize("name", NAMES)
def test_empty_set_picks_none(name: str) -> None:
    picker = create_balancer(name).build([])
    assert picker.pick(CALLS[0]) is None
    assert picker.pick(CALLS[0], {"10.0.1.1:50051"}) is None


@pytest.mark.parametrize("size", [1, 3, 10, 40])
@pytest.mark.parametrize("name", NAMES)
def test_exclude_is_honoured(name: str, size: int) -> None:
    balancer = create_balancer(name, rng=random.Random(5))
    eps = endpoints(size)
    picker = balancer.build(eps)
    excluded = {ep.address for ep in eps[: max(size - 2, 0)]}
    for call in CALLS * 4:
        ep = picker.pick(call, excluded)
        assert ep is not None
        assert ep.address not in excluded
        if balancer.tracks_load:
            balancer.started(ep)


@pytest.mark.parametrize("name", NAMES)
def test_everything_excluded_picks_none(name: str) -> None:
    eps = endpoints(12)
    picker = create_balancer(name, rng=random.Random(5)).build(eps)
    everything = [ep.address for ep in eps] + ["10.9.9.9:1"]
    assert all(picker.pick(call, everything) is None for call in CALLS)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_addresses_in_exclude_are_harmless(name: str) -> None:
    eps = endpoints(2)
    picker = create_balancer(name, rng=random.Random(5)).build(eps)
    assert picker.pick(CALLS[0], ("10.9.9.9:1", "10.9.9.8:1")) in eps


@pytest.mark.parametrize("name", NAMES)
def test_weight_zero_is_never_picked(name: str) -> None:
    eps = endpoints(3)
    drained = Endpoint("10.0.1.9", 50051, weight=0)
    picker = create_balancer(name, rng=random.Random(5)).build([*eps, drained])
    assert all(picker.pick(call) != drained for call in CALLS * 10)


@pytest.mark.parametrize("name", ["leastactive", "p2c"])
def test_load_tracking_survives_unbalanced_calls(name: str) -> None:
    balancer = create_balancer(name)
    ep = endpoints(1)[0]
    # A driver finishing more than it started must not push counts below zero.
    balancer.finished(ep, 0.01, Verdict.OK)
    balancer.started(ep)
    balancer.finished(ep, 0.01, Verdict.OK)
    balancer.finished(ep, 0.01, Verdict.OK)
    assert balancer.book.in_flight(ep.address) == 0  # type: ignore[attr-defined]


BAD_OPTIONS: list[tuple[str, dict[str, Any], str]] = [
    ("random", {"warmup": -1}, "warmup"),
    ("random", {"warmup": float("nan")}, "warmup"),
    ("random", {"warmup": "60"}, "warmup"),
    ("random", {"warmup": True}, "warmup"),
    ("random", {"rng": 42}, "rng"),
    ("random", {"clock": 3.0}, "clock"),
    ("random", {"wieght": 1}, "wieght"),
    ("roundrobin", {"tau": 1.0}, "tau"),
    ("leastactive", {"choices": 1}, "choices"),
    ("leastactive", {"choices": 2.5}, "choices"),
    ("leastactive", {"scan_limit": -1}, "scan_limit"),
    ("consistenthash", {"replicas": 0}, "replicas"),
    ("consistenthash", {"replicas": 100_000}, "replicas"),
    ("consistenthash", {"key": "cookie:session"}, "key"),
    ("consistenthash", {"key": "header:"}, "key"),
    ("consistenthash", {"key": "field:a..b"}, "key"),
    ("consistenthash", {"key": 5}, "key"),
    ("consistenthash", {"weighted": "yes"}, "weighted"),
    ("p2c", {"tau": 0}, "tau"),
    ("p2c", {"tau": -3}, "tau"),
    ("p2c", {"choices": 3}, "choices"),
]


@pytest.mark.parametrize(("name", "options", "mentioned"), BAD_OPTIONS)
def test_bad_options_raise_configuration_error(
    name: str, options: dict[str, Any], mentioned: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        create_balancer(name, **options)
    assert name in str(info.value)
    assert mentioned in str(info.value)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("random", {"warmup": 60, "rng": random.Random(1), "clock": lambda: 0.0}),
        ("roundrobin", {"warmup": 0.5}),
        ("leastactive", {"choices": 3, "scan_limit": 0}),
        ("consistenthash", {"key": "header:x-user", "replicas": 10, "weighted": True}),
        ("consistenthash", {"key": "field:name"}),
        ("consistenthash", {"key": lambda inv: inv.method}),
        ("p2c", {"tau": 2.5}),
    ],
)
def test_documented_options_are_accepted(name: str, options: dict[str, Any]) -> None:
    assert create_balancer(name, **options).build(endpoints(2)).pick(CALLS[0]) is not None


@pytest.mark.parametrize("name", ["leastactive", "p2c"])
def test_concurrent_started_finished_never_drift(name: str) -> None:
    balancer = create_balancer(name)
    eps = endpoints(3)
    picker = balancer.build(eps)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for i in range(5_000):
                ep = picker.pick(CALLS[i % len(CALLS)])
                assert ep is not None
                balancer.started(ep)
                balancer.finished(ep, 0.001, Verdict.OK)
        except BaseException as exc:  # reported below, from the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [balancer.book.in_flight(ep.address) for ep in eps] == [0, 0, 0]  # type: ignore[attr-defined]
