"""Breakers, ejection, degradation and limits against real providers on loopback."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import grpc
import pytest

import dubbok
import dubbok.aio
from dubbok.testing import (
    AsyncEchoServicer,
    EchoServicer,
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


class Broken(EchoServicer):
    """Fails every call with INTERNAL."""

    def Echo(self, request: Any, context: Any) -> Any:
        self.calls += 1
        context.abort(grpc.StatusCode.INTERNAL, f"{self.name} is broken")


def test_method_breaker_opens_short_circuits_half_opens_and_closes() -> None:
    servicer = EchoServicer("p")
    policy = {
        "method": {
            "consecutive_failures": 3,
            "error_ratio": None,
            "reset_timeout": 0.3,
            "half_open_max_calls": 1,
        },
        "instance": None,
    }
    with serve_provider(servicer) as provider, dubbok.App("c") as app:
        echo = app.reference(echo_pb2_grpc.EchoStub, discovery=provider.url, breaker=policy)
        for _ in range(3):
            with pytest.raises(dubbok.RpcError):
                echo.Echo(req(fail_code=INTERNAL))
        calls = servicer.calls
        with pytest.raises(dubbok.CircuitOpenError) as info:
            echo.Echo(req())
        assert servicer.calls == calls  # short-circuited: nothing reached the provider
        assert "3 consecutive" in str(info.value) or "consecutive" in str(info.value)

        def recovered() -> bool:
            try:
                return echo.Echo(req(text="ok")).text == "ok"
            except dubbok.CircuitOpenError:
                return False

        assert poll(recovered, timeout=3.0)  # half-open let a probe through; it closed
        assert echo.Echo(req(text="again")).text == "again"


def test_business_errors_never_open_the_breaker() -> None:
    policy = {"method": {"consecutive_failures": 2, "error_ratio": None}, "instance": None}
    with serve_provider(EchoServicer("p")) as provider, dubbok.App("c") as app:
        echo = app.reference(echo_pb2_grpc.EchoStub, discovery=provider.url, breaker=policy)
        for _ in range(5):
            with pytest.raises(dubbok.RpcError) as info:
                echo.Echo(req(fail_code=grpc.StatusCode.NOT_FOUND.value[0]))
            assert not isinstance(info.value, dubbok.CircuitOpenError)
        assert echo.Echo(req(text="fine")).text == "fine"


def test_a_failing_instance_is_ejected_and_failover_hides_it() -> None:
    broken = Broken("bad")
    with (
        serve_provider(broken) as bad,
        serve_provider(EchoServicer("g1")) as g1,
        serve_provider(EchoServicer("g2")) as g2,
        dubbok.App("c") as app,
    ):
        echo = app.reference(
            echo_pb2_grpc.EchoStub,
            discovery=f"static://{bad.address},{g1.address},{g2.address}",
            loadbalance="roundrobin",
            methods={"Echo": {"idempotent": True}},
            breaker={
                "instance": {"consecutive_failures": 3, "base_ejection_time": 30},
                "method": None,
            },
        )
        served = Counter(echo.Echo(req()).served_by for _ in range(60))
        assert set(served) == {"g1", "g2"}  # every call succeeded through failover
        assert broken.calls == 3  # ejected after three failures, then never called


def test_ejection_never_empties_the_pool() -> None:
    b1, b2 = Broken("b1"), Broken("b2")
    with serve_provider(b1) as p1, serve_provider(b2) as p2, dubbok.App("c") as app:
        echo = app.reference(
            echo_pb2_grpc.EchoStub,
            discovery=f"static://{p1.address},{p2.address}",
            retries=0,
            breaker={
                "instance": {"consecutive_failures": 1, "max_ejection_percent": 50},
                "method": None,
            },
        )
        for _ in range(10):
            with pytest.raises(dubbok.RpcError) as info:
                echo.Echo(req())
            assert not isinstance(info.value, dubbok.NoProviderError)
        assert b1.calls + b2.calls == 10  # at most one of two is ejected; calls still flow


def test_sync_fallback_and_visible_degradation() -> None:
    with serve_provider(Broken("bad")) as provider, dubbok.App("c") as app:
        echo = app.reference(echo_pb2_grpc.EchoStub, discovery=provider.url, breaker=False)
        seen: list[BaseException] = []

        @dubbok.fallback(echo.Echo)
        def later(request: Any, error: BaseException) -> Any:
            seen.append(error)
            return echo_pb2.EchoReply(text=f"fallback for {request.text}")

        assert echo.Echo(req(text="x")).text == "fallback for x"
        reply, call = echo.Echo.with_call(req(text="y"))
        assert reply.text == "fallback for y"
        assert dict(call.trailing_metadata())["x-dubbok-degraded"].startswith("fallback on Echo")
        assert isinstance(seen[0], dubbok.RpcError)
        # Business errors are answers: no fallback.
        with serve_provider(EchoServicer("ok")) as good:
            plain = app.reference(
                echo_pb2_grpc.EchoStub, discovery=good.url, fallbacks={"Echo": later}
            )
            with pytest.raises(dubbok.RpcError):
                plain.Echo(req(fail_code=grpc.StatusCode.INVALID_ARGUMENT.value[0]))


def test_async_fallback_may_be_a_coroutine() -> None:
    async def main() -> None:
        async with dubbok.aio.App("c") as app:
            echo = app.reference(
                echo_pb2_grpc.EchoStub, discovery="static://127.0.0.1:1", timeout=2.0
            )

            async def later(request: Any, error: BaseException) -> Any:
                await asyncio.sleep(0)
                return echo_pb2.EchoReply(text="async fallback")

            dubbok.aio.fallback(echo, "Echo")(later)
            assert (await echo.Echo(req())).text == "async fallback"

    asyncio.run(main())


def test_force_mock_rule_answers_without_calling_and_can_be_switched() -> None:
    servicer = EchoServicer("p")
    with serve_provider(servicer) as provider, dubbok.App("c") as app:
        echo = app.reference(echo_pb2_grpc.EchoStub, discovery=provider.url)
        dubbok.degrade(echo, "Echo", {"mode": "force", "return": {"text": "busy"}})
        assert echo.Echo(req(text="x")).text == "busy"
        assert servicer.calls == 0
        dubbok.degrade(echo, "Echo", {"mode": "force", "throw": "UNAVAILABLE"})
        with pytest.raises(dubbok.RpcError) as info:
            echo.Echo(req())
        assert info.value.code is grpc.StatusCode.UNAVAILABLE
        dubbok.degrade(echo, "Echo", None)
        assert echo.Echo(req(text="live")).text == "live"
        assert servicer.calls == 1


def test_fail_mock_rule_answers_only_counted_failures() -> None:
    with serve_provider(EchoServicer("p")) as provider, dubbok.App("c") as app:
        echo = app.reference(
            echo_pb2_grpc.EchoStub,
            discovery=provider.url,
            breaker=False,
            degrade={"Echo": {"mode": "fail", "return": {"text": "degraded"}}},
        )
        assert echo.Echo(req(text="ok")).text == "ok"
        assert echo.Echo(req(fail_code=INTERNAL)).text == "degraded"
        with pytest.raises(dubbok.RpcError):
            echo.Echo(req(fail_code=grpc.StatusCode.NOT_FOUND.value[0]))


def test_a_mock_value_that_does_not_fit_the_response_is_refused() -> None:
    with serve_provider(EchoServicer("p")) as provider, dubbok.App("c") as app:
        echo = app.reference(echo_pb2_grpc.EchoStub, discovery=provider.url)
        with pytest.raises(dubbok.ConfigurationError) as info:
            dubbok.degrade(echo, "Echo", {"mode": "force", "return": {"txet": "typo"}})
        assert "txet" in str(info.value)
        assert "dubbok.testing.v1.EchoReply" in str(info.value)
        with pytest.raises(dubbok.ConfigurationError, match="mode"):
            dubbok.degrade(echo, "Echo", {"mode": "sometimes", "return": {}})
        with pytest.raises(dubbok.ConfigurationError, match="NOT_A_STATUS"):
            dubbok.degrade(echo, "Echo", {"mode": "force", "throw": "NOT_A_STATUS"})
        assert echo.Echo(req(text="still live")).text == "still live"


def test_open_breaker_degrades_when_a_fallback_exists() -> None:
    policy = {
        "method": {"consecutive_failures": 2, "error_ratio": None, "reset_timeout": 60},
        "instance": None,
    }
    servicer = Broken("bad")
    with serve_provider(servicer) as provider, dubbok.App("c") as app:
        echo = app.reference(
            echo_pb2_grpc.EchoStub,
            discovery=provider.url,
            breaker=policy,
            fallbacks={"Echo": lambda r, e: echo_pb2.EchoReply(text=type(e).__name__)},
        )
        assert echo.Echo(req()).text == "RpcError"
        assert echo.Echo(req()).text == "RpcError"
        assert echo.Echo(req()).text == "CircuitOpenError"
        assert servicer.calls == 2


def test_provider_max_concurrency_is_exact_and_consumers_retry_elsewhere() -> None:
    class Limited(EchoServicer):
        @dubbok.method(max_concurrency=2)
        def Echo(self, request: Any, context: Any) -> Any:
            return super().Echo(request, context)

    limited = Limited("limited")
    with serve_provider(limited, max_workers=8) as provider, dubbok.App("c") as app:
        direct = app.reference(echo_pb2_grpc.EchoStub, discovery=provider.url, retries=0)
        results: list[object] = []
        lock = threading.Lock()

        def call() -> None:
            try:
                out: object = direct.Echo(req(delay=0.5)).served_by
            except dubbok.RpcError as exc:
                out = exc
            with lock:
                results.append(out)

        threads = [threading.Thread(target=call) for _ in range(2)]
        for t in threads:
            t.start()
        assert poll(lambda: limited.calls == 2)
        with pytest.raises(dubbok.RpcError) as info:
            direct.Echo(req())
        assert info.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_concurrency 2" in str(info.value)
        # A non-idempotent call refused by a limit never ran: failover may retry it.
        with serve_provider(EchoServicer("spare")) as spare:
            both = app.reference(
                echo_pb2_grpc.EchoStub,
                discovery=f"static://{provider.address},{spare.address}",
                breaker=False,
            )
            assert {both.Echo(req()).served_by for _ in range(4)} == {"spare"}
        for t in threads:
            t.join(5)
        assert results == ["limited", "limited"]


def test_provider_qps_limit_within_ten_percent() -> None:
    qps, seconds = 100, 3.0
    with (
        serve_provider(EchoServicer("p"), limits={"Echo": {"qps": qps}}) as provider,
        dubbok.App("c") as app,
    ):
        echo = app.reference(
            echo_pb2_grpc.EchoStub, discovery=provider.url, retries=0, breaker=False
        )
        ok = refused = 0
        lock = threading.Lock()
        stop = time.monotonic() + seconds

        def hammer() -> None:
            nonlocal ok, refused
            while time.monotonic() < stop:
                try:
                    echo.Echo(req())
                    with lock:
                        ok += 1
                except dubbok.RpcError as exc:
                    assert exc.code is grpc.StatusCode.RESOURCE_EXHAUSTED
                    with lock:
                        refused += 1

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 5)
    assert refused > 0
    assert abs(ok - qps * seconds) <= 0.1 * qps * seconds, (ok, refused)


def test_consumer_bulkhead_refuses_beyond_its_size() -> None:
    with serve_provider(EchoServicer("p"), max_workers=8) as provider, dubbok.App("c") as app:
        echo = app.reference(
            echo_pb2_grpc.EchoStub, discovery=provider.url, bulkhead=2, actives={"EchoStream": 1}
        )
        threads = [threading.Thread(target=lambda: echo.Echo(req(delay=0.5))) for _ in range(2)]
        for t in threads:
            t.start()
        assert poll(lambda: echo._governance.bulkhead.active == 2)  # type: ignore[attr-defined]
        with pytest.raises(dubbok.RpcError) as info:
            echo.Echo(req())
        assert info.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "bulkhead 2" in str(info.value)
        for t in threads:
            t.join(5)
        assert echo.Echo(req(text="after")).text == "after"


class _Together(EchoServicer):
    """Holds each ``together`` call until all of them are in its handlers at once: unless
    they arrive concurrently they fail (BrokenBarrierError after 4 s, within the callers'
    5 s deadline, so a failing run leaves no handler waiting)."""

    def __init__(self, parties: int) -> None:
        super().__init__("p")
        self.barrier = threading.Barrier(parties)

    def Echo(self, request: Any, context: Any) -> Any:
        if request.text == "together":
            self.barrier.wait(4)
        return super().Echo(request, context)


class _AsyncTogether(AsyncEchoServicer):
    def __init__(self, parties: int) -> None:
        super().__init__("p")
        self.parties = parties
        self.arrived = 0
        self.all_in: asyncio.Event | None = None

    async def Echo(self, request: Any, context: Any) -> Any:
        if request.text == "together":
            if self.all_in is None:
                self.all_in = asyncio.Event()
            self.arrived += 1
            if self.arrived == self.parties:
                self.all_in.set()
            await asyncio.wait_for(self.all_in.wait(), 4)  # within the callers' 5 s
        return await super().Echo(request, context)


def test_hundred_concurrent_calls_through_one_closed_breaker_are_not_serialized() -> None:
    """pybreaker's own call() would serialize these; ours must not. Every call is held by the
    provider until all hundred are in flight at once."""
    with (
        serve_provider(_Together(100), max_workers=128) as provider,
        dubbok.App("c") as app,
    ):
        echo = app.reference(echo_pb2_grpc.EchoStub, discovery=provider.url, timeout=5.0)
        echo.Echo(req())  # connect first
        replies: list[str] = []
        errors: list[BaseException] = []

        def call() -> None:
            try:
                replies.append(echo.Echo(req(text="together")).text)
            except BaseException as exc:  # recorded for the test
                errors.append(exc)

        threads = [threading.Thread(target=call) for _ in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
    assert not errors, errors[:3]
    assert replies == ["together"] * 100


def test_hundred_concurrent_async_calls_through_one_closed_breaker() -> None:
    async def main() -> list[str]:
        async with (
            serve_provider_async(_AsyncTogether(100)) as provider,
            dubbok.aio.App("c") as app,
        ):
            echo = app.reference(echo_pb2_grpc.EchoStub, discovery=provider.url, timeout=5.0)
            await echo.Echo(req())
            replies = await asyncio.gather(*(echo.Echo(req(text="together")) for _ in range(100)))
            return [reply.text for reply in replies]

    assert asyncio.run(main()) == ["together"] * 100
