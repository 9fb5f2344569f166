"""ServedCall reads a call's invocation metadata once and hands it to observers that take it
(``handle_incoming``); observers with only ``handle`` read it themselves."""

from __future__ import annotations

from typing import Any

import grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from dubbok.server import ServedCall
from dubbok.tracing import AccessLogObserver, CompositeObserver, OtelObserver

TRACEPARENT = ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")


class CountingContext:
    """A server context that counts how often its metadata is read."""

    def __init__(self, metadata: Any) -> None:
        self._metadata = tuple(metadata)
        self.reads = 0

    def invocation_metadata(self) -> Any:
        self.reads += 1
        return self._metadata

    def time_remaining(self) -> float | None:
        return None

    def peer(self) -> str:
        return "ipv4:127.0.0.1:5555"

    def code(self) -> None:
        return None


class HandleOnly:
    """An observer of the protocol's required methods only."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def call(self, invocation: Any, loadbalance: str, cluster: str) -> None:
        return None

    def handle(self, service: str, method: str, context: Any) -> None:
        self.seen.append(context.invocation_metadata())
        return None


def traced() -> tuple[OtelObserver, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return OtelObserver(provider), exporter


def test_an_otel_observer_gets_the_metadata_read_once() -> None:
    observer, exporter = traced()
    context = CountingContext([TRACEPARENT])
    served = ServedCall(context, "svc.Echo", "Echo", observer)
    served.end(None)
    assert context.reads == 1
    (span,) = exporter.get_finished_spans()
    assert span.parent is not None and span.parent.span_id == 0xB7AD6B7169203331


def test_an_observer_with_only_handle_still_reads_the_metadata_itself() -> None:
    observer = HandleOnly()
    context = CountingContext([TRACEPARENT])
    ServedCall(context, "svc.Echo", "Echo", observer).end(None)  # type: ignore[arg-type]
    assert observer.seen == [(TRACEPARENT,)]


def test_a_composite_hands_the_metadata_to_those_that_take_it() -> None:
    otel, exporter = traced()
    other = HandleOnly()
    composite = CompositeObserver(otel, other, AccessLogObserver())  # type: ignore[arg-type]
    context = CountingContext([TRACEPARENT])
    served = ServedCall(context, "svc.Echo", "Echo", composite)
    served.end(None)
    assert context.reads == 2  # the server's own read, and HandleOnly's
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.OK.value[0]
