"""Test kit for tracing: an observer wired to in-memory span and metric readers.

::

    from dubbok.tracing.testing import Recorder

    rec = Recorder()
    with serve_provider(EchoServicer(), observer=rec.observer) as provider:
        with dubbok.App("consumer", observer=rec.observer) as app:
            ...
    spans = rec.wait_for_spans(3)
    print(rec.tree())

Each :class:`Recorder` has its own TracerProvider and MeterProvider — nothing global is
touched, so tests can make as many as they like. Needs the OpenTelemetry SDK (the
``dubbok[otel]`` extra).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Sampler

from .observer import OtelObserver

__all__ = ["Recorder", "render_tree"]


class Recorder:
    """An :class:`OtelObserver` whose spans and metrics stay in memory for assertions."""

    def __init__(self, sampler: Sampler | None = None, *, semconv: str | None = None) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(sampler=sampler)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.observer = OtelObserver(self.tracer_provider, self.meter_provider, semconv=semconv)

    @property
    def spans(self) -> tuple[ReadableSpan, ...]:
        """The spans finished so far, in the order they ended."""
        return tuple(self.exporter.get_finished_spans())

    def wait_for_spans(self, count: int, timeout: float = 5.0) -> tuple[ReadableSpan, ...]:
        """Wait until at least ``count`` spans have finished (a provider ends its span on its
        own thread, maybe just after the client has its answer); raise ``AssertionError``
        with what did finish when they do not within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans
            if len(spans) >= count or time.monotonic() >= deadline:
                break
            time.sleep(0.005)  # polling: the spans end on other threads
        if len(spans) < count:
            raise AssertionError(
                f"expected {count} finished spans within {timeout} s, got {len(spans)}:\n"
                + render_tree(spans)
            )
        return spans

    def clear(self) -> None:
        self.exporter.clear()

    def points(self, name: str) -> list[Any]:
        """The data points of metric ``name`` collected now (empty when none recorded)."""
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        if data is None:
            return found
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def tree(self) -> str:
        return render_tree(self.spans)

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def _children(spans: Sequence[ReadableSpan]) -> dict[int | None, list[ReadableSpan]]:
    known = {s.context.span_id for s in spans if s.context is not None}
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        parent = span.parent.span_id if span.parent is not None else None
        children.setdefault(parent if parent in known else None, []).append(span)
    return children


def render_tree(spans: Sequence[ReadableSpan], attributes: Sequence[str] = ()) -> str:
    """Spans as an indented tree (``name KIND [status] key=value ...``), for messages and docs.

    ``attributes`` picks the attributes shown (default: ``dubbok.attempt`` and status codes).
    """
    shown = tuple(attributes) or ("dubbok.attempt", "rpc.grpc.status_code", "server.port")
    children = _children(spans)

    def lines(parent: int | None, depth: int) -> Iterator[str]:
        for span in children.get(parent, []):
            kind = span.kind.name if span.kind is not None else "?"
            status = span.status.status_code.name
            attrs = span.attributes or {}
            extra = " ".join(f"{k}={attrs[k]!s}" for k in shown if k in attrs)
            events = ", ".join(e.name for e in span.events)
            text = f"{'  ' * depth}{span.name} {kind} [{status}] {extra}".rstrip()
            if events:
                text += f" events: {events}"
            yield text
            if span.context is not None:
                yield from lines(span.context.span_id, depth + 1)

    return "\n".join(lines(None, 0))
