"""Governance decisions show up as span events: breaker transitions, ejections, degrades."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest

import dubbok
import dubbok.aio
from dubbok.testing import EchoServicer, serve_provider
from dubbok.testing.pb import echo_pb2, echo_pb2_grpc
from dubbok.tracing.testing import Recorder

INTERNAL = grpc.StatusCode.INTERNAL.value[0]


@pytest.fixture
def rec() -> Iterator[Recorder]:
    recorder = Recorder()
    yield recorder
    recorder.shutdown()


def events(rec: Recorder) -> list[str]:
    return [e.name for s in rec.spans if s.parent is None for e in s.events]


def test_breaker_opening_and_the_refused_call_are_span_events(rec: Recorder) -> None:
    policy: dict[str, Any] = {
        "method": {"consecutive_failures": 2, "error_ratio": None, "reset_timeout": 60},
        "instance": None,
    }
    with (
        serve_provider(EchoServicer("p")) as provider,
        dubbok.App("c", observer=rec.observer) as app,
    ):
        echo = app.reference(
            echo_pb2_grpc.EchoStub,
            discovery=provider.url,
            breaker=policy,
            fallbacks={"Echo": lambda r, e: echo_pb2.EchoReply(text="fallback")},
        )
        for _ in range(2):
            assert echo.Echo(echo_pb2.EchoRequest(fail_code=INTERNAL)).text == "fallback"
        assert echo.Echo(echo_pb2.EchoRequest()).text == "fallback"  # refused: open
    names = events(rec)
    assert "breaker_opened" in names
    assert "circuit_open" in names
    assert names.count("fallback") == 3


def test_an_endpoint_ejection_is_a_span_event(rec: Recorder) -> None:
    with (
        serve_provider(EchoServicer("p")) as provider,
        dubbok.App("c", observer=rec.observer) as app,
    ):
        echo = app.reference(
            echo_pb2_grpc.EchoStub,
            discovery=provider.url,
            retries=0,
            breaker={
                "instance": {"consecutive_failures": 2, "max_ejection_percent": 100},
                "method": None,
            },
        )
        for _ in range(2):
            with pytest.raises(dubbok.RpcError):
                echo.Echo(echo_pb2.EchoRequest(fail_code=INTERNAL))
    assert "endpoint_ejected" in events(rec)


def test_streaming_calls_get_a_call_span_and_an_attempt_span(rec: Recorder) -> None:
    with (
        serve_provider(EchoServicer("p"), observer=rec.observer) as provider,
        dubbok.App("c", observer=rec.observer) as app,
    ):
        echo = app.reference(echo_pb2_grpc.EchoStub, discovery=provider.url)
        replies = list(echo.EchoStream(echo_pb2.EchoRequest(text="s", count=3)))
        assert len(replies) == 3
        spans = rec.wait_for_spans(3)  # call, attempt, server
    names = sorted(s.name for s in spans)
    assert names.count("dubbok.testing.v1.Echo/EchoStream") >= 2
    [call] = [s for s in spans if s.parent is None]
    assert all(s.context.trace_id == call.context.trace_id for s in spans)


def test_async_streaming_calls_are_traced(rec: Recorder) -> None:
    import asyncio

    from dubbok.testing import AsyncEchoServicer, serve_provider_async

    async def main() -> None:
        async with (
            serve_provider_async(AsyncEchoServicer("p"), observer=rec.observer) as provider,
            dubbok.aio.App("c", observer=rec.observer) as app,
        ):
            echo = app.reference(echo_pb2_grpc.EchoStub, discovery=provider.url)
            got = [r async for r in echo.EchoStream(echo_pb2.EchoRequest(text="a", count=2))]
            assert len(got) == 2

            async def gen() -> Any:
                for t in "xy":
                    yield echo_pb2.EchoRequest(text=t)

            assert (await echo.EchoCollect(gen())).text == "x,y"

    asyncio.run(main())
    spans = rec.wait_for_spans(6)
    roots = [s for s in spans if s.parent is None]
    assert sorted(s.name for s in roots) == [
        "dubbok.testing.v1.Echo/EchoCollect",
        "dubbok.testing.v1.Echo/EchoStream",
    ]
