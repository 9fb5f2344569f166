"""consistenthash: stable key → endpoint mapping that moves ~1/N of keys when N changes."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from dubbok.balancer.consistenthash import ConsistentHashBalancer, ConsistentHashPicker
from dubbok.endpoint import Endpoint
from dubbok.invocation import Invocation
from dubbok.testing.pb import helloworld_pb2

KEYS = [f"user-{i}" for i in range(10_000)]


def endpoints(n: int, weight: int = 100) -> list[Endpoint]:
    return [Endpoint(f"10.0.3.{i + 1}", 50051, weight=weight) for i in range(n)]


def call(user: str | None = None, request: object = b"") -> Invocation:
    metadata = (("x-user-id", user),) if user is not None else ()
    return Invocation("demo.Svc", "Get", request, metadata, None)


def ring(eps: list[Endpoint], **options: object) -> ConsistentHashPicker:
    picker = ConsistentHashBalancer(key="header:x-user-id", **options).build(eps)  # type: ignore[arg-type]
    assert isinstance(picker, ConsistentHashPicker)
    return picker


def owners(picker: ConsistentHashPicker) -> list[Endpoint]:
    return [picker.owner(key) for key in KEYS]


def test_same_key_same_endpoint_whatever_the_order_or_process() -> None:
    eps = endpoints(10)
    shuffled = eps[:]
    random.Random(1).shuffle(shuffled)
    first, second = ring(eps), ring(shuffled)
    assert owners(first) == owners(second)
    for user in KEYS[:200]:
        assert first.pick(call(user)) == first.owner(user) == second.pick(call(user))


def test_keys_spread_evenly() -> None:
    counts = Counter(owners(ring(endpoints(10))))
    assert len(counts) == 10
    for share in (c / len(KEYS) for c in counts.values()):
        assert share == pytest.approx(0.1, abs=0.04)


def test_removing_one_of_ten_remaps_about_a_tenth() -> None:
    eps = endpoints(10)
    before = owners(ring(eps))
    removed = eps[3]
    after = owners(ring([ep for ep in eps if ep != removed]))
    moved = [k for k, (b, a) in enumerate(zip(before, after, strict=True)) if b != a]
    assert len(moved) / len(KEYS) == pytest.approx(0.1, abs=0.05)
    # Only the removed endpoint's keys move.
    assert all(before[k] == removed for k in moved)


def test_adding_one_takes_keys_only_for_itself() -> None:
    eps = endpoints(11)
    before = owners(ring(eps[:10]))
    after = owners(ring(eps))
    moved = [k for k, (b, a) in enumerate(zip(before, after, strict=True)) if b != a]
    assert len(moved) / len(KEYS) == pytest.approx(1 / 11, abs=0.05)
    assert all(after[k] == eps[10] for k in moved)


def test_exclude_walks_on_to_the_owner_without_that_endpoint() -> None:
    eps = endpoints(6)
    full = ring(eps)
    for user in KEYS[:300]:
        owner = full.owner(user)
        without = ring([ep for ep in eps if ep != owner])
        assert full.pick(call(user), {owner.address}) == without.owner(user)


def test_weighted_ring_follows_weights() -> None:
    heavy = Endpoint("10.0.3.1", 50051, weight=300)
    light = Endpoint("10.0.3.2", 50051, weight=100)
    counts = Counter(owners(ring([heavy, light], weighted=True)))
    assert counts[heavy] / len(KEYS) == pytest.approx(0.75, abs=0.05)
    unweighted = Counter(owners(ring([heavy, light])))
    assert unweighted[heavy] / len(KEYS) == pytest.approx(0.5, abs=0.08)


def test_keyless_calls_spread_at_random() -> None:
    picker = ConsistentHashBalancer(key="header:x-user-id", rng=random.Random(1)).build(
        endpoints(4)
    )
    counts = Counter(picker.pick(call(None)) for _ in range(4_000))
    assert len(counts) == 4
    assert min(counts.values()) > 800


def test_field_key_reads_the_request_message() -> None:
    eps = endpoints(8)
    picker = ConsistentHashBalancer(key="field:name").build(eps)
    assert isinstance(picker, ConsistentHashPicker)
    for name in KEYS[:100]:
        request = helloworld_pb2.HelloRequest(name=name)
        assert picker.pick(call(request=request)) == picker.owner(name)


def test_default_key_is_the_whole_request() -> None:
    picker = ConsistentHashBalancer().build(endpoints(8))
    assert isinstance(picker, ConsistentHashPicker)
    for name in KEYS[:100]:
        request = helloworld_pb2.HelloRequest(name=name)
        assert picker.pick(call(request=request)) == picker.owner(request.SerializeToString())


def test_callable_key_and_a_failing_one() -> None:
    eps = endpoints(5)
    by_method = ConsistentHashBalancer(key=lambda inv: inv.method).build(eps)
    assert isinstance(by_method, ConsistentHashPicker)
    assert by_method.pick(call()) == by_method.owner("Get")

    def broken(inv: Invocation) -> str:
        raise KeyError("user")

    picker = ConsistentHashBalancer(key=broken, rng=random.Random(2)).build(eps)
    assert {picker.pick(call()) for _ in range(200)} == set(eps)
