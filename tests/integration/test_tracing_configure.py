"""``dubbok.tracing.configure``: SDK set-up from arguments and OTEL_* variables.

OpenTelemetry's global providers can be set once per process, so each case that installs one
runs in a fresh Python process of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from dubbok.errors import ConfigurationError

ONE_CALL = """
import dubbok
from dubbok.testing import EchoServicer, serve_provider
from dubbok.testing.pb import echo_pb2, echo_pb2_grpc

def one_call():
    with serve_provider(EchoServicer("p")) as provider:
        with dubbok.App("consumer") as app:
            echo = app.reference(echo_pb2_grpc.EchoStub, discovery=provider.url)
            echo.Echo(echo_pb2.EchoRequest(text="hi"))
"""


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(ONE_CALL) + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        check=False,
    )


def console_spans(stdout: str) -> list[dict[str, object]]:
    """The spans ConsoleSpanExporter printed (one JSON document each)."""
    decoder = json.JSONDecoder()
    spans, at = [], 0
    while (start := stdout.find("{", at)) != -1:
        document, at = decoder.raw_decode(stdout, start)
        if isinstance(document, dict) and "context" in document:
            spans.append(document)
    return spans


def test_configure_installs_providers_and_the_default_observer() -> None:
    done = run_python(
        """
        import dubbok.tracing
        from opentelemetry import trace
        observer = dubbok.tracing.configure(
            service_name="checkout", exporter="console", metrics_exporter=None
        )
        assert dubbok.observe.default_observer() is observer
        one_call()
        trace.get_tracer_provider().shutdown()  # flushes the batch processor
        """
    )
    assert done.returncode == 0, done.stderr
    spans = console_spans(done.stdout)
    assert len(spans) == 3
    assert {s["name"] for s in spans} == {"dubbok.testing.v1.Echo/Echo"}
    assert {s["resource"]["attributes"]["service.name"] for s in spans} == {"checkout"}  # type: ignore[index]
    assert {s["kind"] for s in spans} == {"SpanKind.CLIENT", "SpanKind.SERVER"}


def test_configure_reads_the_otel_environment() -> None:
    done = run_python(
        """
        import dubbok.tracing
        from opentelemetry import metrics, trace
        dubbok.tracing.configure()
        one_call()
        trace.get_tracer_provider().shutdown()
        metrics.get_meter_provider().shutdown()  # exports the metrics once more
        """,
        OTEL_TRACES_EXPORTER="console",
        OTEL_METRICS_EXPORTER="console",
        OTEL_SERVICE_NAME="from-env",
        OTEL_TRACES_SAMPLER="always_off",
    )
    assert done.returncode == 0, done.stderr
    assert console_spans(done.stdout) == []  # the sampler said no
    assert "rpc.client.duration" in done.stdout and "from-env" in done.stdout


def test_the_sampler_argument_wins_over_the_environment() -> None:
    done = run_python(
        """
        import dubbok.tracing
        from opentelemetry import trace
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON
        dubbok.tracing.configure(exporter="console", metrics_exporter=None, sampler=ALWAYS_ON)
        one_call()
        trace.get_tracer_provider().shutdown()
        """,
        OTEL_TRACES_SAMPLER="always_off",
    )
    assert done.returncode == 0, done.stderr
    assert len(console_spans(done.stdout)) == 3


def test_access_log_true_writes_json_lines() -> None:
    done = run_python(
        """
        import logging, sys
        import dubbok.tracing
        logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="ACCESS %(message)s")
        dubbok.tracing.configure(exporter=None, metrics_exporter=None, access_log=True)
        one_call()
        """
    )
    assert done.returncode == 0, done.stderr
    lines = [
        json.loads(line[len("ACCESS ") :])
        for line in done.stdout.splitlines()
        if line.startswith("ACCESS {")
    ]
    assert sorted(line["side"] for line in lines) == ["client", "server"]
    assert {line["status"] for line in lines} == {"OK"}


def test_an_existing_tracer_provider_is_used_as_it_is() -> None:
    done = run_python(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        mine = TracerProvider()
        exporter = InMemorySpanExporter()
        mine.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(mine)

        import dubbok.tracing
        dubbok.tracing.configure(exporter="console", metrics_exporter=None)
        assert trace.get_tracer_provider() is mine
        one_call()
        print("in memory:", len(exporter.get_finished_spans()))
        """
    )
    assert done.returncode == 0, done.stderr
    assert "in memory: 3" in done.stdout
    assert console_spans(done.stdout) == []


def test_an_observer_made_before_the_provider_starts_tracing_once_there_is_one() -> None:
    done = run_python(
        """
        import grpc
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from dubbok.invocation import Invocation
        from dubbok.tracing import OtelObserver

        observer = OtelObserver()
        inv = Invocation("a.B", "Get", None, (), None)
        assert observer.call(inv, "", "") is None
        provider = TracerProvider()
        exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        for _ in range(300):
            obs = observer.call(inv, "", "")
            if obs is not None:
                obs.done(grpc.StatusCode.OK, "")
        print("spans:", len(exporter.get_finished_spans()))
        """
    )
    assert done.returncode == 0, done.stderr
    spans = int(done.stdout.rsplit("spans:", 1)[1])
    assert 150 <= spans < 300  # found within a bounded number of calls, then every call


def test_a_missing_otlp_exporter_is_named_before_anything_is_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider

    import dubbok.tracing

    # The exporter is a dev dependency: make it absent (a None entry in sys.modules makes
    # its import fail) whether or not it is installed.
    package = "opentelemetry.exporter.otlp.proto.grpc"
    for module in (package, f"{package}.trace_exporter", f"{package}.metric_exporter"):
        monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_PROTOCOL", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", raising=False)
    with pytest.raises(
        ConfigurationError,
        match=r"^exporter 'otlp' needs the package opentelemetry-exporter-otlp-proto-grpc",
    ):
        dubbok.tracing.configure(service_name="x", exporter="otlp")
    with pytest.raises(
        ConfigurationError,
        match=r"^metrics exporter 'otlp' needs the package opentelemetry-exporter-otlp-proto-grpc",
    ):
        dubbok.tracing.configure(service_name="x", exporter=None, metrics_exporter="otlp")
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert not isinstance(metrics.get_meter_provider(), SdkMeterProvider)
    with pytest.raises(ConfigurationError, match="unknown trace exporter 'zipkin'"):
        dubbok.tracing.configure(exporter="zipkin")


def test_a_prometheus_endpoint_needs_its_exporter_package() -> None:
    try:
        import opentelemetry.exporter.prometheus  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the Prometheus exporter is installed here")
    import dubbok.tracing

    with pytest.raises(ConfigurationError, match="opentelemetry-exporter-prometheus"):
        dubbok.tracing.serve_prometheus(0)


def test_import_dubbok_does_not_load_tracing_or_the_sdk() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, dubbok, dubbok.aio; "
            "print(sorted(m for m in sys.modules if m.startswith(('dubbok.tracing', "
            "'opentelemetry.sdk'))))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "[]"
