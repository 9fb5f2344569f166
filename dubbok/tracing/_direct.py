"""dubbok's own spans, recorded straight into the SDK's span processors.

The OpenTelemetry SDK's ``Tracer.start_span`` + ``Span.end`` costs about 30 µs per span on
the development machine, most of it re-validating attributes one by one behind a lock
(``BoundedAttributes``) and building objects a processor never sees. dubbok makes three spans
per call (call, attempt, server) from attribute dicts it has already built and checked once
per method (:mod:`._method`), so for those spans it does what ``start_span`` does — the
tracer's sampler, id generator, resource, scope and processors — and hands the processors a
:class:`DirectSpan`, which is a :class:`~opentelemetry.sdk.trace.ReadableSpan` with the same
fields the SDK's would have: a few µs a span.

:class:`DirectTracer` does this only when the result is indistinguishable from the SDK's:

* the tracer is the SDK's own ``Tracer``, enabled, with the SDK's self-metrics off;
* every span processor is a ``BatchSpanProcessor`` or ``SimpleSpanProcessor`` (whose
  ``on_start`` does nothing), behind the provider's ``SynchronousMultiSpanProcessor``;
* the span limits leave dubbok's attributes as they are (no length limit, room for 32).

Anything else — another SDK, a processor that looks at spans as they start, tight limits, a
processor added later — and it hands the span to ``tracer.start_span`` instead. A
:class:`DirectSpan` is a full :class:`opentelemetry.trace.Span`: a handler may set attributes,
add events or record exceptions on the server span, with the SDK's limits and validation.

Span contexts are built and read as the tuples they are (``SpanContext`` is a
``tuple[trace_id, span_id, is_remote, trace_flags, trace_state, is_valid]``); the layout is
checked at import, and without it this module is not used.
"""

from __future__ import annotations

import logging
import random
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from time import time_ns
from typing import Any

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.trace import (
    Event,
    ReadableSpan,
    SpanLimits,
    SynchronousMultiSpanProcessor,
    Tracer,
)
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    StaticSampler,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.util import types

from ._w3c import DEFAULT_STATE, TUPLE_LAYOUT, new_context

__all__ = ["DirectSpan", "DirectTracer"]

log = logging.getLogger(__name__)

# Processors whose on_start and _on_ending do nothing: they only ever see the ended span.
_END_ONLY = (BatchSpanProcessor, SimpleSpanProcessor)
_MIN_ATTRIBUTES = 32  # dubbok's spans carry at most about 15
_FLAGS = tuple(TraceFlags(i) for i in range(4))  # SAMPLED | RANDOM_TRACE_ID combinations
_SAMPLED = TraceFlags.SAMPLED
_RANDOM = TraceFlags.RANDOM_TRACE_ID
_RATIO_LIMIT = TraceIdRatioBased.TRACE_ID_LIMIT
_SAMPLE = Decision.RECORD_AND_SAMPLE
_DROP = Decision.DROP
_UNSET = Status(StatusCode.UNSET)
_PARENT_BASED_PARTS = (
    "_root",
    "_remote_parent_sampled",
    "_remote_parent_not_sampled",
    "_local_parent_sampled",
    "_local_parent_not_sampled",
)

# A sampler the SDK ships, as data: a constant Decision, or a TraceIdRatioBased bound.
_Simple = Decision | int
# Root, remote parent sampled / not, local parent sampled / not.
_Plan = tuple[_Simple, _Simple, _Simple, _Simple, _Simple]
# The context to hand a tracer or sampler: made only on the paths that need it.
ContextSource = Context | Callable[[], Context]


def _simple(sampler: object) -> _Simple | None:
    cls = type(sampler)
    should_sample = getattr(cls, "should_sample", None)
    if should_sample is StaticSampler.should_sample:
        decision = getattr(sampler, "_decision", None)
        return decision if isinstance(decision, Decision) else None
    if should_sample is TraceIdRatioBased.should_sample and cls.bound is TraceIdRatioBased.bound:  # type: ignore[attr-defined]
        bound = getattr(sampler, "bound", None)
        return bound if type(bound) is int else None
    return None


def sampling_plan(sampler: object) -> _Plan | None:
    """The SDK's own samplers (always on/off, trace-id ratio, parent-based over those) as
    data this module decides with inline; ``None``: ask the sampler."""
    simple = _simple(sampler)
    if simple is not None:
        return (simple, simple, simple, simple, simple)
    if getattr(type(sampler), "should_sample", None) is ParentBased.should_sample:
        parts = [_simple(getattr(sampler, name, None)) for name in _PARENT_BASED_PARTS]
        if all(part is not None for part in parts):
            return tuple(parts)  # type: ignore[return-value]
    return None


def _limits_fit(limits: Any) -> bool:
    if not isinstance(limits, SpanLimits):
        return False
    most = limits.max_span_attributes
    return limits.max_span_attribute_length is None and (most is None or most >= _MIN_ATTRIBUTES)


def _context(source: ContextSource | None) -> Context | None:
    return source() if callable(source) else source


class DirectTracer:
    """Starts dubbok's spans for one SDK ``Tracer``; see the module text for when it records
    them itself and when it asks the tracer."""

    __slots__ = (
        "_bits",
        "_checked",
        "_direct",
        "_ids",
        "_limits",
        "_multi",
        "_plan",
        "_random_ids",
        "_sampler",
        "_tracer",
    )

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer
        self._multi: SynchronousMultiSpanProcessor = tracer.span_processor  # type: ignore[assignment]
        self._limits: SpanLimits = tracer._span_limits
        self._checked: object = None
        self._direct = False
        self._sampler: object = None
        self._plan: _Plan | None = None
        self._ids: object = None
        self._random_ids = False
        self._bits: Callable[[int], int] | None = None
        self._recheck()

    @staticmethod
    def for_tracer(tracer: trace.Tracer) -> DirectTracer | None:
        """A DirectTracer for ``tracer`` if it is the SDK's and could ever qualify."""
        if (
            TUPLE_LAYOUT
            and type(tracer) is Tracer
            and type(tracer.span_processor) is SynchronousMultiSpanProcessor
            and _limits_fit(getattr(tracer, "_span_limits", None))
            and type(getattr(tracer, "_tracer_metrics", None)).__name__ == "NoOpTracerMetrics"
            and hasattr(tracer, "_tracer_config")
            and hasattr(tracer, "_instrumentation_scope")
            and hasattr(tracer.span_processor, "_span_processors")
        ):
            return DirectTracer(tracer)
        return None

    def _recheck(self) -> None:
        """Look again at what can change under a tracer: its processors (added at any
        time), its sampler and id generator."""
        tracer = self._tracer
        processors = self._multi._span_processors
        self._checked = processors
        self._direct = isinstance(processors, tuple) and all(
            type(p) in _END_ONLY for p in processors
        )
        if tracer.sampler is not self._sampler:
            self._sampler = tracer.sampler
            self._plan = sampling_plan(tracer.sampler)
        if tracer.id_generator is not self._ids:
            self._ids = tracer.id_generator
            self._random_ids = bool(tracer.id_generator.is_trace_id_random())
            # The SDK's default generator is random.getrandbits(128), then (64): called
            # here directly, in the same order (the same ids, two calls less per span).
            self._bits = (
                random.getrandbits if type(tracer.id_generator) is RandomIdGenerator else None
            )

    def start(
        self,
        name: str,
        context: ContextSource | None,
        parent: SpanContext,
        kind: SpanKind,
        attributes: Mapping[str, types.AnyValue],
    ) -> trace.Span:
        """As ``tracer.start_span(name, context, kind, attributes)``, told the parent's span
        context (``parent``: the span in ``context``; invalid for a root span). ``context``
        may be a function making it: only a sampler this module cannot read needs it.

        ``attributes`` must be valid and within the limits (dubbok's own, checked once per
        method); the span keeps them as they are until something sets an attribute."""
        begun = self.begin(name, context, parent, kind, attributes)
        if begun.__class__ is SpanContext:
            return NonRecordingSpan(begun)
        return begun  # type: ignore[return-value]

    def begin(
        self,
        name: str,
        context: ContextSource | None,
        parent: SpanContext,
        kind: SpanKind,
        attributes: Mapping[str, types.AnyValue],
    ) -> trace.Span | SpanContext:
        """As :meth:`start`; a span the sampler drops comes back as its bare SpanContext
        (what the SDK's NonRecordingSpan would carry), for callers that need nothing more."""
        tracer = self._tracer
        if (
            self._multi._span_processors is not self._checked
            or tracer.sampler is not self._sampler
            or tracer.id_generator is not self._ids
        ):
            self._recheck()
        if not self._direct or not tracer._tracer_config.is_enabled:
            return tracer.start_span(name, _context(context), kind=kind, attributes=attributes)
        plan = self._plan
        parent_or_none: SpanContext | None
        if parent[5]:  # is_valid
            trace_id = parent[0]
            parent_flags = parent[3]
            flags = parent_flags & _RANDOM
            trace_state = parent[4]
            parent_or_none = parent
            if plan is not None:
                if parent_flags & _SAMPLED:
                    rule = plan[1] if parent[2] else plan[3]
                else:
                    rule = plan[2] if parent[2] else plan[4]
        else:
            bits = self._bits
            trace_id = bits(128) if bits is not None else 0
            if not trace_id:  # another generator, or (once in 2**128) the invalid id
                trace_id = tracer.id_generator.generate_trace_id()
            flags = _RANDOM if self._random_ids else 0
            trace_state = DEFAULT_STATE
            parent_or_none = None
            if plan is not None:
                rule = plan[0]
        recorded: types.Attributes = attributes
        if plan is not None:
            if rule.__class__ is int:
                decision = _SAMPLE if trace_id & _RATIO_LIMIT < rule else _DROP
            else:
                decision = rule  # type: ignore[assignment]
        else:
            result = tracer.sampler.should_sample(
                _context(context), trace_id, name, kind, attributes, ()
            )
            decision = result.decision
            recorded = result.attributes
            trace_state = result.trace_state or DEFAULT_STATE
        if decision is _SAMPLE:
            flags |= _SAMPLED
        bits = self._bits
        span_id = bits(64) if bits is not None else 0
        if not span_id:
            span_id = tracer.id_generator.generate_span_id()
        span_context: SpanContext = new_context(
            SpanContext, (trace_id, span_id, False, _FLAGS[flags], trace_state, True)
        )
        if decision is _DROP:
            return span_context
        return DirectSpan(self, name, span_context, parent_or_none, kind, recorded)

    def start_span(
        self,
        name: str,
        context: Context | None,
        kind: SpanKind,
        attributes: types.Attributes,
    ) -> trace.Span:
        """As ``tracer.start_span(name, context, kind, attributes)``, for any attributes:
        they are cleaned and limited as the SDK does."""
        parent = trace.get_current_span(context).get_span_context()
        limits = self._limits
        bounded = BoundedAttributes(
            limits.max_span_attributes,
            attributes,
            immutable=False,
            max_value_len=limits.max_span_attribute_length,
        )
        return self.start(name, context, parent, kind, bounded)


class DirectSpan(trace.Span, ReadableSpan):
    """A recording span of :class:`DirectTracer`'s: as the SDK's ``Span``, both the live span
    and, once ended, the ``ReadableSpan`` its processors receive (nothing changes it then)."""

    def __init__(
        self,
        tracer: DirectTracer,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: types.Attributes,
    ) -> None:
        # ReadableSpan's fields, under ReadableSpan's names (its properties read them).
        sdk = tracer._tracer
        self._name = name
        self._context = context
        self._kind = kind
        self._parent = parent
        # Shared and read-only (a cached dict of dubbok's) until something sets an
        # attribute: then a BoundedAttributes copy validates and limits as the SDK does.
        self._attributes = attributes
        self._events: Sequence[Event] = ()
        self._links: Sequence[Link] = ()
        self._resource = sdk.resource
        self._status = _UNSET
        self._instrumentation_info = sdk.instrumentation_info
        self._instrumentation_scope = sdk._instrumentation_scope
        self._end_time: int | None = None
        self._tracer = tracer
        self._lock = threading.Lock()
        self._start_time = time_ns()

    def __repr__(self) -> str:
        return f'DirectSpan(name="{self._name}", context={self._context})'

    def get_span_context(self) -> SpanContext:
        return self._context  # type: ignore[return-value]  # always set for a DirectSpan

    def is_recording(self) -> bool:
        return self._end_time is None

    def _mutable(self) -> BoundedAttributes:
        attrs = self._attributes
        if type(attrs) is not BoundedAttributes:
            limits = self._tracer._limits
            attrs = BoundedAttributes(
                limits.max_span_attributes,
                attrs,
                immutable=False,
                max_value_len=limits.max_span_attribute_length,
            )
            self._attributes = attrs
        return attrs

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        with self._lock:
            if self._end_time is not None:
                log.warning("Setting attribute on ended span.")
                return
            self._mutable()._set_items(attributes)  # as the SDK's set_attributes

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        with self._lock:
            if self._end_time is not None:
                log.warning("Setting attribute on ended span.")
                return
            self._mutable()[key] = value

    def add_event(
        self,
        name: str,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
    ) -> None:
        limits = self._tracer._limits
        bounded = BoundedAttributes(
            limits.max_event_attributes,
            attributes,
            max_value_len=limits.max_attribute_length,
            immutable=True,
        )
        event = Event(name=name, attributes=bounded, timestamp=timestamp)
        with self._lock:
            if self._end_time is not None:
                log.warning("Tried calling add_event on an ended span.")
                return
            events = self._events
            if type(events) is not BoundedList:
                events = self._events = BoundedList(limits.max_events)
            events.append(event)

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if not (context and (context.is_valid or attributes or context.trace_state)):
            return
        limits = self._tracer._limits
        bounded = BoundedAttributes(
            limits.max_link_attributes,
            attributes,
            max_value_len=limits.max_attribute_length,
            immutable=True,
        )
        with self._lock:
            if self._end_time is not None:
                log.warning("Tried calling add_link on an ended span.")
                return
            links = self._links
            if type(links) is not BoundedList:
                links = self._links = BoundedList(limits.max_links)
            links.append(Link(context, bounded))

    def update_name(self, name: str) -> None:
        with self._lock:
            if self._end_time is None:
                self._name = name
                return
        log.warning("Tried calling update_name on an ended span.")

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        with self._lock:
            if self._end_time is not None:
                log.warning("Tried calling set_status on an ended span.")
                return
            # As the SDK: OK is final, UNSET is ignored.
            if self._status.status_code is StatusCode.OK:
                return
            if isinstance(status, Status):
                if status.status_code is StatusCode.UNSET:
                    return
                if description is not None:
                    log.warning(
                        "Description %s ignored. Use either `Status` or "
                        "`(StatusCode, Description)`",
                        description,
                    )
                self._status = status
            elif status is not StatusCode.UNSET:
                self._status = Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        module = type(exception).__module__
        qualname = type(exception).__qualname__
        recorded: dict[str, types.AnyValue] = {
            "exception.type": f"{module}.{qualname}"
            if module and module != "builtins"
            else qualname,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        if attributes:
            recorded.update(attributes)
        self.add_event("exception", recorded, timestamp)

    def end(self, end_time: int | None = None) -> None:
        with self._lock:
            if self._end_time is not None:
                log.warning("Calling end() on an ended span.")
                return
            self._end_time = end_time if end_time is not None else time_ns()
            attrs = self._attributes
            if type(attrs) is BoundedAttributes:  # not isinstance: an ABC check costs more
                attrs._immutable = True  # as the SDK's end() does
        self._tracer._multi.on_end(self)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: Any,
    ) -> None:
        """As the SDK's span: an exception escaping ``with span:`` is recorded first."""
        if exc_val is not None and self.is_recording():
            self.record_exception(exc_val, escaped=True)
            self.set_status(Status(StatusCode.ERROR, f"{type(exc_val).__name__}: {exc_val}"))
        super().__exit__(exc_type, exc_val, exc_tb)
