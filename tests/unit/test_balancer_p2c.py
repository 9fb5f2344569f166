"""p2c: power of two choices on peak-EWMA latency x (in flight + 1), on a fake clock."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from dubbok.balancer import Picker
from dubbok.balancer.p2c import P2CBalancer
from dubbok.endpoint import Endpoint
from dubbok.invocation import Invocation
from dubbok.outcome import Verdict

CALL = Invocation("demo.Svc", "Get", b"", (), None)


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def endpoints(n: int) -> list[Endpoint]:
    return [Endpoint(f"10.0.4.{i + 1}", 50051) for i in range(n)]


def simulate(
    balancer: P2CBalancer,
    picker: Picker,
    clock: FakeClock,
    latency: dict[Endpoint, float],
    calls: int,
    verdict: dict[Endpoint, Verdict] | None = None,
) -> Counter[Endpoint]:
    """One call at a time: pick, run for the endpoint's latency, report."""
    counts: Counter[Endpoint] = Counter()
    for _ in range(calls):
        ep = picker.pick(CALL)
        assert ep is not None
        counts[ep] += 1
        balancer.started(ep)
        clock.now += latency[ep]
        balancer.finished(ep, latency[ep], (verdict or {}).get(ep, Verdict.OK))
    return counts


def test_steers_away_from_a_slow_instance_without_being_told() -> None:
    clock = FakeClock()
    balancer = P2CBalancer(rng=random.Random(1), clock=clock)
    fast1, fast2, slow = endpoints(3)
    picker = balancer.build([fast1, fast2, slow])
    latency = {fast1: 0.01, fast2: 0.01, slow: 0.2}
    # 10,000 calls of ~10 ms: 100 s on the fake clock, ten decay times.
    counts = simulate(balancer, picker, clock, latency, 10_000)
    assert counts[slow] / 10_000 < 0.01
    # ...but keeps probing it as its estimate decays (a peak of 0.2 s falls to the fast
    # ones' 0.01 s in tau x ln 20 = 30 s), so a recovered instance is noticed.
    assert 2 <= counts[slow] <= 20
    latency[slow] = 0.01
    clock.now += 60.0  # long enough for the old peak to decay
    simulate(balancer, picker, clock, latency, 3_000)  # the estimate converges within ~tau
    later = simulate(balancer, picker, clock, latency, 3_000)
    assert later[slow] / 3_000 == pytest.approx(1 / 3, abs=0.06)


def test_calls_in_flight_raise_the_cost() -> None:
    clock = FakeClock()
    balancer = P2CBalancer(rng=random.Random(2), clock=clock)
    eps = endpoints(3)
    picker = balancer.build(eps)
    simulate(balancer, picker, clock, dict.fromkeys(eps, 0.01), 300)
    for _ in range(3):
        balancer.started(eps[0])
    # Two distinct draws always include an idle endpoint, which costs a quarter as much.
    assert eps[0] not in {picker.pick(CALL) for _ in range(500)}


def test_new_endpoints_are_tried() -> None:
    clock = FakeClock()
    balancer = P2CBalancer(rng=random.Random(3), clock=clock)
    old = endpoints(3)
    latency = {old[0]: 0.01, old[1]: 0.02, old[2]: 0.03}
    simulate(balancer, balancer.build(old), clock, latency, 600)
    new = Endpoint("10.0.4.9", 50051)
    latency[new] = 0.01
    counts = simulate(balancer, balancer.build([*old, new]), clock, latency, 2_000)
    # It starts at the typical latency, wins against slower ones, then proves fast.
    assert counts[new] / 2_000 > 0.25


def test_fast_failures_do_not_attract_traffic() -> None:
    clock = FakeClock()
    balancer = P2CBalancer(rng=random.Random(4), clock=clock)
    good1, good2, broken = endpoints(3)
    picker = balancer.build([good1, good2, broken])
    latency = {good1: 0.01, good2: 0.01, broken: 0.0001}
    verdicts = {broken: Verdict.UNAVAILABLE}
    counts = simulate(balancer, picker, clock, latency, 3_000, verdicts)
    assert counts[broken] / 3_000 < 0.1


def test_business_errors_are_ordinary_replies() -> None:
    clock = FakeClock()
    balancer = P2CBalancer(clock=clock)
    ep = endpoints(1)[0]
    balancer.started(ep)
    balancer.finished(ep, 0.02, Verdict.BUSINESS)
    assert balancer.cost(ep) == pytest.approx(0.02)


def test_peak_jumps_up_and_decays_with_tau() -> None:
    clock = FakeClock()
    balancer = P2CBalancer(clock=clock, tau=10.0)
    ep = endpoints(1)[0]
    for latency in (0.01, 0.01, 0.5):
        balancer.started(ep)
        clock.now += 1.0
        balancer.finished(ep, latency, Verdict.OK)
    assert balancer.cost(ep) == pytest.approx(0.5)  # believed at once
    clock.now += 10.0
    assert balancer.cost(ep) == pytest.approx(0.5 / math.e)
    # A lower sample blends in by elapsed time instead of replacing the estimate.
    balancer.started(ep)
    balancer.finished(ep, 0.01, Verdict.OK)
    assert 0.01 < balancer.cost(ep) < 0.5
