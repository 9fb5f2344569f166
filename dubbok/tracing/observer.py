"""The OpenTelemetry observer: spans, context propagation and RPC metrics.

Installed on an App (``App(observer=OtelObserver())``) or as the process default
(:func:`dubbok.tracing.configure`), it turns the drivers' hooks (:mod:`dubbok.observe`) into::

    {service}/{method}   CLIENT  one per logical call: rpc.*, dubbok.loadbalance, dubbok.cluster;
    │                            events: retry, hedge, fallback, ... (governance decisions)
    ├─ {service}/{method} CLIENT  attempt 1: server.address/port, network.peer.*, dubbok.attempt
    │    └─ {service}/{method} SERVER  on the provider: parent taken from the metadata
    └─ {service}/{method} CLIENT  attempt 2 (a retry or failover): a sibling of attempt 1

Cost is the design constraint. Per call the hot path looks up cached attribute dicts, makes
one sampling decision for the logical call and, when it says "drop", creates nothing else:
attempts of an unsampled call get no span of their own and carry the call's (unsampled)
context, so the provider's parent-based sampler drops its span too. The client never makes
its spans current (no ``start_as_current_span``): it hands their context to the propagator
directly. With no tracer provider and no meter provider installed an observation is not even
created. Spans are recorded straight into the SDK's processors when that gives the same
spans (:mod:`._direct`), else through ``tracer.start_span``; the W3C header is written and
read here directly when the propagator is the default one (:mod:`._w3c`).

Threads and tasks: one observer serves every thread and task of its App. A client
observation lives on the calling thread or task; a server observation is created on the
handler's thread or task and finished there, which is what lets it attach the server span's
context for the handler's duration.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, MutableSequence
from contextvars import ContextVar, Token
from operator import attrgetter, itemgetter
from typing import Any, Protocol

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.metrics import MeterProvider, NoOpMeterProvider, get_meter_provider
from opentelemetry.propagators.textmap import Setter, TextMapPropagator
from opentelemetry.trace import (
    INVALID_SPAN_CONTEXT,
    NonRecordingSpan,
    NoOpTracerProvider,
    ProxyTracerProvider,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
    TracerProvider,
)
from opentelemetry.util.types import AnyValue

from .. import __version__
from ..endpoint import Endpoint
from ..invocation import Invocation, Metadata
from ..observe import CallObservation, ServerObservation
from . import _semconv as sc
from . import _w3c
from ._method import EndTables, MethodInfo, MethodTable
from ._semconv import semconv_from_env
from .metrics import REGISTRY, Instruments

__all__ = ["OtelObserver"]

SCOPE = "dubbok"
_OK = grpc.StatusCode.OK
_CANCELLED = grpc.StatusCode.CANCELLED
_CLIENT = SpanKind.CLIENT
_SERVER = SpanKind.SERVER
_ERROR = StatusCode.ERROR
_global_textmap = propagate.get_global_textmap
_SAMPLED = TraceFlags.SAMPLED
_INVALID = INVALID_SPAN_CONTEXT


def _span_key() -> str:
    """The key the API keeps the current span under in a Context (made at its import)."""
    (key,) = trace.set_span_in_context(trace.INVALID_SPAN, Context()).keys()
    return key


# A Context is an immutable dict: with the key, a hot path reads and extends one directly,
# as ``get_current_span`` / ``set_span_in_context`` do, without their per-call checks.
_SPAN_KEY = _span_key()


def _span_in(ctx: Context) -> Span:
    span = ctx.get(_SPAN_KEY)
    return span if span is not None else trace.INVALID_SPAN  # type: ignore[return-value]


def _with_span(span: Span, ctx: Context) -> Context:
    return Context({**ctx, _SPAN_KEY: span})


def _context_var() -> ContextVar[Context] | None:
    """The ContextVar behind the API's current context, when the runtime context is the
    default contextvars one (``OTEL_PYTHON_CONTEXT`` may name another): hooks then read,
    set and reset it directly, as ``get_current`` / ``attach`` / ``detach`` would."""
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    if type(runtime) is not ContextVarsRuntimeContext:
        return None
    var = getattr(runtime, "_current_context", None)
    return var if isinstance(var, ContextVar) else None


_CONTEXT = _context_var()
if _CONTEXT is not None:
    _current_context: Callable[[], Context] = _CONTEXT.get
    _attach: Callable[[Context], Token[Context]] = _CONTEXT.set
else:  # pragma: no cover - another runtime context
    _current_context = otel_context.get_current
    _attach = otel_context.attach


def _detach(token: Token[Context]) -> None:
    if _CONTEXT is None:  # pragma: no cover - another runtime context
        otel_context.detach(token)
        return
    try:
        _CONTEXT.reset(token)
    except ValueError:  # made in another task or thread: the API logs why
        otel_context.detach(token)


# SpanContext's fields, read as its tuple where it is one (its properties are Python calls).
_is_remote: Callable[[SpanContext], bool]
_flags_of: Callable[[SpanContext], int]
_state_of: Callable[[SpanContext], Any]
_is_valid: Callable[[SpanContext], bool]
if _w3c.TUPLE_LAYOUT:
    _is_remote, _flags_of, _state_of, _is_valid = (itemgetter(i) for i in (2, 3, 4, 5))
else:  # pragma: no cover - another SpanContext layout
    _is_remote, _flags_of, _state_of, _is_valid = (
        attrgetter(name) for name in ("is_remote", "trace_flags", "trace_state", "is_valid")
    )

_clock = time.perf_counter


def _placeholder_meter_providers() -> tuple[type[Any], ...]:
    # The API's global proxy class is private; without it only NoOp counts as "none".
    try:
        from opentelemetry.metrics._internal import _ProxyMeterProvider
    except ImportError:  # pragma: no cover - a future API moved it
        return (NoOpMeterProvider,)
    return (NoOpMeterProvider, _ProxyMeterProvider)


PLACEHOLDER_METER_PROVIDERS = _placeholder_meter_providers()


_Carrier = MutableSequence[tuple[str, str | bytes]]


class _MetadataSetter(Setter[_Carrier]):
    """Propagator setter appending ``(key, value)`` to a metadata list."""

    def set(self, carrier: _Carrier, key: str, value: str) -> None:
        carrier.append((key, value))


_SETTER = _MetadataSetter()


class _Begin(Protocol):
    """:meth:`._direct.DirectTracer.begin`, or a :class:`_Start`."""

    def __call__(
        self,
        name: str,
        context: Context | Callable[[], Context] | None,
        parent: SpanContext,
        kind: SpanKind,
        attributes: Mapping[str, AnyValue],
    ) -> Span | SpanContext: ...


class _Start(Protocol):
    """How spans start: :meth:`._direct.DirectTracer.start`, or :class:`_ViaTracer`'s."""

    def __call__(
        self,
        name: str,
        context: Context | Callable[[], Context] | None,
        parent: SpanContext,
        kind: SpanKind,
        attributes: Mapping[str, AnyValue],
        /,
    ) -> Span: ...


class _ViaTracer:
    """Spans through ``tracer.start_span``: for tracers other than the SDK's own, and SDK
    set-ups that :mod:`._direct` leaves to the SDK."""

    __slots__ = ("_tracer",)

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer

    def start(
        self,
        name: str,
        context: Context | Callable[[], Context] | None,
        parent: SpanContext,
        kind: SpanKind,
        attributes: Mapping[str, AnyValue],
    ) -> Span:
        if callable(context):
            context = context()
        return self._tracer.start_span(name, context, kind=kind, attributes=attributes)


def _start_for(tracer: Tracer) -> tuple[_Start, _Begin]:
    """How this observer starts spans for ``tracer``: straight into the SDK's processors
    when that gives the same spans (:mod:`._direct`), else through ``start_span``. The
    second way returns a dropped span as its bare SpanContext, where it can."""
    if type(tracer).__module__.startswith("opentelemetry.sdk."):
        from ._direct import DirectTracer  # the SDK is importable: its tracer is here

        direct = DirectTracer.for_tracer(tracer)
        if direct is not None:
            return direct.start, direct.begin
    start = _ViaTracer(tracer).start
    return start, start


def _remote_context(parent: SpanContext) -> Context:
    """The context the propagator extracts for ``parent``."""
    if not parent.is_valid:
        return Context()
    return Context({_SPAN_KEY: NonRecordingSpan(parent)})


class _Tracing:
    """What the hot path needs to know about one tracer and one propagator, found once."""

    __slots__ = ("begin", "drop_local", "drop_remote", "fast", "propagator", "start", "tracer")

    def __init__(self, tracer: Tracer, propagator: TextMapPropagator) -> None:
        self.tracer = tracer
        self.start, self.begin = _start_for(tracer)
        self.propagator = propagator
        # The default propagator (W3C trace context + baggage): a context with no baggage
        # and no tracestate is one traceparent header, written and read here directly.
        self.fast = _w3c.is_default(propagator)
        # A parent-based sampler drops every child of an unsampled parent: such a child
        # needs no span (it would be a non-recording copy of its parent's context).
        # Samplers are SDK objects; their description is the public way to ask.
        sampler = getattr(tracer, "sampler", None)
        describe = getattr(sampler, "get_description", None)
        text = describe() if callable(describe) else ""
        parent_based = isinstance(text, str) and text.startswith("ParentBased{")
        self.drop_remote = parent_based and "remoteParentNotSampled:AlwaysOffSampler" in text
        self.drop_local = parent_based and "localParentNotSampled:AlwaysOffSampler" in text

    def inject(self, md: list[tuple[str, str | bytes]], ctx: Context) -> None:
        self.propagator.inject(md, ctx, _SETTER)


class OtelObserver:
    """An :class:`~dubbok.observe.Observer` on OpenTelemetry.

    ``tracer_provider`` / ``meter_provider``: ``None`` means the global ones, looked up until
    one is installed (so an observer created before ``set_tracer_provider`` starts tracing
    once it is). ``propagator``: ``None`` means the global one (W3C tracecontext + baggage
    unless ``OTEL_PROPAGATORS`` says otherwise), looked up per call. ``semconv``: a value as
    in ``OTEL_SEMCONV_STABILITY_OPT_IN`` (``"rpc"``, ``"rpc/dup"``), read from the
    environment when ``None``.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        propagator: TextMapPropagator | None = None,
        *,
        semconv: str | None = None,
    ) -> None:
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._propagator = propagator
        self.semconv = semconv_from_env(semconv)
        self._methods = MethodTable(self.semconv)
        self._ends = EndTables(self.semconv)
        self._tracer: Tracer | None = None
        self._tracer_final = False  # bound for good: an explicit or a real global provider
        self._tracing: _Tracing | None = None
        self._instruments: Instruments | None = None
        self._metrics_final = False
        self._misses = 0
        self._resolve_tracer()
        self._resolve_metrics()
        self._settled = self._tracer_final and self._metrics_final

    def __repr__(self) -> str:
        return (
            f"<OtelObserver tracing={'on' if self._tracer else 'off'} "
            f"metrics={'on' if self._instruments else 'off'} semconv={self.semconv.name}>"
        )

    # -- providers ---------------------------------------------------------------------------

    def _resolve_tracer(self) -> Tracer | None:
        if self._tracer_final:
            return self._tracer
        provider = self._tracer_provider
        explicit = provider is not None
        if provider is None:
            provider = trace.get_tracer_provider()
        if isinstance(provider, ProxyTracerProvider | NoOpTracerProvider):
            self._tracer_final = explicit
            return None
        tracer = provider.get_tracer(SCOPE, __version__)
        self._tracer_final = True
        if isinstance(tracer, trace.NoOpTracer):  # e.g. OTEL_SDK_DISABLED
            return None
        self._tracer = tracer
        return tracer

    def _resolve_metrics(self) -> Instruments | None:
        if self._metrics_final:
            return self._instruments
        provider = self._meter_provider
        explicit = provider is not None
        if provider is None:
            provider = get_meter_provider()
        if isinstance(provider, PLACEHOLDER_METER_PROVIDERS):
            self._metrics_final = explicit
            return None
        meter = provider.get_meter(SCOPE, __version__)
        self._instruments = Instruments(meter, self.semconv)
        REGISTRY.bind(meter)
        self._metrics_final = True
        return self._instruments

    def _look_again(self) -> None:
        """Look for global providers installed since. The hooks call this only every 128th
        call until both are bound for good: the lookup costs more than a call that finds
        none should."""
        self._resolve_tracer()
        self._resolve_metrics()
        self._settled = self._tracer_final and self._metrics_final

    def _tracing_for(self, tracer: Tracer) -> _Tracing:
        propagator = self._propagator or _global_textmap()
        tracing = self._tracing
        if tracing is None or tracing.propagator is not propagator or tracing.tracer is not tracer:
            tracing = self._tracing = _Tracing(tracer, propagator)
        return tracing

    # -- client --------------------------------------------------------------------------------

    def call(
        self, invocation: Invocation, loadbalance: str, cluster: str
    ) -> CallObservation | None:
        """A logical client call starts (on the caller's thread or task)."""
        if not self._settled:
            self._misses += 1
            if self._misses & 127 == 0:
                self._look_again()
        tracer, instruments = self._tracer, self._instruments
        if tracer is None:
            if instruments is None:
                return None
            info = self._methods.get(invocation.service, invocation.method)
            return _Call(self, info, None, None, None, _INVALID, instruments)
        info = self._methods.get(invocation.service, invocation.method)
        tracing = self._tracing
        if (
            tracing is None
            or tracing.tracer is not tracer
            or tracing.propagator is not (self._propagator or _global_textmap())
        ):
            tracing = self._tracing_for(tracer)
        parent = _current_context()
        parent_span = parent.get(_SPAN_KEY)
        parent_sc = _INVALID if parent_span is None else parent_span.get_span_context()  # type: ignore[attr-defined]
        if (
            _is_valid(parent_sc)
            and not _flags_of(parent_sc) & _SAMPLED
            and (tracing.drop_remote if _is_remote(parent_sc) else tracing.drop_local)
        ):
            # The sampler would drop this call: pass the parent's context on as it is.
            if tracing.fast and not _state_of(parent_sc) and not _w3c.has_baggage(parent):
                return _Unsampled(info, parent_sc, instruments)
            return _Call(self, info, tracing, None, parent, parent_sc, instruments)
        begun = tracing.begin(
            info.name, parent, parent_sc, _CLIENT, info.call_attrs(loadbalance, cluster)
        )
        if begun.__class__ is SpanContext:  # dropped by the sampler
            sc: SpanContext = begun
            if tracing.fast and not _state_of(sc) and not (parent and _w3c.has_baggage(parent)):
                return _Unsampled(info, sc, instruments)
            span: Span = NonRecordingSpan(sc)
        else:
            span = begun  # type: ignore[assignment]
            sc = span.get_span_context()
        return _Call(self, info, tracing, span, parent, sc, instruments)

    # -- server --------------------------------------------------------------------------------

    def handle(self, service: str, method: str, context: Any) -> ServerObservation | None:
        """A call is about to be handled (on the handler's thread or task)."""
        return self.handle_incoming(service, method, context, None)

    def handle_incoming(
        self, service: str, method: str, context: Any, metadata: Any
    ) -> ServerObservation | None:
        """As :meth:`handle`, given the call's invocation metadata (``None``: read it)."""
        if not self._settled:
            self._misses += 1
            if self._misses & 127 == 0:
                self._look_again()
        tracer, instruments = self._tracer, self._instruments
        if tracer is None and instruments is None:
            return None
        if metadata is None:
            metadata = context.invocation_metadata() or ()
        info = self._methods.get(service, method)
        # One pass over the metadata: the trace headers.
        header: str | bytes | None = None
        more = False  # tracestate or baggage: the propagator's to read
        for key, value in metadata:
            if key == _w3c.TRACEPARENT:
                header = value
            elif key in _w3c.OTHER_FIELDS:
                more = True
        if tracer is None:
            return _Served(self, info, None, None, instruments)
        tracing = self._tracing
        if (
            tracing is None
            or tracing.tracer is not tracer
            or tracing.propagator is not (self._propagator or _global_textmap())
        ):
            tracing = self._tracing_for(tracer)
        base: Context | None = None  # the extracted context, when the propagator made one
        parent_sc: SpanContext | None = None
        if tracing.fast and not more:
            if header is None:
                parent_sc = _INVALID
            elif header.__class__ is str:
                parent_sc = _w3c.parse(header)
        if parent_sc is None:
            carrier = {k: v for k, v in metadata if v.__class__ is str}
            base = tracing.propagator.extract(carrier)
            parent_sc = _span_in(base).get_span_context()
        if _is_valid(parent_sc) and not _flags_of(parent_sc) & _SAMPLED and tracing.drop_remote:
            # Unsampled upstream and a parent-based sampler: no span, the handler's calls
            # carry the caller's context on.
            if base is None:
                base = Context({_SPAN_KEY: NonRecordingSpan(parent_sc)})
            return _Served(self, info, None, _attach(base), instruments)
        span = tracing.start(
            info.name,
            base if base is not None else lambda: _remote_context(parent_sc),
            parent_sc,
            _SERVER,
            info.server_attrs(context.peer() or ""),
        )
        ctx = Context({_SPAN_KEY: span}) if base is None else _with_span(span, base)
        ctx_token = _attach(ctx)
        return _Served(self, info, span, ctx_token, instruments)


class _Call:
    """One observed logical client call; used by one thread or task at a time.

    Attempts usually run one after another (failover); fan-out strategies (forking,
    hedging, broadcast) keep several open at once. The latest is in ``_attempt``, earlier
    open ones in ``_open`` by endpoint address.
    """

    __slots__ = (
        "_attempt",
        "_attempt_at",
        "_ctx",
        "_fast",
        "_header",
        "_info",
        "_instruments",
        "_observer",
        "_open",
        "_parent",
        "_recording",
        "_sc",
        "_span",
        "_started",
        "_tracing",
    )

    def __init__(
        self,
        observer: OtelObserver,
        info: MethodInfo,
        tracing: _Tracing | None,
        span: Span | None,
        parent: Context | None,
        span_context: SpanContext,
        instruments: Instruments | None,
    ) -> None:
        self._observer = observer
        self._info = info
        self._tracing = tracing
        self._span = span  # the call's span; None when the parent's context goes on as is
        self._parent = parent  # the caller's context
        self._ctx: Context | None = None  # the call's own context, made when needed
        self._sc = span_context  # what goes out when an attempt has no span of its own
        self._recording = span is not None and span.is_recording()
        # The default propagator and nothing but a traceparent to write.
        self._fast = (
            tracing is not None
            and tracing.fast
            and parent is not None
            and not _w3c.has_baggage(parent)
        )
        self._header: str | None = None  # the unsampled call's traceparent, made once
        self._attempt: Span | None = None
        self._attempt_at = ""
        self._open: dict[str, Span] | None = None
        self._instruments = instruments
        self._started = _clock() if instruments is not None else 0.0

    def _context(self) -> Context:
        """The call's context: its span in the caller's context."""
        ctx = self._ctx
        if ctx is None:
            assert self._parent is not None
            ctx = self._parent if self._span is None else _with_span(self._span, self._parent)
            self._ctx = ctx
        return ctx

    def attempt(self, endpoint: Endpoint, number: int, metadata: Metadata) -> Metadata:
        md: list[tuple[str, str | bytes]] = list(metadata)
        tracing = self._tracing
        if tracing is not None:
            if self._recording:
                attempt = tracing.start(
                    self._info.name,
                    self._context,
                    self._sc,
                    _CLIENT,
                    self._info.attempt_attrs(endpoint, number),
                )
                if self._attempt is not None:  # another one still in flight (fan-out)
                    if self._open is None:
                        self._open = {}
                    self._open[self._attempt_at] = self._attempt
                self._attempt = attempt
                self._attempt_at = endpoint.address
                sc = attempt.get_span_context()
                if self._fast and not sc.trace_state:
                    md.append((_w3c.TRACEPARENT, _w3c.traceparent(sc)))
                else:
                    tracing.inject(md, _with_span(attempt, self._context()))
            elif self._sc.is_valid:
                # Unsampled: no attempt span; the call's context goes out, so downstream
                # parent-based samplers drop too and the trace id still reaches the logs.
                header = self._header
                if header is None and self._fast and not self._sc.trace_state:
                    header = self._header = _w3c.traceparent(self._sc)
                if header is not None:
                    md.append((_w3c.TRACEPARENT, header))
                else:
                    tracing.inject(md, self._context())
        return md

    def attempt_done(
        self, code: grpc.StatusCode, details: str, endpoint: Endpoint | None = None
    ) -> None:
        """The latest attempt ended — or, when attempts overlap and the driver says which
        (``endpoint``), that one."""
        attempt = self._attempt
        opened = self._open
        if opened and endpoint is not None and endpoint.address != self._attempt_at:
            attempt = opened.pop(endpoint.address, None)
        elif attempt is not None:
            self._attempt = None
            if opened:  # an earlier overlapping attempt becomes the latest
                self._attempt_at, self._attempt = opened.popitem()
        if attempt is not None:
            if code is _OK:
                attempt.end()
            else:
                _finish(attempt, self._observer._ends.client[code], code, details, error=True)

    def event(self, name: str, attributes: Mapping[str, Any]) -> None:
        if self._recording:
            assert self._span is not None
            self._span.add_event(name, attributes)
        if self._instruments is not None:
            self._instruments.client_events.add(self._info, name)

    def done(self, code: grpc.StatusCode, details: str) -> None:
        while self._attempt is not None:
            # Left open: the losers of a fan-out, cancelled once another attempt won (the
            # call's own status otherwise).
            if code is _OK:
                self.attempt_done(_CANCELLED, "cancelled: another attempt answered first")
            else:
                self.attempt_done(code, details)
        if self._recording:
            assert self._span is not None
            if code is _OK:
                self._span.end()
            else:
                ends = self._observer._ends.client[code]
                _finish(self._span, ends, code, details, error=True)
        if self._instruments is not None:
            self._instruments.client_done(self._info, code, _clock() - self._started)

    @property
    def span(self) -> Span | None:
        """The logical call's span (``None`` or non-recording when not sampled)."""
        return self._span


class _Unsampled:
    """A client call the sampler dropped, whose context goes out as one ``traceparent``
    header (the default propagator, no baggage, no tracestate): no span to start or end,
    the header made once for every attempt."""

    __slots__ = ("_header", "_info", "_instruments", "_sc", "_started")

    def __init__(
        self, info: MethodInfo, span_context: SpanContext, instruments: Instruments | None
    ) -> None:
        self._info = info
        self._sc = span_context
        self._header = _w3c.traceparent(span_context)
        self._instruments = instruments
        self._started = _clock() if instruments is not None else 0.0

    def attempt(self, endpoint: Endpoint, number: int, metadata: Metadata) -> Metadata:
        return (*metadata, (_w3c.TRACEPARENT, self._header))

    def attempt_done(
        self, code: grpc.StatusCode, details: str, endpoint: Endpoint | None = None
    ) -> None:
        pass

    def event(self, name: str, attributes: Mapping[str, Any]) -> None:
        if self._instruments is not None:
            self._instruments.client_events.add(self._info, name)

    def done(self, code: grpc.StatusCode, details: str) -> None:
        if self._instruments is not None:
            self._instruments.client_done(self._info, code, _clock() - self._started)

    @property
    def span(self) -> Span | None:
        """Non-recording: the call was not sampled."""
        return NonRecordingSpan(self._sc)


class _Served:
    """One observed handled call; finished on the thread or task that created it."""

    __slots__ = (
        "_ctx_token",
        "_info",
        "_instruments",
        "_observer",
        "_span",
        "_started",
    )

    def __init__(
        self,
        observer: OtelObserver,
        info: MethodInfo,
        span: Span | None,
        ctx_token: Token[Context] | None,
        instruments: Instruments | None,
    ) -> None:
        self._observer = observer
        self._info = info
        self._span = span
        self._ctx_token = ctx_token
        self._instruments = instruments
        self._started = _clock() if instruments is not None else 0.0

    def event(self, name: str, attributes: Mapping[str, Any]) -> None:
        """A provider-side governance decision (rate limited, ...), for drivers that report
        them; recorded on the server span and counted."""
        span = self._span
        if span is not None and span.is_recording():
            span.add_event(name, attributes)
        if self._instruments is not None:
            self._instruments.server_events.add(self._info, name)

    def done(self, code: grpc.StatusCode, details: str) -> None:
        span = self._span
        if span is not None:
            if code is not _OK and span.is_recording():
                ends = self._observer._ends.server[code]
                _finish(span, ends, code, details, error=code in sc.SERVER_ERRORS)
            else:
                span.end()
        if self._ctx_token is not None:
            _detach(self._ctx_token)
        if self._instruments is not None:
            self._instruments.server_done(self._info, code, _clock() - self._started)


def _finish(
    span: Span, ends: Mapping[str, Any], code: grpc.StatusCode, details: str, *, error: bool
) -> None:
    if code is not _OK:  # spans start with the OK status attributes (MethodInfo.start)
        span.set_attributes(ends)
    if error:
        span.set_status(Status(_ERROR, details or code.name))
    span.end()
