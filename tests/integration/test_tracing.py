"""Tracing, metrics, attachments and access logs through real sync providers and consumers.

Every App gets its observer explicitly (a per-test ``Recorder``: its own TracerProvider and
MeterProvider with in-memory readers); nothing global is set.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

import dubbok
from dubbok.errors import ConfigurationError
from dubbok.testing import EchoServicer, ManualDiscovery, free_port, serve_provider
from dubbok.testing.pb import echo_pb2, echo_pb2_grpc
from dubbok.tracing import AccessLogObserver, CompositeObserver, attachments
from dubbok.tracing.testing import Recorder

SERVICE = "dubbok.testing.v1.Echo"
NAME = f"{SERVICE}/Echo"


def req(**kw: Any) -> echo_pb2.EchoRequest:
    return echo_pb2.EchoRequest(**kw)


def by_kind(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in spans if s.kind is kind]


def child_of(span: ReadableSpan, parent: ReadableSpan) -> bool:
    return span.parent is not None and span.parent.span_id == parent.context.span_id


@pytest.fixture
def rec() -> Iterator[Recorder]:
    recorder = Recorder()
    with contextlib.ExitStack() as stack:
        stack.callback(recorder.shutdown)
        # Attachments live in a contextvar of the test's thread: start and end empty.
        attachments.clear()
        stack.callback(attachments.clear)
        yield recorder


@contextlib.contextmanager
def consumer(observer: Any, discovery: Any, **options: Any) -> Iterator[Any]:
    with dubbok.App("consumer", observer=observer) as app:
        yield app.reference(echo_pb2_grpc.EchoStub, SERVICE, discovery=discovery, **options)


def test_a_call_is_one_trace_from_consumer_to_provider(rec: Recorder) -> None:
    with serve_provider(EchoServicer("p"), observer=rec.observer) as provider:
        with consumer(rec.observer, provider.url, loadbalance="roundrobin") as echo:
            assert echo.Echo(req(text="hi")).text == "hi"
    spans = rec.wait_for_spans(3)
    [server] = by_kind(spans, SpanKind.SERVER)
    call, attempt = sorted(by_kind(spans, SpanKind.CLIENT), key=lambda s: s.parent is not None)
    assert {s.name for s in spans} == {NAME}
    assert child_of(attempt, call) and child_of(server, attempt) and call.parent is None
    assert len({s.context.trace_id for s in spans}) == 1
    assert (attempt.attributes or {})["server.port"] == provider.port
    assert (attempt.attributes or {})["server.address"] == "127.0.0.1"
    assert (server.attributes or {})["network.peer.address"] == "127.0.0.1"
    assert (call.attributes or {})["dubbok.cluster"] == "failover"
    assert (call.attributes or {})["dubbok.loadbalance"] == "roundrobin"
    # Metrics: one call each side, counted by status.
    [client_point] = rec.points("rpc.client.duration")
    [server_point] = rec.points("rpc.server.duration")
    assert client_point.count == server_point.count == 1
    assert dict(client_point.attributes)["rpc.grpc.status_code"] == 0


def test_failover_from_a_dead_provider_is_two_sibling_attempts(rec: Recorder) -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    with serve_provider(EchoServicer("live"), observer=rec.observer) as live:
        disc = ManualDiscovery()
        disc.set(SERVICE, [dead, live.address])
        with consumer(
            rec.observer,
            disc,
            loadbalance="roundrobin",
            retries=2,
            methods={"Echo": {"idempotent": True}},
        ) as echo:
            # Round robin reaches the dead provider first within two calls.
            for _ in range(4):
                rec.clear()
                assert echo.Echo(req()).served_by == "live"
                calls = [s for s in rec.wait_for_spans(3) if s.parent is None]
                if any(e.name == "retry" for e in calls[0].events):
                    break
            else:
                pytest.fail("no call went to the dead provider first:\n" + rec.tree())
    spans = rec.wait_for_spans(4)
    [call] = [s for s in spans if s.parent is None]
    attempts = sorted(
        (s for s in spans if child_of(s, call)),
        key=lambda s: int(str((s.attributes or {})["dubbok.attempt"])),
    )
    assert [(a.attributes or {})["server.port"] for a in attempts] == [
        int(dead.rsplit(":", 1)[1]),
        live.port,
    ]
    assert attempts[0].status.status_code is StatusCode.ERROR
    assert (attempts[0].attributes or {})["rpc.grpc.status_code"] == 14  # UNAVAILABLE
    assert attempts[1].status.status_code is StatusCode.UNSET
    [server] = by_kind(spans, SpanKind.SERVER)
    assert child_of(server, attempts[1])
    [retry] = [e for e in call.events if e.name == "retry"]
    assert (retry.attributes or {})["dubbok.failed_endpoint"] == dead
    assert sum(p.value for p in rec.points("dubbok.client.retries")) >= 1


@pytest.mark.parametrize(
    ("code", "server_status"),
    [(grpc.StatusCode.INTERNAL, StatusCode.ERROR), (grpc.StatusCode.NOT_FOUND, StatusCode.UNSET)],
)
def test_a_server_error(rec: Recorder, code: grpc.StatusCode, server_status: StatusCode) -> None:
    with serve_provider(EchoServicer("p"), observer=rec.observer) as provider:
        with consumer(rec.observer, provider.url) as echo:
            with pytest.raises(dubbok.RpcError):
                echo.Echo(req(fail_code=code.value[0]))
    spans = rec.wait_for_spans(3)
    [server] = by_kind(spans, SpanKind.SERVER)
    assert server.status.status_code is server_status
    assert (server.attributes or {})["rpc.grpc.status_code"] == code.value[0]
    # On the client any failure is an error, on the call and on its attempt.
    assert {s.status.status_code for s in by_kind(spans, SpanKind.CLIENT)} == {StatusCode.ERROR}
    counts = {
        dict(p.attributes)["rpc.grpc.status_code"]: p.count
        for p in rec.points("rpc.server.duration")
    }
    assert counts == {code.value[0]: 1}


class Front(echo_pb2_grpc.EchoServicer):
    """Answers by calling the backend; records the attachments it saw."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.seen: list[dict[str, str]] = []

    def Echo(self, request: Any, context: Any) -> Any:
        self.seen.append(dict(attachments.current()))
        attachments.set("hop", "front")
        reply = self.backend.Echo(req(text=request.text))
        return echo_pb2.EchoReply(text=reply.text, served_by="front", metadata=reply.metadata)


class Backend(EchoServicer):
    def __init__(self) -> None:
        super().__init__("backend")
        self.seen: list[dict[str, str]] = []

    def Echo(self, request: Any, context: Any) -> Any:
        self.seen.append(dict(attachments.current()))
        return super().Echo(request, context)


@contextlib.contextmanager
def two_tiers(observer: Any) -> Iterator[tuple[Any, Front, Backend]]:
    """consumer → front provider → (its handler calls) → backend provider."""
    backend = Backend()
    with serve_provider(backend, observer=observer, name="backend") as back:
        with consumer(observer, back.url) as to_backend:
            front = Front(to_backend)
            with serve_provider(front, observer=observer, name="front") as edge:
                with consumer(observer, edge.url) as echo:
                    yield echo, front, backend


def test_the_server_span_parents_the_handlers_outgoing_calls(rec: Recorder) -> None:
    with two_tiers(rec.observer) as (echo, _, _):
        assert echo.Echo(req(text="x")).served_by == "front"
    spans = rec.wait_for_spans(6)
    servers = by_kind(spans, SpanKind.SERVER)
    assert len(servers) == 2 and len({s.context.trace_id for s in spans}) == 1
    [edge_call] = [s for s in spans if s.parent is None]
    [edge_attempt] = [s for s in spans if child_of(s, edge_call)]
    [front_server] = [s for s in servers if child_of(s, edge_attempt)]
    [nested_call] = [s for s in spans if child_of(s, front_server)]
    [nested_attempt] = [s for s in spans if child_of(s, nested_call)]
    [backend_server] = [s for s in servers if child_of(s, nested_attempt)]
    assert nested_call.kind is SpanKind.CLIENT and backend_server is not front_server


def test_attachments_travel_to_the_provider_and_onward(rec: Recorder) -> None:
    with two_tiers(rec.observer) as (echo, front, backend):
        attachments.set("tenant", "acme")
        reply = echo.Echo(req())
        attachments.remove("tenant")
        echo.Echo(req())
    assert front.seen == [{"tenant": "acme"}, {}]
    assert backend.seen == [{"tenant": "acme", "hop": "front"}, {"hop": "front"}]
    assert reply.metadata["x-dubbok-att-tenant"] == "acme"
    with pytest.raises(ConfigurationError, match="bytes of metadata"):
        attachments.set("big", "x" * attachments.MAX_BYTES)


def test_access_log_lines_for_both_sides(rec: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    observer = CompositeObserver(rec.observer, AccessLogObserver())
    with caplog.at_level(logging.INFO, logger="dubbok.access"):
        with serve_provider(EchoServicer("p"), observer=observer) as provider:
            with consumer(observer, provider.url) as echo:
                echo.Echo(req(text="secret body"), metadata=(("authorization", "Bearer t0k3n"),))
        lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "dubbok.access"]
    spans = rec.wait_for_spans(3)
    server_line, client_line = sorted(lines, key=lambda line: line["side"] == "client")
    assert client_line["side"] == "client" and server_line["side"] == "server"
    assert client_line["peer"] == f"127.0.0.1:{provider_port(spans)}"
    assert server_line["peer"].startswith("127.0.0.1:")
    assert client_line["status"] == server_line["status"] == "OK"
    assert client_line["service"] == SERVICE and client_line["method"] == "Echo"
    assert client_line["attempt"] == 1 and client_line["duration_ms"] > 0
    assert client_line["trace_id"] == server_line["trace_id"] == f"{spans[0].context.trace_id:032x}"
    [server_span] = by_kind(spans, SpanKind.SERVER)
    assert server_line["span_id"] == f"{server_span.context.span_id:016x}"
    assert "secret body" not in caplog.text and "t0k3n" not in caplog.text


def provider_port(spans: tuple[ReadableSpan, ...]) -> int:
    return next(
        int((s.attributes or {})["server.port"])  # type: ignore[arg-type]
        for s in spans
        if "server.port" in (s.attributes or {})
    )


def test_an_observer_without_providers_still_carries_attachments() -> None:
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import NoOpTracerProvider

    from dubbok.tracing import OtelObserver

    bare = OtelObserver(NoOpTracerProvider(), NoOpMeterProvider())
    backend = Backend()
    attachments.clear()
    try:
        with serve_provider(backend, observer=bare) as provider:
            with consumer(bare, provider.url) as echo:
                attachments.set("tenant", "acme")
                reply = echo.Echo(req())
    finally:
        attachments.clear()
    assert backend.seen == [{"tenant": "acme"}]
    assert "traceparent" not in reply.metadata
