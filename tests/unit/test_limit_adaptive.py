"""The adaptive (gradient) concurrency limit: grows at low latency, shrinks at high."""

from __future__ import annotations

import pytest

from dubbok.limit import AdaptiveLimiter, AdaptiveLimitPolicy, Token


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def saturate(limiter: AdaptiveLimiter) -> list[Token]:
    """Take every place, as a loaded server would."""
    tokens = []
    while (token := limiter.acquire()) is not None:
        tokens.append(token)
    return tokens


def rounds(limiter: AdaptiveLimiter, clock: FakeClock, latency: float, count: int) -> None:
    for _ in range(count):
        for token in saturate(limiter):
            token.release(latency)
        clock.now += latency


def test_acquire_is_refused_at_the_limit() -> None:
    limiter = AdaptiveLimiter("Search", AdaptiveLimitPolicy(initial_limit=5))
    tokens = saturate(limiter)
    assert len(tokens) == 5 and limiter.inflight == 5
    assert limiter.acquire() is None
    assert limiter.rejected == 2  # saturate() stopped at the first refusal
    assert limiter.rejection == "Search: adaptive concurrency limit 5 reached"
    tokens[0].release(0.01)
    assert limiter.acquire() is not None


def test_grows_while_latency_stays_at_the_minimum() -> None:
    clock = FakeClock()
    limiter = AdaptiveLimiter("Search", AdaptiveLimitPolicy(initial_limit=20), clock=clock)
    rounds(limiter, clock, 0.010, 10)
    assert limiter.limit > 40
    assert limiter.min_rtt == pytest.approx(0.010)


def test_shrinks_when_latency_rises_above_the_minimum() -> None:
    clock = FakeClock()
    limiter = AdaptiveLimiter("Search", AdaptiveLimitPolicy(initial_limit=100), clock=clock)
    rounds(limiter, clock, 0.010, 2)
    peak = limiter.limit
    rounds(limiter, clock, 0.050, 20)  # 5× the minimum: queueing
    assert limiter.limit < peak / 2
    assert limiter.limit >= 1


def test_never_leaves_min_and_max() -> None:
    clock = FakeClock()
    policy = AdaptiveLimitPolicy(initial_limit=10, min_limit=4, max_limit=30)
    limiter = AdaptiveLimiter("Search", policy, clock=clock)
    rounds(limiter, clock, 0.010, 50)
    assert limiter.limit == 30
    rounds(limiter, clock, 1.0, 50)
    assert limiter.limit == 4


def test_dropped_calls_back_off_multiplicatively() -> None:
    limiter = AdaptiveLimiter("Search", AdaptiveLimitPolicy(initial_limit=100, backoff_ratio=0.9))
    limiter.acquire().release(0.01, dropped=True)  # type: ignore[union-attr]
    assert limiter.limit == 90


def test_an_underused_limit_does_not_grow() -> None:
    clock = FakeClock()
    limiter = AdaptiveLimiter("Search", AdaptiveLimitPolicy(initial_limit=20), clock=clock)
    for _ in range(200):  # one call at a time: far below the limit
        limiter.acquire().release(0.010)  # type: ignore[union-attr]
    assert limiter.limit == 20


def test_min_rtt_is_relearnt_after_a_lasting_change() -> None:
    clock = FakeClock()
    policy = AdaptiveLimitPolicy(initial_limit=50, min_rtt_window=1.0)
    limiter = AdaptiveLimiter("Search", policy, clock=clock)
    rounds(limiter, clock, 0.010, 5)
    rounds(limiter, clock, 0.100, 5)  # the method got 10× dearer: at first that is queueing
    low = limiter.limit
    assert low < 50
    rounds(limiter, clock, 0.100, 40)  # ... but it stays so for 4 s: the new normal
    assert limiter.min_rtt == pytest.approx(0.100)
    assert limiter.limit > 2 * low


def test_a_token_is_released_once() -> None:
    limiter = AdaptiveLimiter("Search")
    token = limiter.acquire()
    assert token is not None
    token.release(0.01)
    with pytest.raises(ValueError, match="released twice"):
        token.release(0.01)
    assert limiter.inflight == 0
