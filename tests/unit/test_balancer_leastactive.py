"""leastactive: the endpoint with the fewest calls in flight wins; ties split by weight."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from dubbok.balancer.leastactive import LeastActiveBalancer
from dubbok.endpoint import Endpoint
from dubbok.invocation import Invocation
from dubbok.outcome import Verdict

CALL = Invocation("demo.Svc", "Get", b"", (), None)


def endpoints(n: int, weight: int = 100) -> list[Endpoint]:
    return [Endpoint(f"10.0.2.{i + 1}", 50051, weight=weight) for i in range(n)]


def occupy(balancer: LeastActiveBalancer, endpoint: Endpoint, calls: int) -> None:
    for _ in range(calls):
        balancer.started(endpoint)


@pytest.mark.parametrize(
    ("busy", "idle"),
    [
        ([3, 1, 0], 2),  # calls in flight per endpoint, then the index of the idle one
        ([1, 1, 1, 0], 3),
        ([5, 0, 5, 5, 5], 1),
    ],
)
def test_prefers_the_idle_endpoint_exactly_on_small_sets(busy: list[int], idle: int) -> None:
    balancer = LeastActiveBalancer(rng=random.Random(1))
    eps = endpoints(len(busy))
    for ep, calls in zip(eps, busy, strict=True):
        occupy(balancer, ep, calls)
    picker = balancer.build(eps)
    assert {picker.pick(CALL) for _ in range(200)} == {eps[idle]}


def test_counts_follow_started_and_finished_across_snapshots() -> None:
    balancer = LeastActiveBalancer(rng=random.Random(1))
    a, b = endpoints(2)
    occupy(balancer, a, 2)
    occupy(balancer, b, 1)
    assert balancer.build([a, b]).pick(CALL) == b
    balancer.finished(a, 0.1, Verdict.OK)
    balancer.finished(a, 0.1, Verdict.UNAVAILABLE)
    # A new snapshot (b's weight changed) sees the same counts: a is now idle.
    b2 = Endpoint(b.host, b.port, weight=300)
    assert balancer.build([a, b2]).pick(CALL) == a


def test_ties_split_by_weight() -> None:
    balancer = LeastActiveBalancer(rng=random.Random(2))
    heavy = Endpoint("10.0.2.1", 50051, weight=300)
    light = Endpoint("10.0.2.2", 50051, weight=100)
    picker = balancer.build([heavy, light])
    counts = Counter(picker.pick(CALL) for _ in range(20_000))
    assert counts[heavy] / 20_000 == pytest.approx(0.75, abs=0.02)


def test_large_sets_sample_and_still_avoid_the_busy() -> None:
    balancer = LeastActiveBalancer(rng=random.Random(3), choices=2, scan_limit=8)
    eps = endpoints(100)
    for ep in eps[:50]:
        occupy(balancer, ep, 10)
    picker = balancer.build(eps)
    counts = Counter(picker.pick(CALL) for _ in range(10_000))
    idle_share = sum(counts[ep] for ep in eps[50:]) / 10_000
    # Two draws land both on busy endpoints a quarter of the time.
    assert idle_share == pytest.approx(0.75, abs=0.03)


def test_simulated_load_spreads_evenly() -> None:
    # Calls are held open and released in order: least-active keeps in-flight counts level.
    balancer = LeastActiveBalancer(rng=random.Random(4))
    eps = endpoints(4)
    picker = balancer.build(eps)
    open_calls: list[Endpoint] = []
    for _ in range(400):
        ep = picker.pick(CALL)
        assert ep is not None
        balancer.started(ep)
        open_calls.append(ep)
        if len(open_calls) > 12:
            balancer.finished(open_calls.pop(0), 0.01, Verdict.OK)
    in_flight = [balancer.book.in_flight(ep.address) for ep in eps]
    assert max(in_flight) - min(in_flight) <= 1


def test_retry_on_a_small_set_scans_the_rest_exactly() -> None:
    balancer = LeastActiveBalancer(rng=random.Random(5))
    eps = endpoints(6)
    for ep in eps:
        occupy(balancer, ep, 3)
    balancer.finished(eps[5], 0.01, Verdict.OK)
    balancer.finished(eps[4], 0.01, Verdict.OK)
    balancer.finished(eps[4], 0.01, Verdict.OK)
    picker = balancer.build(eps)
    assert {picker.pick(CALL, {eps[4].address}) for _ in range(50)} == {eps[5]}


def test_retry_on_a_large_set_samples_the_rest() -> None:
    balancer = LeastActiveBalancer(rng=random.Random(6))
    eps = endpoints(100)
    for ep in eps[:50]:
        occupy(balancer, ep, 10)
    picker = balancer.build(eps)
    tried = {eps[60].address, eps[0].address}
    counts = Counter(picker.pick(CALL, tried) for _ in range(10_000))
    assert not counts.keys() & {eps[60], eps[0]}
    idle_share = sum(counts[ep] for ep in eps[50:]) / 10_000
    assert idle_share == pytest.approx(0.75, abs=0.03)


def test_idle_entries_of_departed_endpoints_are_pruned() -> None:
    balancer = LeastActiveBalancer()
    old = [Endpoint(f"10.1.{i // 250}.{i % 250 + 1}", 50051) for i in range(500)]
    for ep in old:
        balancer.started(ep)
        balancer.finished(ep, 0.01, Verdict.OK)
    busy = old[0]
    balancer.started(busy)
    balancer.build(endpoints(3))
    assert len(balancer.book.loads) <= 2
    assert balancer.book.in_flight(busy.address) == 1
