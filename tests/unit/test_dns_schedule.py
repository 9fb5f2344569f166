"""ResolveSchedule: TTL clamping, failure backoff and rate-limited refresh, on a fake clock."""

from __future__ import annotations

import math

import pytest

from dubbok.discovery._dns_schedule import ResolveSchedule
from dubbok.errors import ConfigurationError


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_first_lookup_is_due_at_once(clock: FakeClock) -> None:
    schedule = ResolveSchedule(1.0, 30.0, clock)
    assert schedule.delay() == 0.0


@pytest.mark.parametrize(
    ("ttl", "expected"),
    [
        (0, 1.0),  # TTL 0 would be a busy loop: the floor wins
        (0.5, 1.0),
        (1, 1.0),
        (5, 5.0),  # CoreDNS default
        (30, 30.0),  # kubeadm
        (86400, 30.0),  # a day-long TTL is capped by the ceiling
    ],
)
def test_next_lookup_follows_the_ttl_clamped(clock: FakeClock, ttl: float, expected: float) -> None:
    schedule = ResolveSchedule(1.0, 30.0, clock)
    schedule.started()
    clock.advance(0.25)  # the answer took a while: the TTL runs from its arrival
    assert schedule.succeeded(ttl) == expected
    assert schedule.delay() == expected
    clock.advance(expected - 0.01)
    assert schedule.delay() == pytest.approx(0.01)
    clock.advance(0.01)
    assert schedule.delay() == 0.0


def test_failures_back_off_from_floor_to_ceiling_and_reset_on_success(clock: FakeClock) -> None:
    schedule = ResolveSchedule(1.0, 30.0, clock)
    waits = []
    for _ in range(8):
        schedule.started()
        waits.append(schedule.failed())
        clock.advance(waits[-1])
    assert waits == [1, 2, 4, 8, 16, 30, 30, 30]
    assert schedule.failures == 8
    schedule.started()
    assert schedule.succeeded(5) == 5
    assert schedule.failures == 0
    schedule.started()
    assert schedule.failed() == 1  # a new outage starts again at the floor


def test_a_long_outage_does_not_overflow(clock: FakeClock) -> None:
    schedule = ResolveSchedule(0.5, 60.0, clock)
    for _ in range(5000):
        schedule.started()
        wait = schedule.failed()
    assert wait == 60.0


def test_nothing_is_due_while_a_lookup_runs(clock: FakeClock) -> None:
    schedule = ResolveSchedule(1.0, 30.0, clock)
    schedule.started()
    assert schedule.delay() == math.inf
    assert schedule.refresh() is False  # the lookup in flight is the fresh one


def test_refresh_brings_the_lookup_forward_at_most_once_per_floor(clock: FakeClock) -> None:
    schedule = ResolveSchedule(1.0, 30.0, clock)
    schedule.started()
    schedule.succeeded(30)
    clock.advance(5)
    assert schedule.refresh() is True
    assert schedule.delay() == 0.0
    schedule.started()  # the refreshed lookup, at t=5
    schedule.succeeded(30)
    clock.advance(0.25)
    # Every endpoint still fails and the consumer asks again and again: one lookup, at t=6.
    assert schedule.refresh() is True
    assert schedule.delay() == pytest.approx(0.75)
    for _ in range(100):
        assert schedule.refresh() is False
    assert schedule.delay() == pytest.approx(0.75)


def test_refresh_cuts_a_failure_backoff_short_but_not_below_the_floor(clock: FakeClock) -> None:
    schedule = ResolveSchedule(1.0, 30.0, clock)
    for _ in range(6):
        schedule.started()
        schedule.failed()
    assert schedule.delay() == 30.0
    clock.advance(0.5)
    assert schedule.refresh() is True
    assert schedule.delay() == pytest.approx(0.5)  # 1 s after the last lookup started


def test_refresh_when_already_due_changes_nothing(clock: FakeClock) -> None:
    schedule = ResolveSchedule(1.0, 30.0, clock)
    assert schedule.refresh() is False
    assert schedule.delay() == 0.0


@pytest.mark.parametrize(
    ("min_ttl", "max_ttl", "message"),
    [
        (0, 30, "min_ttl must be a positive"),
        (-1, 30, "min_ttl must be a positive"),
        (math.nan, 30, "min_ttl must be a positive"),
        (5, 1, "max_ttl (1) must be a number of seconds >= min_ttl (5)"),
        (1, math.inf, "max_ttl (inf)"),
    ],
)
def test_bad_bounds_are_refused(min_ttl: float, max_ttl: float, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        ResolveSchedule(min_ttl, max_ttl)
    assert message in str(info.value)
