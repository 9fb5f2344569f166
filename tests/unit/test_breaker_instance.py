"""Outlier ejection: streaks, growing ejection times, probes, the ejection cap, forgetting."""

from __future__ import annotations

import logging

import pytest

from dubbok.breaker import BreakerState, InstanceBreakerPolicy, OutlierDetector
from dubbok.outcome import Verdict

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
A, B, C, D = "10.0.0.1:50051", "10.0.0.2:50051", "10.0.0.3:50051", "10.0.0.4:50051"


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, BreakerState, BreakerState, str]] = []

    def state_changed(self, name: str, old: BreakerState, new: BreakerState, reason: str) -> None:
        self.events.append((name, old, new, reason))


def make(
    members: tuple[str, ...] = (A, B, C, D), listener: Recorder | None = None, **options: object
) -> OutlierDetector:
    options = {"consecutive_failures": 5, "base_ejection_time": 10.0, **options}
    detector = OutlierDetector(
        "helloworld.Greeter",
        InstanceBreakerPolicy(**options),  # type: ignore[arg-type]
        listeners=[listener] if listener else [],
    )
    detector.retain(members)
    return detector


def fail(detector: OutlierDetector, address: str, now: float, times: int = 5) -> None:
    for _ in range(times):
        detector.record(address, Verdict.UNAVAILABLE, now)


def test_ejects_after_consecutive_failures() -> None:
    detector = make()
    fail(detector, A, 0.0, times=4)
    assert detector.allowed(A, 0.0)
    fail(detector, A, 0.0, times=1)
    assert not detector.allowed(A, 0.0)
    assert detector.allowed(B, 0.0)
    assert detector.ejected(0.0) == {A}
    assert detector.state(A) is OPEN
    assert detector.explain(A, 4.0) == (
        f"{A} is ejected for 6.0 s more: 5 consecutive failures (last: UNAVAILABLE); "
        "ejection #1 for 10 s"
    )


@pytest.mark.parametrize("verdict", [Verdict.OK, Verdict.BUSINESS])
def test_an_answer_ends_the_streak(verdict: Verdict) -> None:
    detector = make()
    for _ in range(10):
        fail(detector, A, 0.0, times=4)
        detector.record(A, verdict, 0.0)
    assert detector.allowed(A, 0.0) and detector.ejected(0.0) == frozenset()


def test_business_errors_never_eject() -> None:
    detector = make()
    for _ in range(100):
        detector.record(A, Verdict.BUSINESS, 0.0)
    assert detector.allowed(A, 0.0) and detector.state(A) is CLOSED


def test_half_open_takes_one_probe_and_success_closes() -> None:
    detector = make()
    fail(detector, A, 0.0)
    assert not detector.allowed(A, 9.99)
    assert detector.ejected(10.0) == frozenset(), "ejection time is up: back in candidates"
    assert detector.allowed(A, 10.0)  # the probe
    assert detector.state(A) is HALF_OPEN
    assert not detector.allowed(A, 10.5), "one probe at a time"
    detector.record(A, Verdict.OK, 10.6)
    assert detector.state(A) is CLOSED
    assert all(detector.allowed(A, 10.7) for _ in range(10))


def test_ejection_time_grows_with_each_ejection_up_to_the_maximum() -> None:
    detector = make(max_ejection_time=25.0)
    now = 0.0
    fail(detector, A, now)
    durations = []
    for _ in range(4):
        until = now
        while not detector.allowed(A, until):
            until += 0.5
        durations.append(until - now)
        now = until
        detector.record(A, Verdict.TIMEOUT, now)  # the probe fails: ejected again
    assert durations == [10.0, 20.0, 25.0, 25.0]


def test_ejection_count_decays_while_the_endpoint_stays_healthy() -> None:
    detector = make()
    fail(detector, A, 0.0)
    assert detector.allowed(A, 10.0)
    detector.record(A, Verdict.TIMEOUT, 10.0)  # ejection #2, for 20 s
    assert detector.allowed(A, 30.0)
    detector.record(A, Verdict.OK, 30.0)  # healthy again, with 2 ejections on record
    fail(detector, A, 35.0)  # 5 s healthy: no decay → ejection #3 for 30 s
    assert "ejection #3 for 30 s" in detector.explain(A, 35.0)
    assert detector.allowed(A, 65.0)
    detector.record(A, Verdict.OK, 65.0)
    fail(detector, A, 90.0)  # 25 s healthy: two ejections forgiven → #2 for 20 s
    assert "ejection #2 for 20 s" in detector.explain(A, 90.0)


def test_a_lost_probe_is_replaced_after_base_ejection_time() -> None:
    detector = make()
    fail(detector, A, 0.0)
    assert detector.allowed(A, 10.0)
    assert not detector.allowed(A, 19.0)
    assert detector.allowed(A, 20.0)


def test_never_more_than_max_ejection_percent_ejected(caplog: pytest.LogCaptureFixture) -> None:
    detector = make(max_ejection_percent=50)
    fail(detector, A, 0.0)
    fail(detector, B, 2.0)
    with caplog.at_level(logging.WARNING, logger="dubbok.breaker"):
        fail(detector, C, 3.0, times=8)
    assert detector.ejected(3.0) == {A, B}
    assert detector.allowed(C, 3.0) and detector.state(C) is CLOSED
    assert detector.refused_ejections == 4  # failures 5 to 8 each met the threshold
    assert caplog.text.count("not ejecting") == 1, "logged once per streak"
    # A comes back; C's next failure may now eject it.
    assert detector.allowed(A, 10.0)
    detector.record(A, Verdict.OK, 10.0)
    detector.record(C, Verdict.SERVER_ERROR, 11.0)
    assert detector.ejected(11.0) == {B, C}


@pytest.mark.parametrize(
    ("members", "percent", "ejectable"),
    [
        ((A,), 50, 0),  # a lone endpoint is never ejected at 50 %
        ((A,), 100, 1),
        ((A, B), 50, 1),
        ((A, B, C), 50, 1),
        ((A, B, C, D), 50, 2),
        ((A, B, C, D), 0, 0),
    ],
)
def test_cap_table(members: tuple[str, ...], percent: float, ejectable: int) -> None:
    detector = make(members, max_ejection_percent=percent)
    for address in members:
        fail(detector, address, 0.0)
    assert len(detector.ejected(0.0)) == ejectable


def test_half_open_endpoints_count_against_the_cap() -> None:
    detector = make((A, B), max_ejection_percent=50)
    fail(detector, A, 0.0)
    assert detector.allowed(A, 10.0)  # half-open, not yet trusted
    fail(detector, B, 10.0)
    assert detector.ejected(10.0) == frozenset()
    assert detector.state(B) is CLOSED


def test_retain_forgets_endpoints_that_left() -> None:
    listener = Recorder()
    detector = make(listener=listener)
    fail(detector, A, 0.0)
    fail(detector, B, 0.0, times=4)
    detector.retain([B, C, D])
    assert detector.ejected(0.0) == frozenset()
    assert detector.state(A) is CLOSED
    fail(detector, A, 0.0)  # late results for an endpoint that left are ignored
    assert detector.state(A) is CLOSED
    fail(detector, B, 0.0, times=1)  # B kept its streak
    assert detector.ejected(0.0) == {B}
    name = f"helloworld.Greeter@{A}"
    assert (name, OPEN, CLOSED, "left the service's endpoints") in listener.events


def test_listeners_hear_each_endpoint_transition() -> None:
    listener = Recorder()
    detector = make(listener=listener)
    fail(detector, A, 0.0)
    assert detector.allowed(A, 10.0)
    detector.record(A, Verdict.OK, 10.0)
    name = f"helloworld.Greeter@{A}"
    assert [(n, old, new) for n, old, new, _ in listener.events] == [
        (name, CLOSED, OPEN),
        (name, OPEN, HALF_OPEN),
        (name, HALF_OPEN, CLOSED),
    ]
    assert listener.events[0][3] == (
        "5 consecutive failures (last: UNAVAILABLE); ejection #1 for 10 s"
    )


def test_ejected_set_expires_without_further_calls() -> None:
    detector = make()
    fail(detector, A, 0.0)
    assert detector.ejected(1.0) == {A}
    fail(detector, B, 5.0)
    assert detector.ejected(6.0) == {A, B}
    assert detector.ejected(12.0) == {B}
    assert detector.ejected(15.0) == frozenset()


def test_unknown_endpoints_are_allowed_and_reconfigure_applies() -> None:
    detector = make()
    assert detector.allowed("10.9.9.9:1", 0.0)
    detector.reconfigure(InstanceBreakerPolicy(consecutive_failures=2))
    fail(detector, A, 0.0, times=2)
    assert detector.state(A) is OPEN
