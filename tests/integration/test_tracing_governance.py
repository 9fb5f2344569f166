"""Governance decisions show up as span events: breaker transitions, ejections, degrades."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

import dubbok
import dubbok.aio
from dubbok.endpoint import Endpoint
from dubbok.routing.tag import use_tag
from dubbok.testing import EchoServicer, ManualDiscovery, serve_provider
from dubbok.testing.pb import echo_pb2, echo_pb2_grpc
from dubbok.tracing.testing import Recorder

INTERNAL = grpc.StatusCode.INTERNAL.value[0]
SERVICE = "dubbok.testing.v1.Echo"


@pytest.fixture
def rec() -> Iterator[Recorder]:
    recorder = Recorder()
    yield recorder
    recorder.shutdown()


def events(rec: Recorder) -> list[str]:
    return [e.name for s in rec.spans if s.parent is None for e in s.events]


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


def _routed(rec: Recorder) -> list[dict[str, Any]]:
    return [
        dict(e.attributes or {})
        for s in rec.spans
        if s.parent is None
        for e in s.events
        if e.name == "routed"
    ]


ROUTES = [
    {"match": {"header": "x-canary", "equals": "1"}, "to": {"tags": {"track": "canary"}}},
    {"name": "pin-a", "match": {"header": "x-pin"}, "to": {"tags": {"track": "stable"}}},
]


def test_a_call_routed_by_a_rule_or_a_tag_lane_says_so(rec: Recorder) -> None:
    with (
        serve_provider(EchoServicer("a")) as a,
        serve_provider(EchoServicer("b")) as b,
        serve_provider(EchoServicer("g")) as g,
    ):
        disc = ManualDiscovery()
        disc.set(
            SERVICE,
            [
                Endpoint.parse(a.address, tags={"track": "stable"}),
                Endpoint.parse(b.address, tags={"track": "canary"}),
                Endpoint.parse(g.address, tags={"track": "canary", "tag": "gray"}),
            ],
        )
        with dubbok.App("c", observer=rec.observer) as app:
            echo = app.reference(echo_pb2_grpc.EchoStub, discovery=disc, routes=ROUTES)
            assert echo.Echo(echo_pb2.EchoRequest(), metadata=[("x-canary", "1")]).served_by == "b"
            assert _routed(rec) == [
                {
                    "dubbok.route.routers": ("tag", "condition"),
                    "dubbok.route.rule": "tag: untagged call: the untagged endpoints; "
                    "condition: rule #1: header x-canary == 1 → tags track=canary",
                    "dubbok.route.candidates": 1,
                    "dubbok.route.endpoints": 3,
                }
            ]
            rec.clear()
            with use_tag("blue"):  # no such lane
                assert echo.Echo(echo_pb2.EchoRequest(), metadata=[("x-pin", "")]).served_by == "a"
            (routed,) = _routed(rec)
            assert routed["dubbok.route.rule"] == (
                "tag: call tagged 'blue': no endpoint in that lane, the untagged ones; "
                "condition: rule #2 'pin-a': header x-pin present → tags track=stable"
            )
            rec.clear()
            with use_tag("gray"):
                assert echo.Echo(echo_pb2.EchoRequest()).served_by == "g"
            (routed,) = _routed(rec)
            assert routed["dubbok.route.routers"] == ("tag",)
            assert routed["dubbok.route.candidates"] == 1
            rec.clear()

        async def main() -> str:
            async with dubbok.aio.App("c", observer=rec.observer) as aio_app:
                ref = aio_app.reference(echo_pb2_grpc.EchoStub, discovery=disc, routes=ROUTES)
                reply = await ref.Echo(echo_pb2.EchoRequest(), metadata=[("x-canary", "1")])
                return str(reply.served_by)

        assert asyncio.run(main()) == "b"
        (routed,) = _routed(rec)
        assert routed["dubbok.route.routers"] == ("tag", "condition")


def test_an_unrouted_call_has_no_routed_event(rec: Recorder) -> None:
    with (
        serve_provider(EchoServicer("p")) as provider,
        dubbok.App("c", observer=rec.observer) as app,
    ):
        echo = app.reference(echo_pb2_grpc.EchoStub, discovery=provider.url, routes=ROUTES)
        echo.Echo(echo_pb2.EchoRequest())  # no rule matches, no tag lanes
    assert rec.spans and _routed(rec) == []


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
