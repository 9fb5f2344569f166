"""Weighted random and smooth weighted round robin honour weights."""

from __future__ import annotations

import itertools
import math
import random
import threading
from collections import Counter

import pytest

from dubbok.balancer import create_balancer
from dubbok.balancer.roundrobin import RoundRobinBalancer, RoundRobinPicker, smooth_cycle
from dubbok.endpoint import Endpoint
from dubbok.invocation import Invocation

CALL = Invocation("demo.Svc", "Get", b"", (), None)


def endpoints(*weights: int) -> list[Endpoint]:
    return [Endpoint(f"10.0.0.{i + 1}", 50051, weight=w) for i, w in enumerate(weights)]


def shares(name: str, weights: tuple[int, ...], picks: int) -> list[float]:
    eps = endpoints(*weights)
    picker = create_balancer(name, rng=random.Random(7)).build(eps)
    counts = Counter(picker.pick(CALL) for _ in range(picks))
    return [counts[ep] / picks for ep in eps]


@pytest.mark.parametrize(
    ("weights", "tolerance"),
    [
        ((100, 100, 100), 0.02),
        ((5, 1, 1), 0.02),
        ((1, 2, 3, 4), 0.02),
        ((1000, 1), 0.01),
        ((100, 0, 100), 0.02),  # weight 0 is drained
    ],
)
@pytest.mark.parametrize("name", ["random", "roundrobin"])
def test_weights_are_honoured_within_tolerance(
    name: str, weights: tuple[int, ...], tolerance: float
) -> None:
    # 20,000 picks: random's standard error per share is below 0.004; round robin is exact
    # up to the partial last cycle.
    got = shares(name, weights, 20_000)
    total = sum(weights)
    for share, weight in zip(got, weights, strict=True):
        assert share == pytest.approx(weight / total, abs=tolerance)


@pytest.mark.parametrize("name", ["random", "roundrobin"])
def test_all_zero_weights_mean_no_preference(name: str) -> None:
    got = shares(name, (0, 0), 10_000)
    assert got == pytest.approx([0.5, 0.5], abs=0.03)


def test_smooth_round_robin_gives_nginx_sequence() -> None:
    eps = endpoints(5, 1, 1)
    a, b, c = eps
    picker = RoundRobinPicker(eps, [5, 1, 1], itertools.count())
    assert [picker.pick(CALL) for _ in range(14)] == [a, a, b, a, c, a, a] * 2


def nginx(weights: list[int]) -> list[int]:
    """nginx's algorithm, step by step over every endpoint: the reference."""
    total = sum(weights)
    current = [0] * len(weights)
    order = []
    for _ in range(total):
        for i, w in enumerate(weights):
            current[i] += w
        best = max(range(len(weights)), key=lambda i: (current[i], -i))
        current[best] -= total
        order.append(best)
    return order


@pytest.mark.parametrize("seed", range(40))
def test_cycle_matches_nginx_order(seed: int) -> None:
    rng = random.Random(seed)
    weights = [rng.randint(1, 20) for _ in range(rng.randint(1, 9))]
    divisor = math.gcd(*weights)
    assert smooth_cycle(weights) == nginx([w // divisor for w in weights])


@pytest.mark.parametrize(
    ("weights", "length"),
    [
        ((100, 100, 100), 3),  # equal weights: plain rotation
        ((200, 100), 3),  # reduced by the gcd
        ((7,), 1),
    ],
)
def test_cycle_length_is_reduced_sum(weights: tuple[int, ...], length: int) -> None:
    assert len(smooth_cycle(list(weights))) == length


def test_long_cycles_are_capped_and_keep_proportions() -> None:
    rng = random.Random(1)
    weights = [rng.randint(1, 1000) for _ in range(500)]  # sum ~250,000
    cycle = smooth_cycle(weights, limit=4096)
    assert len(cycle) <= 4096 + 500
    counts = Counter(cycle)
    total = sum(weights)
    for i in (0, 100, 499):
        expected = weights[i] / total * len(cycle)
        assert abs(counts[i] - expected) <= 1 + 0.05 * expected


def test_cycle_is_smooth_when_interleaved() -> None:
    # Past the exact-order budget the cycle is interleaved by virtual time. Smooth means: at
    # every point of the cycle, each endpoint has had its share of picks to within one.
    weights = [3] * 2000 + [1] * 2000 + [2] * 2000
    cycle = smooth_cycle(weights)
    total = sum(weights)
    assert len(cycle) == total
    for i in (0, 1999, 2000, 4000, 5999):
        seen = 0
        for position, picked in enumerate(cycle, start=1):
            seen += picked == i
            assert abs(seen - weights[i] * position / total) <= 1


def test_concurrent_round_robin_picks_are_exact() -> None:
    eps = endpoints(5, 1, 1)
    picker = RoundRobinPicker(eps, [5, 1, 1], itertools.count())
    counts: Counter[Endpoint | None] = Counter()
    lock = threading.Lock()

    def work() -> None:
        local = Counter(picker.pick(CALL) for _ in range(7_000))
        with lock:
            counts.update(local)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 28,000 picks = 4,000 whole cycles: an atomic counter hands out every slot exactly once.
    assert [counts[ep] for ep in eps] == [20_000, 4_000, 4_000]


def test_pickers_start_at_different_offsets() -> None:
    balancer = RoundRobinBalancer(rng=random.Random(3))
    eps = endpoints(1, 1, 1, 1, 1, 1, 1, 1)
    firsts = {balancer.build(eps).pick(CALL) for _ in range(20)}
    assert len(firsts) > 1
