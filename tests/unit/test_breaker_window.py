"""The bucketed sliding window behind the ratio triggers."""

from __future__ import annotations

import random

import pytest

from dubbok.breaker import SlidingWindow, WindowCounts
from dubbok.errors import ConfigurationError


def test_counts_calls_failures_and_slow_calls() -> None:
    window = SlidingWindow(10.0, 10)
    window.add(0.5, failure=True, slow=False)
    window.add(0.6, failure=False, slow=True)
    window.add(3.2, failure=True, slow=True)
    counts = window.counts(3.3)
    assert counts == WindowCounts(calls=3, failures=2, slow=2)
    assert counts.error_ratio == pytest.approx(2 / 3)
    assert counts.slow_ratio == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("now", "calls"),
    [(9.99, 10), (10.0, 9), (14.5, 5), (18.99, 1), (19.0, 0), (1000.0, 0)],
)
def test_buckets_fall_out_of_the_window_one_by_one(now: float, calls: int) -> None:
    window = SlidingWindow(10.0, 10)
    for second in range(10):
        window.add(second + 0.5, failure=False, slow=False)
    assert window.counts(now).calls == calls


def test_a_reused_slot_starts_empty_and_clear_forgets_everything() -> None:
    window = SlidingWindow(1.0, 4)
    for _ in range(5):
        window.add(0.1, failure=True, slow=False)
    window.add(1.1, failure=False, slow=False)  # same slot as 0.1, one window later
    assert window.counts(1.1) == WindowCounts(calls=1, failures=0, slow=0)
    window.clear()
    assert window.counts(1.1) == WindowCounts()
    assert WindowCounts().error_ratio == 0.0


@pytest.mark.parametrize(("length", "buckets"), [(0.0, 10), (-1.0, 10), (10.0, 0)])
def test_rejects_a_shapeless_window(length: float, buckets: int) -> None:
    with pytest.raises(ConfigurationError, match="sliding window"):
        SlidingWindow(length, buckets)


def test_running_totals_match_a_recount_under_random_use() -> None:
    rng = random.Random(20240611)
    window = SlidingWindow(2.0, 8)  # 0.25 s buckets
    events: list[tuple[int, bool, bool]] = []  # (bucket number, failure, slow)
    now = 0.0
    for _ in range(5000):
        now += rng.choice([0.0, 0.01, 0.05, 0.3, 1.7, 5.0])
        failure, slow = rng.random() < 0.3, rng.random() < 0.2
        # Now and then a report arrives a little late, as from a slower thread.
        at = now - rng.choice([0.0, 0.0, 0.0, 0.2, 0.6, 3.0])
        window.add(at, failure=failure, slow=slow)
        head = int(now // 0.25)
        if int(at // 0.25) > head - 8:
            events.append((int(at // 0.25), failure, slow))
        live = [e for e in events if e[0] > head - 8]
        expected = WindowCounts(len(live), sum(e[1] for e in live), sum(e[2] for e in live))
        assert window.counts(now) == expected
