"""dubbok's direct span path (``dubbok.tracing._direct``) against the OpenTelemetry SDK.

Most tests make the same spans twice, in two tracer providers configured alike — once through
``Tracer.start_span``, once through :class:`DirectTracer` — whose id generators are seeded
alike, so both paths draw the same trace and span ids. What the exporter receives must then be
equal field by field, timestamps aside. The other half: every set-up the direct path cannot
reproduce must hand the span to the SDK.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import random
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from time import time_ns
from types import MappingProxyType
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import (
    ConcurrentMultiSpanProcessor,
    ReadableSpan,
    SpanLimits,
    SpanProcessor,
    Tracer,
    TracerProvider,
    _TracerConfig,
)
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    AlwaysRecordSampler,
    Decision,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    SamplingResult,
    StaticSampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import (
    INVALID_SPAN_CONTEXT,
    NonRecordingSpan,
    NoOpTracer,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.trace.span import TraceState

from dubbok.endpoint import Endpoint
from dubbok.invocation import Invocation, Metadata
from dubbok.tracing import OtelObserver, attachments
from dubbok.tracing._direct import DirectSpan, DirectTracer, sampling_plan

SEED = 20240611
SAMPLE = Decision.RECORD_AND_SAMPLE
DROP = Decision.DROP
RECORD_ONLY = Decision.RECORD_ONLY
SAMPLED = TraceFlags.SAMPLED
RANDOM = TraceFlags.RANDOM_TRACE_ID
RESOURCE = Resource.create({"service.name": "greeter", "service.version": "1.2.3"})
SCHEMA = "https://opentelemetry.io/schemas/1.26.0"
SERVICE = "dubbok.testing.v1.Echo"
NAME = f"{SERVICE}/Echo"
OK = grpc.StatusCode.OK
ERROR = StatusCode.ERROR
REMOTE_TRACE = 0x0AF7651916CD43DD8448EB211C80319C
REMOTE_SPAN = 0xB7AD6B7169203331
VENDOR_STATE = TraceState([("vendor", "v1")])
# What dubbok hands the tracer: a cached dict, built once per method.
ATTRS: Mapping[str, Any] = MappingProxyType(
    {"rpc.system": "grpc", "rpc.service": SERVICE, "rpc.method": "Echo", "rpc.grpc.status_code": 0}
)


# -- two worlds made alike ---------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _sdk_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK reads limits, samplers and its self-metrics switch from OTEL_* variables."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


class SeededIds(IdGenerator):
    """Random ids from a seeded generator: two of them with one seed give the same ids."""

    def __init__(self, seed: int = SEED, random_ids: bool = True) -> None:
        self._rng = random.Random(seed)
        self._random_ids = random_ids

    def generate_trace_id(self) -> int:
        return self._rng.getrandbits(128) or 1

    def generate_span_id(self) -> int:
        return self._rng.getrandbits(64) or 1

    def is_trace_id_random(self) -> bool:
        return self._random_ids


Start = Callable[[str, Context | None, SpanKind, Mapping[str, Any]], trace.Span]


class World:
    """A TracerProvider exporting to memory, dubbok's tracer on it, and its DirectTracer."""

    def __init__(
        self,
        sampler: Sampler | None = None,
        limits: SpanLimits | None = None,
        *,
        seed: int = SEED,
        random_ids: bool = True,
        active_span_processor: ConcurrentMultiSpanProcessor | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(
            sampler=sampler or ParentBased(ALWAYS_ON),
            resource=RESOURCE,
            id_generator=SeededIds(seed, random_ids),
            span_limits=limits,
            shutdown_on_exit=False,
            active_span_processor=active_span_processor,
            meter_provider=meter_provider,
        )
        self.provider.add_span_processor(
            SimpleSpanProcessor(self.exporter, meter_provider=meter_provider)
        )
        self.tracer = self.provider.get_tracer("dubbok", "0.1.0", SCHEMA)
        self.direct = DirectTracer.for_tracer(self.tracer)

    @property
    def spans(self) -> Sequence[ReadableSpan]:
        return self.exporter.get_finished_spans()

    def sdk_start(
        self, name: str, context: Context | None, kind: SpanKind, attributes: Mapping[str, Any]
    ) -> trace.Span:
        return self.tracer.start_span(name, context, kind=kind, attributes=attributes)

    def direct_start(
        self, name: str, context: Context | None, kind: SpanKind, attributes: Mapping[str, Any]
    ) -> trace.Span:
        assert self.direct is not None
        return self.direct.start_span(name, context, kind, attributes)


def _dropped(attributes: object) -> int:
    return int(getattr(attributes, "dropped", 0))


def fields(span: ReadableSpan) -> dict[str, Any]:
    """Everything a processor or an exporter reads from a finished span but its timestamps."""
    return {
        "name": span.name,
        "context": span.context,  # trace id, span id, is_remote, trace flags, trace state
        "parent": span.parent,
        "kind": span.kind,
        "attributes": dict(span.attributes or {}),
        "dropped_attributes": span.dropped_attributes,
        "status": (span.status.status_code, span.status.description),
        "events": [(e.name, dict(e.attributes or {}), _dropped(e.attributes)) for e in span.events],
        "dropped_events": span.dropped_events,
        "links": [
            (link.context, dict(link.attributes or {}), _dropped(link.attributes))
            for link in span.links
        ],
        "dropped_links": span.dropped_links,
        "resource": span.resource,
        "instrumentation_scope": span.instrumentation_scope,
        "instrumentation_info": span._instrumentation_info,  # the property is deprecated
    }


def on_both_paths(
    scenario: Callable[[World, Start], object], **config: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run ``scenario`` through ``Tracer.start_span`` and through ``DirectTracer`` in two
    worlds made alike (``config``); the finished spans of each, as :func:`fields`."""
    sdk, direct = World(**config), World(**config)
    started: list[trace.Span] = []

    def direct_start(
        name: str, context: Context | None, kind: SpanKind, attributes: Mapping[str, Any]
    ) -> trace.Span:
        span = direct.direct_start(name, context, kind, attributes)
        started.append(span)
        return span

    scenario(sdk, sdk.sdk_start)
    scenario(direct, direct_start)
    # Not two SDK spans compared: the direct path did make these.
    assert started and all(type(s) in (DirectSpan, NonRecordingSpan) for s in started)
    return [fields(s) for s in sdk.spans], [fields(s) for s in direct.spans]


def remote(flags: int = SAMPLED | RANDOM, state: TraceState = VENDOR_STATE) -> SpanContext:
    """A parent as the propagator extracts it from a traceparent (and tracestate) header."""
    return SpanContext(REMOTE_TRACE, REMOTE_SPAN, True, TraceFlags(flags), state)


def in_context(parent: SpanContext) -> Context:
    return trace.set_span_in_context(NonRecordingSpan(parent), Context())


def ended(span: trace.Span) -> trace.Span:
    span.end()
    return span


# -- the spans are the SDK's -------------------------------------------------------------------


def _root(world: World) -> Context:
    return Context()


def _local_parent(world: World) -> Context:
    # A parent started the SDK's way in each world: it draws the same ids in both.
    return trace.set_span_in_context(world.tracer.start_span("parent"), Context())


def _remote_parent(world: World) -> Context:
    return in_context(remote())


def _remote_parent_without_random_flag(world: World) -> Context:
    return in_context(remote(SAMPLED, TraceState()))


PARENTS: dict[str, tuple[Callable[[World], Context], SpanKind]] = {
    "root": (_root, SpanKind.CLIENT),
    "local sampled parent": (_local_parent, SpanKind.CLIENT),
    "remote parent with trace state": (_remote_parent, SpanKind.SERVER),
    "remote parent, not a random trace id": (_remote_parent_without_random_flag, SpanKind.SERVER),
}


def _decorate(span: trace.Span) -> None:
    """What a handler or the observer does to a span after it started."""
    span.set_attribute("app.key", "v")
    span.set_attributes({"app.count": 3, "app.tags": ["a", "b"]})
    span.add_event("retry", {"dubbok.attempt": 2, "dubbok.failed_endpoint": "127.0.0.1:5001"})
    span.add_event("hedge")
    span.set_status(Status(StatusCode.ERROR, "unavailable"))


@pytest.mark.parametrize("decorated", [False, True], ids=["as started", "decorated"])
@pytest.mark.parametrize("parent", list(PARENTS))
def test_a_direct_span_is_exported_as_the_sdks(parent: str, decorated: bool) -> None:
    make_context, kind = PARENTS[parent]
    parents: list[SpanContext] = []

    def scenario(world: World, start: Start) -> None:
        context = make_context(world)
        parents.append(trace.get_current_span(context).get_span_context())
        span = start(NAME, context, kind, ATTRS)
        if decorated:
            _decorate(span)
        span.end()
        trace.get_current_span(context).end()  # the local parent; a no-op for the others

    sdk, direct = on_both_paths(scenario)
    assert direct == sdk
    span = direct[0]
    assert span["kind"] is kind
    parent_sc = parents[-1]
    if parent_sc.is_valid:
        assert span["parent"].span_id == parent_sc.span_id
        assert span["parent"].is_remote is parent_sc.is_remote
        assert span["context"].trace_id == parent_sc.trace_id
        assert span["context"].trace_state == parent_sc.trace_state
        assert span["context"].trace_flags.random_trace_id == parent_sc.trace_flags.random_trace_id
    else:
        assert span["parent"] is None
        assert span["context"].trace_flags == SAMPLED | RANDOM
    assert not span["context"].is_remote
    assert span["resource"] == RESOURCE
    assert span["instrumentation_scope"].name == "dubbok"
    assert span["instrumentation_scope"].schema_url == SCHEMA


def test_the_observer_form_with_the_parent_given_matches_too() -> None:
    """``DirectTracer.start``: the parent's span context told, the context made on demand."""
    sdk, direct = World(), World()
    assert direct.direct is not None
    for parent in (INVALID_SPAN_CONTEXT, remote(), remote(SAMPLED, TraceState())):
        context = in_context(parent) if parent.is_valid else Context()
        spans = [
            direct.direct.start(NAME, lambda c=context: c, parent, SpanKind.SERVER, ATTRS),
            sdk.sdk_start(NAME, context, SpanKind.SERVER, ATTRS),
        ]
        assert type(spans[0]) is DirectSpan
        for span in spans:
            span.set_attribute("app.key", "v")
            span.end()
    assert [fields(s) for s in direct.spans] == [fields(s) for s in sdk.spans]
    assert len(direct.spans) == 3


def test_the_exported_span_serialises_to_the_same_json() -> None:
    def scenario(world: World, start: Start) -> None:
        span = start(NAME, in_context(remote()), SpanKind.SERVER, ATTRS)
        _decorate(span)
        span.add_link(remote(SAMPLED), {"link.kind": "follows"})
        span.end()

    sdk_world, direct_world = World(), World()
    scenario(sdk_world, sdk_world.sdk_start)
    scenario(direct_world, direct_world.direct_start)

    def without_times(span: ReadableSpan) -> dict[str, Any]:
        data = json.loads(span.to_json())
        assert data.pop("start_time") and data.pop("end_time")
        for event in data["events"]:
            assert event.pop("timestamp")
        return data

    [sdk_span], [direct_span] = sdk_world.spans, direct_world.spans
    assert without_times(direct_span) == without_times(sdk_span)
    assert json.loads(direct_span.to_json(indent=None))["kind"] == "SpanKind.SERVER"
    assert direct_span.start_time is not None and direct_span.end_time is not None
    assert direct_span.start_time <= direct_span.end_time


@pytest.mark.parametrize("random_ids", [True, False])
def test_a_root_span_says_whether_its_trace_id_is_random_as_the_sdk_does(
    random_ids: bool,
) -> None:
    def scenario(world: World, start: Start) -> None:
        start(NAME, Context(), SpanKind.CLIENT, ATTRS).end()

    sdk, direct = on_both_paths(scenario, random_ids=random_ids)
    assert direct == sdk
    assert direct[0]["context"].trace_flags == (SAMPLED | RANDOM if random_ids else SAMPLED)


def test_a_live_direct_span_reads_as_the_sdks() -> None:
    sdk, direct = World(), World()
    spans = []
    for start in (sdk.sdk_start, direct.direct_start):
        span = start(NAME, in_context(remote()), SpanKind.SERVER, ATTRS)
        _decorate(span)
        spans.append(span)
    sdk_span, direct_span = spans
    assert isinstance(direct_span, DirectSpan)
    assert direct_span.get_span_context() == sdk_span.get_span_context()
    assert direct_span.is_recording() and sdk_span.is_recording()
    assert direct_span.name == sdk_span.name  # type: ignore[attr-defined]
    for status in (direct_span.status, sdk_span.status):  # type: ignore[attr-defined]
        assert (status.status_code, status.description) == (ERROR, "unavailable")
    assert dict(direct_span.attributes) == dict(sdk_span.attributes)  # type: ignore[attr-defined]
    assert [(e.name, dict(e.attributes or {})) for e in direct_span.events] == [
        (e.name, dict(e.attributes or {}))
        for e in sdk_span.events  # type: ignore[attr-defined]
    ]
    assert NAME in repr(direct_span)
    for span in spans:
        span.end()


def test_a_live_direct_span_has_the_readable_span_surface_of_the_sdks() -> None:
    sdk, direct = World(), World()
    sdk_span = sdk.sdk_start(NAME, in_context(remote()), SpanKind.SERVER, ATTRS)
    direct_span = direct.direct_start(NAME, in_context(remote()), SpanKind.SERVER, ATTRS)
    try:
        for attribute in ("context", "parent", "kind", "resource", "instrumentation_scope"):
            assert getattr(direct_span, attribute) == getattr(sdk_span, attribute), attribute
        for attribute in ("links", "dropped_attributes", "dropped_events", "dropped_links"):
            assert getattr(direct_span, attribute) == getattr(sdk_span, attribute), attribute
        assert isinstance(direct_span, ReadableSpan)
    finally:
        sdk_span.end()
        direct_span.end()


@pytest.mark.parametrize(
    "attributes",
    [
        {"app.tags": ["a", "b"]},
        {"app.bad": object()},
        {f"app.k{i}": i for i in range(40)},
    ],
    ids=["a list value", "an invalid value", "more than the limit"],
)
def test_start_span_cleans_and_limits_the_attributes_it_is_given_as_the_sdk(
    attributes: dict[str, Any],
) -> None:
    def scenario(world: World, start: Start) -> None:
        start(NAME, Context(), SpanKind.INTERNAL, attributes).end()

    sdk, direct = on_both_paths(scenario, limits=SpanLimits(max_span_attributes=32))
    assert direct == sdk


# -- sampling: the same decisions as the sampler's ---------------------------------------------

_RATIO = TraceIdRatioBased(0.3)
_PB_RATIO = ParentBasedTraceIdRatio(0.25)

SAMPLERS: dict[str, Sampler] = {
    "always on": ALWAYS_ON,
    "always off": ALWAYS_OFF,
    "record only": StaticSampler(RECORD_ONLY),
    "ratio 0.3": _RATIO,
    "parent-based always on": ParentBased(ALWAYS_ON),
    "parent-based always off": ParentBased(ALWAYS_OFF),
    "parent-based ratio 0.1": ParentBased(TraceIdRatioBased(0.1)),
    "parent-based, custom delegates": ParentBased(
        ALWAYS_OFF,
        remote_parent_sampled=TraceIdRatioBased(0.5),
        remote_parent_not_sampled=ALWAYS_ON,
        local_parent_sampled=StaticSampler(RECORD_ONLY),
        local_parent_not_sampled=TraceIdRatioBased(0.7),
    ),
    "ParentBasedTraceIdRatio 0.25": _PB_RATIO,
}

# Parent kind: (is_remote, sampled), or None for a root span; and its index in a plan.
PARENT_KINDS: dict[str, tuple[tuple[bool, bool] | None, int]] = {
    "no parent": (None, 0),
    "remote sampled": ((True, True), 1),
    "remote unsampled": ((True, False), 2),
    "local sampled": ((False, True), 3),
    "local unsampled": ((False, False), 4),
}


def test_sampling_plan_reads_the_samplers_the_sdk_ships() -> None:
    bound = _RATIO.bound
    assert sampling_plan(ALWAYS_ON) == (SAMPLE,) * 5
    assert sampling_plan(ALWAYS_OFF) == (DROP,) * 5
    assert sampling_plan(StaticSampler(RECORD_ONLY)) == (RECORD_ONLY,) * 5
    assert sampling_plan(_RATIO) == (bound,) * 5
    assert sampling_plan(ParentBased(ALWAYS_ON)) == (SAMPLE, SAMPLE, DROP, SAMPLE, DROP)
    assert sampling_plan(ParentBased(_RATIO)) == (bound, SAMPLE, DROP, SAMPLE, DROP)
    assert sampling_plan(_PB_RATIO) == (TraceIdRatioBased(0.25).bound, SAMPLE, DROP, SAMPLE, DROP)
    assert sampling_plan(SAMPLERS["parent-based, custom delegates"]) == (
        DROP,
        TraceIdRatioBased(0.5).bound,
        SAMPLE,
        RECORD_ONLY,
        TraceIdRatioBased(0.7).bound,
    )


class AskMe(Sampler):
    """A sampler of the application's: records how it was asked, adds an attribute and a
    trace state entry, samples every other trace id."""

    def __init__(self) -> None:
        self.asked: list[tuple[Any, ...]] = []

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Mapping[str, Any] | None = None,
        links: Sequence[Any] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        self.asked.append((parent_context, trace_id, name, kind, dict(attributes or {}), links))
        parent = trace.get_current_span(parent_context).get_span_context()
        state = parent.trace_state if parent.is_valid else TraceState()
        decision = SAMPLE if trace_id % 2 else RECORD_ONLY
        return SamplingResult(
            decision, {**(attributes or {}), "sampler.asked": True}, state.add("asked", "yes")
        )

    def get_description(self) -> str:
        return "AskMe"


class LoudStatic(StaticSampler):
    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return super().should_sample(*args, **kwargs)


class ShiftedRatio(TraceIdRatioBased):
    @property
    def bound(self) -> int:
        return 1 << 62


@pytest.mark.parametrize(
    "sampler",
    [
        AskMe(),
        LoudStatic(SAMPLE),
        ShiftedRatio(0.5),
        ParentBased(ALWAYS_ON, remote_parent_sampled=AskMe()),
        ParentBased(ShiftedRatio(0.5)),
        AlwaysRecordSampler(ALWAYS_OFF),
        object(),
    ],
    ids=lambda s: type(s).__name__,
)
def test_sampling_plan_is_none_for_a_sampler_it_cannot_read(sampler: object) -> None:
    assert sampling_plan(sampler) is None


def _parent(kind: tuple[bool, bool] | None, rng: random.Random) -> SpanContext:
    if kind is None:
        return INVALID_SPAN_CONTEXT
    is_remote, sampled = kind
    flags = (SAMPLED if sampled else 0) | RANDOM
    return SpanContext(
        rng.getrandbits(128) or 1, rng.getrandbits(64) or 1, is_remote, TraceFlags(flags)
    )


@pytest.mark.parametrize("parent_kind", list(PARENT_KINDS))
@pytest.mark.parametrize("sampler_name", list(SAMPLERS))
def test_the_inline_decision_is_the_samplers(sampler_name: str, parent_kind: str) -> None:
    sampler = SAMPLERS[sampler_name]
    kind, index = PARENT_KINDS[parent_kind]
    sdk, direct = World(sampler), World(sampler)
    assert direct.direct is not None
    rng = random.Random(SEED)
    outcomes = set()
    for _ in range(300):
        parent = _parent(kind, rng)
        context = in_context(parent) if parent.is_valid else Context()
        made = direct.direct.start(NAME, context, parent, SpanKind.CLIENT, ATTRS)
        by_sdk = sdk.sdk_start(NAME, context, SpanKind.CLIENT, ATTRS)
        sc = made.get_span_context()
        asked = sampler.should_sample(context, sc.trace_id, NAME, SpanKind.CLIENT, ATTRS)
        outcome = (made.is_recording(), sc.trace_flags.sampled)
        assert outcome == (asked.decision.is_recording(), asked.decision.is_sampled())
        assert outcome == (by_sdk.is_recording(), by_sdk.get_span_context().trace_flags.sampled)
        assert sc == by_sdk.get_span_context()  # ids, flags and trace state too
        assert type(made) is (DirectSpan if made.is_recording() else NonRecordingSpan)
        outcomes.add(outcome)
        ended(made)
        ended(by_sdk)
    plan = sampling_plan(sampler)
    assert plan is not None
    if type(plan[index]) is int:  # a ratio: both outcomes were met, so both were compared
        assert len(outcomes) == 2
    assert [fields(s) for s in direct.spans] == [fields(s) for s in sdk.spans]


@pytest.mark.parametrize("rate", [0.0, 0.3, 1.0])
def test_a_ratio_decides_at_its_bound_as_the_sampler(rate: float) -> None:
    """Trace ids right at the bound (only the low 64 bits count), where random ones never go."""
    sampler = TraceIdRatioBased(rate)
    world = World(sampler)
    assert world.direct is not None
    limit = TraceIdRatioBased.TRACE_ID_LIMIT
    lows = {0, 1, sampler.bound - 1, sampler.bound, sampler.bound + 1, limit}
    for low in sorted(x for x in lows if 0 <= x <= limit):
        for high in (0, 0xFFFF_0000_ABCD_0001):
            trace_id = (high << 64) | low or 1  # a trace id is never 0
            parent = SpanContext(trace_id, REMOTE_SPAN, True, TraceFlags(SAMPLED | RANDOM))
            context = in_context(parent)
            made = ended(world.direct.start(NAME, context, parent, SpanKind.CLIENT, ATTRS))
            asked = sampler.should_sample(context, parent.trace_id, NAME)
            assert made.get_span_context().trace_flags.sampled == asked.decision.is_sampled(), (
                rate,
                hex(parent.trace_id),
            )


@pytest.mark.parametrize("parent_kind", list(PARENT_KINDS))
def test_a_sampler_it_cannot_read_is_asked_and_its_result_used(parent_kind: str) -> None:
    kind, _ = PARENT_KINDS[parent_kind]
    sdk_sampler, direct_sampler = AskMe(), AskMe()
    sdk, direct = World(sdk_sampler), World(direct_sampler)
    assert direct.direct is not None
    rng = random.Random(SEED)
    made_contexts: list[Context] = []
    for _ in range(20):
        parent = _parent(kind, rng)
        context = in_context(parent) if parent.is_valid else Context()

        def make(context: Context = context) -> Context:
            made_contexts.append(context)
            return context

        span = direct.direct.start(NAME, make, parent, SpanKind.SERVER, ATTRS)
        assert type(span) is DirectSpan
        assert span.get_span_context().trace_state.get("asked") == "yes"
        span.end()
        sdk.sdk_start(NAME, context, SpanKind.SERVER, ATTRS).end()
    assert len(direct_sampler.asked) == 20
    # Asked as the SDK asks: the context (made for it), the trace id, name, kind, attributes.
    assert direct_sampler.asked == sdk_sampler.asked
    assert [asked[0] for asked in direct_sampler.asked] == made_contexts
    assert [fields(s) for s in direct.spans] == [fields(s) for s in sdk.spans]
    assert all(s.attributes and s.attributes["sampler.asked"] for s in direct.spans)
    assert 0 < len(direct.spans) < 20  # the record-only ones are not exported


def test_the_context_is_made_only_for_a_sampler_that_needs_it() -> None:
    world = World(ParentBased(_RATIO))
    assert world.direct is not None

    def make() -> Context:
        raise AssertionError("a sampler read as data needs no context")

    for parent in (INVALID_SPAN_CONTEXT, remote(), remote(0)):
        ended(world.direct.start(NAME, make, parent, SpanKind.SERVER, ATTRS))


def test_record_only_records_but_is_not_exported_on_either_path() -> None:
    def scenario(world: World, start: Start) -> None:
        for context in (Context(), in_context(remote())):
            span = start(NAME, context, SpanKind.SERVER, ATTRS)
            assert span.is_recording()
            assert not span.get_span_context().trace_flags.sampled
            span.set_attribute("app.key", "v")
            span.end()

    sdk, direct = on_both_paths(scenario, sampler=StaticSampler(RECORD_ONLY))
    assert sdk == direct == []


def test_a_dropped_span_is_the_sdks_non_recording_span() -> None:
    def scenario(world: World, start: Start) -> None:
        for context in (Context(), in_context(remote())):
            span = start(NAME, context, SpanKind.SERVER, ATTRS)
            assert type(span) is NonRecordingSpan and not span.is_recording()
            span.set_attribute("app.key", "v")
            span.end()

    sdk, direct = on_both_paths(scenario, sampler=ALWAYS_OFF)
    assert sdk == direct == []
    # The same context as the SDK's: a new span id, the parent's trace id and trace state.
    sdk_world, direct_world = World(ALWAYS_OFF), World(ALWAYS_OFF)
    for context in (Context(), in_context(remote())):
        assert (
            direct_world.direct_start(NAME, context, SpanKind.SERVER, ATTRS).get_span_context()
            == sdk_world.sdk_start(NAME, context, SpanKind.SERVER, ATTRS).get_span_context()
        )


def test_a_sampler_or_id_generator_replaced_on_the_tracer_is_seen() -> None:
    world = World()
    assert world.direct is not None
    assert type(ended(world.direct_start(NAME, Context(), SpanKind.CLIENT, ATTRS))) is DirectSpan
    world.tracer.sampler = ALWAYS_OFF
    assert type(world.direct_start(NAME, Context(), SpanKind.CLIENT, ATTRS)) is NonRecordingSpan
    sampler = AskMe()
    world.tracer.sampler = sampler
    ended(world.direct_start(NAME, Context(), SpanKind.CLIENT, ATTRS))
    assert len(sampler.asked) == 1
    world.tracer.sampler = ALWAYS_ON
    world.tracer.id_generator = SeededIds(random_ids=False)
    span = ended(world.direct_start(NAME, Context(), SpanKind.CLIENT, ATTRS))
    assert span.get_span_context().trace_flags == SAMPLED  # no random-trace-id flag now


# -- set-ups the direct path leaves to the SDK -------------------------------------------------


class OnStart(SpanProcessor):
    """A processor that looks at spans as they start."""

    def __init__(self) -> None:
        self.started: list[trace.Span] = []
        self.ended: list[ReadableSpan] = []

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        self.started.append(span)

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span)


class QuietSimple(SimpleSpanProcessor):
    """A subclass of a trusted processor: it might do anything at start."""


def _is_sdk_span(span: trace.Span) -> bool:
    return isinstance(span, SdkSpan) and not isinstance(span, DirectSpan)


def test_a_processor_that_looks_at_starting_spans_gets_the_sdks_span() -> None:
    world = World()
    processor = OnStart()
    world.provider.add_span_processor(processor)
    assert world.direct is not None
    span = world.direct_start(NAME, in_context(remote()), SpanKind.SERVER, ATTRS)
    assert _is_sdk_span(span)
    assert processor.started == [span]
    span.set_attribute("app.key", "v")
    span.end()
    [exported] = world.spans
    assert processor.ended == [exported]
    assert exported.parent == remote() and dict(exported.attributes or {})["app.key"] == "v"


def test_a_processor_added_after_the_direct_tracer_was_made_is_seen() -> None:
    world = World()
    first = ended(world.direct_start(NAME, Context(), SpanKind.CLIENT, ATTRS))
    assert type(first) is DirectSpan
    processor = OnStart()
    world.provider.add_span_processor(processor)
    second = ended(world.direct_start(NAME, Context(), SpanKind.CLIENT, ATTRS))
    assert _is_sdk_span(second)
    assert processor.started == [second]
    assert [s.context for s in world.spans] == [
        first.get_span_context(),
        second.get_span_context(),
    ]
    assert [s.context for s in processor.ended] == [second.get_span_context()]


def test_a_subclass_of_a_trusted_processor_is_not_trusted() -> None:
    world = World()
    extra = InMemorySpanExporter()
    world.provider.add_span_processor(QuietSimple(extra))
    span = ended(world.direct_start(NAME, Context(), SpanKind.CLIENT, ATTRS))
    assert _is_sdk_span(span)
    assert len(world.spans) == len(extra.get_finished_spans()) == 1


def test_batch_and_several_simple_processors_stay_on_the_direct_path() -> None:
    world = World()
    more, batched = InMemorySpanExporter(), InMemorySpanExporter()
    world.provider.add_span_processor(SimpleSpanProcessor(more))
    world.provider.add_span_processor(BatchSpanProcessor(batched, schedule_delay_millis=60_000))
    try:
        span = world.direct_start(NAME, in_context(remote()), SpanKind.SERVER, ATTRS)
        assert type(span) is DirectSpan
        span.end()
        assert world.provider.force_flush()
        expected = [fields(s) for s in world.spans]
        assert len(expected) == 1
        assert [fields(s) for s in more.get_finished_spans()] == expected
        assert [fields(s) for s in batched.get_finished_spans()] == expected
    finally:
        world.provider.shutdown()


# SpanLimits read the environment when made: made in the tests, after _sdk_defaults.
@pytest.mark.parametrize(
    "limits",
    [
        {"max_span_attribute_length": 8},
        {"max_attribute_length": 8},
        {"max_span_attributes": 4},
        {"max_span_attributes": 31},
        {"max_attributes": 16},
    ],
    ids=["span value length", "value length", "4 attributes", "31 attributes", "16 of all"],
)
def test_limits_that_would_cut_dubboks_attributes_leave_spans_to_the_sdk(
    limits: dict[str, int],
) -> None:
    assert World(limits=SpanLimits(**limits)).direct is None


@pytest.mark.parametrize(
    "limits",
    [
        {"max_span_attributes": 32},
        {"max_span_attributes": SpanLimits.UNSET},
        {"max_attribute_length": 8, "max_span_attribute_length": SpanLimits.UNSET},
        {"max_events": 1, "max_links": 1, "max_event_attributes": 1, "max_link_attributes": 1},
    ],
    ids=["32 attributes", "no count limit", "only other values' length", "events and links"],
)
def test_limits_that_leave_dubboks_attributes_alone_allow_the_direct_path(
    limits: dict[str, int],
) -> None:
    assert World(limits=SpanLimits(**limits)).direct is not None


class SubTracer(Tracer):
    pass


class WrappingTracer(trace.Tracer):
    """An application's own tracer over the SDK's."""

    def __init__(self, inner: trace.Tracer) -> None:
        self.inner = inner

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        return self.inner.start_span(*args, **kwargs)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.start_as_current_span(*args, **kwargs)


def test_a_tracer_other_than_the_sdks_own_is_left_alone() -> None:
    world = World()
    sub = SubTracer(
        world.tracer.sampler,
        world.tracer.resource,
        world.tracer.span_processor,
        world.tracer.id_generator,
        world.tracer.instrumentation_info,
        world.tracer._span_limits,
        world.tracer._instrumentation_scope,
        meter_provider=NoOpMeterProvider(),
    )
    assert DirectTracer.for_tracer(NoOpTracer()) is None
    assert DirectTracer.for_tracer(sub) is None
    assert DirectTracer.for_tracer(WrappingTracer(world.tracer)) is None


def test_a_concurrent_multi_span_processor_is_left_to_the_sdk() -> None:
    provider = TracerProvider(
        active_span_processor=ConcurrentMultiSpanProcessor(), shutdown_on_exit=False
    )
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    assert DirectTracer.for_tracer(provider.get_tracer("dubbok")) is None


def test_the_sdks_self_metrics_leave_spans_to_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    meters = MeterProvider(shutdown_on_exit=False)
    try:
        provider = TracerProvider(meter_provider=meters, shutdown_on_exit=False)
        assert DirectTracer.for_tracer(provider.get_tracer("dubbok")) is None
    finally:
        meters.shutdown()
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "false")
    provider = TracerProvider(meter_provider=NoOpMeterProvider(), shutdown_on_exit=False)
    assert DirectTracer.for_tracer(provider.get_tracer("dubbok")) is not None


def _set_enabled(world: World, enabled: bool) -> None:
    world.provider._set_tracer_configurator(
        tracer_configurator=lambda scope: _TracerConfig(is_enabled=enabled)
    )


def test_a_tracer_disabled_by_the_configurator_makes_the_sdks_non_recording_span() -> None:
    sdk, direct = World(), World()
    for world in (sdk, direct):
        _set_enabled(world, False)
    for context in (Context(), in_context(remote())):
        made = direct.direct_start(NAME, context, SpanKind.SERVER, ATTRS)
        expected = sdk.sdk_start(NAME, context, SpanKind.SERVER, ATTRS)
        assert type(made) is NonRecordingSpan and not made.is_recording()
        assert made.get_span_context() == expected.get_span_context()
        made.end()
    assert direct.spans == ()
    _set_enabled(direct, True)
    assert type(ended(direct.direct_start(NAME, Context(), SpanKind.CLIENT, ATTRS))) is DirectSpan
    assert len(direct.spans) == 1


def test_a_tracer_created_disabled_still_gets_a_direct_tracer_that_defers() -> None:
    provider = TracerProvider(
        _tracer_configurator=lambda scope: _TracerConfig(is_enabled=False),
        shutdown_on_exit=False,
    )
    direct = DirectTracer.for_tracer(provider.get_tracer("dubbok"))
    assert direct is not None
    span = direct.start(NAME, in_context(remote()), remote(), SpanKind.SERVER, ATTRS)
    assert type(span) is NonRecordingSpan
    assert span.get_span_context() == remote()


# -- DirectSpan as an API span: the SDK's rules ------------------------------------------------


def test_set_attribute_validates_values_as_the_sdk(caplog: pytest.LogCaptureFixture) -> None:
    def scenario(world: World, start: Start) -> None:
        span = start(NAME, Context(), SpanKind.SERVER, ATTRS)
        span.set_attribute("app.list", ["a", "b"])
        span.set_attribute("app.mapping", {"k": [1, 2]})
        span.set_attribute("app.object", object())  # not a value: None, with a warning
        span.set_attribute("", "an empty key")  # dropped, with a warning
        span.set_attributes({"app.x": 1, "app.y": "z", "rpc.grpc.status_code": 14})
        span.end()

    with caplog.at_level(logging.WARNING):
        sdk, direct = on_both_paths(scenario)
    assert direct == sdk
    [span] = direct
    assert span["attributes"] == {
        **ATTRS,
        "rpc.grpc.status_code": 14,
        "app.list": ("a", "b"),
        "app.mapping": {"k": (1, 2)},
        "app.object": None,
        "app.x": 1,
        "app.y": "z",
    }
    assert span["dropped_attributes"] == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("Invalid type `<class 'object'>`" in w for w in warnings) == 2  # per path
    assert sum(w.startswith("invalid key ``") for w in warnings) == 2


def test_set_attributes_with_a_non_string_key_as_the_sdk() -> None:
    def scenario(world: World, start: Start) -> None:
        span = start(NAME, Context(), SpanKind.SERVER, ATTRS)
        span.set_attributes({1: "one", "app.y": "z"})  # type: ignore[dict-item]
        span.end()

    sdk, direct = on_both_paths(scenario)
    assert direct == sdk


def test_setting_attributes_never_writes_the_dict_the_span_started_with() -> None:
    world = World()
    shared = {"rpc.system": "grpc", "rpc.method": "Echo"}
    before = dict(shared)
    first = world.direct_start(NAME, Context(), SpanKind.CLIENT, shared)
    second = world.direct_start(NAME, Context(), SpanKind.CLIENT, shared)
    read_only = world.direct_start(NAME, Context(), SpanKind.CLIENT, MappingProxyType(shared))
    first.set_attribute("app.key", "v")
    first.set_attributes({"rpc.method": "Other"})
    read_only.set_attribute("app.key", "ro")
    assert shared == before
    for span in (first, second, read_only):
        span.end()
    assert shared == before
    exported = {s.context.span_id: dict(s.attributes or {}) for s in world.spans}
    assert exported[first.get_span_context().span_id] == {
        "rpc.system": "grpc",
        "rpc.method": "Other",
        "app.key": "v",
    }
    assert exported[second.get_span_context().span_id] == before
    assert exported[read_only.get_span_context().span_id] == {**before, "app.key": "ro"}


def test_the_attribute_count_limit_drops_the_oldest_as_the_sdk(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def scenario(world: World, start: Start) -> None:
        span = start(NAME, Context(), SpanKind.SERVER, ATTRS)
        for i in range(40):
            span.set_attribute(f"app.k{i}", i)
        span.end()

    with caplog.at_level(logging.WARNING):
        sdk, direct = on_both_paths(scenario, limits=SpanLimits(max_span_attributes=32))
    assert direct == sdk
    [span] = direct
    assert len(span["attributes"]) == 32
    assert span["dropped_attributes"] == len(ATTRS) + 40 - 32
    assert "app.k39" in span["attributes"] and "rpc.system" not in span["attributes"]
    assert "Attributes dict is full" in caplog.text


def test_events_with_their_limits_as_the_sdk(caplog: pytest.LogCaptureFixture) -> None:
    limits = SpanLimits(
        max_events=2,
        max_event_attributes=2,
        max_attribute_length=4,
        max_span_attribute_length=SpanLimits.UNSET,
    )

    def scenario(world: World, start: Start) -> None:
        span = start(NAME, Context(), SpanKind.CLIENT, ATTRS)
        span.add_event("first", {"a": 1})
        span.add_event("second", {"b": "abcdefgh", "c": 2}, timestamp=1_000)
        span.add_event("third", {"d": 3, "e": 4, "f": 5})
        span.set_attribute("app.long", "abcdefgh")  # span values have no length limit
        span.end()

    with caplog.at_level(logging.WARNING):
        sdk, direct = on_both_paths(scenario, limits=limits)
    assert direct == sdk
    [span] = direct
    assert span["events"] == [("second", {"b": "abcd", "c": 2}, 0), ("third", {"e": 4, "f": 5}, 1)]
    assert span["dropped_events"] == 1
    assert span["attributes"]["app.long"] == "abcdefgh"


def test_an_event_keeps_its_attributes_and_timestamp() -> None:
    world = World()
    span = world.direct_start(NAME, Context(), SpanKind.CLIENT, ATTRS)
    before = time_ns()
    span.add_event("retry", {"dubbok.attempt": 2, "app.tags": ["x"]})
    span.add_event("hedge", timestamp=42)
    span.end()
    [exported] = world.spans
    retry, hedge = exported.events
    assert retry.name == "retry" and dict(retry.attributes or {}) == {
        "dubbok.attempt": 2,
        "app.tags": ("x",),
    }
    assert before <= retry.timestamp <= (exported.end_time or 0)
    assert (hedge.name, hedge.timestamp, dict(hedge.attributes or {})) == ("hedge", 42, {})


def test_links_with_their_limits_as_the_sdk() -> None:
    limits = SpanLimits(max_links=2, max_link_attributes=1)

    def scenario(world: World, start: Start) -> None:
        span = start(NAME, Context(), SpanKind.CLIENT, ATTRS)
        span.add_link(INVALID_SPAN_CONTEXT)  # ignored: nothing to link to
        span.add_link(remote(), {"link.kind": "follows", "link.extra": 1})
        span.add_link(INVALID_SPAN_CONTEXT, {"link.why": "kept: it has attributes"})
        span.add_link(SpanContext(0, 0, False, trace_state=VENDOR_STATE))  # kept: trace state
        span.end()

    sdk, direct = on_both_paths(scenario, limits=limits)
    assert direct == sdk
    [span] = direct
    assert [attrs for _, attrs, _ in span["links"]] == [{"link.why": "kept: it has attributes"}, {}]
    assert span["dropped_links"] == 1


def test_update_name_as_the_sdk() -> None:
    def scenario(world: World, start: Start) -> None:
        span = start(NAME, Context(), SpanKind.CLIENT, ATTRS)
        span.update_name("renamed")
        span.end()

    sdk, direct = on_both_paths(scenario)
    assert direct == sdk
    assert direct[0]["name"] == "renamed"


STATUS_CALLS: dict[str, tuple[list[tuple[Any, ...]], tuple[StatusCode, str | None]]] = {
    "error with a description": ([(ERROR, "bad")], (ERROR, "bad")),
    "the last error wins": ([(ERROR, "a"), (Status(ERROR, "b"),)], (ERROR, "b")),
    "ok is final": ([(StatusCode.OK,), (ERROR, "late")], (StatusCode.OK, None)),
    "ok after an error": ([(ERROR, "bad"), (Status(StatusCode.OK),)], (StatusCode.OK, None)),
    "unset is ignored": ([(ERROR, "bad"), (StatusCode.UNSET,)], (ERROR, "bad")),
    "unset is ignored, too": ([(Status(ERROR, "x"),), (Status(StatusCode.UNSET),)], (ERROR, "x")),
    "a status and a description": ([(Status(ERROR, "kept"), "ignored")], (ERROR, "kept")),
    "ok with a description": ([(StatusCode.OK, "not kept")], (StatusCode.OK, None)),
}  # fmt: skip


@pytest.mark.parametrize("case", list(STATUS_CALLS))
def test_set_status_follows_the_sdks_rules(case: str, caplog: pytest.LogCaptureFixture) -> None:
    calls, expected = STATUS_CALLS[case]

    def scenario(world: World, start: Start) -> None:
        span = start(NAME, Context(), SpanKind.CLIENT, ATTRS)
        for call in calls:
            span.set_status(*call)
        span.end()

    with caplog.at_level(logging.WARNING):
        sdk, direct = on_both_paths(scenario)
    assert direct == sdk
    assert direct[0]["status"] == expected
    if case == "a status and a description":
        assert caplog.text.count("Description ignored ignored") == 2  # once per path


class BackendError(Exception):
    pass


def test_record_exception_as_the_sdk() -> None:
    try:
        raise BackendError("no backend")
    except BackendError as caught:
        error = caught

    def scenario(world: World, start: Start) -> None:
        span = start(NAME, Context(), SpanKind.SERVER, ATTRS)
        span.record_exception(error)
        span.record_exception(ValueError("bad"), {"app.key": "v"}, timestamp=7, escaped=True)
        span.end()

    sdk, direct = on_both_paths(scenario)
    assert direct == sdk
    first, second = direct[0]["events"]
    assert first[0] == "exception"
    assert first[1]["exception.type"] == f"{__name__}.BackendError"
    assert first[1]["exception.message"] == "no backend"
    assert "BackendError: no backend" in first[1]["exception.stacktrace"]
    assert "raise BackendError" in first[1]["exception.stacktrace"]
    assert first[1]["exception.escaped"] == "False"
    assert second[1]["exception.type"] == "ValueError"
    assert second[1]["exception.escaped"] == "True"
    assert second[1]["app.key"] == "v"


def _raise_inside(span: trace.Span) -> None:
    with pytest.raises(ValueError, match="boom"):
        with span:
            raise ValueError("boom")


def test_an_exception_escaping_with_span_is_recorded_and_ends_the_span() -> None:
    spans: list[trace.Span] = []

    def scenario(world: World, start: Start) -> None:
        span = start(NAME, Context(), SpanKind.SERVER, ATTRS)
        spans.append(span)
        _raise_inside(span)
        assert not span.is_recording()

    sdk, direct = on_both_paths(scenario)
    assert direct == sdk
    [span] = direct
    assert span["status"] == (ERROR, "ValueError: boom")
    [(name, attributes, _)] = span["events"]
    assert name == "exception"
    assert attributes["exception.type"] == "ValueError"
    assert attributes["exception.escaped"] == "True"
    assert 'raise ValueError("boom")' in attributes["exception.stacktrace"]
    assert type(spans[1]) is DirectSpan


def test_with_span_without_an_exception_just_ends_it() -> None:
    def scenario(world: World, start: Start) -> None:
        with start(NAME, Context(), SpanKind.SERVER, ATTRS) as span:
            span.set_attribute("app.key", "v")
        assert not span.is_recording()

    sdk, direct = on_both_paths(scenario)
    assert direct == sdk
    assert direct[0]["status"] == (StatusCode.UNSET, None) and direct[0]["events"] == []


def test_a_span_ended_twice_is_exported_once(caplog: pytest.LogCaptureFixture) -> None:
    world = World()
    span = world.direct_start(NAME, Context(), SpanKind.CLIENT, ATTRS)
    end = time_ns() + 1_000_000
    span.end(end_time=end)
    with caplog.at_level(logging.WARNING):
        span.end()
    [exported] = world.spans
    assert exported.end_time == end
    assert [r.getMessage() for r in caplog.records] == ["Calling end() on an ended span."]


def test_changes_after_the_end_are_ignored_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = World()
    span = world.direct_start(NAME, Context(), SpanKind.CLIENT, ATTRS)
    span.set_attribute("app.key", "v")
    span.add_event("retry")
    span.end()
    assert not span.is_recording()
    [exported] = world.spans
    before = fields(exported)
    with caplog.at_level(logging.WARNING):
        span.set_attribute("app.key", "late")
        span.set_attributes({"app.other": 1})
        span.add_event("late")
        span.add_link(remote())
        span.update_name("late")
        span.set_status(ERROR, "late")
        span.record_exception(ValueError("late"))
    assert fields(exported) == before
    with pytest.raises(TypeError):  # frozen at the end, as the SDK's end() leaves them
        exported._attributes["app.key"] = "late"  # type: ignore[index]
    assert span.name == NAME and span.status.status_code is StatusCode.UNSET  # type: ignore[attr-defined]
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 7
    assert all("ended span" in m for m in messages)
    assert not span.is_recording()


def test_attributes_and_events_from_several_threads_all_arrive() -> None:
    world = World(limits=SpanLimits(max_span_attributes=SpanLimits.UNSET, max_events=1000))
    span = world.direct_start(NAME, Context(), SpanKind.SERVER, ATTRS)
    barrier = threading.Barrier(4)

    def work(n: int) -> None:
        barrier.wait()
        for i in range(50):
            span.set_attribute(f"app.t{n}.k{i}", i)
            span.add_event(f"t{n}.e{i}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    span.end()
    [exported] = world.spans
    assert len(exported.attributes or {}) == len(ATTRS) + 200
    assert len(exported.events) == 200 and exported.dropped_attributes == 0


# -- through the observer ----------------------------------------------------------------------


class FakeServerContext:
    def __init__(self, metadata: Metadata, peer: str = "ipv4:127.0.0.1:5555") -> None:
        self._metadata = tuple(metadata)
        self._peer = peer

    def invocation_metadata(self) -> Sequence[tuple[str, Any]]:
        return self._metadata

    def peer(self) -> str:
        return self._peer


def run_isolated(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a fresh context: no attachments, no current span from other tests."""
    ctx = contextvars.copy_context()
    ctx.run(attachments.clear)
    return ctx.run(fn)


TRACEPARENT = f"00-{REMOTE_TRACE:032x}-{REMOTE_SPAN:016x}-01"


def _observer(world: World) -> OtelObserver:
    return OtelObserver(world.provider, NoOpMeterProvider())


def _handle(observer: OtelObserver, set_attribute: bool = True) -> trace.Span:
    """A handled call whose handler sets an attribute on the current (server) span."""

    def body() -> trace.Span:
        served = observer.handle(
            SERVICE, "Echo", FakeServerContext((("traceparent", TRACEPARENT),))
        )
        assert served is not None
        current = trace.get_current_span()
        if set_attribute:
            current.set_attribute("app.key", "v")
        served.done(OK, "")
        assert not trace.get_current_span().get_span_context().is_valid  # restored
        return current

    result: trace.Span = run_isolated(body)
    return result


SERVER_ATTRS = {
    "rpc.system": "grpc",
    "rpc.service": SERVICE,
    "rpc.method": "Echo",
    "rpc.grpc.status_code": 0,
    "network.peer.address": "127.0.0.1",
    "network.peer.port": 5555,
}


def test_a_handler_sets_an_attribute_on_the_direct_server_span() -> None:
    world = World()
    observer = _observer(world)
    current = _handle(observer)
    assert type(current) is DirectSpan
    _handle(observer, set_attribute=False)  # the next call starts from the same cached dict
    with_key, without_key = world.spans
    assert with_key.name == NAME and with_key.kind is SpanKind.SERVER
    assert with_key.parent == SpanContext(REMOTE_TRACE, REMOTE_SPAN, True, TraceFlags(SAMPLED))
    assert with_key.context.trace_id == REMOTE_TRACE
    assert with_key.context.span_id == current.get_span_context().span_id
    assert dict(with_key.attributes or {}) == {**SERVER_ATTRS, "app.key": "v"}
    assert dict(without_key.attributes or {}) == SERVER_ATTRS
    assert with_key.status.status_code is StatusCode.UNSET


def test_the_observers_spans_are_the_same_on_both_paths() -> None:
    """A whole call — call span, attempt, and the server's span with a handler's attribute and
    exception — with the direct path, and with a processor that forces the SDK's."""
    direct, sdk = World(), World()
    sdk.provider.add_span_processor(OnStart())
    inv = Invocation(SERVICE, "Echo", None, (), None)
    endpoint = Endpoint.parse("127.0.0.1:5001")
    current: list[trace.Span] = []

    def call(observer: OtelObserver) -> None:
        obs = observer.call(inv, "roundrobin", "failover")
        assert obs is not None
        md = obs.attempt(endpoint, 1, ())
        served = observer.handle(SERVICE, "Echo", FakeServerContext(md))
        assert served is not None
        span = trace.get_current_span()
        current.append(span)
        span.set_attribute("app.key", "v")
        span.record_exception(RuntimeError("handler failed"))
        served.done(grpc.StatusCode.INTERNAL, "handler failed")
        obs.attempt_done(grpc.StatusCode.INTERNAL, "handler failed")
        obs.event("retry", {"dubbok.attempt": 2})
        obs.done(grpc.StatusCode.INTERNAL, "handler failed")

    for world in (direct, sdk):
        run_isolated(lambda world=world: call(_observer(world)))
    assert type(current[0]) is DirectSpan and _is_sdk_span(current[1])

    assert [fields(s) for s in direct.spans] == [fields(s) for s in sdk.spans]
    server, attempt, call_span = direct.spans
    assert server.kind is SpanKind.SERVER and server.status.status_code is ERROR
    assert dict(server.attributes or {})["app.key"] == "v"
    assert [e.name for e in server.events] == ["exception"]
    assert server.parent is not None and server.parent.span_id == attempt.context.span_id
    assert [e.name for e in call_span.events] == ["retry"]


@contextmanager
def _on_start(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    world = World()
    world.provider.add_span_processor(OnStart())
    yield world


@contextmanager
def _tight_limits(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    world = World(limits=SpanLimits(max_span_attribute_length=64))
    assert world.direct is None
    yield world


@contextmanager
def _concurrent(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    processor = ConcurrentMultiSpanProcessor()
    world = World(active_span_processor=processor)
    assert world.direct is None
    try:
        yield world
    finally:
        world.provider.shutdown()
        processor._executor.shutdown(wait=True)  # its worker threads


@contextmanager
def _self_metrics(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    try:
        world = World(meter_provider=meters)
        assert world.direct is None
        yield world
        # The SDK counted the span it made: something the direct path could not do.
        data = reader.get_metrics_data()
        assert data is not None
        started = [
            point.value
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if metric.name == "otel.sdk.span.started"
            for point in metric.data.data_points
        ]
        assert started == [1]
    finally:
        meters.shutdown()


FALLBACKS: dict[str, Callable[[pytest.MonkeyPatch], AbstractContextManager[World]]] = {
    "a processor with on_start": _on_start,
    "a value length limit": _tight_limits,
    "a concurrent multi-processor": _concurrent,
    "the SDK's self-metrics": _self_metrics,
}


@pytest.mark.parametrize("setup", list(FALLBACKS))
def test_the_observer_hands_spans_to_the_sdk_when_it_must(
    setup: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FALLBACKS[setup](monkeypatch) as world:
        current = _handle(_observer(world))
        assert _is_sdk_span(current)
        [exported] = world.spans
        assert exported.kind is SpanKind.SERVER and exported.parent is not None
        assert exported.parent.span_id == REMOTE_SPAN
        assert dict(exported.attributes or {}) == {**SERVER_ATTRS, "app.key": "v"}
