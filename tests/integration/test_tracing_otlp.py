"""``configure(exporter="otlp")`` against a real OTLP/gRPC collector on loopback.

The collector is a gRPC server in the test process implementing OTLP's trace and metrics
services; the configured process is a fresh Python process of its own (OpenTelemetry's
global providers can be set once per process) that makes one dubbok call and exits. Its
providers' shutdown — called explicitly, or by their exit handlers — waits for the last
exports, so the collector holds everything once the process is gone: nothing to poll for.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.exporter.otlp.proto.grpc")

from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import HistogramDataPoint
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.integration.test_tracing_configure import run_python

NAME = "dubbok.testing.v1.Echo/Echo"

SHUTDOWN = """
import dubbok.tracing
from opentelemetry import metrics, trace
dubbok.tracing.configure(service_name="checkout", exporter="otlp")
one_call()
trace.get_tracer_provider().shutdown()  # flushes the batch span processor
metrics.get_meter_provider().shutdown()  # collects and exports the metrics once more
"""

# The service name from the environment, the exporter from the default (OTEL_TRACES_EXPORTER
# unset: otlp), and no shutdown: the providers' own exit handlers flush.
AT_EXIT = """
import dubbok.tracing
dubbok.tracing.configure()
one_call()
"""


@dataclass
class Collector:
    """What an OTLP/gRPC collector received: every Export request, in order."""

    endpoint: str
    traces: list[trace_service_pb2.ExportTraceServiceRequest] = field(default_factory=list)
    metrics: list[metrics_service_pb2.ExportMetricsServiceRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        with self.collector.lock:
            self.collector.traces.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class _Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def Export(
        self, request: metrics_service_pb2.ExportMetricsServiceRequest, context: Any
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        with self.collector.lock:
            self.collector.metrics.append(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    port = server.add_insecure_port("127.0.0.1:0")
    received = Collector(endpoint=f"http://127.0.0.1:{port}")
    # The generated *_pb2_grpc modules have no type hints.
    add_traces = trace_service_pb2_grpc.add_TraceServiceServicer_to_server
    add_metrics = metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server
    add_traces(_Traces(received), server)  # type: ignore[no-untyped-call]
    add_metrics(_Metrics(received), server)  # type: ignore[no-untyped-call]
    server.start()
    try:
        yield received
    finally:
        server.stop(grace=None).wait()


def value(any_value: AnyValue) -> object:
    return getattr(any_value, str(any_value.WhichOneof("value")))


def attrs(key_values: Iterable[KeyValue]) -> dict[str, object]:
    return {kv.key: value(kv.value) for kv in key_values}


@pytest.mark.parametrize(
    ("code", "env"),
    [(SHUTDOWN, {}), (AT_EXIT, {"OTEL_SERVICE_NAME": "checkout"})],
    ids=["shutdown", "at-exit"],
)
def test_spans_and_metrics_reach_an_otlp_collector(
    collector: Collector, code: str, env: dict[str, str]
) -> None:
    done = run_python(
        code,
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint,
        OTEL_EXPORTER_OTLP_INSECURE="true",
        **env,
    )
    assert done.returncode == 0, done.stderr
    assert "Failed to export" not in done.stderr, done.stderr
    # The providers' shutdown waited for each Export's response before the process exited:
    # all is stored by now.
    with collector.lock:
        traces, metrics = list(collector.traces), list(collector.metrics)

    resource_spans = [rs for request in traces for rs in request.resource_spans]
    assert {attrs(rs.resource.attributes)["service.name"] for rs in resource_spans} == {"checkout"}
    spans = [span for rs in resource_spans for ss in rs.scope_spans for span in ss.spans]
    assert len(spans) == 3
    assert {s.name for s in spans} == {NAME}
    [server] = [s for s in spans if s.kind == Span.SPAN_KIND_SERVER]
    clients = [s for s in spans if s.kind == Span.SPAN_KIND_CLIENT]
    [call] = [s for s in clients if not s.parent_span_id]
    [attempt] = [s for s in clients if s.parent_span_id]
    assert len({s.trace_id for s in spans}) == 1
    assert attempt.parent_span_id == call.span_id
    assert server.parent_span_id == attempt.span_id
    rpc = {
        "rpc.system": "grpc",
        "rpc.service": "dubbok.testing.v1.Echo",
        "rpc.method": "Echo",
        "rpc.grpc.status_code": 0,
    }
    for span in spans:
        assert rpc.items() <= attrs(span.attributes).items(), span
    assert attrs(call.attributes)["dubbok.cluster"] == "failover"
    attempt_attrs = attrs(attempt.attributes)
    assert attempt_attrs["server.address"] == "127.0.0.1"
    assert attempt_attrs["dubbok.attempt"] == 1
    assert isinstance(attempt_attrs["server.port"], int)
    assert attrs(server.attributes)["network.peer.address"] == "127.0.0.1"

    resource_metrics = [rm for request in metrics for rm in request.resource_metrics]
    assert resource_metrics, "no metrics arrived"
    assert {attrs(rm.resource.attributes)["service.name"] for rm in resource_metrics} == {
        "checkout"
    }
    # The last export of each histogram (cumulative: it holds every call).
    histograms: dict[str, list[HistogramDataPoint]] = {}
    units: dict[str, str] = {}
    for rm in resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.WhichOneof("data") == "histogram":
                    histograms[metric.name] = list(metric.histogram.data_points)
                    units[metric.name] = metric.unit
    for name in ("rpc.client.duration", "rpc.server.duration"):
        [point] = histograms[name]
        assert point.count == 1
        assert units[name] == "ms"
        assert attrs(point.attributes) == rpc
    # The stable convention's histograms only come with OTEL_SEMCONV_STABILITY_OPT_IN.
    assert "rpc.client.call.duration" not in histograms


def test_otlp_over_http_without_its_exporter_names_the_package() -> None:
    try:
        import opentelemetry.exporter.otlp.proto.http  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the OTLP/HTTP exporter is installed here")
    done = run_python(
        """
        import dubbok.tracing
        from dubbok.errors import ConfigurationError
        from opentelemetry import trace
        for kwargs in ({"exporter": "otlp"}, {"exporter": None, "metrics_exporter": "otlp"}):
            try:
                dubbok.tracing.configure(service_name="checkout", **kwargs)
            except ConfigurationError as e:
                print("error:", e)
            else:
                print("no error")
        print("provider:", type(trace.get_tracer_provider()).__name__)
        """,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
    )
    assert done.returncode == 0, done.stderr
    errors = [line for line in done.stdout.splitlines() if line.startswith(("error:", "no "))]
    assert len(errors) == 2, done.stdout
    assert errors[0].startswith("error: exporter 'otlp' over HTTP needs")
    assert errors[1].startswith("error: metrics exporter 'otlp' over HTTP needs")
    for line in errors:
        assert "pip install opentelemetry-exporter-otlp-proto-http" in line
    assert "provider: ProxyTracerProvider" in done.stdout  # nothing was installed


@pytest.mark.parametrize(
    ("variable", "refused"),
    [
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "exporter 'otlp' over HTTP needs"),
        ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "metrics exporter 'otlp' over HTTP needs"),
    ],
)
def test_each_signal_reads_its_own_protocol_variable(variable: str, refused: str) -> None:
    """``OTEL_EXPORTER_OTLP_{TRACES,METRICS}_PROTOCOL`` switches that signal alone to HTTP
    (whose package is missing here, so it is refused by name; the other stays on gRPC)."""
    try:
        import opentelemetry.exporter.otlp.proto.http  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the OTLP/HTTP exporter is installed here")
    done = run_python(
        """
        import dubbok.tracing
        from dubbok.errors import ConfigurationError
        try:
            dubbok.tracing.configure(service_name="checkout", exporter="otlp")
        except ConfigurationError as e:
            print("error:", e)
        else:
            print("no error")
        """,
        **{variable: "http/protobuf"},
    )
    assert done.returncode == 0, done.stderr
    errors = [line for line in done.stdout.splitlines() if line.startswith(("error:", "no "))]
    assert errors == [errors[0]] and errors[0].startswith("error: " + refused), done.stdout
