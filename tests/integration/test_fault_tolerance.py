"""Cluster strategies against real providers: failsafe, failback, forking, broadcast,
hedging, the retry budget, the attempt header and deadline splitting."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import grpc
import pytest

import dubbok
import dubbok.aio
from dubbok.testing import (
    AsyncEchoServicer,
    EchoServicer,
    Provider,
    serve_provider,
    serve_provider_async,
    wait_until,
)
from dubbok.testing.pb import echo_pb2, echo_pb2_grpc

INTERNAL = grpc.StatusCode.INTERNAL.value[0]


def req(**kw: object) -> echo_pb2.EchoRequest:
    return echo_pb2.EchoRequest(**kw)  # type: ignore[arg-type]


def poll(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    return wait_until(predicate, timeout)


class Behaving(EchoServicer):
    """Echo with a fixed extra delay and a switch that makes it fail."""

    def __init__(self, name: str, delay: float = 0.0, broken: bool = False) -> None:
        super().__init__(name)
        self.delay = delay
        self.broken = broken
        self.attempt_headers: list[str | None] = []

    def Echo(self, request: Any, context: Any) -> Any:
        self.attempt_headers.append(dict(context.invocation_metadata()).get("x-dubbok-attempt"))
        if self.broken:
            self.calls += 1
            context.abort(grpc.StatusCode.INTERNAL, f"{self.name} is broken")
        if self.delay:
            threading.Event().wait(self.delay)  # the provider's simulated slowness
        return super().Echo(request, context)


@contextmanager
def providers(*servicers: EchoServicer) -> Iterator[tuple[list[Provider], str]]:
    with ExitStack() as stack:
        ps = [stack.enter_context(serve_provider(s, max_workers=16)) for s in servicers]
        yield ps, "static://" + ",".join(p.address for p in ps)


def test_failsafe_returns_the_default_response_on_counted_failures() -> None:
    with providers(Behaving("bad", broken=True)) as (_, url), dubbok.App("c") as app:
        echo = app.reference(echo_pb2_grpc.EchoStub, discovery=url, cluster="failsafe")
        reply, call = echo.Echo.with_call(req(text="x"))
        assert reply == echo_pb2.EchoReply()
        assert call.degraded  # type: ignore[attr-defined]
    with providers(Behaving("ok")) as (_, url), dubbok.App("c") as app:
        echo = app.reference(echo_pb2_grpc.EchoStub, discovery=url, cluster="failsafe")
        assert echo.Echo(req(text="y")).text == "y"
        with pytest.raises(dubbok.RpcError):  # a business error is an answer, not swallowed
            echo.Echo(req(fail_code=grpc.StatusCode.NOT_FOUND.value[0]))


def test_failback_retries_in_the_background_and_counts_drops() -> None:
    flaky = Behaving("flaky", broken=True)
    with providers(flaky) as (_, url), dubbok.App("c") as app:
        echo = app.reference(
            echo_pb2_grpc.EchoStub,
            discovery=url,
            cluster="failback",
            breaker=False,
            cluster_options={"interval": 0.1, "retries": 5, "queue_size": 1},
        )
        assert echo.Echo(req(text="later")) == echo_pb2.EchoReply()
        # The queue holds one call: the next failure while it waits is dropped and counted.
        assert echo.Echo(req(text="dropped")) == echo_pb2.EchoReply()
        failback = echo._failback  # type: ignore[attr-defined]
        assert failback.dropped == 1
        flaky.broken = False
        assert poll(lambda: failback.delivered == 1)
        assert flaky.calls >= 3  # two failed calls, then the background retry that got through


class _CountAttempts:
    """An observer that only records where attempts went (the client's view: a cancelled
    loser may never reach its provider)."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def call(self, invocation: Any, loadbalance: str, cluster: str) -> Any:
        return self

    def handle(self, service: str, method: str, context: Any) -> None:
        return None

    def attempt(self, endpoint: Any, number: int, metadata: Any) -> Any:
        self.sent.append(endpoint.address)
        return metadata

    def attempt_done(self, *args: Any) -> None:
        pass

    def event(self, name: str, attributes: Any) -> None:
        pass

    def done(self, code: Any, details: str) -> None:
        pass


def test_forking_answers_with_the_fastest_provider() -> None:
    slow, fast = Behaving("slow", delay=1.0), Behaving("fast")
    attempts = _CountAttempts()
    with providers(slow, fast) as (ps, url), dubbok.App("c", observer=attempts) as app:
        echo = app.reference(
            echo_pb2_grpc.EchoStub, discovery=url, cluster="forking", cluster_options={"forks": 2}
        )
        started = time.monotonic()
        assert echo.Echo(req()).served_by == "fast"
        assert time.monotonic() - started < 0.5
    assert sorted(attempts.sent) == sorted(p.address for p in ps)  # both were sent


def test_broadcast_calls_every_provider_and_names_the_ones_that_failed() -> None:
    a, b, c = Behaving("a"), Behaving("b"), Behaving("c", broken=True)
    with providers(a, b, c) as (ps, url), dubbok.App("c") as app:
        echo = app.reference(
            echo_pb2_grpc.EchoStub, discovery=url, cluster="broadcast", breaker=False
        )
        with pytest.raises(dubbok.RpcError) as info:
            echo.Echo(req())
        assert f"broadcast failed on 1 endpoint(s): {ps[2].address}" in str(info.value)
        assert (len(a.attempt_headers), len(b.attempt_headers), c.calls) == (1, 1, 1)
        c.broken = False
        echo.Echo(req())
        assert (len(a.attempt_headers), len(b.attempt_headers)) == (2, 2)


def test_hedging_sends_a_second_attempt_after_the_delay_and_takes_the_winner() -> None:
    slow, fast = Behaving("slow", delay=1.0), Behaving("fast")
    with providers(slow, fast) as (ps, url), dubbok.App("c") as app:
        echo = app.reference(
            echo_pb2_grpc.EchoStub,
            discovery=url,
            cluster="hedging",
            loadbalance="roundrobin",
            cluster_options={"hedge_delay": 0.05},
            methods={"Echo": {"idempotent": True}},
        )
        # Round robin starts one of two calls on the slow provider; that one gets hedged.
        for _ in range(2):
            started = time.monotonic()
            assert echo.Echo(req()).served_by == "fast"
            assert time.monotonic() - started < 0.5
        assert "2" in fast.attempt_headers  # a hedge says it is attempt 2
        # A non-idempotent method is never hedged.
        plain = app.reference(
            echo_pb2_grpc.EchoStub,
            discovery=f"static://{ps[0].address}",
            cluster="hedging",
            loadbalance="roundrobin",
            cluster_options={"hedge_delay": 0.05},
        )
        assert plain.Echo(req()).served_by == "slow"


def test_hedging_on_asyncio() -> None:
    class Slow(AsyncEchoServicer):
        async def Echo(self, request: Any, context: Any) -> Any:
            await asyncio.sleep(1.0)
            return await super().Echo(request, context)

    async def main() -> None:
        async with (
            serve_provider_async(Slow("slow")) as slow,
            serve_provider_async(AsyncEchoServicer("fast")) as fast,
            dubbok.aio.App("c") as app,
        ):
            echo = app.reference(
                echo_pb2_grpc.EchoStub,
                discovery=f"static://{slow.address},{fast.address}",
                cluster="hedging",
                loadbalance="roundrobin",
                cluster_options={"hedge_delay": 0.05},
                methods={"Echo": {"idempotent": True}},
            )
            for _ in range(2):  # one of the two starts on the slow provider and is hedged
                started = time.monotonic()
                assert (await echo.Echo(req())).served_by == "fast"
                assert time.monotonic() - started < 0.5
            forking = app.reference(
                echo_pb2_grpc.EchoStub,
                discovery=f"static://{slow.address},{fast.address}",
                cluster="forking",
            )
            assert (await forking.Echo(req())).served_by == "fast"

    asyncio.run(main())


def test_retry_budget_bounds_retries_when_a_provider_fails_every_call() -> None:
    bad = Behaving("bad", broken=True)
    with providers(bad, Behaving("bad2", broken=True)) as (_, url), dubbok.App("c") as app:
        echo = app.reference(
            echo_pb2_grpc.EchoStub,
            discovery=url,
            retries=1,
            breaker=False,
            methods={"Echo": {"idempotent": True}},
        )
        calls = 400
        started = time.monotonic()
        errors = []
        for _ in range(calls):
            with pytest.raises(dubbok.RpcError) as info:
                echo.Echo(req())
            errors.append(info.value)
        elapsed = time.monotonic() - started
    attempts = sum(len(e.attempts) for e in errors)
    retries = attempts - calls
    # Budget: 10 banked (min 10/s × 10 s cap = 100), + 10 % of calls, + 10/s of floor.
    assert retries <= 100 + 0.1 * calls + 10 * elapsed + 1, (retries, elapsed)
    assert retries < calls  # without the budget every call would have retried once
    assert any("retry budget" in str(e) for e in errors)


def test_a_retried_call_is_not_retried_again_downstream() -> None:
    b1, b2 = Behaving("b1", broken=True), Behaving("b2", broken=True)
    with providers(b1, b2) as (_, backend_url), dubbok.App("middle") as middle_app:
        downstream = middle_app.reference(
            echo_pb2_grpc.EchoStub,
            discovery=backend_url,
            retries=1,
            breaker=False,
            methods={"Echo": {"idempotent": True}},
        )

        class Middle(EchoServicer):
            def Echo(self, request: Any, context: Any) -> Any:
                try:
                    return downstream.Echo(req())
                except dubbok.RpcError:
                    context.abort(grpc.StatusCode.UNAVAILABLE, "backend down")

        with (
            serve_provider(Middle("m1")) as m1,
            serve_provider(Middle("m2")) as m2,
            dubbok.App("edge") as edge,
        ):
            front = edge.reference(
                echo_pb2_grpc.EchoStub,
                discovery=f"static://{m1.address},{m2.address}",
                retries=1,
                breaker=False,
                methods={"Echo": {"idempotent": True}},
            )
            with pytest.raises(dubbok.RpcError):
                front.Echo(req())
    # The edge tried both middles. The first tried both backends (a retry of its own); the
    # second, serving the edge's retry, made a single attempt: 3 backend calls, not 4.
    assert b1.calls + b2.calls == 3


def test_the_deadline_is_split_so_a_slow_first_attempt_leaves_time_for_a_retry() -> None:
    slow, fast = Behaving("slow", delay=2.0), Behaving("fast")
    with providers(slow, fast) as (ps, _), dubbok.App("c") as app:
        echo = app.reference(
            echo_pb2_grpc.EchoStub,
            discovery=f"static://{ps[0].address},{ps[1].address}",
            timeout=0.9,
            retries=2,
            breaker=False,
            methods={"Echo": {"idempotent": True}},
        )
        started = time.monotonic()
        assert echo.Echo(req()).served_by == "fast"
        assert time.monotonic() - started < 0.9
