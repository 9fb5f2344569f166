"""Governance decisions show up as span events: breaker transitions, ejections, degrades."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest

import dubbok
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
