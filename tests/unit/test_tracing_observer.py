"""OtelObserver driven through its hooks as the drivers drive them (no sockets).

Spans and metrics go to in-memory readers (``dubbok.tracing.testing.Recorder``); a server
call is a stand-in context carrying the metadata a client attempt produced.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Sequence
from typing import Any

import grpc
import pytest
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.propagate import get_global_textmap
from opentelemetry.propagators.textmap import Setter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.span import TraceState

from dubbok.endpoint import Endpoint
from dubbok.invocation import Invocation, Metadata
from dubbok.observe import CallObservation
from dubbok.tracing import (
    AccessLogObserver,
    CompositeObserver,
    OtelObserver,
    _w3c,
    attachments,
    metrics,
)
from dubbok.tracing.testing import Recorder

SERVICE = "dubbok.testing.v1.Echo"
INV = Invocation(SERVICE, "Echo", None, (), None)
EP1 = Endpoint.parse("127.0.0.1:5001")
EP2 = Endpoint.parse("127.0.0.2:5002")
OK = grpc.StatusCode.OK


class FakeServerContext:
    def __init__(self, metadata: Metadata, peer: str = "ipv4:10.1.2.3:40000") -> None:
        self._metadata = tuple(metadata)
        self._peer = peer

    def invocation_metadata(self) -> Sequence[tuple[str, Any]]:
        return self._metadata

    def peer(self) -> str:
        return self._peer


def one_call(obs: CallObservation | None, code: grpc.StatusCode = OK) -> Metadata:
    assert obs is not None
    md = obs.attempt(EP1, 1, (("x-user", "u"),))
    obs.attempt_done(code, "" if code is OK else "boom")
    obs.done(code, "" if code is OK else "boom")
    return md


def run_isolated(fn: Any) -> Any:
    """Run ``fn`` in a fresh context: no attachments, no current span from other tests."""
    ctx = contextvars.copy_context()
    ctx.run(attachments.clear)
    return ctx.run(fn)


def test_a_call_is_a_client_span_with_an_attempt_child_and_the_server_follows() -> None:
    rec = Recorder()

    def body() -> None:
        md = one_call(rec.observer.call(INV, "roundrobin", "failover"))
        assert md[0] == ("x-user", "u")  # the caller's metadata goes first, untouched
        served = rec.observer.handle(SERVICE, "Echo", FakeServerContext(md))
        assert served is not None
        served.done(OK, "")

    run_isolated(body)
    attempt, call, server = rec.wait_for_spans(3)
    assert [s.name for s in (server, attempt, call)] == [f"{SERVICE}/Echo"] * 3
    assert (call.kind, attempt.kind, server.kind) == (
        SpanKind.CLIENT,
        SpanKind.CLIENT,
        SpanKind.SERVER,
    )
    assert call.parent is None
    assert attempt.parent is not None and attempt.parent.span_id == call.context.span_id
    assert server.parent is not None and server.parent.span_id == attempt.context.span_id
    assert server.parent.is_remote
    assert len({s.context.trace_id for s in (server, attempt, call)}) == 1
    assert dict(call.attributes or {}) == {
        "rpc.system": "grpc",
        "rpc.service": SERVICE,
        "rpc.method": "Echo",
        "rpc.grpc.status_code": 0,
        "dubbok.loadbalance": "roundrobin",
        "dubbok.cluster": "failover",
    }
    assert dict(attempt.attributes or {}) == {
        "rpc.system": "grpc",
        "rpc.service": SERVICE,
        "rpc.method": "Echo",
        "rpc.grpc.status_code": 0,
        "server.address": "127.0.0.1",
        "server.port": 5001,
        "network.peer.address": "127.0.0.1",
        "dubbok.attempt": 1,
    }
    assert dict(server.attributes or {}) == {
        "rpc.system": "grpc",
        "rpc.service": SERVICE,
        "rpc.method": "Echo",
        "rpc.grpc.status_code": 0,
        "network.peer.address": "10.1.2.3",
        "network.peer.port": 40000,
    }
    assert {s.status.status_code for s in (server, attempt, call)} == {StatusCode.UNSET}


def test_retries_are_sibling_attempts_and_an_event_on_the_call() -> None:
    rec = Recorder()

    def body() -> None:
        obs = rec.observer.call(INV, "random", "failover")
        assert obs is not None
        obs.attempt(EP1, 1, ())
        obs.attempt_done(grpc.StatusCode.UNAVAILABLE, "connection refused")
        obs.event("retry", {"dubbok.attempt": 2, "dubbok.failed_endpoint": EP1.address})
        obs.attempt(EP2, 2, ())
        obs.attempt_done(OK, "")
        obs.done(OK, "")

    run_isolated(body)
    first, second, call = rec.wait_for_spans(3)
    assert [s.parent.span_id for s in (first, second) if s.parent] == [call.context.span_id] * 2
    assert first.status.status_code is StatusCode.ERROR
    assert first.status.description == "connection refused"
    assert (first.attributes or {})["rpc.grpc.status_code"] == 14
    assert (second.attributes or {})["dubbok.attempt"] == 2
    assert (second.attributes or {})["server.address"] == "127.0.0.2"
    assert call.status.status_code is StatusCode.UNSET
    [event] = call.events
    assert event.name == "retry"
    assert dict(event.attributes or {}) == {
        "dubbok.attempt": 2,
        "dubbok.failed_endpoint": "127.0.0.1:5001",
    }
    [retries] = rec.points("dubbok.client.retries")
    assert retries.value == 1
    assert dict(retries.attributes) == {"rpc.service": SERVICE, "rpc.method": "Echo"}


def test_a_failed_call_is_an_error_on_the_client_and_business_errors_are_not_on_the_server() -> (
    None
):
    rec = Recorder()

    def body() -> None:
        for code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL):
            md = one_call(rec.observer.call(INV, "", ""), code)
            served = rec.observer.handle(SERVICE, "Echo", FakeServerContext(md))
            assert served is not None
            served.done(code, "boom")

    run_isolated(body)
    spans = rec.wait_for_spans(6)
    servers = [s for s in spans if s.kind is SpanKind.SERVER]
    clients = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert {s.status.status_code for s in clients} == {StatusCode.ERROR}
    by_code = {(s.attributes or {})["rpc.grpc.status_code"]: s.status for s in servers}
    assert by_code[3].status_code is StatusCode.UNSET  # INVALID_ARGUMENT: the caller's fault
    assert by_code[13].status_code is StatusCode.ERROR  # INTERNAL
    assert by_code[13].description == "boom"


def test_an_unsampled_call_makes_no_span_but_still_carries_its_context() -> None:
    rec = Recorder(sampler=ParentBased(ALWAYS_OFF))

    def body() -> Metadata:
        md = one_call(rec.observer.call(INV, "", ""))
        served = rec.observer.handle(SERVICE, "Echo", FakeServerContext(md))
        assert served is not None
        # In the handler: the caller's (unsampled) context is current.
        current = trace.get_current_span().get_span_context()
        assert current.is_valid and not current.trace_flags.sampled
        served.done(OK, "")
        assert not trace.get_current_span().get_span_context().is_valid  # restored
        return md

    md = run_isolated(body)
    traceparent = dict(md)["traceparent"]
    assert traceparent.startswith("00-")
    assert int(traceparent[-2:], 16) & 1 == 0  # not sampled
    assert rec.spans == ()
    # Metrics do not depend on sampling.
    assert [p.count for p in rec.points("rpc.client.duration")] == [1]
    assert [p.count for p in rec.points("rpc.server.duration")] == [1]


def test_a_sampled_upstream_is_followed_by_a_parent_based_sampler() -> None:
    upstream = Recorder()
    # This side would sample nothing on its own; its parent-based sampler follows upstream.
    downstream = Recorder(sampler=ParentBased(TraceIdRatioBased(0.0)))

    def body() -> None:
        md = one_call(upstream.observer.call(INV, "", ""))
        served = downstream.observer.handle(SERVICE, "Echo", FakeServerContext(md))
        assert served is not None
        served.done(OK, "")

    run_isolated(body)
    assert len(downstream.wait_for_spans(1)) == 1


def test_the_server_span_is_current_in_the_handler_and_parents_its_calls() -> None:
    rec = Recorder()

    def body() -> None:
        md = one_call(rec.observer.call(INV, "", ""))
        served = rec.observer.handle(SERVICE, "Echo", FakeServerContext(md))
        assert served is not None
        one_call(rec.observer.call(Invocation("b.Backend", "Get", None, (), None), "", ""))
        served.done(OK, "")

    run_isolated(body)
    spans = rec.wait_for_spans(5)
    server = next(s for s in spans if s.kind is SpanKind.SERVER)
    nested = next(s for s in spans if s.name == "b.Backend/Get" and s.parent is not None)
    outer = next(s for s in spans if s.context.span_id == nested.parent.span_id)  # type: ignore[union-attr]
    assert outer.name == "b.Backend/Get"  # the attempt's parent is the nested call span
    assert outer.parent is not None and outer.parent.span_id == server.context.span_id


def test_the_handler_context_is_restored_and_a_foreign_finish_is_only_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rec = Recorder()

    def body() -> None:
        before = otel_context.get_current()
        md = one_call(rec.observer.call(INV, "", ""))
        served = rec.observer.handle(SERVICE, "Echo", FakeServerContext(md))
        assert served is not None
        assert trace.get_current_span().get_span_context().is_valid  # the server span
        served.done(OK, "")
        assert otel_context.get_current() is before

        # Finished from another context (a driver bug): nothing raises, the API logs it.
        served = rec.observer.handle(SERVICE, "Echo", FakeServerContext(md))
        assert served is not None
        with caplog.at_level(logging.ERROR, logger="opentelemetry.context"):
            contextvars.copy_context().run(served.done, OK, "")
        assert "Failed to detach context" in caplog.text

    run_isolated(body)


def test_semconv_opt_in_changes_attributes_and_histograms() -> None:
    stable = Recorder(semconv="rpc")
    dup = Recorder(semconv="rpc/dup")

    def body() -> None:
        for rec in (stable, dup):
            one_call(rec.observer.call(INV, "", ""), grpc.StatusCode.UNAVAILABLE)

    run_isolated(body)
    call = stable.wait_for_spans(2)[-1]
    assert dict(call.attributes or {}) == {
        "rpc.system.name": "grpc",
        "rpc.method": f"{SERVICE}/Echo",
        "rpc.response.status_code": "UNAVAILABLE",
        "error.type": "UNAVAILABLE",
    }
    assert stable.points("rpc.client.duration") == []
    [point] = stable.points("rpc.client.call.duration")
    assert point.count == 1 and point.sum < 1.0  # seconds
    assert dict(point.attributes)["rpc.response.status_code"] == "UNAVAILABLE"
    call = dup.wait_for_spans(2)[-1]
    attrs = dict(call.attributes or {})
    assert (
        attrs["rpc.grpc.status_code"] == 14 and attrs["rpc.response.status_code"] == "UNAVAILABLE"
    )
    assert attrs["rpc.method"] == f"{SERVICE}/Echo" and attrs["rpc.service"] == SERVICE
    assert [p.count for p in dup.points("rpc.client.duration")] == [1]
    assert dict(dup.points("rpc.client.duration")[0].attributes)["rpc.method"] == "Echo"
    assert [p.count for p in dup.points("rpc.client.call.duration")] == [1]


def test_calls_by_status_and_governance_event_counters() -> None:
    rec = Recorder()

    def body() -> None:
        for code in (OK, OK, grpc.StatusCode.UNAVAILABLE):
            obs = rec.observer.call(INV, "", "")
            assert obs is not None
            for name in ("hedge", "fallback", "breaker_open"):
                obs.event(name, {})
            one_call(obs, code)

    run_isolated(body)
    counts = {
        dict(p.attributes)["rpc.grpc.status_code"]: p.count
        for p in rec.points("rpc.client.duration")
    }
    assert counts == {0: 2, 14: 1}
    for name in ("dubbok.client.hedges", "dubbok.client.fallbacks"):
        [point] = rec.points(name)
        assert point.value == 3
    [other] = rec.points("dubbok.client.events")
    assert other.value == 3 and dict(other.attributes)["dubbok.event"] == "breaker_open"


def test_gauges_are_read_from_callbacks_and_pushed_values() -> None:
    rec = Recorder()
    name = "dubbok.test.directory.size"
    metrics.register_gauge(name, lambda: [(3, {"rpc.service": "a.B"})], unit="{endpoint}")
    breakers = metrics.gauge_values("dubbok.test.breaker.state")
    try:
        breakers.set(2, {"rpc.service": "a.B", "rpc.method": "Get"})
        breakers.set(0, {"rpc.service": "a.B", "rpc.method": "Put"})
        assert [(p.value, dict(p.attributes)) for p in rec.points(name)] == [
            (3, {"rpc.service": "a.B"})
        ]
        states = {dict(p.attributes)["rpc.method"]: p.value for p in rec.points(breakers_name())}
        assert states == {"Get": 2, "Put": 0}
        # Replacing a callback needs no new instrument; a failing one is skipped.
        metrics.register_gauge(name, lambda: [(5, {"rpc.service": "a.B"})])
        assert [p.value for p in rec.points(name)] == [5]
        metrics.register_gauge(name, _failing)
        assert rec.points(name) == []
    finally:
        metrics.unregister_gauge(name)
        metrics.unregister_gauge(breakers_name())
    assert rec.points(name) == []


def breakers_name() -> str:
    return "dubbok.test.breaker.state"


def _failing() -> list[tuple[float, dict[str, str]]]:
    raise RuntimeError("state not readable")


def test_a_gauge_needs_a_name_and_a_callable() -> None:
    from dubbok.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        metrics.register_gauge("", lambda: [])
    with pytest.raises(ConfigurationError):
        metrics.register_gauge("x", 3)  # type: ignore[arg-type]


def test_without_providers_a_call_is_not_observed() -> None:
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import NoOpTracerProvider

    observer = OtelObserver(NoOpTracerProvider(), NoOpMeterProvider())
    incoming = FakeServerContext(((attachments.PREFIX + "tenant", "acme"),))

    def body() -> None:
        # Attachments are the call path's (dubbok.core, dubbok.server), not the observer's.
        attachments.set("tenant", "acme")
        assert observer.call(INV, "", "") is None
        assert observer.handle(SERVICE, "Echo", incoming) is None

    run_isolated(body)


def test_the_observer_leaves_attachments_to_the_call_path() -> None:
    rec = Recorder()

    def body() -> None:
        attachments.set("tenant", "acme")
        md = one_call(rec.observer.call(INV, "", ""))
        assert not [k for k, _ in md if k.startswith(attachments.PREFIX)]
        attachments.clear()
        incoming = FakeServerContext(((attachments.PREFIX + "tenant", "acme"), *md))
        served = rec.observer.handle(SERVICE, "Echo", incoming)
        assert served is not None
        assert attachments.get("tenant") is None
        served.done(OK, "")

    run_isolated(body)


class _Log(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_composite_runs_in_order_and_access_lines_carry_the_trace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rec = Recorder()
    both = CompositeObserver(rec.observer, AccessLogObserver())
    assert CompositeObserver(both, None).observers == both.observers  # type: ignore[arg-type]

    def body() -> None:
        md = one_call(both.call(INV, "roundrobin", "failover"))
        served = both.handle(SERVICE, "Echo", FakeServerContext((*md, ("authorization", "x"))))
        assert served is not None
        served.done(grpc.StatusCode.NOT_FOUND, "no such thing")

    with caplog.at_level(logging.INFO, logger="dubbok.access"):
        run_isolated(body)
    client_line, server_line = (r.access for r in caplog.records)  # type: ignore[attr-defined]
    spans = rec.wait_for_spans(3)
    server_span = next(s for s in spans if s.kind is SpanKind.SERVER)
    attempt = next(s for s in spans if (s.attributes or {}).get("dubbok.attempt") == 1)
    assert client_line["side"] == "client" and server_line["side"] == "server"
    assert client_line["peer"] == "127.0.0.1:5001" and server_line["peer"] == "10.1.2.3:40000"
    assert client_line["status"] == "OK" and server_line["status"] == "NOT_FOUND"
    assert client_line["attempt"] == 1
    assert client_line["trace_id"] == server_line["trace_id"] == f"{attempt.context.trace_id:032x}"
    assert client_line["span_id"] == f"{attempt.context.span_id:016x}"
    assert server_line["span_id"] == f"{server_span.context.span_id:016x}"
    assert set(client_line) == {
        "time", "side", "service", "method", "peer", "status", "duration_ms", "attempt",
        "trace_id", "span_id",
    }  # fmt: skip
    assert "authorization" not in caplog.text and "x-user" not in caplog.text


def test_an_access_log_without_a_listener_costs_no_observation() -> None:
    log = AccessLogObserver(logging.getLogger("dubbok.test.silent"))
    log.logger.setLevel(logging.WARNING)
    assert log.call(INV, "", "") is None
    assert log.handle(SERVICE, "Echo", FakeServerContext(())) is None


# -- the W3C fast path writes and reads what the propagator does ---------------------------


def _contexts() -> list[otel_context.Context]:
    rec = Recorder()
    span = rec.tracer_provider.get_tracer("t").start_span("s")
    base = trace.set_span_in_context(span)
    sc = span.get_span_context()
    stated = trace.NonRecordingSpan(
        trace.SpanContext(
            sc.trace_id, sc.span_id, False, sc.trace_flags, TraceState([("vendor", "v1")])
        )
    )
    return [
        base,
        baggage.set_baggage("k", "v", base),
        trace.set_span_in_context(stated),
        trace.set_span_in_context(trace.NonRecordingSpan(trace.SpanContext(1, 2, False))),
    ]


def fast_traceparent(ctx: Any, span_context: Any) -> str | None:
    """What the observer writes for ``ctx`` on its fast path, or ``None`` when it leaves the
    headers to the propagator (a tracestate, or baggage)."""
    if span_context.trace_state or _w3c.has_baggage(ctx):
        return None
    return _w3c.traceparent(span_context)


def fast_extract(carrier: dict[str, str]) -> Any:
    """The context the observer's fast path reads from ``carrier``, or ``None`` when it
    leaves the carrier to the propagator."""
    if "tracestate" in carrier or "baggage" in carrier:
        return None
    header = carrier.get("traceparent")
    if header is None:
        return otel_context.Context()
    parent = _w3c.parse(header)
    if parent is None:
        return None
    if not parent.is_valid:
        return otel_context.Context()
    return trace.set_span_in_context(trace.NonRecordingSpan(parent), otel_context.Context())


@pytest.mark.parametrize("index", range(4))
def test_fast_inject_matches_the_propagator_or_steps_aside(index: int) -> None:
    ctx = _contexts()[index]
    expected: list[tuple[str, str]] = []
    get_global_textmap().inject(expected, ctx, _SETTER)
    fast = fast_traceparent(ctx, trace.get_current_span(ctx).get_span_context())
    if fast is None:
        assert len(expected) > 1  # tracestate or baggage: the propagator's job
    else:
        assert [("traceparent", fast)] == expected


@pytest.mark.parametrize(
    "carrier",
    [
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"},
        {"traceparent": "00-00000000000000000000000000000000-b7ad6b7169203331-01"},
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01"},
        {"traceparent": "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"},
        {"traceparent": "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra"},
        {"traceparent": "garbage"},
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
         "tracestate": "vendor=v1"},
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
         "baggage": "k=v"},
        {},
    ],
)  # fmt: skip
def test_fast_extract_matches_the_propagator_or_steps_aside(carrier: dict[str, str]) -> None:
    expected = get_global_textmap().extract(carrier)
    fast = fast_extract(carrier)
    if fast is None:
        return  # the propagator reads it
    assert (
        trace.get_current_span(fast).get_span_context()
        == trace.get_current_span(expected).get_span_context()
    )
    assert baggage.get_all(fast) == baggage.get_all(expected)


def test_only_the_default_propagators_take_the_fast_path() -> None:
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    assert _w3c.is_default(get_global_textmap())
    assert _w3c.is_default(TraceContextTextMapPropagator())
    assert not _w3c.is_default(W3CBaggagePropagator())
    assert not _w3c.is_default(
        CompositePropagator([W3CBaggagePropagator(), TraceContextTextMapPropagator()])
    )


class _ListSetter(Setter[list[tuple[str, str]]]):
    def set(self, carrier: list[tuple[str, str]], key: str, value: str) -> None:
        carrier.append((key, value))


_SETTER = _ListSetter()


def test_overlapping_attempts_of_a_fan_out_end_by_endpoint_and_losers_are_cancelled() -> None:
    rec = Recorder()
    ep3 = Endpoint.parse("127.0.0.3:5003")

    def body() -> None:
        obs = rec.observer.call(INV, "roundrobin", "forking")
        assert obs is not None
        for number, endpoint in enumerate((EP1, EP2, ep3), 1):
            obs.attempt(endpoint, number, ())
        # The second endpoint answers first; the driver says which attempt it was.
        obs.attempt_done(grpc.StatusCode.UNAVAILABLE, "down", ep3)  # type: ignore[call-arg]
        obs.attempt_done(OK, "", EP2)  # type: ignore[call-arg]
        obs.done(OK, "")

    run_isolated(body)
    spans = rec.wait_for_spans(4)
    status = {
        (s.attributes or {}).get("server.address"): (s.attributes or {})["rpc.grpc.status_code"]
        for s in spans
        if s.parent is not None
    }
    assert status == {"127.0.0.1": 1, "127.0.0.2": 0, "127.0.0.3": 14}  # 1: CANCELLED


@pytest.mark.parametrize("kind", ["root", "parent", "remote", "baggage", "tracestate"])
def test_an_unsampled_call_sends_what_the_propagator_would(kind: str) -> None:
    """A call the sampler drops sends its context on, to every attempt alike: the parent's
    as it is (parent-based), or a new unsampled root's; with baggage or a tracestate, the
    propagator writes the headers."""
    rec = Recorder(sampler=ParentBased(ALWAYS_OFF))
    state = TraceState([("vendor", "v1")]) if kind == "tracestate" else TraceState()
    parent = trace.SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        kind == "remote",
        trace.TraceFlags(0),
        state,
    )
    ctx = otel_context.Context()
    if kind != "root":
        ctx = trace.set_span_in_context(trace.NonRecordingSpan(parent), ctx)
    if kind == "baggage":
        ctx = baggage.set_baggage("k", "v", ctx)

    def body() -> list[Metadata]:
        token = otel_context.attach(ctx)
        try:
            obs = rec.observer.call(INV, "", "")
            assert obs is not None
            sent = [obs.attempt(EP1, 1, (("x-user", "u"),))]
            obs.attempt_done(grpc.StatusCode.UNAVAILABLE, "down")
            sent.append(obs.attempt(EP2, 2, (("x-user", "u"),)))
            obs.attempt_done(OK, "")
            obs.done(OK, "")
            return sent
        finally:
            otel_context.detach(token)

    first, retry = run_isolated(body)
    assert sorted(first) == sorted(retry)
    assert ("x-user", "u") in first
    headers = [(k, v) for k, v in first if k != "x-user"]
    if kind == "root":
        ((key, value),) = headers
        sc = _w3c.parse(str(value))
        assert key == "traceparent" and sc is not None and sc.is_valid
        assert not sc.trace_flags.sampled and sc.trace_id != parent.trace_id
    else:
        expected: list[tuple[str, str]] = []
        get_global_textmap().inject(expected, ctx, _SETTER)
        assert sorted(headers) == sorted(expected)
    assert rec.spans == ()
