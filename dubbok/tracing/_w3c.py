"""A fast path for the default propagator: W3C trace context (+ baggage) in gRPC metadata.

OpenTelemetry's own propagators are general (regular expressions, getter/setter objects,
one pass per propagator). When the configured propagator is exactly the default composite —
``tracecontext`` alone or followed by ``baggage``, OpenTelemetry's own classes — and the
context carries no ``tracestate`` and no baggage, what they write and read is a single
``traceparent`` header, which this module formats and parses directly. The result is the
same as the propagator's; anything else (another propagator, a tracestate, baggage, a
header in another version) goes through the propagator itself.
"""

from __future__ import annotations

import re

from opentelemetry import baggage
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import (
    INVALID_SPAN_CONTEXT,
    SpanContext,
    TraceFlags,
    TraceState,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["has_baggage", "is_default", "parse", "traceparent"]

TRACEPARENT = "traceparent"
# Headers of the default propagator besides traceparent: when present, it reads them itself.
OTHER_FIELDS = frozenset(("tracestate", "baggage"))
_VERSION_00 = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_HEX = tuple(f"{i:02x}" for i in range(256))
_FLAGS = {_HEX[i]: TraceFlags(i) for i in range(256)}
# The API keeps baggage under a private context key; without it, ask the public function.
_BAGGAGE_KEY: str | None = getattr(baggage, "_BAGGAGE_KEY", None)
_DEFAULT_SHAPES = (
    (TraceContextTextMapPropagator, W3CBaggagePropagator),
    (TraceContextTextMapPropagator,),
)


def _tuple_layout() -> bool:
    """Whether ``SpanContext`` is ``tuple[trace_id, span_id, is_remote, trace_flags,
    trace_state, is_valid]``, as its type says: then the hot paths build and read it as one."""
    try:
        made = SpanContext(7, 9, True, TraceFlags(1), DEFAULT_STATE)
        built = tuple.__new__(SpanContext, (7, 9, True, made.trace_flags, DEFAULT_STATE, True))
        return bool(
            made == built
            and (made.trace_id, made.span_id, made.is_remote) == made[:3]
            and made.trace_flags is made[3]
            and made.trace_state is made[4]
            and made.is_valid is made[5] is True
        )
    except Exception:  # any surprise means: do not use the layout
        return False


DEFAULT_STATE = TraceState.get_default()
TUPLE_LAYOUT = _tuple_layout()
new_context = tuple.__new__  # SpanContext built as its tuple (with TUPLE_LAYOUT)


def is_default(propagator: TextMapPropagator) -> bool:
    """Whether ``propagator`` is OpenTelemetry's W3C tracecontext (+ baggage) composite."""
    if type(propagator) is TraceContextTextMapPropagator:
        return True
    if type(propagator) is not CompositePropagator:
        return False
    # The composite lists its members only in a private attribute; without it, no fast path.
    members = getattr(propagator, "_propagators", None)
    if not isinstance(members, list | tuple):
        return False
    return tuple(type(m) for m in members) in _DEFAULT_SHAPES


def has_baggage(ctx: Context) -> bool:
    """Whether ``ctx`` carries baggage (which the default propagator writes a header for)."""
    if _BAGGAGE_KEY is not None:
        return bool(ctx.get(_BAGGAGE_KEY))
    return bool(baggage.get_all(ctx))


def traceparent(sc: SpanContext) -> str:
    """The ``traceparent`` value for ``sc`` (which must carry no ``tracestate``)."""
    if TUPLE_LAYOUT:
        trace_id, span_id, flags = sc[0], sc[1], sc[3]
    else:
        trace_id, span_id, flags = sc.trace_id, sc.span_id, sc.trace_flags
    # bytes.hex is about twice as fast as formatting the ints with "032x".
    return (
        f"00-{trace_id.to_bytes(16, 'big').hex()}-{span_id.to_bytes(8, 'big').hex()}-{_HEX[flags]}"
    )


def parse(header: str) -> SpanContext | None:
    """The remote parent in a ``traceparent`` value, as the default propagator reads it:
    ``INVALID_SPAN_CONTEXT`` when it names none, ``None`` when the propagator must read it
    (another version, anything malformed)."""
    if _VERSION_00.fullmatch(header) is None:  # checked whole, then sliced (no groups)
        return None
    trace_id = int(header[3:35], 16)
    span_id = int(header[36:52], 16)
    if not trace_id or not span_id:
        return INVALID_SPAN_CONTEXT
    if TUPLE_LAYOUT:  # valid ids (checked above): build the tuple without SpanContext's checks
        return new_context(
            SpanContext, (trace_id, span_id, True, _FLAGS[header[53:55]], DEFAULT_STATE, True)
        )
    return SpanContext(trace_id, span_id, True, _FLAGS[header[53:55]])
