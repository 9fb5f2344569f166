"""No breaker or limiter holds a lock across the guarded call, and concurrent use is exact.

Each test lets 100 threads pass the gate (allow / try_acquire), then makes them all meet at
one barrier before reporting back. If the gate held a lock until the report, the second
thread could never pass it, nobody would reach the barrier's 100th place, and the barrier
would time out — so the test proves there is no serialisation without any sleep.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from dubbok.breaker import BreakerState, MethodBreaker, MethodBreakerPolicy, OutlierDetector
from dubbok.limit import AdaptiveLimiter, AdaptiveLimitPolicy, ConcurrencyLimiter
from dubbok.outcome import Verdict

THREADS = 100
BARRIER_TIMEOUT = 20.0


def run_through_barrier(
    gate: Callable[[], bool], report: Callable[[], None]
) -> list[BaseException]:
    barrier = threading.Barrier(THREADS, timeout=BARRIER_TIMEOUT)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            assert gate(), "the gate refused a call"
            barrier.wait()  # every caller is "in the call" at once
            report()
        except BaseException as error:  # collected and asserted on the main thread
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=worker, name=f"caller-{i}") for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BARRIER_TIMEOUT + 10)
    assert not any(thread.is_alive() for thread in threads)
    return errors


def test_method_breaker_does_not_serialise_calls() -> None:
    breaker = MethodBreaker("s", "m", MethodBreakerPolicy(min_calls=1000))
    errors = run_through_barrier(breaker.allow, lambda: breaker.record(Verdict.OK, 0.2))
    assert errors == []
    assert breaker.counts().calls == THREADS


def test_outlier_detector_does_not_serialise_calls() -> None:
    detector = OutlierDetector("s")
    detector.retain(["10.0.0.1:1", "10.0.0.2:1"])
    errors = run_through_barrier(
        lambda: detector.allowed("10.0.0.1:1", 0.0),
        lambda: detector.record("10.0.0.1:1", Verdict.OK, 0.0),
    )
    assert errors == []


def test_concurrency_limiter_admits_exactly_its_limit_at_once() -> None:
    limiter = ConcurrencyLimiter("SayHello", THREADS)
    errors = run_through_barrier(limiter.try_acquire, limiter.release)
    assert errors == []
    assert limiter.active == 0 and limiter.rejected == 0


def test_adaptive_limiter_does_not_serialise_calls() -> None:
    limiter = AdaptiveLimiter("SayHello", AdaptiveLimitPolicy(initial_limit=THREADS))
    tokens = threading.local()

    def gate() -> bool:
        tokens.token = limiter.acquire()
        return tokens.token is not None

    errors = run_through_barrier(gate, lambda: tokens.token.release(0.01))
    assert errors == []
    assert limiter.inflight == 0


def test_concurrent_failures_open_the_breaker_exactly_once() -> None:
    events: list[tuple[BreakerState, BreakerState]] = []

    class Listener:
        def state_changed(
            self, name: str, old: BreakerState, new: BreakerState, reason: str
        ) -> None:
            events.append((old, new))

    breaker = MethodBreaker(
        "s", "m", MethodBreakerPolicy(min_calls=50, reset_timeout=3600), listeners=[Listener()]
    )
    start = threading.Barrier(8, timeout=BARRIER_TIMEOUT)

    def hammer() -> None:
        start.wait()
        for _ in range(500):
            breaker.record(Verdict.UNAVAILABLE, 0.01)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BARRIER_TIMEOUT + 10)
    assert breaker.state is BreakerState.OPEN
    assert events == [(BreakerState.CLOSED, BreakerState.OPEN)]
