"""Governance decisions, access-log fields, baggage and histogram units, through real sync
providers and consumers: each event, counter and field as a running call produces it."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import grpc
import pytest
from opentelemetry import baggage, context, propagate
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import (
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import dubbok
from dubbok.testing import EchoServicer, ManualDiscovery, free_port, serve_provider, wait_until
from dubbok.testing.pb import echo_pb2, echo_pb2_grpc
from dubbok.tracing import AccessLogObserver, CompositeObserver
from dubbok.tracing.testing import Recorder

SERVICE = "dubbok.testing.v1.Echo"
INTERNAL = grpc.StatusCode.INTERNAL.value[0]


def req(**kw: Any) -> echo_pb2.EchoRequest:
    return echo_pb2.EchoRequest(**kw)


@pytest.fixture
def rec() -> Iterator[Recorder]:
    recorder = Recorder()
    yield recorder
    recorder.shutdown()


def call_spans(rec: Recorder) -> list[ReadableSpan]:
    return [s for s in rec.spans if s.parent is None]


def events(span: ReadableSpan, name: str) -> list[dict[str, Any]]:
    return [dict(e.attributes or {}) for e in span.events if e.name == name]


def counted(rec: Recorder, name: str, **attributes: Any) -> float:
    return sum(
        p.value
        for p in rec.points(name)
        if all(dict(p.attributes).get(k) == v for k, v in attributes.items())
    )


class Slow(EchoServicer):
    """Echo that answers after ``delay`` seconds (held on an event, released at the end)."""

    def __init__(self, name: str, delay: float) -> None:
        super().__init__(name)
        self.delay = delay
        self.released = threading.Event()

    def Echo(self, request: Any, context: Any) -> Any:
        self.released.wait(self.delay)  # the provider's simulated slowness
        return super().Echo(request, context)


def test_a_hedge_and_the_hedge_that_won_are_events_and_counted(rec: Recorder) -> None:
    slow = Slow("slow", 5.0)
    with contextlib.ExitStack() as stack:
        stack.callback(slow.released.set)
        slow_p = stack.enter_context(serve_provider(slow))
        fast_p = stack.enter_context(serve_provider(EchoServicer("fast")))
        disc = ManualDiscovery()
        disc.set(SERVICE, [slow_p.address, fast_p.address])
        app = stack.enter_context(dubbok.App("c", observer=rec.observer))
        echo = app.reference(
            echo_pb2_grpc.EchoStub,
            discovery=disc,
            cluster="hedging",
            loadbalance="roundrobin",
            cluster_options={"hedge_delay": 0.05},
            methods={"Echo": {"idempotent": True}},
        )
        # Round robin sends one of two calls to the slow provider first: that one is hedged.
        assert [echo.Echo(req()).served_by for _ in range(2)] == ["fast", "fast"]
        slow.released.set()
    hedged = [s for s in call_spans(rec) if s.events]
    assert hedged, rec.tree()
    for span in hedged:
        expected = [{"dubbok.attempt": 2, "server.address": "127.0.0.1"}]
        assert events(span, "hedge") == events(span, "hedge_won") == expected
    assert counted(rec, "dubbok.client.hedges") == len(hedged)
    assert counted(rec, "dubbok.client.events", **{"dubbok.event": "hedging"}) == 0


def test_failing_over_is_an_event_naming_both_endpoints(rec: Recorder) -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    with serve_provider(EchoServicer("live")) as live:
        disc = ManualDiscovery()
        disc.set(SERVICE, [dead, live.address])
        with dubbok.App("c", observer=rec.observer) as app:
            echo = app.reference(
                echo_pb2_grpc.EchoStub,
                discovery=disc,
                loadbalance="roundrobin",
                retries=2,
                methods={"Echo": {"idempotent": True}},
            )
            for _ in range(2):  # round robin tries the dead one first in one of them
                assert echo.Echo(req()).served_by == "live"
    failed_over = [s for s in call_spans(rec) if events(s, "failover")]
    assert failed_over, rec.tree()
    for span in failed_over:
        assert events(span, "failover") == [
            {
                "dubbok.attempt": 2,
                "server.address": "127.0.0.1",
                "server.port": live.port,
                "dubbok.failed_endpoint": dead,
            }
        ]
        assert [e.name for e in span.events] == ["retry", "failover"]
    failovers = counted(rec, "dubbok.client.events", **{"dubbok.event": "failover"})
    assert failovers == len(failed_over)


def test_the_breaker_opens_half_opens_and_closes_as_events_and_a_fallback_says_why(
    rec: Recorder,
) -> None:
    with (
        serve_provider(EchoServicer("p")) as provider,
        dubbok.App("c", observer=rec.observer) as app,
    ):
        echo = app.reference(
            echo_pb2_grpc.EchoStub,
            discovery=provider.url,
            retries=0,
            breaker={
                "method": {
                    "consecutive_failures": 2,
                    "error_ratio": None,
                    "reset_timeout": 1.0,  # the refused call below comes well within it
                    "half_open_max_calls": 1,
                },
                "instance": None,
            },
            fallbacks={"Echo": lambda r, e: echo_pb2.EchoReply(text="fallback")},
        )
        for _ in range(2):
            assert echo.Echo(req(fail_code=INTERNAL)).text == "fallback"
        assert echo.Echo(req()).text == "fallback"  # refused while open
        # after reset_timeout one probe goes through; its success closes the breaker
        assert wait_until(lambda: echo.Echo(req(text="ok")).text == "ok", 5.0)
    seen = [(e.name, dict(e.attributes or {})) for s in call_spans(rec) for e in s.events]
    names = [name for name, _ in seen]
    assert names.index("breaker_opened") < names.index("circuit_open")
    assert names.index("circuit_open") < names.index("breaker_half_opened")
    assert names.index("breaker_half_opened") <= names.index("breaker_closed")
    reasons = [attrs["dubbok.degrade.reason"] for name, attrs in seen if name == "fallback"]
    assert reasons[:3] == [
        "fallback on Echo: INTERNAL",
        "fallback on Echo: INTERNAL",
        "fallback on Echo: UNAVAILABLE (circuit open)",
    ]
    state = [
        p.value
        for p in rec.points("dubbok.breaker.state")
        if dict(p.attributes) == {"rpc.service": SERVICE, "rpc.method": "Echo"}
    ]
    assert state == [0.0]  # closed again
    assert counted(rec, "dubbok.client.fallbacks") == len(reasons)


def test_a_call_a_provider_rate_limits_is_an_event_on_its_span_and_counted(
    rec: Recorder,
) -> None:
    with (
        serve_provider(
            EchoServicer("p"), observer=rec.observer, limits={"Echo": {"qps": 1, "burst": 1}}
        ) as provider,
        dubbok.App("c") as app,
    ):
        echo = app.reference(echo_pb2_grpc.EchoStub, discovery=provider.url, retries=0)
        echo.Echo(req())
        with pytest.raises(dubbok.RpcError) as info:
            echo.Echo(req())
        assert info.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    servers = rec.wait_for_spans(2)
    [limited] = [s for s in servers if any(e.name == "rate_limited" for e in s.events)]
    [event] = events(limited, "rate_limited")
    assert "qps" in str(event["dubbok.limit"])
    assert counted(rec, "dubbok.server.rate_limited", **{"rpc.method": "Echo"}) == 1


def test_a_call_the_consumers_bulkhead_refuses_is_an_event_and_counted(rec: Recorder) -> None:
    slow = Slow("p", 5.0)
    with contextlib.ExitStack() as stack:
        stack.callback(slow.released.set)
        provider = stack.enter_context(serve_provider(slow))
        app = stack.enter_context(dubbok.App("c", observer=rec.observer))
        echo = app.reference(echo_pb2_grpc.EchoStub, discovery=provider.url, bulkhead=1)
        held = threading.Thread(target=lambda: echo.Echo(req()))
        held.start()
        stack.callback(held.join, 10)
        stack.callback(slow.released.set)  # runs first: the held call ends, then is joined
        bulkhead = echo._governance.bulkhead  # type: ignore[attr-defined]
        assert wait_until(lambda: bulkhead.active == 1, 5)
        with pytest.raises(dubbok.RpcError) as info:
            echo.Echo(req())
        assert info.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    [refused] = [s for s in call_spans(rec) if events(s, "rate_limited")]
    assert events(refused, "rate_limited") == [{"dubbok.limit": f"{SERVICE}: bulkhead 1 reached"}]
    assert counted(rec, "dubbok.client.rate_limited", **{"rpc.method": "Echo"}) == 1
    assert counted(rec, "dubbok.server.rate_limited") == 0


def test_access_log_of_a_retried_call(rec: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    class FailsFirst(EchoServicer):
        def Echo(self, request: Any, context: Any) -> Any:
            if self.calls == 0:
                self.calls += 1
                context.abort(grpc.StatusCode.UNAVAILABLE, "first attempt fails")
            return super().Echo(request, context)

    observer = CompositeObserver(rec.observer, AccessLogObserver())
    before = time.time()
    with caplog.at_level(logging.INFO, logger="dubbok.access"):
        with (
            serve_provider(FailsFirst("a"), observer=observer) as a,
            serve_provider(EchoServicer("b"), observer=observer) as b,
            dubbok.App("c", observer=observer) as app,
        ):
            disc = ManualDiscovery()
            disc.set(SERVICE, [a.address, b.address])
            echo = app.reference(
                echo_pb2_grpc.EchoStub,
                discovery=disc,
                loadbalance="roundrobin",
                retries=1,
                methods={"Echo": {"idempotent": True}},
            )
            for _ in range(2):  # a fails its first call, whichever of the two reaches it
                echo.Echo(req(delay=0.05))
        lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "dubbok.access"]
    after = time.time()
    clients = [line for line in lines if line["side"] == "client"]
    servers = [line for line in lines if line["side"] == "server"]
    assert sorted(c["attempt"] for c in clients) == [1, 2]
    assert all(c["status"] == "OK" for c in clients)
    assert sorted((s["attempt"], s["status"]) for s in servers) == [
        (1, "OK"),
        (1, "UNAVAILABLE"),
        (2, "OK"),
    ]
    [retried] = [c for c in clients if c["attempt"] == 2]
    [second] = [s for s in servers if s["attempt"] == 2]
    assert retried["peer"] == second["peer"].split(":")[0] + f":{b.port}"
    assert 50 <= second["duration_ms"] <= retried["duration_ms"] < 5000  # the 50 ms of work
    for line in clients:
        started = datetime.fromisoformat(line["time"]).timestamp()
        assert before - 0.01 <= started <= after


@pytest.mark.parametrize("opt_in", ["", "rpc/dup"])
def test_histograms_record_milliseconds_and_the_stable_ones_seconds(
    opt_in: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", opt_in)
    rec = Recorder()  # reads the variable
    try:
        with (
            serve_provider(EchoServicer("p"), observer=rec.observer) as provider,
            dubbok.App("c", observer=rec.observer) as app,
        ):
            echo = app.reference(echo_pb2_grpc.EchoStub, discovery=provider.url)
            echo.Echo(req(delay=0.1))
        rec.wait_for_spans(3)
        for side in ("client", "server"):
            [old] = rec.points(f"rpc.{side}.duration")
            assert 100 <= old.sum < 5000, (side, old.sum)  # milliseconds
            stable = rec.points(f"rpc.{side}.call.duration")
            if opt_in:
                [point] = stable
                assert 0.1 <= point.sum < 5.0, (side, point.sum)  # seconds
            else:
                assert stable == []
    finally:
        rec.shutdown()


class ReadsTenant(EchoServicer):
    """Echo that answers with the baggage ``tenant`` its handler sees."""

    def Echo(self, request: Any, context: Any) -> Any:
        reply = super().Echo(request, context)
        reply.text = str(baggage.get_baggage("tenant"))
        return reply


def call_as_tenant(rec: Recorder, tenant: str) -> Any:
    """One call, with baggage ``tenant`` set, to a ReadsTenant provider; its reply."""
    with (
        serve_provider(ReadsTenant("p"), observer=rec.observer) as provider,
        dubbok.App("c", observer=rec.observer) as app,
    ):
        echo = app.reference(echo_pb2_grpc.EchoStub, discovery=provider.url)
        token = context.attach(baggage.set_baggage("tenant", tenant))
        try:
            reply = echo.Echo(req())
        finally:
            context.detach(token)
        assert echo.Echo(req()).text == "None"  # not set: none travels
    return reply


def test_baggage_reaches_the_handler_of_a_sampled_call(rec: Recorder) -> None:
    reply = call_as_tenant(rec, "acme")
    assert reply.text == "acme"
    assert "tenant=acme" in reply.metadata["baggage"]
    spans = rec.wait_for_spans(6)
    assert len({s.context.trace_id for s in spans}) == 2  # two sampled calls, two traces


class _TenantPropagator(TextMapPropagator):
    """A propagator of the process's own: carries baggage ``tenant`` as ``x-tenant``."""

    def inject(
        self, carrier: Any, context: Context | None = None, setter: Setter[Any] = default_setter
    ) -> None:
        value = baggage.get_baggage("tenant", context)
        if value is not None:
            setter.set(carrier, "x-tenant", str(value))

    def extract(
        self, carrier: Any, context: Context | None = None, getter: Getter[Any] = default_getter
    ) -> Context:
        found = getter.get(carrier, "x-tenant")
        context = context if context is not None else Context()
        return baggage.set_baggage("tenant", found[0], context) if found else context

    @property
    def fields(self) -> set[str]:
        return {"x-tenant"}


def test_the_globally_configured_propagator_carries_the_context(rec: Recorder) -> None:
    before = propagate.get_global_textmap()
    propagate.set_global_textmap(
        CompositePropagator([TraceContextTextMapPropagator(), _TenantPropagator()])
    )
    try:
        reply = call_as_tenant(rec, "acme")
    finally:
        propagate.set_global_textmap(before)
    assert reply.text == "acme"
    assert reply.metadata["x-tenant"] == "acme" and "baggage" not in reply.metadata
    spans = rec.wait_for_spans(6)
    assert len({s.context.trace_id for s in spans}) == 2  # each call one trace, both sides


def test_a_malformed_attempt_header_is_logged_as_attempt_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        caplog.at_level(logging.INFO, logger="dubbok.access"),
        serve_provider(EchoServicer("p"), observer=AccessLogObserver()) as provider,
        grpc.insecure_channel(provider.address) as channel,
    ):
        stub = echo_pb2_grpc.EchoStub(channel)
        for value in ("9" * 5000, "-1", "two", "", "3"):
            reply = stub.Echo(req(text="x"), metadata=[("x-dubbok-attempt", value)], timeout=5)
            assert reply.text == "x"  # the handler ran: a caller's header cannot break it
        lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "dubbok.access"]
    assert [line["attempt"] for line in lines] == [1, 1, 1, 1, 3]
