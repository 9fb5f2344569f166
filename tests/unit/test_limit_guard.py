"""Provider admission for one method: the limits in order, messages, release."""

from __future__ import annotations

import pytest

from dubbok.limit import AdaptiveLimitPolicy, MethodGuard, MethodLimits


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_no_limits_admits_everything() -> None:
    guard = MethodGuard("SayHello", MethodLimits())
    admissions = [guard.enter() for _ in range(1000)]
    assert all(admissions)
    for admission in admissions:
        admission.release(0.01)


def test_max_concurrency_refuses_and_release_frees() -> None:
    guard = MethodGuard("SayHello", MethodLimits(max_concurrency=2))
    first, second, third = guard.enter(), guard.enter(), guard.enter()
    assert first and second and not third
    assert third.rejection == "SayHello: max_concurrency 2 reached"
    third.release(0.0)  # a refused admission releases nothing
    first.release(0.01)
    assert guard.enter()


def test_qps_is_checked_first() -> None:
    clock = FakeClock()
    guard = MethodGuard("SayHello", MethodLimits(qps=10, burst=1, max_concurrency=5), clock=clock)
    assert guard.enter()
    refused = guard.enter()
    assert refused.rejection == "SayHello: qps 10 reached"
    assert guard.concurrency is not None and guard.concurrency.active == 1


def test_adaptive_refusal_gives_back_the_concurrency_place() -> None:
    limits = MethodLimits(max_concurrency=10, adaptive=AdaptiveLimitPolicy(initial_limit=2))
    guard = MethodGuard("Search", limits)
    held = [guard.enter(), guard.enter()]
    refused = guard.enter()
    assert refused.rejection == "Search: adaptive concurrency limit 2 reached"
    assert guard.concurrency is not None and guard.concurrency.active == 2
    for admission in held:
        admission.release(0.01)
    assert guard.concurrency.active == 0
    assert guard.adaptive is not None and guard.adaptive.inflight == 0


def test_an_admission_is_released_once() -> None:
    guard = MethodGuard("SayHello", MethodLimits(max_concurrency=1))
    admission = guard.enter()
    admission.release(0.01)
    with pytest.raises(ValueError, match="released twice"):
        admission.release(0.01)
