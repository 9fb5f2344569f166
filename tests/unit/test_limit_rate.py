"""The token-bucket QPS limit, on a fake clock."""

from __future__ import annotations

import pytest

from dubbok.errors import ConfigurationError
from dubbok.limit import RateLimiter


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("qps", "offered", "seconds"),
    [(10, 100, 5.0), (100, 1000, 3.0), (2000, 5000, 3.0), (1000, 1200, 4.0), (50, 51, 3.0)],
)
def test_admits_qps_within_ten_percent(qps: float, offered: float, seconds: float) -> None:
    clock = FakeClock(100.0)
    limiter = RateLimiter("SayHello", qps, clock=clock)
    admitted = 0
    step = 1.0 / offered
    for i in range(int(offered * seconds)):
        clock.now = 100.0 + i * step
        admitted += limiter.try_acquire()
    assert admitted == pytest.approx(qps * seconds, rel=0.10)
    assert limiter.rejected == int(offered * seconds) - admitted


def test_under_the_limit_everything_passes() -> None:
    clock = FakeClock()
    limiter = RateLimiter("SayHello", 100, clock=clock)
    for i in range(300):  # 50 calls per second for 6 s
        clock.now = i * 0.02
        assert limiter.try_acquire()


def test_burst_is_available_at_once_then_refills_at_qps() -> None:
    clock = FakeClock()
    limiter = RateLimiter("SayHello", 100, burst=20, clock=clock)
    assert sum(limiter.try_acquire() for _ in range(50)) == 20
    clock.now = 0.1  # 10 tokens refilled
    assert sum(limiter.try_acquire() for _ in range(50)) == 10
    clock.now = 100.0  # a long idle spell refills only up to the burst
    assert sum(limiter.try_acquire() for _ in range(50)) == 20


def test_default_burst_is_a_tenth_of_a_second_and_at_least_one() -> None:
    assert RateLimiter("m", 2000).burst == 200
    assert RateLimiter("m", 5).burst == 1


def test_rejection_names_the_limit() -> None:
    assert RateLimiter("SayHello", 2000).rejection == "SayHello: qps 2000 reached"


@pytest.mark.parametrize(("qps", "burst"), [(0, None), (-1, None), ("fast", None), (10, 0.5)])
def test_bad_settings(qps: object, burst: object) -> None:
    with pytest.raises(ConfigurationError, match=r"SayHello\.(qps|burst) must be a number"):
        RateLimiter("SayHello", qps, burst=burst)  # type: ignore[arg-type]
