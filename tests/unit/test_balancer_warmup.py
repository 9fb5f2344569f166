"""Warm-up: a new endpoint's weight ramps from 1% to full over ``warmup`` seconds."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from dubbok.balancer import Picker, create_balancer
from dubbok.balancer.weight import WarmingPicker, warm_fraction
from dubbok.endpoint import Endpoint
from dubbok.invocation import Invocation

CALL = Invocation("demo.Svc", "Get", b"", (), None)
NOW = 1_700_000_000.0


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


@pytest.mark.parametrize(
    ("started_at", "warmup", "fraction"),
    [
        (0.0, 60.0, 1.0),  # unknown start (DNS): warm
        (NOW - 30, 0.0, 1.0),  # warm-up off
        (NOW, 60.0, 0.01),  # just started: the floor
        (NOW - 0.1, 60.0, 0.01),
        (NOW - 15, 60.0, 0.25),
        (NOW - 30, 60.0, 0.5),
        (NOW - 60, 60.0, 1.0),
        (NOW - 3600, 60.0, 1.0),
        (NOW + 5, 60.0, 0.01),  # clock a little ahead: treated as just started
        (NOW + 3600, 60.0, 1.0),  # clock far off: not starved forever
    ],
)
def test_warm_fraction(started_at: float, warmup: float, fraction: float) -> None:
    ep = Endpoint("10.0.5.1", 50051, started_at=started_at)
    assert warm_fraction(ep, NOW, warmup) == pytest.approx(fraction)


def pair(started_ago: float) -> tuple[Endpoint, Endpoint]:
    old = Endpoint("10.0.5.1", 50051, started_at=NOW - 86_400)
    new = Endpoint("10.0.5.2", 50051, started_at=NOW - started_ago)
    return old, new


def new_share(picker: Picker, new: Endpoint, picks: int) -> float:
    return Counter(picker.pick(CALL) for _ in range(picks))[new] / picks


@pytest.mark.parametrize("name", ["random", "roundrobin", "leastactive", "p2c"])
def test_share_ramps_without_rebuilding(name: str) -> None:
    clock = FakeClock()
    balancer = create_balancer(name, rng=random.Random(1), clock=clock, warmup=60.0)
    old, new = pair(started_ago=15.0)
    picker = balancer.build([old, new])
    # (share at 25% weight, at 75%, at full): 25/125, 75/175, 1/2
    for expected in (0.2, 0.75 / 1.75, 0.5):
        assert new_share(picker, new, 8_000) == pytest.approx(expected, abs=0.03)
        clock.now += 30.0


def test_stops_reading_the_clock_once_warm() -> None:
    clock = FakeClock()
    balancer = create_balancer("random", clock=clock, warmup=10.0)
    old, new = pair(started_ago=5.0)
    picker = balancer.build([old, new])
    assert isinstance(picker, WarmingPicker)
    clock.now += 10.0
    picker.pick(CALL)
    reads = clock.reads
    for _ in range(100):
        picker.pick(CALL)
    assert clock.reads == reads


def test_rebuilds_at_most_every_fiftieth_of_warmup() -> None:
    clock = FakeClock()
    picker = create_balancer("roundrobin", clock=clock, warmup=100.0).build(list(pair(10.0)))
    assert isinstance(picker, WarmingPicker)
    first = picker.inner
    clock.now += 1.0  # under 100 / 50 = 2 s
    picker.pick(CALL)
    assert picker.inner is first
    clock.now += 1.0
    picker.pick(CALL)
    assert picker.inner is not first


def test_no_warmup_builds_plain_pickers() -> None:
    clock = FakeClock()
    for name in ("random", "roundrobin", "leastactive", "p2c"):
        picker = create_balancer(name, clock=clock).build(list(pair(1.0)))
        assert not isinstance(picker, WarmingPicker)
        # And a warm set needs no wrapper even with warm-up on.
        warm = create_balancer(name, clock=clock, warmup=60.0).build(list(pair(600.0)))
        assert not isinstance(warm, WarmingPicker)


def test_round_robin_ramp_is_exact_per_cycle() -> None:
    clock = FakeClock()
    old, new = pair(started_ago=30.0)
    picker = create_balancer("roundrobin", clock=clock, warmup=60.0).build([old, new])
    counts = Counter(picker.pick(CALL) for _ in range(1_500))  # whole cycles of 1 + 2
    assert counts[new] == 500
