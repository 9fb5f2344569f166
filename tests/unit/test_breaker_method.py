"""The service/method breaker: trip conditions, half-open probes, listeners, messages."""

from __future__ import annotations

import logging
from typing import Any

import grpc
import pytest

from dubbok.breaker import BreakerState, MethodBreaker, MethodBreakerPolicy
from dubbok.errors import CircuitOpenError
from dubbok.outcome import Verdict

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
COUNTED = [
    Verdict.NOT_SENT,
    Verdict.UNAVAILABLE,
    Verdict.TIMEOUT,
    Verdict.OVERLOADED,
    Verdict.SERVER_ERROR,
]


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, BreakerState, BreakerState, str]] = []

    def state_changed(self, name: str, old: BreakerState, new: BreakerState, reason: str) -> None:
        self.events.append((name, old, new, reason))


def make(clock: FakeClock, *, listener: Recorder | None = None, **options: object) -> MethodBreaker:
    policy = MethodBreakerPolicy(**options)  # type: ignore[arg-type]
    return MethodBreaker(
        "helloworld.Greeter",
        "SayHello",
        policy,
        clock=clock,
        listeners=[listener] if listener else [],
    )


def trip_on_streak(
    clock: FakeClock, *, listener: Recorder | None = None, **options: object
) -> MethodBreaker:
    options = {"consecutive_failures": 3, "error_ratio": None, "reset_timeout": 10.0, **options}
    breaker = make(clock, listener=listener, **options)
    for _ in range(3):
        assert breaker.allow()
        breaker.record(Verdict.UNAVAILABLE, 0.01)
    assert breaker.state is OPEN
    return breaker


@pytest.mark.parametrize("verdict", COUNTED)
def test_opens_after_configured_consecutive_failures(verdict: Verdict) -> None:
    clock = FakeClock()
    breaker = make(clock, consecutive_failures=3, error_ratio=None)
    for _ in range(2):
        assert breaker.allow()
        breaker.record(verdict, 0.01)
    assert breaker.state is CLOSED
    breaker.record(verdict, 0.01)
    assert breaker.state is OPEN
    assert not breaker.allow()
    expected = f"3 consecutive failures (last: {verdict.name}); half-open in 10.0 s"
    assert breaker.explain() == expected


def test_a_success_ends_the_failure_streak() -> None:
    breaker = make(FakeClock(), consecutive_failures=3, error_ratio=None)
    for verdict in [Verdict.TIMEOUT, Verdict.TIMEOUT, Verdict.OK] * 5:
        breaker.record(verdict, 0.01)
    assert breaker.state is CLOSED


@pytest.mark.parametrize(
    "options",
    [
        {"consecutive_failures": 1, "error_ratio": None},
        {"error_ratio": 0.1, "min_calls": 5},
        {"error_ratio": 0.1, "slow_call_ratio": 0.1, "slow_call_threshold": 1.0, "min_calls": 5},
    ],
)
def test_business_errors_never_count_as_failures(options: dict[str, Any]) -> None:
    breaker = make(FakeClock(), **options)
    for _ in range(200):
        assert breaker.allow()
        breaker.record(Verdict.BUSINESS, 0.01)
    assert breaker.state is CLOSED
    counts = breaker.counts()
    assert (counts.calls, counts.failures) == (200, 0)


def test_business_errors_end_a_failure_streak() -> None:
    breaker = make(FakeClock(), consecutive_failures=3, error_ratio=None)
    for verdict in [Verdict.UNAVAILABLE, Verdict.UNAVAILABLE, Verdict.BUSINESS] * 5:
        breaker.record(verdict, 0.01)
    assert breaker.state is CLOSED


def test_error_ratio_waits_for_min_calls() -> None:
    breaker = make(FakeClock(), error_ratio=0.5, min_calls=10)
    for _ in range(9):
        breaker.record(Verdict.SERVER_ERROR, 0.01)
    assert breaker.state is CLOSED, "9 calls are fewer than min_calls"
    breaker.record(Verdict.OK, 0.01)
    assert breaker.state is OPEN
    assert breaker.reason == "error ratio 0.90 ≥ 0.5 over the last 10 s (10 calls)"


def test_error_ratio_below_threshold_stays_closed() -> None:
    breaker = make(FakeClock(), error_ratio=0.5, min_calls=20)
    for i in range(100):
        failed = i % 2 == 1 and i % 20 != 19  # 9 in every 20, spread out
        breaker.record(Verdict.TIMEOUT if failed else Verdict.OK, 0.01)
    assert breaker.state is CLOSED
    assert breaker.counts().error_ratio == 0.45


def test_explain_names_ratio_window_calls_and_time_to_half_open() -> None:
    clock = FakeClock()
    breaker = make(clock, error_ratio=0.5, min_calls=25, window=10, reset_timeout=10)
    for verdict in [Verdict.OK] * 9 + [Verdict.UNAVAILABLE] * 16:
        breaker.record(verdict, 0.01)
    clock.advance(2.7)
    assert not breaker.allow()
    assert breaker.explain() == (
        "error ratio 0.64 ≥ 0.5 over the last 10 s (25 calls); half-open in 7.3 s"
    )


def test_failures_older_than_the_window_no_longer_count() -> None:
    clock = FakeClock()
    breaker = make(clock, error_ratio=0.5, min_calls=20, window=10, buckets=10)
    for _ in range(15):
        breaker.record(Verdict.UNAVAILABLE, 0.01)
        clock.advance(0.1)
    clock.advance(10.0)
    for _ in range(10):
        breaker.record(Verdict.OK, 0.01)
    assert breaker.counts().calls == 10
    for _ in range(10):
        breaker.record(Verdict.OK, 0.01)
    assert breaker.state is CLOSED


def test_window_keeps_the_last_window_seconds_bucket_by_bucket() -> None:
    clock = FakeClock(0.0)
    breaker = make(clock, error_ratio=0.9, min_calls=1000, window=10, buckets=10)
    for _ in range(20):  # one call per second, half of them failures
        breaker.record(Verdict.UNAVAILABLE if int(clock.now) % 2 else Verdict.OK, 0.01)
        clock.advance(1.0)
    clock.advance(-0.5)  # 19.5 s: buckets for seconds 10..19 are live
    counts = breaker.counts()
    assert (counts.calls, counts.failures) == (10, 5)


def test_slow_call_ratio_opens_and_fast_calls_do_not() -> None:
    options: dict[str, Any] = {
        "error_ratio": None,
        "slow_call_ratio": 0.5,
        "slow_call_threshold": 0.2,
        "min_calls": 10,
    }
    fast = make(FakeClock(), **options)
    for _ in range(50):
        fast.record(Verdict.OK, 0.2)  # at the threshold is not slower than it
    assert fast.state is CLOSED

    slow = make(FakeClock(), **options)
    for latency in [0.1] * 4 + [0.3] * 5:
        slow.record(Verdict.OK, latency)
    assert slow.state is CLOSED, "9 calls are fewer than min_calls"
    slow.record(Verdict.OK, 0.3)
    assert slow.state is OPEN
    assert slow.reason == (
        "slow-call ratio 0.60 ≥ 0.5 (calls over 0.2 s) over the last 10 s (10 calls)"
    )


def test_half_open_lets_a_bounded_number_of_probes_through_then_closes() -> None:
    clock = FakeClock()
    breaker = trip_on_streak(clock, half_open_max_calls=3)
    clock.advance(9.9)
    assert not breaker.allow()
    clock.advance(0.1)
    assert [breaker.allow() for _ in range(5)] == [True, True, True, False, False]
    assert breaker.state is HALF_OPEN
    assert breaker.explain().startswith("half-open: 3 of 3 probe calls let through")
    breaker.record(Verdict.OK, 0.01)
    breaker.record(Verdict.BUSINESS, 0.01)  # the provider answered: a good probe
    assert breaker.state is HALF_OPEN
    breaker.record(Verdict.OK, 0.01)
    assert breaker.state is CLOSED
    assert breaker.counts().calls == 0, "closing starts a fresh window"
    assert all(breaker.allow() for _ in range(100))


def test_a_failed_probe_opens_again_for_another_reset_timeout() -> None:
    clock = FakeClock()
    breaker = trip_on_streak(clock, half_open_max_calls=2)
    clock.advance(10.0)
    assert breaker.allow()
    assert breaker.allow()
    breaker.record(Verdict.OK, 0.01)
    breaker.record(Verdict.TIMEOUT, 0.01)
    assert breaker.state is OPEN
    assert breaker.explain() == (
        "a half-open probe failed with TIMEOUT (it first opened on 3 consecutive failures "
        "(last: UNAVAILABLE)); half-open in 10.0 s"
    )
    clock.advance(9.99)
    assert not breaker.allow()
    clock.advance(0.01)
    assert breaker.allow()


def test_a_slow_probe_reopens_when_the_slow_call_trigger_is_on() -> None:
    clock = FakeClock()
    breaker = make(
        clock,
        error_ratio=None,
        slow_call_ratio=0.5,
        slow_call_threshold=0.2,
        min_calls=2,
        half_open_max_calls=1,
    )
    breaker.record(Verdict.OK, 1.0)
    breaker.record(Verdict.OK, 1.0)
    assert breaker.state is OPEN
    clock.advance(10.0)
    assert breaker.allow()
    breaker.record(Verdict.OK, 1.0)
    assert breaker.state is OPEN


def test_lost_probes_are_replaced_after_reset_timeout() -> None:
    clock = FakeClock()
    breaker = trip_on_streak(clock, half_open_max_calls=1)
    clock.advance(10.0)
    assert breaker.allow()
    assert not breaker.allow()
    clock.advance(9.0)
    assert not breaker.allow()
    clock.advance(1.0)  # the probe never reported back
    assert breaker.allow()
    assert not breaker.allow()


def test_results_of_calls_started_before_opening_are_ignored_while_open() -> None:
    clock = FakeClock()
    breaker = trip_on_streak(clock)
    for _ in range(10):
        breaker.record(Verdict.OK, 0.01)
    assert breaker.state is OPEN


def test_listeners_hear_every_transition_with_a_reason() -> None:
    clock = FakeClock()
    listener = Recorder()
    breaker = trip_on_streak(clock, listener=listener, half_open_max_calls=1)
    clock.advance(10.0)
    assert breaker.allow()
    breaker.record(Verdict.OK, 0.01)
    name = "helloworld.Greeter/SayHello"
    assert [(n, old, new) for n, old, new, _ in listener.events] == [
        (name, CLOSED, OPEN),
        (name, OPEN, HALF_OPEN),
        (name, HALF_OPEN, CLOSED),
    ]
    reasons = [reason for *_, reason in listener.events]
    assert reasons == [
        "3 consecutive failures (last: UNAVAILABLE)",
        "10 s passed since it opened; letting up to 1 probe calls through",
        "1 half-open probe calls succeeded",
    ]


def test_a_failing_listener_is_logged_and_does_not_break_the_breaker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        def state_changed(self, *args: object) -> None:
            raise RuntimeError("boom")

    clock = FakeClock()
    listener = Recorder()
    breaker = MethodBreaker(
        "s",
        "m",
        MethodBreakerPolicy(consecutive_failures=1, error_ratio=None),
        clock=clock,
        listeners=[Broken(), listener],
    )
    with caplog.at_level(logging.ERROR, logger="dubbok.breaker"):
        breaker.record(Verdict.TIMEOUT, 0.01)
    assert breaker.state is OPEN
    assert len(listener.events) == 1
    assert "breaker listener" in caplog.text


def test_open_error_is_a_circuit_open_error_that_explains_itself() -> None:
    clock = FakeClock()
    breaker = trip_on_streak(clock)
    error = breaker.open_error()
    assert isinstance(error, CircuitOpenError)
    assert error.code is grpc.StatusCode.UNAVAILABLE
    assert (error.service, error.method) == ("helloworld.Greeter", "SayHello")
    assert error.attempts == ()
    assert "3 consecutive failures (last: UNAVAILABLE); half-open in 10.0 s" in str(error)
    assert "No request was sent" in str(error)


def test_reset_closes_and_reconfigure_applies_new_thresholds() -> None:
    clock = FakeClock()
    breaker = trip_on_streak(clock)
    breaker.reset()
    assert breaker.state is CLOSED and breaker.allow()
    breaker.reconfigure(MethodBreakerPolicy(consecutive_failures=1, error_ratio=None))
    breaker.record(Verdict.SERVER_ERROR, 0.01)
    assert breaker.state is OPEN
    assert breaker.policy.consecutive_failures == 1
